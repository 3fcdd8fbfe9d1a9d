"""Example builder: notes reshaped like music, real libraries drawn on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import SR, write_nsynth_note

from instrunet_core.labels import FAMILIES
from training.dataset import ExampleSpec, is_real, make_examples, shape_note, split_notes


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
    ex = {}
    for i, (fam, real) in enumerate([("reed", False), ("reed", True), ("guitar", False)]):
        y = np.full(SR, 0.1 * (i + 1), np.float32)
        ex |= write_nsynth_note(split, i, fam, y, **({"library": "lib"} if real else {}))
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
