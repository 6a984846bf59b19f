// A JSON value on the task page: indented; a long one first as its start, then
// ("Show all") in a window that draws only the lines on screen; Copy and Download
// for the whole value.

import { h } from "./dom.js";
import { lineWindow } from "./lines.js";

/** How much of a JSON value is drawn at first: a 4 MB result is 150,000 lines; its
 * start comes at once, the rest is one click away ("Show all"), a copy or a download. */
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
 * A JSON value, indented. Above JSON_PREVIEW characters only its start is drawn, with
 * "Show all" (the windowed view: lines.js) and "Copy JSON" (where the browser offers
 * a clipboard: secure contexts only); `download` (a file name) adds "Download JSON"
 * for the whole value. `key` names the block and `shown` (a Map kept by the view)
 * remembers "Show all", the scroll position and the search across live refreshes;
 * `label` names the value ("Result").
 */
export function json(value, { key, label = key, download, shown } = {}) {
  const text = JSON.stringify(value, null, 2) ?? "null";
  const long = text.length > JSON_PREVIEW;
  if (!long && !download) return h("pre", { class: "json", tabindex: "0" }, text);
  const windowed = () => lineWindow(text, { label, key, state: shown?.get(key) ?? {} });
  const content = !long
    ? h("pre", { class: "json", tabindex: "0" }, text)
    : shown?.has(key)
      ? windowed()
      : h("pre", { class: "json long", tabindex: "0" }, text.slice(0, JSON_PREVIEW));
  const controls = h("div", { class: "actions json-actions" });
  const bytes = long ? new Blob([text]).size : 0;
  if (long && !shown?.has(key)) {
    const note = h("p", { class: "muted" }, `Showing the first ${size(JSON_PREVIEW)} of ${size(bytes)}.`);
    const all = h("button", { type: "button", "data-key": `${key}-all` }, `Show all (${size(bytes)})`);
    all.addEventListener("click", () => {
      shown?.set(key, {});
      const view = windowed();
      content.replaceWith(view);
      note.remove();
      all.remove();
      view.querySelector(".lines").focus(); // the button is gone: the keyboard goes on from here
    });
    controls.append(note, all);
  }
  if (long && navigator.clipboard?.writeText) {
    const copied = h("span", { class: "muted", role: "status" });
    const copy = h("button", { type: "button", "data-key": `${key}-copy` }, "Copy JSON");
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(text);
        copied.textContent = `Copied ${size(bytes)}.`;
      } catch (error) {
        copied.textContent = `Not copied: ${error.message}`;
      }
    });
    controls.append(copy, copied);
  }
  if (download) {
    const save = h("button", { type: "button", "data-key": `${key}-download` }, "Download JSON");
    save.addEventListener("click", () => saveAs(text, download));
    controls.append(save);
  }
  return h("div", { class: "json-block", "data-json": key }, content, controls);
}
