"""Loading, resolving and running models (a tiny real ONNX graph)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from conftest import ModelPlugin, make_manifest, tone, write_model_dir

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


def _broken_model_dir(root: Path, kind: str) -> Path:
    """A sealed artifact whose graph (declared ``[N, 8]`` out) answers wrongly for inputs
    ``[N, 128, 128, 1]``: ``"const2"``/``"negative"`` probabilities of 2.0 / -1.0, ``"one-row"``
    one row whatever N, ``"nine-columns"`` N + 7 values a row (9 for two windows), ``"slack"``
    1.0 + 1e-5 (a rounding)."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    value = {"const2": 2.0, "negative": -1.0, "slack": 1.0 + 1e-5}.get(kind, 0.5)
    rows = "s0" if kind == "one-row" else "n"  # one row, or N
    width = "n7" if kind == "nine-columns" else "k8"  # N + 7 columns, or 8
    nodes = [
        helper.make_node("Shape", ["mel"], ["shape"]),
        helper.make_node("Slice", ["shape", "s0", "e1"], ["n"]),
        helper.make_node("Add", ["n", "k7"], ["n7"]),
        # one row as min(N, 1): a size the graph's shapes do not give away (a fixed 1 is refused
        # when the model loads: its batch axis must be dynamic)
        helper.make_node("Min", ["n", "e1"], ["n1"]),
        helper.make_node("Concat", ["n" if rows == "n" else "n1", width], ["out_shape"], axis=0),
        helper.make_node("Expand", ["value", "out_shape"], ["probabilities"]),
    ]
    inits = [
        numpy_helper.from_array(np.full((1, 1), value, np.float32), "value"),
        numpy_helper.from_array(np.array([0], np.int64), "s0"),
        numpy_helper.from_array(np.array([1], np.int64), "e1"),
        numpy_helper.from_array(np.array([7], np.int64), "k7"),
        numpy_helper.from_array(np.array([8], np.int64), "k8"),
    ]
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, ["N", 128, 128, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 8])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    d = root / kind / "1.0.0"
    d.mkdir(parents=True)
    (d / "model.onnx").write_bytes(model.SerializeToString())
    (d / "manifest.json").write_text(json.dumps(make_manifest(d, name=kind)))
    return d


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("const2", r"output 'probabilities' holds 2 to 2, not probabilities in \[0, 1\]"),
        ("negative", r"output 'probabilities' holds -1 to -1, not probabilities in \[0, 1\]"),
        ("one-row", r"output 'probabilities' has shape \(1, 8\): not one row for each of 2 inputs"),
        ("nine-columns", r"output 'probabilities' has 9 columns, the manifest says 8"),
    ],
)
def test_audit_a_model_answering_outside_its_contract_is_a_model_error(
    tmp_path: Path, kind: str, says: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _broken_model_dir(tmp_path, kind)
    m = instrunet_core.load_model(d)
    with pytest.raises(ModelError, match=rf"{kind}/1.0.0/model\.onnx: {says}"):
        m.predict(tone(4.0), 22050)  # two windows
    with pytest.raises(ModelError, match=says):
        instrunet_core.analyze(tone(4.0), 22050, model=m, analyzers=False)
    from instrunet_core.cli import main

    wav = tmp_path / "t.wav"
    sf.write(wav, tone(4.0), 22050)
    assert main(["classify", "--model", str(d), str(wav)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"instrunet: error: {wav}: {d / 'model.onnx'}: output 'probabilities'")


def test_audit_probabilities_a_rounding_past_one_are_clipped(tmp_path: Path) -> None:
    m = instrunet_core.load_model(_broken_model_dir(tmp_path, "slack"))
    p = m.predict(tone(4.0), 22050)
    assert max(p.probabilities.values()) == 1.0
    assert all(0.0 <= w.probabilities.max() <= 1.0 for w in m.classifier().classify(tone(4.0), 22050))


def test_audit_arguments_that_raised_bare_python_errors(tiny_model: instrunet_core.Model) -> None:
    with pytest.raises(
        InputError, match="model must be a registered model name or an artifact folder, got int"
    ):
        instrunet_core.load_model(5)  # type: ignore[arg-type]
    for providers in (5, [5], b"cpu"):
        with pytest.raises(InputError, match="providers must be a name, a comma-separated string or a list"):
            instrunet_core.load_model(providers=providers)  # type: ignore[arg-type]
    for analyzers in (5, [5]):
        with pytest.raises(InputError, match="analyzers must be True, False or a list of analyzer names"):
            instrunet_core.analyze(tone(1.0), 22050, model=tiny_model, analyzers=analyzers)  # type: ignore[arg-type]
    quiet = tiny_model.classifier()
    quiet.classify(np.zeros(22050, np.float32), 22050)
    for top_k in (0, -1, True, 2.5, "2"):
        with pytest.raises(InputError, match=r"top_k must be an int >= 1, got"):
            tiny_model.predict(tone(1.0), 22050, top_k=top_k)  # type: ignore[arg-type]
        with pytest.raises(InputError, match=r"top_k must be an int >= 1, got"):
            quiet.prediction(top_k=top_k)  # type: ignore[arg-type]  # silence: checked all the same
    assert [lab for lab, _ in tiny_model.predict(tone(3.0), 22050, top_k=2).top][:1] == ["brass"]
    assert len(tiny_model.predict(tone(3.0), 22050, top_k=np.int64(99)).top) == 8


def test_name_at_version_is_accepted_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``load_model("tiny@1.0.0")`` and ``--model tiny@1.0.0`` pick that version (the form
    INSTRUNET_DEFAULT_MODEL takes); a missing version is named as such, never "tiny@1.0.0"."""
    from instrunet_core import registry as plugins_mod
    from instrunet_core.cli import main

    old, new = write_model_dir(tmp_path, version="1.0.0"), write_model_dir(tmp_path, version="1.1.0")

    class Both:
        @instrunet_core.hookimpl
        def instrunet_register_models(self, register: Any) -> None:
            register("tiny", old)
            register("tiny", new)

    reg = build_registry(extra_plugins=[("t", Both())])
    assert instrunet_core.load_model("tiny@1.0.0", registry=reg).version == "1.0.0"
    assert instrunet_core.load_model(" tiny @ 1.1.0 ", registry=reg).version == "1.1.0"
    assert instrunet_core.load_model("tiny@1.0.0", version="1.0.0", registry=reg).version == "1.0.0"
    with pytest.raises(
        ModelError, match=r"^model 'tiny 9\.0\.0' is not installed \(available: \['tiny 1\.0\.0'"
    ):
        instrunet_core.load_model("tiny@9.0.0", registry=reg)
    with pytest.raises(ModelError, match="version 1.0.0 given, and version='1.1.0' too"):
        instrunet_core.load_model("tiny@1.0.0", version="1.1.0", registry=reg)
    monkeypatch.setattr(plugins_mod, "_REGISTRY", reg)
    wav = tmp_path / "t.wav"
    sf.write(wav, tone(2.0), 22050)
    assert main(["classify", str(wav), "--model", "tiny@1.0.0", "--json"]) == 0
    assert '"1.0.0"' in capsys.readouterr().out


def test_onnxruntime_missing_is_one_line_not_a_traceback(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A GPU swap that fails half-way (docs/speed.md) leaves no onnxruntime: ``load_model``,
    ``classify`` and ``analyze`` raised ``ModuleNotFoundError`` from the provider lookup, before
    the ``ModelError`` guard (packaging audit). Both now say it in one line."""
    import sys

    from instrunet_core import cli

    wav = tmp_path / "tone.wav"
    sf.write(wav, tone(440.0, 1.0), 22050)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # an import of it fails
    with pytest.raises(ModelError, match=r"onnxruntime is not installed .*pip install onnxruntime"):
        instrunet_core.load_model(tiny_model_dir)
    for command in ("classify", "analyze"):
        assert cli.main([command, str(wav), "--model", str(tiny_model_dir)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [err[0]] and "onnxruntime is not installed" in err[0] and "Traceback" not in err[0]
    # by name, where the newest version failing to load names an older one to use instead: no
    # version is to blame when onnxruntime is missing (a review)
    older = tiny_model_dir.parent / "0.9.0"
    import shutil

    shutil.copytree(tiny_model_dir, older)
    (older / "manifest.json").write_text(json.dumps(make_manifest(older, version="0.9.0")))
    reg = build_registry(extra_plugins=[ModelPlugin(tiny_model_dir, older)], entry_points=False)
    with pytest.raises(ModelError) as e:
        instrunet_core.load_model("tiny", registry=reg)
    assert "onnxruntime is not installed" in str(e.value) and "broken" not in str(e.value)
