// A long text drawn a window at a time: only the lines in view, and a margin, are in
// the page, one element each; a spacer as tall as all the lines gives the scroll bar.
// Drawing the 150,000 lines of a 4 MB JSON value at once froze the page for seconds
// while the browser laid them out; this draws a few hundred whatever the size.

import { h } from "./dom.js";

/** Lines drawn above and below the view, so a short scroll redraws nothing. */
const MARGIN = 80;

/** The offset in `text` where each line starts, for finding which line a match is on. */
function lineStarts(lines) {
  const starts = new Float64Array(lines.length);
  let at = 0;
  lines.forEach((line, i) => {
    starts[i] = at;
    at += line.length + 1;
  });
  return starts;
}

/** The line holding offset `at`: the last start at or before it (binary search). */
function lineOf(starts, at) {
  let low = 0;
  let high = starts.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >> 1;
    if (starts[mid] <= at) low = mid;
    else high = mid - 1;
  }
  return low;
}

const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * `text` in a scrolling box that holds only the lines on screen. `state` (an object the
 * view keeps) carries the scroll position and the search across live refreshes; `label`
 * names the box for assistive technology; `key` lets the view give focus back.
 * Keyboard scrolling (arrows, PageUp/PageDown, Home/End) is the browser's own, on the
 * focused box, over the spacer's full height.
 */
export function lineWindow(text, { label, key, state = {} }) {
  const lines = text.split("\n");
  const starts = lineStarts(lines);
  const widest = lines.reduce((most, line) => Math.max(most, line.length), 0);
  const block = h("div", { class: "lines-block" });
  // One line of the box's font, never shown: its height is the line height, and a
  // change of it (zoom, font size) is seen by the ResizeObserver below.
  const probe = h("div", { class: "lines-probe", "aria-hidden": "true" }, "0");
  const spacer = h("div", { class: "lines-spacer" }, probe, block);
  spacer.style.minWidth = `${widest}ch`; // monospace: no sideways jump as lines come and go
  const count = lines.length.toLocaleString();
  const view = h("div", {
    class: "lines",
    tabindex: "0",
    role: "region",
    "aria-label": `${label}, ${count} lines (drawn as you scroll)`,
    "data-key": `${key}-lines`,
    "data-lines": lines.length,
  }, spacer);

  let height = 0; // one line's height in px, measured once laid out
  let from = 0; // the lines drawn: [from, to)
  let to = 0;
  let match = state.match ?? null; // the search's current hit: { line, column, length }

  /** Where the view is, in lines, not pixels: a redrawn view (a live refresh) or a
   * zoom can lay a line out a fraction of a pixel taller or shorter. */
  function remember() {
    if (!height) return;
    state.line = view.scrollTop / height;
    state.end = view.scrollTop + view.clientHeight >= view.scrollHeight - 1;
    state.left = view.scrollLeft;
  }

  /** Read the line height; when it is new, size the spacer and keep the same lines in view. */
  function measure() {
    const measured = probe.getBoundingClientRect().height; // fractional: no rounding drift
    if (!measured) return false; // not laid out (hidden): the next resize measures
    if (measured === height) return true;
    const first = !height;
    height = measured;
    view.style.setProperty("--line-height", `${height}px`);
    spacer.style.height = `${lines.length * height}px`;
    view.scrollTop = state.end ? view.scrollHeight : (state.line ?? 0) * height;
    if (first) view.scrollLeft = state.left ?? 0;
    return true;
  }

  function lineElement(index) {
    const line = lines[index];
    if (match?.line !== index) return h("div", {}, line);
    const end = match.column + match.length;
    return h(
      "div",
      {},
      line.slice(0, match.column),
      h("mark", {}, line.slice(match.column, end)),
      line.slice(end),
    );
  }

  /** Draw the lines in view unless they are drawn already (`force`: draw anyway). */
  function draw(force = false) {
    if (!height) return;
    const first = Math.floor(view.scrollTop / height);
    const last = Math.min(lines.length, Math.ceil((view.scrollTop + view.clientHeight) / height));
    if (!force && first >= from && last <= to) return;
    from = Math.max(0, first - MARGIN);
    to = Math.min(lines.length, last + MARGIN);
    block.style.transform = `translateY(${from * height}px)`;
    const drawn = document.createDocumentFragment();
    for (let i = from; i < to; i += 1) drawn.append(lineElement(i));
    block.replaceChildren(drawn);
  }

  // Fires once the box is laid out (so the first lines are drawn before the first
  // paint), when it changes size (more or fewer lines in view) and when the probe does
  // (a new line height).
  const resized = new ResizeObserver(() => {
    if (view.isConnected && measure()) draw(true);
  });
  resized.observe(view);
  resized.observe(probe);

  let pending = false;
  view.addEventListener("scroll", () => {
    remember();
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      draw();
    });
  });

  /** Go to the next match of `query` after the current one (case-insensitive), wrapping. */
  function findNext(query) {
    if (!query) return "";
    const pattern = new RegExp(escapeRegExp(query), "giu");
    const after = match ? starts[match.line] + match.column + 1 : 0;
    pattern.lastIndex = after;
    let found = pattern.exec(text);
    const wrapped = !found && after > 0;
    if (!found) {
      pattern.lastIndex = 0;
      found = pattern.exec(text);
    }
    if (!found) {
      match = null;
      draw(true);
      return `No match for “${query}”.`;
    }
    const line = lineOf(starts, found.index);
    match = { line, column: found.index - starts[line], length: found[0].length };
    view.scrollTop = line * height - (view.clientHeight - height) / 2;
    draw(true);
    block.querySelector("mark")?.scrollIntoView({ block: "nearest", inline: "nearest" });
    const where = `Line ${(line + 1).toLocaleString()} of ${count}`;
    return wrapped ? `${where} (from the top again).` : `${where}.`;
  }

  const query = h("input", {
    type: "search",
    id: `${key}-find`,
    "data-key": `${key}-find`,
    autocomplete: "off",
    spellcheck: "false",
  });
  query.value = state.query ?? "";
  const status = h("span", { class: "muted", role: "status" }, state.status ?? "");
  const form = h(
    "form",
    { class: "joined lines-find", role: "search", "aria-label": `Find in ${label}` },
    h("label", { for: `${key}-find` }, "Find in value"),
    query,
    h("button", { type: "submit", "data-key": `${key}-next` }, "Next"),
    status,
  );
  query.addEventListener("input", () => {
    state.query = query.value;
    if (!match) return;
    match = state.match = null; // a new search starts from the top
    draw(true);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    status.textContent = state.status = findNext(query.value);
    state.match = match;
  });
  const note = h(
    "p",
    { class: "muted lines-note" },
    "Only the lines on screen are in the page, so the browser's own Find (Ctrl+F) and " +
      "Select all see only those: use Find in value, or Copy / Download for the whole value.",
  );
  return h("div", { class: "lines-wrap" }, form, note, view);
}
