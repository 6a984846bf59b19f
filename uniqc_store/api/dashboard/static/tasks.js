// The task list (live or archive): counts as bars, filters, keyset paging, and,
// after a dry run, archiving the expired live tasks (in the archive, purging old
// archived ones: purge.js). The filters and the page are in the URL
// (#/live?status=failed&page=2&cursor=...); the cursors of the pages before it are
// in the history entry, so Back and Previous both work; a shared link to page N
// has only its own cursor, so Previous there goes to the first page.

import { api } from "./api.js";
import { bars, h, statusBadge, time } from "./dom.js";
import { purgePanel } from "./purge.js";

const STATUSES = ["pending", "running", "success", "failed", "cancelled"];
const PAGE_SIZE = 25;

function select(id, label, options, value) {
  const element = h(
    "select",
    { id, name: id },
    options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)),
  );
  return [h("label", { for: id }, label), element];
}

/** The cursors of pages 1..N: from the history entry when it has them, else from the URL. */
function cursorsFrom(params, saved) {
  const cursor = params.get("cursor");
  if (!cursor) return [null];
  if (Array.isArray(saved?.cursors) && saved.cursors.at(-1) === cursor) return saved.cursors;
  const page = Math.max(2, Math.floor(Number(params.get("page"))) || 2);
  return [null, ...Array(page - 2).fill(undefined), cursor]; // undefined: not known here
}

export function tasksView(which, params, saved, ctx) {
  const state = {
    status: params.get("status") ?? "",
    backend: params.get("backend") ?? "",
    order: params.get("order") === "oldest" ? "oldest" : "newest",
    size: Math.min(200, Math.max(1, Number(params.get("size")) || PAGE_SIZE)),
    cursors: cursorsFrom(params, saved),
    next: null,
  };
  /** The URL of this view with `changes`; a filter change starts again at page 1. */
  const hashFor = (changes) => {
    const query = new URLSearchParams();
    const merged = { ...state, cursors: [null], ...changes };
    for (const key of ["status", "backend"]) if (merged[key]) query.set(key, merged[key]);
    if (merged.order !== "newest") query.set("order", merged.order);
    if (merged.size !== PAGE_SIZE) query.set("size", merged.size);
    if (merged.cursors.length > 1) {
      query.set("page", merged.cursors.length);
      query.set("cursor", merged.cursors.at(-1));
    }
    const text = query.toString();
    return `#/${which}${text ? `?${text}` : ""}`;
  };
  /** Record the state in the URL (a history entry) and load its rows. */
  const go = () => {
    ctx.navigate(hashFor({ cursors: state.cursors }), { cursors: state.cursors });
    ctx.run(refreshRows);
  };

  const [statusLabel, statusSelect] = select(
    "filter-status", "Status", [["", "All statuses"], ...STATUSES.map((s) => [s, s])], state.status,
  );
  const [backendLabel, backendSelect] = select(
    "filter-backend", "Backend", [["", "All backends"]], state.backend,
  );
  const [orderLabel, orderSelect] = select(
    "filter-order", "Order", [["newest", "Newest first"], ["oldest", "Oldest first"]], state.order,
  );
  const onFilter = () => {
    state.status = statusSelect.value;
    state.backend = backendSelect.value;
    state.order = orderSelect.value;
    state.cursors = [null];
    go();
  };
  for (const element of [statusSelect, backendSelect, orderSelect]) {
    element.addEventListener("change", onFilter);
  }

  const total = h("p", { class: "total", id: "total" });
  const charts = h("div", { class: "charts" });
  const rows = h("tbody");
  const prev = h("button", { type: "button", id: "page-prev" }, "← Previous");
  const next = h("button", { type: "button", id: "page-next" }, "Next →");
  const pageInfo = h("span", { id: "page-info" });
  prev.addEventListener("click", () => {
    state.cursors = state.cursors.slice(0, -1);
    if (state.cursors.at(-1) === undefined) state.cursors = [null]; // not known: the first page
    go();
  });
  next.addEventListener("click", () => {
    state.cursors = [...state.cursors, state.next];
    go();
  });

  const root = h(
    "section",
    { "aria-labelledby": "view-title" },
    h("h2", { id: "view-title" }, which === "live" ? "Live tasks" : "Archived tasks"),
    total,
    charts,
    h(
      "form",
      { class: "filters", onsubmit: (e) => e.preventDefault() },
      h("div", {}, statusLabel, statusSelect),
      h("div", {}, backendLabel, backendSelect),
      h("div", {}, orderLabel, orderSelect),
    ),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "tasks" },
        h("caption", { class: "visually-hidden" }, "Tasks"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col" }, "Task"),
            h("th", { scope: "col" }, "Status"),
            h("th", { scope: "col" }, "Backend"),
            h("th", { scope: "col", class: "wide" }, "Shots"),
            h("th", { scope: "col" }, "Submitted"),
            h("th", { scope: "col", class: "wide" }, which === "live" ? "Updated" : "Archived"),
          ),
        ),
        rows,
      ),
    ),
    h("nav", { class: "pager", "aria-label": "Pages" }, prev, pageInfo, next),
    which === "live" ? expiredPanel(ctx) : purgePanel(ctx),
  );

  // The rows and the charts load side by side; the rows (the cheaper call) show first.
  const refresh = () => Promise.all([refreshRows(), refreshCounts()]);

  // A live refresh and a filter change can overlap: only the newest answer is drawn.
  let rowsAsked = 0;
  let countsAsked = 0;

  async function refreshRows() {
    const asked = ++rowsAsked;
    const cursor = state.cursors.at(-1);
    const page = await api("/api/dashboard/tasks", {
      query: {
        table: which, status: state.status, backend: state.backend,
        order: state.order, limit: state.size, cursor,
      },
    });
    if (asked !== rowsAsked) return; // a newer request is on its way: this answer is stale
    const first = (state.cursors.length - 1) * state.size;
    total.textContent = page.total === 1 ? "1 task" : `${page.total.toLocaleString()} tasks`;
    rows.replaceChildren(...page.tasks.map((t) => taskRow(t, which)));
    if (!page.tasks.length) {
      rows.append(h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No tasks match.")));
    }
    state.next = page.next_cursor;
    performance.mark("uniqc:rows"); // user timing, read by benchmarks/dashboard.py
    prev.disabled = state.cursors.length === 1;
    next.disabled = !page.next_cursor;
    pageInfo.textContent = page.tasks.length
      ? `Page ${state.cursors.length}: ${first + 1}–${first + page.tasks.length} of ${page.total.toLocaleString()}`
      : `Page ${state.cursors.length}`;
  }

  async function refreshCounts() {
    const asked = ++countsAsked;
    const counts = await api("/api/dashboard/counts", { query: { table: which } });
    if (asked !== countsAsked) return;
    const backends = Object.keys(counts.backend).sort();
    if (state.backend && !backends.includes(state.backend)) backends.push(state.backend);
    backendSelect.replaceChildren(
      h("option", { value: "" }, "All backends"),
      ...backends.map((b) => h("option", { value: b, selected: b === state.backend }, b)),
    );
    charts.replaceChildren(
      bars("By status", counts.status, (s) => hashFor({ status: s })),
      bars("By backend", counts.backend, (b) => hashFor({ backend: b })),
    );
    performance.mark("uniqc:charts");
  }

  return { root, refresh };
}

function taskRow(task, which) {
  return h(
    "tr",
    {},
    h("td", {}, h("a", { href: `#/task/${encodeURIComponent(task.task_id)}`, class: "id" }, task.task_id)),
    h("td", {}, statusBadge(task.status)),
    h("td", { class: "backend" }, task.backend),
    h("td", { class: "wide num" }, String(task.shots)),
    h("td", {}, time(task.submit_time)),
    h("td", { class: "wide" }, time(which === "live" ? task.update_time : task.archived_at)),
  );
}

function expiredPanel(ctx) {
  const hours = h("input", { id: "expired-hours", type: "number", min: "0", step: "any", value: "72" });
  const terminal = h("input", { id: "expired-terminal", type: "checkbox", checked: true });
  const outcome = h("div", { id: "expired-outcome", role: "status" });
  const run = h("button", { type: "button", id: "expired-run", class: "danger", disabled: true }, "Archive");
  const query = () => ({ hours: hours.value || "0", terminal_only: terminal.checked });
  let checked = null;
  let count = 0;
  const invalidate = () => {
    run.disabled = true;
    run.textContent = "Archive";
    checked = null;
  };
  hours.addEventListener("input", invalidate);
  terminal.addEventListener("change", invalidate);

  const dryRun = () => ctx.run(async () => {
    const q = query();
    const found = await api("/api/dashboard/expired", { query: q });
    checked = JSON.stringify(q);
    count = found.count;
    const listed = found.task_ids.join(", ");
    const more = found.count > found.task_ids.length ? ` and ${found.count - found.task_ids.length} more` : "";
    outcome.textContent = found.count
      ? `Dry run: ${found.count} task(s) would be archived: ${listed}${more}.`
      : "Dry run: nothing would be archived.";
    run.disabled = found.count === 0;
    run.textContent = `Archive ${found.count} task(s)`;
  });
  const archive = () => ctx.run(async () => {
    const q = query();
    if (JSON.stringify(q) !== checked) return invalidate();
    const sure = await ctx.confirm(
      `Archive ${count} task(s) not updated for ${q.hours} hour(s)? They leave the live list; Restore brings one back.`,
      "Archive",
    );
    if (!sure) return;
    const done = await api("/api/tasks/archive-expired", { method: "POST", query: q });
    invalidate();
    outcome.textContent = `Archived ${done.count} task(s); skipped ${done.skipped_running_count} unfinished, ${done.skipped_conflicts_count} already archived.`;
    await ctx.refresh();
  });
  // The archive button acts only on the parameters of the last dry run.
  run.addEventListener("click", archive);

  return h(
    "details",
    { class: "panel", id: "expired" },
    h("summary", {}, "Archive expired tasks"),
    h(
      "form",
      { class: "filters", onsubmit: (e) => { e.preventDefault(); dryRun(); } },
      h("div", {}, h("label", { for: "expired-hours" }, "Not updated for (hours)"), hours),
      h("div", { class: "check" }, terminal, h("label", { for: "expired-terminal" }, "Finished tasks only")),
      h("div", { class: "actions" }, h("button", { type: "submit", id: "expired-dry-run" }, "Dry run"), run),
    ),
    outcome,
  );
}
