// One task: its fields, archive state, shards, metadata and result (redacted
// by the server), and the actions: archive or restore, delete.

import { api } from "./api.js";
import { h, statusBadge, time } from "./dom.js";
import { json } from "./json.js";

const FIELDS = [
  ["Backend", (t) => t.backend],
  ["Status", (t) => statusBadge(t.status)],
  ["Shots", (t) => String(t.shots)],
  ["Submitted", (t) => time(t.submit_time)],
  ["Updated", (t) => time(t.update_time)],
];

/** A file name for a download: the task id with anything a file system may refuse replaced. */
const fileName = (taskId, what) => `${taskId.replace(/[^\w.-]+/g, "_")}.${what}.json`;

export function taskView(taskId, ctx) {
  // Shown until the task arrives: a large result takes a moment to come and be read.
  const body = h("div", {}, h("p", { role: "status", class: "muted", id: "task-loading" }, "Loading task…"));
  const shown = new Map(); // the JSON blocks opened whole ("Show all"): their scroll and search, kept across refreshes
  const back = h("a", { href: "#/live" }, "← Live tasks");
  const root = h(
    "section",
    { "aria-labelledby": "view-title" },
    h("p", {}, back),
    h("h2", { id: "view-title", class: "id" }, taskId),
    body,
  );
  const path = encodeURIComponent(taskId);
  let drawn = null; // the answer the view shows, as JSON text

  async function refresh() {
    let found;
    try {
      found = await api(`/api/dashboard/task/${path}`);
    } catch (error) {
      if (!String(error.message).startsWith("404")) throw error;
      body.replaceChildren(h("p", { role: "status" }, "This task no longer exists (deleted)."));
      drawn = null;
      return;
    }
    // A refresh that brings nothing new (another task changed) leaves the view as it is,
    // with its selection, its scroll and its search.
    const seen = JSON.stringify(found);
    if (seen === drawn) return;
    drawn = seen;
    // A live refresh rebuilds the view: keep the keyboard focus on the same control.
    const focused = document.activeElement?.dataset?.key;
    body.replaceChildren(...render(found).filter(Boolean));
    if (focused) body.querySelector(`[data-key="${focused}"]`)?.focus();
    back.href = found.archived ? "#/archived" : "#/live";
    back.textContent = found.archived ? "← Archive" : "← Live tasks";
  }

  function render({ task, shards, archived }) {
    const move = archived
      ? h("button", { type: "button", id: "task-restore", "data-key": "move" }, "Restore")
      : h("button", { type: "button", id: "task-archive", "data-key": "move" }, "Archive");
    move.addEventListener("click", () => ctx.run(async () => {
      const url = archived ? `/api/archive/restore/${path}` : `/api/tasks/${path}/archive`;
      await api(url, { method: "POST" });
      ctx.announce(archived ? "Task restored." : "Task archived.");
      await refresh();
    }));
    const remove = h("button", { type: "button", id: "task-delete", class: "danger", "data-key": "delete" }, "Delete…");
    remove.addEventListener("click", () => ctx.run(async () => {
      const sure = await ctx.confirm(
        `Delete task ${taskId} and its ${shards.length} shard(s)? This cannot be undone.`,
        "Delete",
      );
      if (!sure) return;
      await api(archived ? `/api/archive/${path}` : `/api/tasks/${path}`, { method: "DELETE" });
      ctx.announce(`Deleted ${taskId}.`, { keep: true }); // shown on the list it goes back to
      location.hash = archived ? "#/archived" : "#/live";
    }));
    const state = archived
      ? h("p", { class: "state", id: "task-state" }, "Archived ", time(task.archived_at))
      : h("p", { class: "state", id: "task-state" }, "Live");
    return [
      state,
      h("div", { class: "actions" }, move, remove),
      h("dl", { class: "fields" }, FIELDS.flatMap(([label, get]) => [h("dt", {}, label), h("dd", {}, get(task))])),
      task.error_message ? h("div", {}, h("h3", {}, "Error"), h("pre", { class: "json" }, task.error_message)) : null,
      h("h3", {}, `Shards (${shards.length})`),
      shards.length ? shardTable(shards) : h("p", { class: "muted" }, "No shards."),
      h("h3", {}, "Metadata"),
      json(task.metadata, { key: "metadata", label: "Metadata", shown }),
      h("h3", {}, "Result"),
      json(task.result, { key: "result", label: "Result", shown, download: fileName(taskId, "result") }),
    ];
  }

  return { root, refresh };
}

function shardTable(shards) {
  const head = ["#", "Platform task", "Backend", "Status", "Circuits", "Updated"];
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, head.map((label) => h("th", { scope: "col" }, label)))),
      h(
        "tbody",
        {},
        shards.map((s) => h(
          "tr",
          {},
          h("td", { class: "num" }, String(s.shard_index)),
          h("td", { class: "id" }, s.platform_task_id),
          h("td", {}, s.backend),
          h("td", {}, statusBadge(s.status)),
          h("td", { class: "num" }, String(s.circuit_count)),
          h("td", {}, time(s.update_time)),
        )),
      ),
    ),
  );
}
