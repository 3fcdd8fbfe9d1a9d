"""``python -m training.teacher``: prepare the pinned weights, convert them, check and measure.

    python -m training.teacher prepare [--out cache/teacher]
    python -m training.teacher convert [--out cache/teacher]
    python -m training.teacher check   [--out cache/teacher]      # known clips' top classes
    python -m training.teacher evaluate --sources /data/sources --corpus data/corpus/valid
    python -m training.teacher frontend --sources /data/sources   # 22,050 Hz front end vs 16 kHz
    python -m training.teacher bench [--large]

Every measuring command prints JSON and writes it to ``OUT/reports/<command>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .weights import TEACHER_RATE, TeacherError, default_cache, prepare


def _write(out: Path, name: str, data: Any) -> None:
    text = json.dumps(data, indent=1)
    print(text)
    (out / "reports").mkdir(parents=True, exist_ok=True)
    (out / "reports" / f"{name}.json").write_text(text + "\n")


def _bundled_clips() -> list[Any]:
    from instrunet_core.audio import load_audio

    root = Path(__file__).resolve().parents[2] / "examples"
    flute = load_audio(root / "solo_flute.wav", target_sr=TEACHER_RATE)
    ens = load_audio(root / "ensemble.flac", target_sr=TEACHER_RATE)
    n = 47183
    return [
        flute[:n],
        ens[2 * TEACHER_RATE : 2 * TEACHER_RATE + n],
        ens[15 * TEACHER_RATE : 15 * TEACHER_RATE + n],
    ]


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ap = argparse.ArgumentParser(prog="python -m training.teacher", description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=["prepare", "convert", "check", "evaluate", "frontend", "bench"])
    ap.add_argument("--out", type=Path, default=None, help="teacher folder (default cache/teacher)")
    ap.add_argument("--sources", type=Path, default=None, help="mirror of training/sources.lock.json")
    ap.add_argument(
        "--corpus", type=Path, default=None, help="a corpus split folder (e.g. data/corpus/valid)"
    )
    ap.add_argument("--per-instrument", type=int, default=6)
    ap.add_argument("--scales", default="1,0.726,0.6", help="front-end magnitude scales to compare")
    ap.add_argument("--large", action="store_true", help="bench: also the Keras large model (slow)")
    args = ap.parse_args(argv)
    out = args.out or default_cache()
    try:
        if args.cmd == "prepare":
            print(prepare(out))
            return 0
        if args.cmd == "convert":
            from .convert import convert

            _write(out, "convert", convert(out, extra_clips=_bundled_clips()))
            return 0
        from .runtime import Teacher

        teacher = Teacher(out)
        if args.cmd == "check":
            from .measure import check_known

            res = check_known(teacher)
            _write(out, "check", res)
            return 0 if all(r.get("ok", False) for r in res.values()) else 1
        if args.cmd in ("evaluate", "frontend"):
            from .clips import labelled_windows
            from .measure import compare_front_ends, evaluate_pooling

            if args.sources is None and args.corpus is None:
                ap.error("give --sources and/or --corpus")
            items = labelled_windows(
                sources=args.sources,
                corpus=args.corpus,
                work=out / "eval",
                per_instrument=args.per_instrument,
            )
            if args.cmd == "evaluate":
                from .clips import negative_windows
                from .measure import evaluate_open_set

                res = evaluate_pooling(teacher, items)
                res["open_set"] = evaluate_open_set(teacher, items, negative_windows())
                _write(out, "evaluate", res)
                return 0
            import numpy as np

            from .keras_port import load_savedmodel, savedmodel_variables

            variables = savedmodel_variables(load_savedmodel(out))
            windows = np.stack([it["window"] for it in items])
            scales = [float(s) for s in args.scales.split(",")]
            _write(out, "frontend", compare_front_ends(teacher, windows, variables, scales))
            return 0
        from .measure import bench_large, bench_teacher

        res = {"teacher": bench_teacher(teacher)}
        if args.large:
            from .keras_port import load_savedmodel, savedmodel_variables

            res["large_model"] = bench_large(savedmodel_variables(load_savedmodel(out)), out)
        _write(out, "bench", res)
        return 0
    except TeacherError as e:
        print(f"training.teacher: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
