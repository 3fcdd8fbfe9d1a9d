"""Test audio for the teacher's checks: clips with a known AudioSet answer, labelled instrument
windows from the project's own sources, and windows of no family (speech, drums, noise).

Everything is made here from what Debian and the lock file provide (``espeak-ng``, the FluidR3
SoundFont through tinysoundfont, the real libraries of ``training/sources.lock.json`` through
the project's SFZ player, the SoundFont corpus); nothing is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.features import DEFAULT_FRONT_END

__all__ = ["known_clips", "labelled_windows", "negative_windows", "SR", "WINDOW"]

SR = DEFAULT_FRONT_END.sample_rate
WINDOW = DEFAULT_FRONT_END.window_samples
_FONT_DIRS = ("/usr/share/sounds/sf2",)


def _find_font(name: str = "FluidR3_GM.sf2") -> Path | None:
    from training.corpus import default_cache

    for d in (*_FONT_DIRS, str(default_cache() / "soundfonts/root/usr/share/sounds/sf2")):
        if (Path(d) / name).is_file():
            return Path(d) / name
    return None


def _espeak(text: str, voice: str = "en") -> np.ndarray | None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    import soundfile as sf

    from instrunet_core.audio import load_audio

    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "speech.wav"
        subprocess.run([exe, "-v", voice, "-s", "150", "-w", str(wav), text], check=True, capture_output=True)
        y, sr = sf.read(wav, dtype="float32")
    return load_audio(y, sr, target_sr=SR)


def _piano(
    pitches: Sequence[int] = (60, 64, 67, 72, 67, 64, 60, 64, 67, 72), step: float = 0.4
) -> np.ndarray | None:
    """A phrase on FluidR3's grand piano (program 0): one note every ``step`` seconds.

    A phrase, not one note: on single synthetic piano notes YAMNet ranks ``Piano`` only 8th-18th
    (behind ``Music``, ``Silence`` for the decay, ``Electronic tuner``), see docs/teacher.md."""
    font = _find_font()
    if font is None:
        return None
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SR)
    synth.program_select(0, synth.sfload(str(font)), 0, 0)
    hop, hold = int(step * SR), int(0.95 * step * SR)
    parts = []
    for p in pitches:
        synth.noteon(0, p, 100)
        parts.append(np.frombuffer(synth.generate(hold), dtype=np.float32))
        synth.noteoff(0, p)
        parts.append(np.frombuffer(synth.generate(hop - hold), dtype=np.float32))
    parts.append(np.frombuffer(synth.generate(SR // 2), dtype=np.float32))
    y = np.concatenate(parts).reshape(-1, 2).mean(axis=1)
    return (0.9 * y / np.abs(y).max()).astype(np.float32)


def known_clips() -> dict[str, np.ndarray]:
    """Clips at 22,050 Hz whose AudioSet classes are known; a clip whose tool is missing
    (``espeak-ng``; the FluidR3 SoundFont, looked for in ``/usr/share/sounds/sf2`` and in
    ``training.corpus``'s cache, ``$INSTRUNET_CACHE``) is left out."""
    rng = np.random.default_rng(51773)
    t = np.arange(3 * SR) / SR
    clips: dict[str, np.ndarray | None] = {
        "speech_espeak": _espeak("The quick brown fox jumps over the lazy dog. Speech is not singing."),
        "piano_fluidr3_phrase": _piano(),
        "sine_440": 0.5 * np.sin(2 * np.pi * 440 * t),
        "white_noise": rng.uniform(-1, 1, len(t)),
        "silence": np.zeros(len(t)),
    }
    return {k: np.asarray(v, dtype=np.float32) for k, v in clips.items() if v is not None}


# --------------------------------------------------------------------------- labelled windows


def _first_window(y: np.ndarray) -> np.ndarray:
    w = np.zeros(WINDOW, np.float32)
    w[: min(len(y), WINDOW)] = y[:WINDOW]
    return w


def _real_windows(sources: Path, work: Path, per_instrument: int, seed: int = 0) -> list[dict[str, Any]]:
    """First windows of ``per_instrument`` notes of every instrument of every locked library."""
    import collections

    import soundfile as sf

    from training.corpus import plan_real, render_real_instrument
    from training.sources import load_lock, verify

    lock = load_lock()
    roots = verify(sources, lock, keys=[s["key"] for s in lock["sources"]])
    out: list[dict[str, Any]] = []
    for inst in plan_real(lock, first_id=10_000, counters=collections.Counter()):
        _, examples = render_real_instrument(inst, str(roots[inst.source]), str(work), per_instrument, seed)
        for name in sorted(examples):
            y, sr = sf.read(work / inst.split / "audio" / f"{name}.wav", dtype="float32")
            assert sr == SR
            out.append(
                {
                    "window": _first_window(y),
                    "family": inst.family,
                    "library": inst.source,
                    "instrument": inst.name,
                }
            )
    return out


def _corpus_windows(corpus: Path, per_instrument: int) -> list[dict[str, Any]]:
    """First windows of ``per_instrument`` notes (evenly spread) of each SoundFont instrument of a
    corpus split folder (``data/corpus/valid``)."""
    import collections

    import soundfile as sf

    files = sorted((corpus / "audio").glob("*.wav"))
    by_inst: dict[str, list[Path]] = collections.defaultdict(list)
    for f in files:
        by_inst[f.stem.rsplit("-", 2)[0]].append(f)
    out: list[dict[str, Any]] = []
    for inst, fs in sorted(by_inst.items()):
        pick = np.linspace(0, len(fs) - 1, min(per_instrument, len(fs))).round().astype(int)
        for i in sorted(set(pick.tolist())):
            y, sr = sf.read(fs[i], dtype="float32")
            assert sr == SR
            out.append(
                {
                    "window": _first_window(y),
                    "family": inst.split("_")[0],
                    "library": "soundfont",
                    "instrument": inst,
                }
            )
    return out


def labelled_windows(
    *, sources: Path | None, corpus: Path | None, work: Path, per_instrument: int = 6
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if sources is not None:
        out += _real_windows(sources, work, per_instrument)
    if corpus is not None:
        out += _corpus_windows(corpus, per_instrument * 3)
    return out


_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please leave your message after the tone, and we will call you back.",
    "Tomorrow the weather will be cloudy with a chance of rain in the afternoon.",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
)
_VOICES = ("en", "en-us", "de", "fr", "es")


def _drums(rng: np.random.Generator, seconds: float = 3.0) -> np.ndarray | None:
    """A random pattern on FluidR3's standard drum kit (bank 128): kick, snare, hats, toms, cymbals."""
    font = _find_font()
    if font is None:
        return None
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SR)
    synth.program_select(9, synth.sfload(str(font)), 128, 0, True)
    step = int(SR * rng.uniform(0.1, 0.25))
    keys = (35, 36, 38, 40, 42, 44, 46, 41, 45, 48, 49, 51)
    parts = []
    for _ in range(int(seconds * SR) // step):
        for k in rng.choice(keys, size=rng.integers(1, 3), replace=False):
            synth.noteon(9, int(k), int(rng.integers(60, 127)))
        parts.append(np.frombuffer(synth.generate(step), dtype=np.float32))
    y = np.concatenate(parts).reshape(-1, 2).mean(axis=1)
    return (0.9 * y / max(float(np.abs(y).max()), 1e-9)).astype(np.float32)


def _noise(rng: np.random.Generator, colour: str, seconds: float = 3.0) -> np.ndarray:
    n = int(seconds * SR)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    spec *= {"white": 1.0, "pink": f**-0.5, "brown": f**-1.0}[colour]
    y = np.fft.irfft(spec, n)
    return (rng.uniform(0.05, 0.5) * y / np.abs(y).max()).astype(np.float32)


def negative_windows(n_each: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """Windows of no family: speech (``espeak-ng``, several voices), drum patterns (FluidR3's
    kit), white / pink / brown noise. Speech or drums are left out when their tool is missing."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    if shutil.which("espeak-ng"):
        for i in range(n_each):
            y = _espeak(_SENTENCES[i % len(_SENTENCES)], voice=_VOICES[i % len(_VOICES)])
            if y is not None:
                out.append({"window": _first_window(y), "kind": "speech"})
    for _ in range(n_each if _find_font() else 0):
        y = _drums(rng)
        if y is not None:
            out.append({"window": _first_window(y), "kind": "drums"})
    for i in range(n_each):
        out.append({"window": _first_window(_noise(rng, ("white", "pink", "brown")[i % 3])), "kind": "noise"})
    return out


#: Rules for "none of the eight": (groups whose best score is the evidence for "none", whether
#: the evidence for an instrument adds the parents and ``Music`` / ``Musical instrument``).
