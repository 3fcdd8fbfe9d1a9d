"""A spectrogram network for the condition classifier (an experiment; nothing here ships yet).

The 19 condition features summarise a window in numbers; most aged cues are patterns in time
and frequency (a hum line, hiss between harmonics, beating partials, noisy attacks). This module
trains a small CNN on the family classifier's own log-mel window of each condition clip (built
with ``python -m training.condition build --mel``), and fuses it with the shipped feature
classifier by a log-linear weight:

    p = softmax((a log p_features + (1 - a) log p_spectrogram) / T + c)

``a``, ``T`` and ``c`` (and the healthy prior, as :func:`training.condition.train.train` chooses
it) are chosen on valid only; test and dev are scored once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .data import CLASSES, load
from .report import metrics_of
from .train import MAX_FALSE_ALARM, _calibrated, fit_calibration

__all__ = ["spectro_experiment", "build_cnn"]

#: Channels of the four 3x3 convolution blocks (2x2 max-pooling after the first three).
CHANNELS = (16, 32, 48, 64)


def build_cnn(n_mels: int = 128, frames: int = 128, *, channels: tuple[int, ...] = CHANNELS) -> Any:
    """The spectrogram network: 3x3 convolutions with batch normalisation and ReLU, global average
    and max pooling, dropout, one hidden layer, softmax over :data:`CLASSES`."""
    import keras

    inp = keras.Input((n_mels, frames, 1), name="mel")
    x = inp
    for i, ch in enumerate(channels):
        x = keras.layers.Conv2D(ch, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        if i < len(channels) - 1:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling2D()(x), keras.layers.GlobalMaxPooling2D()(x)]
    )
    x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    x = keras.layers.Dropout(0.2)(x)
    out = keras.layers.Dense(len(CLASSES), activation="softmax")(x)
    return keras.Model(inp, out, name="condition_spectrogram")


def _mel(d: dict[str, np.ndarray]) -> np.ndarray:
    if "mel" not in d:
        raise SystemExit("this condition corpus has no log-mel windows: build it with --mel")
    return d["mel"].astype(np.float32)[..., None]


def _scores(d: dict[str, np.ndarray], p: np.ndarray) -> dict[str, Any]:
    keep = ~d["clean"]
    m = metrics_of(d["y"][keep], p[keep])
    row = {
        "accuracy": round(m["accuracy"], 4),
        "aged_recall": round(m["per_class"]["moderately_aged"]["recall"], 4),
        "broken_recall": round(m["per_class"]["broken_noisy"]["recall"], 4),
        "false_alarm_healthy": round(m["false_alarm_rate"], 4),
    }
    if d["clean"].any():
        row["false_alarm_clean"] = round(float(np.mean(p[d["clean"]].argmax(1) != 0)), 4)
    return row


def _recording_false_alarms(d: dict[str, np.ndarray], p: np.ndarray) -> float:
    """Share of healthy recordings (clean copies included) whose averaged verdict is not healthy."""
    ids = d["recording"]
    uniq, inv = np.unique(ids, return_inverse=True)
    mean = np.zeros((len(uniq), p.shape[1]))
    np.add.at(mean, inv, p)
    y = np.zeros(len(uniq), int)
    y[inv] = d["y"]
    return float(np.mean(mean[y == 0].argmax(1) != 0))


def _prior(
    valid: dict[str, np.ndarray],
    raw: np.ndarray,
    temperature: float,
    offsets: np.ndarray,
    rec: dict[str, np.ndarray] | None,
    rec_raw: np.ndarray | None,
) -> tuple[float, str]:
    """The smallest healthy log prior odds (0-6, steps of 0.125) flagging at most
    :data:`MAX_FALSE_ALARM` of valid's healthy recordings (windows when there are none)."""
    for b in np.arange(0.0, 6.001, 0.125):
        c = offsets + np.array([b, 0.0, 0.0])
        if rec is not None and rec_raw is not None:
            fa = _recording_false_alarms(rec, _calibrated(rec_raw, temperature, c))
        else:
            fa = float(np.mean(_calibrated(raw, temperature, c)[valid["y"] == 0].argmax(1) != 0))
        if fa <= MAX_FALSE_ALARM:
            break
    return float(b), "valid recordings" if rec is not None else "valid windows"


def spectro_experiment(
    data: Path, out: Path, report: Path, *, epochs: int = 30, patience: int = 8, seed: int = 0
) -> dict[str, Any]:
    """Train the spectrogram network (best valid accuracy), fuse it with the shipped feature
    classifier, and score the feature classifier, the network and the fusion side by side."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from instrunet_condition.classifier import load_condition_model

    keras.utils.set_random_seed(seed)
    splits = {s: load(data, s) for s in ("train", "valid", "test", "dev")}
    tr, va = splits["train"], splits["valid"]
    recs = {
        s: load(data, f"{s}_recordings")
        for s in ("valid", "test", "dev")
        if (data / f"{s}_recordings.npz").is_file()
    }
    recs = {s: r for s, r in recs.items() if "mel" in r}
    model = build_cnn(*tr["mel"].shape[1:])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    x_train = _mel(tr)

    def predict(d: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(model.predict(_mel(d), batch_size=256, verbose=0), np.float32)

    best, best_w, best_ep, hist, t0 = -1.0, None, 0, [], time.time()
    for ep in range(1, epochs + 1):
        model.fit(x_train, tr["y"], batch_size=64, epochs=1, verbose=0, shuffle=True)
        acc = float(np.mean(predict(va).argmax(1) == va["y"]))
        hist.append(acc)
        print(f"epoch {ep}: valid accuracy {acc:.4f} [{time.time() - t0:.0f} s]", flush=True)
        if acc > best:
            best, best_w, best_ep = acc, model.get_weights(), ep
        if ep - best_ep >= patience:
            break
    model.set_weights(best_w)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "condition_spectrogram.keras")

    shipped = load_condition_model()
    names = ("valid", "test", "dev")
    p_net = {s: predict(splits[s]) for s in names} | {f"{s}_rec": predict(r) for s, r in recs.items()}
    p_feat = {s: shipped.predict(splits[s]["v"]) for s in names} | {
        f"{s}_rec": shipped.predict(r["v"]) for s, r in recs.items()
    }

    def fused(a: float, key: str) -> np.ndarray:
        z = a * np.log(np.maximum(p_feat[key], 1e-9)) + (1 - a) * np.log(np.maximum(p_net[key], 1e-9))
        q = np.exp(z - z.max(1, keepdims=True))
        return q / q.sum(1, keepdims=True)

    def logloss(p: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-9))))

    grid = [round(a, 2) for a in np.arange(0.0, 1.001, 0.1)]
    weight = min(grid, key=lambda a: logloss(fused(a, "valid"), va["y"]))
    rows: dict[str, Any] = {}
    for what, a in (("features (shipped 2.0.0)", 1.0), ("spectrogram network", 0.0), ("fused", weight)):
        raw = {k: fused(a, k) for k in p_net}
        temperature, offsets = fit_calibration(raw["valid"], va["y"])
        b, on = _prior(va, raw["valid"], temperature, offsets, recs.get("valid"), raw.get("valid_rec"))
        entry: dict[str, Any] = {"weight_of_features": a, "temperature": round(temperature, 4)}
        for label, c in (("calibrated, no prior", offsets), ("with the healthy prior", offsets + [b, 0, 0])):
            entry[label] = {s: _scores(splits[s], _calibrated(raw[s], temperature, c)) for s in names}
            for s in recs:
                entry[label][s]["recordings_false_alarm"] = round(
                    _recording_false_alarms(recs[s], _calibrated(raw[f"{s}_rec"], temperature, c)), 4
                )
        entry["healthy_prior"] = {"log_odds": b, "chosen_on": on, "max_false_alarm": MAX_FALSE_ALARM}
        rows[what] = entry
    result = {
        "what": "the condition classifier's 19 features (shipped 2.0.0) beside a CNN on the family "
        "classifier's log-mel window, and their log-linear fusion; weight, calibration and prior "
        "chosen on valid only",
        "data": str(data),
        "network": {
            "channels": list(CHANNELS),
            "parameters": int(model.count_params()),
            "best_epoch": best_ep,
            "valid_accuracy_by_epoch": hist,
            "train_seconds": round(time.time() - t0, 1),
        },
        "fusion_weight_grid": grid,
        "fusion_weight": weight,
        "models": rows,
        "classes": list(CLASSES),
    }
    report.mkdir(parents=True, exist_ok=True)
    (report / "spectro.json").write_text(json.dumps(result, indent=1))
    return result
