"""Real-mixture dev pieces (training.devmix): scoring the detected families through the runtime,
counting the pieces whose set changes with leading silence and hop, and choosing presence
thresholds through the timeline, on pieces written here and the tiny model (any sound is
"brass" to it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, tone

import instrunet_core
from training import devmix


@pytest.fixture
def pieces(tmp_path: Path) -> Path:
    """Three 6 s tones: truth brass, brass + flute, flute (the tiny model hears brass in all)."""
    d = tmp_path / "pieces"
    d.mkdir()
    truth = {}
    for i, fams in enumerate((["brass"], ["brass", "flute"], ["flute"])):
        name = f"piece_{i:03d}"
        sf.write(d / f"{name}.flac", tone(6.0, freq=220.0 * (i + 1)), SR, subtype="PCM_16")
        truth[name] = {"families": fams, "parts": [], "seconds": 6.0}
    (d / "truth.json").write_text(json.dumps(truth))
    return d


def test_score_counts_what_the_runtime_detects(tiny_model_dir: Path, pieces: Path) -> None:
    res = devmix.score_pieces(tiny_model_dir, pieces, variants=True)
    assert {r["detected"] == ["brass"] for r in res["by_piece"].values()} == {True}
    assert res["precision"] == pytest.approx(2 / 3) and res["recall"] == pytest.approx(2 / 4)
    assert res["exact_sets"] == pytest.approx(1 / 3)
    assert res["per_family"]["flute"] == {"precision": 0.0, "recall": 0.0, "support": 2}
    # a steady tone: no leading silence or hop changes what is detected
    assert res["variants"]["pieces_whose_set_changes"] == 0
    assert len(res["variants"]["leading_silence_and_hop"]) == 1 + len(devmix.VARIANTS)


def test_a_threshold_above_what_the_model_hears_detects_nothing(tiny_model_dir: Path, pieces: Path) -> None:
    act = instrunet_core.analyze(
        str(pieces / "piece_000.flac"), model=tiny_model_dir, analyzers=False
    ).activity
    assert act is not None
    peak = float(act.probability[:, act.labels.index("brass")].max())
    # presence_at repeats the runtime's decision at the model's own threshold ...
    assert np.array_equal(act.presence_at("brass", act.thresholds["brass"]), act.active[:, 0])
    # ... and finds nothing above the curve's peak
    assert not act.presence_at("brass", min(peak + 0.01, 0.999)).any()
    res = devmix.score_pieces(tiny_model_dir, pieces, thresholds={"brass": min(peak + 0.01, 0.999)})
    assert res["precision"] == 0.0 and res["recall"] == 0.0
    assert res["thresholds"]["brass"] == pytest.approx(min(peak + 0.01, 0.999))


def test_thresholds_are_chosen_by_f1_on_the_pieces(
    tiny_model_dir: Path, pieces: Path, tmp_path: Path
) -> None:
    out = tmp_path / "thr.json"
    assert devmix.main(["thresholds", str(tiny_model_dir), "--pieces", str(pieces), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    # Steady tones: brass and flute sit at a steady level in each piece. Detecting either in all
    # three pieces (precision 2/3, recall 1) beats detecting it in none, so each gets the
    # highest threshold of the grid that its lowest piece still reaches.
    lowest = {"brass": 1.0, "flute": 1.0}
    for f in sorted(pieces.glob("*.flac")):
        act = instrunet_core.analyze(str(f), model=tiny_model_dir, hop=0.5, analyzers=False).activity
        assert act is not None
        for lab in lowest:
            lowest[lab] = min(lowest[lab], float(act.probability[act.sounding, act.labels.index(lab)].max()))
    for lab, low in lowest.items():
        assert res["thresholds"][lab] == pytest.approx(max(t for t in devmix.GRID if t <= low)), (lab, low)
        assert (res["per_family"][lab]["precision"], res["per_family"][lab]["recall"]) == (
            pytest.approx(2 / 3),
            1.0,
        )
    # a family the model never reaches: F1 is 0 at every threshold, the highest is kept
    assert res["thresholds"]["mallet"] == pytest.approx(0.95) and res["per_family"]["mallet"]["support"] == 0
    assert res["micro"] == {"precision": pytest.approx(2 / 3), "recall": 1.0}
    # the chosen thresholds go back into `score`
    scored = tmp_path / "score.json"
    argv = [
        "score",
        str(tiny_model_dir),
        "--pieces",
        str(pieces),
        "--thresholds",
        str(out),
        "--out",
        str(scored),
    ]
    assert devmix.main(argv) == 0
    assert json.loads(scored.read_text())["thresholds"] == res["thresholds"]


def test_pieces_without_truth_are_refused(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    assert devmix.main(["score", str(tiny_model_dir), "--pieces", str(tmp_path)]) == 2
    assert "no truth.json" in capsys.readouterr().err


def test_build_refuses_a_part_count_outside_1_to_4(tmp_path: Path) -> None:
    for k in (0, 5):
        with pytest.raises(ValueError, match="min_parts must be 1-4"):
            devmix.build_pieces(tmp_path / "corpus", tmp_path / "out", n=1, min_parts=k)
