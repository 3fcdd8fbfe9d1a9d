"""Short and sparse input: accuracy of the default model against note duration (valid split only).

Notes of the **valid** instruments (the (SoundFont, program) pairs held out of training by
``training.corpus.held_out_programs``: FluidR3 and the csound bank) are rendered with
tinysoundfont at durations from 0.1 s to 2 s, each followed by its natural release, in two
placements:

* ``alone``: the file is the note and its release (a file shorter than a window for short
  notes);
* ``sparse``: the note starts 0.3-2.0 s into a 6 s file of digital silence (a mostly-silent
  file; the note lands anywhere in a window).

Each file is classified through the one inference path (``Classifier``) and scored three ways:
the plain mean of the non-silent windows (the seed's aggregation), the loudness-weighted mean
(the runtime's), and the weighted mean on the file with its leading silence trimmed (what an
onset-aligned first window would give). The report says which fraction is right per duration,
and at which evidence (seconds of sound above -60 dBFS) answers become unreliable; that is
where ``LOW_EVIDENCE_SECONDS`` comes from. Never run on the test font (TimGM6mb).

    python -m benchmarks.short_notes --out docs/short-input.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from instrunet_core import Classifier, load_model
from instrunet_core.analysis import LOW_EVIDENCE_SECONDS, SILENCE_LABEL, aggregate
from instrunet_core.features import SAMPLE_RATE as SR
from instrunet_core.labels import FAMILIES

DURATIONS = (0.1, 0.25, 0.5, 1.0, 2.0)
RELEASE_S = 0.5

PITCHES = {  # mid-range notes each family plays
    "brass": (55, 62, 67),
    "flute": (72, 79, 84),
    "guitar": (48, 55, 64),
    "keyboard": (48, 60, 72),
    "mallet": (60, 67, 76),
    "reed": (55, 62, 69),
    "string": (55, 62, 69),
    "vocal": (55, 60, 67),
}
FONT_OF_GROUP = {"fluidr3": "fluidr3", "csound": "csound"}


def render(synth, pitch: int, seconds: float) -> np.ndarray | None:
    synth.sounds_off()
    if not synth.noteon(0, pitch, 100):
        return None
    hold = np.frombuffer(synth.generate(int(seconds * SR)), dtype=np.float32)
    synth.noteoff(0, pitch)
    rel = np.frombuffer(synth.generate(int(RELEASE_S * SR)), dtype=np.float32)
    synth.sounds_off()
    y = np.concatenate([hold, rel]).reshape(-1, 2).mean(axis=1)
    peak = float(np.abs(y).max())
    if peak < 1e-4:
        return None
    return (y * (0.5 / peak)).astype(np.float32)


def score(clf: Classifier, y: np.ndarray) -> dict[str, object]:
    clf.classify(y, SR)
    an = clf.analysis()
    probs, silent = an.probabilities, an.silent_windows
    labels = clf.labels
    weighted = clf.prediction()
    if silent.all():
        plain = SILENCE_LABEL
    else:
        plain = labels[int(np.argmax(probs[~silent].mean(axis=0)))]
    first = int(np.argmax(np.abs(y) > 10 ** (-60 / 20)))  # first sample above -60 dBFS
    clf.classify(y[first:], SR)
    an2 = clf.analysis()
    p2, r2, s2 = an2.probabilities, an2.rms_db, an2.silent_windows
    trimmed = aggregate(labels, p2, r2, s2, sounding_seconds=clf.sounding_seconds)
    return {
        "plain": plain,
        "weighted": weighted.label,
        "trimmed": trimmed.label,
        "evidence": weighted.sounding_seconds,
        "windows": weighted.n_windows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/short-input.md")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--model", default=None, help="model name or artifact folder (default: the default model)"
    )
    args = ap.parse_args(argv)
    import tinysoundfont

    from training import corpus

    t0 = time.perf_counter()
    fonts = corpus.fetch_soundfonts(
        corpus.default_cache(), [f for f in corpus.SOUNDFONTS if f.key in FONT_OF_GROUP]
    )
    held = corpus.held_out_programs()
    model = load_model(args.model)
    clf = Classifier(model)
    rng = np.random.default_rng(args.seed)
    rows = []
    for group, font_key in FONT_OF_GROUP.items():
        synth = tinysoundfont.Synth(samplerate=SR)
        sfid = synth.sfload(str(fonts[font_key]))
        for fam in FAMILIES:
            for program in held[group][fam]:
                synth.program_select(0, sfid, 0, program)
                for pitch in PITCHES[fam]:
                    for dur in DURATIONS:
                        y = render(synth, pitch, dur)
                        if y is None:
                            continue
                        offset = int(rng.uniform(0.3, 2.0) * SR)
                        sparse = np.zeros(6 * SR, np.float32)
                        sparse[offset : offset + len(y)] = y[: 6 * SR - offset]
                        for placement, audio in (("alone", y), ("sparse", sparse)):
                            r = score(clf, audio)
                            rows.append(
                                {
                                    "font": font_key,
                                    "family": fam,
                                    "program": program,
                                    "pitch": pitch,
                                    "duration": dur,
                                    "placement": placement,
                                    **r,
                                }
                            )
    elapsed = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "seconds": elapsed}, indent=1))
    lines = [
        "# Short and sparse input",
        "",
        "Written by `python -m benchmarks.short_notes` (valid instruments only: the FluidR3 and csound "
        f"programs held out of training; never the test font). Model `{model.name}` "
        f"{model.version}; {len(rows)} files; notes rendered with tinysoundfont, each followed by "
        f"{RELEASE_S} s of release; `alone` = the file is the note, `sparse` = the note starts "
        "0.3-2.0 s into 6 s of silence. Fraction of files whose overall label is the note's family:",
        "",
        "| placement | held (s) | files | plain mean | loudness-weighted (runtime) | leading silence trimmed "
        "| mean evidence (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for placement in ("alone", "sparse"):
        for dur in DURATIONS:
            sel = [r for r in rows if r["placement"] == placement and r["duration"] == dur]
            if not sel:
                continue
            acc = {k: np.mean([r[k] == r["family"] for r in sel]) for k in ("plain", "weighted", "trimmed")}
            ev = np.mean([r["evidence"] for r in sel])
            lines.append(
                f"| {placement} | {dur} | {len(sel)} | {acc['plain']:.2f} | {acc['weighted']:.2f} | "
                f"{acc['trimmed']:.2f} | {ev:.2f} |"
            )
    lines += [
        "",
        "By evidence (seconds of sound above -60 dBFS, both placements, runtime aggregation):",
        "",
        "| evidence | files | right |",
        "|---|---|---|",
    ]
    edges = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        sel = [r for r in rows if a <= r["evidence"] < b]
        if sel:
            lines.append(
                f"| {a}-{b} s | {len(sel)} | {np.mean([r['weighted'] == r['family'] for r in sel]):.2f} |"
            )
    lines += [
        "",
        f"`LOW_EVIDENCE_SECONDS` = {LOW_EVIDENCE_SECONDS}: results on less sound are marked "
        "`low_evidence`. Run time {:.0f} s.".format(elapsed),
        "",
    ]
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
