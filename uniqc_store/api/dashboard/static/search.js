// The search: tasks, live and archived, whose id starts with what was typed, and
// tasks with a shard whose platform id is exactly that (GET /api/dashboard/search).

import { api } from "./api.js";
import { h, statusBadge, time } from "./dom.js";

const MATCHED = { task_id: "task id", platform_task_id: "platform id" };

export function searchView(q, ctx) {
  const list = h("div", { id: "search-results" }, h("p", { role: "status", class: "muted" }, "Searching…"));
  const root = h(
    "section",
    { "aria-labelledby": "view-title" },
    h("h2", { id: "view-title" }, "Search"),
    h("p", { class: "muted" }, "Tasks whose id starts with ", h("code", {}, q), " and tasks with a shard whose platform id is ", h("code", {}, q), ", live and archived."),
    list,
  );

  async function refresh() {
    if (!q) {
      list.replaceChildren(h("p", {}, "Type a task id (or its start) or a platform id above."));
      return;
    }
    const found = await api("/api/dashboard/search", { query: { q } });
    const more = found.more
      ? h("p", { class: "muted", id: "search-more" }, `Only the first ${found.limit} matches of each kind are shown: type more of the id.`)
      : null;
    list.replaceChildren(
      found.tasks.length ? resultTable(found.tasks) : h("p", { id: "search-none" }, "No task matches."),
      ...(more ? [more] : []),
    );
  }

  return { root, refresh };
}

function resultTable(found) {
  const head = ["Task", "Where", "Matched by", "Status", "Backend", "Submitted"];
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "tasks" },
      h("thead", {}, h("tr", {}, head.map((label) => h("th", { scope: "col" }, label)))),
      h(
        "tbody",
        {},
        found.map((t) => h(
          "tr",
          {},
          h("td", {}, h("a", { href: `#/task/${encodeURIComponent(t.task_id)}`, class: "id" }, t.task_id)),
          h("td", {}, t.table === "archived" ? "Archive" : "Live"),
          h("td", {}, MATCHED[t.matched] ?? t.matched),
          h("td", {}, statusBadge(t.status)),
          h("td", { class: "backend" }, t.backend),
          h("td", {}, time(t.submit_time)),
        )),
      ),
    ),
  );
}
