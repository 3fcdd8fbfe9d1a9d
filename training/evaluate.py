"""Scoring: the numbers every report quotes, for Keras models and exported artifacts alike.

Usage (an exported artifact on the real-recording dev split)::

    python -m training.evaluate instrunet_core/models/family/1.0.0 --corpus data/corpus \\
        --out training/reports/default/1.0.0/dev.json

* :func:`predict` runs anything with ``predict_on_batch`` (a Keras model, or an artifact
  through :class:`ArtifactModel`: onnxruntime, manifest-checked) over float16 windows.
* :func:`score_set` scores one example set: single clips by the arg-max over the eight
  families, mixtures and ensembles by presence thresholds, "other" sets by how many windows
  are answered "none of the eight".
* :func:`dev_breakdown` splits a single-clip set by family, source library, clip kind and
  length; :func:`library_scores` gives the per-library balanced accuracies that selection
  averages (and whose worst it watches).
* :func:`selection_score` is the one number epochs and weights are chosen by. It never sees
  the test split.

Outputs are the eight family probabilities, then (open-set models) the probability of
"other": no family playing, though something sounds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.errors import InstrunetError
from instrunet_core.labels import FAMILIES

from .cli_checks import ToolError, number_problems, refuse_existing, write_json
from .dataset import OTHER, Examples, ExampleSpec, cached_examples, split_notes
from .metrics import multiclass_metrics, multilabel_metrics
from .nsynth import NSynthError

__all__ = [
    "ArtifactModel",
    "predict",
    "model_batch",
    "inputs_of",
    "score_set",
    "dev_breakdown",
    "library_scores",
    "selection_score",
    "answers",
    "chain_robustness",
    "evaluate_artifact",
    "embedding_neighbours",
]

F = len(FAMILIES)


class ArtifactModel:
    """An exported artifact seen through the one method :func:`predict` calls; with an
    open-set output the result has a ninth column, the probability of "other"."""

    def __init__(self, artifact: Path) -> None:
        from instrunet_core.model import load_model

        self.model = load_model(Path(artifact))  # a path, never a registered name
        labels = tuple(self.model.labels)
        if sorted(labels) != sorted(FAMILIES):
            raise ToolError(
                f"{artifact}: its labels {list(labels)} are not the eight families {list(FAMILIES)}: "
                "the splits are scored per family"
            )
        # the artifact's columns in the families' order: its own order was taken for theirs, and
        # an artifact with its labels reversed scored 92.9 % where it is right 7.1 % (a tools audit)
        self._order = np.array([labels.index(f) for f in FAMILIES])

    def outputs(self, x: np.ndarray, *, embedding: bool = False) -> Any:
        """The model's :class:`~instrunet_core.model.ModelOutputs` for a batch of log-mel
        windows ``[B, 128, 128(, 1)]`` or, for a model that takes audio, window audio ``[B, n]``."""
        x = np.asarray(x, np.float32)
        if self.model.input_kind == "waveform":
            return self.model.outputs_windows(x.reshape(len(x), -1), embedding=embedding)
        return self.model.outputs_features(x.reshape(len(x), *x.shape[1:3]), embedding=embedding)

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        out = self.outputs(x)
        probs = np.asarray(out.probabilities, np.float32)[:, self._order]
        if out.other is None:
            return probs
        return np.concatenate([probs, out.other[:, None]], axis=1).astype(np.float32)


def predict(model: Any, X: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``[N, outputs]`` float32 scores for log-mel windows ``X [N, 128, 128]`` (float16 or
    float32), or for window audio ``X [N, samples]`` (int16 as stored in example sets, or
    float) of a model that takes audio."""
    audio = X.ndim == 2
    out = []
    for i in range(0, len(X), batch_size):
        x = model_batch(X[i : i + batch_size])
        out.append(model.predict_on_batch(x if audio else x[..., None]))
    return np.concatenate(out).astype(np.float32)


def model_batch(x: np.ndarray) -> np.ndarray:
    """Stored examples as a model takes them: float32, int16 audio scaled to [-1, 1]."""
    if x.dtype == np.int16:
        return np.asarray(x, np.float32) / np.float32(32767)
    return np.asarray(x, np.float32)


def inputs_of(ex: Examples, audio: bool) -> np.ndarray:
    """The examples' model inputs: their audio (``audio``) or their log-mel windows."""
    if audio:
        if ex.W is None:
            raise ValueError(f"{ex.key or 'example set'}: a model that takes audio needs the examples' audio")
        return ex.W
    return ex.X


def answers(p: np.ndarray, thresholds: Mapping[str, float] | None) -> np.ndarray:
    """Single-clip answers: the arg-max family, or ``OTHER`` (8) where the open-set output
    reaches its threshold (``thresholds["other"]``, 0.5 by default) and beats every family."""
    ans = p[:, :F].argmax(1)
    if p.shape[1] > F:
        t = (thresholds or {}).get("other", 0.5)
        ans = np.where((p[:, OTHER] >= t) & (p[:, OTHER] > p[:, :F].max(1)), OTHER, ans)
    return ans


def score_set(
    p: np.ndarray,
    ex: Examples | tuple[np.ndarray, np.ndarray],
    kind: str,
    thresholds: Mapping[str, float] | None,
) -> dict[str, Any]:
    """Metrics of scores ``p`` on one set. ``kind``: ``single`` (arg-max family; an open-set
    model's "other" answers count as errors), ``mix`` (presence thresholds per family) or
    ``other`` (share of windows answered "none of the eight")."""
    Y = ex.Y if isinstance(ex, Examples) else ex[1]
    if kind == "single":
        ans = answers(p, thresholds)
        labels = (*FAMILIES, "other") if p.shape[1] > F else FAMILIES
        m = multiclass_metrics(Y[:, :F].argmax(1), ans, labels)
        if p.shape[1] > F:
            m["other_answers"] = float(np.mean(ans == OTHER))
        return {"single": m, "n_single": int(len(p))}
    if kind == "mix":
        th = np.array([(thresholds or {}).get(f, 0.5) for f in FAMILIES])
        fam = Y[:, :F].any(1)  # windows where some family is audible
        return {"mixture": multilabel_metrics(Y[fam, :F], p[fam, :F], th), "n_mixture": int(fam.sum())}
    if kind == "other":
        ans = answers(p, thresholds)
        return {"other": {"answered_other": float(np.mean(ans == OTHER)), "n": int(len(p))}}
    raise ValueError(f"unknown set kind {kind!r}")


def dev_breakdown(
    p: np.ndarray, ex: Examples, notes: Mapping[str, Any], thresholds: Mapping[str, float] | None
) -> dict[str, Any]:
    """Single clips scored per family, per source library, per clip kind and for clips
    shorter than 1 s (``duration_s`` of the corpus metadata)."""
    true, pred = ex.Y[:, :F].argmax(1), answers(p, thresholds)
    meta = [notes[nm[0]].extra for nm in ex.names]

    def score(sel: np.ndarray) -> dict[str, Any]:
        if not sel.any():
            return {"n": 0}
        recalls = [
            float(np.mean(pred[sel & (true == i)] == i)) for i in range(F) if (sel & (true == i)).any()
        ]
        return {
            "n": int(sel.sum()),
            "accuracy": float(np.mean(pred[sel] == true[sel])),
            "balanced_accuracy": float(np.mean(recalls)),
        }

    lib = np.array([str(m.get("library", "")) for m in meta])
    kind = np.array([str(m.get("clip", "")) for m in meta])
    dur = np.array([float(m.get("duration_s", 4.0)) for m in meta])
    return {
        "per_family_recall": {
            f: float(np.mean(pred[true == i] == i)) if (true == i).any() else None
            for i, f in enumerate(FAMILIES)
        },
        "per_source": {s: score(lib == s) for s in sorted(set(lib))},
        "per_clip": {k: score(kind == k) for k in sorted(set(kind))},
        "shorter_than_1s": score(dur < 1.0),
        "from_1s": score(dur >= 1.0),
        "per_source_family": {
            s: {f: score((lib == s) & (true == i)) for i, f in enumerate(FAMILIES)} for s in sorted(set(lib))
        },
    }


def library_scores(
    p: np.ndarray, ex: Examples, notes: Mapping[str, Any], thresholds: Mapping[str, float] | None
) -> dict[str, float]:
    """Balanced accuracy per source library of a single-clip set."""
    per = dev_breakdown(p, ex, notes, thresholds)["per_source"]
    return {lib: v["balanced_accuracy"] for lib, v in per.items() if v.get("n")}


def selection_score(parts: Mapping[str, float]) -> float:
    """The mean of the available parts (NaN parts left out): valid balanced accuracy and
    mixture F1, dev libraries' mean and worst balanced accuracy, dev ensemble F1, and the
    open-set score (other found on other sounds, not on instruments)."""
    vals = [v for v in parts.values() if v == v]
    return float(np.mean(vals)) if vals else float("nan")


def chain_robustness(
    model: Any,
    ex: Examples,
    thresholds: Mapping[str, float] | None,
    *,
    chains: Sequence[str] | None = None,
    audio: bool = False,
) -> dict[str, Any]:
    """How the fixed producer chains (:data:`training.augment.CHAINS`) change single-clip
    answers: per chain, the share of clips whose answer changes and the balanced accuracy
    before and after. ``ex`` must hold the clips' audio (``keep_audio``)."""
    from instrunet_core.features import DEFAULT_FRONT_END, batch_features

    from .augment import CHAINS, apply_chain

    if ex.W is None:
        raise ValueError("chain robustness needs the clips' audio (an example set made with keep_audio)")
    sr = DEFAULT_FRONT_END.sample_rate
    true = ex.Y[:, :F].argmax(1)
    clean = answers(predict(model, inputs_of(ex, audio)), thresholds)
    labels = (*FAMILIES, "other")  # answers may be "other"; only the true families count
    base = multiclass_metrics(true, clean, labels)
    out: dict[str, Any] = {
        "clean_balanced_accuracy": base["balanced_accuracy"],
        "n": int(len(ex)),
        "chains": {},
    }
    for name in chains or list(CHAINS):
        processed = np.concatenate(
            [
                np.stack(
                    [apply_chain(name, np.asarray(w, np.float32) / 32767.0, sr) for w in ex.W[i : i + 256]]
                )
                for i in range(0, len(ex), 256)
            ]
        )
        x = processed if audio else batch_features(processed).astype(np.float16)
        got = answers(predict(model, x), thresholds)
        m = multiclass_metrics(true, got, labels)
        out["chains"][name] = {
            "label_change_rate": float(np.mean(got != clean)),
            "balanced_accuracy": m["balanced_accuracy"],
            "drop": base["balanced_accuracy"] - m["balanced_accuracy"],
        }
    vals = out["chains"].values()
    out["mean_label_change_rate"] = float(np.mean([v["label_change_rate"] for v in vals]))
    out["max_drop"] = float(max(v["drop"] for v in vals))
    return out


def evaluate_artifact(
    artifact: Path,
    corpus: Path,
    *,
    cache: Path = Path("cache/examples"),
    seed: int = 1234,
    n_dev: int = 20000,
    n_dev_mix: int = 0,
) -> dict[str, Any]:
    """The dev block of a report for the artifact folder ``artifact`` (holding ``manifest.json``):
    the single clips (per family, library, clip kind), the real-library ensembles
    (``n_dev_mix`` of them), the open-set dev set (share answered "other"), nearest
    neighbours over the embeddings (models with an embedding output) and the producer chains.

    ``seed``, ``n_dev`` and ``n_dev_mix`` must be the training run's (``--seed``, ``--n-dev``,
    ``--n-dev-mix``) to score the same cached windows.
    """
    from .others import load_others

    model = ArtifactModel(Path(artifact))  # (a wrong artifact is said before any set is built)
    notes = split_notes(corpus, "dev")
    spec = ExampleSpec(
        "dev", min(n_dev, len(notes)), seed + 5, balanced=False, random_crop=False, keep_audio=True
    )
    ex = cached_examples(corpus, spec, cache)  # the same windows as training.train's dev set
    audio = model.model.input_kind == "waveform"
    thresholds = dict(model.model.thresholds)
    if model.model.other_threshold is not None:
        thresholds["other"] = float(model.model.other_threshold)
    p = predict(model, inputs_of(ex, audio))
    out: dict[str, Any] = {"artifact": str(artifact), **score_set(p, ex, "single", thresholds)}
    out.update(dev_breakdown(p, ex, {nt.note_str: nt for nt in notes}, thresholds))
    if n_dev_mix:  # the real-library ensembles of training.train's dev set
        mix = cached_examples(
            corpus, ExampleSpec("dev", n_dev_mix, seed + 6, ensemble_prob=1.0, keep_audio=True), cache
        )
        out.update(score_set(predict(model, inputs_of(mix, audio)), mix, "mix", thresholds))
    others = load_others(corpus / "dev")
    if others:  # the open-set dev set: real drums, speech, noise and generated synths
        spec_o = ExampleSpec(
            "dev", len(others), seed + 8, balanced=False, other_prob=1.0, random_crop=False, keep_audio=True
        )
        oth = cached_examples(corpus, spec_o, cache)
        out.update(score_set(predict(model, inputs_of(oth, audio)), oth, "other", thresholds))
    if model.model.embedding_dim is not None:
        out["neighbours"] = embedding_neighbours(model, ex, {nt.note_str: nt for nt in notes}, audio=audio)
    out["chains"] = chain_robustness(model, ex, thresholds, audio=audio)
    return out


def embedding_neighbours(
    model: ArtifactModel, ex: Examples, notes: Mapping[str, Any], *, audio: bool = False
) -> dict[str, Any]:
    """Nearest-neighbour search over the set's embeddings (cosine similarity, each clip a
    query against all the others): the share of queries whose nearest neighbour has the
    query's family, over every other clip and over clips of *other instruments* only (a
    stricter question: the same instrument's other notes are the easy neighbours)."""
    vecs = []
    x = inputs_of(ex, audio)
    for i in range(0, len(ex), 256):
        e = model.outputs(model_batch(x[i : i + 256]), embedding=True).embedding
        vecs.append(np.asarray(e, np.float32))
    v = np.concatenate(vecs)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    sim = v @ v.T
    np.fill_diagonal(sim, -np.inf)
    fam = ex.Y[:, :F].argmax(1)
    inst = np.array([str(notes[nm[0]].instrument_str) for nm in ex.names])
    any_nn = sim.argmax(1)
    other = np.where(inst[:, None] == inst[None, :], -np.inf, sim)
    cross_nn = other.argmax(1)

    def per_family(nn: np.ndarray) -> dict[str, float]:
        return {f: float(np.mean(fam[nn[fam == i]] == i)) for i, f in enumerate(FAMILIES) if (fam == i).any()}

    return {
        "n": int(len(v)),
        "dim": int(v.shape[1]),
        "same_family": float(np.mean(fam[any_nn] == fam)),
        "same_family_other_instrument": float(np.mean(fam[cross_nn] == fam)),
        "per_family_other_instrument": per_family(cross_nn),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", type=Path, help="artifact folder (model.onnx + manifest.json)")
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=Path("cache/examples"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--n-dev", type=int, default=20000)
    ap.add_argument(
        "--n-dev-mix", type=int, default=0, help="real-library ensembles to score (training's --n-dev-mix)"
    )
    ap.add_argument("--force", action="store_true", help="replace an existing --out")
    args = ap.parse_args(argv)
    for problem in number_problems(vars(args), positive=("n_dev",), non_negative=("seed", "n_dev_mix")):
        ap.error(problem)
    if not (args.corpus / "dev" / "examples.json").is_file():
        print(
            f"training.evaluate: error: {args.corpus}: no dev split (build the corpus with --sources)",
            file=sys.stderr,
        )
        return 2
    try:
        if args.out.is_dir():
            raise ToolError(f"--out {args.out}: a folder; give the JSON file to write")
        refuse_existing([args.out], force=args.force, what="an earlier evaluation")
        res = evaluate_artifact(
            args.artifact,
            args.corpus,
            cache=args.cache,
            seed=args.seed,
            n_dev=args.n_dev,
            n_dev_mix=args.n_dev_mix,
        )
        write_json(args.out, {"dev": res}, indent=1, sort_keys=True)
    except (ToolError, InstrunetError, OSError, NSynthError) as e:  # (a damaged examples.json too)
        print(f"training.evaluate: error: {e}", file=sys.stderr)
        return 1
    s = res["single"]
    print(
        f"dev: accuracy {s['accuracy']:.4f}, balanced {s['balanced_accuracy']:.4f}; shorter than 1 s "
        f"{res['shorter_than_1s'].get('accuracy', float('nan')):.4f} (n={res['shorter_than_1s']['n']})"
        + (f"; ensembles micro F1 {res['mixture']['micro_f1']:.4f}" if "mixture" in res else "")
        + (f"; open-set dev answered other {res['other']['answered_other']:.4f}" if "other" in res else "")
        + (
            f"; nearest neighbour same family {res['neighbours']['same_family']:.4f} "
            f"(other instruments {res['neighbours']['same_family_other_instrument']:.4f})"
            if "neighbours" in res
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
