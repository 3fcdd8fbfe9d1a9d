"""Example builder: notes reshaped like music, real libraries drawn on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from instrunet_core.labels import FAMILIES
from training.dataset import ExampleSpec, is_real, make_examples, shape_note, split_notes
from training.nsynth import FAMILY_NAMES

SR = 22050


def test_shape_note_lengths_and_onset() -> None:
    t = np.arange(4 * SR) / SR
    y = (0.5 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    other = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    lengths = []
    for seed in range(200):
        z = shape_note(np.random.default_rng(seed), y, SR, [other])
        assert 0 < len(z) <= 4 * SR and np.all(np.isfinite(z))
        assert abs(z[:200]).max() > 0  # still starts at the onset
        assert abs(z[-50:]).max() < 0.05  # ends in a release, not a cut
        lengths.append(len(z) / SR)
    assert min(lengths) < 0.4 and max(lengths) > 2.0 and np.median(lengths) < 1.5


def _tiny_corpus(root: Path) -> None:
    split = root / "train"
    (split / "audio").mkdir(parents=True)
    ex = {}
    for i, (fam, real) in enumerate([("reed", False), ("reed", True), ("guitar", False)]):
        name = f"{fam}_acoustic_{i:03d}-060-100"
        sf.write(
            split / "audio" / f"{name}.wav", np.full(SR, 0.1 * (i + 1), np.float32), SR, subtype="PCM_16"
        )
        ex[name] = {
            "note": i,
            "note_str": name,
            "instrument": i,
            "instrument_str": name[:-8],
            "pitch": 60,
            "velocity": 100,
            "sample_rate": SR,
            "qualities": [0] * 10,
            "qualities_str": [],
            "instrument_family": FAMILY_NAMES.index(fam),
            "instrument_family_str": fam,
            "instrument_source": 0,
            "instrument_source_str": "acoustic",
            **({"library": "lib"} if real else {}),
        }
    (split / "examples.json").write_text(json.dumps(ex))


def test_real_prob_draws_the_real_library(tmp_path: Path) -> None:
    _tiny_corpus(tmp_path)
    notes = split_notes(tmp_path, "train")
    assert [is_real(n) for n in notes].count(True) == 1
    reed = FAMILIES.index("reed")

    def real_share(p: float) -> float:
        _, Y, names = make_examples(
            notes, ExampleSpec("train", 400, 0, real_prob=p), workers=1, progress=False
        )
        picked = [nm[0] for nm, y in zip(names, Y, strict=True) if y[reed]]
        return sum(nm.startswith("reed_acoustic_001") for nm in picked) / len(picked)

    assert real_share(1.0) == 1.0
    assert real_share(0.0) == 0.0 or 0.3 < real_share(0.0) < 0.7  # p=0: instruments drawn uniformly
    assert 0.1 < real_share(0.3) < 0.5
