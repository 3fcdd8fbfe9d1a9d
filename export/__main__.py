"""``python -m export``: Keras model → checked ONNX artifact (see ``docs/export.md``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from instrunet_core.errors import InstrunetError

from . import DEFAULT_ATOL, ExportError
from .convert import EMBEDDING_KINDS

USAGE_EXAMPLE = """example:
  python -m export runs/default/default.keras --name family --version 1.0.0 --out instrunet_core/models \\
      --corpus data/corpus --split valid --report training/reports/default/1.0.0/metrics.json

waveform-in artifact (front end inside the graph) from any log-mel-input artifact:
  python -m export waveform --from instrunet_core/models/family/1.0.0 --out build/models   (see --help)
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
    ap.add_argument(
        "--task",
        choices=["multilabel", "multiclass"],
        help="default: from the last layer's activation (sigmoid → multilabel, softmax → multiclass)",
    )
    ap.add_argument(
        "--corpus",
        type=Path,
        help="NSynth-format corpus for the parity check (default: the report's corpus, else data/corpus)",
    )
    ap.add_argument(
        "--split", default="valid", help="corpus split for parity and references (default: valid)"
    )
    ap.add_argument(
        "--report",
        type=Path,
        help="training report metrics.json (metrics, thresholds, training data are copied)",
    )
    ap.add_argument("--n-parity", type=int, default=200, help="parity windows (default: 200)")
    ap.add_argument("--n-references", type=int, default=24, help="reference windows stored (default: 24)")
    ap.add_argument("--license", default="MIT", help="license of the model weights (default: MIT)")
    ap.add_argument(
        "--thresholds",
        type=Path,
        help="JSON file {label: threshold} (default: the report's thresholds, multilabel only)",
    )
    ap.add_argument("--description", help="one-line description stored in the manifest")
    ap.add_argument(
        "--other-veto",
        type=float,
        default=None,
        metavar="P",
        help="open-set models: the model's own level of the timeline's 'other' veto, in (0, 1] "
        "(manifest other.veto; default: none, the runtime's level)",
    )
    ap.add_argument(
        "--atol",
        type=float,
        default=DEFAULT_ATOL,
        help=f"largest accepted |keras - onnxruntime| (default: {DEFAULT_ATOL:g})",
    )
    ap.add_argument(
        "--quantize",
        action="store_true",
        help="also write NAME-int8/VERSION (dynamic int8) and print its accuracy drop and latency",
    )
    ap.add_argument(
        "--features",
        type=Path,
        help="export a features-input model: .npz with 'x' [n, n_features] (held-out classifier inputs, "
        "used for parity and references) and 'names'; no corpus is read",
    )
    ap.add_argument(
        "--embedding",
        choices=EMBEDDING_KINDS,
        default="dense",
        help="the embedding output: the dense layer before the output (default) or the pooled features "
        "averaged over frequency (timbre)",
    )
    ap.add_argument("--force", action="store_true", help="replace an existing NAME/VERSION folder")
    return ap


def _print_quantization(q: dict) -> None:
    drop = q["accuracy_drop_points"]
    print(
        f"int8: accuracy {q['accuracy_float32']:.4f} → {q['accuracy_int8']:.4f} on {q['n']} {q['split']} windows "
        f"(drop {drop:+.2f} points; {'within' if drop <= 0.5 else 'OVER'} the 0.5-point shipping limit)"
    )
    lf, lq = q["latency_ms_float32"], q["latency_ms_int8"]
    print(
        f"int8: latency batch 1 {lf['batch1']:.2f} → {lq['batch1']:.2f} ms, batch 32 {lf['batch32']:.1f} → "
        f"{lq['batch32']:.1f} ms; size {q['bytes_float32'] / 1e3:.0f} → {q['bytes_int8'] / 1e3:.0f} kB; "
        f"max |int8 - keras| {q['max_abs_diff_vs_keras']:.3g}"
    )


WAVEFORM_EXAMPLE = """example:
  python -m export waveform --from instrunet_core/models/family/1.0.0 --out build/models
      → build/models/family-waveform/1.0.0/{model.onnx,manifest.json,references.npz}
"""


def build_waveform_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m export waveform",
        description="Compose the log-mel front end, written as ONNX operators, with a log-mel-input artifact: "
        "the result takes 22,050 Hz mono samples [batch, window_samples] and returns probabilities. Checks the "
        "features against instrunet_core.features and the outputs against the source artifact first.",
        epilog=WAVEFORM_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--from",
        dest="source",
        type=Path,
        required=True,
        help="log-mel-input artifact folder (NAME/VERSION with manifest.json)",
    )
    ap.add_argument("--out", type=Path, required=True, help="folder that receives NAME/VERSION/")
    ap.add_argument("--name", help="default: SOURCE_NAME-waveform")
    ap.add_argument("--version", help="default: the source's version")
    ap.add_argument(
        "--audio",
        type=Path,
        nargs="+",
        help="recordings for the parity check (default: the repository's examples/)",
    )
    ap.add_argument(
        "--n-references", type=int, default=4, help="windows stored in references.npz (default: 4)"
    )
    ap.add_argument(
        "--atol",
        type=float,
        default=DEFAULT_ATOL,
        help=f"largest accepted difference on features and outputs (default: {DEFAULT_ATOL:g})",
    )
    ap.add_argument(
        "--dft",
        choices=("stages", "four-step", "stft"),
        default="stages",
        help="how the graph computes the spectrum (default: stages, the fastest; see "
        "export.waveform.frontend_graph)",
    )
    ap.add_argument("--force", action="store_true", help="replace an existing NAME/VERSION folder")
    return ap


def _run(export: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """The export's summary, or ``None`` after printing its one-line error. SIGTERM (a job
    scheduler's stop, ``kill``) ends it as Ctrl-C does: the temporary folder is removed before
    the process exits (SIGKILL cannot be caught: what it leaves is a hidden ``.VERSION.*.tmp``
    folder, never taken for a version)."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: no handler
        previous = None
    try:
        return export()
    except ExportError as e:
        print(f"export: error: {e}", file=sys.stderr)
        return None
    except InstrunetError as e:  # the runtime's own errors on the way (a source that cannot be decoded)
        print(f"export: error: {e}", file=sys.stderr)
        return None
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - a library's failure (Keras, tf2onnx, onnx) on the way: one line
        print(f"export: error: {type(e).__name__}: {e}; nothing written", file=sys.stderr)
        return None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def main_waveform(argv: Sequence[str]) -> int:
    args = build_waveform_parser().parse_args(argv)
    from .waveform import export_waveform

    summary = _run(lambda: export_waveform(**vars(args)))  # the options are named as its parameters
    if summary is None:
        return 1
    p = summary["parity"]
    print(
        f"wrote {summary['path']} (sha256 {summary['sha256'][:16]}…; features max diff "
        f"{p['features_max_abs_diff']:.3g}, outputs max diff {p['max_abs_diff']:.3g} on {p['n']} windows)"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from .artifact import created_timestamp

    try:  # before TensorFlow's import, which reads it too and fails with a traceback of its own
        created_timestamp()
    except ExportError as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 1
    if argv[:1] == ["waveform"]:
        return main_waveform(argv[1:])
    args = build_parser().parse_args(argv)
    from .pipeline import ExportConfig, export_model

    summary = _run(lambda: export_model(ExportConfig(**vars(args))))  # the options are named as its fields
    if summary is None:
        return 1
    p = summary["parity"]
    print(
        f"wrote {summary['path']} ({summary['task']}, sha256 {summary['sha256'][:16]}…; parity max diff "
        f"{p['max_abs_diff']:.3g}, top-1 agreement {p['top1_agreement']:.0%} on {p['n']} windows)"
    )
    if "quantization" in summary:
        print(f"wrote {summary['quantized_path']}")
        _print_quantization(summary["quantization"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
