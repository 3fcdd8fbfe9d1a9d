"""The condition classifier's evaluation and report: metrics per split and per degradation,
verdicts on the bundled examples, the report folder, and our HNR next to Praat's."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.plots import new_figure

from ..report import draw_confusion
from .data import CLASSES, SPLITS, SR, load, noise

__all__ = ["metrics_of", "by_degradation", "example_verdicts", "write_report", "evaluate", "praat_check"]


def metrics_of(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    from ..metrics import multiclass_metrics

    pred = p.argmax(1)
    m = multiclass_metrics(y, pred, labels=CLASSES)
    healthy = y == 0
    m["false_alarm_rate"] = float(np.mean(pred[healthy] != 0)) if healthy.any() else None
    m["n"] = int(len(y))
    return m


def by_degradation(d: dict[str, np.ndarray], p: np.ndarray) -> dict[str, Any]:
    """Per kind of degradation: how often clips carrying it got their class, and any non-healthy class."""
    out: dict[str, dict[str, Any]] = {}
    pred = p.argmax(1)
    for i in np.flatnonzero(d["y"] > 0):
        for item in str(d["degradations"][i]).split("; "):
            word = item.split(" ")[0] if item and not item[0].isdigit() else "dropouts"
            if not item or word in ("mix", "room", "floor", "phrase"):
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
    """Verdict per bundled example (clean renders) and per 4 s chunk: the false-alarm rate on real files."""
    from instrunet_condition import chunk_features
    from instrunet_condition.features import feature_vector

    from instrunet_core.audio import load_audio

    files = sorted([*folder.glob("*.wav"), *folder.glob("*.flac")])
    res: dict[str, Any] = {"files": {}, "chunks": 0, "chunks_flagged": 0}
    for f in files:
        y = load_audio(str(f), None, target_sr=SR)
        rows, secs = chunk_features(y, sr=SR)
        if not rows:
            continue
        p = predict(np.stack([feature_vector(r) for r in rows]))
        w = np.asarray(secs) / sum(secs)
        mean = (p * w[:, None]).sum(0)
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


def write_report(folder: Path, m: dict[str, Any], hist: dict[str, list[float]]) -> None:
    """``metrics.json``, ``history.json``, ``confusion_matrix.png``, ``summary.md``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(m, indent=1, sort_keys=True))
    (folder / "history.json").write_text(json.dumps(hist, indent=1))
    fig = new_figure(11, 4.6)
    for ax, split in zip(fig.subplots(1, 2), ("valid", "test"), strict=True):
        title = f"condition {split} (acc {m[split]['accuracy']:.3f}, n={m[split]['n']})"
        draw_confusion(ax, m[split]["confusion"], CLASSES, title)
    fig.tight_layout()
    fig.savefig(folder / "confusion_matrix.png", dpi=90)
    t, fa = m["test"], m["false_alarm"]
    ex = fa["examples"]
    ex_labels = ", ".join(f"{k}: {v['label']}" for k, v in ex["files"].items())
    lines = [
        f"# condition {m['version']}",
        "",
        f"MLP on {len(m['features'])} features, {m['parameters']:,} parameters; {m['epochs_run']} epochs, kept epoch "
        f"{m['best_epoch']} ({m['selection']}).",
        "",
        "| split | clips | accuracy | balanced accuracy | false-alarm rate (healthy called aged/broken) |",
        "|---|---|---|---|---|",
    ]
    for name, k in (
        ("valid (held-out instruments)", "valid"),
        ("test (unseen TimGM6mb instruments)", "test"),
    ):
        s = m[k]
        lines.append(
            f"| {name} | {s['n']} | {s['accuracy']:.4f} | {s['balanced_accuracy']:.4f} | "
            f"{s['false_alarm_rate']:.4f} |"
        )
    lines += ["", "Per class on test:", "", "| class | precision | recall | clips |", "|---|---|---|---|"]
    for c, pc in t["per_class"].items():
        lines.append(f"| {c} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['support']} |")
    lines += [
        "",
        f"False alarms on clean single test notes: {fa['test_clean_single_notes']['rate']:.4f} "
        f"(n={fa['test_clean_single_notes']['n']}).",
        f"Bundled examples: {ex['files_flagged']} of {len(ex['files'])} files and {ex['chunks_flagged']} of "
        f"{ex['chunks']} 4-s chunks called aged or broken "
        f"({ex_labels}).",
        "",
        "Test clips by degradation (recall of their class; flagged = called aged or broken):",
        "",
        "| degradation | clips | recall | flagged |",
        "|---|---|---|---|",
    ]
    for k, v in m["test_by_degradation"].items():
        lines.append(f"| {k} | {v['n']} | {v['recall']:.3f} | {v['flagged']:.3f} |")
    lines += [
        "",
        "Permutation importance on valid (accuracy lost when the feature is shuffled):",
        "",
        "| feature | accuracy drop |",
        "|---|---|",
    ]
    for k, v in sorted(m["permutation_importance_valid"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {k} | {v:+.4f} |")
    lines += ["", "![confusion](confusion_matrix.png)", ""]
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
        d = load(data, split)
        p = np.asarray(model(d["v"], training=False))
        m = metrics_of(d["y"], p)
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
