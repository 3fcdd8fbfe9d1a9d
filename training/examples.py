"""Render the bundled example recordings in ``examples/`` from the MIT-licensed FluidR3 font.

Usage::

    python -m training.examples --out examples
    python -m training.examples --out /tmp/examples --stems   # also the ensemble's parts, alone and in pairs

* ``solo_flute.wav`` - a flute phrase, 32 kHz mono 16-bit (exercises resampling);
* ``ensemble.flac`` - 24 s, 22.05 kHz stereo: piano alone, then strings join, then a trumpet
  melody over the strings, then a flute over piano and trumpet, ending in silence (a
  timeline with overlapping instruments and a silent tail).

The score below is the ground truth the README's demo is read against. ``--stems`` also writes
the ensemble's parts alone and every two of them together (``ensemble_<part>[+<part>].flac``,
the same score and level rule): which part, or which meeting of parts, a wrong family comes from.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from .corpus import default_cache, fetch_soundfonts

# (channel, program, family)
PARTS = {
    "piano": (0, 0, "keyboard"),
    "strings": (1, 48, "string"),
    "trumpet": (2, 56, "brass"),
    "flute": (3, 73, "flute"),
}

# (start_s, duration_s, part, pitches, velocity)
ENSEMBLE: list[tuple[float, float, str, tuple[int, ...], int]] = []
for bar, chord in enumerate([(48, 55, 64), (45, 52, 60), (41, 48, 57), (43, 50, 59)] * 4):
    if bar < 4 or bar >= 10:  # piano: bars 0-3 and 10-15 (0-8 s, 20-24 s... clipped below)
        ENSEMBLE.append((bar * 2.0, 1.9, "piano", chord, 90))
    if 2 <= bar < 10:  # strings: 4-20 s
        ENSEMBLE.append((bar * 2.0, 2.0, "strings", tuple(p + 12 for p in chord[1:]), 80))
_TRUMPET = [67, 69, 71, 72, 71, 69, 67, 65, 64, 65, 67, 64]
for i, p in enumerate(_TRUMPET):  # trumpet: 8-20 s
    ENSEMBLE.append((8.0 + i, 0.9, "trumpet", (p,), 100))
_FLUTE = [79, 81, 83, 84, 83, 81, 79, 76]
for i, p in enumerate(_FLUTE):  # flute: 14-22 s
    ENSEMBLE.append((14.0 + i, 0.95, "flute", (p,), 95))
ENSEMBLE = [e for e in ENSEMBLE if e[0] < 22.0]
ENSEMBLE_SECONDS = 24.0

SOLO = [(i * 0.75, 0.7, "flute", (p,), 100) for i, p in enumerate([72, 74, 76, 77, 79, 77, 76, 74, 72])]
SOLO_SECONDS = 7.5


def stem_groups() -> list[tuple[str, ...]]:
    """The ensemble's parts alone, then every two of them that sound together at some moment."""
    spans = {part: [(a, a + d) for a, d, p, _, _ in ENSEMBLE if p == part] for part in PARTS}

    def meet(x: str, y: str) -> bool:
        return any(a < d and c < b for a, b in spans[x] for c, d in spans[y])

    parts = list(PARTS)
    alone: list[tuple[str, ...]] = [(p,) for p in parts]
    return alone + [(x, y) for i, x in enumerate(parts) for y in parts[i + 1 :] if meet(x, y)]


def render(
    score: Sequence[tuple[float, float, str, tuple[int, ...], int]],
    seconds: float,
    sr: int,
    font_path: Path,
    *,
    parts: dict[str, tuple[int, int, str]] | None = None,
) -> np.ndarray:
    """Stereo float32 [n, 2] rendering of ``score`` (``parts``: part name → (channel, General
    MIDI program, family); default :data:`PARTS`)."""
    import tinysoundfont

    parts = PARTS if parts is None else parts
    synth = tinysoundfont.Synth(samplerate=sr)
    sfid = synth.sfload(str(font_path))
    for chan, prog, _ in parts.values():
        synth.program_select(chan, sfid, 0, prog)
    events = []
    for start, dur, part, pitches, vel in score:
        chan = parts[part][0]
        for p in pitches:
            events.append((int(start * sr), 1, chan, p, vel))
            events.append((int((start + dur) * sr), 0, chan, p, 0))
    events.sort(key=lambda e: (e[0], e[1]))
    n = int(seconds * sr)
    out = np.zeros((n, 2), dtype=np.float32)
    pos = 0
    for t, on, chan, p, vel in events + [(n, -1, 0, 0, 0)]:
        if t > pos:
            block = np.frombuffer(synth.generate(t - pos), dtype=np.float32).reshape(-1, 2)
            out[pos:t] = block
            pos = t
        if on == 1:
            synth.noteon(chan, p, vel)
        elif on == 0:
            synth.noteoff(chan, p)
    return out * (0.8 / max(float(np.abs(out).max()), 1e-9))


def ground_truth(
    score: Sequence[tuple[float, float, str, tuple[int, ...], int]],
    *,
    parts: dict[str, tuple[int, int, str]] | None = None,
) -> dict[str, list[list[float]]]:
    """Family → merged [start, end] ranges where it sounds (note-on to note-off)."""
    parts = PARTS if parts is None else parts
    spans: dict[str, list[list[float]]] = {}
    for start, dur, part, _, _ in sorted(score, key=lambda e: e[0]):
        fam = parts[part][2]
        rng = spans.setdefault(fam, [])
        if rng and start <= rng[-1][1] + 0.25:
            rng[-1][1] = max(rng[-1][1], start + dur)
        else:
            rng.append([start, start + dur])
    return {k: [[round(a, 2), round(b, 2)] for a, b in v] for k, v in sorted(spans.items())}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.examples", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("examples"))
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--stems", action="store_true", help="also the ensemble's parts alone and in pairs")
    args = ap.parse_args(argv)
    fonts = fetch_soundfonts(
        args.cache or default_cache(),
        [f for f in __import__("training.corpus", fromlist=["SOUNDFONTS"]).SOUNDFONTS if f.key == "fluidr3"],
    )
    font = fonts["fluidr3"]
    args.out.mkdir(parents=True, exist_ok=True)
    solo = render(SOLO, SOLO_SECONDS, 32000, font).mean(axis=1)
    sf.write(args.out / "solo_flute.wav", solo, 32000, subtype="PCM_16")
    ens = render(ENSEMBLE, ENSEMBLE_SECONDS, 22050, font)
    sf.write(args.out / "ensemble.flac", ens, 22050, subtype="PCM_16")
    truth = {
        "source": "rendered by python -m training.examples from FluidR3_GM.sf2 (MIT licence)",
        "solo_flute.wav": ground_truth(SOLO),
        "ensemble.flac": ground_truth(ENSEMBLE),
    }
    if args.stems:
        for group in stem_groups():
            score = [e for e in ENSEMBLE if e[2] in group]
            name = f"ensemble_{'+'.join(group)}.flac"
            sf.write(args.out / name, render(score, ENSEMBLE_SECONDS, 22050, font), 22050, subtype="PCM_16")
            truth[name] = ground_truth(score)
    (args.out / "ground_truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    for f in sorted(args.out.iterdir()):
        print(f"{f}: {f.stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
