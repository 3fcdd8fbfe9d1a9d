"""Real corpus windows for parity checks and reference files (numpy only, no TensorFlow)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instrunet_core.features import DEFAULT_FRONT_END, FrontEnd, batch_features

from . import ExportError

__all__ = ["Windows", "corpus_windows"]


@dataclass(frozen=True)
class Windows:
    """The parity inputs of an export: log-mel windows cut from a corpus split
    (:func:`corpus_windows`), or the feature rows of a features-input model.

    Attributes
    ----------
    x : np.ndarray [shape=(n, n_mels, frames, 1), (n, window_samples) or (n, n_features), dtype=float32]
        Log-mel windows, NHWC as the network takes them; window audio (a waveform-input
        model); or feature rows.
    labels : np.ndarray [shape=(n,), dtype=int64]
        Index of each window's family in the model's labels (-1 when the model lacks it).
    n_notes : int
        Distinct notes the windows come from.
    """

    x: np.ndarray
    labels: np.ndarray
    n_notes: int


def corpus_windows(
    corpus: str | Path,
    split: str,
    n: int,
    *,
    labels: Sequence[str],
    fe: FrontEnd = DEFAULT_FRONT_END,
    audio: bool = False,
) -> Windows:
    """``n`` deterministic windows of the notes of ``corpus/split``.

    With at least ``n`` notes, ``n`` notes evenly spread over the (sorted) split are taken,
    each at its start (the first ``fe.window_samples``). With fewer notes, every note gives
    ``ceil(n / notes)`` windows at evenly spaced offsets (the first at 0), taken offset by
    offset so that every note contributes its first window. ``audio``: the windows' samples
    ``[n, window_samples]`` (for a waveform-input model) rather than their log-mel features.
    """
    from training.nsynth import NSynthError, load_audio, load_split

    split_dir = Path(corpus) / split
    try:
        notes = load_split(split_dir)
    except NSynthError as e:
        raise ExportError(str(e)) from None
    if not notes:
        raise ExportError(f"{split_dir}: no notes of the instrument families to check parity on")
    if n < 1:
        raise ExportError(f"need at least one parity window, got n={n}")
    ws = fe.window_samples
    if len(notes) >= n:
        chosen = [notes[i] for i in np.linspace(0, len(notes) - 1, n).round().astype(int)]
        per_note = 1
    else:
        chosen = notes
        per_note = math.ceil(n / len(notes))
    try:
        clips = [load_audio(note, target_sr=fe.sample_rate) for note in chosen]
    except NSynthError as e:
        raise ExportError(str(e)) from None
    windows: list[np.ndarray] = []
    labs: list[int] = []
    for j in range(per_note):
        for note, y in zip(chosen, clips, strict=True):
            if len(windows) == n:
                break
            room = max(len(y) - ws, 0)
            off = 0 if per_note == 1 else int(round(j * room / (per_note - 1)))
            w = y[off : off + ws]
            windows.append(np.pad(w, (0, ws - len(w))) if len(w) < ws else w)
            labs.append(labels.index(note.family_str) if note.family_str in labels else -1)
    stacked = np.stack(windows).astype(np.float32)
    x = stacked if audio else batch_features(stacked, fe=fe)[..., None]
    return Windows(x=x, labels=np.asarray(labs, dtype=np.int64), n_notes=len(chosen))
