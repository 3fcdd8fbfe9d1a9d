"""Score an exported artifact on the real-recording dev split (per family, source, clip kind).

Usage::

    python -m training.evaluate instrunet_core/models/family/1.0.0 --corpus data/corpus \\
        --out training/reports/default/1.0.0/dev.json

Runs the artifact through ``instrunet_core`` (onnxruntime, manifest-checked) on the same
dev windows that training uses for selection (the note's first 2.95 s, shorter clips padded
with silence; the cached ``dev`` examples of ``training.train``), and writes the same
``dev`` block a training report holds. For models trained before the dev split existed, so
that old and new models are compared on the same real recordings. It never reads ``test``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import ExampleSpec, cached_examples, split_notes
from .metrics import multiclass_metrics

__all__ = ["evaluate_artifact"]


class _OnnxAsKeras:
    """The one method of a Keras model that :func:`training.train.predict` calls."""

    def __init__(self, artifact: Path) -> None:
        from instrunet_core.model import load_model

        self.model = load_model(Path(artifact))  # a path, never a registered name

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_features(x)


def evaluate_artifact(
    artifact: Path, corpus: Path, *, cache: Path = Path("cache/examples"), seed: int = 1234, n_dev: int = 4000
) -> dict[str, Any]:
    """The dev block of a report for the artifact folder ``artifact`` (holding ``manifest.json``).

    ``seed`` and ``n_dev`` must be the training run's (``--seed``, ``--n-dev``) to score the
    same cached windows.
    """
    from .train import dev_breakdown

    notes = split_notes(corpus, "dev")
    n = min(n_dev, len(notes))
    X, Y, names = cached_examples(
        corpus, ExampleSpec("dev", n, seed + 5, balanced=False, random_crop=False), cache
    )
    model = _OnnxAsKeras(Path(artifact))
    p = model.predict_on_batch(X.astype(np.float32))
    out: dict[str, Any] = {
        "artifact": str(artifact),
        "n_single": int(len(X)),
        "single": multiclass_metrics(Y.argmax(1), p.argmax(1)),
    }
    out.update(dev_breakdown(model, X, Y, names, {nt.note_str: nt for nt in notes}))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", type=Path, help="artifact folder (model.onnx + manifest.json)")
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=Path("cache/examples"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--n-dev", type=int, default=4000)
    args = ap.parse_args(argv)
    if not (args.corpus / "dev" / "examples.json").is_file():
        print(
            f"training.evaluate: error: {args.corpus}: no dev split (build the corpus with --sources)",
            file=sys.stderr,
        )
        return 2
    res = evaluate_artifact(args.artifact, args.corpus, cache=args.cache, seed=args.seed, n_dev=args.n_dev)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"dev": res}, indent=1, sort_keys=True))
    s = res["single"]
    print(
        f"dev: accuracy {s['accuracy']:.4f}, balanced {s['balanced_accuracy']:.4f}; shorter than 1 s "
        f"{res['shorter_than_1s'].get('accuracy', float('nan')):.4f} (n={res['shorter_than_1s']['n']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
