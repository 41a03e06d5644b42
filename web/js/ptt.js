/**
 * Push-to-talk gestures: hold P, or hold the big button (mouse, touch, or Space/Enter on it).
 *
 * Why it is paranoid: a turn that never ends keeps a microphone live in a room full of people.
 * Key repeat is ignored, P typed in any text field never starts a turn, and key up, pointer up or
 * leave or cancel, window blur, the page being hidden, and a hard maximum all end it.
 */

const TEXT_INPUT_TYPES = new Set(["text", "search", "email", "url", "tel", "password", "number", ""]);

/** True when the key event belongs to something the user is typing in. */
export function isTypingTarget(el) {
  if (!el || el === document.body) return false;
  if (el.isContentEditable) return true;
  const tag = el.tagName;
  if (tag === "TEXTAREA" || tag === "SELECT") return true;
  if (tag === "INPUT") return TEXT_INPUT_TYPES.has((el.getAttribute("type") || "").toLowerCase());
  return false;
}

export class PushToTalk extends EventTarget {
  /**
   * @param {HTMLElement} button  the big talk button
   * @param {object} [opts] {key: "p", maxTurnMs}
   */
  constructor(button, { key = "p", maxTurnMs = 120000 } = {}) {
    super();
    this.button = button;
    this.key = key.toLowerCase();
    this.maxTurnMs = maxTurnMs;
    this.enabled = true;
    this.active = false;
    this.source = null; // "key" | "pointer" | "button-key"
    this._pointerId = null;
    this._maxTimer = null;
    this._bind();
  }

  /** Starts a turn if none is active; `source` says which gesture owns it. */
  press(source) {
    if (!this.enabled || this.active) return;
    this.active = true;
    this.source = source;
    this.button.setAttribute("aria-pressed", "true");
    clearTimeout(this._maxTimer);
    this._maxTimer = setTimeout(() => this.release("max-length"), this.maxTurnMs);
    this.dispatchEvent(new CustomEvent("start", { detail: { source } }));
  }

  /** Ends the active turn, whatever started it. */
  release(reason) {
    if (!this.active) return;
    this.active = false;
    this.source = null;
    this._pointerId = null;
    clearTimeout(this._maxTimer);
    this.button.setAttribute("aria-pressed", "false");
    this.dispatchEvent(new CustomEvent("end", { detail: { reason } }));
  }

  setEnabled(on) {
    this.enabled = on;
    this.button.disabled = !on;
    if (!on) this.release("disabled");
  }

  _isKey(e) {
    return (e.key && e.key.toLowerCase() === this.key) || e.code === `Key${this.key.toUpperCase()}`;
  }

  _bind() {
    const b = this.button;
    this._onKeyDown = (e) => {
      if (!this._isKey(e)) return;
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (isTypingTarget(e.target) || isTypingTarget(document.activeElement)) return;
      e.preventDefault();
      if (e.repeat) return;
      this.press("key");
    };
    this._onKeyUp = (e) => {
      if (this._isKey(e) && this.source === "key") this.release("key-up");
    };
    this._onBlur = () => this.release("blur");
    this._onVisibility = () => { if (document.visibilityState === "hidden") this.release("hidden"); };
    this._onPageHide = () => this.release("pagehide");
    window.addEventListener("keydown", this._onKeyDown);
    window.addEventListener("keyup", this._onKeyUp);
    window.addEventListener("blur", this._onBlur);
    window.addEventListener("pagehide", this._onPageHide);
    document.addEventListener("visibilitychange", this._onVisibility);

    b.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 && e.pointerType === "mouse") return;
      e.preventDefault();
      this._pointerId = e.pointerId;
      b.focus({ preventScroll: true });
      this.press("pointer");
    });
    const up = (reason) => (e) => {
      if (this.source === "pointer" && (this._pointerId === null || e.pointerId === this._pointerId)) this.release(reason);
    };
    b.addEventListener("pointerup", up("pointer-up"));
    b.addEventListener("pointercancel", up("pointer-cancel"));
    b.addEventListener("lostpointercapture", up("pointer-lost"));
    b.addEventListener("pointerleave", up("pointer-leave"));
    b.addEventListener("contextmenu", (e) => e.preventDefault()); // long-press on touch
    // Keyboard users holding Space or Enter on the focused button.
    b.addEventListener("keydown", (e) => {
      if (e.key !== " " && e.key !== "Enter") return;
      e.preventDefault();
      if (e.repeat) return;
      this.press("button-key");
    });
    b.addEventListener("keyup", (e) => {
      if ((e.key === " " || e.key === "Enter") && this.source === "button-key") {
        e.preventDefault();
        this.release("key-up");
      }
    });
    b.addEventListener("blur", () => { if (this.source === "button-key") this.release("blur"); });
    b.addEventListener("click", (e) => e.preventDefault());
  }
}
