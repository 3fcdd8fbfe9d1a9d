"""Training and evaluation examples: random crops, ensembles, "other" sounds, augmentation.

Every example is audio → :func:`instrunet_core.features.batch_features` (the runtime's own
front end) → a ``(128, 128)`` float16 window with a target over
:data:`TARGETS` = the eight :data:`instrunet_core.labels.FAMILIES` then ``other`` (no
family is playing, but something sounds: drums, synths, speech, noise).

* Class balancing: a family is drawn uniformly, then an instrument of that family, then
  one of its notes, so rare families (vocal has two GM programs) weigh as much as the rest.
* Crops: a window-length crop within the clip, from the onset with probability
  ``onset_prob`` (the attack carries much of what tells a guitar from a piano), else from a
  random offset (evaluation sets use the clip's start, deterministic).
* Mixtures (``mix_prob``): 2-3 notes of *different* families summed at random gains
  (-12..0 dB), all starting together; every family is labelled present.
* Ensembles (``ensemble_prob``): 2-``max_parts`` parts, as a band or a chamber group plays:
  clips (real-library phrases and notes where the family has them) entering and leaving at
  their own times, or a chord (a third of the ensembles: the parts start within 30 ms of
  each other), a lead at 0 dB and the others 1-15 dB below, one room for all (the
  augmentation after mixing). Parts may share a family (two strings). Labels are per window
  (:func:`audible`): a family is present where one of its parts sounds within 20 dB of the
  whole mix for at least 0.14 s of the window; a part that the others bury is not labelled.
* Other sounds (``other_prob``): one or two clips of the split's "other" material
  (:mod:`training.others`: drums, organs, basses, synths, effects, speech, ambience) or
  generated noise (a share ``noise_share``), target ``other``. With ``other_under_prob`` an
  instrument example gets other material mixed in (drums under a band, noise under a solo)
  at -20..-3 dB; the families are labelled by the same audibility rule, and ``other`` only
  when no family remains audible. With ``fragment_prob`` an other clip from the split's files
  is cut to one or two of its sounding stretches (:func:`fragment`: a word, a hit, a short
  tone; at most 1.2 s each) with silence around them: the short spoken word or single drum
  hit that a window of continuous material does not show.
* Real libraries: with probability ``real_prob`` the instrument is drawn among the family's
  real recorded instruments (notes whose metadata names a ``library``), when it has any, so
  that a handful of real libraries weigh as much as the many SoundFont programs.
* Notes like music: with probability ``music_prob`` a SoundFont note (a 3 s held render) is
  reshaped into a clip (:func:`shape_note`): a note cut to 0.1-3 s with a release fade, a
  repeated note, or a short legato or detached phrase of the same instrument. Real-library
  clips are already played that way by the corpus builder.
* Chords: with probability ``chord_prob`` a SoundFont note sounds with one or two more notes of
  the same instrument (:data:`CHORD_INTERVALS` above or below it, where the instrument has that
  pitch), struck together at 0.5-1 of its level: a string section's, a choir's or a guitar's
  chord, labelled with the one family it is. (Real-library clips are lines already played, so
  they are left as they are.)
* Silence before the onset: with probability ``pre_silence_prob``, up to 0.5 s.
* Augmentation (:mod:`training.augment`, preset ``augment_preset``) after mixing, before the
  front end; with ``irs``, measured room and device impulse responses from the locked
  sources join it.
* ``keep_audio``: the example's waveform (22,050 Hz, int16) is kept beside its features,
  for teachers that take audio (:mod:`training.teacher`).

Generation is deterministic: chunk ``i`` of a set uses ``np.random.default_rng([seed, i])``,
whatever the number of worker processes. A spec whose new options are all off draws the
same random numbers, and so makes the same examples, as before they existed.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from instrunet_core.features import DEFAULT_FRONT_END, FrontEnd, batch_features
from instrunet_core.labels import FAMILIES
from instrunet_core.timeline import merge_ranges

from .nsynth import Note, load_audio, load_split
from .others import Other, load_others, noise
from .progress import progress_bar

__all__ = [
    "TARGETS",
    "OTHER",
    "ExampleSpec",
    "Examples",
    "make_examples",
    "cached_examples",
    "split_notes",
    "shape_note",
    "is_real",
    "audible",
]

CHUNK = 256
#: Semitones between a chord's first note and each other one (:func:`_chord`): thirds, fourths,
#: fifths, sixths and octaves either way, and now and then a second.
CHORD_INTERVALS = (3, 4, 5, 7, 8, 9, 12, -3, -4, -5, -7, -12, 2, -2)
#: Target columns: the eight families, then "other" (sound, but none of the eight).
TARGETS: tuple[str, ...] = (*FAMILIES, "other")
OTHER = len(FAMILIES)
#: Audibility (:func:`audible`): frame length, how far below the mix a part may sit, how long.
AUDIBLE_FRAME = 1024
AUDIBLE_BELOW_DB = 20.0
AUDIBLE_FLOOR_DB = 50.0  # below the loudest frame of the mix, nothing counts
AUDIBLE_MIN_S = 0.14


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
    ensemble_prob: float = 0.0  # chance of an ensemble of 2..max_parts parts (per-window labels)
    max_parts: int = 5
    other_prob: float = 0.0  # chance of an example of "other" sound only
    noise_share: float = 0.3  # of those: generated noise rather than the split's other clips
    other_under_prob: float = 0.0  # chance to mix other sound under an instrument example
    augment_preset: str = "default"  # training.augment.PRESETS
    keep_audio: bool = False  # keep the waveform (int16) beside the features
    # ((family, chance), ...): real_prob for those families instead (the others keep real_prob)
    real_prob_family: tuple[tuple[str, float], ...] = ()
    chord_prob: float = 0.0  # chance that a note sounds as a chord of its instrument (_chord)
    fragment_prob: float = 0.0  # chance that an other clip is cut to short sounding stretches

    def key(self) -> str:
        d = dataclasses.asdict(self)
        for name in ("real_prob_family", "chord_prob", "fragment_prob"):
            if not d[name]:  # so that the sets cached before the field keep their keys
                del d[name]
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


@dataclasses.dataclass
class Examples:
    """An example set: features ``X [n, 128, 128] float16``, targets ``Y [n, 9] float32``
    (:data:`TARGETS`), the clips each example was made of (``names``: note or other-clip names),
    and, with ``keep_audio``, the waveforms ``W [n, window_samples] int16``."""

    X: np.ndarray
    Y: np.ndarray
    names: list[list[str]]
    W: np.ndarray | None = None
    key: str = ""  # the cached set's folder name (spec and corpus listing), "" when not cached

    def __len__(self) -> int:
        return len(self.X)


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


def _place(y: np.ndarray, n: int, offset: int) -> np.ndarray:
    """``y`` on an ``n``-sample canvas starting at ``offset`` (negative: its start is cut)."""
    out = np.zeros(n, dtype=np.float32)
    a, b = max(offset, 0), min(n, offset + len(y))
    if b > a:
        out[a:b] = y[a - offset : b - offset]
    return out


def audible(parts: Sequence[np.ndarray], *, sr: int) -> np.ndarray:
    """Which of ``parts`` (equal-length, already at their gains) can be heard in their sum.

    A part is audible in a frame of :data:`AUDIBLE_FRAME` samples when its energy there is
    at most :data:`AUDIBLE_BELOW_DB` below the mix's and the mix's frame is within
    :data:`AUDIBLE_FLOOR_DB` of the mix's loudest frame; it is audible in the window when
    that holds for :data:`AUDIBLE_MIN_S` seconds. Returns a bool array, one per part.
    """
    P = np.stack(parts).astype(np.float64)
    n = P.shape[1] // AUDIBLE_FRAME * AUDIBLE_FRAME
    if n == 0:
        return np.zeros(len(parts), dtype=bool)
    e = (P[:, :n].reshape(len(parts), -1, AUDIBLE_FRAME) ** 2).mean(axis=2)
    mix = P[:, :n].sum(axis=0)
    em = (mix.reshape(-1, AUDIBLE_FRAME) ** 2).mean(axis=1)
    loud = em >= em.max() * 10 ** (-AUDIBLE_FLOOR_DB / 10) if em.max() > 0 else np.zeros_like(em, bool)
    ok = (e >= em * 10 ** (-AUDIBLE_BELOW_DB / 10)) & loud & (e > 0)
    need = max(1, int(round(AUDIBLE_MIN_S * sr / AUDIBLE_FRAME)))
    return ok.sum(axis=1) >= need


_NOTES: list[Note] = []
_OTHERS: list[Other] = []
_TABLE: dict[int, dict[int, list[int]]] = {}
_REAL: dict[int, dict[int, list[int]]] = {}
_FONT: dict[int, dict[int, list[int]]] = {}
_IRS: list[tuple[str, np.ndarray]] = []
_PITCHES: dict[int, dict[int, list[int]]] = {}  # instrument -> pitch -> indices into _NOTES


def _init(
    notes: list[Note], irs: list[tuple[str, np.ndarray]] | None = None, others: list[Other] | None = None
) -> None:
    """Worker initialiser: the split's notes are sent once per process, not once per chunk."""
    global _NOTES, _TABLE, _REAL, _FONT, _IRS, _OTHERS, _PITCHES
    _NOTES = notes
    pitches: dict[int, dict[int, list[int]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for i, n in enumerate(notes):
        pitches[n.instrument][n.pitch].append(i)
    _PITCHES = {k: dict(v) for k, v in pitches.items()}
    _TABLE = _by_family(notes)
    _REAL = _by_family(notes, real=True)
    _FONT = _by_family(notes, real=False)
    _IRS = list(irs or [])
    _OTHERS = list(others or [])


def _load(note: Note, sr: int) -> np.ndarray:
    """The note at ``sr`` through the core's loader (resampled by the serving resampler)."""
    return load_audio(note, target_sr=sr)


def _load_file(path: Path, sr: int) -> np.ndarray:
    """An other-sound clip at ``sr`` through the core's loader."""
    from instrunet_core.audio import load_audio as core_load

    return core_load(path, target_sr=sr)


def _clip(rng: np.random.Generator, spec: ExampleSpec, idx: int, sr: int) -> np.ndarray:
    """Note ``idx`` as played in an example: shaped like music (SoundFont notes, with
    ``music_prob``) and with silence before its onset (``pre_silence_prob``)."""
    note = _NOTES[idx]
    y = _load(note, sr)
    if spec.chord_prob > 0 and not is_real(note) and rng.random() < spec.chord_prob:
        y = _chord(rng, idx, y, sr)
    if spec.music_prob > 0 and not is_real(note) and rng.random() < spec.music_prob:
        same = _TABLE[note.label][note.instrument]
        others = [_load(_NOTES[same[int(rng.integers(len(same)))]], sr) for _ in range(2)]
        y = shape_note(rng, y, sr, others)
    if spec.pre_silence_prob > 0 and rng.random() < spec.pre_silence_prob:
        y = np.concatenate([np.zeros(int(rng.uniform(0.0, 0.5) * sr), np.float32), y])
    return y


def _chord(rng: np.random.Generator, idx: int, y: np.ndarray, sr: int) -> np.ndarray:
    """Note ``idx`` (audio ``y``) with one or two more notes of its instrument struck with it:
    each :data:`CHORD_INTERVALS` away, within 30 ms of it, at 0.5-1 of its level (the same
    note alone where its instrument has none of the drawn pitches)."""
    note = _NOTES[idx]
    by_pitch = _PITCHES.get(note.instrument, {})
    out = y.copy()
    for iv in rng.choice(CHORD_INTERVALS, size=int(rng.integers(1, 3)), replace=False):
        near = by_pitch.get(note.pitch + int(iv))
        if not near:
            continue
        z = _load(_NOTES[near[int(rng.integers(len(near)))]], sr)
        z = z * np.float32(rng.uniform(0.5, 1.0))
        at = int(rng.uniform(0.0, 0.03) * sr)
        if at + len(z) > len(out):
            out = np.pad(out, (0, at + len(z) - len(out)))
        out[at : at + len(z)] += z
    return out


def _pick(rng: np.random.Generator, spec: ExampleSpec, family: int) -> int:
    """A note of ``family``: among its real instruments with probability ``real_prob``."""
    chance = dict(spec.real_prob_family).get(FAMILIES[family], spec.real_prob)
    use_real = spec.real_prob > 0 and family in _REAL and family in _FONT and rng.random() < chance
    src = _REAL if use_real else (_FONT if spec.real_prob > 0 and family in _FONT else _TABLE)
    return _draw_note(rng, src, family)


def _families(rng: np.random.Generator, labels: Sequence[int], k: int, *, repeat: float = 0.0) -> list[int]:
    """``k`` families: the first uniform, the others distinct from it and from each other
    (each may repeat an earlier one with probability ``repeat``)."""
    first = labels[int(rng.integers(len(labels)))]
    out = [first]
    for _ in range(k - 1):
        if repeat > 0 and rng.random() < repeat:
            out.append(out[int(rng.integers(len(out)))])
            continue
        rest = [lab for lab in labels if lab not in out]
        if not rest:
            break
        out.append(rest[int(rng.integers(len(rest)))])
    return out


def _mixture(rng: np.random.Generator, spec: ExampleSpec, n: int, sr: int) -> tuple[list, list]:
    """One note, or with ``mix_prob`` 2-``max_mix`` notes of different families starting
    together (the random numbers are drawn in the order they always were)."""
    labels = sorted(_TABLE)
    first = labels[int(rng.integers(len(labels)))]
    k = 1
    if spec.mix_prob > 0 and rng.random() < spec.mix_prob:
        k = int(rng.integers(2, spec.max_mix + 1))
    rest = [lab for lab in labels if lab != first]
    fams = [first] + [int(x) for x in rng.choice(rest, size=min(k - 1, len(rest)), replace=False)]
    picks = [_pick(rng, spec, f) for f in fams]
    parts = []
    for m, idx in enumerate(picks):
        y = _crop(_clip(rng, spec, idx, sr), n, rng if spec.random_crop else None, spec.onset_prob)
        gain = 1.0 if m == 0 else 10 ** (rng.uniform(*spec.mix_gain_db) / 20)
        parts.append((gain * y, _NOTES[idx].label))
    return parts, [_NOTES[i].note_str for i in picks]


def _ensemble(rng: np.random.Generator, spec: ExampleSpec, n: int, sr: int) -> tuple[list, list]:
    """2..max_parts parts entering at their own times (or a chord), musical level ratios."""
    k = int(rng.integers(2, spec.max_parts + 1))
    fams = _families(rng, sorted(_TABLE), k, repeat=0.15)
    chord = rng.random() < 1 / 3
    t0 = int(rng.uniform(-0.5, 0.6) * n)
    parts, picks = [], []
    for m, f in enumerate(fams):
        idx = _pick(rng, spec, f)
        y = _clip(rng, spec, idx, sr)
        if chord:
            at = t0 + int(rng.uniform(-0.03, 0.03) * sr)
        else:
            at = int(rng.uniform(-0.8 * len(y), n - 0.1 * sr))
        gain = 1.0 if m == 0 else 10 ** (rng.uniform(-15.0, -1.0) / 20)
        parts.append((gain * _place(y, n, at), f))
        picks.append(_NOTES[idx].note_str)
    return parts, picks


def _other_clip(rng: np.random.Generator, spec: ExampleSpec, n: int, sr: int) -> tuple[np.ndarray, str]:
    """A window of "other" sound: one of the split's other clips, or generated noise."""
    if not _OTHERS or rng.random() < spec.noise_share:
        y = noise(rng, n, sr=sr)
        if rng.random() < 0.5:  # noise that swells or fades, not only a steady bed
            a, b = rng.uniform(0.05, 1.0, 2)
            y = y * np.linspace(a, b, n).astype(np.float32)
        return y, "noise"
    o = _OTHERS[int(rng.integers(len(_OTHERS)))]
    y = _load_file(o.path, sr)
    if spec.fragment_prob > 0 and rng.random() < spec.fragment_prob:
        y = fragment(rng, y, sr)
        return _place(y, n, int(rng.uniform(0.0, 0.6) * n)), o.name
    at = int(rng.uniform(-0.5 * max(len(y) - n, 0), 0.4 * n)) if spec.random_crop else 0
    return _place(y, n, at), o.name


#: :func:`fragment`: frames of 10 ms; a frame sounds within this many dB of the clip's loudest.
FRAGMENT_FLOOR_DB = 30.0


def fragment(rng: np.random.Generator, y: np.ndarray, sr: int) -> np.ndarray:
    """One or two sounding stretches of ``y`` (runs of 10 ms frames within
    :data:`FRAGMENT_FLOOR_DB` of its loudest frame, gaps under 80 ms closed, 0.1 s or longer
    where ``y`` has such, each cut to at most 1.2 s, with 5 ms fades), 0.1-0.6 s of silence
    between them; ``y`` itself when nothing in it sounds."""
    hop = max(1, sr // 100)
    m = len(y) // hop
    if m == 0:
        return y
    rms = np.sqrt(np.mean(np.square(y[: m * hop].reshape(m, hop), dtype=np.float64), axis=1))
    if not rms.max() > 0:
        return y
    on = rms > rms.max() * 10 ** (-FRAGMENT_FLOOR_DB / 20)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
    # [start, end) frames, gaps under 80 ms closed (one word, one hit); 0.1 s or more where there is such
    runs = merge_ranges(list(zip(edges[::2], edges[1::2], strict=True)), gap=7)
    runs = [r for r in runs if r[1] - r[0] >= 10] or runs
    fade = max(1, sr // 200)
    pieces: list[np.ndarray] = []
    for k in range(1 if rng.random() < 0.7 else 2):
        start, end = runs[int(rng.integers(len(runs)))]
        a = int(start) * hop
        b = min(int(end) * hop, a + int(1.2 * sr))
        z = y[a:b].astype(np.float32, copy=True)
        f = min(fade, len(z) // 2)
        if f:
            ramp = np.linspace(0.0, 1.0, f, dtype=np.float32)
            z[:f] *= ramp
            z[-f:] *= ramp[::-1]
        if k:
            pieces.append(np.zeros(int(rng.uniform(0.1, 0.6) * sr), np.float32))
        pieces.append(z)
    return np.concatenate(pieces)


def _example(
    rng: np.random.Generator, spec: ExampleSpec, n: int, sr: int, sweep_index: int | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One example's waveform (before augmentation), target row and clip names."""
    target = np.zeros(len(TARGETS), dtype=np.float32)
    if sweep_index is not None and spec.other_prob >= 1.0:  # sweep over the other clips
        o = _OTHERS[sweep_index % len(_OTHERS)]
        target[OTHER] = 1.0
        return _crop(_load_file(o.path, sr), n, None), target, [o.name]
    if sweep_index is not None:  # deterministic sweep over the notes (evaluation of singles)
        idx = sweep_index % len(_NOTES)
        y = _crop(_clip(rng, spec, idx, sr), n, rng if spec.random_crop else None, spec.onset_prob)
        target[_NOTES[idx].label] = 1.0
        return y, target, [_NOTES[idx].note_str]
    if spec.other_prob > 0 and rng.random() < spec.other_prob:
        y, name = _other_clip(rng, spec, n, sr)
        names = [name]
        if rng.random() < 0.3:
            z, name2 = _other_clip(rng, spec, n, sr)
            y = y + z * np.float32(10 ** (rng.uniform(-12, 0) / 20))
            names.append(name2)
        target[OTHER] = 1.0
        return y.astype(np.float32), target, names
    if spec.ensemble_prob > 0 and rng.random() < spec.ensemble_prob:
        parts, names = _ensemble(rng, spec, n, sr)
        judged = True
    else:
        parts, names = _mixture(rng, spec, n, sr)
        judged = False
    if spec.other_under_prob > 0 and rng.random() < spec.other_under_prob:
        z, name = _other_clip(rng, spec, n, sr)
        level = np.sqrt(np.mean(sum(p for p, _ in parts) ** 2)) + 1e-9
        z = z * np.float32(level / (np.sqrt(np.mean(z**2)) + 1e-9) * 10 ** (rng.uniform(-20, -3) / 20))
        parts.append((z, -1))
        names.append(name)
        judged = True
    if judged:
        heard = audible([p for p, _ in parts], sr=sr)
        for (_, f), h in zip(parts, heard, strict=True):
            if h and f >= 0:
                target[f] = 1.0
        if not target[:OTHER].any():
            target[OTHER] = 1.0
    else:
        for _, f in parts:
            target[f] = 1.0
    return sum(p for p, _ in parts).astype(np.float32), target, names


def _chunk(
    args: tuple[ExampleSpec, int, int, FrontEnd],
) -> tuple[np.ndarray, np.ndarray, list[list[str]], np.ndarray | None]:
    spec, chunk_index, count, fe = args
    rng = np.random.default_rng([spec.seed, chunk_index])
    aug = None
    if spec.augment:
        from .augment import PRESETS, augment

        aug = (augment, PRESETS[spec.augment_preset])
    n = fe.window_samples
    wins = np.zeros((count, n), dtype=np.float32)
    targets = np.zeros((count, len(TARGETS)), dtype=np.float32)
    names: list[list[str]] = []
    for j in range(count):
        sweep = None if spec.balanced else chunk_index * CHUNK + j
        mix, targets[j], picked = _example(rng, spec, n, fe.sample_rate, sweep)
        peak = float(np.abs(mix).max())
        if peak > 0:
            mix *= 0.9 / peak
        if aug is not None:
            mix = aug[0](mix, sr=fe.sample_rate, rng=rng, config=aug[1], irs=_IRS)
        wins[j] = mix
        names.append(picked)
    audio = (np.clip(wins, -1, 1) * 32767).astype(np.int16) if spec.keep_audio else None
    return batch_features(wins, fe=fe).astype(np.float16), targets, names, audio


def make_examples(
    notes: Sequence[Note],
    spec: ExampleSpec,
    *,
    workers: int | None = None,
    fe: FrontEnd = DEFAULT_FRONT_END,
    progress: bool = True,
    irs: Sequence[tuple[str, np.ndarray]] | None = None,
    others: Sequence[Other] = (),
    out: Path | None = None,
) -> Examples:
    """The example set of ``spec`` from ``notes`` (and ``others``, the split's other clips).

    ``irs``: impulse responses for the augmentation (required when ``spec.irs``). ``out``: a
    folder to write the arrays into as ``.npy`` files as they are made (then the returned
    arrays are memory-mapped from there, so a large set never sits in memory twice).
    """
    notes = list(notes)
    if not notes:
        raise ValueError(f"split {spec.split!r} has no notes")
    if spec.irs and not irs:
        raise ValueError(f"split {spec.split!r}: the spec asks for impulse responses but none were given")
    sweep_others = not spec.balanced and spec.other_prob >= 1.0
    if sweep_others and not others:
        raise ValueError(f"split {spec.split!r} has no other clips to sweep")
    n = spec.n if spec.balanced else min(spec.n, len(others) if sweep_others else len(notes))
    jobs = [(spec, i, min(CHUNK, n - i * CHUNK), fe) for i in range((n + CHUNK - 1) // CHUNK)]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    bar = progress_bar(len(jobs), desc=f"{spec.split} x{n}", unit="chunk", enabled=progress)
    shape = (fe.n_mels, fe.frames)
    X: np.ndarray
    Y: np.ndarray
    W: np.ndarray | None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        mm = np.lib.format.open_memmap
        X = mm(out / "X.npy", "w+", np.float16, (n, *shape))
        Y = mm(out / "Y.npy", "w+", np.float32, (n, len(TARGETS)))
        W = mm(out / "W.npy", "w+", np.int16, (n, fe.window_samples)) if spec.keep_audio else None
    else:
        X = np.zeros((n, *shape), np.float16)
        Y = np.zeros((n, len(TARGETS)), np.float32)
        W = np.zeros((n, fe.window_samples), np.int16) if spec.keep_audio else None
    names: list[list[str]] = []
    at = 0

    def take(r: tuple[np.ndarray, np.ndarray, list[list[str]], np.ndarray | None]) -> None:
        nonlocal at
        k = len(r[0])
        X[at : at + k], Y[at : at + k] = r[0], r[1]
        if W is not None and r[3] is not None:
            W[at : at + k] = r[3]
        names.extend(r[2])
        at += k
        bar.update(1)

    init_args = (notes, list(irs or []), list(others))
    if workers <= 1:
        _init(*init_args)
        for r in map(_chunk, jobs):
            take(r)
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init, initargs=init_args) as pool:
            for r in pool.map(_chunk, jobs):
                take(r)
    bar.close()
    for a in (X, Y, W):
        if isinstance(a, np.memmap):
            a.flush()
    return Examples(X, Y, names, W)


def _stamp(path: Path) -> str:
    """``size:mtime_ns`` of a file (``missing`` when it is not there: reading it will say so)."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def cached_examples(
    corpus: Path,
    spec: ExampleSpec,
    cache: Path,
    *,
    workers: int | None = None,
    progress: bool = True,
    sources: Path | None = None,
) -> Examples:
    """:func:`make_examples`, memoised on disk under ``cache`` by the spec and the corpus listing.

    A set is a folder ``<cache>/<split>-<spec key>-<listing>/`` of ``.npy`` arrays (read back
    memory-mapped) and ``names.json``. ``sources``: the mirror folder holding the locked
    impulse responses (when ``spec.irs``).
    """
    notes = split_notes(corpus, spec.split)
    others = load_others(Path(corpus) / spec.split) if (spec.other_prob or spec.other_under_prob) else []
    # the names, and each audio file's size and modification time: a corpus rendered again
    # under the same names (another font version, a fix to the renderer) is not served the old
    # renders' features (a tools audit); a copied corpus (new times) is computed again
    listing = hashlib.sha256(
        "\n".join(
            f"{name}:{_stamp(path)}"
            for name, path in [*((n.note_str, n.path) for n in notes), *((o.name, o.path) for o in others)]
        ).encode()
    ).hexdigest()[:12]
    path = Path(cache) / f"{spec.split}-{spec.key()}-{listing}"
    if (path / "names.json").is_file():
        return _read_set(path)
    irs = None
    if spec.irs:
        if sources is None:
            raise ValueError("impulse responses need the sources mirror folder (--sources)")
        from .augment import load_irs
        from .sources import ir_files

        irs = load_irs(ir_files(Path(sources)), sr=DEFAULT_FRONT_END.sample_rate)
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    ex = make_examples(notes, spec, workers=workers, progress=progress, irs=irs, others=others, out=tmp)
    (tmp / "spec.json").write_text(json.dumps(dataclasses.asdict(spec)))
    (tmp / "names.json").write_text(json.dumps(ex.names))  # written last: marks the set complete
    del ex
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return _read_set(path)


def _read_set(path: Path) -> Examples:
    W = np.load(path / "W.npy", mmap_mode="r") if (path / "W.npy").is_file() else None
    return Examples(
        np.load(path / "X.npy", mmap_mode="r"),
        np.load(path / "Y.npy"),
        json.loads((path / "names.json").read_text()),
        W,
        path.name,
    )
