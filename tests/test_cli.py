"""The ``instrunet`` command line, run in-process through ``main(argv)``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, ModelPlugin, tone, write_model_dir

from instrunet_core import registry as plugins_mod
from instrunet_core.cli import main


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    d = tmp_path / "audio"
    (d / "sub").mkdir(parents=True)
    sf.write(d / "good.wav", tone(3.0), SR)
    sf.write(d / "sub" / "quiet.flac", np.zeros(SR * 2, np.float32), SR)
    (d / "bad.wav").write_bytes(b"RIFF garbage that is not audio" * 10)
    (d / "notes.txt").write_text("not audio")
    return d


@pytest.mark.parametrize("sub", ["classify", "analyze", "batch", "models", "plugins"])
def test_help_each_subcommand(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([sub, "--help"])
    assert e.value.code == 0
    assert f"usage: instrunet {sub}" in capsys.readouterr().out


def test_docs_show_current_help(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/cli.md holds every subcommand's help as the parser prints it (regenerate it when this fails)."""
    import argparse

    from instrunet_core.cli import build_parser

    doc = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    monkeypatch.setenv("COLUMNS", "100")  # the width docs/cli.md was written at
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in [("", parser), *subs.choices.items()]:
        assert sub.format_help() in doc, f"docs/cli.md: the help of 'instrunet {name}' is out of date"


def test_version_subprocess() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "instrunet_core.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and r.stdout.startswith("instrunet ")


def test_classify_good_and_corrupt(
    tiny_registry, audio_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = str(audio_dir / "good.wav"), str(audio_dir / "bad.wav")
    rc = main(["classify", bad, good])
    out, err = capsys.readouterr()
    assert rc != 0
    assert out.strip() == f"{good}\tbrass\t" + out.strip().split("\t")[-1]
    (line,) = err.strip().splitlines()
    assert line.startswith(f"instrunet: error: {bad}: cannot decode audio")


def test_classify_json_shape(tiny_registry, audio_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = [
        str(audio_dir / "good.wav"),
        str(audio_dir / "missing.wav"),
        str(audio_dir / "sub" / "quiet.flac"),
    ]
    rc = main(["classify", "--json", "--model", "tiny", *paths])
    out = capsys.readouterr().out
    rows = json.loads(out)
    assert rc == 1 and [r["path"] for r in rows] == paths
    assert set(rows[0]) == {
        "schema",
        "instrunet_version",
        "path",
        "model",
        "label",
        "confidence",
        "probabilities",
        "n_windows",
        "silent",
        "duration",
        "low_evidence",
        "sounding_seconds",
    }
    assert rows[0]["label"] == "brass" and rows[0]["low_evidence"] is False
    assert rows[0]["schema"] == "instrunet.classification/2" and rows[0]["model"]["name"] == "tiny"
    assert set(rows[1]) == {"schema", "instrunet_version", "path", "model", "error"}
    assert "file not found" in rows[1]["error"]
    assert rows[2]["label"] == "silence" and rows[2]["confidence"] == 1.0


def test_classify_without_model(audio_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["classify", str(audio_dir / "good.wav")])
    assert rc == 1 and "no model is installed" in capsys.readouterr().err


def test_analyze_outputs(
    tiny_registry, audio_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "new" / "a.json"  # folders are created, as for `make demo`'s out/
    rc = main(["analyze", str(audio_dir / "good.wav"), "--json", str(out_json), "--hop", "1.0"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "overall: brass" in text and "detected instruments:" in text and "brass" in text
    d = json.loads(out_json.read_text())
    # --hop 1.0 is snapped to 43 STFT frames (0.9985 s); a full window from 0 s, then the last one
    # aligned to the end of the 3 s file
    assert d["label"] == "brass" and d["settings"]["hop"] == pytest.approx(43 * 512 / 22050)
    assert len(d["timeline"]) == 2 and d["timeline"][-1]["end"] == pytest.approx(d["duration"], abs=1e-3)
    rc = main(["analyze", str(audio_dir / "good.wav"), "--format", "json", "--out", str(tmp_path / "b.json")])
    assert rc == 0 and json.loads((tmp_path / "b.json").read_text())["label"] == "brass"
    rc = main(["analyze", str(audio_dir / "good.wav"), "--format", "nope", "--out", str(tmp_path / "c")])
    assert rc == 2 and "--format: unknown output format 'nope'" in capsys.readouterr().err
    rc = main(["analyze", str(audio_dir / "bad.wav")])
    assert rc == 1 and capsys.readouterr().err.startswith(f"instrunet: error: {audio_dir / 'bad.wav'}:")


def test_analyze_plot(tiny_registry, audio_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "new" / "p.png"
    assert main(["analyze", str(audio_dir / "good.wav"), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the plot is the built-in png writer: also reachable as --format png; an .svg name gives SVG
    svg, png2 = tmp_path / "p.svg", tmp_path / "q.png"
    assert (
        main(
            [
                "analyze",
                str(audio_dir / "good.wav"),
                "--plot",
                str(svg),
                "--format",
                "png",
                "--out",
                str(png2),
            ]
        )
        == 0
    )
    assert b"<svg" in svg.read_bytes()[:500] and png2.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batch_resumable(
    tiny_registry, audio_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.jsonl"
    rc = main(["batch", str(audio_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1  # bad.wav recorded as an error
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    by = {Path(r["path"]).name: r for r in recs}
    assert set(by) == {"good.wav", "quiet.flac", "bad.wav"}  # recursive, .txt skipped
    assert by["good.wav"]["label"] == "brass" and by["quiet.flac"]["label"] == "silence"
    assert "error" in by["bad.wav"] and "[3/3]" in err
    # resume: a new file is processed, done ones are skipped, the failed one is retried
    sf.write(audio_dir / "new.ogg", tone(1.0), SR)
    rc = main(["batch", str(audio_dir), "--out", str(out)])
    err = capsys.readouterr().err
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 5 and sorted(Path(r["path"]).name for r in recs[3:]) == ["bad.wav", "new.ogg"]
    assert "2 already done, 2 to go" in err


def test_batch_records_hop_and_file_stamp_and_redoes_changed_files(
    tiny_registry, audio_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A resumed batch kept the result of a file rewritten since (its record held no size or
    time), and a resume with another --hop mixed two hops' answers in one file."""
    import os

    out = tmp_path / "results.jsonl"
    main(["batch", str(audio_dir), "--out", str(out), "--hop", "0.5"])
    capsys.readouterr()
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    good = next(r for r in recs if r["path"].endswith("good.wav"))
    st = os.stat(good["path"])
    assert good["hop"] == pytest.approx(0.5, abs=0.03)  # snapped to whole STFT frames
    assert (good["file_size"], good["file_mtime_ns"]) == (st.st_size, st.st_mtime_ns)
    assert all("hop" not in r and "file_size" not in r for r in recs if "error" in r)

    # another hop: refused, the file untouched
    before = out.read_bytes()
    assert main(["batch", str(audio_dir), "--out", str(out), "--hop", "1.0"]) == 1
    err = capsys.readouterr().err
    hop = f"{round(good['hop'], 3):g}"  # 0.511: 0.5 s snapped to 22 frames
    assert f"holds results made with a hop of {hop} s, not this run's 0.998 s" in err
    assert f"resume with --hop {hop}" in err and out.read_bytes() == before

    # good.wav rewritten (another sound, another time): classified again, its new record appended
    sf.write(audio_dir / "good.wav", tone(2.0, freq=880.0), SR)
    os.utime(audio_dir / "good.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    main(["batch", str(audio_dir), "--out", str(out), "--hop", "0.5"])
    err = capsys.readouterr().err
    assert "1 already done, 2 to go (1 changed since their result)" in err  # good.wav and bad.wav
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    again = [r for r in recs if r["path"] == good["path"]]
    assert len(again) == 2 and again[-1]["file_mtime_ns"] == st.st_mtime_ns + 5_000_000_000
    assert again[-1]["duration"] == pytest.approx(2.0, abs=0.01) != again[0]["duration"]
    # unchanged since: nothing to redo but the failed file
    main(["batch", str(audio_dir), "--out", str(out), "--hop", "0.5"])
    assert "2 already done, 1 to go\n" in capsys.readouterr().err

    # a result written before records held a stamp stands (no reclassification of old outputs)
    old = tmp_path / "old.jsonl"
    for r in recs:
        r.pop("file_size", None), r.pop("file_mtime_ns", None), r.pop("hop", None)
    old.write_text("".join(json.dumps(r) + "\n" for r in recs))
    os.utime(audio_dir / "good.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 9_000_000_000))
    main(["batch", str(audio_dir), "--out", str(old)])
    assert "2 already done, 1 to go\n" in capsys.readouterr().err


def test_models_and_plugins_listing(
    tiny_registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "tiny" and row["default"] is True and row["sha256_ok"] is True
    assert (
        row["labels"][0] == "brass" and row["task"] == "multilabel" and "parity" in row and "metrics" in row
    )
    # corrupt the artifact: listed with its error, not a crash
    with open(Path(row["path"]) / "model.onnx", "ab") as f:
        f.write(b"x")
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "... FAILED, " in text and "error:" in text and "does not match the manifest's" in text
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "instrunet_core.default_plugins" and rows[0]["builtin"]
    assert any(r["name"] == "tiny-test" for r in rows)


def test_models_check_replays_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--check replays references.npz through onnxruntime; a stored output off by 0.01 fails it (exit 1)."""
    d = write_model_dir(tmp_path / "models", references="references.npz")
    x = (np.random.default_rng(0).random((4, 128, 128, 1)) * 0.04).astype(np.float16)
    mean = x.astype(np.float64).mean(axis=(1, 2, 3))
    z = np.repeat((-10.0 * mean - 1.0)[:, None], 8, axis=1)  # the tiny graph, computed by hand
    z[:, 0] = 100.0 * mean - 2.0
    y = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    np.savez(d / "references.npz", inputs=x, outputs=y)
    monkeypatch.setattr(
        plugins_mod, "_REGISTRY", plugins_mod.build_registry(extra_plugins=[("tiny-test", ModelPlugin(d))])
    )
    assert main(["models", "--check", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["sha256_ok"] is True and row["references"]["n"] == 4
    assert row["references"]["max_abs_diff"] < 1e-4 and row["references"]["top1_agreement"] == 1.0
    y[1, 3] += 0.01
    np.savez(d / "references.npz", inputs=x, outputs=y)
    assert main(["models"]) == 0  # the plain listing does not replay references
    capsys.readouterr()
    assert main(["models", "--check"]) == 1
    out = capsys.readouterr().out
    assert (
        "sha256 " in out
        and "... matches; FAILED" in out
        and "references not reproduced: max |diff| 0.01" in out
    )


def test_plugins_error_row(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.metadata

    ep = importlib.metadata.EntryPoint(name="broken", value="no_such_mod_abc", group="instrunet")
    monkeypatch.setattr(plugins_mod, "_entry_points", lambda: [ep])
    assert main(["plugins"]) == 0
    out, err = capsys.readouterr()
    assert "broken ?" in out and "error: entry point broken = no_such_mod_abc failed to load" in out
    # the warning is one line of instrunet's, not Python's two (the second a line of our source)
    (line,) = err.splitlines()
    assert line.startswith("instrunet: warning: instrunet plugin 'broken': entry point broken = ")


def test_plugins_lists_each_plugins_analyzers_and_summary_clips_long_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`instrunet plugins` (and --json) names the plugin of every analyzer; the text summary cuts
    an analyzer's long string (the JSON keeps it whole)."""
    from instrunet_core import hookimpl
    from instrunet_core.cli import summarize_extra

    class Notes:
        @hookimpl
        def instrunet_register_analyzers(self, register: object) -> None:
            register("note", lambda ctx: {"text": "word " * 1000})  # type: ignore[operator]

    monkeypatch.setattr(
        plugins_mod, "_REGISTRY", plugins_mod.build_registry(extra_plugins=[("notes-plugin", Notes())])
    )
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "notes-plugin ?: instrunet_register_analyzers\n  analyzers: note\n" in out
    assert main(["plugins", "--json"]) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["name"] == "notes-plugin"]
    assert row["analyzers"] == ["note"]
    line = summarize_extra("note", {"text": "word " * 1000, "label": "x" * 500})
    assert line == "note: " + "x" * 80 + "... (500 characters; see the JSON)"
    line = summarize_extra("note", {"text": "word " * 1000})
    assert line == "note: text " + ("word " * 16) + "... (5,000 characters; see the JSON)"


def test_audit_command_line_mistakes_are_usage_errors_before_any_audio_is_read(
    tiny_registry, audio_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "not-there.wav")  # read first, this would be a file error (exit 1)
    assert main(["analyze", missing, "--format", "bogus", "--out", "-"]) == 2
    assert capsys.readouterr().err.startswith("instrunet: error: --format: unknown output format 'bogus'")
    assert main(["analyze", missing, "--analyzers", "bogus", "--json", "-"]) == 2
    assert capsys.readouterr().err == "instrunet: error: analyzers: unknown 'bogus' (registered: none)\n"
    assert main(["analyze", missing, "--analyzers", ",", "--json", "-"]) == 2
    assert "--analyzers: give 'none' or analyzer names" in capsys.readouterr().err
    for flag in ("--json", "--csv", "--plot", "--out"):
        with pytest.raises(SystemExit) as e:
            main(["analyze", missing, flag, "", *(["--format", "json"] if flag == "--out" else [])])
        assert e.value.code == 2
        assert f"argument {flag}: an output path cannot be empty" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["batch", str(audio_dir), "--out", ""])
    assert e.value.code == 2 and "an output path cannot be empty" in capsys.readouterr().err


def test_audit_an_unavailable_provider_is_one_warning_line(
    tiny_registry, audio_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import warnings

    with warnings.catch_warnings(record=True) as shown_by_python:
        warnings.simplefilter("always")
        assert main(["classify", "--providers", "foo", str(audio_dir / "good.wav")]) == 0
    assert shown_by_python == []
    out, err = capsys.readouterr()
    assert err.startswith("instrunet: warning: execution provider foo is not available here (available: ")
    assert err.endswith("; skipping it\n") and len(err.splitlines()) == 1 and "brass" in out


def test_cli_audit_batch_empty_dir_stdout_and_another_models_results(
    tiny_registry,
    audio_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`batch ''` classified the working directory, `batch --out -` wrote a file named '-', and a
    resume with another model mixed the two models' records (a CLI audit, 2026-12-06)."""
    monkeypatch.chdir(audio_dir)
    assert main(["batch", "", "--out", str(tmp_path / "e.jsonl")]) == 1
    assert "an empty path names no directory" in capsys.readouterr().err
    assert not (tmp_path / "e.jsonl").exists()
    with pytest.raises(SystemExit) as e:
        main(["batch", ".", "--out", "-"])
    assert e.value.code == 2 and "'-' (stdout) cannot be one" in capsys.readouterr().err
    assert not (audio_dir / "-").exists()
    assert main(["batch", str(tmp_path / "nowhere"), "--out", str(tmp_path / "n.jsonl")]) == 1
    assert "nowhere: not found" in capsys.readouterr().err
    out = tmp_path / "r.jsonl"
    main(["batch", ".", "--out", str(out)])
    capsys.readouterr()
    other = write_model_dir(tmp_path / "m", name="tiny2")
    before = out.read_text()
    assert main(["batch", ".", "--out", str(out), "--model", str(other)]) == 1
    err = capsys.readouterr().err
    assert "holds results of tiny 1.0.0" in err and "not of this run's tiny2 1.0.0" in err
    assert "resume with that model (--model tiny@1.0.0, or its folder)" in err
    assert out.read_text() == before


def test_cli_audit_search_escapes_names_and_providers_auto(
    tiny_registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_open_set import _open_set_dir

    model = _open_set_dir(tmp_path / "models")
    q = tmp_path / "q.wav"
    sf.write(q, tone(3.0), SR)
    lib = tmp_path / "lib"
    lib.mkdir()
    sf.write(lib / "bad\x1b[31mname\nx.wav", tone(3.0, freq=330.0), SR)
    assert main(["search", str(q), str(lib), "--model", str(model)]) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and len(out.splitlines()) == 1  # one match, one line
    assert main(["classify", str(q), "--model", str(model), "--providers", "auto"]) == 0
    assert "warning" not in capsys.readouterr().err  # "auto" was "a provider not available here"
    # --embed with a model that has no embedding: a usage error before the file is read (it was
    # blamed on the audio file, after decoding it)
    assert main(["analyze", str(tmp_path / "missing.wav"), "--embed"]) == 2
    err = capsys.readouterr().err
    assert "--embed: tiny 1.0.0 has no embedding output" in err and "missing.wav" not in err


def test_models_warns_of_a_default_that_names_no_model(
    tiny_registry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`instrunet models`, the listing where to check it, said nothing (a CLI audit); and
    `family@9.9.9` errors did not name the variable."""
    for value, said in (
        ("nosuch", "names no installed model"),
        ("tiny@9.9.9", "model 'tiny 9.9.9' is not installed"),
    ):
        monkeypatch.setenv("INSTRUNET_DEFAULT_MODEL", value)
        assert main(["models"]) == 0
        out, err = capsys.readouterr()
        assert err.startswith(f"instrunet: warning: INSTRUNET_DEFAULT_MODEL={value!r}") and said in err
        assert "no model is the default" in err and "(default)" not in out


# --------------------------------------------------------------------------- an audit of batch


def test_batch_links_folders_and_foreign_lines(
    tiny_registry,
    audio_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Broken links and loops were skipped without a word, a hard link was tagged twice, an
    unreadable folder was skipped silently, and an `instrunet embed` output given as --out
    counted every file as done."""
    import os as _os

    (audio_dir / "broken.wav").symlink_to(tmp_path / "nowhere.wav")
    (audio_dir / "loop1.wav").symlink_to(audio_dir / "loop2.wav")
    (audio_dir / "loop2.wav").symlink_to(audio_dir / "loop1.wav")
    _os.link(audio_dir / "good.wav", audio_dir / "sub" / "hard.wav")
    real_walk = _os.walk

    def walk(top: Any, onerror: Any = None, **kw: Any) -> Any:  # (root reads every folder: say one cannot be)
        if onerror is not None:
            err = PermissionError(13, "Permission denied")
            err.filename = str(Path(top) / "locked")
            onerror(err)
        return real_walk(top, onerror=onerror, **kw)

    monkeypatch.setattr(_os, "walk", walk)
    out = tmp_path / "r.jsonl"
    rc = main(["batch", str(audio_dir), "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "instrunet: warning: " in err
    assert "locked: cannot read this folder (Permission denied); the files in it are not listed" in err
    by = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(by) == {"good.wav", "quiet.flac", "bad.wav", "broken.wav", "loop1.wav", "loop2.wav"}
    assert "file not found" in by["broken.wav"]["error"] and "error" in by["loop1.wav"]
    emb = tmp_path / "emb.jsonl"
    emb.write_text(
        json.dumps({"schema": "instrunet.embedding/1", "path": str(audio_dir / "good.wav")}) + "\n"
    )
    assert main(["batch", str(audio_dir), "--out", str(emb)]) != 0
    assert (
        "not the results of instrunet batch (line 1 is not an instrunet.classification/* record"
        in capsys.readouterr().err
    )


def test_batch_out_inside_dir_with_an_audio_name_resumes(
    tiny_registry, audio_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out DIR/results.wav` worked once; the next run took it for an input and refused."""
    out = audio_dir / "results.wav"
    assert main(["batch", str(audio_dir), "--out", str(out)]) == 1  # (bad.wav)
    assert main(["batch", str(audio_dir), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "is one of the input files" not in err and "2 already done, 1 to go" in err


def test_batch_out_audit2_an_empty_results_file_and_folders_that_are_not(
    tiny_registry, audio_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch audit: a run stopped before its first record left an empty `DIR/results.flac`,
    which the next run refused as an input; a path under a file said "File exists", a name
    ending in '/' "Is a directory"."""
    out = audio_dir / "results.flac"
    out.write_bytes(b"")
    assert main(["batch", str(audio_dir), "--out", str(out)]) == 1  # (bad.wav) resumed, not refused
    err = capsys.readouterr().err
    assert "is one of the input files" not in err and "3 files, 0 already done, 3 to go" in err
    assert err.rstrip().endswith(
        f"instrunet batch: 1 of 3 files failed (their error records are in {out}; a rerun tries them again)"
    )
    good = audio_dir / "good.wav"
    assert main(["batch", str(audio_dir), "--out", str(good / "r.jsonl")]) == 1
    assert f"{good} is not a directory" in capsys.readouterr().err
    assert main(["batch", str(audio_dir), "--out", str(tmp_path / "new") + "/"]) == 1
    assert "an output file name ends in '/'" in capsys.readouterr().err


def test_a_folder_here_named_like_a_model_gets_a_hint_not_a_guess(
    tiny_registry, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`--model lg` with an artifact folder `lg` in the working directory said only "model 'lg'
    is not installed" (a docs audit): a bare word is a name, and the error says how to give the
    folder."""
    import shutil

    from instrunet_core import load_model
    from instrunet_core.errors import ModelError

    shutil.copytree(tiny_model_dir, tmp_path / "lg")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match=r"model 'lg' is not installed .*give \./lg\)"):
        load_model("lg")
    assert load_model("./lg").name == "tiny"
    sf.write(tmp_path / "a.wav", tone(2.0), SR)
    assert main(["classify", "a.wav", "--model", "lg"]) == 1
    assert "give ./lg" in capsys.readouterr().err
    with pytest.raises(ModelError) as e:
        load_model("nosuch")
    assert "give" not in str(e.value)


def test_a_named_pipe_in_a_folder_is_left_out_not_waited_for(
    tiny_registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`batch` (and `instrunet-ray`) of a folder holding a FIFO named like audio waited for a writer
    for ever, and processed nothing (an entry-points audit): it is left out with a warning."""
    import os

    d = tmp_path / "music"
    d.mkdir()
    sf.write(d / "b.wav", tone(2.0), SR)
    os.mkfifo(d / "a.wav")  # sorts first
    assert main(["batch", str(d), "--out", str(tmp_path / "o.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "a.wav: not a regular file (a named pipe, socket or device); left out" in err
    (line,) = (tmp_path / "o.jsonl").read_text().splitlines()
    assert json.loads(line)["path"].endswith("b.wav")


def test_a_librarys_log_warning_is_one_instrunet_line(capsys: pytest.CaptureFixture[str]) -> None:
    """matplotlib's "The PostScript backend does not support transparency" reached stderr bare
    (logging's last resort), unlike every other warning (an outputs audit)."""
    import logging

    from instrunet_core.cli import _warnings_as_lines

    with _warnings_as_lines():
        logging.getLogger("matplotlib.backends.backend_ps").warning("no transparency in %s", "EPS")
        logging.getLogger("matplotlib").info("not shown")
    assert capsys.readouterr().err == "instrunet: warning: no transparency in EPS\n"
    assert not any(type(h).__name__ == "_Lines" for h in logging.getLogger().handlers)


def test_outputs_that_are_one_file_through_hard_links_and_a_batch_of_nothing(
    tiny_registry, audio_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An interruption audit (2026-12-06): `--json a.json --csv b.csv` where b.csv is a hard
    link of a.json was accepted and the JSON silently replaced by the CSV; `batch` of a folder
    with no audio wrote an empty results file and said nothing."""
    import os

    a, b = tmp_path / "a.json", tmp_path / "b.csv"
    a.write_text("old")
    os.link(a, b)
    rc = main(["analyze", str(audio_dir / "good.wav"), "--json", str(a), "--csv", str(b)])
    assert rc == 2 and "must name different files" in capsys.readouterr().err
    assert a.read_text() == "old"
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "r.jsonl"
    assert main(["batch", str(empty), "--out", str(out)]) == 0
    assert "empty: no audio files under it; nothing written to" in capsys.readouterr().err
    assert not out.exists()


def test_batch_resume_refuses_the_same_onnx_under_another_manifest(
    tiny_registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model's answers depend on its manifest (labels, thresholds, front end) as well as its
    ONNX file: a resume under the same name, version and ONNX file but another manifest mixed
    two sets of answers in one output (records carry ``manifest_sha256`` since 0.2.0)."""
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    for i, freq in enumerate((220.0, 440.0)):
        sf.write(audio_dir / f"{i}.wav", tone(3.0, freq=freq), SR)
    out = tmp_path / "r.jsonl"
    first = write_model_dir(tmp_path / "a")
    assert main(["batch", str(audio_dir), "--out", str(out), "--model", str(first)]) == 0
    capsys.readouterr()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    written = json.loads((first / "manifest.json").read_text())["manifest_sha256"]
    assert {r["model"]["manifest_sha256"] for r in records} == {written}
    thresholds = {f: 0.9 for f in json.loads((first / "manifest.json").read_text())["labels"]}
    second = write_model_dir(tmp_path / "b", thresholds=thresholds)  # same name, version, ONNX
    assert json.loads((second / "manifest.json").read_text())["sha256"] == records[0]["model"]["sha256"]
    before = out.read_text()
    assert main(["batch", str(audio_dir), "--out", str(out), "--model", str(second)]) == 1
    err = capsys.readouterr().err
    assert f"holds results of tiny 1.0.0 with another manifest (manifest_sha256 {written[:12]}" in err
    assert "resume with the model folder that wrote them, or choose another output" in err
    assert out.read_text() == before
    # results written before records named their manifest resume with either folder
    for r in records:
        del r["model"]["manifest_sha256"]
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["batch", str(audio_dir), "--out", str(out), "--model", str(second)]) == 0
    assert len(out.read_text().splitlines()) == len(records)  # every file was done already


def test_batch_says_when_it_keeps_results_of_an_earlier_instrunet(
    tiny_registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upgrade audit: results written before 0.2.0 (no hop recorded; until 2026-12-06 the
    last window was not aligned to the end) resumed without a word, though the same model may
    answer those files otherwise now."""
    audio = tmp_path / "audio"
    audio.mkdir()
    for i, freq in enumerate((220.0, 330.0, 440.0)):
        sf.write(audio / f"{i}.wav", tone(3.0, freq=freq), SR)
    out = tmp_path / "r.jsonl"
    assert main(["batch", str(audio), "--out", str(out)]) == 0
    assert "earlier instrunet" not in capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    for r in records[:2]:  # as an earlier version wrote them
        del r["hop"], r["file_size"], r["file_mtime_ns"]
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["batch", str(audio), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"instrunet: warning: {out}: 2 results written by an earlier instrunet (before 0.2.0" in err
    assert "the same model may answer those files otherwise now" in err
    assert "3 already done" in err and len(out.read_text().splitlines()) == 3


def test_results_of_the_first_batch_are_refused_as_what_they_are(
    tiny_registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upgrade audit: the first `instrunet batch` wrote records without a schema; they were
    refused as "not the results of instrunet batch", as if the user had given the wrong file."""
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "a.wav", tone(3.0), SR)
    out = tmp_path / "r.jsonl"
    first = {"path": "audio/a.wav", "model": "family/1.0.0", "label": "flute", "confidence": 0.9}
    out.write_text(json.dumps(first) + "\n")
    assert main(["batch", str(audio), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{out}: results of an earlier instrunet batch (line 1 has no schema: written before" in err
    assert "which this version cannot resume; refusing to change it (choose another --out)" in err
    assert out.read_text() == json.dumps(first) + "\n"
    out.write_text('{"schema": "instrunet.embedding/1", "path": "a.wav"}\n')  # another kind: as before
    assert main(["batch", str(audio), "--out", str(out)]) == 1
    assert (
        "not the results of instrunet batch (line 1 is not an instrunet.classification/"
        in capsys.readouterr().err
    )


def test_batch_resume_of_records_no_run_wrote_is_a_refusal_not_a_traceback(
    tiny_registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fuzzing audit: a results record whose path holds a NUL or a lone surrogate, or whose
    hop has 310 digits, ended a resume in a traceback; a torn last line nested 1,000 deep too."""
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "a.wav", tone(3.0), SR)
    out = tmp_path / "r.jsonl"
    schema = "instrunet.classification/2"
    for rec, said in (
        ({"schema": schema, "path": "\x00"}, "line 1: 'path' is not a file name"),
        ({"schema": schema, "path": "\ud800"}, "line 1: 'path' is not a file name"),
        ({"schema": schema, "path": "x", "hop": 10**309}, "line 1: 'hop' is not a number of seconds"),
    ):
        text = json.dumps(rec) + "\n"
        out.write_text(text)
        assert main(["batch", str(audio), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert f"{out}: not the results of instrunet batch ({said}); refusing to change it" in err
        assert "Traceback" not in err and out.read_text() == text
    out.write_text('{"schema": "instrunet.classification/2", "x": ' + "[" * 1000)  # torn, nested
    assert main(["batch", str(audio), "--out", str(out)]) == 0
    assert [json.loads(line)["path"] for line in out.read_text().splitlines()] == [str(audio / "a.wav")]


def test_the_text_summary_of_a_model_with_labels_of_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A custom-labels audit: the summary spoke of "most probable families" for any model, padded
    labels by characters (二胡 takes four columns: the numbers left their column) and joined
    per-instrument verdicts with commas that a label may hold."""
    from instrunet_core.cli import _columns

    assert [_columns(t) for t in ("flute", "\u4e8c\u80e1", "cafe\u0301", "\U0001f9d1\u200d\U0001f3a4")] == [
        5,
        4,
        4,
        4,
    ]
    labels = ["\u4e8c\u80e1", "piano", "drums", "bass", "sax", "organ", "synth", "choir"]
    d = write_model_dir(tmp_path / "m", name="band", labels=labels)
    f = tmp_path / "a.wav"
    sf.write(f, tone(6.0), SR)
    assert main(["analyze", str(f), "--model", str(d), "--analyzers", "none"]) == 0
    out = capsys.readouterr().out
    assert "most probable labels" in out and "families" not in out
    row = next(line for line in out.splitlines() if line.startswith("  \u4e8c\u80e1"))
    assert row.startswith("  \u4e8c\u80e1" + " " * 6 + " 0.")  # 4 columns + 6 spaces: the width of 10


def test_an_environment_audit_warnings_as_errors_native_deaths_and_memory(
    tiny_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An environment audit: under PYTHONWARNINGS=error a damaged file's note became a traceback
    that stopped the command (a batch could never finish); a native library's last line before it
    ended the process went into the stderr capture and was never shown (exit 1, nothing said);
    numpy's MemoryError printed its traceback; `--hop 1_5` ran with a 15 s hop."""
    import os
    import subprocess

    good = tmp_path / "good.flac"
    sf.write(good, tone(6.0), SR, format="FLAC")
    data = good.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])
    exe = str(Path(sys.executable).parent / "instrunet")
    env = {**os.environ, "PYTHONWARNINGS": "error", "INSTRUNET_PLUGINS": ""}
    p = subprocess.run(
        [exe, "classify", str(cut), str(good)], capture_output=True, text=True, env=env, timeout=120
    )
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and p.stderr.count("instrunet: warning: ") == 1
    assert len(p.stdout.splitlines()) == 2  # both files classified
    # a native library's last words before it ends the process reach the terminal
    code = (
        "import os, instrunet_core.cli as c\n"
        "def boom(clf, src):\n"
        "    os.write(2, b'Note: Trying to resync...\\nlibfoo: out of memory, giving up\\n')\n"
        "    os._exit(1)\n"
        "c._classify_one = boom\n"
        f"c.main(['classify', {str(good)!r}])\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1 and "libfoo: out of memory, giving up" in p.stderr, p.stderr
    assert "Trying to resync" not in p.stderr  # the decoder's chatter is still dropped
    # numpy out of memory: one line naming the file
    import instrunet_core.cli as cli_mod

    def no_memory(*a: Any, **k: Any) -> Any:
        raise MemoryError("Unable to allocate 3.36 MiB")

    monkeypatch.setattr(cli_mod, "_classify_one", no_memory)
    assert main(["classify", str(good), str(cut)]) == 1
    err = capsys.readouterr().err  # (which of the files was being read is not known: none named)
    assert (
        err
        == "instrunet: error: classify: out of memory (give the process more memory, or fewer --workers)\n"
    )
    import instrunet_core.orchestration as orchestration

    monkeypatch.setattr(orchestration, "analyze", no_memory)
    assert main(["analyze", str(good)]) == 1
    said = capsys.readouterr().err
    assert (
        said
        == f"instrunet: error: {good}: out of memory (give the process more memory, or fewer --workers)\n"
    )
    # numbers as a keyboard slip writes them are refused
    with pytest.raises(SystemExit):
        main(["classify", "--hop", "1_5", str(good)])
    assert "hop must be a number of seconds, got '1_5'" in capsys.readouterr().err


def test_plots_say_when_matplotlib_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment audit: in a read-only container matplotlib's import raises OSError (no
    writable config folder): `--plot` printed two tracebacks instead of the one line its check
    exists for."""
    import importlib

    from instrunet_core import plots
    from instrunet_core.errors import InstrunetError

    def read_only(name: str) -> Any:
        raise OSError(
            "Matplotlib requires access to a writable cache directory, but there was an issue with "
            "the default path (/home/u/.config/matplotlib); set the MPLCONFIGDIR environment variable"
        )

    monkeypatch.setattr(importlib, "import_module", read_only)
    with pytest.raises(InstrunetError, match=r"matplotlib, which cannot start here: .* \(set MPLCONFIGDIR"):
        plots.new_figure(1.0, 1.0)
