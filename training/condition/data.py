"""The condition corpus: clean notes of an NSynth-format corpus, deliberately degraded
(see :mod:`training.condition` for the recipe), with their features."""

from __future__ import annotations

import json
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from instrunet_condition import CLASSES

from instrunet_core.features import SAMPLE_RATE as SR

__all__ = [
    "CLASSES",
    "DEFAULT_SEED",
    "SPLITS",
    "SR",
    "aged",
    "broken",
    "benign",
    "make_clips",
    "build",
    "load",
]

DEFAULT_SEED = 20261125
SPLITS = ("train", "valid", "test")


# ---------------------------------------------------------------- degradations


def _pb(plugin: Any, y: np.ndarray) -> np.ndarray:
    out = plugin(y.astype(np.float32)[None, :], SR, reset=True)[0]
    return np.asarray(out, dtype=np.float64)[: y.size]


def noise(rng: np.random.Generator, y: np.ndarray, snr_db: float, *, pink: bool) -> np.ndarray:
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
        y = noise(rng, y, snr, pink=bool(rng.integers(2)))
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
            y = noise(rng, y, snr, pink=bool(rng.integers(2)))
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
        y = noise(rng, y, snr, pink=True)
        log.append(f"floor {snr:.0f} dB")
    m = np.abs(y).max()
    level = rng.uniform(0.3, 1.0)
    return (y / m * level if m > 0 else y), log


# ---------------------------------------------------------------- corpus


def rng_for(seed: int, key: str) -> np.random.Generator:
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

    from ..nsynth import load_audio, load_split

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
            rng = rng_for(seed, n.note_str)
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
