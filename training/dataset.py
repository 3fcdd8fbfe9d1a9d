"""Training and evaluation examples: random crops, mixtures, augmentation, cached features.

Every example is audio → :func:`instrunet_core.features.batch_features` (the runtime's own
front end) → a ``(128, 128)`` float16 window with a multi-hot target over
:data:`instrunet_core.labels.FAMILIES`.

* Class balancing: a family is drawn uniformly, then an instrument of that family, then
  one of its notes, so rare families (vocal has two GM programs) weigh as much as the rest.
* Crops: a window-length crop within the 4 s note, from the note's onset with probability
  ``onset_prob`` (the attack carries much of what tells a guitar from a piano), else from a
  random offset (evaluation sets use the note's start, deterministic).
* Mixtures: with probability ``mix_prob`` an example sums 2-3 notes of *different*
  families at random gains (-12..0 dB), as a band would; its target has 2-3 ones.
* Real libraries: with probability ``real_prob`` the instrument is drawn among the family's
  real recorded instruments (notes whose metadata names a ``library``), when it has any, so
  that a handful of real libraries weigh as much as the many SoundFont programs.
* Notes like music: with probability ``music_prob`` a SoundFont note (a 3 s held render) is
  reshaped into a clip (:func:`shape_note`): a note cut to 0.1-3 s with a release fade, a
  repeated note, or a short legato or detached phrase of the same instrument. Real-library
  clips are already played that way by the corpus builder.
* Silence before the onset: with probability ``pre_silence_prob``, up to 0.5 s.
* Augmentation (:mod:`training.augment`) after mixing, before the front end; with
  ``irs``, measured room and device impulse responses from the locked sources join it.

Generation is deterministic: chunk ``i`` of a set uses ``np.random.default_rng([seed, i])``,
whatever the number of worker processes.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from instrunet_core.features import DEFAULT_FRONT_END, FrontEnd, batch_features
from instrunet_core.labels import FAMILIES

from .nsynth import Note, load_audio, load_split
from .progress import progress_bar

__all__ = ["ExampleSpec", "make_examples", "cached_examples", "split_notes", "shape_note", "is_real"]

CHUNK = 256


@dataclasses.dataclass(frozen=True)
class ExampleSpec:
    """What one example set is made of (the cache key)."""

    split: str
    n: int
    seed: int
    mix_prob: float = 0.0
    max_mix: int = 3
    random_crop: bool = True
    augment: bool = False
    balanced: bool = True
    mix_gain_db: tuple[float, float] = (-12.0, 0.0)
    onset_prob: float = 0.0  # random crops: chance that a note's crop starts at its onset
    real_prob: float = 0.0  # chance to draw among the family's real-library instruments
    music_prob: float = 0.0  # chance to reshape a SoundFont note into a musical clip
    pre_silence_prob: float = 0.0  # chance of up to 0.5 s of silence before the onset
    irs: bool = False  # augmentation convolves with the locked impulse responses

    def key(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def split_notes(corpus: Path, split: str) -> list[Note]:
    return load_split(Path(corpus) / split)


def _by_family(notes: Sequence[Note], *, real: bool | None = None) -> dict[int, dict[int, list[int]]]:
    """label → instrument → indices into ``notes`` (only real-library notes, or only the others,
    when ``real`` is given)."""
    table: dict[int, dict[int, list[int]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for i, n in enumerate(notes):
        if real is None or is_real(n) == real:
            table[n.label][n.instrument].append(i)
    return {k: dict(v) for k, v in table.items()}


def is_real(note: Note) -> bool:
    """Whether a note comes from a real recorded library (its metadata names one)."""
    return bool(note.extra.get("library"))


def _draw_note(rng: np.random.Generator, table: dict[int, dict[int, list[int]]], label: int) -> int:
    insts = sorted(table[label])
    inst = insts[int(rng.integers(len(insts)))]
    idx = table[label][inst]
    return idx[int(rng.integers(len(idx)))]


def _release(y: np.ndarray, hold: int, release: int) -> np.ndarray:
    """``y`` held for ``hold`` samples, then faded out exponentially (-60 dB) over ``release``."""
    out = y[: hold + release].copy()
    tail = out[hold:]
    if tail.size:
        tail *= np.exp(np.linspace(0.0, np.log(1e-3), tail.size)).astype(np.float32)
    return out


def shape_note(
    rng: np.random.Generator, y: np.ndarray, sr: int, others: Sequence[np.ndarray] = ()
) -> np.ndarray:
    """A held note ``y [n]`` reshaped into a short musical clip, at most 4 s.

    * half the time one note held 0.1-3 s (log-uniform), then a 0.05-0.5 s release fade;
    * a quarter: the note repeated 2-4 times, 0.08-0.5 s each, with 0.03-0.3 s gaps;
    * a quarter (when ``others`` are given: other notes of the same instrument): a 3-5 note
      phrase of 0.12-0.8 s notes, legato (overlapping by the release) or detached.
    """
    u = rng.random()
    limit = 4 * sr
    if u < 0.5 or (u >= 0.75 and not others):
        d = int(np.exp(rng.uniform(np.log(0.1), np.log(3.0))) * sr)
        return _release(y, d, int(rng.uniform(0.05, 0.5) * sr))[:limit]
    pieces: list[tuple[int, np.ndarray]] = []
    t = 0
    if u < 0.75:
        for _ in range(int(rng.integers(2, 5))):
            d = int(np.exp(rng.uniform(np.log(0.08), np.log(0.5))) * sr)
            pieces.append((t, _release(y, d, int(rng.uniform(0.03, 0.2) * sr))))
            t += d + int(rng.uniform(0.03, 0.3) * sr)
    else:
        legato = rng.random() < 0.5
        pool = [y, *others]
        for _ in range(int(rng.integers(3, 6))):
            src = pool[int(rng.integers(len(pool)))]
            d = int(rng.uniform(0.12, 0.8) * sr)
            pieces.append((t, _release(src, d, int(rng.uniform(0.05, 0.3) * sr))))
            t += d if legato else d + int(rng.uniform(0.02, 0.2) * sr)
    n = min(limit, max(a + len(p) for a, p in pieces))
    out = np.zeros(n, dtype=np.float32)
    for a, p in pieces:
        if a < n:
            seg = p[: n - a]
            out[a : a + len(seg)] += seg
    return out


def _crop(y: np.ndarray, n: int, rng: np.random.Generator | None, onset_prob: float = 0.0) -> np.ndarray:
    """``n`` samples of ``y``: from the start (``rng`` None, or with probability ``onset_prob``),
    else from a uniformly random offset; shorter notes are padded with silence."""
    if len(y) <= n:
        return np.pad(y, (0, n - len(y)))
    at_onset = rng is None or (onset_prob > 0 and rng.random() < onset_prob)
    start = 0 if at_onset or rng is None else int(rng.integers(0, len(y) - n + 1))
    return y[start : start + n]


_NOTES: list[Note] = []
_TABLE: dict[int, dict[int, list[int]]] = {}
_REAL: dict[int, dict[int, list[int]]] = {}
_FONT: dict[int, dict[int, list[int]]] = {}
_IRS: list[tuple[str, np.ndarray]] = []


def _init(notes: list[Note], irs: list[tuple[str, np.ndarray]] | None = None) -> None:
    """Worker initialiser: the split's notes are sent once per process, not once per chunk."""
    global _NOTES, _TABLE, _REAL, _FONT, _IRS
    _NOTES = notes
    _TABLE = _by_family(notes)
    _REAL = _by_family(notes, real=True)
    _FONT = _by_family(notes, real=False)
    _IRS = list(irs or [])


def _load(note: Note, sr: int) -> np.ndarray:
    """The note at ``sr`` through the core's loader (resampled by the serving resampler)."""
    return load_audio(note, target_sr=sr)


def _chunk(args: tuple[ExampleSpec, int, int, FrontEnd]) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    spec, chunk_index, count, fe = args
    notes, table = _NOTES, _TABLE
    rng = np.random.default_rng([spec.seed, chunk_index])
    labels_present = sorted(table)
    aug = None
    if spec.augment:
        from .augment import AugmentConfig, augment

        aug = (augment, AugmentConfig())
    n = fe.window_samples
    wins = np.zeros((count, n), dtype=np.float32)
    targets = np.zeros((count, len(FAMILIES)), dtype=np.float32)
    names: list[list[str]] = []
    for j in range(count):
        if spec.balanced:
            first = labels_present[int(rng.integers(len(labels_present)))]
            k = 1
            if spec.mix_prob > 0 and rng.random() < spec.mix_prob:
                k = int(rng.integers(2, spec.max_mix + 1))
            others = [lab for lab in labels_present if lab != first]
            fams = [first] + [int(x) for x in rng.choice(others, size=min(k - 1, len(others)), replace=False)]
            picks: list[int] = []
            for f in fams:
                use_real = spec.real_prob > 0 and f in _REAL and f in _FONT and rng.random() < spec.real_prob
                src = _REAL if use_real else (_FONT if spec.real_prob > 0 and f in _FONT else table)
                picks.append(_draw_note(rng, src, f))
        else:  # deterministic sweep over the notes (evaluation of singles)
            picks = [(chunk_index * CHUNK + j) % len(notes)]
        mix = np.zeros(n, dtype=np.float32)
        for m, idx in enumerate(picks):
            note = notes[idx]
            y = _load(note, fe.sample_rate)
            if spec.music_prob > 0 and not is_real(note) and rng.random() < spec.music_prob:
                same = table[note.label][note.instrument]
                siblings = [
                    _load(notes[same[int(rng.integers(len(same)))]], fe.sample_rate) for _ in range(2)
                ]
                y = shape_note(rng, y, fe.sample_rate, siblings)
            if spec.pre_silence_prob > 0 and rng.random() < spec.pre_silence_prob:
                y = np.concatenate([np.zeros(int(rng.uniform(0.0, 0.5) * fe.sample_rate), np.float32), y])
            y = _crop(y, n, rng if spec.random_crop else None, spec.onset_prob)
            gain = 1.0 if m == 0 else 10 ** (rng.uniform(*spec.mix_gain_db) / 20)
            mix += gain * y
            targets[j, notes[idx].label] = 1.0
        peak = float(np.abs(mix).max())
        if peak > 0:
            mix *= 0.9 / peak
        if aug is not None:
            mix = aug[0](mix, sr=fe.sample_rate, rng=rng, config=aug[1], irs=_IRS)
        wins[j] = mix
        names.append([notes[i].note_str for i in picks])
    return batch_features(wins, fe=fe).astype(np.float16), targets, names


def make_examples(
    notes: Sequence[Note],
    spec: ExampleSpec,
    *,
    workers: int | None = None,
    fe: FrontEnd = DEFAULT_FRONT_END,
    progress: bool = True,
    irs: Sequence[tuple[str, np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Features ``X [n, 128, 128] float16``, targets ``Y [n, 8] float32`` and note names per example.

    ``irs``: impulse responses for the augmentation (required when ``spec.irs``).
    """
    notes = list(notes)
    if not notes:
        raise ValueError(f"split {spec.split!r} has no notes")
    if spec.irs and not irs:
        raise ValueError(f"split {spec.split!r}: the spec asks for impulse responses but none were given")
    n = spec.n if spec.balanced else min(spec.n, len(notes))
    jobs = [(spec, i, min(CHUNK, n - i * CHUNK), fe) for i in range((n + CHUNK - 1) // CHUNK)]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    bar = progress_bar(len(jobs), desc=f"{spec.split} x{n}", unit="chunk", enabled=progress)
    xs, ys, names = [], [], []
    if workers <= 1:
        _init(notes, list(irs or []))
        results = map(_chunk, jobs)
        for r in results:
            xs.append(r[0])
            ys.append(r[1])
            names.extend(r[2])
            bar.update(1)  # noqa: E702
    else:
        with ProcessPoolExecutor(
            max_workers=workers, initializer=_init, initargs=(notes, list(irs or []))
        ) as pool:
            for r in pool.map(_chunk, jobs):
                xs.append(r[0])
                ys.append(r[1])
                names.extend(r[2])
                bar.update(1)  # noqa: E702
    bar.close()
    return np.concatenate(xs), np.concatenate(ys), names


def cached_examples(
    corpus: Path,
    spec: ExampleSpec,
    cache: Path,
    *,
    workers: int | None = None,
    progress: bool = True,
    sources: Path | None = None,
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """:func:`make_examples`, memoised on disk under ``cache`` by the spec and the corpus listing.

    ``sources``: the mirror folder holding the locked impulse responses (when ``spec.irs``).
    """
    notes = split_notes(corpus, spec.split)
    listing = hashlib.sha256("\n".join(n.note_str for n in notes).encode()).hexdigest()[:12]
    path = Path(cache) / f"{spec.split}-{spec.key()}-{listing}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["X"], z["Y"], json.loads(str(z["names"]))
    irs = None
    if spec.irs:
        if sources is None:
            raise ValueError("impulse responses need the sources mirror folder (--sources)")
        from .augment import load_irs
        from .sources import ir_files

        irs = load_irs(ir_files(Path(sources)), sr=DEFAULT_FRONT_END.sample_rate)
    X, Y, names = make_examples(notes, spec, workers=workers, progress=progress, irs=irs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, X=X, Y=Y, names=json.dumps(names), spec=json.dumps(dataclasses.asdict(spec)))
    os.replace(tmp, path)
    return X, Y, names
