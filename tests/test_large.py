"""The ``family-large`` model plugin (plugins/instrunet-large): YAMNet fine-tuned, shipped
with its Apache-2.0 notice, found through the entry point, and the packaged ``family-open``
model beside it (open-set output and embeddings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import pink

import instrunet_core as inet

ROOT = Path(__file__).resolve().parent.parent
instrunet_large = pytest.importorskip("instrunet_large")


def test_large_is_registered_with_its_notice(installed_registry: object) -> None:
    names = {(e.name, e.version) for e in inet.get_registry().models}
    assert ("family-large", "1.0.0") in names
    assert inet.load_model().name == "family"  # never the default
    m = inet.load_model("family-large")
    assert m.input_kind == "waveform" and m.embedding_dim == 128 and m.other_threshold is not None
    manifest = json.loads((instrunet_large.model_dirs()[-1] / "manifest.json").read_text())
    assert manifest["license"] == "Apache-2.0"
    notice = instrunet_large.NOTICE.read_text()
    assert "Apache License" in notice and "YAMNet" in notice


@pytest.mark.parametrize("name", ["family-large", "family-open"])
def test_open_set_models_answer_other_for_pink_noise(name: str, installed_registry: object) -> None:
    m = inet.load_model(name)
    p = m.predict(pink(6.0), 22050)
    assert p.label == inet.OTHER_LABEL and p.other is not None and p.other >= m.other_threshold
    flute = m.predict(ROOT / "examples" / "solo_flute.wav")
    assert flute.label in inet.FAMILIES  # an instrument, not "other"
    e = m.embed(ROOT / "examples" / "solo_flute.wav")
    assert e.vector.shape == (m.embedding_dim,) and abs(float(np.linalg.norm(e.vector)) - 1.0) < 1e-5
    again = m.embed(ROOT / "examples" / "solo_flute.wav")
    np.testing.assert_array_equal(e.windows, again.windows)  # deterministic
