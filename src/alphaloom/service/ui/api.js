// The one door to the service: a fetch wrapper that adds the bearer token, turns error bodies
// ({"detail": ...}) into ApiError, and sends the user back to the login form on 401.
// Only the short-lived token lives in sessionStorage; the API key never leaves the login form.

export const API = "/api/v1";
const TOKEN_KEY = "alphaloom.token";

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.body = body;
  }
}

const listeners = { unauthorized: [] };

export function onUnauthorized(fn) {
  listeners.unauthorized.push(fn);
}

export function session() {
  const raw = sessionStorage.getItem(TOKEN_KEY);
  if (!raw) return null;
  try {
    const s = JSON.parse(raw);
    if (s.expires_at && Date.parse(s.expires_at) <= Date.now()) {
      sessionStorage.removeItem(TOKEN_KEY);
      return null;
    }
    return s;
  } catch {
    sessionStorage.removeItem(TOKEN_KEY);
    return null;
  }
}

export function clearSession() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// Exchange an API key for a token. The key is sent once, in a header, and then forgotten.
export async function login(apiKey) {
  const resp = await fetch(`${API}/auth/token`, {
    method: "POST",
    headers: { "X-API-Key": apiKey, Accept: "application/json" },
  });
  const body = await readBody(resp);
  if (!resp.ok) throw new ApiError(resp.status, detailOf(body, resp), body);
  if (!body || typeof body.token !== "string") {
    throw new ApiError(resp.status, "the service answered without a token; is this an alphaloom service?", body);
  }
  const s = { token: body.token, expires_at: body.expires_at ?? null, role: body.role ?? null };
  sessionStorage.setItem(TOKEN_KEY, JSON.stringify(s));
  return s;
}

function detailOf(body, resp) {
  if (body && typeof body === "object" && "detail" in body) {
    const d = body.detail;
    if (Array.isArray(d)) {
      // FastAPI validation errors: [{loc, msg, type}, ...]
      return d.map((e) => (e && e.msg ? `${(e.loc || []).join(".")}: ${e.msg}` : JSON.stringify(e))).join("; ");
    }
    return d;
  }
  if (typeof body === "string" && body.trim()) return body.trim().slice(0, 500);
  return `${resp.status} ${resp.statusText || "error"}`;
}

async function readBody(resp) {
  const type = resp.headers.get("content-type") || "";
  if (resp.status === 204) return null;
  if (type.includes("application/json")) {
    try {
      return await resp.json();
    } catch {
      return null;
    }
  }
  return await resp.text();
}

// Call the API. `opts.body` is JSON-encoded; `opts.raw` returns the Response (for files).
export async function api(path, opts = {}) {
  const s = session();
  if (!s) {
    listeners.unauthorized.forEach((fn) => fn("Please sign in."));
    throw new ApiError(401, "not signed in");
  }
  const headers = { Authorization: `Bearer ${s.token}`, Accept: "application/json" };
  const init = { method: opts.method || "GET", headers };
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  let resp;
  try {
    resp = await fetch(path.startsWith("/") ? path : `${API}/${path}`, init);
  } catch (exc) {
    throw new ApiError(0, `the service cannot be reached (${exc.message}); is it running?`);
  }
  if (resp.status === 401) {
    const body = await readBody(resp);
    clearSession();
    const why = detailOf(body, resp);
    listeners.unauthorized.forEach((fn) => fn(`Signed out: ${why}`));
    throw new ApiError(401, why, body);
  }
  if (opts.raw && resp.ok) return resp;
  const body = await readBody(resp);
  if (!resp.ok) throw new ApiError(resp.status, detailOf(body, resp), body);
  return body;
}

// A WebSocket to /api/v1/ws/<name> that authenticates with ?token=, reconnects with back-off while the
// session lasts, and reports its state through onState("open" | "closed" | "refused"). The service's
// own "hello" and "error" messages are reported as states, not passed on as events.
export function liveSocket(name, onMessage, onState = () => {}) {
  let ws = null;
  let stopped = false;
  let delay = 500;
  let timer = null;
  const connect = () => {
    const s = session();
    if (!s || stopped) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}${API}/ws/${name}?token=${encodeURIComponent(s.token)}`);
    ws.addEventListener("message", (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg.type === "hello") {
        delay = 500;
        onState("open");
      } else if (msg.type === "error") {
        onState("refused", msg.data?.detail);
      } else {
        onMessage(msg);
      }
    });
    ws.addEventListener("close", (ev) => {
      // 1008: the credential was refused; retrying with the same token cannot help.
      if (ev.code === 1008) stopped = true;
      onState("closed");
      if (!stopped) {
        timer = setTimeout(connect, delay);
        delay = Math.min(delay * 2, 10000);
      }
    });
  };
  connect();
  return {
    close() {
      stopped = true;
      clearTimeout(timer);
      if (ws) ws.close();
    },
  };
}
