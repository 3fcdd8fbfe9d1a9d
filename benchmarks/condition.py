"""``instrunet_core.analyze`` with the condition analyzer, side by side with the core alone: speed on
a ten-minute file and peak memory from ten minutes to two hours.

Usage::

    python -m benchmarks.condition --doc docs/condition.md               # about 10 minutes here
    python -m benchmarks.condition --doc /tmp/c.md --lengths 600 1800    # a quicker look

The files are 16-bit 44.1 kHz stereo WAVs made of the bundled ``examples/ensemble.flac``
repeated (the same files as ``python -m benchmarks.run``). Each measurement runs in a fresh
child process, so that its peak resident memory (``ru_maxrss``) is its own:

* **core alone**: ``analyze(file)`` with no analyzer plugin loaded (``INSTRUNET_PLUGINS=``);
* **with condition**: ``analyze(file)`` with the ``instrunet-condition`` entry point loaded
  (``INSTRUNET_PLUGINS=condition``), its model loaded before the clock starts as the family
  model is;
* **with condition, another model** (``--versus``, default ``family@2.1.0``, the previous
  default): the same on that family model, ten-minute file only (``family`` 2.1.0's network takes
  about five times the time per window of 3.0.0's).

The ten-minute file is analysed ``--runs`` times each way, taking turns (a noisy moment
on this shared machine then hits both); the table quotes the median run of each and every
run's time. The memory rows analyse each longer file once each way. The results replace the
section between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` in ``--doc`` and go to
``condition_benchmark.json`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.run import _child, _median_run, make_long_wav
from benchmarks.timing import processor, write_doc

_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
import instrunet_core
from instrunet_core import get_registry
src, mode = sys.argv[1], sys.argv[2]
model = instrunet_core.load_model(None if sys.argv[3] == "-" else sys.argv[3])
reg = get_registry()
if mode == "condition":
    from instrunet_condition import load_condition_model
    load_condition_model()
    assert "condition" in reg.analyzers, reg.analyzers
else:
    assert not reg.analyzers, reg.analyzers
t1 = time.perf_counter(); c1 = time.process_time()
a = instrunet_core.analyze(src, model=model)
t2 = time.perf_counter()
c = a.extras.get("condition", {})
print(json.dumps({"seconds": t2 - t1, "cpu_s": time.process_time() - c1, "setup_s": t1 - t0,
                  "duration": a.duration, "windows": len(a.timeline), "label": a.label,
                  "condition": c.get("label"), "judged": (c.get("sampling") or {}).get("judged"),
                  "buffer_s": (c.get("sampling") or {}).get("buffer_seconds"),
                  "error": c.get("error"), "model": f"{model.name} {model.version}",
                  "evidence": a.settings.get("evidence_windows"),
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_ENV = {"core": {"INSTRUNET_PLUGINS": ""}, "condition": {"INSTRUNET_PLUGINS": "condition"}}


def _run(path: Path, mode: str, model: str = "-") -> dict[str, Any]:
    out = _child(_CHILD, str(path), mode, model, env_extra=_ENV[mode])
    if out.get("error"):
        raise RuntimeError(f"the condition analyzer failed: {out['error']}")
    return out


def run(lengths: Sequence[float], runs: int, workdir: Path, fast_model: str | None = None) -> dict[str, Any]:
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    res: dict[str, Any] = {
        "machine": f"{platform.machine()} ({processor()}), {os.cpu_count()} CPU cores, {platform.system()}",
        "python": platform.python_version(),
        "loadavg_start": round(os.getloadavg()[0], 2),
        "files": "16-bit 44.1 kHz stereo WAV, examples/ensemble.flac repeated",
    }
    ten = make_long_wav(workdir / "ten_minutes.wav", 600.0)
    log(f"ten minutes, {runs} runs each way, taking turns")
    ways = [("core", "core", "-"), ("condition", "condition", "-")]
    if fast_model:
        ways.append(("condition_fast", "condition", fast_model))
    each: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in ways}
    for _ in range(runs):
        for key, mode, model in ways:
            each[key].append(_run(ten, mode, model))
            log(f"  {key}: {each[key][-1]['seconds']:.2f} s")
    res["speed"] = {"file_seconds": 600.0, **{m: _median_run(r) for m, r in each.items()}}
    res["memory"] = []
    for seconds in lengths:
        path = make_long_wav(workdir / f"long_{int(seconds)}.wav", seconds)
        row: dict[str, Any] = {"file_seconds": seconds}
        for mode in ("core", "condition"):
            row[mode] = _run(path, mode)
            log(f"{seconds / 60:g} min {mode}: {row[mode]['seconds']:.1f} s, {row[mode]['maxrss_mb']:.0f} MB")
        res["memory"].append(row)
        if seconds != 600.0:
            path.unlink(missing_ok=True)
    res["loadavg_end"] = round(os.getloadavg()[0], 2)
    return res


def markdown(res: dict[str, Any], cmd: str, *, results: Path | str = "docs/condition_benchmark.json") -> str:
    sp = res["speed"]
    secs = sp["file_seconds"]

    def speed(r: dict[str, Any]) -> str:
        return f"{secs / r['seconds']:.0f}×"

    c, k = sp["core"], sp["condition"]
    f = sp.get("condition_fast")
    cols = [c, k] + ([f] if f else [])
    head = ["core alone", "with condition"] + (
        [f"with condition, {f.get('model', 'fast model')}"] if f else []
    )
    lines = [
        f"Measured by `{cmd}` ({res.get('date', '')}, {res['machine']}, Python {res['python']}, load average "
        f"{res['loadavg_start']} at the start and {res['loadavg_end']} at the end: a shared machine, so compare "
        "the columns of one run):",
        "",
        f"`analyze` of a {secs / 60:g}-minute 44.1 kHz stereo WAV (the bundled ensemble repeated), "
        f"{c['runs']} runs each way taking turns, median run:",
        "",
        "| | " + " | ".join(head) + " | target |",
        "|---|" + "---|" * len(cols) + "---|",
        "| model | " + " | ".join(r.get("model", "default") for r in cols) + " | |",
        "| time | " + " | ".join(f"{r['seconds']:.2f} s" for r in cols) + " | |",
        "| speed (real time) | "
        + " | ".join(speed(r) if r is c else f"**{speed(r)}**" for r in cols)
        + " | ≥ 500× with condition |",
        "| CPU time | " + " | ".join(f"{r['cpu_s']:.2f} s" for r in cols) + " | |",
        "| evidence windows (refine) | " + " | ".join(str(r.get("evidence", "?")) for r in cols) + " | |",
        "| windows judged for condition | | "
        + " | ".join(f"{r['judged']} of {r['windows']}" for r in cols[1:])
        + " | |",
        "| every run (s) | "
        + " | ".join(", ".join(f"{t:.2f}" for t in r["all_seconds"]) for r in cols)
        + " | |",
        "",
        "Peak memory (RSS of a fresh process: imports, both models, the analysis), one run each:",
        "",
        "| file | core alone | with condition | time with condition | windows judged | audio kept (most) |",
        "|---|---|---|---|---|---|",
    ]
    for row in res["memory"]:
        m = row["file_seconds"] / 60
        name = f"{m / 60:g} h" if m >= 60 else f"{m:g} min"
        lines.append(
            f"| {name} | {row['core']['maxrss_mb']:.0f} MB | **{row['condition']['maxrss_mb']:.0f} MB** | "
            f"{row['condition']['seconds']:.1f} s ({row['file_seconds'] / row['condition']['seconds']:.0f}×) | "
            f"{row['condition']['judged']} of {row['condition']['windows']} | {row['condition']['buffer_s']:.0f} s |"
        )
    worst = max(r["condition"]["maxrss_mb"] for r in res["memory"])
    lines += [
        "",
        f"Target: peak RSS ≤ 300 MB, flat from ten minutes to two hours (largest here: {worst:.0f} MB). "
        f"Results: `{results}`.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.condition", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--doc", type=Path, required=True, help="markdown file with a bench:start/bench:end section"
    )
    ap.add_argument(
        "--lengths",
        type=float,
        nargs="+",
        default=[600.0, 1800.0, 3600.0, 7200.0],
        help="file lengths (s) for memory",
    )
    ap.add_argument("--runs", type=int, default=5, help="runs of the ten-minute file, each way")
    ap.add_argument(
        "--versus",
        "--fast-model",  # its name before family 3.0.0, when it timed the fast model beside the default
        dest="fast_model",
        default="family@2.1.0",
        help="also time analyze with condition on this model (the speed rows only; '' for none; "
        "default: the previous default model)",
    )
    ap.add_argument("--workdir", type=Path, default=None, help="keep the generated files here")
    ap.add_argument("--from-json", action="store_true", help="only rewrite the doc section from the JSON")
    args = ap.parse_args(argv)
    out = args.doc.with_name("condition_benchmark.json")
    if args.from_json:
        res = json.loads(out.read_text())
    else:
        work = args.workdir or Path(tempfile.mkdtemp(prefix="instrunet-cond-bench-"))
        work.mkdir(parents=True, exist_ok=True)
        res = run(args.lengths, args.runs, work, fast_model=args.fast_model or None)
        res["date"] = time.strftime("%Y-%m-%d")
        res["lengths"] = list(args.lengths)
        res["fast_model_arg"] = args.fast_model
        out.write_text(json.dumps(res, indent=1) + "\n")
    default = res.get("lengths") == [600.0, 1800.0, 3600.0, 7200.0]
    fast = res.get("fast_model_arg", "family-compact")
    cmd = (
        f"python -m benchmarks.condition --doc {args.doc}"
        + ("" if default else " --lengths " + " ".join(f"{s:g}" for s in res["lengths"]))
        + ("" if fast == "family-compact" else f" --fast-model {fast or repr('')}")
    )
    text = markdown(res, cmd, results=out)
    write_doc(args.doc, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
