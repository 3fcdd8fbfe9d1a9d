"""Shared runtime fixtures: a tiny real ONNX model, its manifest, and isolated registries."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from instrunet_core import registry as plugins_mod
from instrunet_core.features import DEFAULT_FRONT_END, FrontEnd
from instrunet_core.hookspecs import hookimpl
from instrunet_core.labels import FAMILIES
from instrunet_core.manifest import MANIFEST_SCHEMA, seal_manifest

SR = DEFAULT_FRONT_END.sample_rate  # the rate the front end analyses at


def needs(*packages: str) -> None:
    """Skip the calling test module when one of ``packages`` is not installed, without importing
    it: TensorFlow takes seconds to import, and collecting the runtime's tests must not pay that."""
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (the train extra)", allow_module_level=True)


def build_tiny_onnx(
    path: Path,
    *,
    n_labels: int = 8,
    input_name: str = "mel",
    output_name: str = "probabilities",
    open_set: bool = False,
    frames: int = 128,
) -> None:
    """mel [N,128,128,1] → mean over (H, W, C) → MatMul [1, n] + bias → Sigmoid → [N, n].

    Label 0 rises with the mean log-mel level (any audible sound → "brass"), the
    others stay low, so predictions are deterministic and meaningful.

    ``open_set``: label 0 reads the lower half of the mel bands instead and tops out at 0.9,
    and two more outputs follow: ``other`` [N, 1] rises with the level of the top quarter of
    the bands (a tone → brass, broadband noise → "other"), and ``embedding`` [N, 3] (the means
    of the low bands, the top bands and the whole window).
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.full((1, n_labels), -10.0, dtype=np.float32)
    w[0, 0] = 100.0
    b = np.full((n_labels,), -1.0, dtype=np.float32)
    b[0] = -2.0
    nodes = [
        helper.make_node("ReduceMean", ["x_in"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "ax"], ["m2"]),
        helper.make_node("MatMul", ["m2", "W"], ["z"]),
        helper.make_node("Add", ["z", "B"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], [output_name]),
    ]
    nodes[0].input[0] = input_name
    outputs = [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", n_labels])]
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "B"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "ax"),
    ]
    if open_set:

        def band_mean(lo: int, hi: int, out: str) -> list[Any]:
            return [
                helper.make_node("Slice", [input_name, f"s{lo}", f"e{hi}", "a1"], [f"{out}_x"]),
                helper.make_node("ReduceMean", [f"{out}_x"], [f"{out}_m"], axes=[1, 2, 3], keepdims=0),
                helper.make_node("Unsqueeze", [f"{out}_m", "ax"], [out]),
            ]

        nodes = [
            nodes[0],
            nodes[1],
            *band_mean(0, 64, "low"),
            *band_mean(96, 128, "high"),
            helper.make_node("MatMul", ["low", "W"], ["z"]),
            helper.make_node("Add", ["z", "B"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["p_raw"]),
            helper.make_node("Mul", ["p_raw", "k09"], [output_name]),
            helper.make_node("Sub", ["high", "k03"], ["h0"]),
            helper.make_node("Mul", ["h0", "k60"], ["h1"]),
            helper.make_node("Sigmoid", ["h1"], ["other"]),
            helper.make_node("Concat", ["low", "high", "m2"], ["embedding"], axis=1),
        ]
        for v in (0, 64, 96, 128):
            inits.append(numpy_helper.from_array(np.array([v], np.int64), f"s{v}"))
            inits.append(numpy_helper.from_array(np.array([v], np.int64), f"e{v}"))
        inits += [
            numpy_helper.from_array(np.array([1], np.int64), "a1"),
            numpy_helper.from_array(np.array(0.9, np.float32), "k09"),
            numpy_helper.from_array(np.array(0.3, np.float32), "k03"),
            numpy_helper.from_array(np.array(60.0, np.float32), "k60"),
        ]
        outputs += [
            helper.make_tensor_value_info("other", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3]),
        ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 128, frames, 1])],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="instrunet-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def make_manifest(model_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A valid manifest for ``model_dir/model.onnx`` (sha256 and manifest_sha256 computed), with overrides."""
    sha = hashlib.sha256((model_dir / "model.onnx").read_bytes()).hexdigest()
    labels = list(FAMILIES)
    data: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "name": "tiny",
        "version": "1.0.0",
        "task": "multilabel",
        "labels": labels,
        "input": {"name": "mel", "shape": [None, 128, 128, 1], "dtype": "float32", "layout": "NHWC"},
        "output": {
            "name": "probabilities",
            "shape": [None, len(labels)],
            "dtype": "float32",
            "activation": "sigmoid",
        },
        "front_end": DEFAULT_FRONT_END.to_dict(),
        "metrics": {"macro_f1": 0.5},
        "training_data": {"dataset": "synthetic"},
        "parity": {"max_abs_diff": 0.0, "top1_agreement": 1.0, "n": 0},
        "exporter": {"onnx": "test", "opset": 17},
        "file": "model.onnx",
        "sha256": sha,
        "created": "2025-01-01T00:00:00Z",
        "license": "MIT",
    }
    data.update(overrides)
    return seal_manifest(data)  # manifest_sha256 over everything, as the exporter writes it


def write_model_dir(root: Path, name: str = "tiny", version: str = "1.0.0", **overrides: Any) -> Path:
    d = root / name / version
    d.mkdir(parents=True, exist_ok=True)
    build_tiny_onnx(d / "model.onnx")
    (d / "manifest.json").write_text(json.dumps(make_manifest(d, name=name, version=version, **overrides)))
    return d


@pytest.fixture(scope="session")
def tiny_model_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture
def tiny_model_dir(tiny_model_template: Path, tmp_path: Path) -> Path:
    """A fresh, writable copy of the tiny model directory (tests may corrupt it)."""
    d = tmp_path / "models" / "tiny" / "1.0.0"
    shutil.copytree(tiny_model_template, d)
    return d


class ModelPlugin:
    """In-process test plugin registering model directories."""

    def __init__(self, *dirs: Path, default: bool = True) -> None:
        self.dirs = dirs
        self.default = default

    @hookimpl
    def instrunet_register_models(self, register: Any) -> None:
        for d in self.dirs:
            register(d.parent.name, d, default=self.default)


def cli_child(model_dir: Path) -> tuple[list[str], dict[str, str]]:
    """``[python, -c, code]`` that runs ``instrunet`` in a child process (file descriptors of its
    own) with the tiny model at ``model_dir`` registered (the default) and no installed plugins,
    and the environment it needs: append the command line's arguments."""
    import os
    import sys

    code = (
        "import sys; from conftest import ModelPlugin; from pathlib import Path; "
        "from instrunet_core import registry as P; from instrunet_core.cli import main; "
        f"P._REGISTRY = P.build_registry(extra_plugins=[('t', ModelPlugin(Path({str(model_dir)!r}), default=False))], "
        "entry_points=False); sys.exit(main(sys.argv[1:]))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parent),
        "INSTRUNET_PLUGINS": "",
        "INSTRUNET_DEFAULT_MODEL": "tiny",
    }
    return [sys.executable, "-c", code], env


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No real entry points, no packaged models, no cached registry, no env selection."""
    from instrunet_core import default_plugins

    monkeypatch.setattr(plugins_mod, "_entry_points", lambda: [])
    monkeypatch.setattr(default_plugins, "MODELS_DIR", tmp_path_factory.mktemp("empty_models"))
    monkeypatch.setattr(plugins_mod, "_REGISTRY", None)
    monkeypatch.delenv("INSTRUNET_PLUGINS", raising=False)


@pytest.fixture
def tiny_registry(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> plugins_mod.Registry:
    """A fresh registry holding the tiny model, installed as the process registry."""
    reg = plugins_mod.build_registry(extra_plugins=[("tiny-test", ModelPlugin(tiny_model_dir))])
    monkeypatch.setattr(plugins_mod, "_REGISTRY", reg)
    return reg


@pytest.fixture
def tiny_model(tiny_registry: plugins_mod.Registry):
    from instrunet_core import load_model

    return load_model("tiny", registry=tiny_registry)


def tone(seconds: float, sr: int = SR, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def pink(seconds: float, sr: int = 22050) -> np.ndarray:
    """Pink noise (1/f power, seeded), peak 0.3: the sound no family makes."""
    w = np.random.default_rng(0).standard_normal(int(seconds * sr))
    f = np.fft.rfft(w)
    f /= np.sqrt(np.arange(1, len(f) + 1))
    y = np.fft.irfft(f, n=len(w))
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


_REAL_ENTRY_POINTS = plugins_mod._entry_points


@pytest.fixture
def installed_registry(monkeypatch: pytest.MonkeyPatch) -> plugins_mod.Registry:
    """Undo :func:`isolated_registry`: the real entry points and packaged models, as installed."""
    from instrunet_core import default_plugins

    monkeypatch.setattr(plugins_mod, "_entry_points", _REAL_ENTRY_POINTS)
    monkeypatch.setattr(
        default_plugins, "MODELS_DIR", Path(default_plugins.__file__).resolve().parent.parent / "models"
    )
    return plugins_mod.get_registry(refresh=True)


def librosa_logmel(y: np.ndarray, fe: FrontEnd = DEFAULT_FRONT_END) -> np.ndarray:
    """The front end's reference: librosa's melspectrogram + power_to_db(ref=np.max), scaled to
    [0, 1] the same way."""
    librosa = pytest.importorskip("librosa")

    stft = {k: getattr(fe, k) for k in ("n_fft", "hop_length", "n_mels", "fmin", "fmax")}
    S = librosa.feature.melspectrogram(
        y=y.astype(np.float64), sr=fe.sample_rate, center=True, pad_mode="constant", power=2.0, **stft
    )
    db = librosa.power_to_db(S, ref=np.max, top_db=fe.top_db)
    return ((db + fe.top_db) / fe.top_db).astype(np.float32)


def write_nsynth_note(split: Path, i: int, family: str, y: np.ndarray, **extra: Any) -> dict[str, Any]:
    """``split/audio/<name>.wav`` (16-bit, 22,050 Hz) and its NSynth ``examples.json`` entry
    (note ``i`` of an acoustic ``family`` instrument at pitch 60, velocity 100), for the
    training tests' tiny corpora; ``extra`` is added to the entry."""
    from training.nsynth import FAMILY_NAMES

    name = f"{family}_acoustic_{i:03d}-060-100"
    (split / "audio").mkdir(parents=True, exist_ok=True)
    sf.write(split / "audio" / f"{name}.wav", y, SR, subtype="PCM_16")
    return {
        name: {
            "note": i,
            "note_str": name,
            "instrument": i,
            "instrument_str": name[:-8],
            "pitch": 60,
            "velocity": 100,
            "sample_rate": SR,
            "qualities": [0] * 10,
            "qualities_str": [],
            "instrument_family": FAMILY_NAMES.index(family),
            "instrument_family_str": family,
            "instrument_source": 0,
            "instrument_source_str": "acoustic",
            **extra,
        }
    }
