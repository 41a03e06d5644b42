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
    // Retrying cannot help: bad request, no or wrong invite/key, no such room, room full or ended.
    this.permanent = [400, 401, 403, 404, 409, 410].includes(status);
  }
}

async function call(method, path, body, key) {
  let res;
  const headers = body ? { "Content-Type": "application/json" } : {};
  if (key) headers.Authorization = `Bearer ${key}`;
  try {
    res = await fetch(apiBase() + path, {
      method,
      headers,
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

/** -> {roomId, name, validUntil, hostKey, invites: {speaker, listener}} (the secrets only once). */
export const createRoom = (name) => call("POST", "/api/rooms", name ? { name } : {});
/** Joins with an invite (the role comes from it) or, to come back as the same member, a memberKey. */
export const joinRoom = (roomId, { displayName, language, hear, invite, memberKey }) =>
  call("POST", `/api/rooms/${encodeURIComponent(roomId)}/join`, { displayName, language, hear, invite, memberKey });
/** Host key or member key: only they may see who is inside. */
export const getRoom = (roomId, key) => call("GET", `/api/rooms/${encodeURIComponent(roomId)}`, undefined, key);
export const closeRoom = (roomId, hostKey) =>
  call("POST", `/api/rooms/${encodeURIComponent(roomId)}/close`, undefined, hostKey);
export const removeMember = (roomId, userId, hostKey) =>
  call("DELETE", `/api/rooms/${encodeURIComponent(roomId)}/members/${encodeURIComponent(userId)}`, undefined, hostKey);

/** The invite in a link's fragment (#invite=...): fragments never reach a server or its logs. */
export function parseInvite(text) {
  const t = (text || "").trim();
  const i = t.indexOf("#");
  if (i < 0) return "";
  return new URLSearchParams(t.slice(i + 1)).get("invite") || "";
}

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

/** A link that opens the room with an invite: ?room=ID for people, #invite=SECRET for the page only. */
export function roomLink(roomId, invite) {
  const u = new URL(location.href);
  u.search = "";
  u.hash = "";
  u.searchParams.set("room", roomId);
  if (invite) u.hash = new URLSearchParams({ invite }).toString();
  return u.toString();
}
