"""The condition classifier's evaluation and report: metrics per split and per degradation,
verdicts on the bundled examples, the report folder, and our HNR next to Praat's."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.plots import new_figure

from ..report import draw_confusion, markdown_table
from .data import CLASSES, SPLITS, SR, load, noise

__all__ = [
    "metrics_of",
    "recording_metrics",
    "by_degradation",
    "example_verdicts",
    "write_report",
    "evaluate",
    "praat_check",
    "compare",
    "prior_curve",
    "false_alarm_drivers",
]


def metrics_of(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    from ..metrics import multiclass_metrics

    pred = p.argmax(1)
    m = multiclass_metrics(y, pred, labels=CLASSES)
    healthy = y == 0
    m["false_alarm_rate"] = float(np.mean(pred[healthy] != 0)) if healthy.any() else None
    m["n"] = int(len(y))
    return m


def calibration_of(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> dict[str, Any]:
    """Log-loss, Brier score and expected calibration error of the top class (10 equal-width
    confidence bins), with the bins (reliability diagram)."""
    conf = p.max(1)
    hit = (p.argmax(1) == y).astype(float)
    edges = np.linspace(1.0 / p.shape[1], 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(hit[m].mean() - conf[m].mean())
            rows.append(
                {"confidence": float(conf[m].mean()), "accuracy": float(hit[m].mean()), "n": int(m.sum())}
            )
    onehot = np.eye(p.shape[1])[y]
    return {
        "log_loss": float(np.mean(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-7)))),
        "brier": float(np.mean(np.sum((p - onehot) ** 2, axis=1))),
        "ece": float(ece),
        "bins": rows,
    }


def recording_metrics(d: dict[str, np.ndarray], p: np.ndarray) -> dict[str, Any]:
    """Verdicts over whole recordings: each recording's windows' probabilities averaged, as the
    analyzer averages a file's (``d``: a ``<split>_recordings.npz``). The clean copies count as
    false alarms only."""
    ids = d["recording"]
    uniq, inv = np.unique(ids, return_inverse=True)
    mean = np.zeros((len(uniq), p.shape[1]))
    np.add.at(mean, inv, p)
    mean /= np.bincount(inv, minlength=len(uniq))[:, None]
    y = np.zeros(len(uniq), int)
    clean = np.zeros(len(uniq), bool)
    y[inv] = d["y"]
    clean[inv] = d["clean"]
    m = metrics_of(y[~clean], mean[~clean])
    m["windows_per_recording"] = float(len(ids) / len(uniq))
    m["false_alarm_clean"] = {"rate": float(np.mean(mean[clean].argmax(1) != 0)), "n": int(clean.sum())}
    return m


_BENIGN = ("mix", "room", "floor", "colour", "band", "clean")


def by_degradation(d: dict[str, np.ndarray], p: np.ndarray) -> dict[str, Any]:
    """Per kind of degradation: how often clips carrying it got their class, and any non-healthy class."""
    out: dict[str, dict[str, Any]] = {}
    pred = p.argmax(1)
    for i in np.flatnonzero(d["y"] > 0):
        for item in str(d["degradations"][i]).split("; "):
            word = item.split(" (")[0].split(" ")[0] if item and not item[0].isdigit() else "dropouts"
            if item.startswith(("dulled", "worn", "leaky", "detuned", "tape", "faster", "hard")):
                word = " ".join(item.split(" (")[0].split(" ")[:2])
            if not item or word in _BENIGN:
                continue
            key = f"{CLASSES[int(d['y'][i])]}: {word}"
            e = out.setdefault(key, {"n": 0, "correct": 0, "flagged": 0})
            e["n"] += 1
            e["correct"] += int(pred[i] == d["y"][i])
            e["flagged"] += int(pred[i] != 0)
    return {
        k: {"n": v["n"], "recall": v["correct"] / v["n"], "flagged": v["flagged"] / v["n"]}
        for k, v in sorted(out.items())
    }


def example_verdicts(folder: Path, predict: Any) -> dict[str, Any]:
    """Verdict per bundled example (clean renders), judged window by window
    (:func:`instrunet_condition.condition_of`): false alarms on whole files."""
    from instrunet_condition import CHUNK_SAMPLES, condition_features, not_judgeable
    from instrunet_condition.features import feature_vector

    from instrunet_core.audio import load_audio

    files = sorted([*folder.glob("*.wav"), *folder.glob("*.flac")])
    res: dict[str, Any] = {"files": {}, "chunks": 0, "chunks_flagged": 0}
    for f in files:
        y = load_audio(str(f), None, target_sr=SR)
        rows = []
        for a in range(0, y.shape[0], CHUNK_SAMPLES):
            w = y[a : a + CHUNK_SAMPLES]
            r = condition_features(w, sr=SR) if not_judgeable(w, SR) is None else None
            if r is not None:
                rows.append(r)
        if not rows:
            continue
        p = predict(np.stack([feature_vector(r) for r in rows]))
        mean = p.mean(0)
        res["files"][f.name] = {
            "label": CLASSES[int(mean.argmax())],
            "probabilities": dict(zip(CLASSES, mean.round(4).tolist(), strict=True)),
            "chunk_labels": [CLASSES[int(k)] for k in p.argmax(1)],
        }
        res["chunks"] += len(rows)
        res["chunks_flagged"] += int(np.sum(p.argmax(1) != 0))
    res["files_flagged"] = sum(v["label"] != "healthy" for v in res["files"].values())
    res["chunk_false_alarm_rate"] = res["chunks_flagged"] / res["chunks"] if res["chunks"] else None
    return res


def _reliability(ax: Any, cal: dict[str, Any], title: str) -> None:
    ax.plot([0.33, 1], [0.33, 1], color="0.6", lw=1, ls="--")
    for when, style in (("before", "o:"), ("after", "o-"), ("shipped", "s--")):
        b = cal[when]["test"]["bins"]
        ax.plot(
            [r["confidence"] for r in b],
            [r["accuracy"] for r in b],
            style,
            label=f"{when} (ECE {cal[when]['test']['ece']:.3f})",
        )
    ax.set_xlabel("confidence of the top class")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="lower right")


def write_report(folder: Path, m: dict[str, Any], hist: dict[str, list[float]]) -> None:
    """``metrics.json``, ``history.json``, ``confusion_matrix.png``, ``reliability.png``, ``summary.md``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(m, indent=1, sort_keys=True))
    (folder / "history.json").write_text(json.dumps(hist, indent=1))
    fig = new_figure(16, 4.6)
    for ax, split in zip(fig.subplots(1, 3), ("valid", "test", "dev"), strict=True):
        title = f"condition {split} (acc {m[split]['accuracy']:.3f}, n={m[split]['n']})"
        draw_confusion(ax, m[split]["confusion"], CLASSES, title)
    fig.tight_layout()
    fig.savefig(folder / "confusion_matrix.png", dpi=90)
    fig = new_figure(5.5, 5)
    _reliability(fig.subplots(1, 1), m["calibration"], "test: reliability of the top class")
    fig.tight_layout()
    fig.savefig(folder / "reliability.png", dpi=90)
    t, fa, cal = m["test"], m["false_alarm"], m["calibration"]
    ex = fa["examples"]
    ex_labels = ", ".join(f"{k}: {v['label']}" for k, v in ex["files"].items())
    splits = (
        ("valid (held-out SoundFont programs; chooses)", "valid"),
        ("test (unseen TimGM6mb instruments)", "test"),
        ("dev (real recorded libraries never trained on)", "dev"),
        ("train (fit)", "train_fit"),
    )
    lines = [
        f"# condition {m['version']}",
        "",
        f"MLP on {len(m['features'])} features, {m['parameters']:,} parameters; {m['epochs_run']} epochs, kept epoch "
        f"{m['best_epoch']} ({m['selection']}). Calibration: temperature {cal['temperature']:.3f}, offsets "
        f"{cal['offsets']}, healthy prior log odds {cal['healthy_prior']['log_odds']:.3f}.",
        "",
        *markdown_table(
            [
                "split",
                "clips",
                "accuracy",
                "balanced accuracy",
                "aged recall",
                "false alarms (healthy called aged/broken)",
            ],
            (
                [
                    name,
                    m[k]["n"],
                    f"{m[k]['accuracy']:.4f}",
                    f"{m[k]['balanced_accuracy']:.4f}",
                    f"{m[k]['per_class']['moderately_aged']['recall']:.4f}",
                    f"{m[k]['false_alarm_rate']:.4f}",
                ]
                for name, k in splits
            ),
        ),
    ]
    rec = m.get("recordings") or {}
    if rec:
        lines += [
            "",
            "Whole recordings (each degraded as a whole; the verdict averages its windows, as the analyzer does):",
            "",
            *markdown_table(
                [
                    "split",
                    "recordings",
                    "windows each",
                    "accuracy",
                    "aged recall",
                    "broken recall",
                    "false alarms (clean)",
                ],
                (
                    [
                        k,
                        r["n"],
                        f"{r['windows_per_recording']:.1f}",
                        f"{r['accuracy']:.4f}",
                        f"{r['per_class']['moderately_aged']['recall']:.4f}",
                        f"{r['per_class']['broken_noisy']['recall']:.4f}",
                        f"{r['false_alarm_clean']['rate']:.4f} (n={r['false_alarm_clean']['n']})",
                    ]
                    for k, r in rec.items()
                ),
            ),
        ]
    lines += [
        "",
        "Per class on test:",
        "",
        *markdown_table(
            ["class", "precision", "recall", "clips"],
            (
                [c, f"{pc['precision']:.3f}", f"{pc['recall']:.3f}", pc["support"]]
                for c, pc in t["per_class"].items()
            ),
        ),
        "",
        "False alarms:",
        "",
        *markdown_table(
            ["clips", "n", "rate"],
            (
                [fa[k]["what"], fa[k]["n"], f"{fa[k]['rate']:.4f}"]
                for k in ("test_healthy", "test_clean", "dev_healthy", "dev_clean_real")
            ),
        ),
        "",
        f"Bundled examples: {ex['files_flagged']} of {len(ex['files'])} files and {ex['chunks_flagged']} of "
        f"{ex['chunks']} windows called aged or broken ({ex_labels}).",
        "",
        "Calibration (top-class expected calibration error, log-loss):",
        "",
        *markdown_table(
            [
                "split",
                "ECE before",
                "ECE calibrated",
                "ECE shipped (with the prior)",
                "log-loss before",
                "log-loss calibrated",
            ],
            (
                [
                    s,
                    f"{cal['before'][s]['ece']:.4f}",
                    f"{cal['after'][s]['ece']:.4f}",
                    f"{cal['shipped'][s]['ece']:.4f}",
                    f"{cal['before'][s]['log_loss']:.4f}",
                    f"{cal['after'][s]['log_loss']:.4f}",
                ]
                for s in ("valid", "test", "dev")
            ),
        ),
    ]
    hp = cal["healthy_prior"]
    lines += [
        "",
        f"Healthy prior: log odds {hp['log_odds']:.3f} ({hp['means']}; {hp['rule']}, on {hp['on']}: "
        f"{hp['false_alarm']:.4f} flagged there). The ECE columns are on the splits' equal class shares; the "
        "shipped probabilities assume healthy is the more common case.",
        "",
        "Dev per source:",
        "",
        *markdown_table(
            ["source", "clips", "accuracy", "aged recall", "false alarms (clean)"],
            (
                [
                    src,
                    v["metrics"]["n"],
                    f"{v['metrics']['accuracy']:.4f}",
                    f"{v['metrics']['per_class']['moderately_aged']['recall'] or 0:.4f}",
                    f"{v['false_alarm_clean'] if v['false_alarm_clean'] is not None else float('nan'):.4f}",
                ]
                for src, v in m["dev_by_source"].items()
            ),
        ),
    ]
    for split in ("test", "dev"):
        lines += [
            "",
            f"{split.capitalize()} clips by degradation (recall of their class; flagged = called aged or broken):",
            "",
            *markdown_table(
                ["degradation", "clips", "recall", "flagged"],
                (
                    [k, v["n"], f"{v['recall']:.3f}", f"{v['flagged']:.3f}"]
                    for k, v in m[f"{split}_by_degradation"].items()
                ),
            ),
        ]
    lines += [
        "",
        "Permutation importance on valid (accuracy lost when the feature is shuffled):",
        "",
        *markdown_table(
            ["feature", "accuracy drop"],
            (
                [k, f"{v:+.4f}"]
                for k, v in sorted(m["permutation_importance_valid"].items(), key=lambda kv: -kv[1])
            ),
        ),
    ]
    lines += ["", "![confusion](confusion_matrix.png)", "", "![reliability](reliability.png)", ""]
    (folder / "summary.md").write_text("\n".join(lines))


def evaluate(data: Path, model_path: Path, out: Path) -> dict[str, Any]:
    """Accuracy and per-class recall of a trained model on every split, train included.

    Train accuracy close to valid/test says the classifier is limited by what the features
    can tell apart, not by the amount of training data. Writes ``out`` (JSON).
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    model = keras.models.load_model(model_path, compile=False)
    res: dict[str, Any] = {"model": str(model_path)}
    for split in SPLITS:
        if not (data / f"{split}.npz").is_file():
            continue
        d = load(data, split)
        keep = ~d["clean"]  # the clean copies only count as false alarms, as in the report
        p = np.asarray(model(d["v"][keep], training=False))
        m = metrics_of(d["y"][keep], p)
        res[split] = {
            "accuracy": m["accuracy"],
            "false_alarm_rate": m["false_alarm_rate"],
            "n": m["n"],
            "recall": {c: v["recall"] for c, v in m["per_class"].items()},
        }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return res


def praat_check(corpus: Path, out: Path, *, n_notes: int = 16, seed: int = 0) -> dict[str, Any]:
    """Our HNR next to Praat's (parselmouth) on test-split notes, clean and at 20 / 5 dB SNR.

    Writes ``out`` (JSON): per note and noise level both values and the difference, and
    the largest absolute difference below and above 30 dB (Praat's value).
    """
    import parselmouth
    from instrunet_condition.features import hnr

    from ..nsynth import load_audio, load_split

    notes = load_split(corpus / "test")
    notes = notes[:: max(1, len(notes) // n_notes)][:n_notes]
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for n in notes:
        y = load_audio(n, target_sr=SR).astype(np.float64)
        for snr in (None, 20.0, 5.0):
            x = y if snr is None else noise(rng, y, snr, pink=False)
            ref = parselmouth.praat.call(
                parselmouth.Sound(x, sampling_frequency=SR).to_harmonicity_ac(0.01, 75.0, 0.1, 4.5),
                "Get mean",
                0,
                0,
            )
            ours = hnr(x, sr=SR)
            rows.append(
                {
                    "note": n.note_str,
                    "snr_db": snr,
                    "praat_db": round(float(ref), 3),
                    "ours_db": round(float(ours), 3),
                    "diff_db": round(float(ours - ref), 3),
                }
            )
    low = [abs(r["diff_db"]) for r in rows if r["praat_db"] < 30]
    high = [abs(r["diff_db"]) for r in rows if r["praat_db"] >= 30]
    res = {
        "praat_settings": "To Harmonicity (ac): 0.01 s, 75 Hz, 0.1, 4.5 periods; Get mean",
        "parselmouth": parselmouth.__version__,
        "n": len(rows),
        "max_abs_diff_below_30db": max(low) if low else None,
        "n_below_30db": len(low),
        "max_abs_diff_from_30db": max(high) if high else None,
        "n_from_30db": len(high),
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return res


def compare(
    data: Path, out: Path, *, seed: int = 0, drop: Sequence[str] = (), only: str | None = None
) -> dict[str, Any]:
    """Other learners on the same inputs (scikit-learn, which the dev environment has through
    librosa): gradient-boosted trees and wider multi-layer perceptrons, trained on train and
    scored on every split at the argmax, no prior. Do the features or the small MLP limit the
    condition model? ``drop``: features held constant (which cues make the false alarms?);
    ``only``: the learners whose name contains it. Writes ``out`` (JSON)."""
    from instrunet_condition.features import FEATURE_NAMES
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    sets = {s: load(data, s) for s in SPLITS}
    unknown = set(drop) - set(FEATURE_NAMES)
    if unknown:
        raise SystemExit(f"--drop: no feature {sorted(unknown)}; the features are {list(FEATURE_NAMES)}")
    cols = [FEATURE_NAMES.index(n) for n in drop]
    for d in sets.values():
        d["v"][:, cols] = 0.0
    scale = StandardScaler().fit(sets["train"]["v"])
    learners = {
        "trees (HistGradientBoosting, 300 rounds)": HistGradientBoostingClassifier(
            max_iter=300, random_state=seed
        ),
        "trees (600 rounds, 63 leaves, rate 0.05)": HistGradientBoostingClassifier(
            max_iter=600, max_leaf_nodes=63, learning_rate=0.05, random_state=seed
        ),
        "MLP 256-256": MLPClassifier(
            (256, 256), max_iter=400, early_stopping=True, n_iter_no_change=30, random_state=seed
        ),
        "MLP 512-512 (L2 1e-3)": MLPClassifier(
            (512, 512), alpha=1e-3, max_iter=400, early_stopping=True, n_iter_no_change=30, random_state=seed
        ),
    }
    res: dict[str, Any] = {
        "data": str(data),
        "rule": "argmax, no calibration or prior",
        "dropped": list(drop),
        "learners": {},
    }
    for name, est in learners.items():
        if only and only not in name:
            continue
        est.fit(scale.transform(sets["train"]["v"]), sets["train"]["y"])
        row = {}
        for split, d in sets.items():
            p = est.predict_proba(scale.transform(d["v"]))
            keep = ~d["clean"]
            m = metrics_of(d["y"][keep], p[keep])
            row[split] = {
                "accuracy": m["accuracy"],
                "aged_recall": m["per_class"]["moderately_aged"]["recall"],
                "false_alarm": m["false_alarm_rate"],
                "false_alarm_clean": float(np.mean(p[d["clean"]].argmax(1) != 0))
                if d["clean"].any()
                else None,
            }
        res["learners"][name] = row
        print(name, {k: round(v["accuracy"], 4) for k, v in row.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return res


def prior_curve(data: Path, out: Path, *, model_dir: Path | None = None) -> dict[str, Any]:
    """What the healthy prior trades: the shipped model (ONNX, calibration and prior folded in)
    with its healthy log odds shifted by -1 to +3 in steps of 0.25, scored on test and dev, single
    windows and whole recordings. Reports only: the shipped prior stays the one chosen on valid.
    Writes ``out`` (JSON)."""
    from instrunet_condition.classifier import ConditionModel, load_condition_model

    model = ConditionModel(model_dir) if model_dir else load_condition_model()
    sets = {s: load(data, s) for s in ("test", "dev")}
    recs = {s: load(data, f"{s}_recordings") for s in ("test", "dev")}
    base = {s: model.predict(d["v"]) for s, d in sets.items()}
    base_rec = {s: model.predict(d["v"]) for s, d in recs.items()}

    def shifted(p: np.ndarray, b: float) -> np.ndarray:
        q = p * np.exp([b, 0.0, 0.0])
        return q / q.sum(1, keepdims=True)

    rows = []
    for b in np.arange(-1.0, 3.001, 0.25):
        row: dict[str, Any] = {"shift": float(b)}
        for s, d in sets.items():
            p = shifted(base[s], b)
            m = metrics_of(d["y"][~d["clean"]], p[~d["clean"]])
            rm = recording_metrics(recs[s], shifted(base_rec[s], b))
            row[s] = {
                "accuracy": m["accuracy"],
                "aged_recall": m["per_class"]["moderately_aged"]["recall"],
                "broken_recall": m["per_class"]["broken_noisy"]["recall"],
                "false_alarm_clean": float(np.mean(p[d["clean"]].argmax(1) != 0)),
                "recordings": {
                    "accuracy": rm["accuracy"],
                    "aged_recall": rm["per_class"]["moderately_aged"]["recall"],
                    "false_alarm_clean": rm["false_alarm_clean"]["rate"],
                },
            }
        rows.append(row)
    res = {
        "model": {"name": model.name, "version": model.version, "sha256": model.sha256},
        "data": str(data),
        "what": "healthy log prior odds shifted by `shift` from the shipped model's (chosen on valid)",
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return res


def false_alarm_drivers(data: Path, out: Path, *, split: str = "dev") -> dict[str, Any]:
    """What the shipped model's false alarms on a split's clean copies are (aged or broken, per
    source and leading family) and which features drive them: for each feature, the share of the
    flagged windows called healthy once that feature alone takes the median of clean training
    clips (the explanations' occlusion). Writes ``out`` (JSON)."""
    from collections import Counter

    from instrunet_condition.classifier import load_condition_model
    from instrunet_condition.features import FEATURE_NAMES, feature_vector

    model = load_condition_model()
    d = load(data, split)
    c = d["clean"]
    v = d["v"][c]
    pred = model.predict(v).argmax(1)
    flag = pred != 0
    ref = feature_vector(dict(model.reference["healthy"]["median"]), "")
    flips = {}
    for j, name in enumerate(FEATURE_NAMES):
        vo = v[flag].copy()
        vo[:, j] = ref[j]
        flips[name] = round(float(np.mean(model.predict(vo).argmax(1) == 0)), 4) if flag.any() else None
    res = {
        "model": {"name": model.name, "version": model.version, "sha256": model.sha256},
        "split": split,
        "clean_windows": int(c.sum()),
        "flagged": int(flag.sum()),
        "called": {k: int((pred == i).sum()) for i, k in enumerate(CLASSES) if i},
        "flagged_by_source": dict(Counter(d["source"][c][flag].tolist()).most_common()),
        "windows_by_source": dict(Counter(d["source"][c].tolist()).most_common()),
        "flagged_by_family": dict(Counter(d["leading"][c][flag].tolist()).most_common()),
        "windows_by_family": dict(Counter(d["leading"][c].tolist()).most_common()),
        "flipped_to_healthy_by_clean_value": dict(sorted(flips.items(), key=lambda kv: -(kv[1] or 0))),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return res
