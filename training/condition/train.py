"""The condition classifier: a small Keras MLP on the condition features, chosen on valid
(held-out instruments), with its standardisation folded in for export."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .data import CLASSES, SPLITS, SR, load
from .report import by_degradation, example_verdicts, metrics_of, write_report

__all__ = ["train"]


def _fold_normalisation(model: Any, norm: Any) -> Any:
    """The same network with the standardisation folded into the first dense layer.

    ``Dense(W, b)((x - mean) / std) == Dense(W / std, b - (mean / std) @ W)(x)``; the folded
    model has plain weights only (tf2onnx takes Keras 3's adapted ``Normalization`` constants
    for graph inputs).
    """
    import keras

    mean = np.asarray(norm.mean, np.float64).reshape(-1)
    std = np.sqrt(np.maximum(np.asarray(norm.variance, np.float64).reshape(-1), 1e-12))
    layers = [layer for layer in model.layers if layer is not norm]
    first = layers[0]
    w, b = (np.asarray(a, np.float64) for a in first.get_weights())
    inp = keras.Input((mean.size,), name="features")
    x = inp
    new_layers = []
    for layer in layers:
        clone = layer.__class__.from_config(layer.get_config())
        x = clone(x)
        new_layers.append((clone, layer))
    folded = keras.Model(inp, x, name=model.name)
    for clone, layer in new_layers:
        if layer is first:
            clone.set_weights(
                [(w / std[:, None]).astype(np.float32), (b - (mean / std) @ w).astype(np.float32)]
            )
        else:
            clone.set_weights(layer.get_weights())
    return folded


def _healthy_bias(p: np.ndarray, y: np.ndarray, *, max_false_alarm: float = 0.05) -> dict[str, Any]:
    """The log-odds shift towards ``healthy`` that maximises valid accuracy with at most 5 % false alarms.

    Chosen on valid (held-out instruments) only; 0 when the unshifted model already meets the
    limit with the best accuracy. If no shift meets it, the smallest one with the fewest false alarms.
    """
    lp = np.log(np.maximum(p, 1e-9))
    rows = []
    for b in np.arange(0.0, 6.01, 0.25):
        pred = (lp + np.array([b, 0.0, 0.0])).argmax(1)
        fa = float(np.mean(pred[y == 0] != 0)) if np.any(y == 0) else 0.0
        rows.append((float(b), float(np.mean(pred == y)), fa))
    ok = [r for r in rows if r[2] <= max_false_alarm]
    b, acc, fa = max(ok, key=lambda r: (r[1], -r[0])) if ok else min(rows, key=lambda r: (r[2], r[0]))
    return {
        "log_bias": b,
        "valid_accuracy": acc,
        "valid_false_alarm_rate": fa,
        "rule": f"max valid accuracy with valid false-alarm rate <= {max_false_alarm}",
    }


def _soundfonts(corpus: Path) -> list[str]:
    try:
        meta = json.loads((corpus / "corpus.json").read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return [f"{f['key']} ({f.get('license')})" for f in meta.get("soundfonts", [])]


def train(
    data: Path,
    out: Path,
    report: Path,
    *,
    version: str = "1.0.0",
    epochs: int = 150,
    seed: int = 0,
    examples: Path = Path("examples"),
    patience: int = 30,
    width: int = 64,
) -> dict[str, Any]:
    """Fit the MLP, keep the epoch with the best valid accuracy, evaluate, write the report."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from instrunet_condition.features import FEATURE_NAMES

    keras.utils.set_random_seed(seed)
    sets = {s: load(data, s) for s in SPLITS}
    tr, va, te = sets["train"], sets["valid"], sets["test"]
    norm = keras.layers.Normalization(name="standardise")
    norm.adapt(tr["v"])
    model = keras.Sequential(
        [
            keras.Input((len(FEATURE_NAMES),), name="features"),
            norm,
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(len(CLASSES), activation="softmax"),
        ],
        name="condition",
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model(np.asarray(x, np.float32), training=False), dtype=np.float32)

    hist: dict[str, list[float]] = {"loss": [], "valid_loss": [], "valid_accuracy": []}
    best, best_w, best_ep, t0 = -1.0, None, 0, time.time()
    for ep in range(1, epochs + 1):
        h = model.fit(tr["v"], tr["y"], batch_size=64, epochs=1, verbose=0, shuffle=True)
        pv = predict(va["v"])
        vl = float(np.mean(-np.log(np.maximum(pv[np.arange(len(pv)), va["y"]], 1e-7))))
        acc = float(np.mean(pv.argmax(1) == va["y"]))
        hist["loss"].append(float(h.history["loss"][0]))
        hist["valid_loss"].append(vl)
        hist["valid_accuracy"].append(acc)
        if acc > best:
            best, best_w, best_ep = acc, model.get_weights(), ep
        if ep - best_ep >= patience:
            break
    model.set_weights(best_w)
    bias = _healthy_bias(predict(va["v"]), va["y"])
    last = model.layers[-1]
    w_last, b_last = last.get_weights()
    b_last[0] += bias["log_bias"]  # softmax(z + b e0): p(healthy) scaled by exp(b), renormalised
    last.set_weights([w_last, b_last])
    before = predict(va["v"])
    model = _fold_normalisation(model, norm)
    fold_diff = float(np.abs(predict(va["v"]) - before).max())
    if fold_diff > 1e-4:
        raise SystemExit(f"folding the standardisation changed valid outputs by {fold_diff:.3g}")
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "condition.keras")
    np.savez_compressed(out / "valid_inputs.npz", x=va["v"], names=np.asarray(FEATURE_NAMES))

    pv, pt = predict(va["v"]), predict(te["v"])
    base = float(np.mean(pv.argmax(1) == va["y"]))
    rng = np.random.default_rng(seed)
    importance = {}
    for j, n in enumerate(FEATURE_NAMES):  # permutation importance on valid
        xs = va["v"].copy()
        xs[:, j] = rng.permutation(xs[:, j])
        importance[n] = round(base - float(np.mean(predict(xs).argmax(1) == va["y"])), 4)
    cond = json.loads((data / "condition.json").read_text())
    clean = (tr["y"] == 0) & (tr["mix"] == 1)
    healthy_median = {n: float(np.median(tr["x"][clean, j])) for j, n in enumerate(FEATURE_NAMES)}
    single = te["mix"] == 1
    test = metrics_of(te["y"], pt)
    metrics = {
        "model": "condition",
        "version": version,
        "task": "multiclass",
        "labels": list(CLASSES),
        "features": list(FEATURE_NAMES),
        "parameters": int(model.count_params()),
        "train_seconds": round(time.time() - t0, 1),
        "epochs_run": len(hist["loss"]),
        "best_epoch": best_ep,
        "selection": "epoch with the best valid accuracy (valid = held-out instruments); test never used to choose",
        "config": {
            "seed": seed,
            "epochs": epochs,
            "patience": patience,
            "batch_size": 64,
            "width": width,
            "data": str(data),
        },
        "condition_corpus": cond,
        "corpus": {"soundfonts": _soundfonts(Path(cond["corpus"]))},
        "healthy_bias": bias,
        "valid": metrics_of(va["y"], pv),
        "test": test,
        "test_by_degradation": by_degradation(te, pt),
        "false_alarm": {
            "test_clean_notes": {
                "rate": test["false_alarm_rate"],
                "n": int((te["y"] == 0).sum()),
                "what": "healthy test clips (clean notes, 30% mixtures, benign room/level/noise "
                "floor) called aged or broken",
            },
            "test_clean_single_notes": {
                "rate": float(np.mean(pt[(te["y"] == 0) & single].argmax(1) != 0)),
                "n": int(((te["y"] == 0) & single).sum()),
            },
            "examples": example_verdicts(examples, predict),
        },
        "permutation_importance_valid": importance,
        "features_manifest": {
            "extractor": "instrunet_condition.features.condition_features",
            "transform": "instrunet_condition.features.feature_vector",
            "sample_rate": SR,
            "chunk_seconds": 4.0,
            "healthy_median": healthy_median,
        },
    }
    write_report(report, metrics, hist)
    return metrics
