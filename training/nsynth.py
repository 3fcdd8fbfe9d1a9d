"""Loader for NSynth's json/wav split format.

A split directory holds ``examples.json`` (one object per note, keyed by ``note_str``)
and ``audio/<note_str>.wav``. This reads Google's NSynth splits (``nsynth-train``,
``nsynth-valid``, ``nsynth-test``) and the corpus that ``python -m training.corpus``
renders from SoundFonts alike.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core import audio as core_audio
from instrunet_core.errors import InstrunetError
from instrunet_core.labels import FAMILIES

__all__ = [
    "FAMILY_NAMES",
    "SOURCE_NAMES",
    "QUALITY_NAMES",
    "REQUIRED_KEYS",
    "Note",
    "NSynthError",
    "load_split",
    "load_audio",
    "note_str",
]

#: NSynth ``instrument_family`` ids 0..10.
FAMILY_NAMES: tuple[str, ...] = (
    "bass",
    "brass",
    "flute",
    "guitar",
    "keyboard",
    "mallet",
    "organ",
    "reed",
    "string",
    "synth_lead",
    "vocal",
)
#: NSynth ``instrument_source`` ids 0..2.
SOURCE_NAMES: tuple[str, ...] = ("acoustic", "electronic", "synthetic")
#: NSynth's ten note qualities, in bit order.
QUALITY_NAMES: tuple[str, ...] = (
    "bright",
    "dark",
    "distortion",
    "fast_decay",
    "long_release",
    "multiphonic",
    "nonlinear_env",
    "percussive",
    "reverb",
    "tempo-synced",
)
REQUIRED_KEYS: tuple[str, ...] = (
    "note",
    "note_str",
    "instrument",
    "instrument_str",
    "pitch",
    "velocity",
    "sample_rate",
    "qualities",
    "qualities_str",
    "instrument_family",
    "instrument_family_str",
    "instrument_source",
    "instrument_source_str",
)


class NSynthError(ValueError):
    """A split directory or one of its notes is malformed; the message names the file."""


def note_str(family: str, source: str, instrument_index: int, pitch: int, velocity: int) -> str:
    """NSynth note name, e.g. ``guitar_acoustic_010-066-100``."""
    return f"{family}_{source}_{instrument_index:03d}-{pitch:03d}-{velocity:03d}"


@dataclasses.dataclass(frozen=True)
class Note:
    """One NSynth note with its metadata and the path of its audio."""

    note_str: str
    path: Path
    note: int
    instrument: int
    instrument_str: str
    pitch: int
    velocity: int
    sample_rate: int
    family: int
    family_str: str
    source: int
    source_str: str
    qualities: tuple[int, ...]
    qualities_str: tuple[str, ...]
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> int:
        """Index of the family in :data:`instrunet_core.labels.FAMILIES` (the model's output order)."""
        return FAMILIES.index(self.family_str)


def _check(entry: Mapping[str, Any], key: str, where: str) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        raise NSynthError(f"{where}: note {key!r} lacks keys {missing}")
    if entry["note_str"] != key:
        raise NSynthError(f"{where}: note {key!r} has note_str {entry['note_str']!r}")
    fam, src = int(entry["instrument_family"]), int(entry["instrument_source"])
    if not 0 <= fam < len(FAMILY_NAMES) or FAMILY_NAMES[fam] != entry["instrument_family_str"]:
        raise NSynthError(
            f"{where}: note {key!r}: instrument_family {fam} does not match {entry['instrument_family_str']!r}"
        )
    if not 0 <= src < len(SOURCE_NAMES) or SOURCE_NAMES[src] != entry["instrument_source_str"]:
        raise NSynthError(
            f"{where}: note {key!r}: instrument_source {src} does not match {entry['instrument_source_str']!r}"
        )


def load_split(
    split_dir: str | Path,
    *,
    families: Iterable[str] | None = FAMILIES,
    sources: Iterable[str] | None = ("acoustic",),
    check_audio: bool = True,
) -> list[Note]:
    """Read one NSynth split directory.

    Parameters
    ----------
    split_dir : path
        Folder with ``examples.json`` and ``audio/``.
    families : iterable of str or None
        Keep these ``instrument_family_str`` values (default: the eight acoustic families the
        models classify); ``None`` keeps every family.
    sources : iterable of str or None
        Keep these ``instrument_source_str`` values (default ``("acoustic",)``); ``None`` keeps all.
    check_audio : bool
        Fail if a kept note's WAV file is missing.

    Returns
    -------
    list of Note, sorted by ``note_str``.
    """
    split_dir = Path(split_dir)
    meta = split_dir / "examples.json"
    if not meta.is_file():
        raise NSynthError(f"{meta}: no examples.json (is {split_dir} an NSynth split folder?)")
    try:
        data = json.loads(meta.read_text())
    except json.JSONDecodeError as e:
        raise NSynthError(f"{meta}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise NSynthError(f"{meta}: expected an object keyed by note_str")
    fam_keep = None if families is None else set(families)
    src_keep = None if sources is None else set(sources)
    notes = []
    for key in sorted(data):
        entry = data[key]
        _check(entry, key, str(meta))
        if fam_keep is not None and entry["instrument_family_str"] not in fam_keep:
            continue
        if src_keep is not None and entry["instrument_source_str"] not in src_keep:
            continue
        path = split_dir / "audio" / f"{key}.wav"
        if check_audio and not path.is_file():
            raise NSynthError(f"{path}: audio file missing for note {key!r}")
        extra = {k: v for k, v in entry.items() if k not in REQUIRED_KEYS}
        notes.append(
            Note(
                note_str=key,
                path=path,
                note=int(entry["note"]),
                instrument=int(entry["instrument"]),
                instrument_str=str(entry["instrument_str"]),
                pitch=int(entry["pitch"]),
                velocity=int(entry["velocity"]),
                sample_rate=int(entry["sample_rate"]),
                family=int(entry["instrument_family"]),
                family_str=str(entry["instrument_family_str"]),
                source=int(entry["instrument_source"]),
                source_str=str(entry["instrument_source_str"]),
                qualities=tuple(int(q) for q in entry["qualities"]),
                qualities_str=tuple(entry["qualities_str"]),
                extra=extra,
            )
        )
    return notes


def load_audio(note: Note, *, target_sr: int | None = None) -> np.ndarray:
    """The note's audio through the core's loader (:func:`instrunet_core.audio.load_audio`).

    Decoding, the mono mixdown and the resampler (``soxr``, quality ``"HQ"``) are the ones
    serving uses, so training, export and the runtime see the same samples. The file's rate
    must be the ``sample_rate`` that ``examples.json`` states.

    Parameters
    ----------
    note : Note
    target_sr : int, optional
        Output rate; default the note's own ``sample_rate`` (no resampling).

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
        Mono samples at ``target_sr``.

    Raises
    ------
    NSynthError
        The file cannot be decoded or its rate differs from ``examples.json``; the message
        starts with the file's path.
    """
    try:
        rate = core_audio.audio_info(note.path).sample_rate
        if rate != note.sample_rate:
            raise NSynthError(f"{note.path}: sample rate {rate} Hz, examples.json says {note.sample_rate} Hz")
        return core_audio.load_audio(note.path, target_sr=target_sr or note.sample_rate)
    except InstrunetError as e:
        raise NSynthError(str(e)) from e
