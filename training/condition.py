"""The condition corpus (clean notes, deliberately degraded) and the condition classifier.

Usage::

    python -m training.condition build --corpus data/corpus --out data/condition [--seed 20261125]
    python -m training.condition train --data data/condition --out runs/condition \\
        --report training/reports/condition/1.0.0

``build`` reads every note of an NSynth-format corpus built by ``python -m training.corpus``
(splits by instrument: train / valid / test = every TimGM6mb instrument) and makes three
labelled clips of each, with a generator seeded by (seed, note):

* ``healthy`` - the clean note, or with probability 0.3 a mixture of it with 1-2 other
  notes of the same split (so that polyphony alone is not taken for damage); then the
  *benign* chain every clip gets (below);
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
import hashlib
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
    p_sig = np.mean(y[np.abs(y) > 0.01 * np.abs(y).max()] ** 2) if np.any(y) else 1.0
    n *= np.sqrt(p_sig / max(np.mean(n * n), 1e-20) / 10 ** (snr_db / 10))
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
        y = _pb(pb.Chorus(rate_hz=rng.uniform(0.6, 3.0), depth=rng.uniform(0.15, 0.4), mix=rng.uniform(0.4, 0.6),
                          centre_delay_ms=rng.uniform(5, 12), feedback=0.0), y)
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
            n = rng.integers(3, 11)
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
        y = _pb(pb.Reverb(room_size=rng.uniform(0.1, 0.5), wet_level=rng.uniform(0.05, 0.2), dry_level=1.0), y)
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


def make_clips(y: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator) -> list[tuple[np.ndarray, int, list[str], int]]:
    """The three labelled clips of one note: ``[(audio, class index, applied, n_mixed)]``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        The clean note.
    others : sequence of np.ndarray
        Candidate notes (same split) to mix in.
    rng : np.random.Generator
    """
    out = []
    for c in range(3):
        x = np.asarray(y, np.float64) / (np.abs(y).max() or 1.0)
        n_mix = 1
        if others and rng.random() < 0.3:
            for j in rng.choice(len(others), size=int(rng.integers(1, 3)), replace=False):
                o = np.asarray(others[j], np.float64)
                o = o[: x.size] if o.size >= x.size else np.pad(o, (0, x.size - o.size))
                x = x + rng.uniform(0.4, 1.0) * o / (np.abs(o).max() or 1.0)
                n_mix += 1
        log = [f"mix of {n_mix}"] if n_mix > 1 else []
        if c == 1:
            x, more = aged(x, rng)
            log += more
        elif c == 2:
            x, more = broken(x, rng)
            log += more
        x, more = benign(x, rng)
        out.append((x.astype(np.float32), c, log + more, n_mix))
    return out


def build(corpus: Path, out: Path, *, seed: int = DEFAULT_SEED, max_notes: int | None = None) -> dict[str, Any]:
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
        audio = {n.note_str: load_audio(n).astype(np.float32) for n in notes}
        rows: list[list[float]] = []
        meta: dict[str, list[Any]] = {k: [] for k in ("y", "note", "instrument", "family", "mix", "degradations")}
        for i, n in enumerate(notes):
            rng = _rng(seed, n.note_str)
            others = [audio[m.note_str] for m in notes if m.instrument_str != n.instrument_str]
            pick = [others[j] for j in rng.choice(len(others), size=min(8, len(others)), replace=False)] if others else []
            for x, c, log, n_mix in make_clips(audio[n.note_str], pick, rng):
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
        np.savez_compressed(out / f"{split}.npz", x=np.asarray(rows, np.float64), names=np.asarray(FEATURE_NAMES),
                            **{k: np.asarray(v) for k, v in meta.items()})
        y = np.asarray(meta["y"])
        counts[split] = {"notes": len(notes), "instruments": len({n.instrument_str for n in notes}),
                         "clips": {c: int((y == k).sum()) for k, c in enumerate(CLASSES)}}
    info = {"seed": seed, "corpus": str(corpus), "classes": list(CLASSES), "features": list(FEATURE_NAMES),
            "counts": counts, "build_seconds": round(time.time() - t0, 1),
            "recipe": (__doc__ or "").split("Features (")[0].split("``build`` reads")[1].strip()}
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
        raise SystemExit(f"{p}: built with features {names}, the extractor now has {list(FEATURE_NAMES)}; rebuild")
    d["v"] = np.stack([feature_vector(dict(zip(names, row, strict=True))) for row in d["x"]]).astype(np.float32)
    return d


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.condition",
                                 description="Condition corpus (degraded notes) and classifier.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="degrade the notes of a corpus and compute their features")
    b.add_argument("--corpus", type=Path, default=Path("data/corpus"), help="NSynth-format corpus (training.corpus)")
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
    t.add_argument("--examples", type=Path, default=Path("examples"), help="folder of clean recordings")
    args = ap.parse_args(argv)
    if args.cmd == "build":
        info = build(args.corpus, args.out, seed=args.seed, max_notes=args.max_notes)
        print(json.dumps(info["counts"], indent=1))
    else:
        m = train(args.data, args.out, args.report, version=args.version, epochs=args.epochs, seed=args.seed,
                  examples=args.examples)
        t_ = m["test"]
        print(f"test accuracy {t_['accuracy']:.4f}, false-alarm rate on clean notes "
              f"{m['false_alarm']['test_clean_notes']['rate']:.4f}; report in {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
