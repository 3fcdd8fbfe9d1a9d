"""``python -m export``: Keras model → checked ONNX artifact (see ``docs/export.md``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import DEFAULT_ATOL, ExportError

USAGE_EXAMPLE = """example:
  python -m export runs/default/default.keras --name default --version 1.0.0 --out instrunet_core/models \\
      --corpus data/corpus --split valid --report training/reports/default/1.0.0/metrics.json
"""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a Keras family model to ONNX with a manifest, after a Keras/onnxruntime parity "
        "check on real corpus windows. Writes OUT/NAME/VERSION/{model.onnx,manifest.json,references.npz}.",
        epilog=USAGE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("model", type=Path, help="trained model (.keras)")
    ap.add_argument("--name", required=True, help="model name (lower case, [a-z0-9_.-])")
    ap.add_argument("--version", required=True, help="semver X.Y.Z")
    ap.add_argument("--out", type=Path, required=True, help="folder that receives NAME/VERSION/")
    ap.add_argument("--task", choices=["multilabel", "multiclass"], default=None,
                    help="default: from the last layer's activation (sigmoid → multilabel, softmax → multiclass)")
    ap.add_argument("--corpus", type=Path, default=None,
                    help="NSynth-format corpus for the parity check (default: the report's corpus, else data/corpus)")
    ap.add_argument("--split", default="valid", help="corpus split for parity and references (default: valid)")
    ap.add_argument("--report", type=Path, default=None,
                    help="training report metrics.json (metrics, thresholds, training data are copied)")
    ap.add_argument("--n-parity", type=int, default=200, help="parity windows (default: 200)")
    ap.add_argument("--n-references", type=int, default=24, help="reference windows stored (default: 24)")
    ap.add_argument("--license", default="MIT", help="license of the model weights (default: MIT)")
    ap.add_argument("--thresholds", type=Path, default=None,
                    help="JSON file {label: threshold} (default: the report's thresholds, multilabel only)")
    ap.add_argument("--description", default=None, help="one-line description stored in the manifest")
    ap.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                    help=f"largest accepted |keras - onnxruntime| (default: {DEFAULT_ATOL:g})")
    ap.add_argument("--quantize", action="store_true",
                    help="also write NAME-int8/VERSION (dynamic int8) and print its accuracy drop and latency")
    ap.add_argument("--features", type=Path, default=None,
                    help="export a features-input model: .npz with 'x' [n, n_features] (held-out classifier inputs, "
                         "used for parity and references) and 'names'; no corpus is read")
    ap.add_argument("--force", action="store_true", help="replace an existing NAME/VERSION folder")
    return ap


def _print_quantization(q: dict) -> None:
    drop = q["accuracy_drop_points"]
    print(f"int8: accuracy {q['accuracy_float32']:.4f} → {q['accuracy_int8']:.4f} on {q['n']} {q['split']} windows "
          f"(drop {drop:+.2f} points; {'within' if drop <= 0.5 else 'OVER'} the 0.5-point shipping limit)")
    lf, lq = q["latency_ms_float32"], q["latency_ms_int8"]
    print(f"int8: latency batch 1 {lf['batch1']:.2f} → {lq['batch1']:.2f} ms, batch 32 {lf['batch32']:.1f} → "
          f"{lq['batch32']:.1f} ms; size {q['bytes_float32'] / 1e3:.0f} → {q['bytes_int8'] / 1e3:.0f} kB; "
          f"max |int8 - keras| {q['max_abs_diff_vs_keras']:.3g}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .pipeline import ExportConfig, export_model

    cfg = ExportConfig(
        model=args.model, name=args.name, version=args.version, out=args.out, task=args.task, corpus=args.corpus,
        split=args.split, report=args.report, n_parity=args.n_parity, n_references=args.n_references,
        license=args.license, thresholds=args.thresholds, description=args.description, atol=args.atol,
        quantize=args.quantize, force=args.force, features=args.features,
    )
    try:
        summary = export_model(cfg)
    except ExportError as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 1
    p = summary["parity"]
    print(f"wrote {summary['path']} ({summary['task']}, sha256 {summary['sha256'][:16]}…; parity max diff "
          f"{p['max_abs_diff']:.3g}, top-1 agreement {p['top1_agreement']:.0%} on {p['n']} windows)")
    if "quantization" in summary:
        print(f"wrote {summary['quantized_path']}")
        _print_quantization(summary["quantization"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
