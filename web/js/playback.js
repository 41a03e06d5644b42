/**
 * Translated speech playback: Opus (WebCodecs) or PCM16 chunks scheduled gaplessly with Web Audio.
 *
 * Why a floor: two interpreters talking over each other is noise, so one speaker plays at a time;
 * the others wait in arrival order. Within a speaker, segments play in order and chunks by `seq`,
 * duplicates are dropped, and a segment whose chunks stop coming is given up after a stall.
 * An AnalyserNode on the output feeds `stats` so a test can prove sound really came out.
 */

export const PLAYBACK_RATE = 24000;

/** base64 PCM16 little-endian to Float32 samples. */
export function decodePcm16(b64) {
  const bin = atob(b64);
  const n = bin.length >> 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
    if (v >= 0x8000) v -= 0x10000;
    out[i] = v / 0x8000;
  }
  return out;
}

/**
 * Decodes one segment's Opus packets in order. Opus frames depend on the frames before them, so a
 * segment keeps one decoder; each chunk resolves to its samples once all its packets are out.
 */
class OpusSegmentDecoder {
  constructor(onError) {
    this.waiters = [];
    this.out = [];
    this.rate = 48000;
    this.decoder = new AudioDecoder({
      output: (ad) => {
        const pcm = new Float32Array(ad.numberOfFrames);
        ad.copyTo(pcm, { planeIndex: 0, format: "f32-planar" });
        this.rate = ad.sampleRate;
        ad.close();
        this.out.push(pcm);
        this._wake();
      },
      error: (e) => {
        onError(e);
        this.failed = true;
        this._wake();
      },
    });
    this.decoder.configure({ codec: "opus", sampleRate: 48000, numberOfChannels: 1 });
    this.ts = 0;
    this.chain = Promise.resolve();
  }

  _wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves to {data, rate} for this chunk's packets (base64), in call order. */
  decode(packets, frameMs) {
    const run = async () => {
      const want = packets.length;
      const before = this.out.length;
      for (const b64 of packets) {
        const bin = atob(b64);
        const bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: this.ts, data: bytes }));
        this.ts += frameMs * 1000;
      }
      const deadline = performance.now() + 1000;
      while (this.out.length - before < want && !this.failed && performance.now() < deadline) {
        await new Promise((r) => {
          this.waiters.push(r);
          setTimeout(r, 50);
        });
      }
      const parts = this.out.splice(0);
      const n = parts.reduce((a, p) => a + p.length, 0);
      const data = new Float32Array(n);
      let o = 0;
      for (const p of parts) {
        data.set(p, o);
        o += p.length;
      }
      return { data, rate: this.rate };
    };
    this.chain = this.chain.then(run);
    return this.chain;
  }

  close() {
    if (this.decoder.state !== "closed") this.decoder.close();
  }
}

export class Player extends EventTarget {
  constructor({ leadMs = 150, stallMs = 2500, holdMs = 400, stats = {} } = {}) {
    super();
    this.leadS = leadMs / 1000;
    this.stallMs = stallMs;
    this.holdMs = holdMs;
    this.ctx = null;
    this.volume = 1;
    this.muted = false;
    this.speakers = new Map(); // userId -> {segments: Segment[], language}
    this.waiting = []; // userIds with queued audio, in arrival order
    this.done = new Set(); // segment keys fully played or given up
    this.current = null; // userId holding the floor
    this.nextTime = 0;
    this._releaseAt = 0;
    this.stats = Object.assign(stats, {
      audioChunksReceived: 0,
      audioChunksScheduled: 0,
      audioChunksPlayed: 0,
      audioSecondsScheduled: 0,
      audioChunksDropped: 0,
      decodeErrors: 0,
      lastRms: 0,
      maxRms: 0,
      audibleMs: 0,
    });
    this._timer = null;
    /** What was scheduled when: {userId, key, seq, at, end} in context seconds (tests check no overlap). */
    this.timeline = [];
  }

  /** Creates the audio graph; call from a user gesture so autoplay rules let it run. */
  ensureContext() {
    if (this.ctx) {
      if (this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
      return this.ctx;
    }
    const ctx = new AudioContext({ latencyHint: "playback" });
    this.gain = ctx.createGain();
    this.analyser = ctx.createAnalyser();
    this.analyser.fftSize = 2048;
    this.gain.connect(this.analyser).connect(ctx.destination);
    this._applyGain();
    this.ctx = ctx;
    this._rmsBuf = new Float32Array(this.analyser.fftSize);
    this._meter = setInterval(() => this._measure(), 50);
    ctx.addEventListener("statechange", () => this.dispatchEvent(new CustomEvent("statechange", { detail: { state: ctx.state } })));
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    return ctx;
  }

  get blocked() {
    return !this.ctx || this.ctx.state !== "running";
  }

  setVolume(v) {
    this.volume = Math.max(0, Math.min(1, v));
    this._applyGain();
  }

  setMuted(m) {
    this.muted = !!m;
    this._applyGain();
  }

  _applyGain() {
    if (!this.gain) return;
    const target = this.muted ? 0 : this.volume;
    this.gain.gain.setTargetAtTime(target, this.gain.context.currentTime, 0.015);
  }

  /** Queues one server `audio` message. */
  push(m) {
    this.stats.audioChunksReceived++;
    const key = `${m.userId}:${m.turn}:${m.segment}`;
    if (this.done.has(key)) {
      this.stats.audioChunksDropped++;
      return;
    }
    let sp = this.speakers.get(m.userId);
    if (!sp) {
      sp = { segments: [], language: m.language };
      this.speakers.set(m.userId, sp);
    }
    sp.language = m.language;
    let seg = sp.segments.find((s) => s.key === key);
    if (!seg) {
      seg = { key, turn: m.turn, segment: m.segment, chunks: new Map(), nextSeq: 0, lastSeq: null, touched: 0, started: false };
      // Keep segments of one turn in number order even if a later one arrives first.
      const idx = sp.segments.findIndex((s) => !s.started && s.turn === m.turn && s.segment > m.segment);
      if (idx >= 0) sp.segments.splice(idx, 0, seg);
      else sp.segments.push(seg);
    }
    seg.touched = performance.now();
    if (m.seq >= seg.nextSeq && !seg.chunks.has(m.seq)) {
      if (m.codec === "opus") {
        seg.chunks.set(m.seq, null); // decoding: the pump waits for it
        this._decodeOpus(seg, m);
      } else {
        seg.chunks.set(m.seq, { data: m.pcm ? decodePcm16(m.pcm) : new Float32Array(0), rate: m.rate || PLAYBACK_RATE });
      }
    } else this.stats.audioChunksDropped++;
    if (m.last) seg.lastSeq = m.seq;
    if (!this.waiting.includes(m.userId) && this.current !== m.userId) this.waiting.push(m.userId);
    this._pump();
  }

  _decodeOpus(seg, m) {
    const fail = (e) => {
      this.stats.decodeErrors++;
      console.warn("opus decode failed", e);
    };
    if (typeof AudioDecoder === "undefined") {
      fail(new Error("this browser has no WebCodecs AudioDecoder"));
      seg.chunks.set(m.seq, { data: new Float32Array(0), rate: 48000 });
      return;
    }
    if (!seg.decoder) seg.decoder = new OpusSegmentDecoder(fail);
    seg.decoder
      .decode(m.packets || [], m.frameMs || 20)
      .catch((e) => {
        fail(e);
        return { data: new Float32Array(0), rate: 48000 };
      })
      .then((out) => {
        if (seg.chunks.get(m.seq) === null) seg.chunks.set(m.seq, out);
        if (m.last) seg.decoder.close();
        this._pump();
      });
  }

  /** Forgets everything queued (e.g. after leaving the room). */
  reset() {
    this.speakers.clear();
    this.waiting = [];
    this.done.clear();
    this._setCurrent(null);
    clearTimeout(this._timer);
  }

  _setCurrent(userId) {
    if (this.current === userId) return;
    this.current = userId;
    const language = userId ? this.speakers.get(userId)?.language : null;
    this.dispatchEvent(new CustomEvent("hearing", { detail: { userId, language } }));
  }

  _pump() {
    clearTimeout(this._timer);
    if (!this.ctx) return;
    const now = performance.now();
    if (!this.current) {
      const next = this.waiting.shift();
      if (next) this._setCurrent(next);
    }
    const uid = this.current;
    if (!uid) return;
    const sp = this.speakers.get(uid);
    while (sp && sp.segments.length) {
      const seg = sp.segments[0];
      while (seg.chunks.has(seg.nextSeq) && seg.chunks.get(seg.nextSeq) !== null) {
        const seq = seg.nextSeq;
        const chunk = seg.chunks.get(seq);
        seg.chunks.delete(seq);
        seg.nextSeq++;
        seg.started = true;
        this._schedule(chunk.data, chunk.rate, uid, seg.key, seq);
      }
      const finished = seg.lastSeq !== null && seg.nextSeq > seg.lastSeq;
      const stalled = now - seg.touched > this.stallMs;
      if (finished) {
        sp.segments.shift();
        this._markDone(seg.key);
        continue;
      }
      // A chunk still decoding is not a hole: wait for it (skipping to it again would spin forever).
      if (stalled && seg.chunks.get(seg.nextSeq) !== null) {
        if (seg.chunks.size) {
          // A chunk is missing: skip the hole rather than stop the speaker.
          seg.nextSeq = Math.min(...seg.chunks.keys());
          continue;
        }
        sp.segments.shift();
        seg.decoder?.close();
        this._markDone(seg.key);
        continue;
      }
      break; // waiting for more of this segment
    }
    const ahead = this.nextTime - this.ctx.currentTime;
    if (!sp || (sp.segments.length === 0 && ahead <= 0)) {
      // Nothing left for this speaker: keep the floor a moment (more may come), then pass it on.
      if (!this._releaseAt) this._releaseAt = now + this.holdMs;
      if (!sp || now >= this._releaseAt) {
        this._releaseAt = 0;
        this.speakers.delete(uid);
        this._setCurrent(null);
        if (this.waiting.length) this._pump();
        return;
      }
    } else {
      this._releaseAt = 0;
    }
    this._timer = setTimeout(() => this._pump(), Math.max(30, Math.min(200, ahead * 1000 - 50)));
  }

  /** Remembers finished segments (late duplicates are dropped), the most recent few hundred. */
  _markDone(key) {
    this.done.add(key);
    if (this.done.size > 500) this.done.delete(this.done.values().next().value);
  }

  _schedule(data, rate, userId, key, seq) {
    if (!data.length) return;
    const ctx = this.ctx;
    const buf = ctx.createBuffer(1, data.length, rate);
    buf.copyToChannel(data, 0);
    const src = ctx.createBufferSource();
    src.buffer = buf;
    src.connect(this.gain);
    const at = Math.max(this.nextTime, ctx.currentTime + this.leadS);
    src.start(at);
    src.onended = () => {
      this.stats.audioChunksPlayed++;
      src.disconnect();
    };
    this.nextTime = at + buf.duration;
    this.timeline.push({ userId, key, seq, at, end: this.nextTime });
    if (this.timeline.length > 500) this.timeline.shift();
    this.stats.audioChunksScheduled++;
    this.stats.audioSecondsScheduled += buf.duration;
  }

  _measure() {
    this.analyser.getFloatTimeDomainData(this._rmsBuf);
    let sum = 0;
    for (const v of this._rmsBuf) sum += v * v;
    const rms = Math.sqrt(sum / this._rmsBuf.length);
    this.stats.lastRms = rms;
    if (rms > this.stats.maxRms) this.stats.maxRms = rms;
    if (rms > 0.005) this.stats.audibleMs += 50;
  }
}
