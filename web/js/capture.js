/**
 * Microphone capture: getUserMedia + the capture AudioWorklet, producing 200 ms PCM16 16 kHz frames.
 *
 * Why the mic opens on the first press and closes after a quiet minute: no open-mic indicator while
 * nobody talks, but consecutive turns start instantly.
 */

export const WIRE_RATE = 16000;
export const FRAME_SAMPLES = 3200; // 200 ms: half the events (and function runs) of 100 ms frames

export class Capture extends EventTarget {
  constructor({ idleCloseMs = 60000 } = {}) {
    super();
    this.idleCloseMs = idleCloseMs;
    this.ctx = null;
    this.stream = null;
    this.node = null;
    this._opening = null;
    this._onFrame = null;
    this._stopped = null;
    this._idleTimer = null;
    this.recording = false;
    this.level = 0;
    /** getUserMedia audio constraints (browser echo cancellation etc.). */
    this.audioConstraints = { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  }

  /** Opens the microphone and the worklet once; later calls reuse them. */
  ensure() {
    if (this.node) return Promise.resolve();
    if (!this._opening) {
      this._opening = this._open().finally(() => { this._opening = null; });
    }
    return this._opening;
  }

  async _open() {
    if (!navigator.mediaDevices?.getUserMedia) throw new Error("this browser cannot capture audio here (needs https or localhost)");
    const stream = await navigator.mediaDevices.getUserMedia({ audio: this.audioConstraints, video: false });
    const ctx = new AudioContext({ latencyHint: "interactive" });
    const url = new URL("./capture-worklet.js", import.meta.url);
    await ctx.audioWorklet.addModule(url);
    const src = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "capture-processor", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { targetRate: WIRE_RATE, frameSamples: FRAME_SAMPLES },
    });
    const sink = ctx.createGain();
    sink.gain.value = 0; // keeps the worklet pulled without sending the mic to the speakers
    src.connect(node).connect(sink).connect(ctx.destination);
    node.port.onmessage = (e) => this._onMessage(e.data);
    if (ctx.state === "suspended") await ctx.resume().catch(() => {});
    this.ctx = ctx;
    this.stream = stream;
    this.node = node;
    this.sampleRate = ctx.sampleRate;
    // If the device goes away (unplugged, permission revoked), forget it so the next press reopens.
    for (const t of stream.getTracks()) t.addEventListener("ended", () => this.close());
  }

  _onMessage(m) {
    if (m.type === "frame") {
      this.level = m.rms;
      this.dispatchEvent(new CustomEvent("level", { detail: { rms: m.rms } }));
      if (this._onFrame && m.pcm.byteLength > 0) this._onFrame(new Int16Array(m.pcm), m.rms, m.last);
    } else if (m.type === "stopped") {
      const done = this._stopped;
      this._stopped = null;
      this._onFrame = null;
      done?.();
    }
  }

  /** Starts sending frames to `onFrame(int16, rms, last)`; the mic is opened first if needed. */
  async begin(onFrame) {
    clearTimeout(this._idleTimer);
    this.recording = true;
    this._onFrame = onFrame;
    await this.ensure();
    if (!this.recording || this._onFrame !== onFrame) return; // released before the mic was ready
    if (this.ctx.state === "suspended") await this.ctx.resume().catch(() => {});
    if (!this.recording || this._onFrame !== onFrame || !this.node) return;
    this.node.port.postMessage({ cmd: "start" });
  }

  /** Stops; resolves after the last (possibly shorter) frame has been delivered. */
  end() {
    const wasRecording = this.recording;
    this.recording = false;
    this._armIdle();
    if (!wasRecording || !this.node) {
      this._onFrame = null;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this._stopped = null; this._onFrame = null; resolve(); }, 1000);
      this._stopped = () => { clearTimeout(timer); resolve(); };
      this.node.port.postMessage({ cmd: "stop" });
    });
  }

  _armIdle() {
    clearTimeout(this._idleTimer);
    this._idleTimer = setTimeout(() => { if (!this.recording) this.close(); }, this.idleCloseMs);
  }

  /** Releases the microphone. */
  close() {
    clearTimeout(this._idleTimer);
    for (const t of this.stream?.getTracks() ?? []) t.stop();
    this.ctx?.close().catch(() => {});
    this.ctx = this.stream = this.node = null;
    this.recording = false;
  }
}
