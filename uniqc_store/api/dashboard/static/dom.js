// Small DOM helpers. Text goes in through textContent only, never as HTML,
// so nothing a task holds can become markup.

/** h("a", {href: "#"}, "text", child) -> element; attributes starting with "on" are listeners. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return element;
}

const OFFSET = /([zZ]|[+-]\d\d:?\d\d)$/;

/** A <time> in the viewer's local time, with UTC in its title; stored text if unparseable. */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const date = new Date(OFFSET.test(iso) ? iso : `${iso}Z`);
  if (Number.isNaN(date.getTime())) return h("span", {}, iso);
  const utc = date.toISOString();
  return h(
    "time",
    { datetime: utc, title: `UTC ${utc.replace("T", " ").replace(/\.\d+Z$/, "")}` },
    date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" }),
  );
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}

/** Horizontal bars (CSS widths, no library) with a label and a number per row. */
export function bars(label, counts, link) {
  const max = Math.max(1, ...Object.values(counts));
  const items = Object.entries(counts).map(([name, n]) => {
    const fill = h("span", { class: `fill status-${name}` });
    fill.style.width = `${(100 * n) / max}%`;
    return h(
      "li",
      {},
      h("a", { href: link(name), class: "bar-label" }, name),
      h("span", { class: "track", "aria-hidden": "true" }, fill),
      h("span", { class: "bar-count" }, n.toLocaleString()),
    );
  });
  return h(
    "figure",
    { class: "chart" },
    h("figcaption", {}, label),
    items.length ? h("ul", { class: "bars" }, items) : h("p", { class: "muted" }, "No tasks"),
  );
}

/** How much of a JSON value is drawn at first: a 4 MB result drawn whole is 150,000 lines
 * and seconds of a frozen page; the rest is one click away ("Show all") or a download. */
export const JSON_PREVIEW = 64 * 1024;

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** Save `text` as a file named `name` (a Blob: nothing goes back to the server). */
function saveAs(text, name) {
  const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * A JSON value, indented. Above JSON_PREVIEW characters only its start is drawn,
 * with "Show all"; `download` (a file name) adds a "Download JSON" button for the
 * whole value; `key` names the block so `shown` (a Set kept by the view) remembers
 * "Show all" across live refreshes.
 */
export function json(value, { key, download, shown } = {}) {
  const text = JSON.stringify(value, null, 2) ?? "null";
  const whole = text.length <= JSON_PREVIEW || shown?.has(key);
  const long = text.length > JSON_PREVIEW;
  const pre = h("pre", { class: long ? "json long" : "json", tabindex: "0" }, whole ? text : text.slice(0, JSON_PREVIEW));
  if (whole && !download) return pre;
  const controls = h("div", { class: "actions json-actions" });
  if (!whole) {
    const bytes = new Blob([text]).size;
    const all = h("button", { type: "button", "data-key": `${key}-all` }, `Show all (${size(bytes)})`);
    all.addEventListener("click", () => {
      pre.textContent = text;
      shown?.add(key);
      note.remove();
      all.remove();
    });
    const note = h("p", { class: "muted" }, `Showing the first ${size(JSON_PREVIEW)} of ${size(bytes)}.`);
    controls.append(note, all);
  }
  if (download) {
    const save = h("button", { type: "button", "data-key": `${key}-download` }, "Download JSON");
    save.addEventListener("click", () => saveAs(text, download));
    controls.append(save);
  }
  return h("div", { class: "json-block", "data-json": key }, pre, controls);
}
