"""The packaged default, ``family`` 3.1.0: ``family-compact`` 2.1.0's network with family thresholds
chosen through the timeline, a veto level of its own (``family`` 3.0.0, training/reports/default/3.0.0/)
and margins for the families behind the two leading ones (training/reports/default/3.1.0/)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import pink

import instrunet_core as inet
from instrunet_core.errors import ModelError
from instrunet_core.manifest import seal_manifest, validate_manifest
from instrunet_core.timeline import OTHER_VETO

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "instrunet_core" / "models"
SR = 22050


def test_the_default_is_the_fast_network_with_its_own_thresholds(installed_registry: object) -> None:
    assert (inet.load_model().name, inet.load_model().version) == ("family", "3.1.0")
    m = inet.load_model("family", "3.0.0")
    compact = inet.load_model("family-compact", "2.1.0")
    assert m.manifest.sha256 == compact.manifest.sha256  # the same ONNX file
    assert (MODELS / "family" / "3.0.0" / "model.onnx").read_bytes() == (
        MODELS / "family-compact" / "2.1.0" / "model.onnx"
    ).read_bytes()
    chosen = json.loads((ROOT / "training/reports/default/3.0.0/metrics.json").read_text())["thresholds"]
    assert m.thresholds == {k: v for k, v in chosen.items() if k != "other"}
    # lambda 0.5 of the way from its own thresholds to those the 160 pieces chose
    picked = json.loads((ROOT / "training/reports/default/3.0.0/timeline-thresholds-160.json").read_text())
    for f, t in compact.thresholds.items():
        assert m.thresholds[f] == pytest.approx(t + 0.5 * (picked["thresholds"][f] - t), abs=1e-4)
    assert (m.other_threshold, m.other_veto, m.embedding_dim) == (0.2, 0.72, 128)
    assert compact.other_veto == OTHER_VETO  # no veto of its own in its manifest
    assert inet.load_model("family", "2.1.0").other_veto == OTHER_VETO
    assert "Apache" in (MODELS / "family" / "3.0.0" / "NOTICE").read_text()
    assert (m.leading, m.margins) == (0, {})


def test_the_default_holds_families_behind_the_two_leading_ones_to_a_margin(
    installed_registry: object,
) -> None:
    m, before = inet.load_model(), inet.load_model("family", "3.0.0")
    assert m.manifest.sha256 == before.manifest.sha256 and m.thresholds == before.thresholds
    assert (m.other_threshold, m.other_veto, m.embedding_dim) == (0.2, 0.72, 128)
    assert "Apache" in (MODELS / "family" / "3.1.0" / "NOTICE").read_text()
    # behind the two leading families, 3.0.0's candidate at lambda 0.75 plus 0.05 (make.py.txt)
    hi = json.loads((ROOT / "training/reports/default/3.0.0/choose/cand-0.75.json").read_text())["thresholds"]
    assert m.leading == 2
    for f, t in m.thresholds.items():
        assert t + m.margins[f] == pytest.approx(hi[f] + 0.05, abs=1e-4)
    det = inet.Classifier(m).detection
    assert (det.leading, dict(det.margins)) == (2, m.margins)
    assert inet.Classifier(m, leading=0).detection.margin("reed") == 0.0
    # the bundled ensemble (brass, flute, keyboard, string; no mallet, reed, guitar or vocal): 3.0.0
    # lists all eight families; mallet, third or lower wherever it holds its threshold, is gone
    ens = ROOT / "examples" / "ensemble.flac"
    now = inet.analyze(ens, model=m, analyzers=False)
    off = inet.analyze(ens, model=m, analyzers=False, leading=0)
    assert {i.label for i in off.instruments} == set(inet.FAMILIES)
    assert {i.label for i in now.instruments} == set(inet.FAMILIES) - {"mallet"}
    assert (now.settings["leading"], off.settings["leading"]) == (2, 0)
    assert now.settings["margins"] == m.margins
    # the words people read say the rule an analysis used
    from instrunet_core.analysis import measures_for

    assert "Where two others are more probable" in measures_for(now.labels, now.settings)["threshold"]
    assert "more probable" not in measures_for(off.labels, off.settings)["threshold"]
    assert "behind the two most probable" in inet.MEASURES["threshold"]
    # brass, in the score from 8.0 to 19.9 s, is listed from about there (3.0.0: from 4.3 s)
    (brass,) = [i for i in now.instruments if i.label == "brass"]
    assert brass.ranges[0][0] == pytest.approx(8.6, abs=0.3) and brass.ranges[-1][1] == pytest.approx(
        20.1, abs=0.3
    )


def test_noise_is_other_and_the_models_own_veto_holds_a_family_off(installed_registry: object) -> None:
    m = inet.load_model()
    assert m.predict(pink(6.0), SR).label == inet.OTHER_LABEL
    short = (0.1 * np.random.default_rng(0).standard_normal(int(2.5 * SR))).astype(np.float32)
    an = inet.analyze(short, SR, model=m, analyzers=False)
    assert an.label == inet.OTHER_LABEL and an.instruments == []
    assert an.settings["other_veto"] == 0.72
    # the runtime's default level (2.1.0's) leaves the guitar curve (0.38, threshold 0.25) listed
    at_093 = inet.analyze(short, SR, model=m, analyzers=False, other_veto=OTHER_VETO)
    assert [i.label for i in at_093.instruments] == ["guitar"] and at_093.settings["other_veto"] == OTHER_VETO
    clf = inet.Classifier(m)
    assert clf.detection.other_veto == 0.72
    assert inet.Classifier(m, other_veto=1.0).detection.other_veto == 1.0


@pytest.mark.parametrize("veto", [0, 0.0, -0.1, 1.5, True, "0.7", None])
def test_a_manifest_veto_must_be_a_probability(veto: object) -> None:
    raw = json.loads((MODELS / "family" / "3.0.0" / "manifest.json").read_text())
    raw.pop("manifest_sha256")
    raw["other"] = {**raw["other"], "veto": veto}
    with pytest.raises(ModelError, match=r"other\.veto must be a number in \(0, 1\]"):
        validate_manifest(seal_manifest(raw), where="m.json")
    raw["other"]["veto"] = 1.0  # no veto at all: allowed
    assert validate_manifest(seal_manifest(raw), where="m.json").other["veto"] == 1.0


def test_the_models_listing_says_each_models_veto_and_embedding_size(
    installed_registry: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from instrunet_core.cli import main

    assert main(["models", "--json"]) == 0
    rows = {(r["name"], r["version"]): r for r in json.loads(capsys.readouterr().out)}
    got = {k: (rows[k]["other_threshold"], rows[k]["other_veto"], rows[k]["embedding_dim"]) for k in rows}
    assert got["family", "3.0.0"] == got["family", "3.1.0"] == (0.2, 0.72, 128)
    assert (rows["family", "3.1.0"]["leading"], rows["family", "3.0.0"]["leading"]) == (2, 0)
    assert rows["family", "3.1.0"]["margins"]["reed"] == 0.0688 and rows["family", "3.0.0"]["margins"] == {}
    assert got["family", "2.1.0"] == (0.8, OTHER_VETO, 512)
    assert got["family", "1.0.0"] == (None, None, None)


@pytest.mark.parametrize(
    ("secondary", "match"),
    [
        ({"leading": 0, "margins": {}}, r"secondary\.leading must be an integer from 1 to 7"),
        ({"leading": 8, "margins": {}}, r"secondary\.leading must be an integer from 1 to 7"),
        ({"leading": True, "margins": {}}, r"secondary\.leading must be an integer"),
        ({"leading": 2, "margins": {"banjo": 0.1}}, r"secondary\.margins has unknown label 'banjo'"),
        (
            {"leading": 2, "margins": {"reed": 1.0}},
            r"secondary\.margins\['reed'\] must be a number in \[0, 1\)",
        ),
        ({"leading": 2, "margins": {"reed": -0.1}}, r"secondary\.margins\['reed'\] must be a number"),
        ({"leading": 2, "margins": [0.1]}, r"secondary\.margins must be an object"),
        ({"leading": 2}, "secondary must be an object with exactly leading and margins"),
        ({"leading": 2, "margins": {}, "rank": 1}, "secondary must be an object with exactly"),
        ([2], "secondary must be an object"),
    ],
)
def test_a_manifest_secondary_rule_is_checked(secondary: object, match: str) -> None:
    raw = json.loads((MODELS / "family" / "3.0.0" / "manifest.json").read_text())
    raw.pop("manifest_sha256")
    raw["secondary"] = secondary
    with pytest.raises(ModelError, match=match):
        validate_manifest(seal_manifest(raw), where="m.json")
    raw["secondary"] = {"leading": 2, "margins": {"reed": 0.05}}
    m = validate_manifest(seal_manifest(raw), where="m.json")
    assert (m.leading, m.margins) == (2, {"reed": 0.05})


def test_a_leading_count_for_a_model_without_margins_is_warned_about(installed_registry: object) -> None:
    before = inet.load_model("family", "3.0.0")
    with pytest.warns(
        inet.InstrunetWarning, match=r"family 3\.0\.0 has no margins .* leading 2 changes nothing"
    ):
        det = inet.Classifier(before, leading=2).detection
    assert det.margin("reed") == 0.0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inet.Classifier(before, leading=0)
        inet.Classifier(before)
        inet.Classifier(inet.load_model(), leading=1)
