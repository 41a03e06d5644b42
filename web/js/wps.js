/**
 * Minimal Azure Web PubSub client for the `json.reliable.webpubsub.azure.v1` subprotocol.
 *
 * Why our own: the official browser SDK needs a bundler; this page ships without a build step.
 * It implements what reliability needs and nothing else: acks with timeout and resend after
 * recovery, sequenceAck + dedupe by sequenceId, connection recovery with awps_connection_id /
 * awps_reconnection_token, and a fresh connection (new URL from `getUrl`) when recovery fails.
 *
 * Events (EventTarget): `state` {state, attempt?}, `connected` {userId, connectionId, fresh, recovered},
 * `message` {data, from, group, dataType, sequenceId}, `system` {raw}, `error` {error}.
 */

export const SUBPROTOCOL = "json.reliable.webpubsub.azure.v1";

/** Connection states, in the order a user would see them. */
export const State = Object.freeze({
  IDLE: "idle",
  CONNECTING: "connecting",
  CONNECTED: "connected",
  RECONNECTING: "reconnecting",
  DISCONNECTED: "disconnected",
});

/** Raised when an ack comes back with success=false (except `Duplicate`, which is success). */
export class SendError extends Error {
  constructor(ackId, detail) {
    super(detail?.message || detail?.name || "send failed");
    this.ackId = ackId;
    this.detail = detail;
  }
}

export class WebPubSubClient extends EventTarget {
  /**
   * @param {() => Promise<string>} getUrl  returns a fresh client access URL (re-join on the HTTP API)
   * @param {object} [opts]
   */
  constructor(getUrl, opts = {}) {
    super();
    this.getUrl = getUrl;
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 30000;
    this.recoveryWindowMs = opts.recoveryWindowMs ?? 30000;
    this.recoveryDelayMs = opts.recoveryDelayMs ?? 1000;
    this.sequenceAckMs = opts.sequenceAckMs ?? 1000;
    this.maxQueued = opts.maxQueued ?? 2000;
    this.WebSocketImpl = opts.WebSocket ?? globalThis.WebSocket;
    /** Which un-acked frames still make sense on a brand-new connection (a new member). */
    this.resendOnFresh = opts.resendOnFresh ?? (() => true);

    this.state = State.IDLE;
    this.url = null;
    this.ws = null;
    this.userId = null;
    this.connectionId = null;
    this.reconnectionToken = null;

    this._nextAckId = 1;
    /** ackId -> {frame, resolve, reject, timer, sent} ; kept until acked so recovery can resend. */
    this._pending = new Map();
    /** frames without ackId waiting for an open socket */
    this._outbox = [];
    this._lastSeq = 0; // highest sequenceId received on this connection
    this._ackedSeq = 0; // highest sequenceId we told the service about
    this._seqTimer = null;
    this._closedByUser = false;
    this._everConnected = false;
    this._recoveryStarted = 0;
    this._openWaiters = [];
    this.stats = { framesIn: 0, framesOut: 0, duplicatesDropped: 0, recoveries: 0, freshConnections: 0 };
  }

  /** Opens the connection; resolves once the service's `connected` system message arrives. */
  async open() {
    this._closedByUser = false;
    this.url = await this.getUrl();
    this._setState(State.CONNECTING);
    const ready = this._waitConnected();
    this._connect(this.url);
    return ready;
  }

  /** Closes for good (no recovery); pending sends reject. */
  close() {
    this._closedByUser = true;
    clearInterval(this._seqTimer);
    this._seqTimer = null;
    clearTimeout(this._retryTimer);
    if (this.ws) {
      try { this.ws.close(1000, "bye"); } catch { /* already closed */ }
    }
    this.ws = null;
    for (const [, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new SendError(p.frame.ackId, { name: "Closed", message: "client closed" }));
    }
    this._pending.clear();
    this._outbox = [];
    this._setState(State.DISCONNECTED);
  }

  /**
   * Sends an event to the server's event handler.
   * With `ack` (default) resolves on the service ack and survives a recovery (resent with the same
   * ackId, the service answers `Duplicate` if it already had it). Without ack it is fire-and-forget
   * but still queued while the socket is down.
   */
  sendEvent(event, data, { ack = true, timeoutMs } = {}) {
    const frame = { type: "event", event, dataType: "json", data };
    if (!ack) {
      this._sendOrQueue(frame);
      return Promise.resolve();
    }
    frame.ackId = this._nextAckId++;
    return new Promise((resolve, reject) => {
      const p = { frame, resolve, reject, timer: null, sent: false };
      p.timer = setTimeout(() => {
        this._pending.delete(frame.ackId);
        reject(new SendError(frame.ackId, { name: "Timeout", message: `no ack for ${event} in time` }));
      }, timeoutMs ?? this.ackTimeoutMs);
      this._pending.set(frame.ackId, p);
      if (this._isOpen()) {
        this._raw(frame);
        p.sent = true;
      }
    });
  }

  /** Test/debug hook: drop the socket as a network failure would; `holdMs` keeps the network "down" that long. */
  simulateDrop(holdMs = 0) {
    this._holdUntil = Date.now() + holdMs;
    if (this.ws) this.ws.close(4000, "simulated network drop");
  }

  // ---- internals -------------------------------------------------------------------------

  _isOpen() {
    return this.ws && this.ws.readyState === 1 && this.state === State.CONNECTED;
  }

  _setState(state, extra = {}) {
    if (this.state === state && !extra.force) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...extra } }));
  }

  _waitConnected() {
    return new Promise((resolve, reject) => this._openWaiters.push({ resolve, reject }));
  }

  _settleWaiters(err) {
    const ws = this._openWaiters;
    this._openWaiters = [];
    for (const w of ws) err ? w.reject(err) : w.resolve(this);
  }

  _connect(url, recovery = false) {
    let ws;
    try {
      ws = new this.WebSocketImpl(url, SUBPROTOCOL);
    } catch (err) {
      this._onSocketGone(ws, { code: 1006, reason: String(err) });
      return;
    }
    this.ws = ws;
    ws._recovery = recovery;
    ws._declared = false;
    // The service may not repeat `connected` on a recovered socket (the SDKs treat "open" as recovered).
    if (recovery) ws.onopen = () => { if (ws === this.ws) this._recovered(ws); };
    ws.onmessage = (ev) => this._onFrame(ws, ev.data);
    ws.onclose = (ev) => this._onSocketGone(ws, ev);
    ws.onerror = () => { /* close follows; nothing else to do */ };
  }

  /** The same connection is back: resend what was not acked, keep the sequence numbering. */
  _recovered(ws) {
    if (ws._declared) return;
    ws._declared = true;
    this._recoveryStarted = 0;
    this._setState(State.CONNECTED);
    this._startSeqAcks();
    this._flush();
    this.stats.recoveries++;
    this.dispatchEvent(new CustomEvent("connected", {
      detail: { userId: this.userId, connectionId: this.connectionId, recovered: true, fresh: false },
    }));
  }

  _onFrame(ws, raw) {
    if (ws !== this.ws) return;
    let m;
    try {
      m = JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw));
    } catch {
      return;
    }
    this.stats.framesIn++;
    if (m.type === "system") return this._onSystem(m);
    if (m.type === "ack") return this._onAck(m);
    if (m.type === "message") {
      if (typeof m.sequenceId === "number") {
        if (m.sequenceId <= this._lastSeq) {
          this.stats.duplicatesDropped++;
          return;
        }
        this._lastSeq = m.sequenceId;
      }
      this.dispatchEvent(new CustomEvent("message", {
        detail: { data: m.data, from: m.from, group: m.group, dataType: m.dataType, sequenceId: m.sequenceId },
      }));
    }
  }

  _onSystem(m) {
    this.dispatchEvent(new CustomEvent("system", { detail: { raw: m } }));
    if (m.event === "connected") {
      const recovered = !!this.connectionId && m.connectionId === this.connectionId;
      if (recovered) {
        this.reconnectionToken = m.reconnectionToken ?? this.reconnectionToken;
        this._recovered(this.ws);
        return;
      }
      // A new connection: the service numbers its messages from scratch.
      this._lastSeq = 0;
      this._ackedSeq = 0;
      this._everConnected = true;
      this.userId = m.userId ?? this.userId;
      this.connectionId = m.connectionId;
      this.reconnectionToken = m.reconnectionToken ?? this.reconnectionToken;
      const fresh = this._recoveryStarted !== 0;
      this._recoveryStarted = 0;
      if (fresh) this._dropStale();
      this._setState(State.CONNECTED);
      this._startSeqAcks();
      this._flush();
      if (fresh) this.stats.freshConnections++;
      this.dispatchEvent(new CustomEvent("connected", {
        detail: { userId: this.userId, connectionId: this.connectionId, recovered: false, fresh },
      }));
      this._settleWaiters();
    }
    // "disconnected" carries a message; the close event that follows drives recovery.
  }

  _onAck(m) {
    const p = this._pending.get(m.ackId);
    if (!p) return;
    this._pending.delete(m.ackId);
    clearTimeout(p.timer);
    if (m.success || m.error?.name === "Duplicate") p.resolve(m);
    else p.reject(new SendError(m.ackId, m.error));
  }

  /** On a fresh connection, frames of the old session that no longer make sense are failed, not resent. */
  _dropStale() {
    for (const [id, p] of this._pending) {
      if (this.resendOnFresh(p.frame)) continue;
      this._pending.delete(id);
      clearTimeout(p.timer);
      p.reject(new SendError(id, { name: "ConnectionLost", message: "connection replaced" }));
    }
    this._outbox = this._outbox.filter((f) => this.resendOnFresh(f));
  }

  _startSeqAcks() {
    clearInterval(this._seqTimer);
    this._seqTimer = setInterval(() => this._sendSeqAck(), this.sequenceAckMs);
  }

  _sendSeqAck() {
    if (this._lastSeq > this._ackedSeq && this._isOpen()) {
      this._raw({ type: "sequenceAck", sequenceId: this._lastSeq });
      this._ackedSeq = this._lastSeq;
    }
  }

  _raw(frame) {
    this.ws.send(JSON.stringify(frame));
    this.stats.framesOut++;
  }

  _sendOrQueue(frame) {
    if (this._isOpen()) return this._raw(frame);
    this._outbox.push(frame);
    if (this._outbox.length > this.maxQueued) this._outbox.shift();
  }

  /** After (re)connecting: resend un-acked frames in ackId order, then queued fire-and-forget ones. */
  _flush() {
    const pend = [...this._pending.values()].sort((a, b) => a.frame.ackId - b.frame.ackId);
    for (const p of pend) {
      this._raw(p.frame);
      p.sent = true;
    }
    const out = this._outbox;
    this._outbox = [];
    for (const f of out) this._raw(f);
  }

  _onSocketGone(ws, ev) {
    if (ws && ws !== this.ws) return; // an old socket closing late
    clearInterval(this._seqTimer);
    this._seqTimer = null;
    this.ws = null;
    if (this._closedByUser) return;
    const code = ev?.code ?? 1006;
    const now = Date.now();
    if (!this._everConnected) {
      // The very first connection failed: report it to open() instead of retrying behind a spinner.
      this._closedByUser = true;
      this._setState(State.DISCONNECTED, { code });
      this._settleWaiters(new Error(`could not connect to the room (WebSocket closed, code ${code})`));
      return;
    }
    if (!this._recoveryStarted) this._recoveryStarted = now;
    const canRecover = code !== 1008 && this.connectionId && this.reconnectionToken
      && now - this._recoveryStarted < this.recoveryWindowMs;
    this._setState(State.RECONNECTING, { code, force: true, recovering: !!canRecover });
    const attempt = async () => {
      if (this._closedByUser) return;
      if (canRecover) {
        const sep = this.url.includes("?") ? "&" : "?";
        this._connect(`${this.url}${sep}awps_connection_id=${encodeURIComponent(this.connectionId)}`
          + `&awps_reconnection_token=${encodeURIComponent(this.reconnectionToken)}`, true);
        return;
      }
      // Recovery impossible: a new connection from a fresh URL (a new join on the HTTP API).
      this.connectionId = null;
      this.reconnectionToken = null;
      try {
        this.url = await this.getUrl();
      } catch (error) {
        this.dispatchEvent(new CustomEvent("error", { detail: { error } }));
        if (error?.permanent) {
          this._closedByUser = true;
          this._setState(State.DISCONNECTED, { error });
          this._settleWaiters(error);
          return;
        }
        this._retryTimer = setTimeout(attempt, Math.min(10000, this.recoveryDelayMs * 3));
        return;
      }
      if (!this._closedByUser) this._connect(this.url);
    };
    // First recovery attempt right away, then once a second (what the SDKs do).
    let delay = this._lastGoneAt && now - this._lastGoneAt < this.recoveryDelayMs ? this.recoveryDelayMs : 50;
    if (this._holdUntil && this._holdUntil > now) delay = Math.max(delay, this._holdUntil - now);
    this._lastGoneAt = now;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(attempt, delay);
  }
}
