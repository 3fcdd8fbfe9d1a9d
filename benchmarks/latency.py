"""Latency per window of several artifacts, measured side by side in one run.

    python -m benchmarks.latency NAME=ARTIFACT_DIR ... [--out docs/latency.json]

Each artifact's ``model.onnx`` runs on the CPU with one onnxruntime thread, batch 1, one
window (random log-mel values, or random audio for a model that takes audio); the artifacts
take turns for ``--rounds`` rounds (the machine is shared and noisy), and the median and 90th
percentile over every round's runs are reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def main(argv: Sequence[str] | None = None) -> int:
    from instrunet_core.session import onnx_session

    ap = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="NAME=ARTIFACT_DIR")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=60, help="runs per model and round")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    sessions = {}
    for spec in args.models:
        name, _, folder = spec.partition("=")
        sess = onnx_session(Path(folder) / "model.onnx")  # the CPU, one thread
        inp = sess.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        for _ in range(10):
            sess.run(None, {inp.name: x})
        sessions[name] = (sess, inp.name, x, [])
    for _ in range(args.rounds):
        for sess, inp_name, x, ts in sessions.values():
            for _ in range(args.runs):
                t = time.perf_counter()
                sess.run(None, {inp_name: x})
                ts.append(time.perf_counter() - t)
    res = {
        name: {
            "median_ms": float(np.median(ts) * 1e3),
            "p90_ms": float(np.percentile(ts, 90) * 1e3),
            "n": len(ts),
        }
        for name, (_, _, _, ts) in sessions.items()
    }
    doc = {
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "setup": "onnxruntime CPU, 1 thread, batch 1, one window",
        "models": res,
    }
    print("| model | median | p90 |\n|---|---|---|")
    for name, r in res.items():
        print(f"| {name} | {r['median_ms']:.2f} ms | {r['p90_ms']:.2f} ms |")
    if args.out is not None:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
