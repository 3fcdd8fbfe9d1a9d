"""Regression tests for the defects of issue 13 (a careless or hostile user), one per row.

Each test names its row; each failed on main before the fix. Row 14 (very short input) is
covered with the inference layer.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, tone

from instrunet_core import DecodeError, InputError
from instrunet_core.audio import load_audio
from instrunet_core.cli import main


def _wav_bytes(y: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# ---------------------------------------------------------------- rows 1-3: rates and hops
@pytest.mark.parametrize("rate", [1, True, False, 999, 10**9, 44100.5, "44100", float("nan"), -44100])
def test_row1_absurd_array_rates_refused(tiny_model, rate: object) -> None:
    with pytest.raises(InputError, match="array: sample rate"):
        tiny_model.predict(np.full(132300, 0.1, np.float32), sample_rate=rate)


def test_row1_valid_rate_forms_accepted(tiny_model) -> None:
    y = tone(1.0, sr=8000)
    for rate in (8000, 8000.0, np.int64(8000), np.float32(8000)):
        assert tiny_model.predict(y, sample_rate=rate).n_windows == 1


def _with_header_rate(data: bytes, rate: int) -> bytes:
    b = bytearray(data)
    assert b[:4] == b"RIFF" and b[12:16] == b"fmt "
    block_align = struct.unpack("<H", b[32:34])[0]
    b[24:28] = struct.pack("<I", rate)
    b[28:32] = struct.pack("<I", rate * block_align)
    return bytes(b)


@pytest.mark.parametrize("n_bytes", [444, 40_000])
def test_row2_one_hz_header_refused_fast(tmp_path: Path, tiny_model, n_bytes: int) -> None:
    p = tmp_path / "onehz.wav"
    p.write_bytes(_with_header_rate(_wav_bytes(np.zeros((n_bytes - 44) // 2, np.int16)), 1))
    t = time.perf_counter()
    with pytest.raises(DecodeError, match=r"onehz\.wav: the file header says a sample rate of 1 Hz"):
        tiny_model.predict(p)
    assert time.perf_counter() - t < 5.0


@pytest.mark.parametrize("hop", [1e-6, 0.0, -1.0, float("nan"), float("inf"), True, "1.5", 1e300])
def test_row3_absurd_hops_refused(tiny_model, hop: object) -> None:
    with pytest.raises(InputError, match="hop must be"):
        tiny_model.predict(tone(3.0), SR, hop=hop)


def test_row3_cli_hop_is_a_usage_error(
    tiny_registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "a.wav"
    sf.write(p, tone(3.0), SR)
    with pytest.raises(SystemExit) as e:
        main(["classify", "--hop", "1e-6", str(p)])
    assert e.value.code == 2
    assert "hop must be between" in capsys.readouterr().err


def test_long_array_at_low_rate_resampled_in_bounded_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """An array is resampled block by block: no single resampler call sees more than a block."""
    import soxr

    seen: list[int] = []
    orig = soxr.ResampleStream.resample_chunk

    def spy(self, x, last=False):  # type: ignore[no-untyped-def]
        seen.append(len(x))
        return orig(self, x, last=last)

    monkeypatch.setattr(soxr.ResampleStream, "resample_chunk", spy)
    y = load_audio(np.zeros(1000 * 60, np.int16), 1000)
    assert abs(len(y) - 60 * SR) <= 2
    assert len(seen) >= 6 and max(seen) <= 10 * 1000


# ---------------------------------------------------------------- rows 15-17: decoding
def test_row15_png_renamed_mp3_refused_quietly(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    for ext in ("mp3", "wav", "flac"):
        p = tmp_path / f"picture.{ext}"
        p.write_bytes(png)
        with pytest.raises(
            DecodeError, match=rf"picture\.{ext}: not an audio file \(the data looks like a PNG image\)"
        ):
            load_audio(p)
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"\x00\x01" * 500)
    with pytest.raises(DecodeError, match=r"junk\.mp3: not an MP3 file"):
        load_audio(junk)
    err = capfd.readouterr().err
    assert "MPEG" not in err and "pipe" not in err


def _pipe_with(data: bytes) -> io.BufferedReader:
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(data)

    threading.Thread(target=feed, daemon=True).start()
    return os.fdopen(r, "rb")


def test_row16_predict_from_pipe(tiny_model) -> None:
    y = tone(3.0)
    ref = tiny_model.predict(y, SR)
    with _pipe_with(_wav_bytes(y)) as pipe:
        assert not pipe.seekable()
        got = tiny_model.predict(pipe)
    assert got.label == ref.label and abs(got.confidence - ref.confidence) < 1e-3


def _fed_fifo(tmp_path: Path, data: bytes, name: str = "audio.fifo") -> tuple[Path, threading.Thread]:
    """A FIFO and the thread writing ``data`` into it once a reader opens it."""
    fifo = tmp_path / name
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    return fifo, t


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_row16_fifo_path(tmp_path: Path, tiny_model) -> None:
    fifo, t = _fed_fifo(tmp_path, _wav_bytes(tone(3.0)))
    assert tiny_model.predict(fifo).n_windows == 2
    t.join(5)


def test_row16_classify_stdin(
    tiny_registry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class FakeStdin:
        buffer = io.BufferedReader(io.BytesIO(_wav_bytes(tone(3.0))))  # type: ignore[arg-type]

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    assert main(["classify", "--json", "-"]) == 0
    import json

    (row,) = json.loads(capsys.readouterr().out)
    assert row["path"] == "-" and row["label"] == "brass"


def test_row17_non_utf8_file_name(tmp_path: Path, tiny_model) -> None:
    if sys.getfilesystemencoding().lower() not in ("utf-8", "utf8"):
        pytest.skip("needs a UTF-8 file system encoding")
    p = os.path.join(os.fsencode(tmp_path), b"bad\xffname.wav")
    with open(p, "wb") as f:
        f.write(_wav_bytes(tone(3.0)))
    name = os.fsdecode(p)  # surrogate-escaped, as Python gives it from argv or listdir
    assert tiny_model.predict(name).label == "brass"


# ---------------------------------------------------------------- rows 7-13: the command line
@pytest.fixture
def wav(tmp_path: Path) -> Path:
    p = tmp_path / "v.wav"
    sf.write(p, tone(3.0), SR)
    return p


def test_row7_output_equal_to_input_refused(
    tiny_registry, wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = wav.read_bytes()
    link = tmp_path / "link.wav"
    link.symlink_to(wav)
    for argv in (
        ["--json", str(wav)],
        ["--format", "csv", "--out", str(wav)],
        ["--plot", str(wav)],
        ["--json", str(link)],
        ["--json", str(tmp_path / "." / "v.wav")],
    ):
        assert main(["analyze", str(wav), *argv]) == 2
        assert "is the input file; refusing to overwrite it" in capsys.readouterr().err
    assert wav.read_bytes() == before
    assert (
        main(["analyze", str(wav), "--json", str(tmp_path / "a.json"), "--plot", str(tmp_path / "a.json")])
        == 2
    )
    batch_out = wav.parent / "v.wav"
    assert main(["batch", str(wav.parent), "--out", str(batch_out)]) == 2
    assert wav.read_bytes() == before


def _recs(p: Path) -> list[dict]:
    import json

    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


def test_row8_failed_file_retried_after_fix(
    tiny_registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "in"
    d.mkdir()
    bad = d / "b.wav"
    bad.write_bytes(b"RIFF" + b"\x00" * 100)
    out = tmp_path / "r.jsonl"
    assert main(["batch", str(d), "--out", str(out)]) == 1
    assert "error" in _recs(out)[0]
    sf.write(bad, tone(3.0), SR)  # fixed
    assert main(["batch", str(d), "--out", str(out)]) == 0
    recs = _recs(out)
    assert len(recs) == 2 and recs[-1]["label"] == "brass"
    assert main(["batch", str(d), "--out", str(out)]) == 0 and len(_recs(out)) == 2  # now done
    assert "1 already done, 0 to go" in capsys.readouterr().err


def test_row9_relative_then_absolute_dir_not_duplicated(
    tiny_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "in"
    d.mkdir()
    for k in range(2):
        sf.write(d / f"{k}.wav", tone(3.0), SR)
    out = tmp_path / "r.jsonl"
    monkeypatch.chdir(tmp_path)
    assert main(["batch", "in", "--out", "r.jsonl"]) == 0
    assert main(["batch", str(d), "--out", str(out)]) == 0
    monkeypatch.chdir(d)
    assert main(["batch", ".", "--out", "../r.jsonl"]) == 0
    recs = _recs(out)
    assert len(recs) == 2 and all(Path(r["path"]).is_absolute() for r in recs)


def test_row10_second_batch_on_same_out_refused(
    tiny_registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import fcntl

    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "a.wav", tone(3.0), SR)
    out = tmp_path / "r.jsonl"
    with open(out, "ab") as held:  # another batch holds the lock
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert main(["batch", str(d), "--out", str(out)]) == 1
        assert "another instrunet batch is writing this file" in capsys.readouterr().err
    assert out.read_bytes() == b""
    assert main(["batch", str(d), "--out", str(out)]) == 0 and len(_recs(out)) == 1


def test_row10_concurrent_batches_write_each_file_once(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Two real processes on one --out: one runs, the other is refused; no duplicate rows."""
    import subprocess

    d = tmp_path / "in"
    d.mkdir()
    for k in range(4):
        sf.write(d / f"{k}.wav", tone(3.0), SR)
    out = tmp_path / "r.jsonl"
    code = (
        "import sys; from conftest import ModelPlugin; from pathlib import Path; "
        "from instrunet_core import registry as P; from instrunet_core.cli import main; "
        f"P._REGISTRY = P.build_registry(extra_plugins=[('t', ModelPlugin(Path({str(tiny_model_dir)!r})))]); "
        "sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, "batch", str(d), "--out", str(out)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(120), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    recs = _recs(out)
    assert sorted(Path(r["path"]).name for r in recs) == [f"{k}.wav" for k in range(4)]
    assert all(rc == 0 or "another instrunet batch" in err for rc, err in results)


def test_row11_batch_failure_reported_on_stderr(
    tiny_registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "bad.wav").write_bytes(b"RIFF" + b"\x00" * 100)
    assert main(["batch", str(d), "--out", str(tmp_path / "r.jsonl")]) == 1
    err = capsys.readouterr().err
    assert any(line.startswith("instrunet: error: ") and "bad.wav: " in line for line in err.splitlines())


def test_row12_unwritable_out_and_closed_stderr(
    tiny_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "a.wav", tone(3.0), SR)
    # /proc refuses new files even to root (a read-only file system behaves the same way)
    assert main(["batch", str(d), "--out", "/proc/instrunet-test.jsonl"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("instrunet: error: /proc/instrunet-test.jsonl: cannot write: ")
    monkeypatch.setattr(sys, "stderr", None)  # started with 2>&-
    assert main(["batch", str(d), "--out", str(tmp_path / "r.jsonl")]) == 0
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    (d / "bad.wav").write_bytes(b"nope" * 10)
    assert main(["batch", str(d), "--out", str(tmp_path / "r.jsonl")]) == 1
    assert len(_recs(tmp_path / "r.jsonl")) == 2


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_row12_out_not_a_regular_file(tiny_registry, wav: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batch", str(wav.parent), "--out", "/dev/full"]) == 2  # reading it would never end
    assert "/dev/full: not a regular file" in capsys.readouterr().err


def test_row12_closed_stderr_subprocess(tiny_model_dir: Path, wav: Path, tmp_path: Path) -> None:
    """stderr closed at start (2>&-) or a pipe whose reader has gone (BrokenPipeError on write)."""
    import subprocess

    code = (
        "import sys; from conftest import ModelPlugin; from pathlib import Path; "
        "from instrunet_core import registry as P; from instrunet_core.cli import main; "
        f"P._REGISTRY = P.build_registry(extra_plugins=[('t', ModelPlugin(Path({str(tiny_model_dir)!r})))]); "
        "sys.exit(main(sys.argv[1:]))"
    )
    (wav.parent / "bad.wav").write_bytes(b"nope" * 10)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    argv = [sys.executable, "-c", code, "batch", str(wav.parent), "--out", str(tmp_path / "r.jsonl")]
    r = subprocess.run(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.close(2),
    )
    assert r.returncode == 1 and "Traceback" not in r.stdout
    assert len(_recs(tmp_path / "r.jsonl")) == 2
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads stderr any more
    (wav.parent / "worse.wav").write_bytes(b"nope" * 10)
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=write_end, text=True, timeout=120)
    os.close(write_end)
    assert r.returncode == 1, r.stdout
    assert len(_recs(tmp_path / "r.jsonl")) == 4  # bad.wav retried, worse.wav added, nothing lost


def test_row13_concurrent_json_writers_one_path(tiny_registry, tmp_path: Path) -> None:
    """Four writers, one target: every write succeeds and the result is one whole document."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    from instrunet_core import analyze
    from instrunet_core.writers import write_json

    an = analyze(tone(3.0), SR, model="tiny", registry=tiny_registry)
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "o.json"
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda _: [write_json(an, target) for _ in range(20)], range(4)))
    assert json.loads(target.read_text())["label"] == "brass"
    assert [p.name for p in target.parent.iterdir()] == ["o.json"]  # no temporary left behind


# ---------------------------------------------------------------- rows 6, 18, 19: plugins
@pytest.fixture
def noisy_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    """A real plugin module on sys.path that prints on import and in its hooks."""
    model_dir = tiny_model_dir
    (tmp_path / "noisy_plugin_mod.py").write_text(
        "from instrunet_core import hookimpl\n"
        "print('noisy plugin imported')\n"
        "@hookimpl\n"
        "def instrunet_register_models(register):\n"
        "    print('noisy plugin registering')\n"
        f"    register('tiny', {str(model_dir)!r}, default=True)\n"
        "@hookimpl\n"
        "def instrunet_register_writers(register):\n"
        "    def boom(analysis, path):\n"
        "        print('about to exit')\n"
        "        raise SystemExit(7)\n"
        "    register('boom', boom)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "noisy_plugin_mod", raising=False)
    import importlib.metadata

    from instrunet_core import registry as plugins_mod

    ep = importlib.metadata.EntryPoint(name="noisy", value="noisy_plugin_mod", group="instrunet")
    monkeypatch.setattr(plugins_mod, "_entry_points", lambda: [ep])


def test_row18_plugin_stdout_does_not_corrupt_json(
    noisy_plugin: None, wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    assert main(["classify", "--json", str(wav)]) == 0
    out, err = capsys.readouterr()
    (row,) = json.loads(out)
    assert row["label"] == "brass" and "noisy plugin imported" in err and "noisy plugin registering" in err
    assert main(["analyze", str(wav), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == "brass"


def test_row18_writer_system_exit_reported(
    noisy_plugin: None, wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["analyze", str(wav), "--format", "boom", "--out", str(tmp_path / "o.boom")])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"instrunet: error: {tmp_path / 'o.boom'}: writer 'boom' failed: SystemExit: 7" in err


def test_row18_hook_system_exit_is_reported_not_obeyed() -> None:
    from instrunet_core import hookimpl
    from instrunet_core.registry import build_registry

    class Quitter:
        @hookimpl
        def instrunet_register_writers(self, register):  # type: ignore[no-untyped-def]
            raise SystemExit(3)

    with pytest.warns(RuntimeWarning, match="SystemExit: 3"):
        reg = build_registry(extra_plugins=[("quitter", Quitter())])
    assert "SystemExit: 3" in (reg.plugins[-1].error or "")


def test_row6_plugin_cannot_replace_builtin_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from conftest import ModelPlugin, write_model_dir

    from instrunet_core import default_plugins, load_model
    from instrunet_core import registry as plugins_mod

    builtin = tmp_path / "builtin"
    monkeypatch.setattr(default_plugins, "MODELS_DIR", builtin)
    write_model_dir(builtin, "family", "1.0.0")
    evil = write_model_dir(tmp_path / "evil", "family", "9.0.0")
    other = write_model_dir(tmp_path / "other", "other", "1.0.0")
    with pytest.warns(RuntimeWarning):
        reg = plugins_mod.build_registry(
            extra_plugins=[("evil", ModelPlugin(evil)), ("other", ModelPlugin(other))]
        )
    m = load_model(registry=reg)
    assert (m.name, m.version, m.path) == ("family", "1.0.0", builtin / "family" / "1.0.0")
    errors = {p.name: p.error or "" for p in reg.plugins}
    assert "model 'family' is already registered by plugin 'instrunet_core.default_plugins'" in errors["evil"]
    assert (
        "the default stays 'family'" in errors["other"] and "INSTRUNET_DEFAULT_MODEL=other" in errors["other"]
    )
    monkeypatch.setattr(plugins_mod, "_REGISTRY", reg)
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["version"]) for r in rows if r["default"]] == [("family", "1.0.0")]
    # the user's explicit choice
    monkeypatch.setenv("INSTRUNET_DEFAULT_MODEL", "other")
    assert load_model(registry=reg).name == "other"
    assert main(["models", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out) if r["default"]] == ["other"]
    monkeypatch.setenv("INSTRUNET_DEFAULT_MODEL", "nosuch")
    with pytest.raises(Exception, match="INSTRUNET_DEFAULT_MODEL='nosuch' names no installed model"):
        load_model(registry=reg)


def test_default_model_env_may_name_a_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``INSTRUNET_DEFAULT_MODEL=<name>@<version>``: the previous default side by side with the
    new one (``make bench``), or a pinned version for a whole application."""
    import json

    from conftest import write_model_dir

    from instrunet_core import default_plugins, load_model
    from instrunet_core import registry as plugins_mod

    builtin = tmp_path / "builtin"
    monkeypatch.setattr(default_plugins, "MODELS_DIR", builtin)
    for v in ("1.0.0", "2.0.0"):
        write_model_dir(builtin, "family", v)
    reg = plugins_mod.build_registry(entry_points=False)
    assert load_model(registry=reg).version == "2.0.0"
    monkeypatch.setenv("INSTRUNET_DEFAULT_MODEL", "family@1.0.0")
    assert (load_model(registry=reg).name, load_model(registry=reg).version) == ("family", "1.0.0")
    assert load_model("family", registry=reg).version == "2.0.0"  # an explicit name is not pinned
    monkeypatch.setattr(plugins_mod, "_REGISTRY", reg)
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["version"]) for r in rows if r["default"]] == [("family", "1.0.0")]
    monkeypatch.setenv("INSTRUNET_DEFAULT_MODEL", "family@9.9.9")
    with pytest.raises(Exception, match="model 'family 9.9.9' is not installed"):
        load_model(registry=reg)


def test_row19_unknown_plugin_name_in_env_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.metadata

    from instrunet_core import registry as plugins_mod

    ep = importlib.metadata.EntryPoint(name="baseline", value="json", group="instrunet")
    monkeypatch.setattr(plugins_mod, "_entry_points", lambda: [ep])
    monkeypatch.setenv("INSTRUNET_PLUGINS", "typo")
    with pytest.warns(
        RuntimeWarning, match="INSTRUNET_PLUGINS names 'typo', but no such plugin is installed"
    ):
        reg = plugins_mod.build_registry()
    assert any(p.name == "typo" and "installed: ['baseline']" in (p.error or "") for p in reg.plugins)


def test_row18_analyzer_print_and_exit_contained(tiny_registry, capsys: pytest.CaptureFixture[str]) -> None:
    from instrunet_core import analyze

    def chatty(ctx):  # type: ignore[no-untyped-def]
        print("chatty analyzer")
        return {"ok": 1}

    def quitter(ctx):  # type: ignore[no-untyped-def]
        raise SystemExit(7)

    tiny_registry.analyzers.update(chatty=chatty, quitter=quitter)
    an = analyze(tone(3.0), SR, model="tiny", registry=tiny_registry)
    out, err = capsys.readouterr()
    assert out == "" and "chatty analyzer" in err
    assert an.extras == {"chatty": {"ok": 1}, "quitter": {"error": "SystemExit: 7"}}


# ---------------------------------------------------------------- rows 4, 5, 20: manifests
ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "instrunet_core" / "models" / "family" / "1.0.0"


def _copy_shipped(tmp_path: Path) -> Path:
    import shutil

    d = tmp_path / "family" / "1.0.0"
    shutil.copytree(SHIPPED, d)
    return d


def _edit(d: Path, seal: bool, **front_end: object) -> None:
    import json

    from instrunet_core.manifest import seal_manifest

    data = json.loads((d / "manifest.json").read_text())
    data["front_end"].update(front_end)
    (d / "manifest.json").write_text(json.dumps(seal_manifest(data) if seal else data))


@pytest.mark.parametrize(
    "change,pattern",
    [
        ({"n_fft": 0}, r"n_fft must be in \[16, 16384\], got 0"),
        ({"top_db": -80}, r"top_db must be in \[1, 200\], got -80"),
        ({"fmin": 9000.0, "fmax": 100.0}, r"fmax=100.0 must be above fmin=9000.0"),
        ({"hop_length": "512", "frames": 10**9}, r"hop_length must be an int, got '512'"),
        ({"n_mels": True}, r"n_mels must be an int, got True"),
        ({"sample_rate": 22050.5}, r"sample_rate must be an int"),
        ({"fmax": 1e6}, r"fmax must be in \[0, 11025\]"),
        ({"frames": 10**6}, r"frames must be in \[1, 4096\]"),
        ({"window_samples": "65024"}, r"window_samples must be an int"),
    ],
)
def test_row4_bad_front_end_refused_at_load(tmp_path: Path, change: dict, pattern: str) -> None:
    from instrunet_core import ModelError
    from instrunet_core import load_model as load_model_from_path

    d = _copy_shipped(tmp_path)
    _edit(d, True, **change)  # sealed: only the front-end check can catch it
    with pytest.raises(ModelError, match=rf"manifest\.json: invalid manifest: front_end: {pattern}") as e:
        load_model_from_path(d)
    assert len(str(e.value)) < 500


def test_row20_edited_manifest_refused(tmp_path: Path) -> None:
    import json

    from instrunet_core import ModelError
    from instrunet_core import load_model as load_model_from_path

    d = _copy_shipped(tmp_path)
    load_model_from_path(d)  # the shipped artifact is sealed
    data = json.loads((d / "manifest.json").read_text())
    data["labels"] = data["labels"][::-1]
    (d / "manifest.json").write_text(json.dumps(data, indent=2))
    with pytest.raises(ModelError, match="manifest_sha256 .* does not match the content"):
        load_model_from_path(d)
    _edit(_copy_shipped(tmp_path / "b"), False, top_db=60.0)  # any valid-looking edit, not only labels
    with pytest.raises(ModelError, match="does not match the content"):
        load_model_from_path(tmp_path / "b" / "family" / "1.0.0")
    del data["manifest_sha256"]
    (d / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(
        ModelError,
        match=r"manifest_sha256 is missing.*python -m export.reseal .*instrunet_core.manifest.seal_manifest",
    ):
        load_model_from_path(d)


def test_row5_undecodable_and_deep_manifests(tmp_path: Path, tiny_model_dir: Path) -> None:
    from conftest import ModelPlugin

    from instrunet_core import ModelError
    from instrunet_core.manifest import read_manifest
    from instrunet_core.registry import build_registry

    bad = tmp_path / "bad" / "1.0.0"
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(ModelError, match=r"manifest\.json: manifest is not UTF-8"):
        read_manifest(bad)
    deep = tmp_path / "deep" / "1.0.0"
    deep.mkdir(parents=True)
    (deep / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ModelError, match=r"manifest\.json: manifest is not usable JSON: nested too deeply"):
        read_manifest(deep)
    (deep / "manifest.json").write_text('{"metrics": ' + "[" * 100 + "]" * 100 + "}")
    with pytest.raises(ModelError, match="missing required key"):
        read_manifest(deep)
    huge = tmp_path / "huge" / "1.0.0"
    huge.mkdir(parents=True)
    (huge / "manifest.json").write_text(" " * (5 << 20) + "{}")
    with pytest.raises(ModelError, match="larger than 4 MiB"):
        read_manifest(huge)
    # inside a plugin: the broken ones are listed, the good model of the same hook still registers
    reg = build_registry(extra_plugins=[("p", ModelPlugin(bad, deep, tiny_model_dir))])
    assert {e.name: bool(e.error) for e in reg.models} == {"bad": True, "deep": True, "tiny": False}


def test_deeply_nested_metrics_bounded(tiny_model_dir: Path) -> None:
    from conftest import make_manifest

    from instrunet_core import ModelError
    from instrunet_core.manifest import validate_manifest

    nested: object = 1
    for _ in range(40):
        nested = [nested]
    with pytest.raises(ModelError, match="nested deeper than 32 levels"):
        validate_manifest(make_manifest(tiny_model_dir, metrics={"x": nested}), where="m.json")


def test_row12_stdout_reader_gone(tiny_model_dir: Path, wav: Path) -> None:
    """`instrunet classify many files | head -1`: stops quietly, no error line per remaining file."""
    import subprocess

    code = (
        "import sys; from conftest import ModelPlugin; from pathlib import Path; "
        "from instrunet_core import registry as P; from instrunet_core.cli import main; "
        f"P._REGISTRY = P.build_registry(extra_plugins=[('t', ModelPlugin(Path({str(tiny_model_dir)!r})))]); "
        "sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    p = subprocess.Popen(
        [sys.executable, "-c", code, "classify", *[str(wav)] * 40],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stdout.readline().startswith(str(wav))
    p.stdout.close()
    rc = p.wait(120)
    err = p.stderr.read() if p.stderr else ""
    assert rc == 1 and "Broken pipe" not in err and "Traceback" not in err


def test_reseal_adds_digest_only(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from export.reseal import main as reseal
    from instrunet_core import load_model as load_model_from_path

    data = json.loads((tiny_model_dir / "manifest.json").read_text())
    del data["manifest_sha256"]
    (tiny_model_dir / "manifest.json").write_text(json.dumps(data))
    assert reseal([str(tiny_model_dir)]) == 0
    sealed = json.loads((tiny_model_dir / "manifest.json").read_text())
    assert {k: v for k, v in sealed.items() if k != "manifest_sha256"} == data
    load_model_from_path(tiny_model_dir)
    with open(tiny_model_dir / "model.onnx", "ab") as f:
        f.write(b"\0")
    assert reseal([str(tiny_model_dir)]) == 1  # a changed ONNX file is not vouched for
    assert "does not match the manifest's" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_row16_fifo_analyzed_with_an_analyzer_reading_the_audio(tmp_path: Path, tiny_registry) -> None:
    """An analyzer decodes the source a second time: a FIFO can be read only once."""
    from instrunet_core import analyze

    fifo, t = _fed_fifo(tmp_path, _wav_bytes(tone(3.0)))
    done = threading.Event()

    def rescue() -> None:  # a second read of the FIFO would block forever: end it, so the test fails instead
        if not done.wait(20):
            with open(fifo, "wb"):
                pass

    threading.Thread(target=rescue, daemon=True).start()
    tiny_registry.analyzers["n"] = lambda ctx: {"samples": int(ctx.audio().shape[0])}
    try:
        an = analyze(fifo, model="tiny", registry=tiny_registry)
    finally:
        done.set()
    assert an.extras["n"] == {"samples": 3 * SR} and an.source == str(fifo)
    t.join(5)


def test_row18_native_stdout_of_a_plugin_kept_out_of_json(
    tiny_model_dir: Path, wav: Path, tmp_path: Path
) -> None:
    """A plugin writing to file descriptor 1 directly (as native code does) cannot corrupt --json either."""
    import json
    import subprocess

    (tmp_path / "fd_plugin_mod.py").write_text(
        "import os\nfrom instrunet_core import hookimpl\nos.write(1, b'native noise on fd 1\\n')\n"
        "@hookimpl\ndef instrunet_register_models(register):\n    os.write(1, b'more noise\\n')\n"
        f"    register('tiny', {str(tiny_model_dir)!r}, default=True)\n"
    )
    code = (
        "import sys, importlib.metadata as md; from instrunet_core import registry as P; "
        "from instrunet_core.cli import main; "
        "P._entry_points = lambda: [md.EntryPoint(name='fd', value='fd_plugin_mod', group='instrunet')]; "
        "sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-c", code, "classify", "--json", "--model", "tiny", str(wav)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["label"] == "brass" and "native noise on fd 1" in r.stderr and "more noise" in r.stderr
