"""The log-mel front ends side by side: numpy, and the ONNX graph of waveform-in artifacts.

Usage::

    python -m benchmarks.frontend --doc docs/speed.md          # about 2 minutes here
    python -m benchmarks.frontend --rounds 3 --runs 50         # a quicker look, printed only

Everything runs in this one process with one onnxruntime thread (the runtime's default,
through :func:`instrunet_core.session.onnx_session`) and numpy's BLAS limited to one thread,
and the variants are timed in interleaved rounds (each round times every variant once), so
that a change in the machine's load hits all of them alike. Timings are medians over all
rounds. Measured:

* **in-graph front end alone** (``export.waveform.frontend_graph``), one 2.95 s window, for
  each way the graph can compute the spectrum (``dft="stages"``, the default;
  ``"four-step"``, a four-step FFT with elementwise twiddles; ``"stft"``, ONNX's ``STFT`` operator), and
  the default graph per window in runs of 2, 4 and 8 windows;
* **numpy front end alone** (``instrunet_core.features.batch_features``), one window, and on
  512 frames at once (as the ``Classifier`` computes shared frames) with the FFT done 64, 128
  or 256 frames per step;
* **front end + network**, one window: the default model on numpy features, and waveform-in
  artifacts built from it (``export_waveform``) with the stages and four-step graphs;
* the waveform-in artifact's session per window in runs of 1, 2, 4 and 8 windows (how
  ``predict_windows``' run size was chosen);
* **a 60 s stream through the Classifier** (22,050 Hz mono, default hop): the feature model
  (numpy front end with STFT frames shared between overlapping windows) against the
  waveform-in artifact (every window's front end in the graph);
* **where the default graph spends its time**: onnxruntime's profiler, per operator type.

The results replace the section between ``<!-- frontend:start -->`` and
``<!-- frontend:end -->`` of ``--doc`` and go to ``frontend_benchmark.json`` beside it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.timing import write_doc

ROOT = Path(__file__).resolve().parent.parent


def _timer(f: Callable[[], Any], runs: int) -> list[float]:
    for _ in range(3):
        f()
    out = []
    for _ in range(runs):
        a = time.perf_counter()
        f()
        out.append((time.perf_counter() - a) * 1e3)
    return out


def _profile(model_bytes: bytes, x: np.ndarray, runs: int) -> list[tuple[str, float, int]]:
    """(operator type, median µs per run summed over its nodes, node count), slowest first."""
    from instrunet_core.session import RuntimeOptions, onnx_session

    with tempfile.TemporaryDirectory() as tmp:
        sess = onnx_session(model_bytes, RuntimeOptions(profile_prefix=os.path.join(tmp, "frontend")))
        for _ in range(runs):
            sess.run(None, {"audio": x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_node: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_node[(e["name"], e["args"].get("op_name", "?"))].append(float(e["dur"]))
    by_op: dict[str, list[float]] = collections.defaultdict(list)
    for (_, op), durs in per_node.items():
        by_op[op].append(float(np.median(durs)))
    return sorted(((op, sum(v), len(v)) for op, v in by_op.items()), key=lambda r: -r[1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("INSTRUNET_BLAS_THREADS", "1")
    import onnx
    import onnxruntime as ort

    import instrunet_core
    from export.waveform import AUDIO_INPUT, export_waveform, frontend_graph
    from instrunet_core.features import batch_features
    from instrunet_core.session import onnx_session

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    load_start = os.getloadavg()[0]
    model = instrunet_core.load_model()
    fe = model.front_end
    rng = np.random.default_rng(0)
    t = np.arange(fe.window_samples) / fe.sample_rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32
    )
    windows = {b: np.stack([np.roll(tone, 997 * i) for i in range(b)]) for b in (1, 2, 4, 8)}

    work = Path(tempfile.mkdtemp(prefix="instrunet-frontend-bench-"))
    graphs: dict[str, Any] = {}
    sessions: dict[str, Any] = {}
    for dft in ("stages", "four-step", "stft"):
        g = frontend_graph(fe, dft=dft)
        graphs[dft] = g
        path = work / f"frontend-{dft}.onnx"
        onnx.save(g, str(path))
        sessions[dft] = onnx_session(path)  # the CPU, one thread
    log("building waveform-in artifacts (stages, four-step)")
    wave = {}
    for dft in ("stages", "four-step"):
        out = export_waveform(model.path, work / dft, dft=dft, force=True, log=lambda s: None)
        wave[dft] = instrunet_core.load_model(out["path"])
    ref = batch_features(windows[8], fe=fe)
    parity = {
        dft: float(np.abs(s.run(None, {AUDIO_INPUT: windows[8]})[0][..., 0] - ref).max())
        for dft, s in sessions.items()
    }

    one = windows[1]
    feats = batch_features(one, fe=fe)
    variants: dict[str, Callable[[], Any]] = {
        "graph_stages": lambda: sessions["stages"].run(None, {AUDIO_INPUT: one}),
        "graph_four_step": lambda: sessions["four-step"].run(None, {AUDIO_INPUT: one}),
        "graph_stft": lambda: sessions["stft"].run(None, {AUDIO_INPUT: one}),
        "numpy": lambda: batch_features(one, fe=fe),
        "network": lambda: model.predict_features(feats),
        "numpy_plus_network": lambda: model.predict_features(batch_features(one, fe=fe)),
        "waveform_stages": lambda: wave["stages"].predict_windows(one),
        "waveform_four_step": lambda: wave["four-step"].predict_windows(one),
    }
    per_window = {f"graph_stages_x{b}": b for b in (2, 4, 8)}
    for name, b in per_window.items():
        variants[name] = (lambda xb: lambda: sessions["stages"].run(None, {AUDIO_INPUT: xb}))(windows[b])
    # the composed artifact's session itself (predict_windows cuts runs at 4 windows)
    for b in (1, 2, 4, 8):
        per_window[f"waveform_stages_run_x{b}"] = b
        variants[f"waveform_stages_run_x{b}"] = (
            lambda xb: lambda: wave["stages"]._session.run(None, {AUDIO_INPUT: xb})
        )(windows[b])
    # the Classifier's shared frames: 512 frames at a time through features._power_mel, with
    # the FFT done _FFT_ROWS frames per step (how that step was chosen)
    from instrunet_core import features as feats_mod

    chunk = np.lib.stride_tricks.sliding_window_view(
        np.concatenate([tone] * 5)[: 511 * fe.hop_length + fe.n_fft], fe.n_fft
    )[:: fe.hop_length]
    default_rows = feats_mod._FFT_ROWS

    def _chunk_with(rows: int) -> Callable[[], Any]:
        def f() -> Any:
            feats_mod._FFT_ROWS = rows
            try:
                return feats_mod._power_mel(chunk, fe)
            finally:
                feats_mod._FFT_ROWS = default_rows

        return f

    for rows in (64, 128, 256):
        variants[f"numpy_chunk512_rows{rows}"] = _chunk_with(rows)
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.rounds):
        log(f"round {r + 1}/{args.rounds}")
        for name, f in variants.items():
            runs = args.runs if "stft" not in name and "chunk" not in name else max(5, args.runs // 5)
            samples[name] += [v / per_window.get(name, 1) for v in _timer(f, runs)]
    timings = {
        k: {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)), "n": len(v)}
        for k, v in samples.items()
    }

    log("60 s stream through the Classifier")
    stream = np.concatenate(
        [np.roll(tone, 4099 * i) for i in range(int(np.ceil(60 * fe.sample_rate / tone.size)))]
    )
    stream = stream[: 60 * fe.sample_rate]
    stream_t: dict[str, list[float]] = {"feature_model": [], "waveform_stages": []}
    n_windows = 0
    for _ in range(args.rounds):
        for name, m in (("feature_model", model), ("waveform_stages", wave["stages"])):
            clf = instrunet_core.Classifier(m)
            a = time.perf_counter()
            n_windows = len(clf.classify(stream, fe.sample_rate))
            stream_t[name].append(time.perf_counter() - a)
    stream_res = {
        k: {"seconds": float(np.median(v)), "x_real_time": 60.0 / float(np.median(v))}
        for k, v in stream_t.items()
    }

    log("profiling the default graph")
    prof = _profile(graphs["stages"].SerializeToString(), one, args.runs)
    return {
        "timings": timings,
        "numpy_fft_rows": default_rows,
        "stream": {"seconds_of_audio": 60, "windows": n_windows, **stream_res},
        "parity_max_abs_diff": parity,
        "profile_stages": [{"op": op, "us": us, "nodes": n} for op, us, n in prof],
        "model": f"{model.name} {model.version}",
        "env": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "date": time.strftime("%Y-%m-%d"),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg()[0],
            "rounds": args.rounds,
            "runs": args.runs,
        },
    }


def render(res: dict[str, Any]) -> str:
    t = res["timings"]
    env = res["env"]
    ms = lambda k: f"{t[k]['median_ms']:.2f} ms"  # noqa: E731
    ratio = lambda a, b: f"{t[b]['median_ms'] / t[a]['median_ms']:.1f}×"  # noqa: E731
    par = res["parity_max_abs_diff"]
    s = res["stream"]
    prof = res["profile_stages"]
    total = sum(p["us"] for p in prof)
    lines = [
        f"Written by `python -m benchmarks.frontend` on {env['date']} ({env['cpus']} CPUs, {env['machine']}, "
        f"Python {env['python']}, onnxruntime {env['onnxruntime']}, numpy {env['numpy']}); model {res['model']}. "
        f"One process, one onnxruntime thread, numpy's BLAS at one thread; the variants timed in "
        f"{env['rounds']} interleaved rounds of {env['runs']} calls, medians. Load average (1 min) at the start: "
        f"{env['loadavg_start']:.1f}, at the end: {env['loadavg_end']:.1f} (2 CPUs: above 2, other work was "
        "competing for the cores; compare the rows of one run).",
        "",
        "| one 2.95 s window (128 frames) | median | p90 | features max diff vs numpy |",
        "|---|---|---|---|",
        f'| in-graph front end, `dft="stages"` (the default) | {ms("graph_stages")} | '
        f"{t['graph_stages']['p90_ms']:.2f} ms | {par['stages']:.1g} |",
        f'| in-graph front end, `dft="four-step"` (four-step FFT, the same mel and dB) | '
        f"{ms('graph_four_step')} | "
        f"{t['graph_four_step']['p90_ms']:.2f} ms | {par['four-step']:.1g} |",
        f'| in-graph front end, `dft="stft"` (ONNX `STFT` operator) | {ms("graph_stft")} | '
        f"{t['graph_stft']['p90_ms']:.2f} ms | {par['stft']:.1g} |",
        f"| numpy front end (`batch_features`) | {ms('numpy')} | {t['numpy']['p90_ms']:.2f} ms | (the reference) |",
        f"| network alone (log-mel input) | {ms('network')} | {t['network']['p90_ms']:.2f} ms | |",
        f"| numpy front end + network | {ms('numpy_plus_network')} | "
        f"{t['numpy_plus_network']['p90_ms']:.2f} ms | |",
        f"| waveform-in artifact, stages graph (`predict_windows`) | {ms('waveform_stages')} | "
        f"{t['waveform_stages']['p90_ms']:.2f} ms | |",
        f"| waveform-in artifact, four-step DFT | {ms('waveform_four_step')} | "
        f"{t['waveform_four_step']['p90_ms']:.2f} ms | |",
        "",
        f"The stages graph is {ratio('graph_stages', 'graph_four_step')} faster than the four-step graph and "
        f"{ratio('graph_stages', 'graph_stft')} faster than the `STFT` operator. Per window in runs of several "
        f"windows (the default graph): 2 windows {ms('graph_stages_x2')}, 4 windows {ms('graph_stages_x4')}, "
        f"8 windows {ms('graph_stages_x8')} (larger runs leave the CPU's caches); the waveform-in artifact "
        f"(front end + network) per window in one run of 1, 2, 4 and 8 windows: {ms('waveform_stages_run_x1')}, "
        f"{ms('waveform_stages_run_x2')}, {ms('waveform_stages_run_x4')}, {ms('waveform_stages_run_x8')} "
        "(`predict_windows` runs at most 4 at a time).",
        "",
        f"The numpy front end on 512 frames at once (as the `Classifier` computes shared frames; power and mel, "
        f"no dB), the FFT done 64, 128 or 256 frames per step: {ms('numpy_chunk512_rows64')}, "
        f"{ms('numpy_chunk512_rows128')}, {ms('numpy_chunk512_rows256')} (the runtime uses "
        f"{res['numpy_fft_rows']}).",
        "",
        f"A 60 s stream (22,050 Hz mono, {s['windows']} windows at the default hop) through the `Classifier`: "
        f"feature model (numpy front end, STFT frames shared between overlapping windows) "
        f"{s['feature_model']['seconds']:.2f} s ({s['feature_model']['x_real_time']:.0f}× real time); "
        f"waveform-in artifact with the stages graph (every window's front end in the graph) "
        f"{s['waveform_stages']['seconds']:.2f} s ({s['waveform_stages']['x_real_time']:.0f}× real time).",
        "",
        f"Where the stages graph spends its time (onnxruntime's profiler, one window; {total:.0f} µs of "
        "kernel time in all):",
        "",
        "| operator | µs | nodes |",
        "|---|---|---|",
        *[f"| {p['op']} | {p['us']:.0f} | {p['nodes']} |" for p in prof[:10]],
        "",
        "Raw numbers: [frontend_benchmark.json](frontend_benchmark.json).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.frontend", description=__doc__.split("\n")[0])
    ap.add_argument("--doc", type=Path, default=None, help="markdown file whose frontend section is replaced")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    ap.add_argument("--runs", type=int, default=60, help="timed calls per variant and round (default 60)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    res = run(args)
    section = render(res)
    print(section)
    if args.doc is not None:
        write_doc(args.doc, section, "frontend")
        (args.doc.parent / "frontend_benchmark.json").write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
