"""Write the model comparison table of ``docs/models.md`` from reports and artifacts.

Usage::

    python -m benchmarks.models_table --out docs/models.md \
        default=training/reports/default/1.0.0/metrics.json:instrunet_core/models/family/1.0.0 \
        baseline=training/reports/baseline/1.0.0/metrics.json:plugins/.../models/baseline/1.0.0 \
        seed_v3=training/reports/seed_v3/1.0.0/metrics.json:runs/seed_v3/artifact/seed_v3/1.0.0

Every number comes from the training reports the code wrote, except latency, measured here
in one run for all models side by side (onnxruntime, CPU, one intra-op thread, batch 1,
median of 300 runs after 30 warm-up runs).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.timing import processor


def latency_ms(model_path: Path, runs: int = 300) -> tuple[float, float]:
    from instrunet_core.session import onnx_session

    sess = onnx_session(model_path)  # the CPU, one thread
    name = sess.get_inputs()[0].name
    # one window: log-mel [1, 128, 128(, 1)], or its audio [1, samples] for a waveform model
    shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(30):
        sess.run(None, {name: x})
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3), float(np.percentile(ts, 90) * 1e3)


def experiments_table(folders: Sequence[Path]) -> list[str]:
    """Markdown rows for short experiments (reports written with ``--no-test``): valid only."""
    lines = [
        "| experiment | what changed | train examples × epochs | valid acc. last epoch | valid acc. mean of last 4 "
        "| best valid acc. (epoch) |",
        "|---|---|---|---|---|---|",
    ]
    for folder in folders:
        m = json.loads((folder / "metrics.json").read_text())
        h = json.loads((folder / "history.json").read_text())
        if m.get("test") is not None:
            raise SystemExit(f"{folder}: an experiment report must not hold test numbers")
        c = m["config"]
        changed = [f"depth {c['depth']}" if c.get("depth") else "depth 4 (then the default)"]
        if c.get("eq_db"):
            changed.append(f"timbre EQ ±{c['eq_db']:g} dB")
        if c.get("onset_prob"):
            changed.append(f"onset crops p={c['onset_prob']:g}")
        acc = h["valid_accuracy"]
        best = int(np.argmax(acc))
        lines.append(
            f"| {folder.name} | {', '.join(changed)} | {c['n_train']:,} × {len(acc)} | {acc[-1]:.3f} "
            f"| {np.mean(acc[-4:]):.3f} | {acc[best]:.3f} ({best + 1}) |"
        )
    return lines


#: docs/models.md's models (``make models-doc`` runs this module with no model named): each
#: ``NAME=METRICS_JSON:ARTIFACT_DIR``, paths from the repository root (seed_v3 is exported into
#: runs/, not shipped: its report's numbers are tabled, its latency is not measured).
DOC_MODELS = (
    "family-3.3.0=training/reports/default/3.3.0/metrics.json:instrunet_core/models/family/3.3.0",
    "family-3.2.0=training/reports/default/3.2.0/metrics.json:instrunet_core/models/family/3.2.0",
    "family-3.0.0=training/reports/default/3.0.0/metrics.json:instrunet_core/models/family/3.0.0",
    "family-2.1.0=training/reports/default/2.1.0/metrics.json:instrunet_core/models/family/2.1.0",
    "family-2.0.0=training/reports/default/2.0.0/metrics.json:instrunet_core/models/family/2.0.0",
    "family-1.0.0=training/reports/default/1.0.0/metrics.json:instrunet_core/models/family/1.0.0",
    "family-compact-2.1.0=training/reports/compact/2.1.0/metrics.json:instrunet_core/models/family-compact/2.1.0",
    "family-compact-2.0.0=training/reports/compact/2.0.0/metrics.json:instrunet_core/models/family-compact/2.0.0",
    "family-compact-1.0.0=training/reports/compact/1.0.0/metrics.json:instrunet_core/models/family-compact/1.0.0",
    "baseline=training/reports/baseline/1.0.0/metrics.json:"
    "plugins/instrunet-baseline/src/instrunet_baseline/models/baseline/1.0.0",
    "seed_v3=training/reports/seed_v3/1.0.0/metrics.json:runs/seed_v3/artifact/seed_v3/1.0.0",
)
#: The prose around the tables: every section of docs/models.md but the generated tables lives
#: in these two files (an edit made to docs/models.md alone is lost at the next run).
DOC_INTRO = Path("benchmarks/models_intro.md")
DOC_OUTRO = Path("benchmarks/models_outro.md")
DOC_EXPERIMENTS = "training/reports/experiments"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.models_table")
    ap.add_argument("--out", type=Path, default=Path("docs/models.md"))
    ap.add_argument("--intro", type=Path, default=None, help="markdown placed above the table")
    ap.add_argument(
        "--experiments",
        type=Path,
        nargs="*",
        default=[],
        help="report folders of short experiments (valid only), tabled after the models",
    )
    ap.add_argument("--outro", type=Path, default=None, help="markdown placed after the tables")
    ap.add_argument(
        "models",
        nargs="*",
        help="NAME=METRICS_JSON:ARTIFACT_DIR (none: docs/models.md's, DOC_MODELS, with its intro, "
        "outro and experiments, paths from the current folder)",
    )
    args = ap.parse_args(argv)
    if not args.models:
        args.models = list(DOC_MODELS)
        args.intro = args.intro or DOC_INTRO
        args.outro = args.outro or DOC_OUTRO
        args.experiments = args.experiments or sorted(
            p for p in Path(DOC_EXPERIMENTS).glob("*") if p.is_dir()
        )
    rows = []
    raw = {}
    for spec in args.models:
        name, rest = spec.split("=", 1)
        metrics_path, artifact = rest.split(":", 1)
        m = json.loads(Path(metrics_path).read_text())
        dev_file = Path(metrics_path).with_name("dev.json")  # written by training.evaluate for older models
        if not m.get("dev") and dev_file.is_file():
            m["dev"] = json.loads(dev_file.read_text())["dev"]
        onnx = Path(artifact) / "model.onnx"
        # An artifact that is not on this machine (seed_v3 is exported into runs/, not shipped):
        # its report's numbers are tabled, its latency and size are not measured.
        med, p90 = latency_ms(onnx) if onnx.is_file() else (None, None)
        t = m["test"]
        mix = t.get("mixture", {}).get("micro_f1")
        recalls = [pc["recall"] for pc in t["single"]["per_class"].values() if pc["recall"] is not None]
        row = {
            "model": name,
            "task": m["task"],
            "parameters": m["parameters"],
            "artifact_mb": onnx.stat().st_size / 1e6 if onnx.is_file() else None,
            "valid_accuracy": m["valid"]["single"]["accuracy"],
            "test_accuracy": t["single"]["accuracy"],
            "test_balanced_accuracy": t["single"]["balanced_accuracy"],
            "test_macro_f1": t["single"]["macro_f1"],
            "min_family_recall": min(recalls),
            "test_mixture_micro_f1": mix,
            "latency_ms_median": med,
            "latency_ms_p90": p90,
            "train_minutes": m["train_seconds"] / 60,
            "epochs": m["epochs_run"],
            "test_notes": t["n_single"],
            "dev": m.get("dev"),
        }
        rows.append(row)
        raw[name] = row
    lines = []
    if args.intro and args.intro.is_file():
        lines += [args.intro.read_text().rstrip(), ""]
    lines += [
        "| model | task | parameters | artifact | valid acc. | **dev balanced acc.** (real recordings) "
        "| dev clips < 1 s | **test acc.** (unseen instruments) | test balanced acc. "
        "| lowest family recall | test mixture micro-F1 | latency / window (median, p90) | training |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mix = "n/a" if r["test_mixture_micro_f1"] is None else f"{r['test_mixture_micro_f1']:.3f}"
        d = r["dev"]
        dev_bal = "n/a" if not d else f"**{d['single']['balanced_accuracy']:.3f}**"
        dev_short = (
            "n/a" if not d or not d["shorter_than_1s"].get("n") else f"{d['shorter_than_1s']['accuracy']:.3f}"
        )
        size = "not here" if r["artifact_mb"] is None else f"{r['artifact_mb']:.1f} MB"
        lat = (
            "not measured (artifact not here)"
            if r["latency_ms_median"] is None
            else f"{r['latency_ms_median']:.2f} ms, {r['latency_ms_p90']:.2f} ms"
        )
        lines.append(
            f"| {r['model']} | {r['task']} | {r['parameters']:,} | {size} | {r['valid_accuracy']:.3f} "
            f"| {dev_bal} | {dev_short} "
            f"| **{r['test_accuracy']:.3f}** | {r['test_balanced_accuracy']:.3f} | {r['min_family_recall']:.3f} "
            f"| {mix} | {lat} "
            f"| {r['train_minutes']:.0f} min, {r['epochs']} epochs |"
        )
    lines += [
        "",
        f"Test: {rows[0]['test_notes']} notes of the 55 TimGM6mb instruments, never used to train or choose "
        "anything; accuracy is the argmax on each note's first 2.95 s window. Mixture micro-F1: 2-3 notes of "
        "different test-split families summed at random gains; multi-label models use presence thresholds chosen "
        "on valid, softmax models can only name their top family.",
        f"Latency: onnxruntime {__import__('onnxruntime').__version__}, CPU, 1 thread, batch 1, one 128x128 window, "
        f"median of 300 runs, measured side by side in one run by `python -m benchmarks.models_table` on "
        f"{platform.machine()}, {processor()} ({time.strftime('%Y-%m-%d')}).",
        "",
    ]
    with_dev = [r for r in rows if r["dev"]]
    if with_dev:
        fams = list(with_dev[0]["dev"]["per_family_recall"])
        # reports written before the dev set grew hold fewer clips: say which, never one count for all
        ns = sorted({int(r["dev"]["n_single"]) for r in with_dev})
        count = (
            str(ns[0]) if len(ns) == 1 else " or ".join(map(str, ns)) + " (per model: the clip counts below)"
        )
        lines += [
            "## On real recordings (dev)",
            "",
            f"Dev: {count} clips of whole real-recording libraries that training never "
            "heard (docs/data.md), played like music (single notes of 0.1-4 s, repeated notes, short phrases); "
            "each clip's first 2.95 s window, shorter clips padded with silence. Models trained with the dev "
            "split chose their epoch and thresholds on it (beside valid); older models are scored on the same "
            "windows by `python -m training.evaluate`.",
            "",
            "| model | " + " | ".join(f"{f} recall" for f in fams) + " | clips < 1 s | clips ≥ 1 s |",
            "|---|" + "---|" * (len(fams) + 2),
        ]
        for r in with_dev:
            d = r["dev"]
            rec = " | ".join(
                "n/a" if d["per_family_recall"][f] is None else f"{d['per_family_recall'][f]:.3f}"
                for f in fams
            )
            short, long_ = d["shorter_than_1s"], d["from_1s"]
            lines.append(
                f"| {r['model']} | {rec} | {short.get('accuracy', float('nan')):.3f} (n={short['n']}) "
                f"| {long_.get('accuracy', float('nan')):.3f} (n={long_['n']}) |"
            )
        lines += ["", "| model | source | clips | accuracy | balanced acc. |", "|---|---|---|---|---|"]
        for r in with_dev:
            for src, x in r["dev"]["per_source"].items():
                lines.append(
                    f"| {r['model']} | {src} | {x['n']} | {x['accuracy']:.3f} | {x['balanced_accuracy']:.3f} |"
                )
        lines.append("")
    if args.experiments:
        lines += [
            "## Experiments",
            "",
            "Short runs on the same corpus, judged on valid only (they never computed a "
            "test number), written by `python -m training.train ... --no-test`; their reports are in "
            "`training/reports/experiments/`.",
            "",
            *experiments_table(args.experiments),
            "",
        ]
    if args.outro and args.outro.is_file():
        lines += [args.outro.read_text().rstrip(), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
