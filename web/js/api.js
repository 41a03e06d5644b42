/**
 * The babelroom HTTP API (docs/protocol.md §1), same in Azure and the twin.
 *
 * Why a base URL from a meta tag: deployed as static files the API may live on another origin
 * (`<meta name="babelroom-api" content="https://...">`); empty means this origin.
 */

export const LANGUAGES = Object.freeze({
  en: "English",
  es: "Español",
  pt: "Português",
  fr: "Français",
  de: "Deutsch",
});

export function apiBase() {
  const meta = document.querySelector('meta[name="babelroom-api"]');
  return (meta?.content || "").replace(/\/$/, "");
}

/** An API failure; `permanent` when retrying cannot help (room unknown or expired, bad request). */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code || (status ? "http_" + status : "network");
    this.permanent = status === 400 || status === 404 || status === 410;
  }
}

async function call(method, path, body) {
  let res;
  try {
    res = await fetch(apiBase() + path, {
      method,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (e) {
    throw new ApiError(0, { error: { code: "network", message: `cannot reach the server (${e.message})` } });
  }
  let data = null;
  try { data = await res.json(); } catch { /* empty body */ }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const createRoom = (name) => call("POST", "/api/rooms", name ? { name } : {});
export const joinRoom = (roomId, { displayName, language, hear, role }) =>
  call("POST", `/api/rooms/${encodeURIComponent(roomId)}/join`, { displayName, language, hear, role });
export const getRoom = (roomId) => call("GET", `/api/rooms/${encodeURIComponent(roomId)}`);

/** Accepts a bare id or any link carrying ?room=ID (or a path ending in the id). */
export function parseRoomInput(text) {
  const t = (text || "").trim();
  if (!t) return "";
  try {
    const u = new URL(t);
    const q = u.searchParams.get("room");
    if (q) return q.trim();
    const last = u.pathname.split("/").filter(Boolean).pop();
    return last || "";
  } catch {
    return t.replace(/^.*[?&]room=/, "").replace(/[&#].*$/, "");
  }
}

export function roomLink(roomId) {
  const u = new URL(location.href);
  u.search = "";
  u.hash = "";
  u.searchParams.set("room", roomId);
  return u.toString();
}
