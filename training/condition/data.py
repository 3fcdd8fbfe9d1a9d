"""The condition corpus: windows of clean notes and phrases from an NSynth-format corpus (SoundFont
renders and real recorded libraries), deliberately aged or broken, with their features.

See :mod:`training.condition` for the recipe. Every random draw comes from a generator seeded by
(seed, the base's name), so a build is reproducible bit for bit from the same corpus.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from instrunet_condition import CHUNK_SAMPLES, CLASSES

from instrunet_core.features import SAMPLE_RATE as SR

__all__ = [
    "CLASSES",
    "DEFAULT_SEED",
    "SPLITS",
    "SR",
    "N",
    "aged",
    "broken",
    "benign",
    "looped_sustain",
    "make_base",
    "make_clips",
    "build",
    "build_recordings",
    "load",
]

DEFAULT_SEED = 20261204
#: The splits of the family corpus, each one kept whole: train fits, valid chooses (held-out
#: SoundFont instruments), test reports (TimGM6mb: every instrument unseen), dev reports on real
#: recorded libraries that training never hears.
SPLITS = ("train", "valid", "test", "dev")
#: One clip: one analysis window of the family classifier (2.949 s), as the analyzer judges.
N = CHUNK_SAMPLES
#: Families whose physics have the cue: detuned unison strings, worn hammers, leaking pads.
_STRUNG = ("string", "guitar", "keyboard")
_HAMMERED = ("keyboard", "mallet")
_BLOWN = ("reed", "flute", "brass")
#: Bases per instrument (SoundFont program, real instrument) and split; real instruments give more.
_PER_INSTRUMENT = {"train": (24, 120), "valid": (30, 30), "test": (24, 24), "dev": (24, 24)}


# ---------------------------------------------------------------- building blocks


def _pb(plugin: Any, y: np.ndarray) -> np.ndarray:
    out = plugin(y.astype(np.float32)[None, :], SR, reset=True)[0]
    return np.asarray(out, dtype=np.float64)[: y.size]


def _sounding_power(y: np.ndarray) -> float:
    loud = np.abs(y) > 0.01 * (np.abs(y).max() or 1.0)
    return float(np.mean(y[loud] ** 2)) if loud.any() else 1.0


def noise(rng: np.random.Generator, y: np.ndarray, snr_db: float, *, pink: bool) -> np.ndarray:
    """``y`` plus white or pink noise at ``snr_db`` below the power of its sounding samples."""
    n = rng.standard_normal(y.size)
    if pink:
        spec = np.fft.rfft(n)
        f = np.fft.rfftfreq(y.size, 1.0 / SR)
        spec[1:] /= np.sqrt(f[1:])
        spec[0] = 0
        n = np.fft.irfft(spec, y.size)
    n *= np.sqrt(_sounding_power(y) / max(float(np.mean(n * n)), 1e-20) / 10 ** (snr_db / 10))
    return y + n


def _shift(y: np.ndarray, cents: float) -> np.ndarray:
    """Varispeed copy detuned by ``cents`` (linear interpolation)."""
    ratio = 2 ** (cents / 1200.0)
    t = np.arange(y.size) * ratio
    return np.interp(t, np.arange(y.size), y, right=0.0)


def _varispeed(y: np.ndarray, cents: np.ndarray) -> np.ndarray:
    """``y`` played at a speed that deviates by ``cents[i]`` at output sample ``i`` (tape speed)."""
    t = np.concatenate([[0.0], np.cumsum(2 ** (cents[:-1] / 1200.0))])
    return np.interp(t, np.arange(y.size), y, right=0.0)


def _envelope(y: np.ndarray, ms: float = 20.0) -> np.ndarray:
    k = max(1, int(ms * 1e-3 * SR))
    return np.convolve(np.abs(y), np.ones(k) / k, mode="same")


def _onsets(y: np.ndarray) -> list[int]:
    """Samples where the 512-sample RMS rises by 9 dB or more (or the first sounding block)."""
    m = y.size // 512
    if m < 2:
        return [0]
    db = 10 * np.log10(np.mean(y[: m * 512].reshape(m, 512) ** 2, axis=1) + 1e-12)
    top = db.max()
    out = [int(np.argmax(db > top - 30)) * 512]
    for i in range(1, m):
        if db[i] - db[i - 1] >= 9 and db[i] > top - 30 and i * 512 - out[-1] > SR // 5:
            out.append(i * 512)
    return out


# ---------------------------------------------------------------- the degradations


def _tape(y: np.ndarray, rng: np.random.Generator, log: list[str]) -> np.ndarray:
    """Worn tape: wow and/or flutter (always), plus 0-2 of dulled highs and hiss."""
    t = np.arange(y.size) / SR
    cents = np.zeros(y.size)
    kind = rng.integers(3)
    if kind in (0, 2):
        c, f = rng.uniform(6, 18), rng.uniform(0.5, 3.0)
        cents += c * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3))
        log.append(f"wow {c:.0f} cents {f:.1f} Hz")
    if kind in (1, 2):
        c, f = rng.uniform(3, 8), rng.uniform(8, 16)
        jitter = np.convolve(rng.standard_normal(y.size), np.ones(400) / 400, mode="same")
        jitter *= c * 0.5 / (np.std(jitter) or 1.0)
        cents += c * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) + jitter
        log.append(f"flutter {c:.1f} cents {f:.0f} Hz")
    y = _varispeed(y, cents)
    for k in rng.permutation(2)[: rng.integers(0, 3)]:
        if k == 0:
            y = _dull(y, rng, log, lo=3500, hi=8000)
        else:
            snr = rng.uniform(28, 40)
            y = noise(rng, y, snr, pink=bool(rng.integers(2)))
            log.append(f"tape hiss {snr:.0f} dB SNR")
    return y


def _dull(
    y: np.ndarray, rng: np.random.Generator, log: list[str], *, lo: float = 1500, hi: float = 5000
) -> np.ndarray:
    """Dulled highs: a low-pass or a high shelf (aged strings, worn heads, a tired microphone)."""
    import pedalboard as pb

    if rng.random() < 0.5:
        fc = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        log.append(f"dulled highs (low-pass {fc:.0f} Hz)")
        return _pb(pb.LowpassFilter(cutoff_frequency_hz=fc), y)
    g = rng.uniform(-15, -8)
    log.append(f"dulled highs (shelf {g:.0f} dB)")
    return _pb(pb.HighShelfFilter(cutoff_frequency_hz=float(rng.uniform(lo, min(hi, 4000))), gain_db=g), y)


def _detuned(y: np.ndarray, rng: np.random.Generator, log: list[str]) -> np.ndarray:
    """A unison string out of tune: a copy 8-25 cents off, at 50-90 % of the level: beating."""
    c = rng.uniform(8, 25) * rng.choice([-1, 1])
    a = rng.uniform(0.5, 0.9)
    log.append(f"detuned string {c:+.0f} cents")
    return (y + a * _shift(y, c)) / (1 + a)


def _hammers(y: np.ndarray, rng: np.random.Generator, log: list[str]) -> np.ndarray:
    """Worn (hardened) hammers or mallets: a noisy thump and a harsher, brighter attack on each note."""
    import pedalboard as pb

    out = y.copy()
    peak = np.abs(y).max() or 1.0
    level = 10 ** (rng.uniform(-18, -6) / 20) * peak
    tau = rng.uniform(0.003, 0.012)
    hp = rng.uniform(800, 3000)
    bright = _pb(
        pb.HighShelfFilter(cutoff_frequency_hz=float(rng.uniform(1500, 3000)), gain_db=rng.uniform(6, 12)), y
    )
    n_att = int(0.08 * SR)
    for s in _onsets(y):
        n = min(int(8 * tau * SR), y.size - s)
        if n <= 0:
            continue
        burst = rng.standard_normal(n) * np.exp(-np.arange(n) / (tau * SR))
        out[s : s + n] += level * _pb(pb.HighpassFilter(cutoff_frequency_hz=hp), burst)
        m = min(n_att, y.size - s)
        fade = np.linspace(1.0, 0.0, m)
        out[s : s + m] += fade * (bright[s : s + m] - y[s : s + m])
    log.append(f"worn hammers (thump {20 * np.log10(level / peak):.0f} dB)")
    return out


def _leaky(y: np.ndarray, rng: np.random.Generator, log: list[str]) -> np.ndarray:
    """A leaking pad or valve: breath noise that sounds with the note (1-7 kHz), 12-22 dB below it."""
    import pedalboard as pb

    n = rng.standard_normal(y.size)
    n = _pb(pb.HighpassFilter(cutoff_frequency_hz=float(rng.uniform(800, 2000))), n)
    n = _pb(pb.LowpassFilter(cutoff_frequency_hz=float(rng.uniform(4000, 7000))), n)
    env = _envelope(y)
    env /= env.max() or 1.0
    breath = n * env
    db = rng.uniform(12, 22)
    breath *= np.sqrt(_sounding_power(y) / max(_sounding_power(breath), 1e-20) / 10 ** (db / 10))
    log.append(f"leaky pad (breath {db:.0f} dB down)")
    return y + breath


def _hum(y: np.ndarray, rng: np.random.Generator, log: list[str]) -> np.ndarray:
    f0 = rng.choice([50.0, 60.0])
    t = np.arange(y.size) / SR
    hum = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in (1, 2, 3))
    db = rng.uniform(20, 30)
    log.append(f"hum {f0:.0f} Hz {db:.0f} dB down")
    return y + np.sqrt(_sounding_power(y)) * 10 ** (-db / 20) * hum / np.sqrt(np.mean(hum**2))


def _hiss(y: np.ndarray, rng: np.random.Generator, log: list[str]) -> np.ndarray:
    snr = rng.uniform(22, 32)
    log.append(f"hiss {snr:.0f} dB SNR")
    return noise(rng, y, snr, pink=bool(rng.integers(2)))


def aged(y: np.ndarray, rng: np.random.Generator, family: str) -> tuple[np.ndarray, list[str]]:
    """A moderately aged version of ``y`` and the names of what was applied.

    One main cue: where the family has it (half of the time), detuned unison strings (string,
    guitar, keyboard), worn hammers (keyboard, mallet) or a leaking pad (reed, flute, brass);
    otherwise worn tape (wow / flutter, with dulled highs or hiss), mild hiss or mains hum. Then,
    half of the time, dulled highs, and a quarter of the time a faster decay (dead strings, a
    tired reed)."""
    log: list[str] = []
    own: list[Callable[[np.ndarray, np.random.Generator, list[str]], np.ndarray]] = []
    if family in _STRUNG:
        own.append(_detuned)
    if family in _HAMMERED:
        own.append(_hammers)
    if family in _BLOWN:
        own.append(_leaky)
    if own and rng.random() < 0.5:
        y = own[int(rng.integers(len(own)))](y, rng, log)
    else:
        generic = (_tape, _tape, _hiss, _hum)
        y = generic[int(rng.integers(len(generic)))](y, rng, log)
    if rng.random() < 0.5 and not any(s.startswith("dulled") for s in log):
        y = _dull(y, rng, log)
    if rng.random() < 0.25:
        tau = rng.uniform(0.5, 1.5)
        starts = _onsets(y) + [y.size]
        env = np.ones(y.size)
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            env[a:b] = np.exp(-np.arange(b - a) / SR / tau)
        y = y * env
        log.append(f"faster decay tau {tau:.1f} s")
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
                env = np.convolve(np.abs(y), np.ones(256) / 256, mode="same")
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


#: The benign noise floor: ``"default"`` adds pink noise at 38-60 dB SNR to 40 % of the clips;
#: ``"everywhere"`` (an experiment: real recordings always carry a floor, so it should not tell
#: the classes apart) adds it to 90 %, white or pink at random.
FLOORS = {"default": (0.4, False), "everywhere": (0.9, True)}


def benign(
    y: np.ndarray, rng: np.random.Generator, *, floor: str = "default"
) -> tuple[np.ndarray, list[str]]:
    """What any clean recording may carry: a little room, a microphone's colour, a band limit, a
    quiet noise floor (:data:`FLOORS`), any level (peak-normalised to 0.3-1.0)."""
    import pedalboard as pb

    log: list[str] = []
    if rng.random() < 0.3:
        y = _pb(
            pb.Reverb(room_size=rng.uniform(0.1, 0.5), wet_level=rng.uniform(0.05, 0.2), dry_level=1.0), y
        )
        log.append("room")
    if rng.random() < 0.3:
        f = float(np.exp(rng.uniform(np.log(150), np.log(6000))))
        y = _pb(pb.PeakFilter(cutoff_frequency_hz=f, gain_db=rng.uniform(-4, 4), q=rng.uniform(0.7, 2)), y)
        log.append("colour")
    if rng.random() < 0.15:
        fc = rng.uniform(7000, 10000)
        y = _pb(pb.LowpassFilter(cutoff_frequency_hz=fc), y)
        log.append(f"band limit {fc:.0f} Hz")
    p_floor, any_colour = FLOORS[floor]
    if rng.random() < p_floor:
        snr = rng.uniform(38, 60)
        pink = bool(rng.integers(2)) if any_colour else True
        y = noise(rng, y, snr, pink=pink)
        log.append(f"floor {snr:.0f} dB" + ("" if pink else " white"))
    m = np.abs(y).max()
    return (y / m * rng.uniform(0.3, 1.0) if m > 0 else y), log


def looped_sustain(
    y: np.ndarray, rng: np.random.Generator, *, sr: int = SR
) -> tuple[np.ndarray, float] | None:
    """The note ``y`` as an old sample-based instrument plays it: its attack as recorded, then one
    short stretch of its sustain repeated (a target of 4-60 ms, log-uniform; the length within
    30 % of it where the waveform best matches the loop's start, so that the seam is smooth and,
    for a pitched note, the loop close to a whole number of periods), under the note's own
    amplitude envelope. What a GUS patch or a small SoundFont does; the sound is
    clean, only the sustain's timbre stands still.

    Returns ``(audio, loop length in ms)``, or ``None`` when the note is too short to loop (less
    than 0.2 s after its attack point).
    """
    y = np.asarray(y, np.float64)
    peak = float(np.abs(y).max())
    if peak <= 0:
        return None
    on = int(np.flatnonzero(np.abs(y) > 0.05 * peak)[0])
    s = on + int(rng.uniform(0.03, 0.25) * sr)
    if s + int(0.2 * sr) > y.size:
        return None
    target = float(np.exp(rng.uniform(np.log(4.0), np.log(60.0)))) * sr / 1000
    lo, hi = max(8, int(target * 0.7)), min(int(target * 1.3) + 1, y.size - s - 40)
    if hi <= lo:
        return None
    ref = y[s - 32 : s + 32]
    lengths = np.arange(lo, hi)
    err = [float(np.sum((y[s + n - 32 : s + n + 32] - ref) ** 2)) for n in lengths]
    n_loop = int(lengths[int(np.argmin(err))])
    frame = 256
    env = np.sqrt(np.convolve(y**2, np.ones(frame) / frame, "same")) + 1e-9
    out = y.copy()
    rest = y.size - s
    out[s:] = np.tile(y[s : s + n_loop], rest // n_loop + 1)[:rest] * np.minimum(env[s:] / env[s], 1.5)
    return out, 1000.0 * n_loop / sr


# ---------------------------------------------------------------- clips


def rng_for(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def _trimmed(y: np.ndarray) -> np.ndarray:
    """``y`` without leading silence (below -50 dB of its peak)."""
    on = np.flatnonzero(np.abs(y) > 0.003 * (np.abs(y).max() or 1.0))
    return y[on[0] :] if on.size else y


def make_base(
    y: np.ndarray, siblings: Sequence[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """One window (:data:`N` samples) of music made of the note ``y`` and its instrument's
    ``siblings``, as an analysis window cuts it from a recording: ``(audio, kind)``.

    * ``note`` (or the whole clip, when it already is a phrase): the window starts up to
      1 s into it, or up to 0.5 s before its onset (the rest zero);
    * ``phrase`` (when the clip leaves more than 1.2 s of the window empty, or 45 % of the
      time): 2-5 notes of the instrument, each held 0.25-1.6 s, the next starting as the
      previous one is cut or released (overlapping by up to 0.15 s: legato).
    """
    y = np.asarray(_trimmed(np.asarray(y, np.float64)))
    y = y / (np.abs(y).max() or 1.0)
    short = y.size < N - int(1.2 * SR)
    if siblings and (short or rng.random() < 0.45):
        out = np.zeros(N)
        pos = -int(rng.uniform(0, 0.3) * SR)
        pool = [y, *[np.asarray(s, np.float64) for s in siblings]]
        first = True
        while pos < N:
            src = y if first else pool[int(rng.integers(len(pool)))]
            first = False
            src = _trimmed(src)
            src = src / (np.abs(src).max() or 1.0) * rng.uniform(0.6, 1.0)
            hold = int(rng.uniform(0.25, 1.6) * SR)
            rel = int(rng.uniform(0.03, 0.3) * SR)
            n = min(src.size, hold + rel)
            part = src[:n].copy()
            if n > hold:
                part[hold:] *= np.linspace(1.0, 0.0, n - hold)
            a, b = max(pos, 0), min(pos + n, N)
            if b > a:
                out[a:b] += part[a - pos : b - pos]
            pos += min(hold, n) - int(rng.uniform(0.0, 0.15) * SR)
            pos = max(pos, a + int(0.1 * SR))
        return out, "phrase"
    out = np.zeros(N)
    if rng.random() < 0.3:
        lead = int(rng.uniform(0, 0.5) * SR)
        seg = y[: N - lead]
        out[lead : lead + seg.size] = seg
    else:
        off = int(rng.uniform(0, min(1.0, max(0.0, (y.size - SR) / SR))) * SR)
        seg = y[off : off + N]
        out[: seg.size] = seg
    return out, "note"


def make_clips(
    base: np.ndarray,
    family: str,
    others: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    floor: str = "default",
) -> list[tuple[np.ndarray, int, list[str], int]]:
    """The three labelled clips of one base window: ``[(audio, class index, applied, n_mixed)]``.

    Each starts from ``base``, 30 % of the time mixed with 1-2 windows of other instruments
    (``others``, 0.3-1.0 of its level); then nothing (healthy), :func:`aged` or :func:`broken`;
    then :func:`benign`.
    """
    out = []
    for c in range(3):
        x = np.asarray(base, np.float64) / (np.abs(base).max() or 1.0)
        n_mix = 1
        if others and rng.random() < 0.3:
            for j in rng.choice(len(others), size=min(int(rng.integers(1, 3)), len(others)), replace=False):
                o = np.asarray(others[j], np.float64)
                x = x + rng.uniform(0.3, 1.0) * o / (np.abs(o).max() or 1.0)
                n_mix += 1
        log = [f"mix of {n_mix}"] if n_mix > 1 else []
        if c == 1:
            x, more = aged(x, rng, family)
            log += more
        elif c == 2:
            x, more = broken(x, rng)
            log += more
        x, more = benign(x, rng, floor=floor)
        out.append((x.astype(np.float32), c, log + more, n_mix))
    return out


# ---------------------------------------------------------------- the corpus


def _source(note: Any) -> str:
    """Library of a real recorded note, or ``soundfont:<key>``."""
    lib = note.extra.get("library")
    return str(lib) if lib else f"soundfont:{note.extra.get('soundfont', '?')}"


def _clean_clip(base: np.ndarray) -> tuple[np.ndarray, int, list[str], int]:
    """The clip of ``base`` alone, peak-normalised: healthy, nothing added, no mixture."""
    return (base / (np.abs(base).max() or 1.0)).astype(np.float32), 0, ["clean"], 1


def _row(
    x: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    c: int,
    log: list[str],
    note: Any,
    name: dict[str, str],
    more: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The corpus row of one window ``x`` of class ``c``, or ``None`` when it has no features.

    Parameters
    ----------
    x : np.ndarray
        The window's audio at :data:`SR`.
    probs : np.ndarray
        The family model's probabilities for it (over ``labels``).
    c : int
        Its class (an index of :data:`CLASSES`).
    log : list of str
        What was done to it (``["clean"]``: nothing).
    note : Note
        The base note it was made from.
    name : dict
        The key that names its clip (``note`` or ``recording``).
    more : dict, optional
        Further keys of this corpus.
    """
    from instrunet_condition.features import FEATURE_NAMES, condition_features

    f = condition_features(x, sr=SR)
    if f is None:
        return None
    return {
        "x": [f[k] for k in FEATURE_NAMES],
        "family_probs": probs.astype(np.float32),
        "leading": labels[int(np.argmax(probs))],
        "y": c,
        **name,
        "instrument": note.instrument_str,
        "family": note.family_str,
        "source": _source(note),
        "real": bool(note.extra.get("library")),
        **(more or {}),
        "clean": log == ["clean"],
        "degradations": "; ".join(log),
    }


def _plan(notes: Sequence[Any], split: str, seed: int, real_k: int | None = None) -> dict[str, list[Any]]:
    """The bases of each instrument: a seeded draw of at most ``_PER_INSTRUMENT`` notes (``real_k``
    for a real instrument when given), real clips of at least 0.3 s. The draw is a seeded order of
    the instrument's notes cut at that count, so a larger count keeps the smaller one's base notes
    (not their windows: phrases and mixtures draw from the whole plan)."""
    by: dict[str, list[Any]] = defaultdict(list)
    for n in notes:
        if n.extra.get("library") and float(n.extra.get("duration_s", 4.0)) < 0.3:
            continue
        by[n.instrument_str].append(n)
    sf_k, real_default = _PER_INSTRUMENT[split]
    real_k = real_default if real_k is None else real_k
    plan = {}
    for inst, ns in sorted(by.items()):
        k = real_k if ns[0].extra.get("library") else sf_k
        idx = rng_for(seed, f"plan:{split}:{inst}").permutation(len(ns))
        plan[inst] = [ns[i] for i in sorted(idx[: min(k, len(ns))])]
    return plan


def _pool(everyone: Sequence[Any], inst: str, split: str, seed: int) -> list[Any]:
    """A seeded draw of at most eight bases of instruments other than ``inst``: what the
    mixtures of ``inst``'s clips are made from."""
    rng = rng_for(seed, f"pool:{split}:{inst}")
    others = [n for n in everyone if n.instrument_str != inst]
    return [others[j] for j in rng.choice(len(others), min(8, len(others)), replace=False)] if others else []


def _save_rows(path: Path, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Write ``rows`` (see :func:`_row`) to the ``.npz`` file ``path``: the features ``x``, the
    feature ``names`` and one array per other key.

    Returns
    -------
    dict
        The arrays of the keys other than ``x``.

    Raises
    ------
    ValueError
        When there are no rows (a split whose instruments gave no notes to degrade).
    """
    from instrunet_condition.features import FEATURE_NAMES

    if not rows:
        raise ValueError(f"{path}: no rows to write (the split has no usable notes in the corpus)")
    arrays: dict[str, Any] = {k: np.asarray([r[k] for r in rows]) for k in rows[0] if k != "x"}
    np.savez_compressed(
        path, x=np.asarray([r["x"] for r in rows], np.float64), names=np.asarray(FEATURE_NAMES), **arrays
    )
    return arrays


def _instrument_rows(args: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Clips and features of one instrument's bases (a worker's job); ``args``: ``(split, bases,
    pool, seed, clean_copy, floor[, mel[, loops]])``: ``loops``, the share of the bases whose
    note is played with a :func:`looped_sustain` (each base's own draw, from a generator of its
    own, so every other draw is that of a build without loops; a phrase may still take a looped
    sibling note, so a base whose own note is not looped can differ from that build)."""
    from ..nsynth import load_audio

    split, bases, pool, seed, clean_copy, floor, *rest = args
    keep_mel = bool(rest and rest[0])
    loops = float(rest[1]) if len(rest) > 1 else 0.0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from instrunet_core import load_model

    family_model = load_model(intra_op_threads=1)
    audio = [load_audio(n, target_sr=SR) for n in bases]
    looped = [0.0] * len(bases)
    for i, n in enumerate(bases if loops > 0 else ()):
        r = rng_for(seed, f"loop:{split}:{n.note_str}")
        done = looped_sustain(audio[i], r) if r.random() < loops else None
        if done is not None:
            audio[i], looped[i] = np.asarray(done[0], np.float32), done[1]
    others = [load_audio(n, target_sr=SR) for n in pool]
    rows: list[dict[str, Any]] = []
    for i, n in enumerate(bases):
        rng = rng_for(seed, f"{split}:{n.note_str}")
        sib = [a for j, a in enumerate(audio) if j != i]
        base, kind = make_base(audio[i], sib, rng)
        picks = (
            [make_base(others[j], (), rng)[0] for j in rng.choice(len(others), 2, replace=False)]
            if others
            else []
        )
        clips = make_clips(base, n.family_str, picks, rng, floor=floor)
        if clean_copy:  # the recording alone: no mixture, nothing added (false alarms on clean audio)
            clips.append(_clean_clip(base))
        stacked = np.stack([x for x, *_ in clips])
        heard = family_model.predict_windows(stacked)
        mels = _mels(stacked) if keep_mel else [None] * len(clips)
        for (x, c, log, n_mix), probs, mel in zip(clips, heard, mels, strict=True):
            more = {"base": kind, "mix": n_mix} | ({"mel": mel} if keep_mel else {})
            if loops > 0:  # the loop's length in ms, 0 for a note played as recorded
                more["loop_ms"] = looped[i]
            row = _row(x, probs, family_model.labels, c, log, n, {"note": n.note_str}, more)
            if row is not None:
                rows.append(row)
    return rows


def _mels(windows: np.ndarray) -> np.ndarray:
    """The family classifier's input of each window (log-mel scaled to [0, 1], ``(B, n_mels,
    frames)``) as float16: what a spectrogram branch of the condition classifier would see."""
    from instrunet_core.features import batch_features

    return batch_features(windows).astype(np.float16)


#: Windows per recording in ``<split>_recordings.npz``.
RECORDING_WINDOWS = 4


def _recording_rows(args: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Recordings of one instrument (a worker's job): :data:`RECORDING_WINDOWS` bases played one
    after the other, each recording aged or broken as a whole (one draw of the cue for all its
    windows, as a real worn tape or a buzzing string is), then cut back into its windows;
    ``args``: ``(split, bases, pool, seed[, mel])``."""
    from instrunet_core import load_model

    from ..nsynth import load_audio

    split, bases, pool, seed, *rest = args
    keep_mel = bool(rest and rest[0])
    family_model = load_model(intra_op_threads=1)
    audio = [load_audio(n, target_sr=SR) for n in bases]
    others = [load_audio(n, target_sr=SR) for n in pool]
    rows: list[dict[str, Any]] = []
    k = RECORDING_WINDOWS
    for r in range(len(bases) // k):
        group = bases[r * k : (r + 1) * k]
        rng = rng_for(seed, f"{split}:recording:{group[0].note_str}")
        wins = []
        for i in range(k):
            j = r * k + i
            wins.append(make_base(audio[j], [a for q, a in enumerate(audio) if q != j], rng)[0])
        base = np.concatenate(wins)
        picks = (
            [
                np.concatenate([make_base(others[int(j)], (), rng)[0] for _ in range(k)])
                for j in rng.choice(len(others), 2)
            ]
            if others
            else []
        )
        clips = make_clips(base, group[0].family_str, picks, rng)
        clips.append(_clean_clip(base))
        for c_i, (x, c, log, _) in enumerate(clips):
            parts = [x[i * N : (i + 1) * N] for i in range(k)]
            stacked = np.stack(parts)
            heard = family_model.predict_windows(stacked)
            mels = _mels(stacked) if keep_mel else [None] * k
            for part, probs, mel in zip(parts, heard, mels, strict=True):
                row = _row(
                    part,
                    probs,
                    family_model.labels,
                    c,
                    log,
                    group[0],
                    {"recording": f"{group[0].note_str}:{c_i}"},
                    {"mel": mel} if keep_mel else None,
                )
                if row is not None:
                    rows.append(row)
    return rows


def _split_rows(
    corpus: Path,
    split: str,
    seed: int,
    make_rows: Callable[[tuple[Any, ...]], list[dict[str, Any]]],
    *,
    extra: tuple[Any, ...] = (),
    workers: int | None = None,
    max_notes: int | None = None,
    real_k: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
    """The rows of one split and its plan: each planned instrument's base notes (with the pool
    of the other instruments' notes) through ``make_rows((split, bases, pool, seed, *extra))``
    on ``workers`` processes (default: up to 2), with progress every 10 instruments; ``real_k``:
    bases per real instrument (:func:`_plan`)."""
    from ..nsynth import load_split

    plan = _plan(load_split(corpus / split), split, seed, real_k)
    if max_notes is not None:
        plan = {k: v[: max(1, max_notes // max(1, len(plan)))] for k, v in plan.items()}
    everyone = [n for ns in plan.values() for n in ns]
    jobs = [(split, bases, _pool(everyone, inst, split, seed), seed, *extra) for inst, bases in plan.items()]
    rows: list[dict[str, Any]] = []
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=workers or min(2, os.cpu_count() or 1)) as ex:
        for i, r in enumerate(ex.map(make_rows, jobs)):
            rows += r
            if (i + 1) % 10 == 0:
                print(f"{split}: {i + 1}/{len(jobs)} instruments ({time.time() - t0:.0f} s)", file=sys.stderr)
    return rows, plan


def build_recordings(
    corpus: Path,
    out: Path,
    *,
    seed: int = DEFAULT_SEED,
    workers: int | None = None,
    splits: Sequence[str] = ("valid", "test", "dev"),
    mel: bool = False,
) -> dict[str, Any]:
    """Write ``out/<split>_recordings.npz``: the same bases as :func:`build`, grouped into
    recordings of :data:`RECORDING_WINDOWS` windows (what a verdict over a file averages;
    ``mel``: keep each window's log-mel, as :func:`build`)."""
    counts = {}
    for split in splits:
        rows, _ = _split_rows(corpus, split, seed, _recording_rows, extra=(mel,), workers=workers)
        arrays = _save_rows(out / f"{split}_recordings.npz", rows)
        counts[split] = {"recordings": len(set(arrays["recording"].tolist())), "windows": len(rows)}
        print(f"{split}: {counts[split]}", file=sys.stderr)
    return counts


def build(
    corpus: Path,
    out: Path,
    *,
    seed: int = DEFAULT_SEED,
    max_notes: int | None = None,
    workers: int | None = None,
    splits: Sequence[str] = SPLITS,
    floor: str = "default",
    mel: bool = False,
    loops: float = 0.0,
    real_train_bases: int | None = None,
) -> dict[str, Any]:
    """Write ``out/<split>.npz`` and ``out/condition.json`` (see :mod:`training.condition`;
    ``floor``: the benign noise floor's recipe, :data:`FLOORS`; ``mel``: also keep each
    window's log-mel input of the family classifier, ``mel`` float16 ``(n, n_mels, frames)``;
    ``loops``: the share of the **train** bases played with a :func:`looped_sustain`, a benign
    trait of sample-based instruments, so that it is learnt as healthy; the other splits are
    built as recorded; ``real_train_bases``: bases per real recorded **train** instrument, at
    most as many as it has clips, instead of the default 120)."""
    if not 0.0 <= loops <= 1.0:
        raise ValueError(f"loops is a share from 0 to 1, got {loops}")
    if real_train_bases is not None and real_train_bases < 1:
        raise ValueError(f"real_train_bases is a count of at least 1, got {real_train_bases}")
    from instrunet_condition.features import FEATURE_NAMES

    out.mkdir(parents=True, exist_ok=True)
    info_path = out / "condition.json"
    info: dict[str, Any] = json.loads(info_path.read_text()) if info_path.is_file() else {}
    counts: dict[str, Any] = dict(info.get("counts", {}))
    t0 = time.time()
    for split in splits:
        if not (corpus / split / "examples.json").is_file():
            print(f"{split}: not in {corpus}, skipped", file=sys.stderr)
            continue
        extra = (split in ("test", "dev"), floor, mel, loops if split == "train" else 0.0)
        rows, plan = _split_rows(
            corpus,
            split,
            seed,
            _instrument_rows,
            extra=extra,
            workers=workers,
            max_notes=max_notes,
            real_k=real_train_bases if split == "train" else None,
        )
        everyone = [n for ns in plan.values() for n in ns]
        arrays = _save_rows(out / f"{split}.npz", rows)
        y = arrays["y"]
        counts[split] = {
            "bases": len(everyone),
            "instruments": len(plan),
            "real_instruments": len({n.instrument_str for n in everyone if n.extra.get("library")}),
            "sources": sorted({_source(n) for n in everyone}),
            "clips": {c: int(((y == k) & ~arrays["clean"]).sum()) for k, c in enumerate(CLASSES)},
            "clean_clips": int(arrays["clean"].sum()),
        }
    doc = sys.modules["training.condition"].__doc__ or ""
    from instrunet_core import load_model

    fm = load_model()
    info = {
        "seed": seed,
        "family_model": {"name": fm.name, "version": fm.version, "labels": list(fm.labels)},
        "corpus": str(corpus),
        "classes": list(CLASSES),
        "features": list(FEATURE_NAMES),
        "clip_samples": N,
        "floor": floor,
        "mel": mel,
        "loops": loops,
        "real_train_bases": real_train_bases or _PER_INSTRUMENT["train"][1],
        "max_notes": max_notes,
        "counts": counts,
        "build_seconds": round(time.time() - t0, 1)
        + (0 if set(splits) == set(SPLITS) else info.get("build_seconds", 0)),
        "recipe": doc.split("``build``")[1].split("``train``")[0].strip() if "``build``" in doc else "",
    }
    info_path.write_text(json.dumps(info, indent=1))
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
    lead = d["leading"] if "leading" in d else np.full(len(d["x"]), "")
    d["v"] = np.stack(
        [
            feature_vector(dict(zip(names, row, strict=True)), str(f))
            for row, f in zip(d["x"], lead, strict=True)
        ]
    ).astype(np.float32)
    return d
