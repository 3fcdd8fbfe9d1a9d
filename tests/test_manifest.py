"""Manifest validation and load-time verification of model artifacts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import build_tiny_onnx, make_manifest, write_model_dir

from instrunet_core.errors import ModelError
from instrunet_core.features import DEFAULT_FRONT_END
from instrunet_core.manifest import MANIFEST_SCHEMA, Manifest, read_manifest, seal_manifest, validate_manifest
from instrunet_core.model import Model


def test_valid_manifest_roundtrip(tiny_model_dir: Path) -> None:
    m = read_manifest(tiny_model_dir)
    assert isinstance(m, Manifest)
    assert m.schema == MANIFEST_SCHEMA == "instrunet.manifest/3"
    assert m.input_kind == "logmel"
    assert m.version_tuple == (1, 0, 0) and len(m.labels) == 8
    assert m.front_end.window_samples == 65024
    json.dumps(m.to_dict())


@pytest.mark.parametrize(
    "key,value,pattern",
    [
        ("version", "1.0", "version must be semver"),
        ("version", "v1.0.0", "version must be semver"),
        ("schema", "instrunet.manifest/0", "schema must be"),
        ("task", "regression", "task must be"),
        ("labels", [], "labels must be"),
        ("labels", ["a", "a", "b", "c", "d", "e", "f", "g"], "labels must be unique"),
        ("sha256", "xyz", "sha256 must be"),
        ("file", "../model.onnx", "file must be"),
        ("thresholds", {"brass": 1.5}, r"thresholds\['brass'\]"),
        ("thresholds", {"tuba": 0.3}, "unknown label 'tuba'"),
        (
            "front_end",
            {**DEFAULT_FRONT_END.to_dict(), "n_mels": 64},
            "input.shape .* disagrees with front_end",
        ),
        ("front_end", {**DEFAULT_FRONT_END.to_dict(), "normalization": "pcen"}, "front_end: .*not supported"),
        ("bogus", 1, "unknown key"),
    ],
)
def test_bad_values_refused(tiny_model_dir: Path, key: str, value: object, pattern: str) -> None:
    data = make_manifest(tiny_model_dir, **{key: value})
    with pytest.raises(ModelError, match=f"where.json: invalid manifest: .*{pattern}"):
        validate_manifest(data, where="where.json")


@pytest.mark.parametrize(
    "key, extra",
    [
        ("input", {"layuot": "NHWC"}),
        ("output", {"treshold": 0.5}),
        ("other", {"treshold": 0.9}),
        ("embedding", {"activation": "sigmoid"}),
    ],
)
def test_unknown_keys_inside_a_tensor_are_refused(tiny_model_dir: Path, key: str, extra: dict) -> None:
    """A misspelt key inside ``input``, ``output``, ``other`` or ``embedding`` is an error (as at
    the top level), not a value silently left at its default (``other.threshold`` at 0.5)."""
    data = make_manifest(tiny_model_dir)
    tensors = {
        "other": {"name": "other", "shape": [None, 1], "dtype": "float32", "activation": "sigmoid"},
        "embedding": {"name": "embedding", "shape": [None, 3], "dtype": "float32"},
    }
    validate_manifest(seal_manifest({**data, **tensors}), where="ok.json")  # valid without the extra key
    bad = {**data, **tensors}
    bad[key] = {**bad[key], **extra}
    name = next(iter(extra))
    with pytest.raises(
        ModelError, match=rf"bad.json: invalid manifest: unknown key\(s\) in {key}: \['{name}'\]"
    ):
        validate_manifest(seal_manifest(bad), where="bad.json")


def test_missing_key_and_activation_mismatch(tiny_model_dir: Path) -> None:
    data = make_manifest(tiny_model_dir)
    del data["labels"]
    with pytest.raises(ModelError, match=r"missing required key\(s\) \['labels'\]"):
        validate_manifest(data, where="m.json")
    data = make_manifest(tiny_model_dir, task="multiclass")
    with pytest.raises(ModelError, match="activation 'sigmoid' does not match task 'multiclass'"):
        validate_manifest(data, where="m.json")


def test_a_front_end_given_in_part_and_a_file_name_too_long_are_refused(tiny_model_dir: Path) -> None:
    """A fuzzing audit: a front end without sample_rate, n_fft and hop_length loaded with the
    runtime's defaults filled in (another front end than the model's: flute 0.386 read as
    0.484); a 256-byte file name ended in a bare OSError ("File name too long")."""
    from instrunet_core import load_model as load_model_from_path

    fe = DEFAULT_FRONT_END.to_dict()
    for k in ("sample_rate", "n_fft", "hop_length"):
        del fe[k]
    with pytest.raises(ModelError, match=r"front_end lacks \['hop_length', 'n_fft', 'sample_rate'\]"):
        validate_manifest(make_manifest(tiny_model_dir, front_end=fe), where="m.json")
    whole = DEFAULT_FRONT_END.to_dict()
    del whole["window_samples"]  # derived: may be left out
    validate_manifest(make_manifest(tiny_model_dir, front_end=whole), where="m.json")
    with pytest.raises(ModelError, match="file must be a plain file name like 'model.onnx', got one of 256"):
        validate_manifest(make_manifest(tiny_model_dir, file="x" * 256), where="m.json")
    # (and an ONNX name the file system refuses is a ModelError however it got past)
    from instrunet_core import verify

    m = load_model_from_path(tiny_model_dir).manifest
    import dataclasses

    with pytest.raises(ModelError, match="cannot be read: File name too long"):
        verify._digest_checked(tiny_model_dir, dataclasses.replace(m, file="x" * 300), None)


def _rewrite(d: Path, **overrides: object) -> None:
    (d / "manifest.json").write_text(json.dumps(make_manifest(d, **overrides)))


def test_sha_mismatch_refused(tiny_model_dir: Path) -> None:
    with open(tiny_model_dir / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match=r"model\.onnx: sha256 .* does not match"):
        Model(tiny_model_dir)


def test_label_count_mismatch_refused(tiny_model_dir: Path) -> None:
    labels = ["a", "b", "c"]
    _rewrite(
        tiny_model_dir,
        labels=labels,
        output={"name": "probabilities", "shape": [None, 3], "dtype": "float32", "activation": "sigmoid"},
    )
    with pytest.raises(
        ModelError, match=r"model\.onnx: ONNX output has 8 classes .* manifest lists 3 labels"
    ):
        Model(tiny_model_dir)


def test_io_name_mismatch_refused(tiny_model_dir: Path) -> None:
    _rewrite(
        tiny_model_dir,
        input={"name": "x", "shape": [None, 128, 128, 1], "dtype": "float32", "layout": "NHWC"},
    )
    with pytest.raises(ModelError, match="ONNX input is named 'mel', the manifest says 'x'"):
        Model(tiny_model_dir)


def test_onnx_shape_mismatch_refused(tmp_path: Path) -> None:
    d = tmp_path / "tiny" / "1.0.0"
    d.mkdir(parents=True)
    build_tiny_onnx(d / "model.onnx", n_labels=8)
    data = make_manifest(d)
    data["input"]["shape"] = [None, 128, 128, 1]
    (d / "manifest.json").write_text(json.dumps(data))
    Model(d)  # consistent: loads
    # a manifest whose front end wants 64 mel bands cannot describe a 128-band graph
    data["front_end"] = {**data["front_end"], "n_mels": 64}
    data["input"]["shape"] = [None, 64, 128, 1]
    (d / "manifest.json").write_text(json.dumps(seal_manifest(data)))
    with pytest.raises(
        ModelError, match=r"ONNX input shape .* disagrees with the manifest's \[None, 64, 128, 1\]"
    ):
        Model(d)


def test_invalid_json_and_missing_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="manifest.json: manifest is not valid JSON"):
        read_manifest(tmp_path)
    with pytest.raises(ModelError, match="manifest not found"):
        read_manifest(tmp_path / "nowhere")


def test_audit_a_manifest_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    from instrunet_core import load_model

    d = tmp_path / "m"
    d.mkdir()
    os.mkfifo(d / "manifest.json")  # nobody writes it: reading it would block for ever
    for load in (read_manifest, load_model):
        with pytest.raises(ModelError, match=r"m/manifest\.json: .*not a regular file"):
            load(d)


@pytest.mark.parametrize(
    "label", ['=HYPERLINK("http://x.example","c")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3"]
)
def test_a_label_a_spreadsheet_would_run_is_refused(tmp_path: Path, label: str) -> None:
    """Labels head the CSV columns of ``analyze --csv`` and fill the ``ranges`` writer's label
    column: a stranger's model with ``=HYPERLINK(...)`` as a label put a formula into every CSV
    (a security audit). Such a label is refused when the manifest is read."""
    d = write_model_dir(tmp_path)
    data = json.loads((d / "manifest.json").read_text())
    data["labels"] = [label, *data["labels"][1:]]
    data.pop("manifest_sha256", None)
    (d / "manifest.json").write_text(json.dumps(seal_manifest(data)))
    with pytest.raises(ModelError, match=r"labels must not start with '=', '\+', '-' or '@'"):
        read_manifest(d)


def test_a_custom_models_labels_that_would_read_as_another_thing_are_refused(tiny_model_dir: Path) -> None:
    """A custom-labels audit: `silent`, `start`, `end`, `rms_db` overwrote the columns every
    window has in the CSV and the DataFrame; `Other`, `other ` and `Silence` passed the reserved
    check and then read as the open-set answer; `café` beside its decomposed twin were two labels
    that print the same; a one-label softmax detected its label in any sound (always 1.00); and
    a Persian spelling with a zero-width non-joiner was refused as a control character."""
    eight = ["a", "b", "c", "d", "e", "f", "g", "h"]
    for bad, said in (
        ("silent", "'silent' is reserved"),
        ("start", "'start' is reserved"),
        ("RMS_dB", "'RMS_dB' is reserved"),
        ("Other", "'Other' is reserved"),
        ("Silence", "'Silence' is reserved"),
        ("other ", "must not be blank or start or end with spaces, got 'other '"),
        (" ", "must not be blank"),
    ):
        with pytest.raises(ModelError, match=said):
            validate_manifest(make_manifest(tiny_model_dir, labels=[bad, *eight[1:]]), where="m.json")
    twins = ["caf\u00e9", "cafe\u0301", *eight[2:]]
    with pytest.raises(ModelError, match="are the same word"):
        validate_manifest(make_manifest(tiny_model_dir, labels=twins), where="m.json")
    with pytest.raises(ModelError, match="are the same word"):
        validate_manifest(
            make_manifest(tiny_model_dir, labels=["Piano", "piano", *eight[2:]]), where="m.json"
        )
    ok = ["\u0633\u0647\u200c\u062a\u0627\u0631", "\U0001f9d1\u200d\U0001f3a4", *eight[2:]]  # setar, a singer
    assert validate_manifest(make_manifest(tiny_model_dir, labels=ok), where="m.json").labels[0] == ok[0]
    one = make_manifest(
        tiny_model_dir,
        task="multiclass",
        labels=["violin"],
        output={"name": "probabilities", "shape": [None, 1], "dtype": "float32", "activation": "softmax"},
    )
    with pytest.raises(ModelError, match="a softmax over one label is always 1"):
        validate_manifest(one, where="m.json")


def test_zero_width_joiners_do_not_make_a_reserved_or_a_twin_label_pass(tiny_model_dir: Path) -> None:
    """A review: allowing zero-width joiners let `other\\u200d` and `silen\\u200ct` (printed as
    `other` and `silent`) and `bra\\u200dss` beside `brass` pass the checks they print past."""
    eight = ["a", "b", "c", "d", "e", "f", "g", "h"]
    for labels, said in (
        (["oth\u200der", *eight[1:]], "is reserved"),
        (["other\u200d", *eight[1:]], "printable text"),  # (a joiner at either end joins nothing)
        (["silen\u200ct", *eight[1:]], "is reserved"),
        (["brass", "bra\u200dss", *eight[2:]], "are the same word"),
        (["\u200dx", *eight[1:]], "printable text"),
    ):
        with pytest.raises(ModelError, match=said):
            validate_manifest(make_manifest(tiny_model_dir, labels=labels), where="m.json")
