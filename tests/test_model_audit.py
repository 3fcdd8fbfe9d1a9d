"""What an audit of damaged model artifacts and plugins found (session of 2026-12-06): each a
clear ModelError or a plugin error row, never a traceback, a silent fallback or broken output."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SR, ModelPlugin, make_manifest, tone, write_model_dir

import instrunet_core
from instrunet_core import registry as plugins_mod
from instrunet_core.errors import ModelError
from instrunet_core.hookspecs import hookimpl
from instrunet_core.registry import build_registry
from instrunet_core.verify import verify_artifact

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _graph_model(
    path: Path, nodes: list[Any], inits: list[Any], *, batch: Any = "N", out_cols: int = 8
) -> None:
    """mel ``[batch, 128, 128, 1]`` → ``nodes`` → ``probabilities`` declared ``[N, out_cols]``."""
    graph = helper.make_graph(
        nodes,
        "damaged",
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, [batch, 128, 128, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", out_cols])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def _mean_then(path: Path, *, width: int = 8, batch: Any = "N", gather_row: int | None = None) -> None:
    """The window's mean level → MatMul ``[1, width]`` → Sigmoid; ``gather_row``: each row
    replaced by row ``gather_row`` of the batch first, which fails at run time on a smaller
    batch (an index out of range that no shape says)."""
    nodes = [
        helper.make_node("ReduceMean", ["mel"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "ax"], ["m2"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1], np.int64), "ax"),
        numpy_helper.from_array(np.full((1, width), 0.01, np.float32), "W"),
    ]
    src = "m2"
    if gather_row is not None:
        nodes += [
            helper.make_node("Mul", ["m", "zero"], ["mz"]),
            helper.make_node("Add", ["mz", "row"], ["mr"]),
            helper.make_node("Cast", ["mr"], ["idx"], to=TensorProto.INT64),
            helper.make_node("Gather", ["m2", "idx"], ["g"], axis=0),
        ]
        inits += [
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
            numpy_helper.from_array(np.array(float(gather_row), np.float32), "row"),
        ]
        src = "g"
    nodes += [
        helper.make_node("MatMul", [src, "W"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["probabilities"]),
    ]
    _graph_model(path, nodes, inits, batch=batch)


def _artifact(root: Path, build: Any, name: str = "damaged", **manifest: Any) -> Path:
    d = root / name / "1.0.0"
    d.mkdir(parents=True)
    build(d / "model.onnx")
    (d / "manifest.json").write_text(json.dumps(make_manifest(d, name=name, **manifest)))
    return d


def test_a_graph_with_a_fixed_batch_of_one_is_refused_when_loaded(tmp_path: Path) -> None:
    """It loaded, then every classification failed with onnxruntime's traceback (batches of 4)."""
    d = _artifact(tmp_path, lambda p: _mean_then(p, batch=1))
    for call in (lambda: instrunet_core.load_model(d), lambda: verify_artifact(d)):
        with pytest.raises(
            ModelError, match=r"model\.onnx: ONNX input shape \[1, 128, 128, 1\] disagrees.*dynamic batch"
        ):
            call()


def test_a_model_that_fails_while_it_runs_is_a_model_error(tmp_path: Path) -> None:
    d = _artifact(tmp_path, lambda p: _mean_then(p, gather_row=5))
    model = instrunet_core.load_model(d)  # its shapes are what the manifest says
    with pytest.raises(
        ModelError,
        match=r"model\.onnx: onnxruntime failed running the model on a batch of shape \(\d+, 128, 128, 1\)",
    ):
        model.predict(tone(3.0), SR)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "instrunet_core.cli",
            "classify",
            "examples/solo_flute.wav",
            "--model",
            str(d),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr and "\x1b" not in r.stderr
    assert r.stderr.count("\n") == 1 and "onnxruntime failed running the model" in r.stderr


def test_a_replayed_output_of_the_wrong_shape_is_a_model_error(tiny_model_dir: Path) -> None:
    """An output the graph does not declare as it gives it: the replay subtracted it from the
    references and raised numpy's broadcast ValueError (``models --check`` stopped there)."""
    from instrunet_core import verify
    from instrunet_core.manifest import read_manifest

    class NineColumns:
        def run(self, names: Any, feeds: Any) -> list[np.ndarray]:
            return [np.full((len(next(iter(feeds.values()))), 9), 0.5, np.float32)]

    x = np.zeros((3, 128, 128, 1), np.float32)
    with pytest.raises(
        ModelError, match=r"output 'probabilities' has shape \(3, 9\) for 3 references, expected \(3, 8\)"
    ):
        verify._replay(NineColumns(), tiny_model_dir / "model.onnx", read_manifest(tiny_model_dir), x)


def test_check_runs_the_io_checks_of_loading(tmp_path: Path) -> None:
    """An artifact without references whose graph cannot load passed ``models --check``."""
    d = _artifact(tmp_path, lambda p: _mean_then(p, batch=1))
    assert verify_artifact(d, references=False).sha256  # the digest alone is fine
    with pytest.raises(ModelError, match="dynamic batch"):
        verify_artifact(d)


def test_models_check_lists_every_model_when_one_check_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from instrunet_core import cli, verify

    good = write_model_dir(tmp_path / "a", name="good")
    bad = write_model_dir(tmp_path / "b", name="tripping")
    reg = build_registry(extra_plugins=[("two", ModelPlugin(good, bad, default=False))])
    monkeypatch.setattr(plugins_mod, "_REGISTRY", reg)
    real = verify.verify_artifact

    def trips(folder: Any, **kw: Any) -> Any:
        if "tripping" in str(folder) and kw.get("references"):
            raise ValueError("operands could not be broadcast")
        return real(folder, **kw)

    monkeypatch.setattr(verify, "verify_artifact", trips)
    assert cli.main(["models", "--check"]) == 1
    out = capsys.readouterr().out
    assert "good 1.0.0" in out and "ok" in out.split("good 1.0.0")[1].splitlines()[0]
    assert "the check failed: ValueError: operands could not be broadcast" in out


def test_model_paths_that_are_files_say_what_to_give(tmp_path: Path, tiny_model_dir: Path) -> None:
    other = tmp_path / "other.json"
    shutil.copy(tiny_model_dir / "manifest.json", other)
    for p in (other, tiny_model_dir / "model.onnx"):
        with pytest.raises(
            ModelError,
            match=rf"{p.name}: not a model artifact folder \(give the folder holding manifest\.json",
        ):
            instrunet_core.load_model(p)
    assert instrunet_core.load_model(tiny_model_dir / "manifest.json").name == "tiny"


def test_a_model_folder_whose_name_is_not_utf8_loads(tmp_path: Path, tiny_model_dir: Path) -> None:
    d = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xff\xfename"))
    shutil.copytree(tiny_model_dir, d)
    m = instrunet_core.load_model(d)
    assert (
        m.predict(tone(3.0), SR).label
        == instrunet_core.load_model(tiny_model_dir).predict(tone(3.0), SR).label
    )


def test_a_broken_newest_version_is_an_error_not_a_quiet_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = write_model_dir(tmp_path, name="mm", version="1.0.0")
    new = write_model_dir(tmp_path, name="mm", version="2.0.0")
    data = json.loads((new / "manifest.json").read_text())
    data["thresholds"] = {"brass": 0.1}  # edited after export
    (new / "manifest.json").write_text(json.dumps(data))
    reg = build_registry(extra_plugins=[("mm", ModelPlugin(old, new))])
    assert sorted(e.version for e in reg.models) == ["1.0.0", "2.0.0"]  # listed by its folder's version
    with pytest.raises(
        ModelError,
        match=r"model mm 2\.0\.0, its newest version, is broken: .*edited after export.*to use 1\.0\.0: mm@1\.0\.0",
    ):
        instrunet_core.load_model("mm", registry=reg)
    with pytest.raises(ModelError, match="edited after export"):
        instrunet_core.load_model("mm@2.0.0", registry=reg)
    assert instrunet_core.load_model("mm@1.0.0", registry=reg).version == "1.0.0"
    monkeypatch.setenv("INSTRUNET_DEFAULT_MODEL", "mm")
    with pytest.raises(
        ModelError, match=r"INSTRUNET_DEFAULT_MODEL='mm': model mm 2\.0\.0, its newest version, is broken"
    ):
        instrunet_core.load_model(registry=reg)


def test_a_newest_version_whose_file_is_damaged_names_the_one_to_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A models audit: a newest version whose ONNX file was damaged (found when it is opened,
    not when it is registered) gave the bare sha256 error, without the way out a broken
    manifest gets."""
    old = write_model_dir(tmp_path, name="nn", version="1.0.0")
    new = write_model_dir(tmp_path, name="nn", version="2.0.0")
    onnx = next(new.glob("*.onnx"))
    data = bytearray(onnx.read_bytes())
    data[-5] ^= 0xFF
    onnx.write_bytes(bytes(data))
    reg = build_registry(extra_plugins=[("nn", ModelPlugin(old, new))])
    with pytest.raises(
        ModelError,
        match=r"^model nn 2\.0\.0, its newest version, is broken: .*sha256 .*\(to use 1\.0\.0: nn@1\.0\.0\)$",
    ):
        instrunet_core.load_model("nn", registry=reg)
    with pytest.raises(ModelError, match=r"^[^(]*model\.onnx: sha256 .* does not match"):
        instrunet_core.load_model("nn@2.0.0", registry=reg)  # asked for: no other version offered
    monkeypatch.setenv("INSTRUNET_DEFAULT_MODEL", "nn")
    with pytest.raises(ModelError, match=r"^INSTRUNET_DEFAULT_MODEL='nn': model nn 2\.0\.0, its newest"):
        instrunet_core.load_model(registry=reg)
    assert instrunet_core.load_model("nn@1.0.0", registry=reg).version == "1.0.0"
    monkeypatch.setenv("INSTRUNET_DEFAULT_MODEL", "nn@2.0.0")  # pinned there: no other offered
    with pytest.raises(ModelError, match=r"^[^(]*model\.onnx: sha256 .* does not match"):
        instrunet_core.load_model(registry=reg)


@pytest.mark.parametrize("value", ["@", "@2.0.0"])
def test_a_default_model_variable_that_names_no_model_is_an_error(
    value: str, tiny_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSTRUNET_DEFAULT_MODEL", value)
    with pytest.raises(ModelError, match=rf"INSTRUNET_DEFAULT_MODEL='{value}' names no model"):
        instrunet_core.load_model(registry=tiny_registry)
    monkeypatch.setenv("INSTRUNET_DEFAULT_MODEL", "tiny@x")
    with pytest.raises(
        ModelError, match=r"INSTRUNET_DEFAULT_MODEL='tiny@x': model tiny: version 'x' is not semver"
    ):
        instrunet_core.load_model(registry=tiny_registry)
    with pytest.raises(ModelError, match=r"model '@2\.0\.0' names no model"):
        instrunet_core.load_model("@2.0.0", registry=tiny_registry)


def test_a_blank_model_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from instrunet_core import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["classify", "examples/solo_flute.wav", "--model", " "])
    assert e.value.code == 2 and "--model: give a model name" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["brass", "other"], "'other' is reserved"),
        (["brass", "flu\nte"], r"labels must be printable text \(no control characters\), got 'flu\\nte'"),
        (["brass", "x\x1b[31m"], "no control characters"),
        (["brass", "a\u202eb"], "no control characters"),  # a right-to-left override
    ],
)
def test_labels_that_would_break_outputs_are_refused(tmp_path: Path, labels: list[str], message: str) -> None:
    from conftest import build_tiny_onnx

    d = tmp_path / "lab" / "1.0.0"
    d.mkdir(parents=True)
    build_tiny_onnx(d / "model.onnx", n_labels=len(labels))
    data = make_manifest(
        d,
        name="lab",
        labels=labels,
        output={
            "name": "probabilities",
            "shape": [None, len(labels)],
            "dtype": "float32",
            "activation": "sigmoid",
        },
    )
    (d / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=message):
        instrunet_core.load_model(d)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def test_a_plugin_whose_exception_cannot_be_printed_is_reported(tiny_model_dir: Path) -> None:
    def bad(register: Any) -> None:
        raise _Unprintable()

    plugin = types.ModuleType("unprintable_mod")
    plugin.instrunet_register_models = hookimpl(bad)  # type: ignore[attr-defined]
    with pytest.warns(
        RuntimeWarning,
        match="instrunet_register_models failed: _Unprintable: <the exception's message could not be read>",
    ):
        reg = build_registry(extra_plugins=[plugin, ("ok", ModelPlugin(tiny_model_dir))])
    assert [e.name for e in reg.models] == ["tiny"]


def test_one_bad_register_call_costs_a_plugin_none_of_its_other_models(tiny_model_dir: Path) -> None:
    class Plugin:
        @hookimpl
        def instrunet_register_models(self, register: Any) -> None:
            register("intpath", 123)
            register("tiny", tiny_model_dir)

    with pytest.warns(RuntimeWarning, match="model 'intpath': the path must be a str or PathLike, got int"):
        reg = build_registry(extra_plugins=[("mixed", Plugin())])
    assert [e.name for e in reg.models] == ["tiny"]


def test_an_entry_point_that_names_no_plugin_is_reported() -> None:
    reg = plugins_mod.Registry()
    with pytest.warns(RuntimeWarning, match="implements none of instrunet's hooks.*names a int"):
        info = reg.add_plugin(5, "wrongtype")
    assert "implements none" in (info.error or "")
    quiet = reg.add_plugin(types.ModuleType("adapter_mod"), "adapter")  # an adapter package: listed, no error
    assert quiet.error is None and quiet.hooks == []


@pytest.mark.parametrize(("key", "value"), [("version", "1.0.0\n"), ("name", "tiny\n")])
def test_a_name_or_version_with_a_trailing_newline_is_refused(tmp_path: Path, key: str, value: str) -> None:
    """``$`` matches before a final newline: '1.0.0\\n' passed as semver."""
    from conftest import build_tiny_onnx

    d = tmp_path / "nl" / "1.0.0"
    d.mkdir(parents=True)
    build_tiny_onnx(d / "model.onnx")
    (d / "manifest.json").write_text(json.dumps(make_manifest(d, **{key: value})))
    with pytest.raises(ModelError, match="semver|lower-case identifier"):
        instrunet_core.load_model(d)


# --------------------------------------------------------------- an artifact audit (export, loading)


def test_weights_outside_the_hashed_file_do_not_load(tiny_model_dir: Path) -> None:
    """ONNX external data: weights in another file, which the manifest's sha256 does not cover,
    were loaded from beside model.onnx (swapping them changed the answers, every check passing).
    The model file is read once, hashed, and loaded from those bytes: such a model is refused."""
    m = onnx.load(str(tiny_model_dir / "model.onnx"))
    onnx.save_model(
        m,
        str(tiny_model_dir / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (tiny_model_dir / "weights.bin").is_file()
    (tiny_model_dir / "manifest.json").write_text(json.dumps(make_manifest(tiny_model_dir)))
    with pytest.raises(
        ModelError, match=r"model\.onnx: keeps tensors outside the file as ONNX external data \("
    ):
        instrunet_core.Model(tiny_model_dir)


def test_a_model_cannot_read_files_from_the_working_directory(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime resolves the external data of a model given as bytes against the current
    working directory: a stranger's model (its manifest sealed, its sha256 right) read
    ``secret.txt`` below wherever instrunet ran into its embedding, and weights beside the model
    loaded unchecked when run from its folder (a security audit). Any tensor kept outside the
    file is refused before onnxruntime sees it, wherever it hides, and onnxruntime itself is
    pointed at an empty folder for external data."""
    from onnx import helper, numpy_helper

    from instrunet_core.session import external_tensors, onnx_session

    secret = tmp_path / "cwd" / "secret.txt"
    secret.parent.mkdir()
    secret.write_bytes(np.arange(8, dtype=np.float32).tobytes())
    monkeypatch.chdir(secret.parent)
    for where in ("W", "constant", "subgraph"):
        d = tmp_path / where / "tiny" / "1.0.0"
        shutil.copytree(tiny_model_dir, d)
        m = onnx.load(str(d / "model.onnx"))

        def outside(t: Any) -> Any:
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            e = t.external_data.add()
            e.key, e.value = "location", "secret.txt"
            return t

        if where == "W":  # an initializer
            t = outside(next(i for i in m.graph.initializer if i.name == "W"))
        else:  # a Constant node's tensor, at the top or inside an If's branch
            t = outside(numpy_helper.from_array(np.zeros(1, np.float32), "c"))
            const = helper.make_node("Constant", [], ["c_out"], value=t)
            if where == "constant":
                m.graph.node.insert(0, const)
            else:
                branch = helper.make_graph([const], "b", [], [helper.make_tensor_value_info("c_out", 1, [1])])
                m.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
                m.graph.node.insert(
                    0, helper.make_node("If", ["cond"], ["if_out"], then_branch=branch, else_branch=branch)
                )
        data = m.SerializeToString()
        assert external_tensors(data) == [t.name] * (2 if where == "subgraph" else 1)  # both branches
        (d / "model.onnx").write_bytes(data)
        (d / "manifest.json").write_text(json.dumps(make_manifest(d)))
        with pytest.raises(
            ModelError, match=rf"keeps tensors outside the file as ONNX external data \({t.name}"
        ):
            instrunet_core.Model(d)
        with pytest.raises(ModelError, match="external data"):
            onnx_session(str(d / "model.onnx"))  # given as a path too
    clean = (tiny_model_dir / "model.onnx").read_bytes()
    assert external_tensors(clean) == []
    # A review: the scan stopped at a protobuf group (which protobuf skips) and passed the rest
    # unread; two bytes in front of a model hid its external tensors. Groups are skipped as
    # protobuf skips them, and what cannot be followed is refused.
    hidden = b"\x0b\x0c" + data  # field 1 as an empty group, then the model with its If branches
    assert external_tensors(hidden) == ["c", "c"]
    assert external_tensors(b"\x0b\x0c" + clean) == []
    for bad in (b"not a protobuf \xff\xff", b"\x0c" + clean, clean[:-3], b"\x0b" + clean):
        with pytest.raises(ValueError):
            external_tensors(bad)
    # A second review: a key written in five bytes, whose upper bits protobuf drops (a graph's
    # key 0x3a as ba 80 80 80 10), hid the graph from the scan while onnxruntime loaded it; a
    # deep nest of groups was a RecursionError.
    from instrunet_core.session import _varint

    def top_fields(b: bytes) -> list[tuple[int, int, int]]:  # (start, key, end of key) of each field
        out, pos, view = [], 0, memoryview(b)
        while pos < len(b):
            start = pos
            key, pos = _varint(view, pos)
            out.append((start, key, pos))
            if key & 7 == 0:
                _, pos = _varint(view, pos)
            elif key & 7 == 2:
                size, pos = _varint(view, pos)
                pos += size
        return out

    w_model = (tmp_path / "W" / "tiny" / "1.0.0" / "model.onnx").read_bytes()
    start, key, after = next(f for f in top_fields(w_model) if f[1] == 0x3A)
    long_key = bytes([0x3A | 0x80, 0x80, 0x80, 0x80, 0x10])  # 0x3a + 2**32
    disguised = w_model[:start] + long_key + w_model[after:]
    assert external_tensors(disguised) == ["W"]
    deep = b"\x0b" * 5000 + b"\x0c" * 5000 + clean
    assert external_tensors(deep) == []  # skipped without recursion
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x0b" + clean)  # a group that never ends
    with pytest.raises(
        ModelError, match=r"broken\.onnx: not a well-formed ONNX model \(its protobuf cannot be read"
    ):
        onnx_session(str(broken))


def test_a_model_reads_its_manifest_as_it_is_now(tiny_registry, tiny_model_dir: Path) -> None:
    """The registry's manifest, read when it was built, was used by every later load: thresholds
    exported again (the same ONNX bytes) were ignored for the life of the process, and a model
    renamed in place was loaded under its old name."""
    from instrunet_core import FAMILIES, load_model

    assert load_model("tiny").thresholds["brass"] == 0.5
    thr = dict.fromkeys(FAMILIES, 0.5) | {"brass": 0.9}
    (tiny_model_dir / "manifest.json").write_text(json.dumps(make_manifest(tiny_model_dir, thresholds=thr)))
    assert load_model("tiny").thresholds["brass"] == 0.9
    (tiny_model_dir / "manifest.json").write_text(json.dumps(make_manifest(tiny_model_dir, version="1.0.1")))
    with pytest.raises(ModelError, match=r"now names tiny 1\.0\.1, not tiny 1\.0\.0 .*refresh=True"):
        load_model("tiny")


def test_models_check_refuses_outputs_that_are_not_what_the_manifest_says(tiny_model_dir: Path) -> None:
    """A linear layer's logits exported as probabilities, a softmax declared multilabel, or
    sigmoids declared multiclass passed `models --check` and loaded: the replayed outputs must be
    probabilities, summing to 1 where the manifest says softmax, and not everywhere otherwise."""
    x = (
        np.random.default_rng(0)
        .random((4, 128, 128, 1), dtype=np.float32)
        .astype(np.float16)
        .astype(np.float32)
    )
    d = tiny_model_dir

    def with_last(op: str, **manifest: object) -> None:
        g = onnx.load(str(d / "model.onnx"))
        last = g.graph.node[-1]
        if op == "Identity":
            last.op_type, last.input[0] = "Identity", "logits"
            del last.attribute[:]
        elif op == "Softmax":
            last.op_type = "Softmax"
            last.attribute.extend([helper.make_attribute("axis", -1)])
        onnx.save(g, str(d / "model.onnx"))
        import onnxruntime as ort

        y = ort.InferenceSession(str(d / "model.onnx")).run(None, {"mel": x})[0]
        np.savez(d / "references.npz", inputs=x.astype(np.float16), outputs=y)
        (d / "manifest.json").write_text(
            json.dumps(make_manifest(d, references="references.npz", **manifest))
        )

    orig = (d / "model.onnx").read_bytes()
    verify_artifact(d)  # the tiny model as it is: fine without references
    with_last("Sigmoid", parity={"max_abs_diff": 0.0, "top1_agreement": 1.0, "n": 4})
    assert verify_artifact(d).n_references == 4
    (d / "model.onnx").write_bytes(orig)
    with_last("Identity")
    with pytest.raises(ModelError, match=r"not probabilities in \[0, 1\]"):
        verify_artifact(d)
    (d / "model.onnx").write_bytes(orig)
    with_last("Softmax")
    with pytest.raises(
        ModelError, match="every row of 'probabilities' sums to 1 on the references: a softmax output"
    ):
        verify_artifact(d)
    (d / "model.onnx").write_bytes(orig)
    out = dict(make_manifest(d)["output"], activation="softmax")
    with_last("Sigmoid", task="multiclass", output=out, thresholds=None)
    with pytest.raises(ModelError, match=r"multiclass \(softmax\) but the rows of 'probabilities' sum to"):
        verify_artifact(d)


def test_a_name_folder_given_for_its_version_folder_says_which_versions_it_holds(
    tiny_model_dir: Path,
) -> None:
    """`--model out/good` (the NAME/ folder, not NAME/VERSION/) said only "manifest not found"."""
    with pytest.raises(ModelError, match=r"tiny: holds no manifest\.json but the versions 1\.0\.0: give one"):
        instrunet_core.load_model(tiny_model_dir.parent)
    (tiny_model_dir.parent / "notes").mkdir()
    with pytest.raises(ModelError, match=r"manifest\.json"):
        instrunet_core.load_model(tiny_model_dir.parent / "notes")


def test_a_version_folder_whose_manifest_says_another_version_is_an_error_row(tmp_path: Path) -> None:
    """A copied models/x/2.0.0/ whose manifest still said 1.0.0 registered as 1.0.0 and was then
    dropped as "already registered", with a warning about the duplicate, not the copy."""
    first = write_model_dir(tmp_path, "tiny", "1.0.0")
    shutil.copytree(first, tmp_path / "tiny" / "2.0.0")
    reg = build_registry(
        extra_plugins=[("t", ModelPlugin(first, tmp_path / "tiny" / "2.0.0"))], entry_points=False
    )
    rows = {(e.version, e.error is None) for e in reg.models if e.name == "tiny"}
    assert rows == {("1.0.0", True), ("2.0.0", False)}
    bad = next(e for e in reg.models if e.version == "2.0.0")
    assert "in the folder 2.0.0/ but the manifest says version 1.0.0" in bad.error


def test_audit2_models_listing_says_what_was_checked(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A models audit: plain `models` said "ok" for an artifact whose graph cannot load (only its
    sha256 was checked); `models --check` said "ok" for one without references whose outputs are
    logits; a plugin's path with a newline or an escape split and coloured the listing."""
    from instrunet_core import cli

    odd = tmp_path / "odd\nname\x1b[31m" / "tiny" / "1.0.0"
    shutil.copytree(tiny_model_dir, odd)
    reg = build_registry(extra_plugins=[("odd", ModelPlugin(odd))])
    monkeypatch.setattr(plugins_mod, "_REGISTRY", reg)
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "matches (--check loads and runs it)" in out and "odd\\nname\\x1b[31m" in out and "\x1b" not in out
    assert cli.main(["models", "--check"]) == 0
    assert "... ok, no references stored (outputs checked on test input)" in capsys.readouterr().out

    def logits(path: Path) -> None:  # the window's mean level x 20 - 5: no sigmoid
        nodes = [
            helper.make_node("ReduceMean", ["mel"], ["m"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Unsqueeze", ["m", "ax"], ["m2"]),
            helper.make_node("MatMul", ["m2", "W"], ["z"]),
            helper.make_node("Sub", ["z", "five"], ["probabilities"]),
        ]
        inits = [
            numpy_helper.from_array(np.array([1], np.int64), "ax"),
            numpy_helper.from_array(np.full((1, 8), 20.0, np.float32), "W"),
            numpy_helper.from_array(np.array(5.0, np.float32), "five"),
        ]
        _graph_model(path, nodes, inits)

    d = _artifact(tmp_path, logits, name="logits")  # no references stored
    with pytest.raises(
        ModelError, match=r"holds -5 to 5.* on test input \(no references stored\), not probabilities"
    ):
        verify_artifact(d)


def test_a_strangers_artifact_cannot_make_a_check_or_a_load_take_gigabytes(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A 65 KB ``references.npz`` of zeros (2,048 windows) took 4.5 GB to check, every reference
    run in one batch; a sparse 3 GB ``model.onnx`` (16 KB on disk) was read whole into memory
    before its sha256 was found wrong, and 6 GB was a ``MemoryError`` traceback (a security
    audit). The references' count is read from the archive's header and capped, the replay runs
    in batches, a file past ONNX's 2 GiB is refused from its size, and a file is hashed before
    anything of it is kept."""
    from instrunet_core import verify

    d = tmp_path / "bomb" / "tiny" / "1.0.0"
    shutil.copytree(tiny_model_dir, d)
    n = verify.MAX_REFERENCES + 1
    np.savez_compressed(
        d / "references.npz",
        inputs=np.zeros((n, 128, 128, 1), np.float16),
        outputs=np.zeros((n, 8), np.float32),
    )
    (d / "manifest.json").write_text(json.dumps(make_manifest(d, references="references.npz")))
    assert (d / "references.npz").stat().st_size < 200_000
    with pytest.raises(ModelError, match=rf"inputs holds {n} references, more than the 1024 a check replays"):
        verify.verify_artifact(d)
    # within the cap, the replay in batches gives what one run gave
    m = instrunet_core.load_model(tiny_model_dir)
    x = np.random.default_rng(0).random((40, 128, 128, 1)).astype(np.float32)
    np.savez_compressed(
        d / "references.npz",
        inputs=x.astype(np.float16),
        outputs=m.predict_features(x.astype(np.float16).astype(np.float32)),
    )
    assert verify.verify_artifact(d).n_references == 40
    # a member named "inputs" (without .npy), which numpy reads as well, is sized too (a review)
    import zipfile

    with zipfile.ZipFile(d / "references.npz", "w", zipfile.ZIP_DEFLATED) as z:
        for key, arr in (
            ("inputs", np.zeros((n, 128, 128, 1), np.float16)),
            ("outputs", np.zeros((n, 8), np.float32)),
        ):
            buf = io.BytesIO()
            np.save(buf, arr)
            z.writestr(key, buf.getvalue())
    with pytest.raises(ModelError, match=rf"inputs holds {n} references"):
        verify.verify_artifact(d)
    # numpy reads a member named "inputs" before one named "inputs.npy": the one sized is the
    # one read; and a dtype that is not floating point is refused from the header (a 612 KB
    # archive of 24 rows of <U400 made 640 MB before; a second review)
    small = np.zeros((24, 128, 128, 1), np.float16)
    for members in (
        (
            ("inputs.npy", small),
            ("inputs", np.zeros((n, 128, 128, 1), np.float16)),
            ("outputs.npy", np.zeros((24, 8), np.float32)),
        ),
        (("inputs.npy", np.zeros((24, 128, 128, 1), "<U2")), ("outputs.npy", np.zeros((24, 8), np.float32))),
    ):
        with zipfile.ZipFile(d / "references.npz", "w", zipfile.ZIP_DEFLATED) as z:
            for key, arr in members:
                buf = io.BytesIO()
                np.save(buf, arr)
                z.writestr(key, buf.getvalue())
        with pytest.raises(
            ModelError, match=rf"inputs holds {n} references|must be float16 or float32, got <U2"
        ):
            verify.verify_artifact(d)
    big = tmp_path / "big" / "tiny" / "1.0.0"
    shutil.copytree(tiny_model_dir, big)
    with open(big / "model.onnx", "r+b") as f:
        f.truncate(3 * 2**30)  # sparse: nothing written
    with pytest.raises(ModelError, match=r"model\.onnx: 3\.0 GiB, larger than an ONNX file can be \(2 GiB\)"):
        instrunet_core.load_model(big)
    with open(big / "model.onnx", "r+b") as f:
        f.truncate(2**26)
    kept: list[int] = []
    real = verify._digest_checked

    def watch(p: Path, man: Any, keep: Any, **kw: Any) -> str:
        kept.append(keep is not None)
        return real(p, man, keep, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(verify, "_digest_checked", watch)
        with pytest.raises(ModelError, match="does not match the manifest"):
            instrunet_core.load_model(big)
    assert kept == [False]  # a wrong file was never kept in memory


def test_only_onnx_reaches_onnxruntime(tiny_model_dir: Path, tmp_path: Path) -> None:
    """onnxruntime loads bytes with ``ORTM`` at offset 4 as its own flatbuffer format, which the
    external-data scan cannot read; a file made valid as both passed the scan unread (a third
    review). Such bytes are refused, and onnxruntime is told to take ONNX only."""
    from instrunet_core.session import onnx_session

    f = tmp_path / "model.ort"
    f.write_bytes(b"\x08\x00\x09\x00ORTM\x00\x00\x00" + (tiny_model_dir / "model.onnx").read_bytes())
    with pytest.raises(
        ModelError, match=r"model\.ort: an onnxruntime \(ORT\) format model, not ONNX: refused"
    ):
        onnx_session(str(f))
