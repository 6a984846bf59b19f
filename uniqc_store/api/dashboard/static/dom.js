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
