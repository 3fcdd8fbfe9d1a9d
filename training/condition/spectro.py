"""The spectrogram networks fused into the condition classifier (condition 3.0.0 and later).

The 19 condition features summarise a window in numbers; most aged cues are patterns in time
and frequency (a hum line, hiss between harmonics, beating partials, noisy attacks). This module
trains a small CNN on the family classifier's own log-mel window of each condition clip (built
with ``python -m training.condition build --mel``), and fuses it with the shipped feature
classifier by a log-linear weight:

    p = softmax((a log p_features + (1 - a) log p_spectrogram) / T + c)

``a``, ``T`` and ``c`` (and the healthy prior, as :func:`training.condition.train.train` chooses
it) are chosen on valid only; test and dev are scored once. :func:`ensemble_experiment` averages
trained networks into one (condition 3.1.0: three seeds); :func:`package_fused` writes the
shipped artifact.
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

__all__ = ["spectro_experiment", "ensemble_experiment", "build_cnn", "build_ensemble", "export_report"]

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


def _fuse(p_feat: np.ndarray, p_net: np.ndarray, a: float) -> np.ndarray:
    """The runtime's fusion with weight ``a``, before calibration (T = 1, no offsets)."""
    from instrunet_condition.classifier import fused_probabilities

    return fused_probabilities(p_feat, p_net, a, 1.0, np.zeros(len(CLASSES)))


def _logloss(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-9))))


#: The fusion weights tried (the features' share).
WEIGHTS = tuple(round(float(a), 2) for a in np.arange(0.0, 1.001, 0.1))


def choose_fusion(
    valid: dict[str, np.ndarray],
    p_feat: np.ndarray,
    p_net: np.ndarray,
    *,
    weight: float | None = None,
    rec: dict[str, np.ndarray] | None = None,
    rec_feat: np.ndarray | None = None,
    rec_net: np.ndarray | None = None,
) -> dict[str, Any]:
    """On valid only: the features' weight (:data:`WEIGHTS`, lowest valid log-loss) unless given,
    then the calibration (:func:`fit_calibration`) and the healthy prior (:func:`_prior`, on
    valid's recordings when given). Returns ``weight``, ``temperature``, ``offsets`` (the prior
    added to the healthy offset), ``calibration_offsets`` (without it), ``healthy_prior``."""
    y = valid["y"]
    if weight is None:
        weight = min(WEIGHTS, key=lambda a: _logloss(_fuse(p_feat, p_net, a), y))
    raw = _fuse(p_feat, p_net, weight)
    temperature, offsets = fit_calibration(raw, y)
    rec_raw = _fuse(rec_feat, rec_net, weight) if rec_feat is not None and rec_net is not None else None
    b, on = _prior(valid, raw, temperature, offsets, rec if rec_raw is not None else None, rec_raw)
    return {
        "weight": float(weight),
        "temperature": float(temperature),
        "calibration_offsets": [float(v) for v in offsets],
        "offsets": [float(v) for v in offsets + np.array([b, 0.0, 0.0])],
        "healthy_prior": {"log_odds": b, "chosen_on": on, "max_false_alarm": MAX_FALSE_ALARM},
    }


def _scored(
    splits: dict[str, dict[str, np.ndarray]],
    recs: dict[str, dict[str, np.ndarray]],
    p: dict[str, tuple[np.ndarray, np.ndarray]],
    weight: float,
    temperature: float,
    offsets: Any,
) -> dict[str, Any]:
    """Each split's scores (:func:`_scores`) under one fusion, with its healthy recordings'
    false alarms where it has recordings; ``p[key] = (p_features, p_network)``, keys the split
    names and ``<split>_rec``."""
    from instrunet_condition.classifier import fused_probabilities  # the runtime's own formula

    out: dict[str, Any] = {}
    for s_, d in splits.items():
        out[s_] = _scores(d, fused_probabilities(*p[s_], weight, temperature, offsets))
        if s_ in recs:
            q = fused_probabilities(*p[f"{s_}_rec"], weight, temperature, offsets)
            out[s_]["recordings_false_alarm"] = round(_recording_false_alarms(recs[s_], q), 4)
    return out


def _training_data(
    data: Path, names: tuple[str, ...] = ("train", "valid", "test", "dev")
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """The splits ``names`` and the valid/test/dev recordings built with ``--mel``."""
    splits = {s: load(data, s) for s in names}
    recs = {
        s: load(data, f"{s}_recordings")
        for s in ("valid", "test", "dev")
        if (data / f"{s}_recordings.npz").is_file()
    }
    return splits, {s: r for s, r in recs.items() if "mel" in r}


def _keras_predict(model: Any) -> Any:
    def predict(d: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(model.predict(_mel(d), batch_size=256, verbose=0), np.float32)

    return predict


def features_predictor(path: Path | None) -> tuple[Any, str]:
    """The feature classifier a network is fused with and its name in reports: shipped 2.0.0
    (``None``), a condition artifact folder, or a ``condition.keras`` from ``train`` (its
    standardisation, calibration and prior folded in, as an artifact's are)."""
    from instrunet_condition.classifier import MODEL_NAME, MODELS_DIR, load_condition_model

    if path is None:  # the feature classifier alone (2.0.0: no network fused)
        return load_condition_model(str(MODELS_DIR / MODEL_NAME / "2.0.0")).predict, "shipped 2.0.0"
    if path.is_dir():
        return load_condition_model(str(path)).predict, str(path)
    import keras

    model = keras.saving.load_model(path)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(np.asarray(x, np.float32), batch_size=4096, verbose=0), np.float64)

    return predict, str(path)


def _compare(
    data: Path,
    splits: dict[str, dict[str, np.ndarray]],
    recs: dict[str, dict[str, np.ndarray]],
    predict: Any,
    network: dict[str, Any],
    features: Path | None = None,
) -> dict[str, Any]:
    """A feature classifier (:func:`features_predictor`: shipped 2.0.0 unless ``features``), the
    network (``predict``) and their fusion scored side by side, each with its weight,
    calibration and healthy prior chosen on valid."""
    feat, feat_name = features_predictor(features)
    names = ("valid", "test", "dev")
    scored = {s: splits[s] for s in names}
    p = {s: (feat(splits[s]["v"]), predict(splits[s])) for s in names} | {
        f"{s}_rec": (feat(r["v"]), predict(r)) for s, r in recs.items()
    }
    va, vr = splits["valid"], recs.get("valid")
    rows: dict[str, Any] = {}
    weight = 1.0
    for what, a in ((f"features ({feat_name})", 1.0), ("spectrogram network", 0.0), ("fused", None)):
        vp = p.get("valid_rec", (None, None))
        f = choose_fusion(va, *p["valid"], weight=a, rec=vr, rec_feat=vp[0], rec_net=vp[1])
        weight = f["weight"] if a is None else weight
        entry: dict[str, Any] = {"weight_of_features": f["weight"], **f}
        for label, c in (
            ("calibrated, no prior", f["calibration_offsets"]),
            ("with the healthy prior", f["offsets"]),
        ):
            entry[label] = _scored(scored, recs, p, f["weight"], f["temperature"], c)
        rows[what] = entry
    return {
        "what": f"the condition classifier's 19 features ({feat_name}) beside a CNN on the family "
        "classifier's log-mel window, and their log-linear fusion; weight, calibration and prior "
        "chosen on valid only",
        "data": str(data),
        "network": network,
        "fusion_weight_grid": list(WEIGHTS),
        "fusion_weight": weight,
        "models": rows,
        "classes": list(CLASSES),
    }


def _write(report: Path, result: dict[str, Any], version: str = "1.0.0") -> None:
    report.mkdir(parents=True, exist_ok=True)
    (report / "spectro.json").write_text(json.dumps(result, indent=1))
    (report / "metrics.json").write_text(json.dumps(export_report(result, version=version), indent=1))


def start_from(model: Any, init: Path) -> None:
    """Give ``model`` the weights of the trained network saved in ``init``; a ValueError naming
    the file when it is not a network of the same layers and shapes."""
    import keras

    try:
        start = keras.saving.load_model(init)
    except Exception as e:  # keras raises several kinds for a missing or foreign file
        raise ValueError(f"{init}: not a saved Keras network ({e})") from e
    want, got = [w.shape for w in model.get_weights()], [w.shape for w in start.get_weights()]
    if want != got:
        raise ValueError(f"{init}: not a spectrogram network of this shape ({len(got)} weight arrays)")
    model.set_weights(start.get_weights())


def spectro_experiment(
    data: Path,
    out: Path,
    report: Path,
    *,
    epochs: int = 30,
    patience: int = 8,
    seed: int = 0,
    lr: float = 1e-3,
    init: Path | None = None,
) -> dict[str, Any]:
    """Train the spectrogram network (best valid accuracy), fuse it with the shipped feature
    classifier, and score the feature classifier, the network and the fusion side by side.

    ``lr`` is Adam's (constant) rate. ``init`` starts from a trained network's weights
    (a ``condition_spectrogram.keras`` of the same shape) instead of a random draw: its valid
    accuracy is logged as epoch 0, and the kept weights are the best *trained* epoch's."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(seed)
    splits, recs = _training_data(data)
    tr, va = splits["train"], splits["valid"]
    model = build_cnn(*tr["mel"].shape[1:])
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy")
    x_train = _mel(tr)
    predict = _keras_predict(model)
    init_acc = None
    if init is not None:
        start_from(model, init)
        init_acc = float(np.mean(predict(va).argmax(1) == va["y"]))
        print(f"epoch 0 ({init}): valid accuracy {init_acc:.4f}", flush=True)

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
    network = {
        "channels": list(CHANNELS),
        "parameters": int(model.count_params()),
        "seed": seed,
        "learning_rate": lr,
        "init": None if init is None else str(init),
        "init_valid_accuracy": init_acc,
        "best_epoch": best_ep,
        "valid_accuracy_by_epoch": hist,
        "train_seconds": round(time.time() - t0, 1),
    }
    result = _compare(data, splits, recs, predict, network)
    _write(report, result)
    return result


def build_ensemble(members: list[Any]) -> Any:
    """One network averaging the probabilities of ``members`` (spectrogram networks of the same
    input), each rebuilt under its own name so that the saved file holds them side by side."""
    import keras

    inp = keras.Input(tuple(members[0].inputs[0].shape[1:]), name="mel")
    outs = []
    for i, m in enumerate(members):
        clone = keras.models.clone_model(m)
        clone.set_weights(m.get_weights())
        clone.name = f"member_{i}"
        outs.append(clone(inp))
    out = keras.layers.Average(name="mean")(outs)
    return keras.Model(inp, out, name="condition_spectrogram_ensemble")


def ensemble_experiment(
    data: Path,
    members: list[Path],
    out: Path,
    report: Path,
    *,
    version: str = "1.1.0",
    features: Path | None = None,
) -> dict[str, Any]:
    """Average the probabilities of trained spectrogram networks (every member, no choice made),
    save the average as one network, and score it beside the features and fused as
    :func:`spectro_experiment` scores one network; ``features``: the feature classifier to fuse
    with (:func:`features_predictor`)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    nets = [keras.saving.load_model(m) for m in members]
    model = build_ensemble(nets)
    splits, recs = _training_data(data, ("valid", "test", "dev"))  # nothing trains here
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "condition_spectrogram.keras")
    member_rows = []
    for m, net in zip(members, nets, strict=True):
        acc = float(np.mean(_keras_predict(net)(splits["valid"]).argmax(1) == splits["valid"]["y"]))
        member_rows.append({"file": str(m), "valid_accuracy": round(acc, 4)})
    network = {
        "channels": list(CHANNELS),
        "parameters": int(model.count_params()),
        "members": member_rows,
        "combination": "arithmetic mean of the members' probabilities",
    }
    result = _compare(data, splits, recs, _keras_predict(model), network, features)
    _write(report, result, version)
    return result


def export_report(result: dict[str, Any], *, version: str = "1.0.0") -> dict[str, Any]:
    """The spectrogram network's training report in the form ``python -m export --report`` reads
    (labels, task, what chose it, its own calibrated scores), from :func:`spectro_experiment`'s
    result."""
    net = result["network"]
    alone = result["models"]["spectrogram network"]["calibrated, no prior"]
    fused = "fused with the condition features by a weight, calibration and healthy prior chosen on valid"
    if "members" in net:
        trained: dict[str, Any] = {
            "members": net["members"],
            "combination": net["combination"],
            "selection": "the mean of every member's probabilities (no member chosen); each member the "
            f"epoch with the best valid accuracy (held-out SoundFont programs); {fused}",
        }
    else:
        trained = {
            "train_seconds": net["train_seconds"],
            "epochs_run": len(net["valid_accuracy_by_epoch"]),
            "best_epoch": net["best_epoch"],
            "selection": f"epoch with the best valid accuracy (held-out SoundFont programs); {fused}",
        }
    return {
        "model": "condition-spectrogram",
        "version": version,
        "task": "multiclass",
        "labels": list(CLASSES),
        "parameters": net["parameters"],
        **trained,
        "valid": alone["valid"],
        "dev": alone["dev"],
        "test": alone["test"],
        "fusion": {"weight_of_features": result["fusion_weight"], "data": result["data"]},
    }


def package_fused(
    data: Path,
    spectrogram: Path,
    *,
    features_model: Path | None = None,
    version: str,
) -> dict[str, Any]:
    """Write the fused condition artifact ``<models>/condition/<version>/`` beside the exported
    spectrogram network ``spectrogram`` (``<models>/condition-spectrogram/<v>/``).

    It holds the shipped feature classifier's ONNX file unchanged and its manifest with
    ``features.fusion``: the network's name, version and sha256, and the weight, temperature and
    offsets (the healthy prior included) that :func:`choose_fusion` picks on valid from the
    **exported** ONNX models' outputs (the valid windows' stored log-mel, the valid recordings'
    when built with ``--mel``). Test and dev are scored once, as shipped, into ``metrics``.
    Returns those metrics with the folder under ``path``."""
    import shutil

    from instrunet_condition.classifier import load_condition_model

    from export.artifact import reseal_artifact
    from instrunet_core import load_model
    from instrunet_core.manifest import read_manifest

    source = load_condition_model(None if features_model is None else str(features_model))
    net = load_model(str(spectrogram))
    if tuple(net.labels) != CLASSES:
        raise SystemExit(f"{spectrogram}: labels {list(net.labels)}, expected {list(CLASSES)}")
    dest = Path(spectrogram).parent.parent / "condition" / version
    if dest.exists():
        raise SystemExit(f"{dest}: already exists")
    names = ("valid", "test", "dev")
    splits = {s_: load(data, s_) for s_ in names}
    recs = {s_: load(data, f"{s_}_recordings") for s_ in names if (data / f"{s_}_recordings.npz").is_file()}
    recs = {s_: r for s_, r in recs.items() if "mel" in r}

    def outputs(d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return source.predict(d["v"]), net.predict_features(_mel(d))

    p = {s_: outputs(d) for s_, d in splits.items()} | {f"{s_}_rec": outputs(r) for s_, r in recs.items()}
    vp = p.get("valid_rec", (None, None))
    f = choose_fusion(splits["valid"], *p["valid"], rec=recs.get("valid"), rec_feat=vp[0], rec_net=vp[1])
    scores = _scored(splits, recs, p, f["weight"], f["temperature"], f["offsets"])
    dest.mkdir(parents=True)
    for file in source.path.iterdir():
        if file.name != "manifest.json":
            shutil.copy2(file, dest / file.name)
    m = json.loads((source.path / "manifest.json").read_text())
    m.pop("manifest_sha256", None)
    nm = read_manifest(spectrogram)
    m["version"] = version
    m["features"]["fusion"] = {
        "spectrogram": {"name": nm.name, "version": nm.version, "sha256": nm.sha256},
        "weight": f["weight"],
        "temperature": f["temperature"],
        "offsets": f["offsets"],
        "healthy_prior": f["healthy_prior"],
        "how": "softmax((weight log p_features + (1 - weight) log p_spectrogram) / temperature + offsets); "
        "weight (valid log-loss), temperature and offsets (valid log-loss, then the healthy prior added "
        "to offsets[0]) chosen on valid from the exported models' outputs",
        "features_model": {"name": source.name, "version": source.version, "sha256": source.sha256},
    }
    metrics = {
        "model": "condition",
        "version": version,
        "task": "multiclass",
        "selection": "fusion weight and calibration by valid log-loss, healthy prior by at most "
        f"{MAX_FALSE_ALARM:.0%} of valid healthy recordings flagged; test and dev never chose",
        **scores,
    }
    m["metrics"] = metrics
    (dest / "manifest.json").write_text(json.dumps(m, indent=1))
    reseal_artifact(dest)
    return {"path": str(dest), "fusion": m["features"]["fusion"], "metrics": metrics}
