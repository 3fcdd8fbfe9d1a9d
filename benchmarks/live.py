"""Live tagging: how long ``StreamTagger.feed`` keeps an audio callback waiting.

Usage::

    python -m benchmarks.live --doc docs/pedalboard.md            # 4 runs of 60 s, in real time
    python -m benchmarks.live --doc /tmp/l.md --seconds 20         # a quicker look

The audio is the bundled ``examples/ensemble.flac`` at 44.1 kHz stereo, repeated to
``--seconds``. Each run is a fresh child process that feeds it block by block **in real time**
(each block handed over when its audio would have arrived from a sound card), as an
``AudioStream`` callback would, and times every ``feed`` call: with 512- and 256-sample blocks
(11.6 and 5.8 ms), with the classifier on a worker thread (``worker=True``) and without (the
call runs inference itself whenever a block completes a window). A call longer than the block
makes a live input drop audio. The results replace the section between
``<!-- live:start -->`` and ``<!-- live:end -->`` in ``--doc`` and go to
``live_benchmark.json`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.timing import write_doc

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import json, sys, time
import numpy as np
from pedalboard.io import AudioFile
from instrunet_pedalboard import StreamTagger

block, worker, seconds = int(sys.argv[1]), sys.argv[2] == "1", float(sys.argv[3])
sr = 44100
with AudioFile(sys.argv[4]).resampled_to(sr) as f:
    one = f.read(f.frames)
reps = int(np.ceil(seconds * sr / one.shape[1]))
x = np.ascontiguousarray(np.tile(one, (1, reps))[:, : int(seconds * sr)])
tagger = StreamTagger(worker=worker)
tagger.feed(x[:, :block], sr)  # the model's first run (onnxruntime warms up), not timed
tagger.reset()
calls, windows = [], []
start = time.perf_counter()
for i in range(0, x.shape[1], block):
    due = start + i / sr
    wait = due - time.perf_counter()
    if wait > 0:
        time.sleep(wait)
    t = time.perf_counter()
    out = tagger.feed(x[:, i : i + block], sr)
    calls.append(time.perf_counter() - t)
    windows += out
windows += tagger.finish()
tagger.close()
c = np.array(calls) * 1e3
print(json.dumps({
    "block": block, "worker": worker, "seconds": x.shape[1] / sr, "calls": len(calls),
    "block_ms": 1e3 * block / sr, "p50_ms": float(np.median(c)), "p99_ms": float(np.percentile(c, 99)),
    "max_ms": float(c.max()), "over_block": int((c > 1e3 * block / sr).sum()), "windows": len(windows),
    "latency_ms_median": float(np.median([r.latency for r in windows]) * 1e3),
    "latency_ms_max": float(max(r.latency for r in windows) * 1e3),
}))
"""


def _child(block: int, worker: bool, seconds: float) -> dict[str, Any]:
    src = str(ROOT / "examples" / "ensemble.flac")
    r = subprocess.run(
        [sys.executable, "-c", _CHILD, str(block), "1" if worker else "0", str(seconds), src],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if r.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict[str, Any]], cmd: str) -> str:
    import datetime

    when = datetime.date.today().isoformat()
    head = (
        f"Measured by `{cmd}` ({when}, {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{platform.system()}, Python {platform.python_version()}; a shared machine, so times are indicative):\n\n"
        "`StreamTagger.feed` called in real time with the bundled ensemble at 44.1 kHz stereo, "
        f"{rows[0]['seconds']:.0f} s per run, each run a fresh process; the first window's model run "
        "(onnxruntime's warm-up) happens before the timed calls.\n\n"
        "| block | worker thread | calls | median | p99 | max | calls longer than the block | "
        "window → label (median, max) |\n|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        lines.append(
            f"| {r['block']} samples ({r['block_ms']:.1f} ms) | {'on' if r['worker'] else 'off'} | {r['calls']:,} | "
            f"{r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | {r['max_ms']:.2f} ms | {r['over_block']} | "
            f"{r['latency_ms_median']:.0f} ms, {r['latency_ms_max']:.0f} ms |"
        )
    return head + "\n".join(lines) + "\n\nResults: `docs/live_benchmark.json`."


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.live", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--doc", type=Path, required=True, help="markdown file with a live:start/live:end section"
    )
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds of audio per run (default 60)")
    args = ap.parse_args(argv)
    rows = []
    for block in (512, 256):
        for worker in (True, False):
            t = time.perf_counter()
            r = _child(block, worker, args.seconds)
            print(f"block {block}, worker {worker}: {r} ({time.perf_counter() - t:.0f} s)", flush=True)
            rows.append(r)
    cmd = "python -m benchmarks.live" + ("" if args.seconds == 60.0 else f" --seconds {args.seconds:g}")
    write_doc(args.doc, markdown(rows, cmd), "live")
    (args.doc.parent / "live_benchmark.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
