"""Render real recorded multisample libraries (SFZ, GUS patches) with their own mapping.

SFZ libraries are played by `sfizz <https://sfz.tools/sfizz>`_ through its Python bindings
(``pysfizz``, BSD-2): the library's own key and velocity ranges, round robins, release
samples, loops, envelopes and controllers apply, as in a DAW. GUS ``.pat`` patches (Debian's
``freepats``) are first converted by :func:`pat_to_sfz` into WAV files plus an SFZ file with
the patch's own key ranges, root keys, loops and sustain mode, then played the same way.

A *clip* is a short performance rendered offline: one note of a chosen length (0.1-4 s),
a repeated note, or a short legato or detached phrase (:func:`plan_clip`), mono at the
corpus rate, trailing silence trimmed.
"""

from __future__ import annotations

import dataclasses
import math
import re
import struct
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

__all__ = ["Event", "Clip", "SfzPlayer", "plan_clip", "pat_to_sfz", "read_pat", "PatSample"]

BLOCK = 256


@dataclasses.dataclass(frozen=True)
class Event:
    """One note of a clip: onset and held duration in seconds, MIDI pitch and velocity."""

    onset_s: float
    pitch: int
    velocity: int
    hold_s: float


@dataclasses.dataclass(frozen=True)
class Clip:
    """A performance to render: its kind (``note``, ``repeat``, ``phrase``), events, controllers."""

    kind: str
    events: tuple[Event, ...]
    cc: tuple[tuple[int, int], ...] = ()

    @property
    def end_s(self) -> float:
        """Time of the last note-off, in seconds."""
        return max(e.onset_s + e.hold_s for e in self.events)


def plan_clip(
    rng: np.random.Generator,
    *,
    pitch: int,
    velocity: int,
    keys: Sequence[int],
    cc_ranges: Mapping[int, tuple[int, int]] | None = None,
    p_repeat: float = 0.2,
    p_phrase: float = 0.2,
) -> Clip:
    """A seeded musical clip around ``pitch``.

    * ``note`` (most clips): one note held 0.1-4 s (log-uniform, so staccato and plucks are as
      common as long notes);
    * ``repeat``: the same note 2-4 times, 0.08-0.5 s each, gaps 0.03-0.3 s;
    * ``phrase``: 3-5 notes of the instrument's playable ``keys`` within a fifth up or down,
      0.12-0.8 s each, legato (overlapping by up to 30 ms) or detached.

    Controllers in ``cc_ranges`` (``{cc: (lo, hi)}``) take a uniform value per clip
    (expression, vibrato depth, microphone blend where the library has them).
    """
    cc = tuple((int(c), int(rng.integers(lo, hi + 1))) for c, (lo, hi) in sorted((cc_ranges or {}).items()))
    u = rng.random()
    if u < p_repeat:
        n = int(rng.integers(2, 5))
        t, events = 0.0, []
        for _ in range(n):
            d = float(np.exp(rng.uniform(np.log(0.08), np.log(0.5))))
            v = int(np.clip(velocity + rng.integers(-12, 13), 1, 127))
            events.append(Event(t, pitch, v, d))
            t += d + float(rng.uniform(0.03, 0.3))
        return Clip("repeat", tuple(events), cc)
    if u < p_repeat + p_phrase and len(keys) > 1:
        near = [k for k in keys if abs(k - pitch) <= 7] or list(keys)
        n = int(rng.integers(3, 6))
        legato = rng.random() < 0.5
        t, events, p = 0.0, [], pitch
        for _ in range(n):
            d = float(rng.uniform(0.12, 0.8))
            v = int(np.clip(velocity + rng.integers(-15, 16), 1, 127))
            events.append(Event(t, p, v, d + (float(rng.uniform(0.0, 0.03)) if legato else 0.0)))
            t += d if legato else d + float(rng.uniform(0.02, 0.2))
            p = int(near[int(rng.integers(len(near)))])
        return Clip("phrase", tuple(events), cc)
    d = float(np.exp(rng.uniform(np.log(0.1), np.log(4.0))))
    return Clip("note", (Event(0.0, pitch, velocity, d),), cc)


class SfzPlayer:
    """One SFZ instrument loaded in sfizz, rendering clips offline.

    Parameters
    ----------
    path : Path
        The ``.sfz`` file.
    sample_rate : int
        Output rate in Hz.

    Raises
    ------
    ValueError
        When sfizz cannot load the file or it has no regions.
    """

    def __init__(self, path: Path | str, *, sample_rate: int) -> None:
        import pysfizz

        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self._synth = pysfizz.Synth(sample_rate=self.sample_rate, block_size=BLOCK)
        if not self._synth.load_sfz_file(self.path):
            raise ValueError(f"{self.path}: sfizz could not load this SFZ file (or it has no regions)")
        self.keys: list[int] = list(self._synth.playable_keys)
        if not self.keys:
            raise ValueError(f"{self.path}: no playable keys")

    def render(
        self, clip: Clip, *, max_s: float = 4.0, tail_s: float = 1.5, silence_db: float = -60.0
    ) -> np.ndarray:
        """Render ``clip``: mono float32 ``[n]``, at most ``max_s`` seconds.

        The render runs until ``tail_s`` after the last note-off (or until every voice has
        stopped), then trailing samples more than ``silence_db`` below the peak are trimmed.

        sfizz plays each sample's preloaded head at once and streams the rest from a
        background thread; the first notes on a sample can stop at the head (about 0.19 s of a
        44.1 kHz file) when that thread lags, as on a busy machine (measured: 25 of 40 first
        renders, with or without sfizz's freewheeling mode). A render that stops before the last
        note-off is therefore rendered again after a short wait and the longer one kept; a sample
        that is really shorter than the note gives the same length again and ends the retries.
        """
        y = self._render_once(clip, max_s=max_s, tail_s=tail_s, silence_db=silence_db)
        last_off = min(round(max_s * self.sample_rate), round(clip.end_s * self.sample_rate))
        for wait in (0.05, 0.2, 0.5):
            if len(y) >= last_off:
                break
            time.sleep(wait)
            again = self._render_once(clip, max_s=max_s, tail_s=tail_s, silence_db=silence_db)
            if len(again) <= len(y):
                break
            y = again
        return y

    def _render_once(self, clip: Clip, *, max_s: float, tail_s: float, silence_db: float) -> np.ndarray:
        s = self._synth._synth
        sr = self.sample_rate
        s.all_sound_off()
        for _ in range(4):  # let the previous clip's voices die
            s.render_block()
        for c, v in clip.cc:
            s.cc(0, c, v)
        # events may share a time (a chord, drum hits): order by time only (sorted is stable)
        ons = sorted(((round(e.onset_s * sr), 1, e) for e in clip.events), key=lambda x: x[0])
        offs = sorted(((round((e.onset_s + e.hold_s) * sr), 0, e) for e in clip.events), key=lambda x: x[0])
        queue = sorted(ons + offs, key=lambda x: (x[0], x[1]))
        end = min(round(max_s * sr), round((clip.end_s + tail_s) * sr))
        blocks: list[np.ndarray] = []
        qi, pos = 0, 0
        while pos < end:
            while qi < len(queue) and queue[qi][0] < pos + BLOCK:
                at, on, e = queue[qi]
                delay = max(0, at - pos)
                if on:
                    s.note_on(delay, e.pitch, e.velocity)
                else:
                    s.note_off(delay, e.pitch, 0)
                qi += 1
            left, right = s.render_block()
            blocks.append((np.asarray(left, np.float32) + np.asarray(right, np.float32)) * 0.5)
            pos += BLOCK
            if qi >= len(queue) and s.get_num_active_voices() == 0:
                break
        s.all_sound_off()
        y = np.concatenate(blocks)[:end] if blocks else np.zeros(0, np.float32)
        return _trim_tail(y, silence_db)


def _trim_tail(y: np.ndarray, silence_db: float) -> np.ndarray:
    peak = float(np.abs(y).max()) if len(y) else 0.0
    if peak <= 0 or not math.isfinite(peak):
        return y[:0]
    loud = np.flatnonzero(np.abs(y) > peak * 10 ** (silence_db / 20))
    return y[: int(loud[-1]) + 1].astype(np.float32)


# --------------------------------------------------------------------------- GUS patches


@dataclasses.dataclass(frozen=True)
class PatSample:
    """One wave of a GUS patch: 16-bit data and its mapping (frequencies in Hz)."""

    data: np.ndarray  # float32 in [-1, 1]
    sample_rate: int
    low_hz: float
    high_hz: float
    root_hz: float
    loop_start: int  # in samples
    loop_end: int
    looping: bool
    pingpong: bool
    sustain: bool


_PAT_MAGIC = (b"GF1PATCH110\x00", b"GF1PATCH100\x00")
_HEADER = 239  # file header 129 + instrument 63 + layer 47
_SAMPLE_HEADER = 96


def read_pat(path: Path | str) -> list[PatSample]:
    """The waves of a Gravis UltraSound ``.pat`` patch (first instrument, first layer).

    Raises
    ------
    ValueError
        When the file is not a GUS patch or is truncated.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:12] not in _PAT_MAGIC or len(raw) < _HEADER:
        raise ValueError(f"{path}: not a GUS patch (bad magic or too short)")
    n = raw[198]
    pos = _HEADER
    out: list[PatSample] = []
    for i in range(n):
        if pos + _SAMPLE_HEADER > len(raw):
            raise ValueError(f"{path}: truncated at wave {i} header")
        h = raw[pos : pos + _SAMPLE_HEADER]
        length, loop_start, loop_end = struct.unpack_from("<III", h, 8)
        (rate,) = struct.unpack_from("<H", h, 20)
        low, high, root = struct.unpack_from("<III", h, 22)
        modes = h[55]
        pos += _SAMPLE_HEADER
        if pos + length > len(raw):
            raise ValueError(f"{path}: truncated in wave {i} data")
        buf = raw[pos : pos + length]
        pos += length
        wide, unsigned = bool(modes & 1), bool(modes & 2)
        if wide:
            data = np.frombuffer(buf[: len(buf) // 2 * 2], dtype="<u2" if unsigned else "<i2").astype(
                np.float32
            )
            data = (data - 32768.0 if unsigned else data) / 32768.0
            loop_start, loop_end = loop_start // 2, loop_end // 2
        else:
            data = np.frombuffer(buf, dtype=np.uint8 if unsigned else np.int8).astype(np.float32)
            data = (data - 128.0 if unsigned else data) / 128.0
        if modes & 16:
            data = data[::-1].copy()
        out.append(
            PatSample(
                data,
                int(rate),
                low / 1000.0,
                high / 1000.0,
                root / 1000.0,
                int(loop_start),
                int(loop_end),
                bool(modes & 4),
                bool(modes & 8),
                bool(modes & 32),
            )
        )
    if not out:
        raise ValueError(f"{path}: no waves")
    return out


def _hz_to_key(hz: float) -> float:
    return 69.0 + 12.0 * math.log2(max(hz, 1e-3) / 440.0)


def pat_to_sfz(pat: Path | str, out_dir: Path | str, *, reach: int = 7) -> Path:
    """Convert a GUS patch to ``out_dir/<stem>.sfz`` plus one WAV per wave; returns the SFZ path.

    Each wave becomes a region spanning the keys of its frequency range (overlaps resolved in
    favour of the lower wave), limited to ``reach`` semitones beyond the lowest and highest
    recorded roots, keyed at its root frequency (``pitch_keycenter`` + ``tune``
    cents), looped as the patch says (``loop_sustain`` for sustaining patches, else
    ``loop_continuous`` with a slow decay); a 0.3 s release.
    """
    pat, out_dir = Path(pat), Path(out_dir)
    waves = sorted(read_pat(pat), key=lambda w: w.root_hz)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"// converted from {pat.name} by training.sfz.pat_to_sfz", "<global> ampeg_release=0.3"]
    # GUS patches usually stretch the outer waves over the whole keyboard; keep the keys within
    # a fifth of the recorded roots, where the instrument plausibly plays.
    lowest = round(_hz_to_key(waves[0].root_hz)) - reach
    highest = round(_hz_to_key(waves[-1].root_hz)) + reach
    last_hi = -1
    for i, w in enumerate(waves):
        wav = out_dir / f"{pat.stem}_{i:02d}.wav"
        sf.write(wav, w.data, w.sample_rate, subtype="PCM_16")
        lo = max(0, lowest, math.ceil(_hz_to_key(w.low_hz) - 1e-6), last_hi + 1)
        hi = min(127, highest, math.floor(_hz_to_key(w.high_hz) + 1e-6))
        if hi < lo:
            continue
        last_hi = hi
        root = _hz_to_key(w.root_hz)
        center = int(round(root))
        tune = int(round((center - root) * 100))
        region = [f"<region> sample={wav.name} lokey={lo} hikey={hi} pitch_keycenter={center} tune={tune}"]
        if w.looping and 0 <= w.loop_start < w.loop_end <= len(w.data):
            mode = "loop_sustain" if w.sustain else "loop_continuous"
            region.append(f"loop_mode={mode} loop_start={w.loop_start} loop_end={w.loop_end - 1}")
            if w.pingpong:
                region.append("loop_type=alternate")
            if not w.sustain:
                region.append("ampeg_decay=3 ampeg_sustain=0")
        else:
            region.append("loop_mode=no_loop")
        lines.append(" ".join(region))
    path = out_dir / f"{pat.stem}.sfz"
    path.write_text("\n".join(lines) + "\n")
    return path


_INCLUDE = re.compile(r'^[ \t]*#include[ \t]+"([^"]+)"[ \t]*$', re.MULTILINE)


def _inline_includes(path: Path, depth: int = 0) -> str:
    """``path``'s text with every ``#include "file"`` replaced by that file's text (relative to
    the including file's folder, as sfizz resolves them), recursively."""
    if depth > 16:
        raise ValueError(f"{path}: #include nested more than 16 deep")
    text = path.read_text(errors="replace")
    return _INCLUDE.sub(lambda m: _inline_includes(path.parent / m.group(1), depth + 1), text)


def patched_sfz(
    src: Path | str, out: Path | str, *, sample_dir: Path | str, replace: Mapping[str, str]
) -> Path:
    """A copy of ``src`` written to ``out`` whose samples resolve under ``sample_dir``.

    For libraries whose SFZ file names its sample folder differently from the repository's
    layout (``samples/`` versus ``Samples/``), or through a variable the player defines
    (``default_path=$sample_dir/``): each ``replace`` pair is substituted in the text and a
    ``default_path`` pointing at ``sample_dir`` is prepended. The file's ``#include`` lines
    are inlined first (they name files beside ``src``, which the copy no longer is).
    """
    text = _inline_includes(Path(src))
    for a, b in replace.items():
        text = text.replace(a, b)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"<control> default_path={Path(sample_dir).resolve()}/\n" + text)
    return out


def describe(player: SfzPlayer) -> dict[str, Any]:
    """Playable key range of a loaded instrument (for logs and the corpus summary)."""
    return {"sfz": str(player.path), "keys": [player.keys[0], player.keys[-1]], "n_keys": len(player.keys)}
