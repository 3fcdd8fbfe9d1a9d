"""Speed and memory of ``instrunet_core``, side by side with the seed's path, in one run.

Usage::

    python -m benchmarks.run --out docs/benchmarks.md            # about 3-5 minutes here
    python -m benchmarks.run --out /tmp/b.md --hour-seconds 600  # a quicker look
    python -m benchmarks.run --model family-compact --out docs/benchmarks-compact.md
    python -m benchmarks.run --versus family@2.0.0                # another model in the same run

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
  2 s windows, 1 s hop, batched Keras predictions; ``--no-seed-hour`` skips it on the hour);
* **waveform-in artifact**: built from the default model with ``python -m export waveform``;
  its warm 3 s clip, its front end's graph alone, and the ten-minute timeline through it (is
  it worth being the default?); ``python -m benchmarks.frontend`` compares the front ends in
  more detail (docs/speed.md);
* **threads**: the ten-minute timeline with 1, 2 and one-per-core onnxruntime threads, with
  and without the ``Classifier`` pipeline, with one worker thread and with the default number
  (how the defaults were chosen);
* **under load**: ``Model.predict`` of a 3 s clip idle, then with one CPU-bound process per
  core started by the benchmark, in several rounds (medians over the rounds); with the
  defaults, with the host application's BLAS at one thread, and with one onnxruntime thread per core;
* **GPU**: the ten-minute timeline with ``providers="cuda"`` when onnxruntime has CUDA;
* **Ray**: files/s of ``plugins/instrunet-ray`` with 1 and 2 local workers (when installed).
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

from benchmarks.timing import processor

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
from benchmarks.timing import timed as _timed
model = instrunet_core.load_model()
runs = int(sys.argv[1])
sr = model.front_end.sample_rate
t = np.arange(model.front_end.window_samples) / sr
y = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t)).astype(np.float32)
timed = lambda f: _timed(f, runs)
fe = timed(lambda: batch_features(y[None]))
x = batch_features(y[None])
net = timed(lambda: model.predict_features(x))
both = timed(lambda: model.predict_features(batch_features(y[None])))
api = timed(lambda: model.predict(y, sr))
out = {"front_end_ms": fe, "model_ms": net, "front_end_plus_model_ms": both, "predict_api_ms": api}
if len(sys.argv) > 2:  # a waveform-in artifact: the front end runs inside the graph
    wave = instrunet_core.load_model(sys.argv[2])
    out["waveform_ms"] = timed(lambda: wave.predict_windows(y[None]))
    # one clip's latency with every core: onnxruntime's intra-op threads split the graph's products,
    # spinning between operators instead of sleeping (docs/speed.md)
    wave_all = instrunet_core.load_model(sys.argv[2], intra_op_threads=0, spinning=True)
    out["waveform_all_cores_ms"] = timed(lambda: wave_all.predict_windows(y[None]))
if len(sys.argv) > 3:  # the artifact's front end alone (an ONNX graph: audio in, features out)
    from instrunet_core.session import onnx_session
    front = onnx_session(sys.argv[3])  # the CPU, one thread
    out["graph_front_end_ms"] = timed(lambda: front.run(None, {"audio": y[None]}))
print(json.dumps(out))
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
from benchmarks.timing import timed as _timed
timed = lambda f: _timed(f, runs, warmup=5)
x = feats()
fe = timed(feats)
net = timed(lambda: model.predict(x, verbose=0))
both = timed(lambda: model.predict(feats(), verbose=0))
print(json.dumps({"front_end_ms": fe, "model_ms": net, "front_end_plus_model_ms": both}))
"""

# argv: file [model spec or "-"] [intra-op threads or "-"] [pipeline 1/0] [providers or "-"] [workers or "-"]
_OURS_TIMELINE = """
import time, json, sys, resource
t0 = time.perf_counter()
import instrunet_core
arg = lambda i: sys.argv[i] if len(sys.argv) > i and sys.argv[i] != "-" else None
threads = arg(3)
model = instrunet_core.load_model(arg(2), intra_op_threads=None if threads is None else int(threads),
                                  providers=arg(5))
workers = arg(6)
clf = instrunet_core.Classifier(model, pipeline=(arg(4) or "1") == "1", workers=None if workers is None else int(workers))
t1 = time.perf_counter(); c1 = time.process_time()
clf.classify(sys.argv[1])
a = clf.analysis(source=sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t1, "cpu_s": time.process_time() - c1, "setup_s": t1 - t0, "duration": a.duration, "windows": len(a.timeline),
                  "label": a.label, "provider": model.provider, "input": model.input_kind,
                  "threads": model.session_options["intra_op_threads"], "pipeline": clf.pipeline, "workers": clf.workers,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# Model.predict on a 3 s 44.1 kHz clip, idle and then with one CPU-bound process per core
# running (started here, stopped at the end). argv: runs, then "KEY=VALUE" settings for the
# environment of this child are given by the parent.
_OURS_LOAD = """
import json, os, subprocess, sys, time
import numpy as np
import instrunet_core
threads = os.environ.get("BENCH_THREADS")
if os.environ.get("BENCH_HOST_BLAS"):  # the host application's own BLAS setting
    import threadpoolctl
    threadpoolctl.threadpool_limits(int(os.environ["BENCH_HOST_BLAS"]), user_api="blas")
model = instrunet_core.load_model(intra_op_threads=None if threads is None else int(threads))
runs = int(sys.argv[1])
t = np.arange(3 * 44100) / 44100
y = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t)).astype(np.float32)
from benchmarks.timing import timed as _timed
timed = lambda: _timed(lambda: model.predict(y, 44100), runs, warmup=5)[0]
# Rounds of idle then loaded: one round's figure depends on where the scheduler put the
# processes, so the medians of several rounds are reported (and each round's ratio).
idles, loadeds = [], []
for _ in range(int(sys.argv[2])):
    idles.append(timed())
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.5)
        loadeds.append(timed())
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    time.sleep(0.3)
idle, loaded = float(np.median(idles)), float(np.median(loadeds))
print(json.dumps({"idle_ms": idle, "loaded_ms": loaded, "ratio": loaded / idle, "hogs": len(hogs),
                  "round_ratios": [b / a for a, b in zip(idles, loadeds)]}))
"""

# Ray Data engine: files/s on a collection of short files, with 1 and 2 local workers.
_RAY = """
import json, sys, time
t0 = time.perf_counter()
import ray, instrunet_ray
ray.init(num_cpus=int(sys.argv[3]), include_dashboard=False, log_to_driver=False)
t1 = time.perf_counter()
s = instrunet_ray.tag_collection(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]), batch_size=2, log=lambda m: None)
ray.shutdown()
print(json.dumps({"ray_init_s": t1 - t0, **s}))
"""

# The same windows (hop 65 frames) through the per-window front end, to measure what the
# Classifier's shared frames save: decode + resample in blocks, every window's STFT from scratch.
_OURS_TIMELINE_PER_WINDOW = """
import time, json, sys, resource
import numpy as np
import instrunet_core
from instrunet_core.audio import iter_blocks
from instrunet_core.features import batch_features, rms_db, window_audio
model = instrunet_core.load_model()
fe = model.front_end
t1 = time.perf_counter(); c1 = time.process_time()
n, total = 0, 0
def blocks():
    global total
    for b in iter_blocks(sys.argv[1], target_sr=fe.sample_rate):
        total += len(b)
        yield b
for starts, w in window_audio(blocks(), fe=fe, hop=1.5, batch_size=16):
    p = model.predict_features(batch_features(w, fe=fe), batch_size=16)
    lv = rms_db(w)
    n += len(p)
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t1, "cpu_s": time.process_time() - c1, "duration": total / fe.sample_rate, "windows": n,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_SEED_TIMELINE = """
import os, sys, time, json, resource
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
t0 = time.perf_counter()
import numpy as np, librosa, keras
model = keras.models.load_model(sys.argv[2])
t1 = time.perf_counter(); c1 = time.process_time()
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
print(json.dumps({"seconds": t2 - t1, "cpu_s": time.process_time() - c1, "setup_s": t1 - t0, "duration": len(y) / sr, "windows": len(X),
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _children_side_by_side(
    n: int, code: str, *args: str, timeout: float = 1800, env_extra: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """``n`` copies of a child program started together; their outputs (the JSON each prints
    last), each with ``process_wall_s``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    t = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for _ in range(n)
    ]
    outs = []
    for p in procs:
        try:
            so, se = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        if p.returncode != 0:
            raise RuntimeError(f"benchmark child failed ({p.returncode}):\n{se[-3000:]}")
        out = json.loads(so.strip().splitlines()[-1])
        out["process_wall_s"] = time.perf_counter() - t
        outs.append(out)
    return outs


def _child(
    code: str, *args: str, timeout: float = 1800, env_extra: dict[str, str] | None = None
) -> dict[str, Any]:
    return _children_side_by_side(1, code, *args, timeout=timeout, env_extra=env_extra)[0]


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median time (the lower middle of an even count), whole, plus every
    run's time: the figures quoted together then come from one real run."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    out = dict(ordered[(len(ordered) - 1) // 2])
    out["runs"] = len(runs)
    out["all_seconds"] = [r["seconds"] for r in runs]
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
    build_model("seed_v3").save({str(workdir / "seed_v3.keras")!r})
    print("{{}}")
    """
    _child(code)
    return workdir / "seed_v3.keras", "untrained seed_v3 (same architecture; weights do not change speed)"


def waveform_artifact(workdir: Path) -> Path | None:
    """The default model's waveform-in artifact, built with ``python -m export waveform`` (needs onnx)."""
    code = f"""
    import json
    from instrunet_core import load_model
    from export.waveform import export_waveform
    import onnx
    from export.waveform import frontend_graph
    m = load_model()
    r = export_waveform(m.path, {str(workdir / "waveform")!r}, force=True, log=lambda s: None)
    onnx.save(frontend_graph(m.front_end), {str(workdir / "frontend.onnx")!r})  # the same graph, alone
    print(json.dumps(r))
    """
    try:
        return Path(_child(code)["path"])
    except Exception as e:  # noqa: BLE001 - reported, the rest of the benchmark goes on
        print(f"note: no waveform-in artifact ({e})", file=sys.stderr)
        return None


def make_collection(folder: Path, n: int = 24, seconds: float = 10.0) -> Path:
    """``n`` 44.1 kHz stereo WAVs of ``seconds`` each (cut from the long file's material)."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    src = make_long_wav(folder.parent / "collection_source.wav", n * seconds)
    y, sr = sf.read(str(src), dtype="int16")
    step = int(seconds * sr)
    for i in range(n):
        p = folder / f"clip{i:03d}.wav"
        if not p.is_file():
            sf.write(str(p), y[i * step : (i + 1) * step], sr, subtype="PCM_16")
    return folder


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.0f}×" if b > 0 else "n/a"


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="instrunet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    seed_model, seed_desc = seed_model_path(args.seed_model, work)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    res: dict[str, Any] = {"seed_model": seed_desc}
    loadavg_start = os.getloadavg()[0]

    log("cold start (fresh interpreters)")
    res["cold"] = {
        "ours": _median_of([_child(_OURS_COLD) for _ in range(args.cold_runs)]),
        "seed": _median_of([_child(_SEED_COLD, str(seed_model)) for _ in range(args.cold_runs)]),
    }
    log("warm 3 s clip")
    res["warm"] = {
        "ours": _child(_OURS_WARM, str(args.runs)),
        "seed": _child(_SEED_WARM, str(seed_model), str(max(20, args.runs // 10))),
    }
    versus = {"INSTRUNET_DEFAULT_MODEL": args.versus} if args.versus else None
    if versus:
        res["warm"]["versus"] = _child(_OURS_WARM, str(args.runs), env_extra=versus)
    log("long files")
    hour = make_long_wav(work / "hour.wav", args.hour_seconds)
    ten = make_long_wav(work / "ten_minutes.wav", min(600.0, args.hour_seconds))
    # Several runs of each, ours and the seed's taking turns (a noisy moment then hits both).
    runs: dict[str, list[dict[str, Any]]] = {"ten": [], "ten_seed": [], "hour": [], "ten_versus": []}
    for _ in range(args.timeline_runs):
        runs["ten"].append(_child(_OURS_TIMELINE, str(ten)))
        if versus:
            runs["ten_versus"].append(_child(_OURS_TIMELINE, str(ten), env_extra=versus))
        runs["ten_seed"].append(_child(_SEED_TIMELINE, str(ten), str(seed_model)))
        runs["hour"].append(_child(_OURS_TIMELINE, str(hour)))
    res["timeline"] = {
        "hour": {
            "file_seconds": args.hour_seconds,
            "ours": _median_run(runs["hour"]),
            "per_window": _child(_OURS_TIMELINE_PER_WINDOW, str(hour)),
        },
        "ten_minutes": {
            "file_seconds": min(600.0, args.hour_seconds),
            "ours": _median_run(runs["ten"]),
            "per_window": _child(_OURS_TIMELINE_PER_WINDOW, str(ten)),
            "seed": _median_run(runs["ten_seed"]),
        },
    }
    if versus:
        res["versus"] = {"model": args.versus, "ten_minutes": _median_run(runs["ten_versus"])}
    if args.seed_hour:
        log("the seed's path on the hour")
        res["timeline"]["hour"]["seed"] = _child(_SEED_TIMELINE, str(hour), str(seed_model))

    log("waveform-in artifact")
    wave = waveform_artifact(work)
    if wave is not None:
        res["warm"]["waveform_artifact"] = str(wave.relative_to(work))
        warm_wave = _child(_OURS_WARM, str(args.runs), str(wave), str(work / "frontend.onnx"))
        res["warm"]["ours"]["waveform_ms"] = warm_wave["waveform_ms"]
        res["warm"]["ours"]["waveform_all_cores_ms"] = warm_wave["waveform_all_cores_ms"]
        res["warm"]["ours"]["graph_front_end_ms"] = warm_wave["graph_front_end_ms"]
        res["timeline"]["ten_minutes"]["waveform"] = _child(_OURS_TIMELINE, str(ten), str(wave))

    log("threads and pipelining (ten-minute file)")
    res["threads"] = {
        f"intra{t}_pipeline{p}_workers{w}": _child(_OURS_TIMELINE, str(ten), "-", str(t), str(p), "-", w)
        for t, p, w in (
            (1, 1, "-"),
            (1, 1, "2"),
            (2, 1, "-"),
            (2, 1, "2"),
            (0, 1, "-"),
            (1, 0, "-"),
            (2, 0, "-"),
        )
    }
    log("two cores side by side (ten-minute file, synchronous path)")
    alone, pairs = [], []
    for _ in range(args.core_rounds):
        alone.append(_child(_OURS_TIMELINE, str(ten), "-", "1", "0")["cpu_s"])
        pairs += [r["cpu_s"] for r in _children_side_by_side(2, _OURS_TIMELINE, str(ten), "-", "1", "0")]
    res["cores"] = {
        "alone_cpu_s": alone,
        "pair_cpu_s": pairs,
        "file_seconds": res["timeline"]["ten_minutes"]["file_seconds"],
    }
    log("under load")
    res["load"] = {
        "default": _child(_OURS_LOAD, str(args.load_runs), str(args.load_rounds)),
        "host_blas_1": _child(
            _OURS_LOAD, str(args.load_runs), str(args.load_rounds), env_extra={"BENCH_HOST_BLAS": "1"}
        ),
        "intra0": _child(
            _OURS_LOAD, str(args.load_runs), str(args.load_rounds), env_extra={"BENCH_THREADS": "0"}
        ),
    }
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        log("GPU")
        res["gpu"] = _child(_OURS_TIMELINE, str(ten), "-", "-", "1", "cuda")
    try:
        import instrunet_ray  # noqa: F401
        import ray  # noqa: F401
    except ImportError:
        res["ray"] = None
    else:
        log("Ray Data engine")
        # files long enough for the tagging itself to show beside Ray's start-up
        coll = make_collection(work / "collection", n=24, seconds=60.0)
        res["ray"] = {"file_seconds": 60.0}
        for k in (1, 2):
            out = work / f"ray_{k}.jsonl"
            out.unlink(missing_ok=True)
            res["ray"][f"workers{k}"] = _child(_RAY, str(coll), str(out), str(k))
    res["load_runs"] = args.load_runs
    res["load_rounds"] = args.load_rounds
    res["environment"] = {
        "loadavg_start": loadavg_start,
        "loadavg_end": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": processor(),
        "cpus": os.cpu_count(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }
    try:
        from instrunet_core import load_model

        m = load_model()
        res["model"] = f"{m.name} {m.version}"
    except Exception as e:  # noqa: BLE001
        res["model"] = f"? ({e})"
    return res


def _secs(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values) + " s"


def _opt(v: float | None, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _versus_section(res: dict[str, Any], rt: Any) -> list[str]:
    """Rows of ``--versus``: the other model measured in the same run as ours."""
    from training.report import markdown_table

    ours, other = res["warm"]["ours"], res["warm"]["versus"]
    ten, ten_o = res["timeline"]["ten_minutes"]["ours"], res["versus"]["ten_minutes"]
    minutes = res["timeline"]["ten_minutes"]["file_seconds"] / 60
    name = res["versus"]["model"]
    return [
        f"## Beside `{name}` (`--versus`)",
        "",
        f"`{res['model']}` and `{name}` in this same run: the warm clip measured one after the other, the "
        f"{minutes:.0f}-minute timeline taking turns ({ten['runs']} runs each, the median quoted; "
        f"ours: {_secs(ten['all_seconds'])}, `{name}`: {_secs(ten_o['all_seconds'])}).",
        "",
        *markdown_table(
            ["measurement", f"`{res['model']}`", f"`{name}`", "target (the default)", ""],
            [
                [
                    "warm 3 s clip: whole `Model.predict` (median)",
                    f"{ours['predict_api_ms'][0]:.2f} ms",
                    f"{other['predict_api_ms'][0]:.2f} ms",
                    "≤ 1 ms",
                    _met(ours["predict_api_ms"][0] <= 1.0),
                ],
                [
                    "— model alone",
                    f"{ours['model_ms'][0]:.2f} ms",
                    f"{other['model_ms'][0]:.2f} ms",
                    "",
                    "",
                ],
                [
                    f"timeline, {minutes:.0f}-minute 44.1 kHz stereo WAV: speed",
                    f"{rt(ten):.0f}× real time ({ten['seconds']:.2f} s)",
                    f"{rt(ten_o):.0f}× real time ({ten_o['seconds']:.2f} s)",
                    "≥ 1000×",
                    _met(rt(ten) >= 1000),
                ],
                [
                    "— CPU time (user + system, all threads)",
                    f"{ten['cpu_s']:.2f} s",
                    f"{ten_o['cpu_s']:.2f} s",
                    "",
                    "",
                ],
                [
                    "— peak memory (RSS)",
                    f"{ten['maxrss_mb']:.0f} MB",
                    f"{ten_o['maxrss_mb']:.0f} MB",
                    "",
                    "",
                ],
            ],
        ),
        "",
    ]


def render(res: dict[str, Any], cmd: str) -> str:
    from training.report import markdown_table

    c, w, tl = res["cold"], res["warm"], res["timeline"]
    h, ten = tl["hour"], tl["ten_minutes"]
    rt = lambda r: r["duration"] / r["seconds"]  # noqa: E731
    env = res["environment"]
    wo = w["ours"]
    wave_ms = wo.get("waveform_ms")
    wave_all = wo.get("waveform_all_cores_ms")
    load = res["load"]["default"]
    seed_x = ten["seed"]["seconds"] / ten["ours"]["seconds"]
    flat = h["ours"]["maxrss_mb"] <= 1.15 * ten["ours"]["maxrss_mb"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{cmd}` on {env['date']} ({env['cpus']} CPUs, {env['processor'] or env['machine']}, "
        f"Python {env['python']}, onnxruntime {env['onnxruntime']}, numpy {env['numpy']}); model "
        f"`{res['model']}`. The seed's path: librosa features + Keras `predict` on {res['seed_model']}. "
        "Both paths ran side by side in this one run, each measurement in a fresh process; timings are "
        "medians. These machines are shared and noisy: compare the columns of one run. Load average (1 min) "
        f"when this run started: {env['loadavg_start']:.1f}, when it ended: {env['loadavg_end']:.1f} "
        f"(on {env['cpus']} CPUs: above {env['cpus']} means other work was competing for the cores).",
        "",
        *(
            [
                f"**This run shared the machine with other heavy work** (load average {env['loadavg_start']:.0f}-"
                f"{env['loadavg_end']:.0f} on {env['cpus']} CPUs, i.e. roughly {env['loadavg_start'] / env['cpus']:.0f}-"
                f"{env['loadavg_end'] / env['cpus']:.0f} runnable processes per core): absolute times are several "
                "times what an idle machine gives, and so are the verdicts against the targets below; the "
                "ratios between columns measured in this run are the meaningful part.",
                "",
            ]
            if env["loadavg_start"] > 1.5 * env["cpus"]
            else []
        ),
        "| measurement | instrunet_core | seed's path | speed-up | target | |",
        "|---|---|---|---|---|---|",
        f"| cold: import + load model + predict 3 s (fresh interpreter, {c['ours']['runs']} runs) "
        f"| {c['ours']['total_s']:.3f} s | {c['seed']['total_s']:.2f} s | {_ratio(c['seed']['total_s'], c['ours']['total_s'])} "
        f"| ≤ 0.3 s | {_met(c['ours']['total_s'] <= 0.3)} |",
        f"| warm 3 s clip: numpy front end + model (median) | {wo['front_end_plus_model_ms'][0]:.2f} ms "
        f"| {w['seed']['front_end_plus_model_ms'][0]:.1f} ms "
        f"| {_ratio(w['seed']['front_end_plus_model_ms'][0], wo['front_end_plus_model_ms'][0])} | | |",
        *(
            [
                f"| warm 3 s clip: waveform-in artifact (front end inside the graph) + model, one onnxruntime thread "
                f"| {wave_ms[0]:.2f} ms | | | ≤ 1 ms | {_met(wave_ms[0] <= 1.0)} |"
            ]
            + (
                [
                    f"| — the same on every core: one onnxruntime thread per core, spinning between operators "
                    f"(`intra_op_threads=0, spinning=True`; one clip at a time on an otherwise idle machine) "
                    f"| {wave_all[0]:.2f} ms | | | ≤ 1 ms | {_met(wave_all[0] <= 1.0)} |"
                ]
                if wave_all
                else []
            )
            if wave_ms
            else [
                "| warm 3 s clip: waveform-in artifact | not measured (the artifact could not be built: no onnx, or the export failed; the run's log says why) | | | ≤ 1 ms | |"
            ]
        ),
        f"| — numpy front end alone | {wo['front_end_ms'][0]:.2f} ms | {w['seed']['front_end_ms'][0]:.1f} ms "
        f"| {_ratio(w['seed']['front_end_ms'][0], wo['front_end_ms'][0])} | | |",
        *(
            [
                f"| — the waveform-in artifact's front end alone (its ONNX graph) | {wo['graph_front_end_ms'][0]:.2f} ms "
                "| | | | |"
            ]
            if wo.get("graph_front_end_ms")
            else []
        ),
        f"| — model alone | {wo['model_ms'][0]:.2f} ms | {w['seed']['model_ms'][0]:.1f} ms "
        f"| {_ratio(w['seed']['model_ms'][0], wo['model_ms'][0])} | | |",
        f"| — whole `Model.predict` API (decode checks, windows, aggregation) | {wo['predict_api_ms'][0]:.2f} ms "
        "| | | | |",
        f"| `Model.predict` of a 3 s clip under load (one CPU-bound process per core) | {load['loaded_ms']:.2f} ms "
        f"= {load['ratio']:.2f}× idle ({load['idle_ms']:.2f} ms) | | | ≤ 2× idle | {_met(load['ratio'] <= 2.0)} |",
        f"| timeline, {ten['file_seconds'] / 60:.0f}-minute 44.1 kHz stereo WAV: speed "
        f"| {rt(ten['ours']):.0f}× real time ({ten['ours']['seconds']:.1f} s) "
        f"| {rt(ten['seed']):.0f}× real time ({ten['seed']['seconds']:.1f} s) "
        f"| {seed_x:.0f}× | ≥ 20× the seed | {_met(seed_x >= 20)} |",
        f"| — the same windows, per-window front end (no shared frames) "
        f"| {rt(ten['per_window']):.0f}× real time ({ten['per_window']['seconds']:.1f} s) | | | | |",
        f"| — CPU time (user + system, all threads; load-independent) | {ten['ours']['cpu_s']:.2f} s "
        f"| {ten['seed']['cpu_s']:.1f} s | {ten['seed']['cpu_s'] / ten['ours']['cpu_s']:.0f}× | | |",
        f"| timeline, {ten['file_seconds'] / 60:.0f}-minute file: peak memory (RSS) | {ten['ours']['maxrss_mb']:.0f} MB "
        f"| {ten['seed']['maxrss_mb']:.0f} MB | | | |",
        f"| timeline, {h['file_seconds'] / 60:.0f}-minute 44.1 kHz stereo WAV: speed "
        f"| {rt(h['ours']):.0f}× real time ({h['ours']['seconds']:.1f} s, {h['ours']['windows']} windows) "
        + (
            f"| {rt(h['seed']):.0f}× real time ({h['seed']['seconds']:.1f} s) "
            f"| {_ratio(h['seed']['seconds'], h['ours']['seconds'])} "
            if "seed" in h
            else "| not run | "
        )
        + f"| ≥ 1000× | {_met(rt(h['ours']) >= 1000)} |",
        f"| — the same windows, per-window front end (no shared frames) "
        f"| {rt(h['per_window']):.0f}× real time ({h['per_window']['seconds']:.1f} s) | | | | |",
        f"| — CPU time (user + system, all threads) | {h['ours']['cpu_s']:.2f} s: on an idle machine with "
        f"{env['cpus']} cores that is {h['ours']['duration'] / h['ours']['cpu_s']:.0f}× real time on one core and at "
        f"most {h['ours']['duration'] * env['cpus'] / h['ours']['cpu_s']:.0f}× on {env['cpus']} (an estimate from CPU "
        "time, not a measurement) | | | ≥ 1000× | |",
        f"| timeline, {h['file_seconds'] / 60:.0f}-minute file: peak memory (RSS) | {h['ours']['maxrss_mb']:.0f} MB "
        + (f"| {h['seed']['maxrss_mb']:.0f} MB " if "seed" in h else "| ")
        + f"| | ≤ 300 MB, flat in length | {_met(h['ours']['maxrss_mb'] <= 300 and flat)} "
        f"({'flat' if flat else 'not flat'}: {ten['ours']['maxrss_mb']:.0f} MB for the "
        f"{ten['file_seconds'] / 60:.0f}-minute file) |",
        "",
        "Notes:",
        "",
        f"* cold start, split up (ours): import {c['ours']['import_s']:.3f} s, model load {c['ours']['load_s']:.3f} s, "
        f"first prediction {c['ours']['predict_s']:.3f} s; seed: import {c['seed']['import_s']:.2f} s, load "
        f"{c['seed']['load_s']:.2f} s, first prediction {c['seed']['predict_s']:.2f} s.",
        f"* warm p90: ours {wo['front_end_plus_model_ms'][1]:.2f} ms"
        + (
            f" (waveform-in {wave_ms[1]:.2f} ms"
            + (f", on every core {wave_all[1]:.2f} ms" if wave_all else "")
            + ")"
            if wave_ms
            else ""
        )
        + f", seed {w['seed']['front_end_plus_model_ms'][1]:.1f} ms.",
        "* timeline settings: ours `Classifier.classify` then `analysis()`, without the second reading of "
        "doubtful stretches that `analyze` adds (`Classifier.refine`; docs/condition.md times `analyze`), "
        "2.95 s windows every 65 STFT frames (1.509 s), decoded in 20 s blocks (the "
        "file is never loaded whole; 16-bit files read as integers), adjacent windows sharing their STFT frames "
        "(65 + 4 FFTs per window instead of 128), batches of 16 windows run through onnxruntime 4 at a time, "
        "each batch (its frames, features and onnxruntime runs) a job for "
        f"{tl['ten_minutes']['ours'].get('workers', '?')} worker thread(s) while the calling thread decodes, and "
        "for the calling thread itself when the workers are all busy with one more job waiting "
        "(`Classifier(pipeline=True)`, default `workers`), one onnxruntime thread per run; the per-window row runs the same windows with every window's STFT computed from scratch "
        "(`features.batch_features`, 10 s blocks, 16 windows per run, no pipelining). The seed's path loads the "
        "whole file with librosa and uses 2 s windows at a 1 s hop (its own settings), with Keras predictions "
        "batched by 32 (kinder to it than one call per window); on the hour it holds the whole decoded file "
        "in memory.",
        "* peak memory is the child process's maximum resident set size, interpreter, numpy and onnxruntime "
        "included.",
        *(
            [
                f"* timeline runs: the {ten['file_seconds'] / 60:.0f}-minute file {ten['ours']['runs']} times each, ours and "
                "the seed's path taking turns, and our hour as often; each row quotes the run with the median time "
                f"(ours, {ten['file_seconds'] / 60:.0f} minutes: {_secs(ten['ours']['all_seconds'])}; the seed's: "
                f"{_secs(ten['seed']['all_seconds'])}; ours, the hour: {_secs(h['ours']['all_seconds'])}). The "
                "per-window rows, the seed's hour and the threads table are single runs."
            ]
            if "all_seconds" in ten["ours"] and "all_seconds" in ten.get("seed", {})
            else []
        ),
        "",
    ]
    if res.get("versus"):
        lines += _versus_section(res, rt)
    th = res["threads"]
    lines += [
        "## Threads (how the defaults were chosen)",
        "",
        f"The {ten['file_seconds'] / 60:.0f}-minute timeline with onnxruntime's intra-op threads, the "
        "pipeline and its worker threads set by hand (fresh process each):",
        "",
        *markdown_table(
            ["intra-op threads", "pipeline", "workers", "speed", "peak RSS"],
            (
                [
                    r["threads"] or "0 (one per core)",
                    "on" if r["pipeline"] else "off",
                    r.get("workers", "?") if r["pipeline"] else "-",
                    f"{rt(r):.0f}× real time ({r['seconds']:.2f} s)",
                    f"{r['maxrss_mb']:.0f} MB",
                ]
                for r in th.values()
            ),
        ),
    ]
    ld = res["load"]
    lines += [
        "",
        f"`Model.predict` of a 3 s 44.1 kHz clip, idle and with {load['hogs']} CPU-bound processes running "
        f"({ld['default']['hogs']} = one per core), {res.get('load_runs', '')} calls each, in "
        f"{res.get('load_rounds', 1)} rounds of idle then loaded (medians over the rounds; a single round's "
        "ratio depends on where the scheduler puts the processes, see the last column):",
        "",
        *markdown_table(
            ["settings", "idle", "under load", "ratio", "each round's ratio"],
            (
                [
                    label,
                    f"{ld[key]['idle_ms']:.2f} ms",
                    f"{ld[key]['loaded_ms']:.2f} ms",
                    f"{ld[key]['ratio']:.2f}×",
                    ", ".join(f"{v:.2f}" for v in ld[key].get("round_ratios", [])),
                ]
                for key, label in (
                    (
                        "default",
                        "defaults (1 onnxruntime thread; the front end's matrix products run on the calling "
                        "thread, numpy's BLAS settings untouched: one BLAS thread per core here)",
                    ),
                    (
                        "host_blas_1",
                        "the host application limits numpy's BLAS to 1 thread itself (threadpoolctl)",
                    ),
                    ("intra0", "onnxruntime one thread per core (`intra_op_threads=0`)"),
                )
            ),
        ),
    ]
    lines += [""]
    if res.get("cores"):
        co = res["cores"]
        a, pr = float(np.median(co["alone_cpu_s"])), float(np.median(co["pair_cpu_s"]))
        lines += [
            "## Two cores side by side",
            "",
            f"The {co['file_seconds'] / 60:.0f}-minute timeline on the synchronous path (`pipeline=False`: one "
            f"thread, so its CPU time is its work), in {len(co['alone_cpu_s'])} rounds of one process alone, then "
            "two copies started together (medians):",
            "",
            "| | CPU time per timeline | |",
            "|---|---|---|",
            f"| one alone | {a:.3f} s | {co['file_seconds'] / a:.0f}× real time on one core |",
            f"| two side by side | {pr:.3f} s each | {pr / a:.2f}× the time alone |",
            "",
            (
                "The two cores slow each other down (they share caches and memory bandwidth, and may be hyperthreads "
                "of one physical core: the virtual machine does not say). "
                if pr / a >= 1.05
                else "In this run the two copies hardly slowed each other down. "
            )
            + "Spread over both cores without any loss, "
            f"this timeline's work would therefore take about {pr / 2:.3f} s: about "
            f"{co['file_seconds'] / (pr / 2):.0f}× real time is what two cores allow here, an estimate from CPU "
            "times, not a measurement.",
            "",
        ]
    if "waveform" in ten:
        wv = ten["waveform"]
        lines += [
            "## The waveform-in artifact as the runtime's default?",
            "",
            f"The same {ten['file_seconds'] / 60:.0f}-minute timeline through the `Classifier` with the waveform-in "
            f"artifact (`python -m export waveform`; every window's front end inside the graph): "
            f"{rt(wv):.0f}× real time ({wv['seconds']:.2f} s, peak RSS {wv['maxrss_mb']:.0f} MB), against "
            f"{rt(ten['ours']):.0f}× for the log-mel-input model with shared STFT frames. "
            + (
                "The runtime keeps the log-mel-input artifact and the numpy front end by default: the graph "
                "cannot share frames between overlapping windows, so it computes about twice the STFT work. "
                "The waveform-in artifact is built on demand for hosts outside Python (see docs/export.md) "
                "and not shipped as package data."
                if rt(wv) < rt(ten["ours"])
                else "Here the waveform-in artifact was as fast or faster."
            ),
            "",
        ]
    lines += ["## GPU", ""]
    if res.get("gpu"):
        g = res["gpu"]
        lines += [
            f'{ten["file_seconds"] / 60:.0f}-minute timeline with `providers="cuda"` (provider used: '
            f"{g['provider']}): {rt(g):.0f}× real time ({g['seconds']:.2f} s).",
            "",
        ]
    else:
        lines += [
            "Not measured: this machine has no GPU (`onnxruntime.get_available_providers()` lists no CUDA). "
            '`providers="cuda"` / `--providers cuda` falls back to the CPU with a warning, and the '
            "analysis JSON's `model.provider` says which provider ran (tested).",
            "",
        ]
    lines += ["## Ray Data engine (`plugins/instrunet-ray`)", ""]
    ray = res.get("ray")
    if ray:
        r1, r2 = ray["workers1"], ray["workers2"]
        lines += [
            f"{r1['files']} files of {ray.get('file_seconds', 10.0):.0f} s (44.1 kHz stereo WAV), a local Ray "
            "instance with as many CPUs as workers, one model per worker (actor), each actor reading its own "
            "files (blocks of at most 8):",
            "",
            "| workers | files/s, whole run | first record after | files/s after the first record "
            "| seconds (tagging) | Ray start-up |",
            "|---|---|---|---|---|---|",
            *[
                f"| {k} | {r['files_per_s']:.1f} | {_opt(r.get('first_record_s'), '{:.1f} s')} "
                f"| {_opt(r.get('steady_files_per_s'), '{:.1f}')} | {r['seconds']:.1f} s | {r['ray_init_s']:.1f} s |"
                for k, r in ((1, r1), (2, r2))
            ],
            "",
            "The time to the first record is Ray starting the actors (a worker process each, each loading the "
            "model) and planning the dataset; after it, the files/s are the actors' tagging. On this machine "
            "Ray's own processes (its scheduler, object store and the driver "
            "streaming results back) share the two cores with the actors, and one actor's `Classifier` already "
            "uses both (the calling thread decodes while its worker thread computes), so a second actor "
            + ("adds little here" if r2["seconds"] > 0.8 * r1["seconds"] else "helps")
            + "; on a cluster each actor has CPUs of its own.",
            "",
        ]
    else:
        lines += ["Not measured: ray or plugins/instrunet-ray is not installed.", ""]
    lines += ["Raw numbers: [benchmarks.json](benchmarks.json).", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument(
        "--seed-model", type=Path, default=None, help="trained seed_v3 .keras (default: untrained)"
    )
    ap.add_argument(
        "--hour-seconds", type=float, default=3600.0, help="length of the long file (default 3600)"
    )
    ap.add_argument("--runs", type=int, default=300, help="warm repetitions (seed: a tenth, at least 20)")
    ap.add_argument("--cold-runs", type=int, default=5)
    ap.add_argument(
        "--load-runs", type=int, default=40, help="predictions per measurement under load (default 40)"
    )
    ap.add_argument(
        "--load-rounds",
        type=int,
        default=5,
        help="rounds of idle then loaded measurements, medians reported (default 5)",
    )
    ap.add_argument(
        "--timeline-runs",
        type=int,
        default=3,
        help="runs of the ten-minute timeline (ours and the seed's, taking turns) and of our hour; "
        "the run with the median time is reported (default 3)",
    )
    ap.add_argument(
        "--core-rounds",
        type=int,
        default=3,
        help="rounds of the two-cores measurement: one synchronous timeline alone, then two together",
    )
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the long WAVs go and stay (default: a temporary folder, removed at the end)",
    )
    ap.add_argument(
        "--no-seed-hour",
        dest="seed_hour",
        action="store_false",
        help="skip the seed's path on the long file (it holds the whole file in memory)",
    )
    ap.add_argument(
        "--versus",
        default=None,
        help="another registered model (NAME or NAME@VERSION, e.g. the previous default family@2.0.0) "
        "measured in the same run: warm 3 s clip and ten-minute timeline, taking turns with ours",
    )
    ap.add_argument(
        "--model",
        default=None,
        help="the registered model to measure (default: the default model); "
        "every measurement loads it through INSTRUNET_DEFAULT_MODEL",
    )
    args = ap.parse_args(argv)
    if args.model:
        os.environ["INSTRUNET_DEFAULT_MODEL"] = args.model  # inherited by every child process
    if args.workdir is None:  # the long WAVs and artifacts (about 0.8 GB) go when the run ends
        with tempfile.TemporaryDirectory(prefix="instrunet-bench-") as tmp:
            args.workdir = Path(tmp)
            res = run(args)
    else:
        res = run(args)
    cmd = "python -m benchmarks.run" + (
        "" if args.hour_seconds == 3600 else f" --hour-seconds {args.hour_seconds:g}"
    )
    cmd += f" --model {args.model}" if args.model else ""
    cmd += "" if args.seed_hour else " --no-seed-hour"
    text = render(res, cmd)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
