"""Dev scoring of an exported artifact: per family, per source library, short clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tone, write_nsynth_note

from training.evaluate import main


def _dev_corpus(root: Path) -> None:
    split = root / "dev"
    ex = {}
    # (family, library, seconds): the tiny model calls every audible clip "brass".
    clips = [("brass", "lib_a", 0.5), ("brass", "lib_a", 0.6), ("reed", "lib_b", 2.0)]
    for i, (fam, lib, seconds) in enumerate(clips):
        y = tone(seconds, freq=440.0)
        ex |= write_nsynth_note(split, i, fam, y, library=lib, clip="note", duration_s=seconds)
    (split / "examples.json").write_text(json.dumps(ex))


def test_artifact_scored_per_family_source_and_length(tmp_path: Path, tiny_model_dir: Path) -> None:
    _dev_corpus(tmp_path / "corpus")
    out = tmp_path / "dev.json"
    assert (
        main(
            [
                str(tiny_model_dir),
                "--corpus",
                str(tmp_path / "corpus"),
                "--out",
                str(out),
                "--cache",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    d = json.loads(out.read_text())["dev"]
    assert d["n_single"] == 3
    assert d["per_family_recall"]["brass"] == 1.0 and d["per_family_recall"]["reed"] == 0.0
    assert d["per_source"]["lib_a"]["accuracy"] == 1.0 and d["per_source"]["lib_b"]["accuracy"] == 0.0
    assert d["shorter_than_1s"]["n"] == 2 and d["shorter_than_1s"]["accuracy"] == 1.0
    assert d["from_1s"]["n"] == 1 and d["from_1s"]["accuracy"] == 0.0
    assert d["single"]["accuracy"] == pytest.approx(2 / 3)


def test_no_dev_split_is_a_clear_error(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "corpus").mkdir()
    assert (
        main([str(tiny_model_dir), "--corpus", str(tmp_path / "corpus"), "--out", str(tmp_path / "x.json")])
        == 2
    )
    assert "no dev split" in capsys.readouterr().err


def test_pick_thresholds_f_beta_weighs_precision() -> None:
    """F1 (beta 1, the default) and F-beta: below 1 a false alarm costs more than a miss, so the
    chosen threshold is never lower and the precision never worse."""
    from training.metrics import pick_thresholds

    rng = np.random.default_rng(0)
    y = (rng.random((4000, 3)) < 0.3).astype(np.float32)
    scores = np.clip(0.35 * y + rng.normal(0.3, 0.15, y.shape), 0, 1)
    f1 = np.array(pick_thresholds(y, scores))
    f1_again = np.array(pick_thresholds(y, scores, beta=1.0))
    f05 = np.array(pick_thresholds(y, scores, beta=0.5))
    np.testing.assert_array_equal(f1, f1_again)
    assert np.all(f05 >= f1) and np.any(f05 > f1)

    def precision(th: np.ndarray) -> float:
        said = scores >= th
        return float((said & (y > 0.5)).sum() / max(said.sum(), 1))

    assert precision(f05) > precision(f1)
    with pytest.raises(ValueError, match="beta"):
        pick_thresholds(y, scores, beta=0.0)


def test_pick_thresholds_breaks_ties_low_or_high() -> None:
    from training.metrics import f_beta, pick_thresholds

    y = np.array([[1.0], [1.0], [0.0]])
    scores = np.array([[0.8], [0.9], [0.1]])  # every threshold in 0.2-0.8 separates them perfectly
    grid = np.round(np.arange(0.1, 0.951, 0.1), 2)
    assert pick_thresholds(y, scores, grid) == [0.2]
    assert pick_thresholds(y, scores, grid, higher_on_ties=True) == [0.8]
    assert f_beta(2, 0, 0) == 1.0 and f_beta(0, 3, 2) == 0.0
    assert f_beta(1, 1, 0, beta=0.5) == pytest.approx(1.25 / (1.25 + 1))


def test_an_artifacts_columns_are_read_by_its_own_labels(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A tools audit (2026-12-06): the evaluator took an artifact's outputs in the families'
    order whatever its manifest said: one with its labels reversed scored 92.9 % where it is
    right 7.1 %, and a three-label artifact was scored without a word."""
    import json
    import shutil

    from instrunet_core.labels import FAMILIES
    from instrunet_core.manifest import seal_manifest
    from training.cli_checks import ToolError
    from training.evaluate import ArtifactModel

    x = np.random.default_rng(0).random((3, 128, 128, 1)).astype(np.float32)
    plain = ArtifactModel(tiny_model_dir).predict_on_batch(x)
    flipped = tmp_path / "flipped"
    shutil.copytree(tiny_model_dir, flipped)
    m = json.loads((flipped / "manifest.json").read_text())
    assert list(m["labels"]) == list(FAMILIES)
    m["labels"] = list(FAMILIES)[::-1]
    m["thresholds"] = (
        {k: m["thresholds"][k] for k in m["labels"]}
        if isinstance(m.get("thresholds"), dict)
        else m.get("thresholds")
    )
    (flipped / "manifest.json").write_text(json.dumps(seal_manifest(m)))
    np.testing.assert_array_equal(ArtifactModel(flipped).predict_on_batch(x)[:, :8], plain[:, :8][:, ::-1])
    m["labels"] = ["a", "b", "c", *m["labels"][3:]]
    (flipped / "manifest.json").write_text(json.dumps(seal_manifest(m)))
    with pytest.raises((ToolError, Exception), match="not the eight families|label"):
        ArtifactModel(flipped)
