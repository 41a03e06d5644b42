/**
 * One speaking turn on the wire: turn.start, audio frames {turn, seq, rate, pcm}, turn.end {turn, frames}.
 *
 * Why separate from the gestures: the protocol rules (seq from 0, frames counted, end sent only
 * after the last frame, exactly one end per start) live in one place the tests can count.
 */

import { WIRE_RATE } from "./capture.js";

/** base64 of little-endian PCM16, without a 64 KB argument-list blowup. */
export function pcm16ToBase64(int16) {
  const bytes = new Uint8Array(int16.length * 2);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < int16.length; i++) view.setInt16(i * 2, int16[i], true);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

function newTurnId() {
  const rnd = crypto.getRandomValues(new Uint32Array(2));
  return `t${Date.now().toString(36)}${rnd[0].toString(36)}${rnd[1].toString(36)}`.slice(0, 32);
}

export class Talk extends EventTarget {
  /**
   * @param {{sendEvent: Function}} client  the Web PubSub client
   * @param {import('./capture.js').Capture} capture
   * @param {object} stats  counters exposed to tests (turnStarts, turnEnds, framesSent)
   */
  constructor(client, capture, stats) {
    super();
    this.client = client;
    this.capture = capture;
    this.stats = stats;
    this.turn = null;
    this.seq = 0;
    this._ending = null;
  }

  get speaking() {
    return this.turn !== null && !this._ending;
  }

  /** Begins a turn; frames flow as soon as the microphone is live. */
  async start() {
    if (this.turn) return;
    if (this._ending) await this._ending; // a quick re-press waits for the previous end
    const turn = newTurnId();
    this.turn = turn;
    this.seq = 0;
    this.stats.turnStarts++;
    this.stats.turnStartedAt = Date.now();
    this._send("turn.start", { turn });
    this.dispatchEvent(new CustomEvent("change", { detail: { speaking: true, turn } }));
    try {
      // No client `silence` hints: the segmenter already cuts at the first pause past 1 s, and a
      // late hint would close a fresh segment holding nothing but the pause.
      await this.capture.begin((pcm) => {
        if (this.turn !== turn) return;
        const seq = this.seq++;
        this.stats.framesSent++;
        this._send("audio", { turn, seq, rate: WIRE_RATE, pcm: pcm16ToBase64(pcm) });
      });
    } catch (error) {
      this.dispatchEvent(new CustomEvent("error", { detail: { error } }));
      await this.end();
    }
  }

  /** Ends the turn after the last frame; safe to call any number of times. */
  end() {
    if (this._ending) return this._ending;
    if (!this.turn) return Promise.resolve();
    const turn = this.turn;
    this.dispatchEvent(new CustomEvent("change", { detail: { speaking: false, turn } }));
    this._ending = (async () => {
      await this.capture.end(); // the last, shorter frame arrives before this resolves
      const frames = this.seq;
      this.turn = null;
      this.stats.turnEnds++;
      this.stats.turnEndedAt = Date.now();
      this._send("turn.end", { turn, frames });
      this.dispatchEvent(new CustomEvent("ended", { detail: { turn, frames } }));
    })().finally(() => { this._ending = null; });
    return this._ending;
  }

  /** Drops the turn without a turn.end (the connection it belonged to is gone). */
  abandon() {
    if (!this.turn) return;
    this.turn = null;
    this.capture.end();
    this.dispatchEvent(new CustomEvent("change", { detail: { speaking: false } }));
  }

  _send(event, data) {
    this.stats.sent[event] = (this.stats.sent[event] ?? 0) + 1;
    this.client.sendEvent(event, data).then(() => {
      if (this.stats.acked) this.stats.acked[event] = (this.stats.acked[event] ?? 0) + 1;
    }, (error) => {
      if (error?.detail?.name === "ConnectionLost") return;
      this.dispatchEvent(new CustomEvent("error", { detail: { error, event } }));
    });
  }
}
