/**
 * Wires the page together: lobby -> join -> room, the Web PubSub client, push-to-talk and playback.
 *
 * Why one small controller: every module stays testable alone; this file only decides what
 * happens when (joining, leaving, /join, reconnecting as a new member) and exposes
 * `window.babelroom` so end-to-end tests can read counters from inside the page.
 */

import * as api from "./api.js";
import { Capture } from "./capture.js";
import { Lobby, loadPrefs, savePrefs } from "./lobby.js";
import { Player } from "./playback.js";
import { PushToTalk } from "./ptt.js";
import { RoomView } from "./room.js";
import { Talk } from "./talk.js";
import { State, WebPubSubClient } from "./wps.js";

const SESSION_KEY = "babelroom.session";
const HISTORY_KEY = "babelroom.history"; // final lines of the current room, so a reload keeps the transcript
const HISTORY_MAX = 300;

/** Counters for tests and debugging; playback fills its own fields in the same object. */
const stats = {
  turnStarts: 0,
  turnEnds: 0,
  framesSent: 0,
  sent: {},
  messagesIn: {},
  captionsFinal: 0,
  chatsIn: 0,
  acked: {},
  micMaxRms: 0,
  audioCodecs: {}, // chunks received per codec (opus / pcm16)
  firstAudioAt: 0, // Date.now() of the first translated audio chunk (tests measure latency)
  hearing: [], // every "hearing: X in L" shown, in order
};
/** Captions and chat lines as received (tests compare them with what the page shows). */
const received = [];

const CONN_TEXT = {
  [State.IDLE]: "offline",
  [State.CONNECTING]: "connecting…",
  [State.CONNECTED]: "live",
  [State.RECONNECTING]: "reconnecting…",
  [State.DISCONNECTED]: "disconnected",
};

class App {
  constructor() {
    this.$ = (id) => document.getElementById(id);
    this.lobby = new Lobby(this.$("lobby-form"), (choice) => this.onLobbySubmit(choice));
    this.view = new RoomView(document);
    this.player = new Player({ stats });
    this.capture = new Capture();
    this.ptt = new PushToTalk(this.$("talk"));
    this.ptt.setEnabled(false); // only inside a room, as a speaker
    this.client = null;
    this.talk = null;
    this.session = null;
    this.pendingChats = [];
    this.history = [];

    this.player.addEventListener("hearing", (e) => {
      this.view.setHearing(e.detail);
      if (e.detail.userId) stats.hearing.push(this.$("hearing").textContent);
      if (stats.hearing.length > 200) stats.hearing.shift();
    });
    this.player.addEventListener("statechange", () => this._syncSoundButton());
    this.ptt.addEventListener("start", () => this._startTurn());
    this.ptt.addEventListener("end", () => this.talk?.end());
    this.view.addEventListener("command", (e) => this.onCommand(e.detail));
    this.capture.addEventListener("level", (e) => {
      this.$("talk").style.setProperty("--level", Math.min(1, e.detail.rms * 6).toFixed(2));
      stats.micMaxRms = Math.max(stats.micMaxRms, e.detail.rms);
    });

    this.$("leave").addEventListener("click", () => this.leave());
    this.$("mute").addEventListener("click", () => this._toggleMute());
    this.$("volume").addEventListener("input", (e) => {
      this.player.setVolume(e.target.value / 100);
      savePrefs({ ...loadPrefs(), volume: Number(e.target.value) });
    });
    this.$("enable-audio").addEventListener("click", () => {
      this.player.ensureContext().resume().finally(() => this._syncSoundButton());
    });
    const vol = loadPrefs().volume;
    if (typeof vol === "number") {
      this.$("volume").value = vol;
      this.player.setVolume(vol / 100);
    }
    window.addEventListener("pagehide", () => this.client?.close());
    // Back from the back/forward cache: the socket was closed on the way out, so join again.
    window.addEventListener("pageshow", (e) => {
      if (e.persisted && this.session) this.enterRoom(this.session).catch(() => this.leave());
    });
    // After a reload nobody clicked yet, so the browser may hold the sound back: any gesture frees it.
    const unlock = () => {
      if (this.player.ctx?.state === "suspended") this.player.ctx.resume().finally(() => this._syncSoundButton());
    };
    window.addEventListener("pointerdown", unlock, true);
    window.addEventListener("keydown", unlock, true);
  }

  /** Landing: a saved session for this room rejoins it (a reload keeps your place); else the lobby. */
  async start() {
    const roomParam = new URLSearchParams(location.search).get("room");
    const inviteParam = api.parseInvite(location.href); // #invite=...: never sent to a server
    let saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(SESSION_KEY)); } catch { /* none */ }
    if (saved && (!roomParam || roomParam === saved.roomId) && (!inviteParam || inviteParam === saved.invite)) {
      try {
        await this.enterRoom(saved);
        return;
      } catch (e) {
        this.lobby.showError(`Could not rejoin ${saved.roomId}: ${e.message}`);
        sessionStorage.removeItem(SESSION_KEY);
      }
    }
    this.lobby.setRoom(roomParam || "", inviteParam);
    this._show("lobby");
    this.lobby.focus();
  }

  async onLobbySubmit(choice) {
    this.player.ensureContext(); // inside the click: allowed to make sound
    let { roomId, roomName, invite } = choice;
    let host = null;
    if (!roomId) {
      // The creator is the host: the host key and both invites exist only in this answer.
      const r = await api.createRoom(roomName || undefined);
      roomId = r.roomId;
      roomName = r.name;
      invite = r.invites.speaker;
      host = { hostKey: r.hostKey, invites: r.invites };
    }
    await this.enterRoom({ ...choice, roomId, roomName, invite, host });
  }

  /** Readable reasons for a join the server refused. */
  _joinError(roomId, e) {
    if (e.status === 404) return new Error(`There is no room "${roomId}". Check the link, or leave the field empty to create one.`);
    if (e.status === 410) return new Error(`Room "${roomId}" has ended.`);
    if (e.status === 401 || e.status === 403) {
      return new Error(`Room "${roomId}" needs a valid invite link: ask its host for one.`);
    }
    return e;
  }

  /** Joins (HTTP) and connects (Web PubSub); the room view appears once the socket is live. */
  async enterRoom(s) {
    this._disconnect();
    const session = {
      roomId: s.roomId, roomName: s.roomName || "", displayName: s.displayName,
      language: s.language, hear: s.hear || s.language, role: s.role || "speaker",
      invite: s.invite || "", memberKey: s.memberKey || "", host: s.host || null,
    };
    if (!session.invite && !session.memberKey) throw this._joinError(session.roomId, { status: 401 });
    this.session = session;
    const join = async () => {
      let j;
      try {
        j = await api.joinRoom(session.roomId, session);
      } catch (e) {
        throw e instanceof api.ApiError && e.permanent ? Object.assign(this._joinError(session.roomId, e), {
          status: e.status, permanent: true }) : e;
      }
      this.joinInfo = j;
      // Later joins (a reconnect, a reload) come back as this member, in the role the invite gave.
      Object.assign(session, { memberKey: j.memberKey, role: j.role, roomName: j.name || session.roomName });
      return j.url;
    };
    const client = new WebPubSubClient(join, {
      // After recovery failed we are a new member: an old turn's audio means nothing there; chat still does.
      resendOnFresh: (f) => f.event === "chat" || f.event === "rename",
    });
    this.client = client;
    client.addEventListener("state", (e) => this._setConn(e.detail.state));
    client.addEventListener("message", (e) => this.onMessage(e.detail.data));
    client.addEventListener("connected", (e) => {
      if (e.detail.recovered) this.view.notice("Connection restored; nothing was missed.");
      else if (e.detail.fresh) {
        this.talk?.abandon();
        this.view.notice("Reconnected. Lines said while you were away may be missing.", "warn");
      }
    });
    this._setConn(State.CONNECTING);
    try {
      await client.open();
    } catch (e) {
      if (this.client === client) this._disconnect();
      throw e;
    }
    if (this.client !== client) return;

    this.talk = new Talk(client, this.capture, stats);
    this.talk.addEventListener("change", (e) => this.view.setSelfSpeaking(e.detail.speaking));
    this.talk.addEventListener("error", (e) => this._talkError(e.detail.error, e.detail.event));
    this.view.enter({
      roomId: session.roomId, roomName: session.roomName,
      link: api.roomLink(session.roomId, session.host ? session.host.invites.listener : session.invite),
      speakerLink: session.host ? api.roomLink(session.roomId, session.host.invites.speaker) : "",
      me: { userId: this.joinInfo?.userId, ...session },
    });
    this._restoreHistory(session.roomId);
    this.ptt.setEnabled(session.role === "speaker");
    this.$("mic-error").textContent = "";
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    const u = new URL(location.href);
    u.searchParams.set("room", session.roomId);
    u.hash = ""; // the invite stays in this tab's session, not in the address bar or history
    history.replaceState(null, "", u);
    this._show("room");
    this.player.ensureContext(); // suspended if the browser wants a gesture first: then the button shows
    this._syncSoundButton();
    this.$("main").focus({ preventScroll: true });
  }

  onMessage(d) {
    if (!d || typeof d !== "object") return;
    stats.messagesIn[d.type] = (stats.messagesIn[d.type] ?? 0) + 1;
    if (d.type === "audio") {
      if (!stats.firstAudioAt) stats.firstAudioAt = Date.now();
      const codec = d.codec || "pcm16";
      stats.audioCodecs[codec] = (stats.audioCodecs[codec] ?? 0) + 1;
      if (d.userId !== this.view.me?.userId) this.player.push(d);
      return;
    }
    if (d.type === "welcome" && this.session) {
      this.session.displayName = d.displayName;
    }
    if (d.type === "caption" || d.type === "chat") {
      received.push({ ...d, receivedAt: Date.now() });
      if (received.length > 1000) received.shift();
    }
    if (d.type === "caption" && d.final) stats.captionsFinal++;
    if ((d.type === "caption" && d.final) || d.type === "chat") this._remember(d);
    if (d.type === "chat") {
      stats.chatsIn++;
      if (d.userId === this.view.me?.userId) this._settlePending(d.original);
    }
    this.view.handle(d);
  }

  async onCommand(c) {
    switch (c.kind) {
      case "chat": {
        const text = c.text.slice(0, 1000);
        const el = this.view.notice(`sending: ${text}`, "pending");
        this.pendingChats.push({ text, el });
        stats.sent.chat = (stats.sent.chat ?? 0) + 1;
        // The id is the idempotency key: a resend after a recovery is not a second line.
        const id = (crypto.randomUUID?.() ?? `${Date.now()}-${Math.random()}`).replace(/[^A-Za-z0-9_-]/g, "");
        this.client?.sendEvent("chat", { id, text }).then(() => {
          stats.acked.chat = (stats.acked.chat ?? 0) + 1;
        }, (e) => {
          this._settlePending(text);
          this.view.notice(`Message not sent: ${e.message}`, "error");
        });
        break;
      }
      case "rename": {
        const name = c.displayName;
        if (!name || name.length > 40) {
          this.view.notice("Usage: /username NAME (1 to 40 characters)", "error");
          return;
        }
        stats.sent.rename = (stats.sent.rename ?? 0) + 1;
        try {
          await this.client.sendEvent("rename", { displayName: name });
          this.session.displayName = name;
          this.view.setMe({ displayName: name });
          sessionStorage.setItem(SESSION_KEY, JSON.stringify(this.session));
          savePrefs({ ...loadPrefs(), displayName: name });
          this.view.notice(`You are now ${name}.`);
        } catch (e) {
          this.view.notice(`Rename failed: ${e.message}`, "error");
        }
        break;
      }
      case "join": {
        const roomId = api.parseRoomInput(c.room);
        const invite = api.parseInvite(c.room);
        if (!roomId) {
          this.view.notice("Usage: /join LINK (an invite link)", "error");
          return;
        }
        try {
          if (!invite) throw this._joinError(roomId, { status: 401 });
          await this.talk?.end();
          await this.enterRoom({ ...this.session, roomId, roomName: "", invite, memberKey: "", host: null });
        } catch (e) {
          this.view.notice(`Cannot join ${roomId}: ${e.message}`, "error");
        }
        break;
      }
      case "help":
        this.view.notice("Commands: /username NAME renames you · /join LINK moves you to another room (an invite link) · hold P to talk.");
        break;
      default:
        this.view.notice(`Unknown command /${c.cmd}. Try /help.`, "error");
    }
  }

  /** Replays the transcript saved by this tab for this room (after a reload), else starts afresh. */
  _restoreHistory(roomId) {
    let saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(HISTORY_KEY)); } catch { /* none */ }
    this.history = saved?.roomId === roomId && Array.isArray(saved.lines) ? saved.lines : [];
    if (!this.history.length) return;
    this.view.notice("Earlier in this room:");
    for (const d of this.history) this.view.handle(d);
    this.view.notice("You are back; new lines follow.");
  }

  _remember(d) {
    this.history.push(d);
    if (this.history.length > HISTORY_MAX) this.history.splice(0, this.history.length - HISTORY_MAX);
    try {
      sessionStorage.setItem(HISTORY_KEY, JSON.stringify({ roomId: this.session?.roomId, lines: this.history }));
    } catch { /* quota: the transcript just will not survive a reload */ }
  }

  _settlePending(text) {
    const i = this.pendingChats.findIndex((p) => p.text === text);
    if (i < 0) return;
    this.pendingChats[i].el?.remove();
    this.pendingChats.splice(i, 1);
  }

  _startTurn() {
    if (!this.talk || this.session?.role !== "speaker") return this.ptt.release("not-speaker");
    this.$("mic-error").textContent = "";
    this.player.ensureContext();
    this.talk.start();
  }

  _talkError(error, event) {
    this.ptt.release("error");
    let msg = error?.message || String(error);
    if (error?.name === "NotAllowedError") msg = "Microphone blocked. Allow it in the address bar, then hold P again.";
    else if (error?.name === "NotFoundError") msg = "No microphone found.";
    else if (event) msg = `Sending ${event} failed: ${msg}`;
    this.$("mic-error").textContent = msg;
  }

  async leave() {
    await this.talk?.end();
    this._disconnect();
    sessionStorage.removeItem(SESSION_KEY);
    sessionStorage.removeItem(HISTORY_KEY);
    this.lobby.setRoom(this.session?.roomId || "", this.session?.invite || "");
    this.session = null;
    document.title = "babelroom";
    this._show("lobby");
    this.lobby.focus();
  }

  _disconnect() {
    this.ptt.setEnabled(false);
    this.talk?.abandon();
    this.talk = null;
    this.client?.close();
    this.client = null;
    this.player.reset();
    this.pendingChats = [];
    this._setConn(State.IDLE);
  }

  _show(which) {
    this.$("lobby").hidden = which !== "lobby";
    this.$("room").hidden = which !== "room";
    this.$("conn").hidden = which !== "room";
    document.body.dataset.view = which;
  }

  _setConn(state) {
    const c = this.$("conn");
    c.dataset.state = state;
    this.$("conn-text").textContent = CONN_TEXT[state] || state;
    c.title = `connection: ${CONN_TEXT[state] || state}`;
  }

  _toggleMute() {
    const b = this.$("mute");
    const muted = b.getAttribute("aria-pressed") !== "true";
    b.setAttribute("aria-pressed", String(muted));
    b.textContent = muted ? "Unmute" : "Mute";
    this.player.setMuted(muted);
  }

  _syncSoundButton() {
    this.$("enable-audio").hidden = !this.player.ctx || this.player.ctx.state === "running";
  }
}

const app = new App();
window.babelroom = {
  stats,
  received,
  app,
  get state() { return app.client?.state ?? "idle"; },
  get speaking() { return !!app.talk?.speaking; },
  get userId() { return app.view.me?.userId; },
  /** Test hook: drop the socket like a network failure would. */
  dropConnection: (holdMs = 0) => app.client?.simulateDrop(holdMs),
  get connection() { return app.client ? { ...app.client.stats, userId: app.client.userId, connectionId: app.client.connectionId } : null; },
};
app.start();
