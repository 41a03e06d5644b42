/**
 * The room view: people, the live transcript (captions and chat, each in my language with the
 * original), the "hearing" state and the chat box with its slash commands.
 *
 * Why lines are keyed by id: interim captions are replaced in place by the final one with the
 * same id, and a message seen twice (after a reconnect) updates its line instead of adding one.
 */

import { LANGUAGES } from "./api.js";

const langName = (code) => LANGUAGES[code] || code || "?";

/** Parses a chat box line: a command or a plain message. */
export function parseChatLine(text) {
  const t = text.trim();
  if (!t) return null;
  const m = t.match(/^\/(\w+)\s*(.*)$/s);
  if (!m || t.startsWith("//")) return { kind: "chat", text: t.startsWith("//") ? t.slice(1) : t };
  const [, cmd, arg] = m;
  switch (cmd.toLowerCase()) {
    case "username":
    case "nick":
    case "name":
      return { kind: "rename", displayName: arg.trim() };
    case "join":
      return { kind: "join", room: arg.trim() };
    case "help":
      return { kind: "help" };
    default:
      return { kind: "unknown", cmd };
  }
}

export class RoomView extends EventTarget {
  /** @param {Document|HTMLElement} root */
  constructor(root) {
    super();
    const $ = (id) => root.querySelector(`#${id}`);
    this.el = {
      section: $("room"), title: $("room-title"), roomId: $("room-id"), meName: $("me-name"),
      meSpeak: $("me-speak"), meHear: $("me-hear"), share: $("share-link"), copy: $("copy-link"),
      people: $("participants"), count: $("people-count"), transcript: $("transcript"),
      announcer: $("announcer"), hearing: $("hearing"), chatForm: $("chat-form"), chatInput: $("chat-input"),
      talk: $("talk"), talkLabel: $("talk-label"), talkLang: $("talk-lang"), talkHint: $("talk-hint"),
      listenerHint: $("listener-hint"), micError: $("mic-error"),
      shareSpeaker: $("share-speaker"), speakerLink: $("share-speaker-link"), shareLabel: $("share-label"),
    };
    this.participants = new Map();
    this.speaking = new Map(); // userId -> turn
    this.lines = new Map(); // caption/chat id -> <li>
    this.me = null;
    this.stats = { captionLines: 0, chatLines: 0, captionUpdates: 0 };

    this.el.copy.addEventListener("click", () => this._copyLink());
    this.el.chatForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const parsed = parseChatLine(this.el.chatInput.value);
      if (!parsed) return;
      this.el.chatInput.value = "";
      this.dispatchEvent(new CustomEvent("command", { detail: parsed }));
    });
  }

  /** Resets the view for a room I just joined. */
  enter({ roomId, roomName, link, speakerLink = "", me }) {
    this.participants.clear();
    this.speaking.clear();
    this.lines.clear();
    this.el.transcript.replaceChildren();
    this.el.roomId.textContent = roomId;
    this.el.title.textContent = roomName ? roomName : `Room ${roomId}`;
    document.title = `${roomName || roomId} · babelroom`;
    this.el.share.value = link;
    // The host sees both invites: listeners (the link above) and speakers (this one).
    this.el.shareSpeaker.hidden = !speakerLink;
    this.el.speakerLink.value = speakerLink;
    this.el.shareLabel.textContent = speakerLink ? "Listener invite link" : "Invite link";
    this.setMe(me);
    this.setHearing(null);
    this.notice(`You joined as ${me.displayName}. ${me.role === "speaker" ? "Hold P to talk." : "You are listening."}`);
  }

  setMe(me) {
    this.me = { ...this.me, ...me };
    this.el.meName.textContent = this.me.displayName;
    this.el.meSpeak.textContent = langName(this.me.language);
    this.el.meHear.textContent = langName(this.me.hear);
    this.el.talkLang.textContent = `in ${langName(this.me.language)}`;
    const speaker = this.me.role !== "listener";
    this.el.talk.hidden = !speaker;
    this.el.talkHint.hidden = !speaker;
    this.el.listenerHint.hidden = speaker;
    this.renderPeople();
  }

  /** Handles one server message (`data` of a Web PubSub message frame). */
  handle(d) {
    switch (d.type) {
      case "welcome":
        this.setMe({ userId: d.userId, displayName: d.displayName, language: d.language, hear: d.hear, role: d.role });
        this.setParticipants(d.participants || []);
        break;
      case "presence.joined":
        this.upsertParticipant(d.participant);
        break;
      case "presence.left":
        this.removeParticipant(d.userId);
        break;
      case "presence.renamed": {
        const p = this.participants.get(d.userId);
        if (p) this.upsertParticipant({ ...p, displayName: d.displayName });
        break;
      }
      case "speaking":
        if (d.active) this.speaking.set(d.userId, d.turn);
        else if (this.speaking.get(d.userId) === d.turn || !d.turn) this.speaking.delete(d.userId);
        this.renderPeople();
        break;
      case "caption":
        this.caption(d);
        break;
      case "chat":
        this.chat(d);
        break;
      case "error":
        this.notice(`Server: ${d.message || d.code}${d.event ? ` (${d.event})` : ""}`, "error");
        break;
      default:
        break;
    }
  }

  /** The full list: only the `welcome` snapshot carries it; presence deltas follow. */
  setParticipants(list) {
    this.participants = new Map(list.map((p) => [p.userId, p]));
    for (const id of [...this.speaking.keys()]) if (!this.participants.has(id)) this.speaking.delete(id);
    this.renderPeople();
  }

  /** `presence.joined` / `presence.renamed`: a delta is an upsert, so a repeated one changes nothing. */
  upsertParticipant(p) {
    if (!p?.userId) return;
    const old = this.participants.get(p.userId);
    this.participants.set(p.userId, p);
    if (p.userId === this.me?.userId) {
      if (p.displayName !== this.me.displayName) this.setMe({ displayName: p.displayName });
    } else if (!old) this.notice(`${p.displayName} joined (${langName(p.language)})`);
    else if (old.displayName !== p.displayName) this.notice(`${old.displayName} is now ${p.displayName}`);
    this.renderPeople();
  }

  removeParticipant(userId) {
    const p = this.participants.get(userId);
    if (!p) return;
    this.participants.delete(userId);
    this.speaking.delete(userId);
    this.notice(`${p.displayName} left`);
    this.renderPeople();
  }

  /** Marks my own turn locally at once (the server's `speaking` echo follows). */
  setSelfSpeaking(on) {
    this.el.talk.classList.toggle("on", on);
    this.el.talkLabel.textContent = on ? "Speaking… release to stop" : "Hold to talk";
    this.el.section.dataset.speaking = on ? "true" : "false";
  }

  renderPeople() {
    const ul = this.el.people;
    const people = [...this.participants.values()];
    people.sort((a, b) => (a.userId === this.me?.userId ? -1 : b.userId === this.me?.userId ? 1 : a.displayName.localeCompare(b.displayName)));
    ul.replaceChildren(...people.map((p) => {
      const li = document.createElement("li");
      li.dataset.userId = p.userId;
      const talking = this.speaking.has(p.userId);
      li.className = `person${talking ? " speaking" : ""}${p.userId === this.me?.userId ? " me" : ""}`;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = p.displayName + (p.userId === this.me?.userId ? " (you)" : "");
      const langs = document.createElement("span");
      langs.className = "langs";
      langs.textContent = p.hear && p.hear !== p.language
        ? `speaks ${langName(p.language)} · hears ${langName(p.hear)}`
        : `${langName(p.language)}`;
      const role = document.createElement("span");
      role.className = "role";
      role.textContent = p.role === "listener" ? "listener" : "";
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = talking ? "speaking" : "";
      li.append(name, langs, role, badge);
      return li;
    }));
    this.el.count.textContent = people.length ? `(${people.length})` : "";
  }

  nameOf(userId, fallback) {
    return this.participants.get(userId)?.displayName || fallback || "someone";
  }

  setHearing(info) {
    const h = this.el.hearing;
    if (!info?.userId) {
      h.textContent = "hearing: nobody";
      h.dataset.active = "false";
      return;
    }
    h.textContent = `hearing: ${this.nameOf(info.userId)} in ${langName(info.language)}`;
    h.dataset.active = "true";
  }

  caption(d) {
    const near = this._nearBottom();
    const li = this._line(d.id, "caption");
    const wasFinal = li.dataset.final === "true";
    if (wasFinal && !d.final) return; // a late interim never overwrites the final line
    li.dataset.final = d.final ? "true" : "false";
    li.classList.toggle("interim", !d.final);
    // An interim line may carry the original before its translation: say so instead of showing nothing.
    const pending = d.sourceLanguage === d.language ? d.original || "" : "translating";
    this._fill(li, d.final || d.text ? d : { ...d, text: pending }, d.final ? "" : "…");
    this.stats.captionUpdates++;
    if (d.final && !wasFinal) this._announce(`${d.displayName || this.nameOf(d.userId)}: ${d.text}`);
    if (near) this._scrollDown();
  }

  chat(d) {
    if (this.lines.has(d.id)) return; // the same line again (a resend): its id says so
    const near = this._nearBottom();
    const li = this._line(d.id, "chat");
    li.dataset.final = "true";
    this._fill(li, d, "");
    if (d.userId !== this.me?.userId) this._announce(`${d.displayName || this.nameOf(d.userId)} wrote: ${d.text}`);
    if (near) this._scrollDown();
  }

  /** A local line (join/leave, connection, command feedback); never confused with server lines. */
  notice(text, kind = "info") {
    const near = this._nearBottom();
    const li = document.createElement("div");
    li.className = `line notice ${kind}`;
    li.textContent = text;
    this.el.transcript.append(li);
    if (kind === "error") this._announce(text);
    if (near) this._scrollDown();
    return li;
  }

  _line(id, kind) {
    let li = this.lines.get(id);
    if (li) return li;
    li = document.createElement("div");
    li.className = `line ${kind}`;
    li.dataset.id = id;
    this.lines.set(id, li);
    if (kind === "caption") this.stats.captionLines++;
    else this.stats.chatLines++;
    this.el.transcript.append(li);
    return li;
  }

  _fill(li, d, suffix) {
    const who = d.displayName || this.nameOf(d.userId);
    const same = d.sourceLanguage === d.language;
    const meta = document.createElement("div");
    meta.className = "meta";
    const whoEl = document.createElement("span");
    whoEl.className = "who";
    whoEl.textContent = who;
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = li.classList.contains("chat") ? "chat" : d.final ? "" : "live";
    const langs = document.createElement("span");
    langs.className = "langs";
    langs.textContent = same ? d.sourceLanguage : `${d.sourceLanguage} → ${d.language}`;
    const time = document.createElement("time");
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = li.querySelector("time")?.textContent || now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    meta.append(whoEl, kind, langs, time);

    const text = document.createElement("p");
    text.className = "text";
    text.lang = d.translated || same ? d.language : d.sourceLanguage;
    text.textContent = (d.text || "") + suffix;
    const parts = [meta, text];
    if (!same) {
      const orig = document.createElement("p");
      orig.className = "original";
      orig.lang = d.sourceLanguage;
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = `original (${d.sourceLanguage}): `;
      const o = document.createElement("span");
      o.className = "original-text";
      o.textContent = d.original || "";
      orig.append(label, o);
      if (d.translated !== false || d.original !== d.text) parts.push(orig);
    }
    if (d.note || (d.translated === false && !same)) {
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = d.note || `no translation model for ${d.sourceLanguage}→${d.language}`;
      parts.push(note);
    }
    li.replaceChildren(...parts);
    li.classList.toggle("untranslated", d.translated === false && !same);
    li.classList.toggle("mine", d.userId === this.me?.userId);
  }

  _announce(text) {
    this.el.announcer.textContent = text;
  }

  _nearBottom() {
    const t = this.el.transcript;
    return t.scrollHeight - t.scrollTop - t.clientHeight < 80;
  }

  /** New lines are followed only if the reader was at the bottom: scrolling back keeps their place. */
  _scrollDown() {
    const t = this.el.transcript;
    t.scrollTop = t.scrollHeight;
  }

  async _copyLink() {
    const v = this.el.share.value;
    try {
      await navigator.clipboard.writeText(v);
      this.el.copy.textContent = "Copied";
    } catch {
      this.el.share.select();
      this.el.copy.textContent = "Press Ctrl+C";
    }
    setTimeout(() => { this.el.copy.textContent = "Copy"; }, 2000);
  }
}
