// The dashboard's shell: routing by URL hash, the token prompt, the footer,
// and live refreshes driven by /api/events.

import { api, AuthError, followEvents, token } from "./api.js";
import { taskView } from "./task.js";
import { tasksView } from "./tasks.js";

const $ = (id) => document.getElementById(id);
let view = null;
let events = null;
let refreshTimer = null;

/** What a view may do: run an action with error handling, confirm, announce, refresh. */
const ctx = {
  run,
  refresh: () => view?.refresh(),
  announce: (text) => showAlert(text, "note"),
  confirm,
};

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
  $("auth-reason").firstChild.textContent = hadToken
    ? "The server refused that token. "
    : "The server was started with ";
  $("auth-token").focus();
}

function confirm(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
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
  if (name === "task" && rest.length) {
    view = taskView(decodeURIComponent(rest.join("/")), ctx);
  } else {
    view = tasksView(name === "archived" ? "archived" : "live", params, ctx);
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    const current = link.dataset.nav === (name === "archived" ? "archived" : "live") && name !== "task";
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
$("forget-token").addEventListener("click", () => {
  token.clear();
  location.reload();
});
window.addEventListener("hashchange", () => {
  route();
  $("main").focus();
});
boot();
