#!/usr/bin/env node
// Classify a WAV file with an instrunet waveform-in artifact (the log-mel front end is inside
// the ONNX graph), from Node.js with onnxruntime-node alone: no Python, no front-end code.
//
//   npm ci                       # in examples/node
//   node classify.js ARTIFACT_DIR audio.wav [--hop SECONDS]
//
// ARTIFACT_DIR holds manifest.json + model.onnx, as written by
//   python -m export waveform --from instrunet_core/models/family/1.0.0 --out build/models
// audio.wav: PCM 16-bit or float 32-bit, any channel count (mixed to mono by the mean), at the
// manifest's front_end.sample_rate (22,050 Hz): resampling is the host's job.
//
// Windows are cut as instrunet_core's Classifier does: window_samples long, starting every hop
// seconds snapped to whole STFT frames (1.5 s -> 65 x 512 samples), and for the audio after the
// last full one a last window aligned to the end (from the first STFT frame that reaches it; a
// recording shorter than a window gets one window padded with silence).
// Prints JSON: {labels, starts, probabilities (one row per window), silent (per window), mean}:
// `mean` is instrunet's overall answer (Model.predict's probabilities): the loudness-weighted
// mean of the windows that are not silent (a window below -60 dBFS RMS is silent; the others
// weigh their linear RMS relative to the loudest), all zeros when every window is silent. A
// window's level is measured as instrunet measures it: in 512-sample blocks, each about its own
// least-squares straight line (so a DC offset or a slow drift is no sound), their powers averaged
// by samples.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const ort = require('onnxruntime-node');

// A window whose RMS is below this (dBFS) is silent: left out of the mean, as in instrunet.
const SILENCE_DB = -60;

function fail(msg) {
  process.stderr.write(`classify.js: error: ${msg}\n`);
  process.exit(1);
}

function readWav(file) {
  const b = fs.readFileSync(file);
  if (b.length < 12 || b.toString('ascii', 0, 4) !== 'RIFF' || b.toString('ascii', 8, 12) !== 'WAVE') fail(`${file}: not a RIFF/WAVE file`);
  let off = 12;
  let fmt = null;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4);
    let size = b.readUInt32LE(off + 4);
    const body = off + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + 16 > b.length) fail(`${file}: its fmt chunk is cut short (the file ends in its header)`);
      let format = b.readUInt16LE(body);
      if (format === 0xfffe) format = b.readUInt16LE(body + 24); // WAVE_FORMAT_EXTENSIBLE: sub-format
      fmt = { format, channels: b.readUInt16LE(body + 2), rate: b.readUInt32LE(body + 4), bits: b.readUInt16LE(body + 14) };
    } else if (id === 'data') {
      if (!fmt) fail(`${file}: data chunk before fmt chunk`);
      const { format, channels, rate, bits } = fmt;
      const bytes = bits / 8;
      // a data size of 0 (or past the file's end) is a header a recorder never finished: the
      // samples are the rest of the file, as instrunet (libsndfile) reads them
      if (size === 0 || size === 0xffffffff) size = b.length - body;
      const frames = Math.floor(Math.min(size, b.length - body) / (bytes * channels));
      const mono = new Float32Array(frames);
      for (let i = 0; i < frames; i++) {
        let s = 0;
        for (let c = 0; c < channels; c++) {
          const p = body + (i * channels + c) * bytes;
          if (format === 1 && bits === 16) s += b.readInt16LE(p) / 32768;
          else if (format === 3 && bits === 32) s += b.readFloatLE(p);
          else fail(`${file}: unsupported sample format ${format}/${bits} bit (use PCM 16 or float 32)`);
        }
        mono[i] = s / channels;
      }
      return { rate, samples: mono };
    }
    off = body + size + (size % 2);
  }
  fail(`${file}: no data chunk`);
}

// Samples per level block (instrunet_core.features.LEVEL_BLOCK).
const LEVEL_BLOCK = 512;

// Power of y[a..b) about its own least-squares straight line (0 for fewer than 3 samples).
function blockPower(y, a, b) {
  const n = b - a;
  if (n < 3) return 0;
  let mx = 0;
  for (let i = a; i < b; i++) mx += y[i];
  mx /= n;
  const mt = (n - 1) / 2;
  let sxx = 0;
  let sxt = 0;
  let stt = 0;
  for (let i = a; i < b; i++) {
    const x = y[i] - mx;
    const t = i - a - mt;
    sxx += x * x;
    sxt += x * t;
    stt += t * t;
  }
  return Math.max(sxx - (sxt * sxt) / stt, 0) / n;
}

function windows(y, win, hop, frame) {
  const starts = [];
  let next = 0;
  while (next + win <= y.length) { starts.push(next); next += hop; }
  if (starts.length === 0 || starts[starts.length - 1] + win < y.length) {
    // the audio after the last full window (or a recording shorter than one): one more window
    starts.push(y.length < win ? 0 : Math.ceil((y.length - win) / frame) * frame);
  }
  const batch = new Float32Array(starts.length * win); // zero-filled: any padding
  starts.forEach((s, i) => batch.set(y.subarray(s, Math.min(s + win, y.length)), i * win));
  return { starts, batch };
}

async function main() {
  const args = process.argv.slice(2);
  let hopSeconds = 1.5;
  const h = args.indexOf('--hop');
  if (h >= 0) {
    const text = args[h + 1];
    hopSeconds = Number(text);
    // as instrunet's --hop: seconds from 0.01 to 3600 (a NaN hop cut one window of the file)
    if (text === undefined || text.trim() === '' || !Number.isFinite(hopSeconds) || hopSeconds < 0.01 || hopSeconds > 3600) {
      fail(`--hop must be a number of seconds from 0.01 to 3600, got ${text === undefined ? 'nothing' : JSON.stringify(text)}`);
    }
    args.splice(h, 2);
  }
  if (args.length !== 2) fail('usage: node classify.js ARTIFACT_DIR audio.wav [--hop SECONDS]');
  const [dir, wav] = args;
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  if (manifest.input.kind !== 'waveform') fail(`${dir}: input kind is ${manifest.input.kind || 'logmel'}, need a waveform-in artifact`);
  const fe = manifest.front_end;
  const { rate, samples } = readWav(wav);
  if (rate !== fe.sample_rate) fail(`${wav}: sample rate ${rate} Hz, the model needs ${fe.sample_rate} Hz (resample first)`);
  if (samples.length === 0) fail(`${wav}: no samples`);
  const win = manifest.input.shape[1];
  const hop = Math.max(1, Math.round(hopSeconds * fe.sample_rate / fe.hop_length)) * fe.hop_length;
  const { starts, batch } = windows(samples, win, hop, fe.hop_length);
  const session = await ort.InferenceSession.create(path.join(dir, manifest.file), { intraOpNumThreads: 1 });
  const input = new ort.Tensor('float32', batch, [starts.length, win]);
  const out = (await session.run({ [manifest.input.name]: input }))[manifest.output.name];
  const n = manifest.labels.length;
  const rows = [];
  for (let i = 0; i < starts.length; i++) rows.push(Array.from(out.data.slice(i * n, (i + 1) * n)));
  // each window's level over the samples it holds (not its padding), in dB re. full scale
  const levels = starts.map((s) => {
    const end = Math.min(s + win, samples.length);
    let total = 0;
    for (let a = s; a < end; a += LEVEL_BLOCK) total += blockPower(samples, a, Math.min(a + LEVEL_BLOCK, end)) * (Math.min(a + LEVEL_BLOCK, end) - a);
    return 10 * Math.log10(Math.max(total / Math.max(1, end - s), 1e-20));
  });
  const silent = levels.map((db) => db < SILENCE_DB);
  const top = Math.max(...levels.filter((db, i) => !silent[i]));
  const weights = levels.map((db, i) => (silent[i] ? 0 : 10 ** ((db - top) / 20)));
  const total = weights.reduce((a, b) => a + b, 0);
  const mean = new Array(n).fill(0);
  if (total > 0) rows.forEach((row, i) => row.forEach((v, k) => { mean[k] += (v * weights[i]) / total; }));
  process.stdout.write(JSON.stringify({ labels: manifest.labels, starts, probabilities: rows, silent, mean }) + '\n');
}

main().catch((e) => fail(e.message || String(e)));
