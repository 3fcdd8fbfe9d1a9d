"""The exporter end to end: a tiny Keras CNN → ONNX artifact, parity on a tiny real corpus.

Needs TensorFlow/Keras/tf2onnx (the ``train`` extra); skipped cleanly without them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import needs

needs("tensorflow", "tf2onnx", "onnx")

import onnx  # noqa: E402

import export.convert as convert  # noqa: E402
from export.__main__ import main  # noqa: E402
from export.artifact import check_artifact  # noqa: E402
from instrunet_core.features import DEFAULT_FRONT_END  # noqa: E402
from instrunet_core.labels import FAMILIES  # noqa: E402
from instrunet_core.manifest import read_manifest, validate_manifest  # noqa: E402
from instrunet_core.session import onnx_session  # noqa: E402

pytestmark = [
    pytest.mark.training,
    pytest.mark.slow,
    # Keras's own convert_to_numpy on TF tensors (third-party, harmless)
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]

EPOCH = "1700000000"  # 2023-11-14T22:13:20Z


def _tiny_keras(path: Path, activation: str = "sigmoid") -> Path:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    from keras import layers

    keras.utils.set_random_seed(7)
    inp = keras.Input((128, 128, 1), name="mel")
    x = layers.Conv2D(4, 3, activation="relu")(inp)
    x = layers.BatchNormalization()(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(len(FAMILIES), activation=activation, name="probabilities")(x)
    keras.Model(inp, out).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import training.corpus as corpus

    root = corpus.default_cache() / "soundfonts" / "root"
    if not all((Path("/") / f.path).is_file() or (root / f.path).is_file() for f in corpus.SOUNDFONTS):
        pytest.skip(
            "the Debian SoundFonts are neither installed nor in the cache (building would need the network)"
        )
    out = tmp_path_factory.mktemp("corpus")
    assert corpus.main(["build", "--out", str(out), "--limit", "2", "--workers", "1", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_keras(tmp_path_factory.mktemp("keras") / "tiny.keras")


@pytest.fixture(scope="session")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("report") / "metrics.json"
    p.write_text(
        json.dumps(
            {
                "model": "tiny",
                "version": "0.1.0",
                "task": "multilabel",
                "labels": list(FAMILIES),
                "parameters": 76,
                "thresholds": {f: 0.4 for f in FAMILIES},
                "valid": {
                    "n_single": 16,
                    "single": {"accuracy": 0.25},
                    "mixture": {"micro_f1": float("nan")},
                },
                "test": {"n_single": 16, "single": {"accuracy": 0.2}},
                "corpus": {
                    "counts": {"train": {"brass": {"notes": 2, "instruments": 2}}},
                    "soundfonts": ["fluidr3"],
                },
                "config": {"seed": 1, "n_train": 100, "corpus": "nowhere"},
            }
        )
    )
    return p


def _args(
    model: Path, out: Path, corpus: Path, *extra: str, name: str = "tiny", version: str = "0.1.0"
) -> list[str]:
    return [
        str(model),
        "--name",
        name,
        "--version",
        version,
        "--out",
        str(out),
        "--corpus",
        str(corpus),
        "--split",
        "valid",
        *extra,
    ]


@pytest.fixture(scope="session")
def exported(
    tiny_keras: Path, tiny_corpus: Path, report: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("export")
    mp = pytest.MonkeyPatch()
    mp.setenv("SOURCE_DATE_EPOCH", EPOCH)
    try:
        assert main(_args(tiny_keras, out, tiny_corpus, "--report", str(report))) == 0
    finally:
        mp.undo()
    return out / "tiny" / "0.1.0"


def test_artifact_files_and_manifest(exported: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == ["manifest.json", "model.onnx", "references.npz"]
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")], (
        "temporary folders left behind"
    )

    def no_nan(c: str) -> None:
        raise AssertionError(f"non-standard JSON constant {c}")

    data = json.loads((exported / "manifest.json").read_text(), parse_constant=no_nan)
    man = validate_manifest(data, where="manifest.json")
    assert man.name == "tiny" and man.version == "0.1.0"
    assert man.task == "multilabel" and man.output["activation"] == "sigmoid"
    assert list(man.labels) == list(FAMILIES)
    assert man.input["name"] == "mel" and man.input["shape"] == [None, 128, 128, 1]
    assert man.output["name"] == "probabilities" and man.output["shape"] == [None, 8]
    assert data["front_end"] == DEFAULT_FRONT_END.to_dict()
    assert man.sha256 == hashlib.sha256((exported / "model.onnx").read_bytes()).hexdigest()
    assert man.created == "2023-11-14T22:13:20Z"
    assert man.thresholds == {f: 0.4 for f in FAMILIES}  # taken from the report
    assert man.metrics["valid"]["single"]["accuracy"] == 0.25
    assert man.metrics["valid"]["mixture"]["micro_f1"] is None  # NaN in the report → null
    assert man.training_data["sources"] == ["fluidr3"] and man.training_data["soundfonts"]
    assert set(man.exporter) >= {"tf2onnx", "tensorflow", "keras", "onnx", "onnxruntime", "opset"}
    assert (
        man.parity["n"] >= 200 and man.parity["max_abs_diff"] <= 1e-4 and man.parity["top1_agreement"] == 1.0
    )
    assert man.references == "references.npz" and man.license == "MIT"


def test_onnx_graph_is_checked_and_named(exported: Path) -> None:
    model = onnx.load(exported / "model.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["mel"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == "batch" and not dim0.HasField("dim_value")
    assert model.graph.name == "tiny-0.1.0"
    sess = onnx_session(exported / "model.onnx")
    for n in (1, 3):  # dynamic batch
        assert sess.run(None, {"mel": np.zeros((n, 128, 128, 1), np.float32)})[0].shape == (n, 8)


def test_references_reproduce_in_onnxruntime(exported: Path, tiny_keras: Path) -> None:
    with np.load(exported / "references.npz") as z:
        x, y = z["inputs"], z["outputs"]
    assert x.dtype == np.float16 and x.shape == (24, 128, 128, 1)
    assert y.dtype == np.float32 and y.shape == (24, 8)
    assert (
        0.0 <= x.min() and x.max() <= 1.0 and x.astype(np.float32).std() > 0
    )  # real log-mel windows, not zeros
    sess = onnx_session(exported / "model.onnx")
    out = sess.run(None, {"mel": x.astype(np.float32)})[0]
    assert np.abs(out - y).max() <= 1e-4
    # stored outputs are Keras's, on exactly the float16 → float32 inputs
    keras_out = convert.keras_predict(convert.load_keras(tiny_keras), x.astype(np.float32))
    np.testing.assert_allclose(y, keras_out, atol=1e-6)
    res = check_artifact(exported)
    assert res["sha256_ok"] and res["n"] == 24 and res["top1_agreement"] == 1.0


def test_reexport_is_byte_identical(
    exported: Path,
    tiny_keras: Path,
    tiny_corpus: Path,
    report: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same .keras, same tool versions, same SOURCE_DATE_EPOCH → identical files (same process, too)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    assert main(_args(tiny_keras, tmp_path, tiny_corpus, "--report", str(report))) == 0
    again = tmp_path / "tiny" / "0.1.0"
    for name in ("model.onnx", "manifest.json", "references.npz"):
        assert (again / name).read_bytes() == (exported / name).read_bytes(), name


def test_canonicalize_only_renames(tiny_keras: Path) -> None:
    model = convert.load_keras(tiny_keras)
    a, b = convert.to_onnx(model), convert.to_onnx(model)
    ca, cb = (convert.canonicalize(p, graph_name="g") for p in (a, b))
    assert ca.SerializeToString() == cb.SerializeToString()
    assert [n.op_type for n in ca.graph.node] == [n.op_type for n in a.graph.node]
    x = np.random.default_rng(0).random((4, 128, 128, 1), dtype=np.float32)
    ya = convert.onnx_predict(onnx_session(a.SerializeToString()), x)
    yc = convert.onnx_predict(onnx_session(ca.SerializeToString()), x)
    np.testing.assert_array_equal(ya, yc)


def test_parity_failure_exits_nonzero_and_writes_nothing(
    tiny_keras: Path,
    tiny_corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real = convert.onnx_predict

    def off(sess: Any, x: np.ndarray, batch: int = 64, names: Any = None) -> Any:
        y = real(sess, x, batch, names=names)
        return [o + 3e-4 for o in y] if names is not None else y + 3e-4

    monkeypatch.setattr(convert, "onnx_predict", off)
    out = tmp_path / "out"
    assert main(_args(tiny_keras, out, tiny_corpus)) == 1
    err = capsys.readouterr().err
    assert "parity failed" in err and "exceeds atol 0.0001 by" in err and "nothing written" in err
    assert not out.exists()


def test_refuses_existing_version_and_wrong_task(
    exported: Path,
    tiny_keras: Path,
    tiny_corpus: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = (exported / "model.onnx").read_bytes()
    assert main(_args(tiny_keras, exported.parent.parent, tiny_corpus)) == 1
    assert "already exists" in capsys.readouterr().err
    assert (exported / "model.onnx").read_bytes() == before
    out = exported.parent.parent.parent / "wrong-task"
    assert main(_args(tiny_keras, out, tiny_corpus, "--task", "multiclass")) == 1
    assert "ends in sigmoid" in capsys.readouterr().err
    assert not out.exists()


def test_softmax_model_is_multiclass_and_quantizes(
    tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _tiny_keras(tmp_path / "soft.keras", activation="softmax")
    out = tmp_path / "out"
    args = _args(model, out, tiny_corpus, "--n-references", "8", "--quantize", name="soft", version="1.2.3")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "int8: accuracy" in printed and "points" in printed and "latency" in printed
    man = read_manifest(out / "soft" / "1.2.3")
    assert man.task == "multiclass" and man.output["activation"] == "softmax" and man.thresholds is None
    q = read_manifest(out / "soft-int8" / "1.2.3")
    assert q.name == "soft-int8" and q.task == "multiclass"
    assert {"accuracy_drop_points", "latency_ms_int8"} <= set(q.metrics["quantization"])
    assert check_artifact(out / "soft-int8" / "1.2.3")["n"] == 8


def test_int8_failure_rolls_back_the_float_artifact(
    tiny_corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """All or nothing: when the int8 folder fails its check, the float folder written a moment
    before is removed again (and its NAME/ folder, now empty)."""
    import export.pipeline as pipeline
    from export import ExportError

    real = pipeline.check_artifact

    def failing(folder: Path, **kw: object) -> object:
        if Path(folder).parent.name.endswith("-int8"):
            raise ExportError(f"{folder}: injected failure")
        return real(folder, **kw)

    monkeypatch.setattr(pipeline, "check_artifact", failing)
    model = _tiny_keras(tmp_path / "soft.keras", activation="softmax")
    out = tmp_path / "out"
    extra = ("--n-parity", "16", "--n-references", "4", "--quantize")
    assert main(_args(model, out, tiny_corpus, *extra, name="soft", version="1.2.3")) == 1
    assert "injected failure" in capsys.readouterr().err
    assert not (out / "soft").exists() and not (out / "soft-int8" / "1.2.3").exists()


def _tiny_open_keras(path: Path) -> Path:
    """The default architecture's head in small: pooled [bands, 1, channels] features, Flatten,
    dropout, a dense ``embedding`` layer, nine sigmoids (eight families and "other")."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    from keras import layers

    keras.utils.set_random_seed(11)
    inp = keras.Input((128, 128, 1), name="mel")
    x = layers.Conv2D(4, 3, strides=16, padding="same", activation="relu")(inp)  # [8, 8, 4]
    x = layers.Concatenate()(
        [layers.AveragePooling2D((1, 8))(x), layers.MaxPooling2D((1, 8))(x)]
    )  # [8 bands, 1, 8]
    x = layers.Dropout(0.2)(layers.Flatten()(x))
    x = layers.Dense(6, activation="relu", name="embedding")(x)
    out = layers.Dense(len(FAMILIES) + 1, activation="sigmoid", name="probabilities")(x)
    keras.Model(inp, out).save(path)
    return path


def test_the_timbre_embedding_is_the_pooled_features_averaged_over_bands(
    tmp_path: Path, tiny_corpus: Path, tiny_keras: Path
) -> None:
    import keras

    from export import ExportError

    path = _tiny_open_keras(tmp_path / "open.keras")
    model = keras.models.load_model(path, compile=False)
    x = np.random.default_rng(3).random((5, 128, 128, 1)).astype(np.float32)
    view, names = convert.output_view(model, len(FAMILIES), embedding="timbre")
    assert names == ["probabilities", "other", "embedding"]
    p, o, e = (np.asarray(a) for a in view(x, training=False))
    flat = next(la for la in model.layers if isinstance(la, keras.layers.Flatten))
    pooled = np.asarray(keras.Model(model.input, flat.input)(x, training=False))  # [5, 8, 1, 8]
    np.testing.assert_allclose(e, pooled.mean(axis=(1, 2)), atol=1e-6)
    np.testing.assert_allclose(np.column_stack([p, o]), np.asarray(model(x, training=False)), atol=1e-6)
    _, dense_names = convert.output_view(model, len(FAMILIES))  # the default: the dense layer
    assert dense_names == names
    with pytest.raises(ExportError, match="unknown embedding"):
        convert.output_view(model, len(FAMILIES), embedding="spectral")
    plain = keras.models.load_model(tiny_keras, compile=False)  # no embedding layer at all
    with pytest.raises(ExportError, match="needs a layer named 'embedding'"):
        convert.output_view(plain, len(FAMILIES), embedding="timbre")
    # through the exporter: the artifact's embedding output is 8 wide (4 channels, mean and max)
    out = tmp_path / "models"
    assert main(_args(path, out, tiny_corpus, "--embedding", "timbre", name="open")) == 0
    art = out / "open" / "0.1.0"
    m = read_manifest(art)
    assert m.embedding is not None and m.embedding["shape"] == [None, 8]
    got = onnx_session(art / "model.onnx").run(["embedding"], {"mel": x})[0]
    np.testing.assert_allclose(got, e, atol=1e-5)


# --------------------------------------------------------------------------- an audit of the exporter


def _ends_in(path: Path, activation: str, n_out: int) -> Path:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    from keras import layers

    keras.utils.set_random_seed(5)
    inp = keras.Input((128, 128, 1), name="mel")
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(2, 3, strides=8)(inp))
    keras.Model(inp, layers.Dense(n_out, activation=activation)(x)).save(path)
    return path


def test_outputs_of_another_rank_or_several_outputs_are_refused_before_converting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rank-3 output (a Dense on an unpooled map) was converted, its parity checked, and only
    the artifact's verification refused it; two outputs got a TypeError."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    from keras import layers

    inp = keras.Input((128, 128, 1), name="mel")
    x = layers.Reshape((-1, 2))(layers.Conv2D(2, 3, strides=16, padding="same")(inp))
    rank3 = tmp_path / "rank3.keras"
    keras.Model(inp, layers.Dense(len(FAMILIES), activation="sigmoid")(x)).save(rank3)
    y = layers.GlobalAveragePooling2D()(layers.Conv2D(2, 3, strides=16)(inp))
    two = tmp_path / "two.keras"
    keras.Model(inp, [layers.Dense(len(FAMILIES), activation="sigmoid")(y), layers.Dense(1)(y)]).save(two)
    for model, says in (
        (rank3, "output shape (None, 64, 8) is not (None, n_labels)"),
        (two, "has several outputs"),
    ):
        args = [str(model), "--name", "x", "--version", "1.0.0", "--out", str(tmp_path / "out")]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("activation", "n_out", "task", "says"),
    [
        (
            "softmax",
            len(FAMILIES) + 1,
            None,
            "softmax outputs for 8 labels: an open-set 'other' output is a sigmoid",
        ),
        ("relu", len(FAMILIES), "multilabel", "activation is 'relu'; the runtime needs probabilities"),
        ("linear", len(FAMILIES), "multiclass", "activation is 'linear'"),
    ],
)
def test_models_that_do_not_end_in_probabilities_are_refused(
    tmp_path: Path,
    activation: str,
    n_out: int,
    task: str | None,
    says: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A softmax over labels + 1 was exported as a multiclass model with a sigmoid 'other'; a
    relu (or logits) ending passed with --task and claimed a sigmoid."""
    model = _ends_in(tmp_path / f"{activation}.keras", activation, n_out)
    extra = ("--task", task) if task else ()
    assert (
        main([str(model), "--name", "x", "--version", "1.0.0", "--out", str(tmp_path / "out"), *extra]) == 1
    )
    assert says in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("report", "says"),
    [
        ({"labels": []}, "'labels' must be a non-empty list of strings, got []"),
        ({"labels": "abcdefgh"}, "'labels' must be a non-empty list of strings, got 'abcdefgh'"),
        ([1, 2], "expected a JSON object (a training report), got list"),
        ({"thresholds": {"brass": "abc"}}, "threshold of 'brass' must be a number, got 'abc'"),
        ({"thresholds": {"other": None}}, "threshold of 'other' must be a number, got None"),
        ({"thresholds": [0.5]}, "'thresholds' must be a JSON object"),
    ],
)
def test_reports_the_exporter_cannot_use_are_one_line_errors(
    tiny_keras: Path, tmp_path: Path, report: Any, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Empty labels fell back to the eight families, a string was split into letters, a list
    or a word for a threshold was a traceback (after the whole conversion)."""
    rep = tmp_path / "metrics.json"
    rep.write_text(json.dumps(report))
    args = [
        str(tiny_keras),
        "--name",
        "x",
        "--version",
        "1.0.0",
        "--out",
        str(tmp_path / "out"),
        "--report",
        str(rep),
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and "Traceback" not in err


def test_arguments_checked_before_the_conversion(
    tiny_keras: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out a file gave a NotADirectoryError traceback after the conversion; a version with a
    trailing newline was exported as '1.0.0\\n'; --atol nan passed parity."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    for extra, says in (
        (["--out", str(afile)], f"{afile}/tiny/1.0.0: --out must be a folder, and {afile} is a file"),
        (["--out", str(afile / "sub")], "is a file"),
        (["--out", str(tmp_path / "o"), "--version", "1.0.0\n"], "expected semver X.Y.Z"),
        (["--out", str(tmp_path / "o"), "--name", "tiny\n"], "use a lower-case identifier"),
        (["--out", str(tmp_path / "o"), "--atol", "nan"], "--atol must be a finite number >= 0, got nan"),
        # a tools audit: an artifact exported at --atol 0.5 was refused by every later check
        (["--out", str(tmp_path / "o"), "--atol", "0.5"], "--atol 0.5 is more than the runtime accepts"),
    ):
        args = [str(tiny_keras), "--name", "tiny", "--version", "1.0.0", *extra]
        # (argparse keeps the last --name/--version given)
        assert main(args) == 1
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_an_exports_unfinished_work_is_never_a_version(tmp_path: Path, tiny_model_template: Path) -> None:
    """A killed export leaves NAME/.VERSION.x1y2.tmp/ holding a complete artifact: it was
    registered (and loaded) as a version."""
    import shutil

    from instrunet_core.registry import packaged_versions

    shutil.copytree(tiny_model_template, tmp_path / "tiny" / "1.0.0")
    shutil.copytree(tiny_model_template, tmp_path / "tiny" / ".1.0.1.abcd.tmp")
    shutil.copytree(tiny_model_template, tmp_path / "tiny" / ".1.0.0.old")
    assert packaged_versions(tmp_path, "tiny") == [tmp_path / "tiny" / "1.0.0"]


def test_reseal_goes_on_after_a_folder_it_cannot_seal(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder without its ONNX file stopped reseal with a traceback before the next folders;
    a garbage ONNX file whose sha256 matched was sealed."""
    import shutil

    from export.reseal import main as reseal

    missing, garbage, good = (tmp_path / n / "1.0.0" for n in ("missing", "garbage", "good"))
    for d in (missing, garbage, good):
        shutil.copytree(exported, d)
    (missing / "model.onnx").unlink()
    (garbage / "model.onnx").write_bytes(b"not an onnx graph")
    data = json.loads((garbage / "manifest.json").read_text())
    data["sha256"] = hashlib.sha256(b"not an onnx graph").hexdigest()
    (garbage / "manifest.json").write_text(json.dumps(data))
    assert reseal([str(missing), str(garbage), str(good)]) == 1
    captured = capsys.readouterr()
    assert f"{missing / 'model.onnx'}: model file not found" in captured.err
    assert "model.onnx: not a well-formed ONNX model" in captured.err and "Traceback" not in captured.err
    assert f"{good}: manifest_sha256" in captured.out
    # a tools audit: a folder whose references.npz is gone was sealed, then refused by every check
    norefs = tmp_path / "norefs" / "1.0.0"
    shutil.copytree(exported, norefs)
    (norefs / "references.npz").unlink()
    before = (norefs / "manifest.json").read_text()
    assert reseal([str(norefs)]) == 1
    assert "references.npz" in capsys.readouterr().err
    assert (norefs / "manifest.json").read_text() == before


def test_quantize_an_open_set_model_keeps_its_outputs(tiny_corpus: Path, tmp_path: Path) -> None:
    """--quantize measured and stored the graph's first output, 'embedding' or 'other' (the
    outputs are listed by name), and the int8 manifest left them out."""
    model = _tiny_open_keras(tmp_path / "open.keras")
    out = tmp_path / "out"
    extra = ("--n-parity", "16", "--n-references", "4", "--quantize")
    assert main(_args(model, out, tiny_corpus, *extra, name="open", version="1.0.0")) == 0
    q = read_manifest(out / "open-int8" / "1.0.0")
    assert q.other is not None and q.embedding is not None
    with np.load(out / "open-int8" / "1.0.0" / "references.npz") as z:
        assert z["outputs"].shape == (4, len(FAMILIES))
    assert check_artifact(out / "open-int8" / "1.0.0")["n"] == 4


def test_a_damaged_keras_file_and_a_bad_epoch_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Keras said "File not found" of an empty .keras file that exists; SOURCE_DATE_EPOCH=abc was a
    traceback from TensorFlow's import before the exporter's own check."""
    empty = tmp_path / "empty.keras"
    empty.write_bytes(b"")
    args = [str(empty), "--name", "x", "--version", "1.0.0", "--out", str(tmp_path / "o")]
    assert main(args) == 1
    assert (
        "empty.keras: not a readable .keras file (a .keras file is a zip archive; this one is empty)"
        in capsys.readouterr().err
    )
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "abc")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.strip() == "export: error: SOURCE_DATE_EPOCH='abc' is not a number of seconds"


# ------------------------------------------------------------- an artifact audit (session of 2026-12-06)


def _behind_a_reshape(path: Path, activation: str, *, nan: bool = False) -> Path:
    """A Dense of ``activation`` then a Reshape (a layer of no activation of its own); ``nan``:
    inf - inf on every window."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    from keras import layers

    keras.utils.set_random_seed(5)
    inp = keras.Input((128, 128, 1), name="mel")
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(2, 3, strides=8)(inp))
    dense = layers.Dense(len(FAMILIES), activation=activation)
    y = layers.Reshape((len(FAMILIES),))(dense(x))
    model = keras.Model(inp, y)
    if nan:  # inf - inf (or 0 * inf) on every window
        kernel, bias = dense.get_weights()
        kernel[0], kernel[1] = np.inf, -np.inf
        dense.set_weights([kernel, bias])
    model.save(path)
    return path


@pytest.mark.parametrize(
    ("activation", "task", "says"),
    [
        ("linear", "multilabel", "not probabilities in [0, 1] (a linear layer's logits?"),
        (
            "softmax",
            "multilabel",
            "multilabel (independent sigmoids) but every row of 'probabilities' sums to 1 on the parity windows",
        ),
        ("sigmoid", "multiclass", "multiclass (softmax) but the rows of 'probabilities' sum to"),
    ],
)
def test_outputs_that_are_not_what_the_task_says_are_refused(
    tiny_corpus: Path,
    tmp_path: Path,
    activation: str,
    task: str,
    says: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Logits behind a Reshape, exported with --task, passed every check (models --check too) and
    failed at the first classification; a softmax could be declared multilabel that way."""
    model = _behind_a_reshape(tmp_path / f"{activation}.keras", activation)
    args = _args(model, tmp_path / "out", tiny_corpus, "--task", task, "--n-parity", "8", name="x")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert says in err and "nothing written" in err and not (tmp_path / "out" / "x").exists()


def test_nan_outputs_are_said_to_be_nan(
    tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """NaN passed the parity comparison (nan > atol is False); the export then failed on
    'parity.max_abs_diff must be a number, got None'."""
    model = _behind_a_reshape(tmp_path / "nan.keras", "sigmoid", nan=True)
    assert (
        main(_args(model, tmp_path / "out", tiny_corpus, "--task", "multilabel", "--n-parity", "8", name="x"))
        == 1
    )
    err = capsys.readouterr().err
    assert "Keras gives NaN or infinite 'probabilities' on 8 of 8 parity windows" in err, err


def test_an_unbuilt_model_and_the_manifests_rules_are_said_before_converting(
    tiny_keras: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unbuilt Sequential model was a traceback; unknown or out-of-range thresholds and
    duplicate or reserved labels were found after the conversion, naming the manifest."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    unbuilt = tmp_path / "unbuilt.keras"
    keras.Sequential([keras.layers.Dense(8, activation="sigmoid")]).save(unbuilt)
    base = [
        "--name",
        "x",
        "--version",
        "1.0.0",
        "--out",
        str(tmp_path / "out"),
        "--corpus",
        str(tmp_path / "none"),
    ]
    assert main([str(unbuilt), *base]) == 1
    err = capsys.readouterr().err
    assert "the model has no defined input or output shape" in err and "Traceback" not in err
    for name, content, says in (
        ("thr.json", {"flut": 0.5}, "thr.json: thresholds has unknown label 'flut'"),
        ("thr.json", {"flute": 1.5}, "thr.json: thresholds['flute'] must be a number in (0, 1), got 1.5"),
        ("thr.json", {"other": 1.0}, "thresholds['other'] must be a number in (0, 1), got 1.0"),
    ):
        (tmp_path / name).write_text(json.dumps(content))
        assert main([str(tiny_keras), *base, "--thresholds", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        # said at once: the corpus (which does not exist) was never read
        assert says in err and "invalid manifest" not in err and "corpus" not in err, err
    for labels, says in (
        ([*FAMILIES[:7], "brass"], "metrics.json: labels must be unique"),
        ([*FAMILIES[:7], "silence"], "metrics.json: 'silence' is reserved and cannot be a model label"),
    ):
        (tmp_path / "metrics.json").write_text(json.dumps({"labels": labels}))
        assert main([str(tiny_keras), *base, "--report", str(tmp_path / "metrics.json")]) == 1
        err = capsys.readouterr().err
        assert says in err and "corpus" not in err, err


def test_force_over_a_linked_version_and_a_dangling_link(
    tiny_keras: Path, tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--force over a version folder that is a link left a hidden '.1.0.0.old' link, and the next
    --force failed ('Cannot call rmtree on a symbolic link'); a dangling link was 'Not a
    directory' after the conversion."""
    out = tmp_path / "out"
    real = tmp_path / "elsewhere"
    assert (
        main(_args(tiny_keras, tmp_path / "first", tiny_corpus, "--n-parity", "8", name="x", version="1.0.0"))
        == 0
    )
    (tmp_path / "first" / "x" / "1.0.0").rename(real)
    (out / "x").mkdir(parents=True)
    (out / "x" / "1.0.0").symlink_to(real)
    for _ in range(2):
        args = _args(tiny_keras, out, tiny_corpus, "--n-parity", "8", "--force", name="x", version="1.0.0")
        assert main(args) == 0, capsys.readouterr().err
        assert sorted(p.name for p in (out / "x").iterdir()) == ["1.0.0"]
        assert not (out / "x" / "1.0.0").is_symlink() and real.is_dir()  # the link's target is left alone
    (out / "x" / "2.0.0").symlink_to(tmp_path / "nowhere")
    assert main(_args(tiny_keras, out, tiny_corpus, name="x", version="2.0.0")) == 1
    assert "a link to" in capsys.readouterr().err
    # ... and --force replaces it, as the message says
    args = _args(tiny_keras, out, tiny_corpus, "--n-parity", "8", "--force", name="x", version="2.0.0")
    assert main(args) == 0, capsys.readouterr().err
    assert (out / "x" / "2.0.0").is_dir() and not (out / "x" / "2.0.0").is_symlink()
