"""The condition classifier: a small Keras MLP on the condition features, chosen and calibrated on
valid (held-out SoundFont programs), with its standardisation and calibration folded in for export."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .data import CLASSES, SR, load
from .report import (
    by_degradation,
    calibration_of,
    example_verdicts,
    metrics_of,
    recording_metrics,
    write_report,
)

__all__ = ["train", "fit_calibration", "reference_of"]

#: The most false alarms (healthy called aged or broken) allowed on valid's healthy clips.
MAX_FALSE_ALARM = 0.05


def _fold(model: Any, norm: Any, temperature: float, offsets: np.ndarray) -> Any:
    """The same network with the standardisation folded into the first dense layer and the
    calibration into the last.

    ``Dense(W, b)((x - mean) / std) == Dense(W / std, b - (mean / std) @ W)(x)``, and
    ``softmax(log softmax(z) / T + c) == softmax(z / T + c)``, so the last layer becomes
    ``Dense(W / T, b / T + c)``; the folded model has plain weights only (tf2onnx takes Keras
    3's adapted ``Normalization`` constants for graph inputs).
    """
    import keras

    mean = np.asarray(norm.mean, np.float64).reshape(-1)
    std = np.sqrt(np.maximum(np.asarray(norm.variance, np.float64).reshape(-1), 1e-12))
    layers = [layer for layer in model.layers if layer is not norm]
    first, last = layers[0], layers[-1]
    inp = keras.Input((mean.size,), name="features")
    x = inp
    pairs = []
    for layer in layers:
        clone = layer.__class__.from_config(layer.get_config())
        x = clone(x)
        pairs.append((clone, layer))
    folded = keras.Model(inp, x, name=model.name)
    for clone, layer in pairs:
        if not layer.get_weights():
            continue  # dropout
        w, b = (np.asarray(a, np.float64) for a in layer.get_weights())
        if layer is first:
            w, b = w / std[:, None], b - (mean / std) @ w
        if layer is last:
            w, b = w / temperature, b / temperature + offsets
        clone.set_weights([w.astype(np.float32), b.astype(np.float32)])
    return folded


def _family_noise(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training inputs whose family one-hot is blanked for 10 % of the rows and replaced by another
    family for 10 %: at run time the family comes from the family classifier, which is sometimes
    wrong or names none of the eight."""
    from instrunet_condition.features import FAMILY_INPUTS

    v = v.copy()
    k = len(FAMILY_INPUTS)
    u = rng.random(len(v))
    v[u < 0.1, -k:] = 0.0
    wrong = (u >= 0.1) & (u < 0.2)
    v[wrong, -k:] = np.eye(k, dtype=v.dtype)[rng.integers(0, k, int(wrong.sum()))]
    return v


def fit_calibration(p: np.ndarray, y: np.ndarray, *, steps: int = 3000) -> tuple[float, np.ndarray]:
    """Temperature ``T`` and class offsets ``c`` (``c[0] = 0``) minimising the log-loss of
    ``softmax(log p / T + c)`` against ``y`` (gradient descent; chosen on valid only)."""
    lp = np.log(np.maximum(p, 1e-9))
    a, c = 0.0, np.zeros(p.shape[1])  # T = exp(a)
    onehot = np.eye(p.shape[1])[y]
    lr = 0.1
    for _ in range(steps):
        z = lp * np.exp(-a) + c
        q = np.exp(z - z.max(1, keepdims=True))
        q /= q.sum(1, keepdims=True)
        g = (q - onehot) / len(y)
        ga = float(np.sum(g * (-lp * np.exp(-a))))
        gc = g.sum(0)
        gc[0] = 0.0
        a -= lr * ga
        c -= lr * gc
    return float(np.exp(a)), c


def _calibrated(p: np.ndarray, temperature: float, offsets: np.ndarray) -> np.ndarray:
    z = np.log(np.maximum(p, 1e-9)) / temperature + offsets
    q = np.exp(z - z.max(1, keepdims=True))
    return q / q.sum(1, keepdims=True)


def _healthy_prior(
    rec: dict[str, np.ndarray] | None,
    rec_raw: np.ndarray | None,
    temperature: float,
    offsets: np.ndarray,
    windows: dict[str, np.ndarray],
    windows_cal: np.ndarray,
) -> dict[str, Any]:
    """The smallest log prior odds ``b`` (0 to 4 in steps of 0.125) for healthy that flags at most
    :data:`MAX_FALSE_ALARM` of valid's healthy recordings (their clean copies included), from the
    recordings' averaged verdicts; valid's single windows when there are no recordings."""
    from .report import recording_metrics

    rows = []
    for b in np.arange(0.0, 4.001, 0.125):
        c = offsets + np.array([b, 0.0, 0.0])
        if rec is not None and rec_raw is not None:
            keep = rec["y"] == 0
            m = recording_metrics(
                {k: v[keep] for k, v in rec.items() if k != "names"},
                _calibrated(rec_raw[keep], temperature, c),
            )
            healthy = {k: v[~rec["clean"]] for k, v in rec.items() if k != "names"}
            mh = recording_metrics(healthy, _calibrated(rec_raw[~rec["clean"]], temperature, c))
            fa = max(m["false_alarm_rate"] or 0.0, m["false_alarm_clean"]["rate"])
            rows.append({"log_odds": float(b), "false_alarm": fa, "accuracy": mh["accuracy"]})
        else:
            lp = np.log(np.maximum(windows_cal, 1e-9)) + [b, 0.0, 0.0]
            pred = lp.argmax(1)
            fa = float(np.mean(pred[windows["y"] == 0] != 0))
            rows.append(
                {"log_odds": float(b), "false_alarm": fa, "accuracy": float(np.mean(pred == windows["y"]))}
            )
    ok = [r for r in rows if r["false_alarm"] <= MAX_FALSE_ALARM]
    pick = ok[0] if ok else min(rows, key=lambda r: r["false_alarm"])
    return {
        **pick,
        "on": "valid recordings" if rec is not None else "valid windows",
        "rule": f"the smallest healthy log prior odds with at most {MAX_FALSE_ALARM:.0%} of healthy valid recordings flagged",
        "means": f"healthy taken as {np.exp(pick['log_odds']):.2f} times as common as each kind of damage",
        "grid": rows,
    }


def reference_of(d: dict[str, np.ndarray]) -> dict[str, dict[str, dict[str, float]]]:
    """Per class the median of each feature over the training clips, and for clean (healthy)
    clips the 5th and 95th percentiles: the clean reference range explanations quote."""
    from instrunet_condition.features import FEATURE_NAMES

    ref: dict[str, dict[str, dict[str, float]]] = {}
    for k, c in enumerate(CLASSES):
        x = d["x"][d["y"] == k]
        ref[c] = {"median": {n: float(np.median(x[:, j])) for j, n in enumerate(FEATURE_NAMES)}}
        if c == "healthy":
            ref[c]["low"] = {n: float(np.percentile(x[:, j], 5)) for j, n in enumerate(FEATURE_NAMES)}
            ref[c]["high"] = {n: float(np.percentile(x[:, j], 95)) for j, n in enumerate(FEATURE_NAMES)}
    return ref


def train(
    data: Path,
    out: Path,
    report: Path,
    *,
    version: str = "2.0.0",
    epochs: int = 200,
    seed: int = 0,
    examples: Path = Path("examples"),
    patience: int = 30,
    width: int = 64,
    fraction: float = 1.0,
) -> dict[str, Any]:
    """Fit the MLP, keep the epoch with the best valid accuracy, calibrate on valid, evaluate on
    test and dev, write the report."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from instrunet_condition.features import FEATURE_NAMES, INPUT_NAMES

    keras.utils.set_random_seed(seed)
    tr, va, te, dv = (load(data, s) for s in ("train", "valid", "test", "dev"))
    if fraction < 1.0:  # a seeded share of the train notes, all clips of each (a learning curve)
        notes = np.unique(tr["note"])
        keep = np.random.default_rng(seed).permutation(notes)[: max(1, int(round(fraction * notes.size)))]
        m = np.isin(tr["note"], keep)
        tr = {k: (v[m] if k != "names" else v) for k, v in tr.items()}
    x_train = _family_noise(tr["v"], np.random.default_rng(seed))
    norm = keras.layers.Normalization(name="standardise")
    norm.adapt(x_train)
    model = keras.Sequential(
        [
            keras.Input((len(INPUT_NAMES),), name="features"),
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
        h = model.fit(x_train, tr["y"], batch_size=64, epochs=1, verbose=0, shuffle=True)
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
    raw = {s: predict(d["v"]) for s, d in (("valid", va), ("test", te), ("dev", dv))}
    temperature, offsets = fit_calibration(raw["valid"], va["y"])
    cal = {s: _calibrated(p, temperature, offsets) for s, p in raw.items()}
    # The prior: how much more common healthy recordings are than each kind of damage, chosen on
    # valid's whole recordings (what a user gets a verdict on) for at most MAX_FALSE_ALARM of
    # healthy ones flagged.
    va_rec = load(data, "valid_recordings") if (data / "valid_recordings.npz").is_file() else None
    va_rec_raw = predict(va_rec["v"]) if va_rec is not None else None
    prior = _healthy_prior(va_rec, va_rec_raw, temperature, offsets, va, cal["valid"])
    shipped = offsets + np.array([prior["log_odds"], 0.0, 0.0])
    final = {s: _calibrated(p, temperature, shipped) for s, p in raw.items()}
    calibration = {
        "temperature": temperature,
        "offsets": dict(zip(CLASSES, offsets.round(4).tolist(), strict=True)),
        "how": "softmax(log p / T + c), T and c (c_healthy = 0) minimising the valid log-loss",
        "healthy_prior": prior,
        "max_false_alarm": MAX_FALSE_ALARM,
        "before": {s: calibration_of(d["y"], raw[s]) for s, d in (("valid", va), ("test", te), ("dev", dv))},
        "after": {s: calibration_of(d["y"], cal[s]) for s, d in (("valid", va), ("test", te), ("dev", dv))},
        "shipped": {
            s: calibration_of(d["y"], final[s]) for s, d in (("valid", va), ("test", te), ("dev", dv))
        },
    }
    offsets = shipped
    before = predict(va["v"])
    model = _fold(model, norm, temperature, offsets)
    fold_diff = float(np.abs(predict(va["v"]) - _calibrated(before, temperature, offsets)).max())
    if fold_diff > 1e-4:
        raise SystemExit(f"folding standardisation and calibration changed valid outputs by {fold_diff:.3g}")
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "condition.keras")
    np.savez_compressed(out / "valid_inputs.npz", x=va["v"], names=np.asarray(INPUT_NAMES))

    pv, pt, pd = predict(va["v"]), predict(te["v"]), predict(dv["v"])
    base = float(np.mean(pv.argmax(1) == va["y"]))
    rng = np.random.default_rng(seed)
    importance = {}
    for j, n in enumerate(FEATURE_NAMES):  # permutation importance on valid (the audio features)
        xs = va["v"].copy()
        xs[:, j] = rng.permutation(xs[:, j])
        importance[n] = round(base - float(np.mean(predict(xs).argmax(1) == va["y"])), 4)
    cond = json.loads((data / "condition.json").read_text())

    def scored(d: dict[str, np.ndarray], p: np.ndarray) -> dict[str, Any]:
        keep = ~d["clean"]  # the clean copies only count as false alarms
        return metrics_of(d["y"][keep], p[keep])

    def false_alarms(d: dict[str, np.ndarray], p: np.ndarray, mask: np.ndarray, what: str) -> dict[str, Any]:
        return {
            "rate": float(np.mean(p[mask].argmax(1) != 0)) if mask.any() else None,
            "n": int(mask.sum()),
            "what": what,
        }

    recordings = {}
    for split in ("valid", "test", "dev"):
        if (data / f"{split}_recordings.npz").is_file():
            r = load(data, f"{split}_recordings")
            recordings[split] = recording_metrics(r, predict(r["v"]))
    test = scored(te, pt)
    dev = scored(dv, pd)
    per_source = {}
    for src in sorted(set(dv["source"].tolist())):
        m = dv["source"] == src
        per_source[src] = {
            "metrics": scored({k: v[m] for k, v in dv.items() if k != "names"}, pd[m]),
            "false_alarm_clean": false_alarms(dv, pd, m & dv["clean"], "clean copies")["rate"],
        }
    metrics = {
        "model": "condition",
        "version": version,
        "task": "multiclass",
        "labels": list(CLASSES),
        "features": list(FEATURE_NAMES),
        "inputs": list(INPUT_NAMES),
        "parameters": int(model.count_params()),
        "train_seconds": round(time.time() - t0, 1),
        "epochs_run": len(hist["loss"]),
        "best_epoch": best_ep,
        "selection": "epoch with the best valid accuracy and the calibration, both on valid (held-out "
        "SoundFont programs); test and dev never used to choose",
        "config": {
            "seed": seed,
            "epochs": epochs,
            "patience": patience,
            "batch_size": 64,
            "width": width,
            "fraction": fraction,
            "data": str(data),
        },
        "condition_corpus": cond,
        "calibration": calibration,
        "valid": metrics_of(va["y"], pv),
        "test": test,
        "dev": dev,
        "dev_by_source": per_source,
        "train_fit": metrics_of(tr["y"], predict(tr["v"])),
        "recordings": recordings,
        "test_by_degradation": by_degradation(te, pt),
        "dev_by_degradation": by_degradation(dv, pd),
        "false_alarm": {
            "test_healthy": false_alarms(
                te, pt, (te["y"] == 0) & ~te["clean"], "healthy test clips (mixtures, benign chain)"
            ),
            "test_clean": false_alarms(
                te, pt, te["clean"], "clean test renders (TimGM6mb windows, nothing added)"
            ),
            "dev_healthy": false_alarms(
                dv,
                pd,
                (dv["y"] == 0) & ~dv["clean"],
                "healthy dev clips (real recordings, mixtures, benign chain)",
            ),
            "dev_clean_real": false_alarms(
                dv, pd, dv["clean"], "clean real recordings (dev libraries' windows, nothing added)"
            ),
            "examples": example_verdicts(examples, predict),
        },
        "permutation_importance_valid": importance,
        "features_manifest": {
            "extractor": "instrunet_condition.features.condition_features",
            "transform": "instrunet_condition.features.feature_vector",
            "sample_rate": SR,
            "window_samples": int(cond.get("clip_samples", 65024)),
            "reference": reference_of(tr),
        },
    }
    write_report(report, metrics, hist)
    return metrics
