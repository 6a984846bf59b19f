// The dashboard's shell: routing by URL hash (the tab, its filters and page, the task
// or the search: so back/forward and shared links work), the token prompt, the
// search box, the footer, and live refreshes driven by /api/events.

import { api, AuthError, followEvents, token } from "./api.js";
import { h } from "./dom.js";
import { searchView } from "./search.js";
import { taskView } from "./task.js";
import { tasksView } from "./tasks.js";

const $ = (id) => document.getElementById(id);
let view = null;
let events = null;
let refreshTimer = null;
// A notice outlives the next route only when asked to ("Deleted ..." on the list it
// returns to); any other move clears it, so it never stands over a page it is not about.
let keepNotice = false;

/** What a view may do: run an action with error handling, confirm, announce, refresh,
 * and record its state in the URL (a new history entry, so Back returns to it). */
const ctx = {
  run,
  refresh: () => view?.refresh(),
  announce: (text, { keep = false } = {}) => {
    showAlert(text, "note");
    keepNotice = keep;
  },
  confirm,
  navigate,
};

function navigate(hash, state) {
  if (hash === location.hash) history.replaceState(state, "", hash);
  else history.pushState(state, "", hash);
}

function showAlert(text, kind = "error") {
  const alert = $("alert");
  alert.textContent = text;
  alert.className = `alert ${kind}`;
  alert.hidden = false;
}

/** Run fn; a 401 brings up the token prompt, any other failure a message: never a broken page. */
async function run(fn) {
  try {
    await fn();
    if ($("alert").classList.contains("error")) $("alert").hidden = true;
  } catch (error) {
    if (error instanceof AuthError) showAuth();
    else showAlert(error.message);
  }
}

function showAuth() {
  if (!$("auth").hidden) return; // already asking (several calls can fail at once)
  const hadToken = Boolean(token.get());
  token.clear();
  stopEvents();
  $("view").hidden = true;
  $("auth").hidden = false;
  $("forget-token").hidden = true;
  $("live-state").textContent = "Locked";
  const variable = h("code", {}, "UNIQC_STORE_API_TOKEN");
  $("auth-why").replaceChildren(
    ...(hadToken
      ? ["The server refused that token. Enter the token it was started with (", variable, ") to continue."]
      : ["The server was started with ", variable, ". Enter that token to continue."]),
  );
  $("auth-token").focus();
}

/** Ask first; `action` names the button that goes ahead (the other one is Cancel). */
function confirm(text, action = "OK") {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = action;
  dialog.returnValue = "cancel";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

function route() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const params = new URLSearchParams(query);
  const [name, ...rest] = path.split("/");
  if (!keepNotice) $("alert").hidden = true;
  keepNotice = false;
  const tab = name === "archived" ? "archived" : "live";
  if (name === "task" && rest.length) {
    view = taskView(decodeURIComponent(rest.join("/")), ctx);
  } else if (name === "search") {
    view = searchView(params.get("q") ?? "", ctx);
    $("search-q").value = params.get("q") ?? "";
  } else {
    view = tasksView(tab, params, history.state, ctx);
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    const current = link.dataset.nav === tab && name !== "task" && name !== "search";
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  $("view").replaceChildren(view.root);
  return run(view.refresh);
}

async function loadFooter() {
  const info = await api("/api/dashboard/info");
  $("schema").textContent = `Schema version ${info.schema_version} of ${info.current_schema_version}`;
  $("database").textContent = info.database;
  $("forget-token").hidden = !token.get();
}

function onEvent(name) {
  if (name !== "change" && name !== "ready") return;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => view && run(view.refresh), 200);
}

function startEvents() {
  stopEvents();
  events = new AbortController();
  const labels = { live: "● Live", reconnecting: "Reconnecting…", auth: "Locked" };
  followEvents({
    signal: events.signal,
    onEvent,
    onState: (state) => {
      $("live-state").textContent = labels[state];
      if (state === "auth") showAuth();
    },
  });
}

function stopEvents() {
  events?.abort();
  events = null;
}

async function boot() {
  $("auth").hidden = true;
  $("view").hidden = false;
  // The footer and the view load side by side; either one's 401 shows the prompt.
  await Promise.all([run(loadFooter), route()]);
  if (!$("auth").hidden) return;
  startEvents();
}

$("auth-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token.set($("auth-token").value);
  $("auth-token").value = "";
  boot();
});
$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("search-q").value.trim();
  if (!q) return;
  const hash = `#/search?${new URLSearchParams({ q })}`;
  if (hash === location.hash) route(); // the same search again: no hashchange, so run it here
  else location.hash = hash;
});
$("forget-token").addEventListener("click", () => {
  token.clear();
  location.reload();
});
window.addEventListener("hashchange", () => {
  route();
  $("main").focus();
});
boot();
