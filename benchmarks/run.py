"""Speed and memory of ``instrunet_core``, side by side with the seed's path, in one run.

Usage::

    python -m benchmarks.run --out docs/benchmarks.md            # about 5 minutes here
    python -m benchmarks.run --out /tmp/b.md --hour-seconds 600  # a quicker look

The seed's path is what the InstruNet seed did: ``librosa`` mel spectrogram + ``power_to_db``
and Keras ``model.predict`` on the ``seed_v3`` CNN (TensorFlow backend). Its trained weights
are used when ``--seed-model`` names a ``.keras`` file; otherwise an untrained ``seed_v3`` of
the same architecture is built (weights do not change its speed).

Every measurement runs in a fresh child process (so imports, thread pools and peak memory
belong to one measurement only), and both paths are measured in the same run, one after the
other, on the same files. Timings are medians; these machines are shared and noisy, so
compare the two columns of one run rather than numbers across runs.

Measured:

* **cold**: a fresh interpreter imports the library, loads the default model and predicts
  3 s of audio (time from before the import to the answer; interpreter start-up excluded);
* **warm clip**: one 3 s clip (22,050 Hz mono), front end + model, after warm-up;
* **timeline**: ``instrunet_core.analyze`` of a long 44.1 kHz stereo WAV (decoding,
  resampling, mixdown, the ``Classifier`` with STFT frames shared between overlapping windows,
  model, timeline), wall time and peak RSS, for a one-hour and a ten-minute file; beside it on
  the same files, the same windows through the per-window front end (``batch_features`` on
  each window: every frame computed twice) and the seed's path (whole file loaded by librosa,
  2 s windows, 1 s hop, batched Keras predictions; ``--no-seed-hour`` skips it on the hour).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ensemble.flac"

# --------------------------------------------------------------------------- child programs
# Each prints one JSON object on its last stdout line.

_OURS_COLD = """
import time, json, resource
t0 = time.perf_counter()
import numpy as np
import instrunet_core
t1 = time.perf_counter()
model = instrunet_core.load_model()
t2 = time.perf_counter()
t = np.arange(3 * 44100) / 44100
y = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t)).astype(np.float32)
p = model.predict(y, 44100)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "predict_s": t3 - t2, "total_s": t3 - t0,
                  "label": p.label, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_SEED_COLD = """
import os, sys, time, json, resource
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
t0 = time.perf_counter()
import numpy as np, librosa, keras
t1 = time.perf_counter()
model = keras.models.load_model(sys.argv[1])
t2 = time.perf_counter()
t = np.arange(3 * 44100) / 44100
y = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t)).astype(np.float32)
y = librosa.resample(y, orig_sr=44100, target_sr=22050)
S = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=22050, n_mels=128), ref=np.max)
S = (S[:, :128] + 80.0) / 80.0
p = model.predict(S[None, :, :, None], verbose=0)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "predict_s": t3 - t2, "total_s": t3 - t0,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_OURS_WARM = """
import time, json, sys
import numpy as np
import instrunet_core
from instrunet_core.features import batch_features
model = instrunet_core.load_model()
runs = int(sys.argv[1])
t = np.arange(model.front_end.window_samples) / 22050
y = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t)).astype(np.float32)
def timed(f):
    for _ in range(20):
        f()
    ts = []
    for _ in range(runs):
        a = time.perf_counter(); f(); ts.append(time.perf_counter() - a)
    return float(np.median(ts) * 1e3), float(np.percentile(ts, 90) * 1e3)
fe = timed(lambda: batch_features(y[None]))
x = batch_features(y[None])
net = timed(lambda: model.predict_features(x))
both = timed(lambda: model.predict_features(batch_features(y[None])))
api = timed(lambda: model.predict(y, 22050))
print(json.dumps({"front_end_ms": fe, "model_ms": net, "front_end_plus_model_ms": both, "predict_api_ms": api}))
"""

_SEED_WARM = """
import os, sys, time, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import numpy as np, librosa, keras
model = keras.models.load_model(sys.argv[1])
runs = int(sys.argv[2])
t = np.arange(65024) / 22050
y = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t)).astype(np.float32)
def feats():
    S = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=22050, n_mels=128), ref=np.max)
    return ((S[:, :128] + 80.0) / 80.0)[None, :, :, None]
def timed(f):
    for _ in range(5):
        f()
    ts = []
    for _ in range(runs):
        a = time.perf_counter(); f(); ts.append(time.perf_counter() - a)
    return float(np.median(ts) * 1e3), float(np.percentile(ts, 90) * 1e3)
x = feats()
fe = timed(feats)
net = timed(lambda: model.predict(x, verbose=0))
both = timed(lambda: model.predict(feats(), verbose=0))
print(json.dumps({"front_end_ms": fe, "model_ms": net, "front_end_plus_model_ms": both}))
"""

_OURS_TIMELINE = """
import time, json, sys, resource
t0 = time.perf_counter()
import instrunet_core
model = instrunet_core.load_model()
t1 = time.perf_counter()
a = instrunet_core.analyze(sys.argv[1], model=model)
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t1, "setup_s": t1 - t0, "duration": a.duration, "windows": len(a.timeline),
                  "label": a.label, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# The same windows (hop 65 frames) through the per-window front end, as before the Classifier
# shared frames: decode + resample in blocks, every window's STFT computed from scratch.
_OURS_TIMELINE_PER_WINDOW = """
import time, json, sys, resource
import numpy as np
import instrunet_core
from instrunet_core.audio import rms_db, stream_windows
from instrunet_core.features import batch_features
model = instrunet_core.load_model()
fe = model.front_end
t1 = time.perf_counter()
n, total = 0, 0
for b in stream_windows(sys.argv[1], fe=fe, hop_samples=65 * fe.hop_length, batch_size=16):
    p = model.predict_features(batch_features(b.windows, fe=fe), batch_size=16)
    lv = [rms_db(w[: max(1, k)]) for w, k in zip(b.windows, b.lengths)]
    n += len(p)
    total = max(total, int((b.starts + b.lengths).max()))
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t1, "duration": total / fe.sample_rate, "windows": n,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_SEED_TIMELINE = """
import os, sys, time, json, resource
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
t0 = time.perf_counter()
import numpy as np, librosa, keras
model = keras.models.load_model(sys.argv[2])
t1 = time.perf_counter()
y, sr = librosa.load(sys.argv[1], sr=22050, mono=True)
win, hop = 2 * sr, 1 * sr
feats = []
for s in range(0, max(1, len(y) - win + 1), hop):
    S = librosa.power_to_db(librosa.feature.melspectrogram(y=y[s:s + win], sr=sr, n_mels=128), ref=np.max)
    S = np.pad(S, ((0, 0), (0, max(0, 128 - S.shape[1]))))[:, :128]
    feats.append((S + 80.0) / 80.0)
X = np.stack(feats)[..., None].astype(np.float32)
probs = np.concatenate([model.predict(X[i:i + 32], verbose=0) for i in range(0, len(X), 32)])
mean = probs.mean(axis=0)
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t1, "setup_s": t1 - t0, "duration": len(y) / sr, "windows": len(X),
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(code: str, *args: str, timeout: float = 1800) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                       env=env, timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({r.returncode}):\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    return out


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    out = {k: float(np.median([r[k] for r in runs])) for k in keys}
    out["runs"] = len(runs)
    return out


def make_long_wav(path: Path, seconds: float, *, sr: int = 44100, channels: int = 2) -> Path:
    """A long 16-bit WAV made of the bundled ensemble example (resampled to ``sr``), written in blocks."""
    import soundfile as sf
    import soxr

    if path.is_file() and abs(sf.info(str(path)).duration - seconds) < 1e-3:
        return path
    y, native = sf.read(str(EXAMPLE), dtype="float32", always_2d=True)
    y = soxr.resample(y, native, sr, quality="HQ").astype(np.float32)
    if y.shape[1] != channels:
        y = np.repeat(y.mean(axis=1, keepdims=True), channels, axis=1)
    total = int(seconds * sr)
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=channels, subtype="PCM_16") as f:
        written = 0
        while written < total:
            n = min(len(y), total - written)
            f.write(y[:n])
            written += n
    return path


def seed_model_path(given: Path | None, workdir: Path) -> tuple[Path, str]:
    if given is not None:
        return given, f"trained weights from {given}"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    code = f"""
    import os
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from training.models import build_model
    build_model("seed_v3").save({str(workdir / 'seed_v3.keras')!r})
    print("{{}}")
    """
    _child(code)
    return workdir / "seed_v3.keras", "untrained seed_v3 (same architecture; weights do not change speed)"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.0f}×" if b > 0 else "n/a"


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="instrunet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    seed_model, seed_desc = seed_model_path(args.seed_model, work)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    res: dict[str, Any] = {"seed_model": seed_desc, "loadavg_start": list(os.getloadavg())}

    log("cold start (fresh interpreters)")
    res["cold"] = {
        "ours": _median_of([_child(_OURS_COLD) for _ in range(args.cold_runs)]),
        "seed": _median_of([_child(_SEED_COLD, str(seed_model)) for _ in range(args.cold_runs)]),
    }
    log("warm 3 s clip")
    res["warm"] = {"ours": _child(_OURS_WARM, str(args.runs)),
                   "seed": _child(_SEED_WARM, str(seed_model), str(max(20, args.runs // 10)))}
    log("long files")
    hour = make_long_wav(work / "hour.wav", args.hour_seconds)
    ten = make_long_wav(work / "ten_minutes.wav", min(600.0, args.hour_seconds))
    res["timeline"] = {
        "hour": {"file_seconds": args.hour_seconds, "ours": _child(_OURS_TIMELINE, str(hour)),
                 "per_window": _child(_OURS_TIMELINE_PER_WINDOW, str(hour))},
        "ten_minutes": {"file_seconds": min(600.0, args.hour_seconds), "ours": _child(_OURS_TIMELINE, str(ten)),
                        "per_window": _child(_OURS_TIMELINE_PER_WINDOW, str(ten)),
                        "seed": _child(_SEED_TIMELINE, str(ten), str(seed_model))},
    }
    if args.seed_hour:
        log("the seed's path on the hour")
        res["timeline"]["hour"]["seed"] = _child(_SEED_TIMELINE, str(hour), str(seed_model))
    import onnxruntime

    res["environment"] = {
        "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "machine": platform.machine(),
        "processor": platform.processor(), "cpus": os.cpu_count(), "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__, "loadavg_start": res.pop("loadavg_start"), "loadavg_end": list(os.getloadavg()),
    }
    try:
        from instrunet_core import load_model

        m = load_model()
        res["model"] = f"{m.name} {m.version}"
    except Exception as e:  # noqa: BLE001
        res["model"] = f"? ({e})"
    return res


def render(res: dict[str, Any], cmd: str) -> str:
    c, w, tl = res["cold"], res["warm"], res["timeline"]
    h, ten = tl["hour"], tl["ten_minutes"]
    rt = lambda r: r["duration"] / r["seconds"]  # noqa: E731
    env = res["environment"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{cmd}` on {env['date']} ({env['cpus']} CPUs, {env['processor'] or env['machine']}, "
        f"Python {env['python']}, onnxruntime {env['onnxruntime']}, numpy {env['numpy']}); model "
        f"`{res['model']}`. The seed's path: librosa features + Keras `predict` on {res['seed_model']}. "
        "Both paths ran side by side in this one run, each measurement in a fresh process; timings are "
        "medians. These machines are shared and noisy: compare the columns of one run.",
        "",
        "| measurement | instrunet_core | seed's path | speed-up | target |",
        "|---|---|---|---|---|",
        f"| cold: import + load model + predict 3 s (fresh interpreter, {c['ours']['runs']} runs) "
        f"| {c['ours']['total_s']:.3f} s | {c['seed']['total_s']:.2f} s | {_ratio(c['seed']['total_s'], c['ours']['total_s'])} "
        "| ≤ 0.5 s |",
        f"| warm 3 s clip: front end + model (median) | {w['ours']['front_end_plus_model_ms'][0]:.2f} ms "
        f"| {w['seed']['front_end_plus_model_ms'][0]:.1f} ms "
        f"| {_ratio(w['seed']['front_end_plus_model_ms'][0], w['ours']['front_end_plus_model_ms'][0])} | ≤ 2 ms |",
        f"| — front end alone | {w['ours']['front_end_ms'][0]:.2f} ms | {w['seed']['front_end_ms'][0]:.1f} ms "
        f"| {_ratio(w['seed']['front_end_ms'][0], w['ours']['front_end_ms'][0])} | |",
        f"| — model alone | {w['ours']['model_ms'][0]:.2f} ms | {w['seed']['model_ms'][0]:.1f} ms "
        f"| {_ratio(w['seed']['model_ms'][0], w['ours']['model_ms'][0])} | |",
        f"| — whole `Model.predict` API (decode checks, windows, aggregation) | {w['ours']['predict_api_ms'][0]:.2f} ms "
        "| | | |",
        f"| timeline, {ten['file_seconds'] / 60:.0f}-minute 44.1 kHz stereo WAV: speed "
        f"| {rt(ten['ours']):.0f}× real time ({ten['ours']['seconds']:.1f} s) "
        f"| {rt(ten['seed']):.0f}× real time ({ten['seed']['seconds']:.1f} s) "
        f"| {_ratio(ten['seed']['seconds'], ten['ours']['seconds'])} | |",
        f"| — the same windows, per-window front end (no shared frames) "
        f"| {rt(ten['per_window']):.0f}× real time ({ten['per_window']['seconds']:.1f} s) | | | |",
        f"| timeline, {ten['file_seconds'] / 60:.0f}-minute file: peak memory (RSS) | {ten['ours']['maxrss_mb']:.0f} MB "
        f"| {ten['seed']['maxrss_mb']:.0f} MB | | about the hour's |",
        f"| timeline, {h['file_seconds'] / 60:.0f}-minute 44.1 kHz stereo WAV: speed "
        f"| {rt(h['ours']):.0f}× real time ({h['ours']['seconds']:.1f} s, {h['ours']['windows']} windows) "
        + (f"| {rt(h['seed']):.0f}× real time ({h['seed']['seconds']:.1f} s) "
           f"| {_ratio(h['seed']['seconds'], h['ours']['seconds'])} " if "seed" in h else "| not run | ")
        + "| ≥ 500× |",
        f"| — the same windows, per-window front end (no shared frames) "
        f"| {rt(h['per_window']):.0f}× real time ({h['per_window']['seconds']:.1f} s) | | | |",
        f"| timeline, {h['file_seconds'] / 60:.0f}-minute file: peak memory (RSS) | {h['ours']['maxrss_mb']:.0f} MB "
        + (f"| {h['seed']['maxrss_mb']:.0f} MB " if "seed" in h else "| ")
        + "| | ≤ 300 MB |",
        "",
        "Notes:",
        "",
        f"* cold start, split up (ours): import {c['ours']['import_s']:.3f} s, model load {c['ours']['load_s']:.3f} s, "
        f"first prediction {c['ours']['predict_s']:.3f} s; seed: import {c['seed']['import_s']:.2f} s, load "
        f"{c['seed']['load_s']:.2f} s, first prediction {c['seed']['predict_s']:.2f} s.",
        f"* warm p90: ours {w['ours']['front_end_plus_model_ms'][1]:.2f} ms, seed "
        f"{w['seed']['front_end_plus_model_ms'][1]:.1f} ms.",
        "* timeline settings: ours 2.95 s windows every 65 STFT frames (1.509 s), decoded in 20 s blocks (the "
        "file is never loaded whole), adjacent windows sharing their STFT frames (65 + 4 FFTs per window instead "
        "of 128), 16 windows per onnxruntime run; the per-window row runs the same windows with every "
        "window's STFT computed from scratch (`features.batch_features`, 10 s blocks, 16 windows per run). The seed's path loads the "
        "whole file with librosa and uses 2 s windows at a 1 s hop (its own settings), with Keras predictions "
        "batched by 32 (kinder to it than one call per window); on the hour it holds the whole decoded file "
        "in memory.",
        "* peak memory is the child process's maximum resident set size, interpreter, numpy and onnxruntime "
        "included.",
        *([f"* load average (1 min) when the run started / ended: {env['loadavg_start'][0]:.1f} / "
           f"{env['loadavg_end'][0]:.1f} on {env['cpus']} CPUs (other work on the machine slows both paths)."]
          if "loadavg_start" in env else []),
        "",
        "Raw numbers: [benchmarks.json](benchmarks.json).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--seed-model", type=Path, default=None, help="trained seed_v3 .keras (default: untrained)")
    ap.add_argument("--hour-seconds", type=float, default=3600.0, help="length of the long file (default 3600)")
    ap.add_argument("--runs", type=int, default=300, help="warm repetitions (seed: a tenth, at least 20)")
    ap.add_argument("--cold-runs", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None, help="where the long WAVs go (default: a temp dir)")
    ap.add_argument("--no-seed-hour", dest="seed_hour", action="store_false",
                    help="skip the seed's path on the long file (it holds the whole file in memory)")
    args = ap.parse_args(argv)
    res = run(args)
    cmd = "python -m benchmarks.run" + ("" if args.hour_seconds == 3600 else f" --hour-seconds {args.hour_seconds:g}")
    text = render(res, cmd)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
