"""``python -m training.condition {build,recordings,train,praat,evaluate,compare,prior,false-alarms}``: see :mod:`training.condition`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data import DEFAULT_SEED, FLOORS, SPLITS, build, build_recordings
from .report import compare, evaluate, false_alarm_drivers, praat_check, prior_curve
from .train import train


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.condition", description="Condition corpus (degraded windows) and classifier."
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="degrade windows of a corpus and compute their features")
    b.add_argument(
        "--corpus", type=Path, default=Path("data/corpus"), help="NSynth-format corpus (training.corpus)"
    )
    b.add_argument("--out", type=Path, default=Path("data/condition"), help="output folder")
    b.add_argument("--seed", type=int, default=DEFAULT_SEED)
    b.add_argument("--max-notes", type=int, help="at most about N bases per split (small builds)")
    b.add_argument("--workers", type=int, help="processes (default: 2 at most)")
    b.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    b.add_argument(
        "--floor", default="default", choices=sorted(FLOORS), help="the benign noise floor's recipe"
    )
    b.add_argument(
        "--mel", action="store_true", help="also keep each window's log-mel (the family classifier's input)"
    )
    b.add_argument(
        "--loops",
        type=float,
        default=0.0,
        help="share of the train bases played with a short sustain loop (a benign trait; default 0)",
    )
    b.add_argument(
        "--real-train-bases",
        type=int,
        metavar="N",
        help="bases per real recorded train instrument (default 120; at most its clips)",
    )
    rec = sub.add_parser(
        "recordings", help="valid, test and dev windows grouped into recordings, each degraded whole"
    )
    rec.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    rec.add_argument("--out", type=Path, default=Path("data/condition"))
    rec.add_argument("--seed", type=int, default=DEFAULT_SEED)
    rec.add_argument("--workers", type=int)
    rec.add_argument("--mel", action="store_true", help="also keep each window's log-mel")
    t = sub.add_parser("train", help="train, calibrate, evaluate and report the condition classifier")
    t.add_argument("--data", type=Path, default=Path("data/condition"), help="built condition corpus")
    t.add_argument("--out", type=Path, default=Path("runs/condition"), help="run folder (condition.keras)")
    t.add_argument("--report", type=Path, default=Path("training/reports/condition/2.0.0"))
    t.add_argument("--version", default="2.0.0")
    t.add_argument("--epochs", type=int, default=200)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--width", type=int, default=64, help="units of the two hidden layers")
    t.add_argument(
        "--fraction", type=float, default=1.0, help="share of the train notes used (a learning curve)"
    )
    t.add_argument("--examples", type=Path, default=Path("examples"), help="folder of clean recordings")
    c = sub.add_parser("praat", help="compare our HNR with Praat's (needs praat-parselmouth)")
    c.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    c.add_argument("--out", type=Path, default=Path("training/reports/condition/2.0.0/hnr_vs_praat.json"))
    e = sub.add_parser("evaluate", help="accuracy of a trained model on every split, train included")
    e.add_argument("--data", type=Path, default=Path("data/condition"))
    e.add_argument("--model", dest="model_path", type=Path, default=Path("runs/condition/condition.keras"))
    e.add_argument("--out", type=Path, default=Path("training/reports/condition/2.0.0/splits.json"))
    x = sub.add_parser("compare", help="other learners (trees, wider MLPs) on the same inputs")
    x.add_argument("--data", type=Path, default=Path("data/condition"))
    x.add_argument("--out", type=Path, default=Path("training/reports/condition/experiments/learners.json"))
    x.add_argument("--drop", nargs="+", default=(), metavar="FEATURE", help="features held constant")
    x.add_argument("--only", help="only the learners whose name contains this")
    pc = sub.add_parser("prior", help="what the shipped model's healthy prior trades, on test and dev")
    pc.add_argument("--data", type=Path, default=Path("data/condition"))
    pc.add_argument("--out", type=Path, default=Path("training/reports/condition/experiments/prior.json"))
    fa = sub.add_parser(
        "false-alarms", help="what the shipped model's false alarms on clean copies are, and why"
    )
    fa.add_argument("--data", type=Path, default=Path("data/condition"))
    fa.add_argument("--split", default="dev", choices=("test", "dev"))
    fa.add_argument(
        "--out", type=Path, default=Path("training/reports/condition/experiments/dev-false-alarms.json")
    )
    sp = sub.add_parser(
        "spectro",
        help="train a CNN on the log-mel windows (build --mel); score it beside the features, fused",
    )
    sp.add_argument("--data", type=Path, default=Path("data/condition"))
    sp.add_argument("--out", type=Path, default=Path("runs/condition_spectro"))
    sp.add_argument("--report", type=Path, default=Path("training/reports/condition/experiments/spectro"))
    sp.add_argument("--epochs", type=int, default=30)
    sp.add_argument("--patience", type=int, default=8)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (constant)")
    sp.add_argument(
        "--init", type=Path, help="start from a trained network (condition_spectrogram.keras) of this shape"
    )
    en = sub.add_parser(
        "ensemble", help="the mean of trained spectrogram networks as one, scored as spectro scores one"
    )
    en.add_argument("members", type=Path, nargs="+", help="trained networks (condition_spectrogram.keras)")
    en.add_argument("--data", type=Path, default=Path("data/condition"))
    en.add_argument("--out", type=Path, default=Path("runs/condition_spectro_ensemble"))
    en.add_argument(
        "--report", type=Path, default=Path("training/reports/condition/experiments/spectro-ensemble")
    )
    en.add_argument("--version", default="1.1.0", help="the network's version in its report (metrics.json)")
    en.add_argument(
        "--features",
        type=Path,
        help="feature classifier to fuse with: a condition artifact folder or train's condition.keras "
        "(default: shipped 2.0.0)",
    )
    fu = sub.add_parser(
        "fuse", help="write the fused condition artifact beside an exported spectrogram network"
    )
    fu.add_argument("--data", type=Path, default=Path("data/condition"))
    fu.add_argument(
        "--spectrogram", type=Path, required=True, help="exported network: <models>/<name>/<version>/"
    )
    fu.add_argument(
        "--features-model", type=Path, help="feature classifier artifact (default: the newest shipped)"
    )
    fu.add_argument("--version", required=True, help="the fused artifact's version (a new folder)")
    args = ap.parse_args(argv)
    kw = {k: v for k, v in vars(args).items() if k != "cmd"}  # the options are named as the parameters
    if args.cmd in ("build", "recordings"):
        # a corpus without a split asked for is said before anything is built (build reported
        # each as "skipped", wrote an empty condition.json and exited 0; recordings ended in a
        # traceback: a docs audit)
        wanted = args.splits if args.cmd == "build" else ("valid", "test", "dev")
        missing = [sp for sp in wanted if not (args.corpus / sp / "examples.json").is_file()]
        if missing:
            print(
                f"training.condition: error: {args.corpus}: no {missing[0]}/examples.json (build the corpus "
                "first" + (", or leave that split out with --splits" if args.cmd == "build" else "") + ")",
                file=sys.stderr,
            )
            return 2
    try:
        return _dispatch(args, kw)
    except (OSError, ValueError) as e:
        from training.nsynth import NSynthError

        if isinstance(e, NSynthError) or isinstance(e, OSError):
            print(f"training.condition: error: {e}", file=sys.stderr)
            return 1
        raise


def _dispatch(args: argparse.Namespace, kw: dict[str, Any]) -> int:
    if args.cmd == "compare":
        compare(**kw)
    elif args.cmd == "fuse":
        from .spectro import package_fused

        print(json.dumps(package_fused(**kw), indent=1))
    elif args.cmd in ("spectro", "ensemble"):
        from .spectro import ensemble_experiment, spectro_experiment

        r = (spectro_experiment if args.cmd == "spectro" else ensemble_experiment)(**kw)
        for what, e in r["models"].items():
            t_, d_ = e["with the healthy prior"]["test"], e["with the healthy prior"]["dev"]
            print(
                f"{what}: test accuracy {t_['accuracy']:.4f}, aged recall {t_['aged_recall']:.4f}, "
                f"clean renders flagged {t_['false_alarm_clean']:.4f}; dev clean real flagged "
                f"{d_['false_alarm_clean']:.4f}"
            )
    elif args.cmd == "false-alarms":
        print(json.dumps(false_alarm_drivers(**kw), indent=1))
    elif args.cmd == "prior":
        for r in prior_curve(**kw)["rows"]:
            print(
                f"shift {r['shift']:+.2f}: "
                + "; ".join(
                    f"{s} accuracy {r[s]['accuracy']:.3f}, aged {r[s]['aged_recall']:.3f}, "
                    f"clean flagged {r[s]['false_alarm_clean']:.3f} (recordings {r[s]['recordings']['false_alarm_clean']:.3f})"
                    for s in ("test", "dev")
                )
            )
    elif args.cmd == "evaluate":
        r = evaluate(**kw)
        print(", ".join(f"{s} {r[s]['accuracy']:.4f}" for s in SPLITS if s in r))
    elif args.cmd == "praat":
        r = praat_check(**kw)
        print(
            f"{r['n']} comparisons: max |ours - Praat| {r['max_abs_diff_below_30db']:.2f} dB below 30 dB "
            f"(n={r['n_below_30db']}), {r['max_abs_diff_from_30db']:.2f} dB from 30 dB up (n={r['n_from_30db']})"
        )
    elif args.cmd == "recordings":
        print(json.dumps(build_recordings(**kw), indent=1))
    elif args.cmd == "build":
        info = build(**kw)
        print(json.dumps(info["counts"], indent=1))
    else:
        m = train(**kw)
        t_ = m["test"]
        print(
            f"test accuracy {t_['accuracy']:.4f}, aged recall {t_['per_class']['moderately_aged']['recall']:.4f}, "
            f"false alarms: clean renders {m['false_alarm']['test_clean']['rate']:.4f}, clean real "
            f"recordings {m['false_alarm']['dev_clean_real']['rate']:.4f}; report in {args.report}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
