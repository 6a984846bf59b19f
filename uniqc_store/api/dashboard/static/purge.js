// Purging old archived tasks for good (POST /api/archive/purge), in the archive
// view. A dry run comes first and says what would go; the Purge button acts only on
// that dry run's parameters, asks in a dialog, checks that the dry run still holds,
// and then deletes. The age is pinned to the moment of the dry run, so the minutes
// spent reading it do not let more tasks age into the purge.

import { api } from "./api.js";
import { h, time } from "./dom.js";

const HOURS_PER = { days: 24, hours: 1 };
const MS_PER_HOUR = 3_600_000;
const IDS_SHOWN = 20;

const plural = (n, word, many = `${word}s`) => `${n.toLocaleString()} ${n === 1 ? word : many}`;

/** The part of a report that must not change between the dry run and the purge. */
const dueOf = (report) => JSON.stringify([report.tasks, report.shards, report.task_ids]);

function dryRunText(report, ask) {
  const kept = ask.keep_last ? ` (the newest ${plural(ask.keep_last, "archived task")} kept)` : "";
  if (!report.tasks) return ["Dry run: nothing archived before ", time(ask.cutoff), ` would be deleted${kept}.`];
  const shown = report.task_ids.slice(0, IDS_SHOWN);
  const more = report.tasks - shown.length;
  return [
    `Dry run: ${plural(report.tasks, "archived task")} (${plural(report.shards, "shard")}) `,
    "archived before ", time(ask.cutoff), ` would be deleted${kept}: `,
    h("span", { class: "id" }, shown.join(", ")),
    more ? ` and ${more.toLocaleString()} more.` : ".",
  ];
}

export function purgePanel(ctx) {
  const age = h("input", {
    id: "purge-age", type: "number", min: "0", step: "any", value: "30", required: true,
  });
  const unit = h(
    "select",
    { id: "purge-unit" },
    h("option", { value: "days", selected: true }, "days"),
    h("option", { value: "hours" }, "hours"),
  );
  const keep = h("input", { id: "purge-keep", type: "number", min: "0", step: "1", value: "0" });
  const outcome = h("div", { id: "purge-outcome", role: "status" });
  const purge = h("button", { type: "button", id: "purge-run", class: "danger", disabled: true }, "Purge");
  let checked = null; // the last dry run: what was asked, when, and its report

  const invalidate = () => {
    purge.disabled = true;
    purge.textContent = "Purge";
    checked = null;
  };
  // A dry run made with other parameters says nothing about these: it goes.
  for (const input of [age, unit, keep]) {
    input.addEventListener("input", () => {
      invalidate();
      outcome.replaceChildren();
    });
  }

  /** The request the form describes, and the moment its age counts from. */
  const asked = () => {
    const hours = Number(age.value) * HOURS_PER[unit.value];
    return {
      older_than_hours: hours,
      keep_last: Number(keep.value) || 0,
      at: performance.now(),
      cutoff: new Date(Date.now() - hours * MS_PER_HOUR).toISOString(),
    };
  };
  /** The body of a call made now for the dry run `ask`: the same cutoff, so the same age. */
  const bodyFor = (ask, dryRun) => ({
    older_than_hours: ask.older_than_hours + (performance.now() - ask.at) / MS_PER_HOUR,
    keep_last: ask.keep_last,
    dry_run: dryRun,
  });
  const show = (ask, report) => {
    checked = { ask, report };
    outcome.replaceChildren(...dryRunText(report, ask));
    purge.disabled = report.tasks === 0;
    purge.textContent = `Purge ${plural(report.tasks, "task")}…`;
  };

  const dryRun = () => ctx.run(async () => {
    const ask = asked();
    show(ask, await api("/api/archive/purge", { method: "POST", body: bodyFor(ask, true) }));
  });

  const run = () => ctx.run(async () => {
    if (!checked) return;
    const { ask, report } = checked;
    const sure = await ctx.confirm(
      `Delete ${plural(report.tasks, "archived task")} and their ${plural(report.shards, "shard")} for good? This cannot be undone.`,
      "Purge",
    );
    if (!sure || checked?.ask !== ask) return; // cancelled, or the form changed meanwhile
    const again = await api("/api/archive/purge", { method: "POST", body: bodyFor(ask, true) });
    if (dueOf(again) !== dueOf(report)) { // restored, deleted or archived meanwhile
      show(ask, again);
      outcome.prepend("The archive changed since the dry run; nothing was deleted. ");
      return;
    }
    let done;
    try {
      done = await api("/api/archive/purge", { method: "POST", body: bodyFor(ask, false) });
    } catch (error) {
      const partial = error.body?.report;
      if (partial) { // a batch failed: the ones before it are gone
        invalidate();
        outcome.textContent = `Stopped by an error after deleting ${plural(partial.tasks, "task")} and ${plural(partial.shards, "shard")}.`;
        await ctx.refresh();
      }
      throw error;
    }
    invalidate();
    outcome.textContent = `Purged ${plural(done.tasks, "archived task")} and ${plural(done.shards, "shard")} in ${plural(done.batches, "batch", "batches")}.`;
    await ctx.refresh();
  });
  purge.addEventListener("click", run);

  return h(
    "details",
    { class: "panel", id: "purge" },
    h("summary", {}, "Purge old archived tasks…"),
    h("p", { class: "muted" }, "Deletes archived tasks and their shards for good. A dry run comes first."),
    h(
      "form",
      { class: "filters", onsubmit: (e) => { e.preventDefault(); dryRun(); } },
      h(
        "div",
        {},
        h("label", { for: "purge-age" }, "Archived more than"),
        h("span", { class: "joined" }, age, h("label", { for: "purge-unit", class: "visually-hidden" }, "Unit"), unit, " ago"),
      ),
      h("div", {}, h("label", { for: "purge-keep" }, "Always keep the newest"), keep),
      h("div", { class: "actions" }, h("button", { type: "submit", id: "purge-dry-run" }, "Dry run"), purge),
    ),
    outcome,
  );
}
