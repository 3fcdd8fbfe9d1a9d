"""``python -m training.openhead``: an exported family model learns to say "none of the eight".

The family network stays exactly as it was (its eight outputs are the same numbers); a head on
what the network already computes (its pooled features, each convolution block's mean and
maximum, the input's band statistics: :func:`export.openhead.head_input`) learns the open-set
answer ``other``, and an embedding becomes an output (by default the pooled features averaged
over the frequency bands; :mod:`export.openhead` does the graph work)::

    python -m training.openhead instrunet_core/models/family/2.0.0 --version 2.1.0 \\
        --corpus data/corpus --sources /data/sources --out instrunet_core/models \\
        --report-dir training/reports/default/2.1.0

* **Data**: :func:`training.train.build_sets` with the recipe of family-compact 2.0.0
  (:data:`RECIPE`: the same cached windows): the train split's instruments, ensembles and
  12 % "other" windows (drums, synthesizers, speech, noise from the train negatives, docs/data.md),
  15 % of the instrument windows with other sound under them; valid and dev choose.
* **Head**: the standardised head input, a logistic regression (or, with ``--hidden``, one
  hidden ReLU layer first), a sigmoid; weighted binary cross-entropy (other and instrument windows weigh the
  same in total), L2, Adam, in numpy (seeded: the same run gives the same head). The epoch is
  chosen on valid: the share of "other" windows answered other minus the share of instrument
  windows answered other.
* **A base with its own open-set output** (``--replace-other``: a network trained with a ninth
  sigmoid, ``... Sigmoid → Slice → probabilities``): its ``other`` and ``embedding`` outputs are
  removed (:func:`export.openhead.without_outputs`) and the head's take their place; ``--name``
  names the new artifact. ``--threshold-beta`` chooses the family thresholds again on valid and
  dev (single clips and mixtures pooled) by F-beta instead of keeping the base's.
* **Threshold** (:func:`choose_threshold`): the most "other" windows of valid and dev answered
  other while the balanced accuracy of valid and dev single clips (an "other" answer on an
  instrument counts as an error) falls at most ``--max-drop`` (0.015) and no family loses more
  than ``--max-family-loss`` (5 %) of its clips to "other". The family thresholds are the base's.
* **Reports** (``--report-dir``): ``metrics.json`` (valid, dev, test in the shape of a training
  report; the test split is scored once, after everything is chosen), ``dev.json``
  (:func:`training.evaluate.evaluate_artifact`), ``head.json`` (every epoch) and ``train.log``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.openhead import EMBEDDINGS
from instrunet_core.errors import ModelError
from instrunet_core.labels import FAMILIES
from instrunet_core.verify import verify_artifact

from .dataset import OTHER

__all__ = ["RECIPE", "fit_head", "other_answers", "choose_threshold", "run", "main"]

F = len(FAMILIES)

#: The example recipe (training.train.Config fields) of family-compact 2.0.0's run: the same
#: cached windows, so that the head learns from what the distilled student learnt from.
RECIPE: dict[str, Any] = {
    "n_train": 48000,
    "mix_prob": 0.15,
    "augment": True,
    "augment_preset": "production",
    "onset_prob": 0.5,
    "real_prob": 0.5,
    "music_prob": 0.5,
    "pre_silence_prob": 0.25,
    "irs": True,
    "ensemble_prob": 0.35,
    "other_prob": 0.12,
    "other_under_prob": 0.15,
    "open_set": True,
    "keep_audio": True,
    "n_dev_mix": 2000,
}


def other_answers(p: np.ndarray, other: np.ndarray, threshold: float) -> np.ndarray:
    """Where the answer is "other" for family probabilities ``p`` and open-set probabilities
    ``other``: :func:`training.evaluate.answers`' rule (the runtime's: reaches ``threshold`` and
    beats every family)."""
    from .evaluate import answers

    scores = np.column_stack([np.asarray(p)[:, :F], np.asarray(other).reshape(-1)])
    return answers(scores, {"other": threshold}) == OTHER


def choose_threshold(
    single: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    other: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    targets: dict[str, np.ndarray],
    head: Callable[[np.ndarray], np.ndarray],
    *,
    max_drop: float = 0.015,
    max_family_loss: float = 0.05,
    grid: Sequence[float] = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2)),
) -> tuple[float, dict[str, Any]]:
    """The "other" threshold: the most windows of other sound answered other (the mean over the
    sets in ``other``) while the balanced accuracy of every set in ``single`` stays within
    ``max_drop`` of the family answers alone (an "other" answer on an instrument is an error)
    and no family loses more than ``max_family_loss`` of its clips to "other" in any of them
    (the drop must not fall on one family: a guitar or a voice is as much an instrument).

    ``single`` and ``other`` map a split to ``(probabilities, head input, embedding)``
    (:func:`export.openhead.features`); ``targets`` the single sets' ``Y``. Without any
    threshold that keeps the drop, the highest of the grid.
    """
    from .metrics import multiclass_metrics

    names = (*FAMILIES, "other")
    base, scores = {}, {}
    for split, (p, h, _) in single.items():
        y = targets[split][:, :F].argmax(1)
        base[split] = multiclass_metrics(y, p[:, :F].argmax(1), names)["balanced_accuracy"]
        scores[split] = (p, head(h), y)
    others = {split: (p, head(h)) for split, (p, h, _) in other.items()}
    best: tuple[float, float, dict[str, Any]] | None = None
    for t in grid:
        drops, losses = {}, {}
        for split, (p, o, y) in scores.items():
            said = other_answers(p, o, t)
            ans = np.where(said, OTHER, p[:, :F].argmax(1))
            drops[split] = base[split] - multiclass_metrics(y, ans, names)["balanced_accuracy"]
            losses[split] = max(float(said[y == f].mean()) for f in range(F) if np.any(y == f))
        found = float(np.mean([other_answers(p, o, t).mean() for p, o in others.values()]))
        row = {
            "threshold": float(t),
            "other_answered": found,
            **{f"{s}_other_answered": float(other_answers(*others[s], t).mean()) for s in others},
            **{f"{s}_balanced_accuracy_drop": float(d) for s, d in drops.items()},
            **{f"{s}_worst_family_lost_to_other": v for s, v in losses.items()},
        }
        ok = max(drops.values()) <= max_drop and max(losses.values()) <= max_family_loss
        if ok and (best is None or found > best[1]):
            best = (float(t), found, row)
    if best is None:
        t = float(max(grid))
        return t, {
            "threshold": t,
            "note": f"no threshold keeps the drop within {max_drop:g} and every family's loss within {max_family_loss:g}",
        }
    return best[0], best[2]


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0, dtype=np.float64)
    scale = x.std(0, dtype=np.float64)
    return mean, np.where(scale > 1e-6, scale, 1.0)


def fit_head(
    x: np.ndarray,
    y: np.ndarray,
    *,
    hidden: int = 64,
    epochs: int = 30,
    lr: float = 1e-3,
    l2: float = 1e-4,
    batch: int = 256,
    seed: int = 0,
    score: Callable[[Any], float] | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> tuple[Any, list[dict[str, float]]]:
    """Fit the open-set head on features ``x [n, d]`` and targets ``y [n]`` (0..1).

    ``score(head)`` (higher is better) chooses the epoch; without it the last epoch is kept.

    Returns
    -------
    (export.openhead.Head, list of dict)
        The head and, per epoch, its loss and score.
    """
    from export.openhead import Head

    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"features {x.shape} and targets {y.shape} do not match")
    pos = float((y >= 0.5).sum())
    if pos == 0 or pos == len(y):
        raise ValueError("the targets hold only one class: the head needs other and instrument windows")
    mean, scale = _standardise(x)
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    dims = [d, hidden, 1] if hidden else [d, 1]
    params = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        params += [rng.normal(0.0, np.sqrt(2.0 / a), (a, b)), np.zeros(b)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    # other and instrument windows weigh the same in total
    w_pos, w_neg = len(y) / (2 * pos), len(y) / (2 * (len(y) - pos))
    step = 0
    history: list[dict[str, float]] = []
    best: tuple[float, Any] | None = None

    def head_of(ps: list[np.ndarray]) -> Head:
        return Head(mean, scale, tuple((ps[i].copy(), ps[i + 1].copy()) for i in range(0, len(ps), 2)))

    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x))
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            h = (x[idx] - mean) / scale
            acts = [h]
            for k in range(0, len(params), 2):
                h = h @ params[k] + params[k + 1]
                if k + 2 < len(params):
                    h = np.maximum(h, 0.0)
                acts.append(h)
            z = h[:, 0]
            p = 1.0 / (1.0 + np.exp(-z))
            t = y[idx]
            wt = np.where(t >= 0.5, w_pos, w_neg)
            eps = 1e-7
            total += float(-(wt * (t * np.log(p + eps) + (1 - t) * np.log(1 - p + eps))).sum())
            g = (wt * (p - t) / len(idx))[:, None]
            grads: list[np.ndarray] = [np.empty(0)] * len(params)
            for k in range(len(params) - 2, -1, -2):
                a_in = acts[k // 2]
                grads[k] = a_in.T @ g + l2 * params[k]
                grads[k + 1] = g.sum(0)
                if k:
                    g = (g @ params[k].T) * (acts[k // 2] > 0)
            step += 1
            for j, gr in enumerate(grads):
                m[j] = 0.9 * m[j] + 0.1 * gr
                v[j] = 0.999 * v[j] + 0.001 * gr * gr
                mh = m[j] / (1 - 0.9**step)
                vh = v[j] / (1 - 0.999**step)
                params[j] = params[j] - lr * mh / (np.sqrt(vh) + 1e-8)
        head = head_of(params)
        row = {"epoch": float(epoch), "loss": total / len(x)}
        if score is not None:
            row["score"] = float(score(head))
            if best is None or row["score"] > best[0]:
                best = (row["score"], head)
        history.append(row)
        log(
            f"epoch {epoch}: loss {row['loss']:.4f}"
            + (f" score {row['score']:.4f}" if "score" in row else "")
        )
    chosen = best[1] if best is not None else head_of(params)
    return chosen, history


def _artifact_model(folder: Path, graph: Any) -> Any:
    """The written artifact as :func:`training.train.final_report` sees a model
    (:class:`training.evaluate.ArtifactModel` with ``count_params``: the graph's weights)."""
    from .evaluate import ArtifactModel

    n = int(sum(int(np.prod(t.dims)) for t in graph.graph.initializer if len(t.dims) >= 1))
    m = ArtifactModel(folder)
    m.count_params = lambda: n  # type: ignore[attr-defined]
    return m


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fit, graft, evaluate and write the artifact; returns the report (``metrics.json``)."""
    import onnx
    import onnxruntime as ort

    from export import ExportError
    from export.artifact import (
        build_manifest,
        check_artifact,
        created_timestamp,
        report_metrics,
        training_data_info,
        write_artifact,
    )
    from export.openhead import (
        embedding_dim,
        features,
        graft,
        graph_tensors,
        timbre_embedding,
        without_outputs,
    )

    from .report import write_report
    from .train import Config, _corpus_counts, build_sets, choose_thresholds, final_report

    t_start = time.time()
    try:
        checked = verify_artifact(args.base)
    except ModelError as e:
        raise ExportError(str(e)) from None
    base = checked.manifest
    if base.input_kind != "logmel":
        raise ExportError(f"{args.base}: takes {base.input_kind} input; the head needs a log-mel model")
    if base.other is not None and not args.replace_other:
        raise ExportError(
            f"{args.base}: already has an open-set output ({base.other['name']!r}; "
            "pass --replace-other to replace it and its embedding by the head's)"
        )
    name = args.name or base.name
    dest = Path(args.out) / name / args.version
    if dest.exists() and not args.force:
        raise ExportError(f"{dest}: already exists (pass --force to replace it)")
    net = onnx.load(str(checked.path / base.file))
    replaced = (
        [o["name"] for o in (base.other, base.embedding) if o is not None] if args.replace_other else []
    )
    if replaced:  # the network's own open-set output and embedding give way to the graft's
        net = without_outputs(net, replaced)
    tensors = graph_tensors(net, base.output["name"])
    log(
        f"{base.name} {base.version}: head input {tensors.head_dim} values (pooled features {tensors.pooled}, "
        f"{len(tensors.blocks)} blocks, input statistics); embedding {args.embedding}"
    )

    cfg = Config(
        model="default",
        corpus=Path(args.corpus),
        out=Path(args.report_dir),
        version=args.version,
        seed=args.seed,
        sources=args.sources,
        cache=Path(args.cache),
        workers=args.workers,
        progress=args.progress,
        **RECIPE,
    )
    sets = build_sets(cfg, keep_audio=True)
    if "other" not in sets.valid:
        raise ExportError(
            f"{args.corpus}: the valid split has no other sounds (build the corpus with --sources)"
        )
    # the sets the head learns from and is chosen on (the mixtures' answers do not use "other")
    groups = {("train", "all"): sets.train}
    for split, group in (("valid", sets.valid), ("dev", sets.dev)):
        kinds = ("single", "other", "mix") if args.threshold_beta else ("single", "other")
        groups.update({(split, kind): ex for kind, ex in group.items() if kind in kinds})
    t0 = time.time()
    feats = {key: features(net, tensors, ex.X) for key, ex in groups.items()}
    ys = {key: ex.Y for key, ex in groups.items()}
    log(f"features of {sum(len(v[0]) for v in feats.values())} windows [{time.time() - t0:.0f}s]")

    def valid_score(head: Any) -> float:
        found = other_answers(feats[("valid", "other")][0], head(feats[("valid", "other")][1]), 0.5).mean()
        false = other_answers(feats[("valid", "single")][0], head(feats[("valid", "single")][1]), 0.5).mean()
        return float(found - false)

    t0 = time.time()
    head, history = fit_head(
        feats[("train", "all")][1],
        ys[("train", "all")][:, OTHER],
        hidden=args.hidden,
        epochs=args.epochs,
        lr=args.lr,
        l2=args.l2,
        seed=args.seed,
        score=valid_score,
        log=log,
    )
    fit_seconds = time.time() - t0
    best = max(history, key=lambda r: r["score"])
    threshold, choice = choose_threshold(
        {k[0]: feats[k] for k in feats if k[1] == "single" and k[0] != "train"},
        {k[0]: feats[k] for k in feats if k[1] == "other" and k[0] != "train"},
        {k[0]: ys[k] for k in feats if k[1] == "single" and k[0] != "train"},
        head,
        max_drop=args.max_drop,
        max_family_loss=args.max_family_loss,
    )
    log(
        f"head chosen at epoch {int(best['epoch'])} (valid score {best['score']:.4f}); other threshold "
        f"{threshold:g}: " + ", ".join(f"{k} {v:.4f}" for k, v in choice.items() if isinstance(v, float))
    )

    model = graft(net, head, tensors, graph_name=f"{name}-{args.version}", embedding=args.embedding)
    emb_dim = embedding_dim(tensors, args.embedding)
    model_bytes = model.SerializeToString()
    # parity: the families unchanged, "other" and the embedding as computed here
    from instrunet_core.session import onnx_session

    from . import evaluate as ev

    x = np.asarray(sets.valid["single"].X[: args.parity], np.float32)[..., None]
    p0, pooled0, emb0 = features(net, tensors, x)
    if args.embedding == "timbre":
        emb0 = timbre_embedding(pooled0[:, : tensors.pooled_dim], tensors)
    sess = onnx_session(model_bytes)
    names = [base.output["name"], "other", "embedding"]
    p1, o1, e1 = sess.run(names, {base.input["name"]: x})
    diffs = {
        "families_max_abs_diff": float(np.abs(p1 - p0).max()),
        "other_max_abs_diff": float(np.abs(o1[:, 0] - head(pooled0)).max()),
        "embedding_max_abs_diff": float(np.abs(e1 - emb0).max()),
    }
    agree = float(np.mean(p1.argmax(1) == p0.argmax(1)))
    log("parity on {} windows: {}".format(len(x), ", ".join(f"{k} {v:.3g}" for k, v in diffs.items())))
    if max(diffs.values()) > args.atol or agree < 1.0:
        raise ExportError(
            f"parity failed: {diffs}, top-1 agreement {agree:.2%} (atol {args.atol:g}); nothing written"
        )
    idx = np.linspace(0, len(x) - 1, min(args.references, len(x))).round().astype(int)
    x_ref = x[idx].astype(np.float16)
    y_ref = sess.run(names[:1], {base.input["name"]: x_ref.astype(np.float32)})[0]

    raw = base.to_dict()
    thresholds = {k: v for k, v in (base.thresholds or {}).items() if k != "other"}
    if args.threshold_beta:
        # the family thresholds chosen again, as training.train.choose_thresholds does (valid and
        # dev, single clips and mixtures pooled), by F-beta instead of F1
        preds = {
            split: {
                kind: feats[split, kind][0][:, :F] for kind in ("single", "mix") if (split, kind) in feats
            }
            for split in ("valid", "dev")
        }
        picked = choose_thresholds(preds, sets, beta=args.threshold_beta)
        log(
            f"family thresholds by F{args.threshold_beta:g} on valid and dev: {picked} (the base's: {thresholds})"
        )
        thresholds = picked
    what = (
        "its pooled features averaged over the frequency bands"
        if args.embedding == "timbre"
        else "its dense layer before the output"
    )
    description = (
        f"{base.name} {base.version}'s network unchanged (the same eight outputs"
        + (f"; {raw['description']}" if raw.get("description") else "")
        + "), with an open-set output "
        f"'other' (a {'logistic regression' if not args.hidden else f'{args.hidden}-unit head'} on its pooled "
        f"features, block statistics and input band statistics) and a {emb_dim}-d embedding ({what})"
        + (f"; they replace its own outputs {', '.join(replaced)}" if replaced else "")
    )

    def manifest(metrics: dict[str, Any] | None) -> dict[str, Any]:
        return build_manifest(
            name=name,
            version=args.version,
            task=base.task,
            labels=list(base.labels),
            front_end=raw["front_end"],
            input_shape=list(raw["input"]["shape"]),
            sha256=hashlib.sha256(model_bytes).hexdigest(),
            parity={
                "max_abs_diff": max(diffs.values()),
                **diffs,
                "top1_agreement": agree,
                "n": int(len(x)),
                "atol": args.atol,
                "split": "valid",
                "against": f"{base.name} {base.version} (families, embedding) and the fitted head in numpy (other)",
            },
            exporter={
                **dict(raw.get("exporter") or {}),
                "onnx": onnx.__version__,
                "onnxruntime": ort.__version__,
                "numpy": np.__version__,
                "open_set_head": "training.openhead",
            },
            metrics=metrics,
            training_data=training_data_info(metrics, Path(args.corpus))
            if metrics
            else raw.get("training_data"),
            thresholds=thresholds,
            license=raw.get("license"),
            description=description,
            created=created_timestamp(),
            references=True,
            output_name=base.output["name"],
            other_threshold=threshold,
            embedding_dim=emb_dim,
            source={"name": base.name, "version": base.version, "sha256": base.sha256},
        )

    refs = {"inputs": x_ref, "outputs": y_ref}
    report_dir = Path(args.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)

    def _evaluate(scratch: Path) -> dict[str, Any]:
        write_artifact(
            scratch,
            model_bytes=model_bytes,
            manifest=manifest(None),
            references=refs,
            force=True,
            verify=lambda f: check_artifact(f, atol=args.atol),
        )
        info = {
            "thresholds": {**thresholds, "other": threshold},
            "train_seconds": fit_seconds,
            "epochs_run": len(history),
            "best_epoch": int(best["epoch"]),
            "best_valid_score": best["score"],
            "init": {"source": str(args.base), "frozen": True, "replaced_outputs": replaced},
        }
        t0 = time.time()
        written = _artifact_model(scratch, model)
        metrics = final_report(cfg, base.task, written, info, sets, _corpus_counts(cfg.corpus))
        metrics["model"] = "default"
        metrics["head"] = {
            "hidden": args.hidden,
            "epochs": args.epochs,
            "lr": args.lr,
            "l2": args.l2,
            "input": [tensors.pooled, *(b for b, _ in tensors.blocks), tensors.input],
            "input_dim": tensors.head_dim,
            "embedding": args.embedding,
            "embedding_dim": emb_dim,
            "other_threshold": threshold,
            "threshold_choice": choice,
            "family_thresholds": (
                f"chosen again by F{args.threshold_beta:g} on valid and dev single clips and mixtures"
                if args.threshold_beta
                else f"{base.name} {base.version}'s"
            ),
            "selection": "epoch: valid other windows answered other minus valid instrument windows answered "
            "other (at 0.5); threshold: the most other windows answered other (mean of valid and dev) with the "
            f"balanced accuracy of valid and dev single clips at most {args.max_drop:g} below the base model's "
            f"and no family losing more than {args.max_family_loss:g} of its clips to other",
        }
        if sets.dev:
            metrics["dev"]["neighbours"] = ev.embedding_neighbours(
                written, sets.dev["single"], sets.dev_notes, audio=False
            )
        log(f"evaluated [{time.time() - t0:.0f}s]")
        return metrics

    # evaluate the artifact itself (written to a scratch folder first), then write it with its metrics
    scratch = report_dir / ".artifact"
    try:
        metrics = _evaluate(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write_artifact(
        dest,
        model_bytes=model_bytes,
        manifest=manifest(report_metrics(metrics)),
        references=refs,
        force=args.force,
        verify=lambda f: check_artifact(f, atol=args.atol),
    )
    hist = {"loss": [r["loss"] for r in history], "valid_open_set": [r["score"] for r in history]}
    write_report(report_dir, metrics, hist)
    (report_dir / "head.json").write_text(json.dumps({"history": history, **metrics["head"]}, indent=1))
    log(f"wrote {dest} and {report_dir} [{time.time() - t_start:.0f}s]")
    return metrics


def _summary(m: dict[str, Any]) -> str:
    d, t = m.get("dev") or {}, m.get("test") or {}
    parts = [
        f"valid other answered {m['valid']['other']['answered_other']:.3f}" if "other" in m["valid"] else ""
    ]
    if d:
        parts.append(f"dev balanced accuracy {d['single']['balanced_accuracy']:.4f}")
        parts.append(f"instrument windows answered other {d['single'].get('other_answers', 0.0):.4f}")
        if "other" in d:
            parts.append(f"dev other answered other {d['other']['answered_other']:.4f}")
        if "neighbours" in d:
            parts.append(f"nearest neighbour same family {d['neighbours']['same_family']:.4f}")
    if t:
        parts.append(f"test balanced accuracy {t['single']['balanced_accuracy']:.4f}")
    return "; ".join(p for p in parts if p)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.openhead", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "base", type=Path, help="artifact folder of the family model (log-mel input; see --replace-other)"
    )
    ap.add_argument("--version", required=True, help="version of the new artifact")
    ap.add_argument("--name", help="name of the new artifact (default: the base's)")
    ap.add_argument(
        "--replace-other",
        action="store_true",
        help="a base with its own open-set output: the head's 'other' and embedding replace its own",
    )
    ap.add_argument(
        "--corpus", type=Path, required=True, help="corpus built with --sources (valid and dev others)"
    )
    ap.add_argument("--sources", type=Path, required=True, help="mirror folder of training/sources.lock.json")
    ap.add_argument("--out", type=Path, required=True, help="models folder: writes OUT/<name>/<version>/")
    ap.add_argument("--report-dir", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=Path("cache/examples"))
    ap.add_argument("--hidden", type=int, default=0, help="hidden units of the head (0: logistic regression)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--l2", type=float, default=1e-2)
    ap.add_argument(
        "--max-drop",
        type=float,
        default=0.015,
        help="most the balanced accuracy of valid and dev single clips may fall for the other answers",
    )
    ap.add_argument(
        "--max-family-loss",
        type=float,
        default=0.05,
        help="most share of any family's valid or dev clips that may be answered other",
    )
    ap.add_argument(
        "--embedding",
        choices=EMBEDDINGS,
        default="timbre",
        help="the embedding output: the pooled features averaged over frequency (timbre) or the dense layer",
    )
    ap.add_argument(
        "--threshold-beta",
        type=float,
        default=None,
        help="choose the family thresholds again on valid and dev by F-beta (below 1: precision weighs "
        "more); default: keep the base's",
    )
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--parity", type=int, default=200, help="valid windows of the parity check")
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--references", type=int, default=24, help="windows stored in references.npz")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--force", action="store_true", help="replace an existing artifact")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    args = ap.parse_args(argv)
    from export import ExportError

    try:
        m = run(args, log=lambda s: print(s, flush=True))
    except (ExportError, ValueError) as e:
        print(f"training.openhead: error: {e}", file=sys.stderr)
        return 2
    print(_summary(m), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
