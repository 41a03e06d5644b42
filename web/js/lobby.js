/**
 * The lobby form: who I am, what I speak and hear, and which room (by its invite link).
 *
 * Why it remembers choices in localStorage: people come back with the same name and languages;
 * an invite link (?room=ID#invite=...) drops them straight into the join step. The role is not
 * chosen here: it comes from the invite (speaker or listener link).
 */

import { LANGUAGES, parseInvite, parseRoomInput } from "./api.js";

const PREFS_KEY = "babelroom.prefs";

function guessLanguage() {
  for (const l of navigator.languages || [navigator.language || "en"]) {
    const p = String(l).slice(0, 2).toLowerCase();
    if (LANGUAGES[p]) return p;
  }
  return "en";
}

export function loadPrefs() {
  try {
    return JSON.parse(localStorage.getItem(PREFS_KEY)) || {};
  } catch {
    return {};
  }
}

export function savePrefs(p) {
  try { localStorage.setItem(PREFS_KEY, JSON.stringify(p)); } catch { /* private mode */ }
}

export class Lobby {
  /**
   * @param {HTMLFormElement} form
   * @param {(choice: {roomId, invite, roomName, displayName, language, hear}) => Promise<void>} onSubmit
   */
  constructor(form, onSubmit) {
    this.form = form;
    this.onSubmit = onSubmit;
    this.$ = (id) => form.querySelector(`#${id}`);
    this.hearTouched = false;
    for (const sel of [this.$("speak"), this.$("hear")]) {
      for (const [code, label] of Object.entries(LANGUAGES)) sel.add(new Option(`${label} (${code})`, code));
    }
    const prefs = loadPrefs();
    this.$("name").value = prefs.displayName || "";
    this.$("speak").value = prefs.language || guessLanguage();
    this.$("hear").value = prefs.hear || this.$("speak").value;
    this.hearTouched = !!prefs.hear && prefs.hear !== this.$("speak").value;

    this.$("speak").addEventListener("change", () => {
      if (!this.hearTouched) this.$("hear").value = this.$("speak").value;
    });
    this.$("hear").addEventListener("change", () => {
      this.hearTouched = this.$("hear").value !== this.$("speak").value;
    });
    this.$("room-input").addEventListener("input", () => this._syncButton());
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this._submit();
    });
    this._syncButton();
  }

  /** Pre-fills the room (from ?room=ID#invite=...) so the user only confirms name and languages. */
  setRoom(roomId, invite = "") {
    this.$("room-input").value = roomId || "";
    this.invite = roomId ? { roomId, invite } : null; // kept out of the field: it is a secret
    this._syncButton();
  }

  focus() {
    const name = this.$("name");
    (name.value ? this.$("join-btn") : name).focus();
  }

  showError(msg) {
    this.$("lobby-error").textContent = msg || "";
  }

  setBusy(busy) {
    this.$("join-btn").disabled = busy;
    this.form.setAttribute("aria-busy", busy ? "true" : "false");
  }

  _syncButton() {
    const hasRoom = !!this.$("room-input").value.trim();
    this.$("join-btn").textContent = hasRoom ? "Join room" : "Create room";
    this.$("room-name-field").hidden = hasRoom;
  }

  async _submit() {
    const displayName = this.$("name").value.trim();
    if (!displayName) {
      this.showError("Please enter your name.");
      this.$("name").setAttribute("aria-invalid", "true");
      this.$("name").focus();
      return;
    }
    this.$("name").removeAttribute("aria-invalid");
    const typed = this.$("room-input").value;
    const roomId = parseRoomInput(typed);
    const invite = parseInvite(typed) || (this.invite?.roomId === roomId ? this.invite.invite : "");
    const choice = {
      roomId,
      invite,
      roomName: this.$("room-name").value.trim(),
      displayName,
      language: this.$("speak").value,
      hear: this.$("hear").value,
    };
    savePrefs({ displayName, language: choice.language, hear: choice.hear });
    this.showError("");
    this.setBusy(true);
    try {
      await this.onSubmit(choice);
    } catch (e) {
      this.showError(e.message || String(e));
    } finally {
      this.setBusy(false);
    }
  }
}
