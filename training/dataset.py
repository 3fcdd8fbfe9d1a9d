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
* Augmentation (:mod:`training.augment`) after mixing, before the front end.

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
from typing import Any

import numpy as np
import soxr

from instrunet_core.features import DEFAULT_FRONT_END, FrontEnd, batch_features
from instrunet_core.labels import FAMILIES

from .nsynth import Note, load_audio, load_split

__all__ = ["ExampleSpec", "make_examples", "cached_examples", "split_notes"]

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

    def key(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def split_notes(corpus: Path, split: str) -> list[Note]:
    return load_split(Path(corpus) / split)


def _by_family(notes: Sequence[Note]) -> dict[int, dict[int, list[int]]]:
    """label → instrument → indices into ``notes``."""
    table: dict[int, dict[int, list[int]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for i, n in enumerate(notes):
        table[n.label][n.instrument].append(i)
    return {k: dict(v) for k, v in table.items()}


def _draw_note(rng: np.random.Generator, table: dict[int, dict[int, list[int]]], label: int) -> int:
    insts = sorted(table[label])
    inst = insts[int(rng.integers(len(insts)))]
    idx = table[label][inst]
    return idx[int(rng.integers(len(idx)))]


def _crop(y: np.ndarray, n: int, rng: np.random.Generator | None, onset_prob: float = 0.0) -> np.ndarray:
    """``n`` samples of ``y``: from the start (``rng`` None, or with probability ``onset_prob``),
    else from a uniformly random offset; shorter notes are padded with silence."""
    if len(y) <= n:
        return np.pad(y, (0, n - len(y)))
    at_onset = rng is None or (onset_prob > 0 and rng.random() < onset_prob)
    start = 0 if at_onset else int(rng.integers(0, len(y) - n + 1))
    return y[start : start + n]


_NOTES: list[Note] = []
_TABLE: dict[int, dict[int, list[int]]] = {}


def _init(notes: list[Note]) -> None:
    """Worker initialiser: the split's notes are sent once per process, not once per chunk."""
    global _NOTES, _TABLE
    _NOTES = notes
    _TABLE = _by_family(notes)


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
            picks = [_draw_note(rng, table, f) for f in fams]
        else:  # deterministic sweep over the notes (evaluation of singles)
            picks = [(chunk_index * CHUNK + j) % len(notes)]
        mix = np.zeros(n, dtype=np.float32)
        for m, idx in enumerate(picks):
            y = load_audio(notes[idx])
            if notes[idx].sample_rate != fe.sample_rate:  # e.g. real NSynth at 16 kHz
                y = soxr.resample(y, notes[idx].sample_rate, fe.sample_rate, quality="HQ").astype(np.float32)
            y = _crop(y, n, rng if spec.random_crop else None, spec.onset_prob)
            gain = 1.0 if m == 0 else 10 ** (rng.uniform(*spec.mix_gain_db) / 20)
            mix += gain * y
            targets[j, notes[idx].label] = 1.0
        peak = float(np.abs(mix).max())
        if peak > 0:
            mix *= 0.9 / peak
        if aug is not None:
            mix = aug[0](mix, sr=fe.sample_rate, rng=rng, config=aug[1])
        wins[j] = mix
        names.append([notes[i].note_str for i in picks])
    return batch_features(wins, fe=fe).astype(np.float16), targets, names


def make_examples(
    notes: Sequence[Note], spec: ExampleSpec, *, workers: int | None = None, fe: FrontEnd = DEFAULT_FRONT_END,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Features ``X [n, 128, 128] float16``, targets ``Y [n, 8] float32`` and note names per example."""
    notes = list(notes)
    if not notes:
        raise ValueError(f"split {spec.split!r} has no notes")
    n = spec.n if spec.balanced else min(spec.n, len(notes))
    jobs = [(spec, i, min(CHUNK, n - i * CHUNK), fe) for i in range((n + CHUNK - 1) // CHUNK)]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    bar = _bar(len(jobs), f"{spec.split} x{n}", progress)
    xs, ys, names = [], [], []
    if workers <= 1:
        _init(notes)
        results = map(_chunk, jobs)
        for r in results:
            xs.append(r[0]); ys.append(r[1]); names.extend(r[2]); bar.update(1)  # noqa: E702
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init, initargs=(notes,)) as pool:
            for r in pool.map(_chunk, jobs):
                xs.append(r[0]); ys.append(r[1]); names.extend(r[2]); bar.update(1)  # noqa: E702
    bar.close()
    return np.concatenate(xs), np.concatenate(ys), names


def cached_examples(
    corpus: Path, spec: ExampleSpec, cache: Path, *, workers: int | None = None, progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """:func:`make_examples`, memoised on disk under ``cache`` by the spec and the corpus listing."""
    notes = split_notes(corpus, spec.split)
    listing = hashlib.sha256("\n".join(n.note_str for n in notes).encode()).hexdigest()[:12]
    path = Path(cache) / f"{spec.split}-{spec.key()}-{listing}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["X"], z["Y"], json.loads(str(z["names"]))
    X, Y, names = make_examples(notes, spec, workers=workers, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, X=X, Y=Y, names=json.dumps(names), spec=json.dumps(dataclasses.asdict(spec)))
    os.replace(tmp, path)
    return X, Y, names


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="chunk")
