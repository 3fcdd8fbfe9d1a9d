"""Classification metrics in numpy (no scikit-learn): the numbers every report quotes."""

from __future__ import annotations

from typing import Any

import numpy as np

from instrunet_core.labels import FAMILIES

__all__ = ["multiclass_metrics", "multilabel_metrics", "pick_thresholds"]


def multiclass_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...] = FAMILIES
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, per-class precision/recall/F1 and confusion counts.

    ``confusion[i][j]`` counts notes of true class ``i`` predicted as ``j``. Classes absent from
    ``y_true`` are left out of the balanced accuracy and macro averages.
    """
    k = len(labels)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    support = cm.sum(1)
    predicted = cm.sum(0)
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "balanced_accuracy": float(np.nanmean(recall[present])) if present.any() else 0.0,
        "macro_f1": float(np.mean(f1[present])) if present.any() else 0.0,
        "per_class": {
            lab: {
                "precision": float(precision[i]),
                "recall": float(recall[i]) if present[i] else None,
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, lab in enumerate(labels)
        },
        "confusion": cm.tolist(),
    }


def multilabel_metrics(y_true: np.ndarray, scores: np.ndarray, thresholds: Any) -> dict[str, Any]:
    """Micro/macro F1, exact-match ratio and per-label precision/recall of thresholded scores."""
    pred = scores >= np.asarray(thresholds)
    true = y_true > 0.5
    tp = (pred & true).sum(0).astype(float)
    fp = (pred & ~true).sum(0).astype(float)
    fn = (~pred & true).sum(0).astype(float)
    micro_p = tp.sum() / max(tp.sum() + fp.sum(), 1)
    micro_r = tp.sum() / max(tp.sum() + fn.sum(), 1)
    micro_f1 = 2 * micro_p * micro_r / max(micro_p + micro_r, 1e-12)
    p = tp / np.maximum(tp + fp, 1)
    r = tp / np.maximum(tp + fn, 1)
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
    return {
        "micro_f1": float(micro_f1),
        "micro_precision": float(micro_p),
        "micro_recall": float(micro_r),
        "macro_f1": float(f1.mean()),
        "exact_match": float(np.mean(np.all(pred == true, axis=1))),
        "per_label": {
            lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i])}
            for i, lab in enumerate(FAMILIES)
        },
    }


def f_beta(tp: int, fp: int, fn: int, beta: float = 1.0) -> float:
    """F-beta from counts (0 when nothing is right): ``beta`` < 1 weighs precision more."""
    b2 = beta * beta
    return float((1 + b2) * tp / max((1 + b2) * tp + fp + b2 * fn, 1))


def pick_thresholds(
    y_true: np.ndarray,
    scores: np.ndarray,
    grid: np.ndarray | None = None,
    *,
    beta: float = 1.0,
    higher_on_ties: bool = False,
) -> list[float]:
    """Per-label presence threshold maximising that label's F1 (call it on validation data only),
    or its F-beta: ``beta`` < 1 weighs precision more (a false alarm costs ``1 / beta**2`` misses).
    Of thresholds that tie, the lowest is kept, or the highest with ``higher_on_ties``."""
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta}")
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2) if grid is None else grid
    out = []
    for j in range(y_true.shape[1]):
        t = y_true[:, j] > 0.5
        best, best_f = 0.5, -1.0
        for g in grid:
            pr = scores[:, j] >= g
            f = f_beta(int(np.sum(pr & t)), int(np.sum(pr & ~t)), int(np.sum(~pr & t)), beta)
            if f > best_f + 1e-12 or (higher_on_ties and f >= best_f - 1e-12):
                best, best_f = float(g), f
        out.append(best)
    return out
