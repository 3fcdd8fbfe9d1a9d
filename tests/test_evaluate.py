"""Dev scoring of an exported artifact: per family, per source library, short clips."""

from __future__ import annotations

import json
from pathlib import Path

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
