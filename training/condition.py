"""The condition corpus (clean notes, deliberately degraded) and the condition classifier.

Usage::

    python -m training.condition build --corpus data/corpus --out data/condition [--seed 20261125]
    python -m training.condition train --data data/condition --out runs/condition \\
        --report training/reports/condition/1.0.0
    python -m training.condition praat --corpus data/corpus   # our HNR next to Praat's
    python -m training.condition evaluate                     # accuracy on every split, train included

``build`` reads every note of an NSynth-format corpus built by ``python -m training.corpus``
(splits by instrument: train / valid / test = every TimGM6mb instrument) and makes three
labelled clips of each, with a generator seeded by (seed, note):

* ``healthy`` - the clean note; with probability 0.35 a *phrase* instead (the note cut
  short and followed by 1-3 other notes of the same instrument, 10 ms cross-fades), and
  with probability 0.3 mixed with 1-2 notes of other instruments of the same split (so
  that note changes and polyphony alone are not taken for damage); then the *benign*
  chain every clip gets (below). The aged and broken clips start from a base made the
  same way;
* ``moderately_aged`` - one mild cue that something is off (detuned double (beating, 4-15
  cents), chorus, or mild hiss / hum at 22-32 dB SNR) plus 0-2 of: damped high partials
  (low-pass 1.5-4 kHz or high shelf -6 to -15 dB), a faster or unsteady decay (exponential
  fade with a 0.6-2 s time constant, slow 0.5-2 Hz tremolo of 10-30 %);
* ``broken_noisy`` - 1-2 of: buzz (a 50-140 Hz sawtooth, or a rattle: noise gated by the
  note's own waveform), rattles (10-40 clicks per second), clipping or distortion
  (hard clip at 5-35 % of the peak, ``pedalboard.Distortion`` 18-36 dB,
  ``pedalboard.Bitcrush`` 3-6 bits), strong noise (-3 to 12 dB SNR), dropouts (3-10 gaps of
  20-150 ms).

The benign chain, drawn independently for every clip of every class: random level (peak
0.3-1.0), with probability 0.3 light ``pedalboard.Reverb``, with probability 0.3 a
recording noise floor at 45-60 dB SNR. Every clip is peak-normalised after degradation, as
recorded audio is.

Features (:func:`instrunet_condition.features.condition_features`) are computed for every
clip and written to ``OUT/<split>.npz`` (``x`` raw feature table, ``y`` class index,
``note``, ``instrument``, ``family``, ``mix``, ``degradations``); ``OUT/condition.json``
records the seed, counts and the degradation recipe. ``train`` fits a small Keras MLP on
``feature_vector`` inputs (normalisation inside the model), keeps the epoch with the best
valid accuracy, and writes the test report (accuracy, per-class recall, confusion matrix,
false-alarm rate on clean notes, and on the bundled examples).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("healthy", "moderately_aged", "broken_noisy")
DEFAULT_SEED = 20261125
SPLITS = ("train", "valid", "test")
SR = 22050


# ---------------------------------------------------------------- degradations


def _pb(plugin: Any, y: np.ndarray) -> np.ndarray:
    out = plugin(y.astype(np.float32)[None, :], SR, reset=True)[0]
    return np.asarray(out, dtype=np.float64)[: y.size]


def _noise(rng: np.random.Generator, y: np.ndarray, snr_db: float, *, pink: bool) -> np.ndarray:
    n = rng.standard_normal(y.size)
    if pink:
        spec = np.fft.rfft(n)
        f = np.fft.rfftfreq(y.size, 1.0 / SR)
        spec[1:] /= np.sqrt(f[1:])
        spec[0] = 0
        n = np.fft.irfft(spec, y.size)
    p_sig = float(np.mean(y[np.abs(y) > 0.01 * np.abs(y).max()] ** 2)) if np.any(y) else 1.0
    n *= np.sqrt(p_sig / max(float(np.mean(n * n)), 1e-20) / 10 ** (snr_db / 10))
    return y + n


def _shift(y: np.ndarray, cents: float) -> np.ndarray:
    """Varispeed copy detuned by ``cents`` (linear interpolation)."""
    ratio = 2 ** (cents / 1200.0)
    t = np.arange(y.size) * ratio
    return np.interp(t, np.arange(y.size), y, right=0.0)


def aged(y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """A moderately aged version of ``y`` and the names of what was applied."""
    import pedalboard as pb

    log: list[str] = []
    cue = rng.integers(4)
    if cue == 0:
        c = rng.uniform(4, 15) * rng.choice([-1, 1])
        y = 0.5 * (y + _shift(y, c))
        log.append(f"detune {c:+.0f} cents")
    elif cue == 1:
        y = _pb(
            pb.Chorus(
                rate_hz=rng.uniform(0.6, 3.0),
                depth=rng.uniform(0.15, 0.4),
                mix=rng.uniform(0.4, 0.6),
                centre_delay_ms=rng.uniform(5, 12),
                feedback=0.0,
            ),
            y,
        )
        log.append("chorus")
    elif cue == 2:
        snr = rng.uniform(22, 32)
        y = _noise(rng, y, snr, pink=bool(rng.integers(2)))
        log.append(f"hiss {snr:.0f} dB SNR")
    else:
        f0 = rng.choice([50.0, 60.0])
        t = np.arange(y.size) / SR
        hum = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in (1, 2, 3))
        level = np.sqrt(np.mean(y[np.abs(y) > 0.01] ** 2)) * 10 ** (-rng.uniform(20, 30) / 20)
        y = y + level * hum / np.sqrt(np.mean(hum**2))
        log.append(f"hum {f0:.0f} Hz")
    for k in rng.permutation(3)[: rng.integers(0, 3)]:
        if k == 0:
            if rng.random() < 0.5:
                fc = float(np.exp(rng.uniform(np.log(1500), np.log(4000))))
                y = _pb(pb.LowpassFilter(cutoff_frequency_hz=fc), y)
                log.append(f"low-pass {fc:.0f} Hz")
            else:
                g = rng.uniform(-15, -6)
                y = _pb(pb.HighShelfFilter(cutoff_frequency_hz=float(rng.uniform(2000, 4000)), gain_db=g), y)
                log.append(f"high shelf {g:.0f} dB")
        elif k == 1:
            tau = rng.uniform(0.6, 2.0)
            y = y * np.exp(-np.arange(y.size) / SR / tau)
            log.append(f"fade tau {tau:.1f} s")
        else:
            f, d = rng.uniform(0.5, 2.0), rng.uniform(0.1, 0.3)
            y = y * (1 - d * 0.5 * (1 + np.sin(2 * np.pi * f * np.arange(y.size) / SR + rng.uniform(0, 6.3))))
            log.append(f"tremolo {f:.1f} Hz {d:.0%}")
    return y, log


def broken(y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """A broken / noisy version of ``y`` and the names of what was applied."""
    import pedalboard as pb

    log: list[str] = []
    peak = np.abs(y).max() or 1.0
    for k in rng.permutation(5)[: rng.integers(1, 3)]:
        if k == 0:
            if rng.random() < 0.5:
                f0 = rng.uniform(50, 140)
                saw = 2 * ((np.arange(y.size) * f0 / SR) % 1.0) - 1
                env = np.abs(y)
                env = np.convolve(env, np.ones(256) / 256, mode="same")
                y = y + rng.uniform(0.15, 0.5) * saw * env / max(env.max(), 1e-9) * peak
                log.append(f"buzz {f0:.0f} Hz")
            else:
                gate = np.abs(y) > rng.uniform(0.2, 0.5) * peak
                y = y + gate * rng.standard_normal(y.size) * rng.uniform(0.1, 0.3) * peak
                log.append("rattle (gated noise)")
        elif k == 1:
            rate = rng.uniform(10, 40)
            n = int(rate * y.size / SR)
            clicks = np.zeros(y.size)
            pos = rng.integers(0, y.size, n)
            clicks[pos] = rng.uniform(0.3, 1.0, n) * rng.choice([-1, 1], n) * peak
            kern = np.exp(-np.arange(200) / 30.0) * rng.standard_normal(200)
            y = y + np.convolve(clicks, kern, mode="full")[: y.size]
            log.append(f"rattles {rate:.0f}/s")
        elif k == 2:
            c = rng.integers(3)
            if c == 0:
                thr = rng.uniform(0.05, 0.35) * peak
                y = np.clip(y, -thr, thr)
                log.append(f"hard clip {thr / peak:.0%}")
            elif c == 1:
                d = rng.uniform(18, 36)
                y = _pb(pb.Distortion(drive_db=d), y / peak)
                log.append(f"distortion {d:.0f} dB")
            else:
                b = float(rng.integers(3, 7))
                y = _pb(pb.Bitcrush(bit_depth=b), y / peak * 0.9)
                log.append(f"bitcrush {b:.0f} bits")
        elif k == 3:
            snr = rng.uniform(-3, 12)
            y = _noise(rng, y, snr, pink=bool(rng.integers(2)))
            log.append(f"noise {snr:.0f} dB SNR")
        else:
            n = int(rng.integers(3, 11))
            active = np.flatnonzero(np.abs(y) > 0.05 * peak)
            lo, hi = (active[0], active[-1]) if active.size else (0, y.size)
            y = y.copy()
            for _ in range(n):
                ln = int(rng.uniform(0.02, 0.15) * SR)
                a = int(rng.integers(lo, max(lo + 1, hi - ln)))
                y[a : a + ln] = 0.0
            log.append(f"{n} dropouts")
    return y, log


def benign(y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """What any recording may carry: level, a little room, a quiet noise floor; peak-normalised."""
    import pedalboard as pb

    log: list[str] = []
    if rng.random() < 0.3:
        y = _pb(
            pb.Reverb(room_size=rng.uniform(0.1, 0.5), wet_level=rng.uniform(0.05, 0.2), dry_level=1.0), y
        )
        log.append("room")
    if rng.random() < 0.3:
        snr = rng.uniform(45, 60)
        y = _noise(rng, y, snr, pink=True)
        log.append(f"floor {snr:.0f} dB")
    m = np.abs(y).max()
    level = rng.uniform(0.3, 1.0)
    return (y / m * level if m > 0 else y), log


# ---------------------------------------------------------------- corpus


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def _phrase(y: np.ndarray, siblings: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``y`` cut short and followed by 1-3 other notes of its instrument (10 ms cross-fades), same length."""
    k = int(rng.integers(2, min(4, len(siblings) + 1) + 1))
    cuts = np.sort(rng.uniform(0.15, 0.85, k - 1)) * y.size
    bounds = np.concatenate([[0], cuts, [y.size]]).astype(int)
    picks = [np.asarray(y, np.float64)] + [
        np.asarray(siblings[j], np.float64) for j in rng.choice(len(siblings), k - 1, replace=False)
    ]
    fade = int(0.01 * SR)
    x = np.zeros(y.size)
    for i, src in enumerate(picks):
        n = bounds[i + 1] - bounds[i] + (fade if i < k - 1 else 0)
        part = np.pad(src[:n], (0, max(0, n - src.size))) / (np.abs(src).max() or 1.0)
        if i < k - 1:
            part[-fade:] *= np.linspace(1, 0, fade)
        if i > 0:
            part[:fade] *= np.linspace(0, 1, fade)
        end = min(y.size, bounds[i] + n)
        x[bounds[i] : end] += part[: end - bounds[i]]
    return x


def make_clips(
    y: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator, siblings: Sequence[np.ndarray] = ()
) -> list[tuple[np.ndarray, int, list[str], int]]:
    """The three labelled clips of one note: ``[(audio, class index, applied, n_mixed)]``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        The clean note.
    others : sequence of np.ndarray
        Candidate notes of other instruments (same split) to mix in.
    rng : np.random.Generator
    siblings : sequence of np.ndarray
        Other notes of the same instrument, for phrases.
    """
    out = []
    for c in range(3):
        x = np.asarray(y, np.float64) / (np.abs(y).max() or 1.0)
        phrase = bool(siblings) and rng.random() < 0.35
        if phrase:
            x = _phrase(x, siblings, rng)
        n_mix = 1
        if others and rng.random() < 0.3:
            for j in rng.choice(len(others), size=min(int(rng.integers(1, 3)), len(others)), replace=False):
                o = np.asarray(others[j], np.float64)
                o = o[: x.size] if o.size >= x.size else np.pad(o, (0, x.size - o.size))
                x = x + rng.uniform(0.4, 1.0) * o / (np.abs(o).max() or 1.0)
                n_mix += 1
        log = (["phrase"] if phrase else []) + ([f"mix of {n_mix}"] if n_mix > 1 else [])
        if c == 1:
            x, more = aged(x, rng)
            log += more
        elif c == 2:
            x, more = broken(x, rng)
            log += more
        x, more = benign(x, rng)
        out.append((x.astype(np.float32), c, log + more, n_mix))
    return out


def build(
    corpus: Path, out: Path, *, seed: int = DEFAULT_SEED, max_notes: int | None = None
) -> dict[str, Any]:
    """Write ``out/<split>.npz`` and ``out/condition.json`` (see the module docstring)."""
    from instrunet_condition.features import FEATURE_NAMES, condition_features

    from .nsynth import load_audio, load_split

    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, Any] = {}
    t0 = time.time()
    for split in SPLITS:
        notes = load_split(corpus / split)
        if max_notes is not None:
            notes = notes[:: max(1, len(notes) // max_notes)][:max_notes]
        audio = {n.note_str: load_audio(n, target_sr=SR) for n in notes}
        rows: list[list[float]] = []
        meta: dict[str, list[Any]] = {
            k: [] for k in ("y", "note", "instrument", "family", "mix", "degradations")
        }
        for i, n in enumerate(notes):
            rng = _rng(seed, n.note_str)
            others = [audio[m.note_str] for m in notes if m.instrument_str != n.instrument_str]
            pick = (
                [others[j] for j in rng.choice(len(others), size=min(8, len(others)), replace=False)]
                if others
                else []
            )
            sib = [audio[m.note_str] for m in notes if m.instrument_str == n.instrument_str and m is not n]
            for x, c, log, n_mix in make_clips(audio[n.note_str], pick, rng, siblings=sib):
                f = condition_features(x, sr=SR)
                if f is None:
                    continue
                rows.append([f[k] for k in FEATURE_NAMES])
                meta["y"].append(c)
                meta["note"].append(n.note_str)
                meta["instrument"].append(n.instrument_str)
                meta["family"].append(n.family_str)
                meta["mix"].append(n_mix)
                meta["degradations"].append("; ".join(log))
            if (i + 1) % 100 == 0:
                print(f"{split}: {i + 1}/{len(notes)} notes ({time.time() - t0:.0f} s)", file=sys.stderr)
        arrays: dict[str, Any] = {k: np.asarray(v) for k, v in meta.items()}
        np.savez_compressed(
            out / f"{split}.npz", x=np.asarray(rows, np.float64), names=np.asarray(FEATURE_NAMES), **arrays
        )
        y = np.asarray(meta["y"])
        counts[split] = {
            "notes": len(notes),
            "instruments": len({n.instrument_str for n in notes}),
            "clips": {c: int((y == k).sum()) for k, c in enumerate(CLASSES)},
        }
    info = {
        "seed": seed,
        "corpus": str(corpus),
        "classes": list(CLASSES),
        "features": list(FEATURE_NAMES),
        "counts": counts,
        "build_seconds": round(time.time() - t0, 1),
        "recipe": (__doc__ or "").split("Features (")[0].split("``build`` reads")[1].strip(),
    }
    (out / "condition.json").write_text(json.dumps(info, indent=1))
    return info


def load(data: Path, split: str) -> dict[str, np.ndarray]:
    """One split of a built condition corpus, with the classifier inputs under ``v``."""
    from instrunet_condition.features import FEATURE_NAMES, feature_vector

    p = data / f"{split}.npz"
    if not p.is_file():
        raise SystemExit(f"{p}: missing (run python -m training.condition build first)")
    with np.load(p, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    names = [str(s) for s in d["names"]]
    if tuple(names) != FEATURE_NAMES:
        raise SystemExit(
            f"{p}: built with features {names}, the extractor now has {list(FEATURE_NAMES)}; rebuild"
        )
    d["v"] = np.stack([feature_vector(dict(zip(names, row, strict=True))) for row in d["x"]]).astype(
        np.float32
    )
    return d


# ---------------------------------------------------------------- classifier


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    from .metrics import multiclass_metrics

    pred = p.argmax(1)
    m = multiclass_metrics(y, pred, labels=CLASSES)
    healthy = y == 0
    m["false_alarm_rate"] = float(np.mean(pred[healthy] != 0)) if healthy.any() else None
    m["n"] = int(len(y))
    return m


def _by_degradation(d: dict[str, np.ndarray], p: np.ndarray) -> dict[str, Any]:
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


def _examples(folder: Path, predict: Any) -> dict[str, Any]:
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
    test = _metrics(te["y"], pt)
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
        "valid": _metrics(va["y"], pv),
        "test": test,
        "test_by_degradation": _by_degradation(te, pt),
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
            "examples": _examples(examples, predict),
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


def write_report(folder: Path, m: dict[str, Any], hist: dict[str, list[float]]) -> None:
    """``metrics.json``, ``history.json``, ``confusion_matrix.png``, ``summary.md``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(m, indent=1, sort_keys=True))
    (folder / "history.json").write_text(json.dumps(hist, indent=1))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, split in zip(axes, ("valid", "test"), strict=True):
        cm = np.array(m[split]["confusion"], float)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(3):
            for j in range(3):
                ax.text(
                    j,
                    i,
                    f"{int(cm[i, j])}",
                    ha="center",
                    va="center",
                    color="white" if norm[i, j] > 0.5 else "black",
                )
        ax.set_xticks(range(3), CLASSES, rotation=20)
        ax.set_yticks(range(3), CLASSES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"condition {split} (acc {m[split]['accuracy']:.3f}, n={m[split]['n']})")
    fig.tight_layout()
    fig.savefig(folder / "confusion_matrix.png", dpi=90)
    plt.close(fig)
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
        m = _metrics(d["y"], p)
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

    from .nsynth import load_audio, load_split

    notes = load_split(corpus / "test")
    notes = notes[:: max(1, len(notes) // n_notes)][:n_notes]
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for n in notes:
        y = load_audio(n, target_sr=SR).astype(np.float64)
        for snr in (None, 20.0, 5.0):
            x = y if snr is None else _noise(rng, y, snr, pink=False)
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


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.condition", description="Condition corpus (degraded notes) and classifier."
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="degrade the notes of a corpus and compute their features")
    b.add_argument(
        "--corpus", type=Path, default=Path("data/corpus"), help="NSynth-format corpus (training.corpus)"
    )
    b.add_argument("--out", type=Path, default=Path("data/condition"), help="output folder")
    b.add_argument("--seed", type=int, default=DEFAULT_SEED)
    b.add_argument("--max-notes", type=int, default=None, help="at most N notes per split (small builds)")
    t = sub.add_parser("train", help="train, evaluate and report the condition classifier")
    t.add_argument("--data", type=Path, default=Path("data/condition"), help="built condition corpus")
    t.add_argument("--out", type=Path, default=Path("runs/condition"), help="run folder (condition.keras)")
    t.add_argument("--report", type=Path, default=Path("training/reports/condition/1.0.0"))
    t.add_argument("--version", default="1.0.0")
    t.add_argument("--epochs", type=int, default=150)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--width", type=int, default=64, help="units of the two hidden layers")
    t.add_argument("--examples", type=Path, default=Path("examples"), help="folder of clean recordings")
    c = sub.add_parser("praat", help="compare our HNR with Praat's (needs praat-parselmouth)")
    c.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    c.add_argument("--out", type=Path, default=Path("training/reports/condition/1.0.0/hnr_vs_praat.json"))
    e = sub.add_parser("evaluate", help="accuracy of a trained model on every split, train included")
    e.add_argument("--data", type=Path, default=Path("data/condition"))
    e.add_argument("--model", type=Path, default=Path("runs/condition/condition.keras"))
    e.add_argument("--out", type=Path, default=Path("training/reports/condition/1.0.0/splits.json"))
    args = ap.parse_args(argv)
    if args.cmd == "evaluate":
        r = evaluate(args.data, args.model, args.out)
        print(", ".join(f"{s} {r[s]['accuracy']:.4f}" for s in SPLITS))
    elif args.cmd == "praat":
        r = praat_check(args.corpus, args.out)
        print(
            f"{r['n']} comparisons: max |ours - Praat| {r['max_abs_diff_below_30db']:.2f} dB below 30 dB "
            f"(n={r['n_below_30db']}), {r['max_abs_diff_from_30db']:.2f} dB from 30 dB up (n={r['n_from_30db']})"
        )
    elif args.cmd == "build":
        info = build(args.corpus, args.out, seed=args.seed, max_notes=args.max_notes)
        print(json.dumps(info["counts"], indent=1))
    else:
        m = train(
            args.data,
            args.out,
            args.report,
            version=args.version,
            epochs=args.epochs,
            seed=args.seed,
            examples=args.examples,
            width=args.width,
        )
        t_ = m["test"]
        print(
            f"test accuracy {t_['accuracy']:.4f}, false-alarm rate on clean notes "
            f"{m['false_alarm']['test_clean_notes']['rate']:.4f}; report in {args.report}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
