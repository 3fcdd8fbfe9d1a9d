"""``instrunet_pedalboard.process_file`` on a one-hour file: peak memory and time.

Usage::

    python -m benchmarks.pedalboard_file --doc docs/pedalboard.md          # several minutes here
    python -m benchmarks.pedalboard_file --doc /tmp/p.md --seconds 600     # a quicker look

The source is a 16-bit 44.1 kHz stereo WAV made of the bundled ``examples/ensemble.flac``
repeated (the same file ``python -m benchmarks.run`` uses). Each measurement runs in a fresh
child process, so its peak resident memory (``ru_maxrss``) is its own:

* **baseline**: import pedalboard and instrunet_pedalboard, load the default model, tag 3 s;
* **tag**: ``process_file(src, None)`` — decode and tag the hour (no output file);
* **chain + router + tag**: ``process_file(src, dst, board=..., router=..., tagger=...)`` —
  a compressor and high-pass on everything, reverb on strings, -3 dB on brass (two chains
  plus the dry default running in parallel), tagging what is written, a 16-bit WAV out.

The decoded hour alone would take 1,270 MB as float32 (3600 s x 44,100 x 2 x 4 bytes).
The results replace the section between ``<!-- bench:start -->`` and ``<!-- bench:end -->``
in ``--doc`` and go to ``pedalboard_benchmark.json`` beside it.
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

from benchmarks.run import make_long_wav
from benchmarks.timing import processor, write_doc

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import json, resource, sys, time
import numpy as np
from pedalboard import Compressor, Gain, HighpassFilter, Pedalboard, Reverb
from instrunet_pedalboard import Router, Tagger, process_file

src, dst, mode, block = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ARRAY_SECONDS = 600.0
t0 = time.perf_counter()
tagger = Tagger()
if mode == "baseline":
    t = np.arange(3 * 44100) / 44100
    tagger(np.stack([np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32), 44100)
    out = {"windows": len(tagger.results)}
elif mode == "tag":
    a = process_file(src, None, tagger=tagger, block_size=block)
    out = {"windows": len(a.timeline), "duration": a.duration, "label": a.label}
elif mode == "array":  # the router called on a whole piece held in memory, as router(audio, sr)
    from pedalboard.io import AudioFile
    with AudioFile(src) as f:
        x = f.read(int(min(f.frames, ARRAY_SECONDS * f.samplerate)))  # (channels, n) float32
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    board = Pedalboard([Compressor(threshold_db=-18.0, ratio=3.0), HighpassFilter(cutoff_frequency_hz=60.0)])
    router = Router({"string": Pedalboard([Reverb(room_size=0.6)]), "brass": Pedalboard([Gain(gain_db=-3.0)])},
                    default=board)
    t0 = time.perf_counter()
    y = router(x, 44100)
    out = {"array_mb": x.nbytes / 1e6, "seconds_of_audio": x.shape[1] / 44100, "maxrss_before_call_mb": rss,
           "route_changes": len(router.regions) - 1, "output_shape": list(y.shape)}
else:
    board = Pedalboard([Compressor(threshold_db=-18.0, ratio=3.0), HighpassFilter(cutoff_frequency_hz=60.0)])
    router = Router({"string": Pedalboard([Reverb(room_size=0.6)]), "brass": Pedalboard([Gain(gain_db=-3.0)])})
    a = process_file(src, dst, board=board, router=router, tagger=tagger, block_size=block)
    out = {"windows": len(a.timeline), "duration": a.duration, "label": a.label,
           "route_changes": len(router.regions) - 1}
out["seconds"] = time.perf_counter() - t0
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def _child(*args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
        cwd=ROOT,
    )
    if r.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run(seconds: float, block: int, workdir: Path) -> dict[str, Any]:
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    src = make_long_wav(workdir / "hour.wav", seconds)
    dst = workdir / "processed.wav"
    res: dict[str, Any] = {
        "file": {
            "seconds": seconds,
            "sample_rate": 44100,
            "channels": 2,
            "format": "16-bit WAV",
            "decoded_float32_mb": round(seconds * 44100 * 2 * 4 / 1e6),
        },
        "block_size": block,
        "machine": f"{platform.machine()} ({processor()}), {os.cpu_count()} CPU cores, {platform.system()}",
        "python": platform.python_version(),
    }
    for mode in ("baseline", "tag", "full", "array"):
        log(f"{mode} ...")
        res[mode] = _child(str(src), str(dst), mode, str(block))
        log(f"  {res[mode]}")
    dst.unlink(missing_ok=True)
    return res


def markdown(res: dict[str, Any], cmd: str) -> str:
    f = res["file"]
    length = f"{f['seconds'] / 3600:g}-hour" if f["seconds"] >= 3600 else f"{f['seconds'] / 60:g}-minute"

    def row(name: str, r: dict[str, Any]) -> str:
        speed = "" if name.startswith("baseline") else f"{f['seconds'] / r['seconds']:.0f}× real time"
        return f"| {name} | {r['maxrss_mb']:.0f} MB | {r['seconds']:.1f} s | {speed} |"

    lines = [
        f"Measured by `{cmd}` ({res.get('date', '')}, {res['machine']}, Python {res['python']}, "
        f"pedalboard and onnxruntime on the CPU; a shared machine, so times are indicative):",
        "",
        f"A {length} 44.1 kHz stereo 16-bit WAV (the bundled ensemble repeated), blocks of "
        f"{res['block_size']:,} samples; each row is a fresh process.",
        "",
        "| run | peak RSS | time | speed |",
        "|---|---|---|---|",
        row("baseline: imports + model + 3 s tagged", res["baseline"]),
        row("tag the file (`process_file(src, None)`)", res["tag"]),
        row("chain + router (2 chains + dry) + tag, WAV written", res["full"]),
    ]
    a = res.get("array")
    if a is not None:
        minutes = a["seconds_of_audio"] / 60
        lines.append(
            f"| the chains as a router (compressor + high-pass as its default) on a {minutes:g}-minute array in memory (`router(audio, sr)`, the "
            f"array {a['array_mb']:.0f} MB) | {a['maxrss_mb']:.0f} MB ({a['maxrss_mb'] - a['maxrss_before_call_mb']:.0f} "
            f"MB more than before the call) | {a['seconds']:.1f} s | {a['seconds_of_audio'] / a['seconds']:.0f}× real time |"
        )
    lines += [
        "",
        f"Peak memory stays near the baseline while the decoded audio alone would take "
        f"{f['decoded_float32_mb']:,} MB as float32: only one block, the router's lookahead "
        f"(about 3 s per chain) and one small result per window ({res['tag']['windows']:,} windows) "
        "are held. A whole array given to the router is routed in blocks of 65,536 samples into one "
        "output array: beyond the input, the call holds its output and the same lookahead. "
        "Results: `docs/pedalboard_benchmark.json`.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.pedalboard_file", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "--doc", type=Path, required=True, help="markdown file with a bench:start/bench:end section"
    )
    ap.add_argument("--seconds", type=float, default=3600.0, help="length of the file (default 3600)")
    ap.add_argument("--block-size", type=int, default=65536)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the generated file here")
    ap.add_argument(
        "--from-json",
        action="store_true",
        help="only rewrite the doc section from the pedalboard_benchmark.json beside it",
    )
    args = ap.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="instrunet-pb-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    out = args.doc.with_name("pedalboard_benchmark.json")
    if args.from_json:
        res = json.loads(out.read_text())
    else:
        res = run(args.seconds, args.block_size, work)
        res["date"] = time.strftime("%Y-%m-%d")
        out.write_text(json.dumps(res, indent=1) + "\n")
    secs = res["file"]["seconds"]
    cmd = (
        "make bench-pedalboard"
        if secs == 3600
        else f"python -m benchmarks.pedalboard_file --seconds {secs:g}"
    )
    write_doc(args.doc, markdown(res, cmd))
    print(markdown(res, cmd))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
