"""The noise gate on a family model's open-set output (export.noisegate): the graph computes the
numpy reference's spectral contrast, the family outputs and the embedding stay the same numbers,
"other" becomes max(network, gate), and the manifest's description of it is checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import SR, pink, tone

from export import ExportError
from export.noisegate import NoiseGate, add_noise_gate, gate_probability, spectral_contrast
from instrunet_core.errors import ModelError
from instrunet_core.features import DEFAULT_FRONT_END, batch_features
from instrunet_core.manifest import seal_manifest, validate_manifest
from instrunet_core.session import onnx_session

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "instrunet_core" / "models" / "family" / "3.1.0"


@pytest.fixture(scope="module")
def base() -> onnx.ModelProto:
    return onnx.load(str(BASE / "model.onnx"))


def _windows() -> np.ndarray:
    """Pink noise, a burst of it before silence, a harmonic tone, a plucked one and digital silence."""
    w = DEFAULT_FRONT_END.window_samples
    burst = np.zeros(w, np.float32)
    burst[: SR // 3] = pink(1.0)[: SR // 3]
    t = np.arange(w) / SR
    pluck = sum(np.sin(2 * np.pi * 196 * k * t) / k**1.5 for k in range(1, 30)) * np.exp(-t * 6) * 0.3
    return np.stack(
        [pink(3.0)[:w], burst, tone(3.0, freq=220.0)[:w], pluck.astype(np.float32), np.zeros(w, np.float32)]
    )


def _run(m: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = onnx_session(m.SerializeToString())
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"mel": x}), strict=True))


def test_the_gate_raises_other_where_the_spectrum_is_flat_and_nothing_else(base: onnx.ModelProto) -> None:
    gate = NoiseGate(contrast_db=1.0)
    gated = add_noise_gate(base, gate)
    x = batch_features(_windows())[..., None]
    before, after = _run(base, x), _run(gated, x)
    np.testing.assert_array_equal(after["probabilities"], before["probabilities"])
    np.testing.assert_array_equal(after["embedding"], before["embedding"])
    c = spectral_contrast(x, gate)
    # noise and its burst are flat (well under 1 dB); the tones have partials (several dB); silence is flat

    assert c[0] < 0.5 and c[1] < 0.8 and c[2] > 3.0 and c[3] > 3.0 and c[4] == 0.0
    want = np.maximum(before["other"][:, 0], gate_probability(c, gate))
    np.testing.assert_allclose(after["other"][:, 0], want, atol=1e-5)
    assert after["other"][1, 0] > 0.9 > before["other"][1, 0]  # the burst: "other" now
    np.testing.assert_allclose(after["other"][2:4], before["other"][2:4], atol=1e-6)  # the tones: untouched
    # twice, or on a graph without the layout it reads: refused
    with pytest.raises(ExportError, match="has one already"):
        add_noise_gate(gated, gate)
    with pytest.raises(ExportError, match="no output 'nothing'"):
        add_noise_gate(base, gate, other_name="nothing")
    with pytest.raises(ExportError, match="n_mels >= 200"):
        add_noise_gate(base, NoiseGate(contrast_db=1.0, lo=8, hi=200))


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"contrast_db": 0.0}, "contrast_db must be a number > 0"),
        ({"contrast_db": float("nan")}, "contrast_db must be a number > 0"),
        ({"contrast_db": 1.0, "softness_db": -1.0}, "softness_db must be a number > 0"),
        ({"contrast_db": 1.0, "lo": 10, "hi": 12}, "3 or more bands"),
        ({"contrast_db": 1.0, "floor_db": 90.0}, "floor_db must be in"),
    ],
)
def test_gate_parameters_are_checked(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(ExportError, match=says):
        NoiseGate(**kwargs)


def test_the_manifest_describes_the_gate_and_a_malformed_description_is_refused() -> None:
    data = json.loads((BASE / "manifest.json").read_text())
    data.pop("manifest_sha256")
    good = NoiseGate(contrast_db=1.0).to_dict()
    m = validate_manifest(
        seal_manifest({**data, "other": {**data["other"], "noise_gate": good}}), where="m.json"
    )
    assert m.other is not None and m.other["noise_gate"]["bands"] == [4, 96]
    for bad, says in [
        ({**good, "contrast_db": 0}, "noise_gate.contrast_db must be a number > 0"),
        ({**good, "bands": [8, 9]}, "noise_gate.bands must be"),
        ({**good, "extra": 1}, "exactly"),
        ("on", "exactly"),
    ]:
        with pytest.raises(ModelError, match=says):
            validate_manifest(
                seal_manifest({**data, "other": {**data["other"], "noise_gate": bad}}), where="m.json"
            )


def test_low_pitched_tones_are_not_noise_and_the_gate_never_overflows(base: onnx.ModelProto) -> None:
    """An audit: with the loudest band taken over every band of lo:hi, a low note whose loudest
    band was the first (B2, 123.5 Hz; an 80 Hz sine) left no band "loud" among those with two
    neighbours, measured 0 dB and was gated (other 0.993). The loudest is now taken over those."""
    import warnings

    gate = NoiseGate(contrast_db=1.0, floor_db=20.0, band_floor_db=6.0, hi=128)
    w = DEFAULT_FRONT_END.window_samples
    t = np.arange(w) / SR
    low = sum(np.sin(2 * np.pi * 123.5 * k * t) / k**2 for k in range(1, 11)) * 0.3
    x = batch_features(np.stack([low, 0.3 * np.sin(2 * np.pi * 80.0 * t)]).astype(np.float32))[..., None]
    c = spectral_contrast(x, gate)
    assert c[0] > 5.0 and c[1] > 1.5, c
    gated = _run(add_noise_gate(base, gate), x)
    np.testing.assert_allclose(gated["other"], _run(base, x)["other"], atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (1 / (1 + exp(-z)) overflowed for a tone's contrast)
        p = gate_probability(np.array([0.0, 1.0, 40.0, 1e6], np.float32), gate)
    np.testing.assert_allclose(p, [1 / (1 + np.exp(-1 / 0.15)), 0.5, 0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"contrast_db": True}, "contrast_db must be a number > 0"),
        ({"contrast_db": "1"}, "contrast_db must be a number > 0"),
        ({"contrast_db": 1.0, "lo": 4.5}, "lo must be a whole band index"),
        ({"contrast_db": 1.0, "hi": True}, "hi must be a whole band index"),
        ({"contrast_db": 1.0, "top_db": float("inf")}, "top_db must be a number > 0"),
        ({"contrast_db": 1.0, "band_floor_db": 81.0}, "band_floor_db must be in"),
    ],
)
def test_more_gate_parameters_are_checked(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(ExportError, match=says):
        NoiseGate(**kwargs)


def test_a_graph_whose_other_is_not_b_by_1_is_refused(base: onnx.ModelProto) -> None:
    m = onnx.ModelProto()
    m.CopyFrom(base)
    (other,) = [o for o in m.graph.output if o.name == "other"]
    del other.type.tensor_type.shape.dim[1]  # declared [B]: Max would broadcast it to [B, B]
    with pytest.raises(ExportError, match=r"output 'other' must be float32 \[B, 1\]"):
        add_noise_gate(m, NoiseGate(contrast_db=1.0))


def test_the_manifest_ties_the_gate_to_its_input_and_weights_sha256_to_a_gate() -> None:
    data = json.loads((ROOT / "instrunet_core" / "models" / "family" / "3.2.0" / "manifest.json").read_text())
    data.pop("manifest_sha256")
    assert validate_manifest(seal_manifest(data), where="m.json").embedding is not None
    g = data["other"]["noise_gate"]
    for bad, says in [
        ({**g, "bands": [4, 200]}, r"reach past the input's 128 mel bands"),
        ({**g, "floor_db": 1000.0}, r"floor_db 1000\.0 exceeds the front end's top_db 80\.0"),
    ]:
        with pytest.raises(ModelError, match=says):
            validate_manifest(
                seal_manifest({**data, "other": {**data["other"], "noise_gate": bad}}), where="m.json"
            )
    # a retrained network whose manifest was copied from a gated one must not inherit the claim
    ungated = {**data, "other": {k: v for k, v in data["other"].items() if k != "noise_gate"}}
    with pytest.raises(
        ModelError, match="embedding.weights_sha256 names the network a gated graph embeds as"
    ):
        validate_manifest(seal_manifest(ungated), where="m.json")
