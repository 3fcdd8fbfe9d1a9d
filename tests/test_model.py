"""Loading, resolving and running models (a tiny real ONNX graph)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import ModelPlugin, tone, write_model_dir

import instrunet_core
from instrunet_core import default_plugins
from instrunet_core.errors import InputError, ModelError
from instrunet_core.features import batch_features
from instrunet_core.registry import build_registry


def test_no_model_installed() -> None:
    reg = build_registry()
    assert reg.models == []
    with pytest.raises(ModelError, match="no model is installed"):
        instrunet_core.load_model(registry=reg)
    with pytest.raises(ModelError, match="no model is installed"):
        instrunet_core.load_model()


def test_packaged_default_model_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # exact convention: instrunet_core/models/<name>/<version>/manifest.json, "family" is the default
    monkeypatch.setattr(default_plugins, "MODELS_DIR", tmp_path)
    write_model_dir(tmp_path, "family", "1.0.0")
    write_model_dir(tmp_path, "family", "1.2.0")
    write_model_dir(tmp_path, "other", "9.0.0")
    m = instrunet_core.load_model(registry=build_registry())
    assert (m.name, m.version) == ("family", "1.2.0")
    assert m.path == tmp_path / "family" / "1.2.0"
    m = instrunet_core.load_model("family", "1.0.0", registry=build_registry())
    assert m.version == "1.0.0"
    with pytest.raises(ModelError, match="'family 3.0.0' is not installed"):
        instrunet_core.load_model("family", "3.0.0", registry=build_registry())


def test_highest_semver_not_lexical(tmp_path: Path) -> None:
    dirs = [write_model_dir(tmp_path, "tiny", v) for v in ("1.9.0", "1.10.0", "1.2.0")]
    reg = build_registry(extra_plugins=[ModelPlugin(*dirs)])
    assert instrunet_core.load_model("tiny", registry=reg).version == "1.10.0"


def test_model_attributes_and_predict(tiny_model: instrunet_core.Model) -> None:
    m = tiny_model
    assert m.name == "tiny" and m.labels == instrunet_core.FAMILIES and m.task == "multilabel"
    assert m.front_end.window_samples == 65024 and m.manifest.version == "1.0.0"
    assert m.thresholds == {lab: 0.5 for lab in m.labels}
    p = m.predict(tone(3.0, 44100), 44100)  # any rate
    assert p.label == "brass" and p.confidence > 0.6 and not p.silent
    assert set(p.probabilities) == set(m.labels)
    stereo = np.stack([tone(3.0), tone(3.0)], axis=1)
    assert m.predict(stereo, 22050).label == "brass"
    s = m.predict(np.zeros(22050 * 4, np.float32), 22050)
    assert (s.label, s.confidence, s.silent) == ("silence", 1.0, True)


def test_predict_features_batched(tiny_model: instrunet_core.Model) -> None:
    win = tiny_model.front_end.window_samples
    x = batch_features(np.stack([tone(3.0)[:win], np.zeros(win, np.float32), tone(3.0, amp=0.01)[:win]]))
    y = tiny_model.predict_features(x, batch_size=2)
    assert y.shape == (3, 8) and y.dtype == np.float32
    np.testing.assert_allclose(tiny_model.predict_features(x[..., None]), y, atol=1e-6)
    assert y[0, 0] > 0.8 and y[1, 0] < 0.2
    with pytest.raises(InputError, match="expected shape"):
        tiny_model.predict_features(np.zeros((2, 64, 128), np.float32))
    with pytest.raises(InputError, match="NaN"):
        tiny_model.predict_features(np.full((1, 128, 128), np.nan, np.float32))


def test_predict_batch_matches_predict(tiny_model: instrunet_core.Model) -> None:
    audios = [tone(2.0), np.zeros(30000, np.float32), tone(5.0, freq=220)]
    out = tiny_model.predict_batch(audios, 22050)
    assert [p.label for p in out] == ["brass", "silence", "brass"]
    assert out[2] == tiny_model.predict(audios[2], 22050)


def test_thread_safe_sharing(tiny_model: instrunet_core.Model) -> None:
    audios = [tone(3.0, amp=a) for a in (0.5, 0.1, 0.02, 0.3)] * 2
    ref = [tiny_model.predict(a, 22050).probabilities for a in audios]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda a: tiny_model.predict(a, 22050).probabilities, audios))
    assert got == ref


def test_providers_and_threads(tiny_model_dir: Path) -> None:
    reg = build_registry(extra_plugins=[ModelPlugin(tiny_model_dir)])
    m = instrunet_core.load_model(registry=reg, intra_op_threads=1, providers="cpu")
    assert m.providers == ["CPUExecutionProvider"]
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.warns(RuntimeWarning, match="CUDAExecutionProvider is not available"):
            m = instrunet_core.load_model(registry=reg, providers=["cuda"])
        assert m.providers == ["CPUExecutionProvider"]
    m = instrunet_core.load_model(registry=reg, providers="auto")
    assert m.providers[-1] == "CPUExecutionProvider"
