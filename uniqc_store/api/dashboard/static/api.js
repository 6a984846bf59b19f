// Talking to the store's /api: the bearer token (kept for this tab only),
// JSON requests, and the live-update stream.

const TOKEN_KEY = "uniqc-store-token";
// Where the app is served: this module is <root>/dashboard/api.js, so the API is under
// <root>/api/ whether the app sits at /, under a mount, a root_path or a proxy's prefix.
const ROOT = new URL("../", import.meta.url);

/** The URL of an API path ("/api/...") under the app's root. */
export function apiUrl(path) {
  return new URL(path.replace(/^\//, ""), ROOT);
}

/** Raised for a 401: the page asks for the token instead of breaking. */
export class AuthError extends Error {}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

// Sent with every request: the server refuses a write without it (or a JSON body, or a
// bearer token), because no page on another site can send it without asking first.
const OWN_REQUEST = { "X-Requested-With": "uniqc-store-dashboard" };

function headers(extra = {}) {
  const value = token.get();
  const own = { ...OWN_REQUEST, ...extra };
  return value ? { ...own, Authorization: `Bearer ${value}` } : own;
}

/** A failed call: its message is the status and the server's (masked) detail; `body`
 * is the whole answer (a 503 from a run stopped part-way has its `report`). */
export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/**
 * A JSON request to the API, with `body` (any JSON value) sent as JSON when given;
 * throws AuthError on 401, ApiError with the server's detail otherwise.
 */
export async function api(path, { method = "GET", query, body } = {}) {
  const url = apiUrl(path);
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const init = { method, headers: headers({ Accept: "application/json" }) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  if (response.status === 401) throw new AuthError("missing or wrong token");
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail);
    throw new ApiError(`${response.status}: ${detail ?? response.statusText}`, response.status, answer);
  }
  return answer;
}

/**
 * Follow /api/events (Server-Sent Events) until `signal` aborts.
 *
 * EventSource cannot send an Authorization header, so the stream is read with
 * fetch(): the token stays in a header and never appears in a URL or a log.
 * Calls onEvent(name) for each event and reconnects after a drop;
 * onState("live" | "reconnecting" | "auth") says how it is going.
 */
export async function followEvents({ signal, onEvent, onState }) {
  let delay = 1000;
  while (!signal.aborted) {
    try {
      const response = await fetch(apiUrl("/api/events"), { headers: headers(), signal });
      if (response.status === 401) {
        onState("auth");
        return;
      }
      if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
      onState("live");
      delay = 1000;
      await readEvents(response.body, onEvent);
    } catch (error) {
      if (signal.aborted) return;
    }
    onState("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const name = block.split("\n").find((line) => line.startsWith("event:"));
      if (name) onEvent(name.slice(6).trim());
    }
  }
}
