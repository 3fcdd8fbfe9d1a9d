"""The output contract: every JSON instrunet writes validates against the published schemas in instrunet_core/schema/."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, tone

import instrunet_core.output
from instrunet_core import __version__, analyze
from instrunet_core.cli import main
from instrunet_core.output import ANALYSIS_SCHEMA, CLASSIFICATION_SCHEMA, json_schemas

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

SCHEMA_DIR = Path(instrunet_core.output.__file__).with_name("schema")


def _validator(name: str) -> Any:
    from referencing import Registry, Resource

    docs = json_schemas()
    registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs.values())
    schema = docs[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, registry=registry, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _valid(name: str, doc: Any) -> None:
    errors = sorted(_validator(name).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "tone.wav", tone(4.0), SR)
    sf.write(d / "quiet.flac", np.zeros(SR, np.float32), SR)
    (d / "broken.wav").write_bytes(b"RIFF" + b"\x00" * 64)
    return {p.stem: p for p in d.iterdir()}


def test_schemas_are_valid_json_schema() -> None:
    for p in SCHEMA_DIR.glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(p.read_text()))


def test_classify_json_validates(
    tiny_registry, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    main(["classify", "--json", *map(str, files.values())])
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and sum("error" in r for r in rows) == 1
    for r in rows:
        _valid("classification.json", r)
        assert r["schema"] == CLASSIFICATION_SCHEMA and r["instrunet_version"] == __version__
        # required fields, plus the optional input kind and provider of a loaded session
        assert (
            {"name", "version", "sha256", "task"}
            <= set(r["model"])
            <= {"name", "version", "sha256", "manifest_sha256", "task", "input", "provider"}
        )


def test_batch_lines_validate(tiny_registry, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    main(["batch", str(files["tone"].parent), "--out", str(out)])
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    for line in lines:
        _valid("classification.json", json.loads(line))


def test_analyze_json_validates(
    tiny_registry, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for f in (files["tone"], files["quiet"]):
        assert main(["analyze", str(f), "--json", "-"]) == 0
        doc = json.loads(capsys.readouterr().out)
        _valid("analysis.json", doc)
        assert doc["schema"] == ANALYSIS_SCHEMA and doc["model"]["name"] == "tiny"
    # from the API too, with an analyzer's extras (an open object)
    tiny_registry.analyzers["peak"] = lambda ctx: {
        "peak": float(np.abs(ctx.audio()).max()),
        "nested": {"a": [1]},
    }
    an = analyze(tone(3.0), SR, model="tiny", registry=tiny_registry)
    _valid("analysis.json", an.to_dict())
    assert an.to_dict()["extras"]["peak"]["nested"] == {"a": [1]}


def test_model_field_has_one_shape(
    tiny_registry, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["classify", "--json", str(files["tone"])])
    (c,) = json.loads(capsys.readouterr().out)
    main(["analyze", str(files["tone"]), "--json", "-"])
    a = json.loads(capsys.readouterr().out)
    main(["batch", str(files["tone"].parent), "--out", str(tmp_path / "r.jsonl")])
    b = json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])
    assert c["model"] == a["model"] == b["model"]
    assert len(c["model"]["sha256"]) == 64


def test_a_record_that_breaks_the_contract_is_caught() -> None:
    with pytest.raises(AssertionError):
        _valid(
            "classification.json",
            {"schema": CLASSIFICATION_SCHEMA, "instrunet_version": "1", "path": "x", "label": "brass"},
        )  # no model, confidence...
    with pytest.raises(AssertionError):
        _valid(
            "classification.json",
            {
                "schema": CLASSIFICATION_SCHEMA,
                "instrunet_version": "1",
                "path": "x",
                "error": "x: bad",
                "label": "brass",
            },
        )


def test_csv_writer(tiny_registry, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    assert main(["analyze", str(files["tone"]), "--format", "csv", "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    an = analyze(files["tone"], model="tiny", registry=tiny_registry)
    assert list(rows[0]) == ["start", "end", "rms_db", "silent", *an.labels]
    assert len(rows) == len(an.timeline)
    for r, seg in zip(rows, an.timeline, strict=True):
        assert float(r["start"]) == pytest.approx(seg.start, abs=1e-4) and r["silent"] == str(int(seg.silent))
        assert float(r["brass"]) == pytest.approx(seg.probabilities["brass"], abs=1e-6)
    assert "csv" in tiny_registry.writers


def test_a_shown_name_can_be_told_from_every_other() -> None:
    """A pipelines audit (2026-12-06): a file named `a\\nb.wav` (a backslash and an n) and one
    holding a newline printed the same line, as did `c\\xffd.wav` and a name with the byte 0xff:
    a backslash is escaped too, so two names never show alike."""
    import os

    from instrunet_core.output import display_name

    if os.sep == "\\":  # pragma: no cover - Windows keeps its folder separator
        pytest.skip("POSIX paths")
    names = ["a\\nb.wav", "a\nb.wav", "c\\xffd.wav", "c\udcffd.wav", "d\\\\e.wav", "d\\e.wav", "plain é.wav"]
    shown = [display_name(n) for n in names]
    assert len(set(shown)) == len(names), shown
    assert shown[0] == "a\\\\nb.wav" and shown[1] == "a\\nb.wav" and shown[-1] == "plain é.wav"


def test_the_schemas_are_installed_with_the_package() -> None:
    """The schemas lived in docs/, which no wheel or sdist holds: a project depending on instrunet
    could not get them (packaging audit). They are package data now, found beside the module."""
    import fnmatch

    import tomllib

    root = Path(__file__).resolve().parent.parent
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "instrunet_core"
    ]
    files = sorted(p.relative_to(SCHEMA_DIR.parent).as_posix() for p in SCHEMA_DIR.glob("*.json"))
    assert len(files) == 5 and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files)
    schemas = json_schemas()
    assert sorted(schemas) == [f.split("/")[1] for f in files]
    assert {s["$id"].rsplit("/", 1)[1] for s in schemas.values()} == set(schemas)
    assert not (root / "docs" / "schema").exists()  # one copy
