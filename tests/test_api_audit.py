"""Arguments of the core's Python API that used to be taken for something else (a plugin
robustness audit, 2026-12-06): each is now an InputError naming it, before any work."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SR, tone

import instrunet_core
from instrunet_core.errors import InputError


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"thresholds": [0.5]}, r"thresholds must be a dict \{label: threshold\}, got list"),
        ({"refine": "yes"}, "analyze: refine must be True or False, got 'yes'"),
        ({"embeddings": "no"}, "analyze: embeddings must be True or False, got 'no'"),
        ({"progress": 1}, r"analyze: progress must be callable \(step, fraction\), got int"),
    ],
)
def test_analyze_refuses_arguments_it_would_misread(
    tiny_model: instrunet_core.Model, kwargs: dict, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        instrunet_core.analyze(tone(3.0), SR, model=tiny_model, analyzers=False, **kwargs)


@pytest.mark.parametrize(
    "audios, message",
    [
        ("abc", "got str"),  # read letter by letter as file names ("a: file not found")
        (np.zeros(100, np.float32), r"got ndarray \(one clip: \[audio\]\)"),  # sample by sample
        ({"a.wav": 1}, "got dict"),  # its keys as paths
    ],
)
def test_predict_batch_takes_a_list(tiny_model: instrunet_core.Model, audios: object, message: str) -> None:
    with pytest.raises(
        InputError, match=f"predict_batch: audios must be a list or tuple of arrays, {message}"
    ):
        tiny_model.predict_batch(audios, SR)  # type: ignore[arg-type]
    assert len(tiny_model.predict_batch((tone(1.0), tone(2.0)), SR)) == 2


def test_a_refused_first_block_does_not_fix_the_streams_rate(tiny_model: instrunet_core.Model) -> None:
    """A NaN first block at 44.1 kHz, then good blocks at 22,050 Hz: "sample rate changed"."""
    clf = tiny_model.classifier()
    with pytest.raises(InputError, match="NaN"):
        clf.process(np.full(4410, np.nan, np.float32), 44100)
    clf.process(tone(4.0), SR)
    assert clf.flush()[-1].end == pytest.approx(4.0, abs=1e-3)
    with pytest.raises(InputError, match="Classifier: pipeline must be True or False, got None"):
        instrunet_core.Classifier(tiny_model, pipeline=None)
