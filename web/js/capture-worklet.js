/**
 * AudioWorklet that turns the microphone into the wire format: PCM16 mono 16 kHz, 200 ms frames.
 *
 * Why in a worklet: it runs on the audio thread, so frames keep their timing while the page is busy,
 * and it works at whatever rate the device runs (Firefox cannot connect a 48 kHz mic to a 16 kHz
 * context), so we low-pass and resample here instead of asking the browser for 16 kHz.
 *
 * Port in: {cmd: "start"} | {cmd: "stop"}. Port out: {type: "frame", pcm: ArrayBuffer, rms, last}
 * and {type: "stopped"} after the final (possibly shorter) frame.
 */

/** RBJ biquad low-pass, run twice (4th order) to keep speech and drop what would alias. */
class Biquad {
  constructor(fs, fc, q = Math.SQRT1_2) {
    const w0 = (2 * Math.PI * fc) / fs;
    const cos = Math.cos(w0);
    const alpha = Math.sin(w0) / (2 * q);
    const a0 = 1 + alpha;
    this.b0 = (1 - cos) / 2 / a0;
    this.b1 = (1 - cos) / a0;
    this.b2 = this.b0;
    this.a1 = (-2 * cos) / a0;
    this.a2 = (1 - alpha) / a0;
    this.reset();
  }
  reset() {
    this.x1 = this.x2 = this.y1 = this.y2 = 0;
  }
  run(x) {
    const y = this.b0 * x + this.b1 * this.x1 + this.b2 * this.x2 - this.a1 * this.y1 - this.a2 * this.y2;
    this.x2 = this.x1;
    this.x1 = x;
    this.y2 = this.y1;
    this.y1 = y;
    return y;
  }
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options?.processorOptions ?? {};
    this.outRate = o.targetRate ?? 16000;
    this.frameSamples = o.frameSamples ?? 1600;
    this.step = sampleRate / this.outRate;
    const fc = Math.min(this.outRate * 0.45, sampleRate * 0.45);
    this.filters = this.step > 1.05 ? [new Biquad(sampleRate, fc), new Biquad(sampleRate, fc)] : [];
    this.recording = false;
    this.resetState();
    this.port.onmessage = (e) => {
      if (e.data?.cmd === "start") {
        this.resetState();
        this.recording = true;
      } else if (e.data?.cmd === "stop") {
        if (this.recording) this.flush(true);
        this.recording = false;
        this.port.postMessage({ type: "stopped" });
      }
    };
  }

  resetState() {
    for (const f of this.filters) f.reset();
    this.t = 0; // position of the next output sample, in input samples, relative to the current block
    this.prev = 0; // last filtered input sample of the previous block
    this.buf = new Int16Array(this.frameSamples);
    this.n = 0;
    this.sumSq = 0;
  }

  push(v) {
    const s = Math.max(-1, Math.min(1, v));
    this.sumSq += s * s;
    this.buf[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.n === this.frameSamples) this.flush(false);
  }

  flush(last) {
    if (this.n === 0 && !last) return;
    const pcm = this.buf.slice(0, this.n).buffer;
    const rms = this.n ? Math.sqrt(this.sumSq / this.n) : 0;
    this.port.postMessage({ type: "frame", pcm, rms, last }, [pcm]);
    this.n = 0;
    this.sumSq = 0;
  }

  process(inputs, outputs) {
    const input = inputs[0];
    if (this.recording && input && input.length > 0) {
      const ch0 = input[0];
      const len = ch0.length;
      // Mix down to mono and low-pass.
      const y = new Float32Array(len);
      for (let i = 0; i < len; i++) {
        let v = 0;
        for (let c = 0; c < input.length; c++) v += input[c][i];
        v /= input.length;
        for (const f of this.filters) v = f.run(v);
        y[i] = v;
      }
      // Linear-interpolating resampler with state carried across blocks.
      let t = this.t;
      while (t < len - 1) {
        const i = Math.floor(t);
        const frac = t - i;
        const a = i < 0 ? this.prev : y[i];
        const b = y[i + 1];
        this.push(a + (b - a) * frac);
        t += this.step;
      }
      this.t = t - len;
      this.prev = y[len - 1];
    }
    // Output silence: the node only needs to be pulled by the graph.
    for (const out of outputs) for (const ch of out) ch.fill(0);
    return true;
  }
}

registerProcessor("capture-processor", CaptureProcessor);
