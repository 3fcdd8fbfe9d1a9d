"""The bundled examples' renderer (training.examples): its stems of the ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.examples import ENSEMBLE, PARTS, ground_truth, stem_groups

ROOT = Path(__file__).resolve().parents[1]


def test_stem_groups_are_the_parts_then_the_pairs_that_meet() -> None:
    groups = stem_groups()
    assert groups[: len(PARTS)] == [(p,) for p in PARTS]
    pairs = set(groups[len(PARTS) :])
    # piano (0-8 s, 20-22 s) and trumpet (8-20 s) never sound together: no such stem
    assert ("piano", "trumpet") not in pairs
    assert {("strings", "trumpet"), ("trumpet", "flute"), ("piano", "flute")} <= pairs
    # each pair's ground truth holds both families, overlapping somewhere
    for a, b in pairs:
        truth = ground_truth([e for e in ENSEMBLE if e[2] in (a, b)])
        assert set(truth) == {PARTS[a][2], PARTS[b][2]}


def test_main_writes_the_stems_with_their_ground_truth(tmp_path: Path) -> None:
    pytest.importorskip("tinysoundfont")
    from training import corpus, examples

    font = next(f for f in corpus.SOUNDFONTS if f.key == "fluidr3")
    try:
        corpus.fetch_soundfonts(corpus.default_cache(), [font])
    except Exception as e:  # noqa: BLE001 - no Debian mirror reachable
        pytest.skip(f"FluidR3 SoundFont not available: {e}")
    assert examples.main(["--out", str(tmp_path), "--stems"]) == 0
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    shipped = json.loads((ROOT / "examples" / "ground_truth.json").read_text())
    assert truth["ensemble.flac"] == shipped["ensemble.flac"]
    for group in stem_groups():
        name = f"ensemble_{'+'.join(group)}.flac"
        y, sr = sf.read(tmp_path / name, dtype="float32")
        assert sr == 22050 and y.shape == (int(examples.ENSEMBLE_SECONDS * sr), 2)
        assert set(truth[name]) == {PARTS[p][2] for p in group}
        # sound only where the ground truth says (the release tails aside): the strings start at 4 s
        if group == ("strings",):
            assert float(np.abs(y[: 4 * sr - 512]).max()) < 1e-4 < float(np.abs(y[4 * sr :]).max())
