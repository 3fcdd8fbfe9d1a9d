"""Validation figures: example log-mel spectrograms per instrument family.

Each figure is a grid with one row per family (``instrunet_core.labels.FAMILIES``) and a
few example notes per row, drawn (seeded) from different instruments of one split and
computed with the same front end the models see (``instrunet_core.features.window_features``:
the first 2.95 s of the note, 128 mel bands x 128 frames, [0, 1]). Titles name the
``note_str`` and, for the SoundFont corpus, the font and preset.

Usage::

    python -m training.figures --corpus data/corpus --split train --out training/reports/spectrograms.png
    python -m training.figures --corpus data/corpus --split train test --out training/reports/spectrograms.png
        # several splits -> spectrograms_train.png, spectrograms_test.png
    python -m training.figures --corpus data/corpus --split train --augment --out /tmp/aug.png
"""

from __future__ import annotations

import argparse
import collections
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from instrunet_core.features import DEFAULT_FRONT_END, window_features
from instrunet_core.labels import FAMILIES
from instrunet_core.plots import new_figure

from .nsynth import Note, load_audio, load_split

__all__ = ["pick_examples", "spectrogram_grid", "main"]


def pick_examples(
    notes: Sequence[Note], *, per_family: int = 4, seed: int = 0, pitch_range: tuple[int, int] = (43, 84)
) -> dict[str, list[Note]]:
    """Up to ``per_family`` notes per family, each from a different instrument where possible.

    Notes inside ``pitch_range`` (MIDI) with velocity of at least 75 are preferred, so the
    examples show typical, clearly audible notes.
    """
    rng = np.random.default_rng(seed)
    by_fam_inst: dict[str, dict[int, list[Note]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    for n in notes:
        by_fam_inst[n.family_str][n.instrument].append(n)
    out: dict[str, list[Note]] = {}
    for fam in FAMILIES:
        insts = sorted(by_fam_inst.get(fam, {}))
        if not insts:
            out[fam] = []
            continue
        order = [insts[i] for i in rng.permutation(len(insts))]
        chosen: list[Note] = []
        used: set[str] = set()
        for i in range(per_family * 4):
            if len(chosen) == per_family:
                break
            pool = [n for n in by_fam_inst[fam][order[i % len(order)]] if n.note_str not in used]
            good = [n for n in pool if pitch_range[0] <= n.pitch <= pitch_range[1] and n.velocity >= 75]
            pool = good or pool
            if not pool:
                continue
            pick = pool[int(rng.integers(len(pool)))]
            used.add(pick.note_str)
            chosen.append(pick)
        out[fam] = chosen
    return out


def _title(note: Note) -> str:
    font = note.extra.get("soundfont")
    preset = note.extra.get("preset_name")
    if font is not None:
        second = f"{font} #{note.extra.get('program', '?')} {preset or ''}".strip()
    else:
        second = note.instrument_str
    return f"{note.note_str}\n{second[:34]}"


def spectrogram_grid(
    examples: dict[str, list[Note]],
    out: str | Path,
    *,
    title: str = "",
    augment_seed: int | None = None,
    dpi: int = 75,
) -> Path:
    """Draw the grid to ``out`` (PNG); ``augment_seed`` shows augmented audio instead of clean."""
    fe = DEFAULT_FRONT_END
    cols = max(1, max((len(v) for v in examples.values()), default=1))
    rows = len(FAMILIES)
    fig = new_figure(2.3 * cols + 0.6, 2.05 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False)
    rng = np.random.default_rng(augment_seed) if augment_seed is not None else None
    extent = (0.0, fe.window_seconds, 0.0, float(fe.n_mels))
    for r, fam in enumerate(FAMILIES):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            notes = examples.get(fam, [])
            if c >= len(notes):
                ax.axis("off")
                continue
            note = notes[c]
            y = load_audio(note, target_sr=fe.sample_rate)[: fe.window_samples]
            if rng is not None:
                from .augment import augment

                y = augment(y, sr=fe.sample_rate, rng=rng)
            S = window_features(y, fe=fe)
            ax.imshow(
                S,
                origin="lower",
                aspect="auto",
                cmap="magma",
                vmin=0.0,
                vmax=1.0,
                extent=extent,
                interpolation="nearest",
            )
            ax.set_title(_title(note), fontsize=7)
            if c == 0:
                ax.set_ylabel(fam, fontsize=11, fontweight="bold")
    fig.suptitle(
        (title + "\n" if title else "")
        + f"log-mel [0,1], {fe.n_mels} mel bands (0-{fe.fmax_hz / 1000:.2f} kHz) x {fe.frames} frames "
        f"({fe.window_seconds:.2f} s); low frequencies at the bottom",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.975))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    # A 256-colour palette keeps the PNG small (the colormap has 256 entries anyway).
    from PIL import Image

    buf.seek(0)
    with Image.open(buf) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            out, "PNG", optimize=True
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.figures", description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="folder with train/valid/test NSynth splits")
    ap.add_argument("--split", nargs="+", default=["train"], help="one or more splits")
    ap.add_argument(
        "--out",
        type=Path,
        required=True,
        help="PNG path; with several splits, _<split> is added before the suffix",
    )
    ap.add_argument("--per-family", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--augment", action="store_true", help="show augmented audio (training.augment defaults)")
    ap.add_argument("--dpi", type=int, default=75)
    args = ap.parse_args(argv)
    for split in args.split:
        out = (
            args.out
            if len(args.split) == 1
            else args.out.with_name(f"{args.out.stem}_{split}{args.out.suffix}")
        )
        notes = load_split(args.corpus / split)
        ex = pick_examples(notes, per_family=args.per_family, seed=args.seed)
        title = f"{args.corpus.name}/{split}: {len(notes)} notes" + (" (augmented)" if args.augment else "")
        path = spectrogram_grid(
            ex, out, title=title, augment_seed=args.seed if args.augment else None, dpi=args.dpi
        )
        print(f"{path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
