"""Analyzers run on threads of their own under a time limit: one that hangs is left behind and
reported, the analysis returns (README: nothing hangs)."""

from __future__ import annotations

import json
import sys
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ModelPlugin, tone

import instrunet_core
from instrunet_core import _analyzer_threads as threads_mod
from instrunet_core import hookimpl
from instrunet_core import registry as plugins_mod
from instrunet_core.errors import InputError
from instrunet_core.registry import build_registry


def _plugin(name: str, hooks: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.instrunet_register_analyzers = hookimpl(hooks)  # type: ignore[attr-defined]
    return mod


class _Count:
    """A well-behaved streaming analyzer: counts samples and windows."""

    def __init__(self, context: Any) -> None:
        self.samples = 0
        self.windows_seen = 0

    def push(self, block: np.ndarray, start: int) -> None:
        self.samples += len(block)

    def windows(self, results: Any) -> None:
        self.windows_seen += len(results)

    def finish(self, context: Any) -> dict:
        return {"samples": self.samples, "windows": self.windows_seen}


@pytest.fixture
def release() -> Any:
    """An event the hanging analyzers wait on; set after the test so their threads end."""
    ev = threading.Event()
    yield ev
    ev.set()
    for t in threading.enumerate():  # the abandoned threads end once released
        if t.name.startswith("instrunet analyzer"):
            t.join(timeout=10)
            assert not t.is_alive(), t.name
    assert not isinstance(sys.stdout, threads_mod.RoutedStdout)  # ... and stdout is given back


def _stuck_stream(where: str, release: threading.Event) -> Any:
    class Stuck(_Count):
        def __init__(self, context: Any) -> None:
            if where == "factory":
                release.wait()
            super().__init__(context)

        def push(self, block: np.ndarray, start: int) -> None:
            if where == "push":
                release.wait()
            super().push(block, start)

        def finish(self, context: Any) -> dict:
            if where == "finish":
                release.wait()
            return super().finish(context)

    return Stuck


def test_hanging_analyzers_are_left_behind_and_the_analysis_returns(
    tiny_registry: plugins_mod.Registry, release: threading.Event
) -> None:
    def hooks(register: Any) -> None:
        for where in ("factory", "push", "finish"):
            register(f"stuck-{where}", stream=_stuck_stream(where, release))
        register("stuck-whole", lambda ctx: {"never": release.wait()})
        register("count", stream=_Count)
        register("whole", lambda ctx: {"windows": len(ctx.times)})

    reg = build_registry(extra_plugins=[_plugin("hangs", hooks)])
    model = instrunet_core.load_model("tiny", registry=tiny_registry)
    y = tone(8.0, 44100)
    an = instrunet_core.analyze(y, 44100, model=model, registry=reg, analyzer_timeout=0.3)
    assert not release.is_set()  # it returned while four analyzers were still stuck
    for where in ("factory", "push", "finish", "whole"):
        entry = an.extras[f"stuck-{where}"]
        assert entry["plugin"] == "hangs"
        assert entry["error"].startswith("TimeoutError: ran longer than its time limit (0.3 s")
        assert "left behind" in entry["error"]
    # the others are whole, and the classification is what it is without any analyzer
    assert an.extras["count"] == {"samples": round(8.0 * 22050), "windows": len(an.timeline)}
    assert an.extras["whole"] == {"windows": len(an.timeline)}
    bare = instrunet_core.analyze(y, 44100, model=model, registry=reg, analyzers=False)
    np.testing.assert_array_equal(an.probabilities, bare.probabilities)
    assert an.to_dict()["instruments"] == bare.to_dict()["instruments"]
    json.dumps(an.to_dict())


def test_the_default_limit_grows_with_the_audio_and_bad_limits_are_refused(
    tiny_registry: plugins_mod.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(threads_mod.TIMEOUT_ENV_VAR, raising=False)
    lim = threads_mod.resolve_limit(None)
    assert lim.seconds(0) == threads_mod.DEFAULT_BASE_SECONDS
    assert lim.seconds(7200.0) == threads_mod.DEFAULT_BASE_SECONDS + 7200.0
    assert lim.describe(120.0) == "180 s: 60 s + 120 s of audio"
    assert threads_mod.resolve_limit(2.5).seconds(7200.0) == 2.5
    monkeypatch.setenv(threads_mod.TIMEOUT_ENV_VAR, "12")
    assert threads_mod.resolve_limit(None).seconds(7200.0) == 12.0
    assert threads_mod.resolve_limit(3).seconds(0) == 3.0  # the argument beats the variable
    for bad in (0, -1.0, float("nan"), float("inf"), "5", True):
        with pytest.raises(InputError, match="analyzer_timeout"):
            threads_mod.resolve_limit(bad)  # type: ignore[arg-type]
    monkeypatch.setenv(threads_mod.TIMEOUT_ENV_VAR, "soon")
    with pytest.raises(InputError, match="INSTRUNET_ANALYZER_TIMEOUT: expected seconds, got 'soon'"):
        threads_mod.resolve_limit(None)
    # refused before anything is decoded (the path does not even exist), only when analyzers run
    reg = build_registry(extra_plugins=[_plugin("counts", lambda register: register("count", stream=_Count))])
    model = instrunet_core.load_model("tiny", registry=tiny_registry)
    with pytest.raises(InputError, match="INSTRUNET_ANALYZER_TIMEOUT"):
        instrunet_core.analyze("/nonexistent.wav", model=model, registry=reg)
    monkeypatch.delenv(threads_mod.TIMEOUT_ENV_VAR)
    with pytest.raises(InputError, match="analyzer_timeout"):
        instrunet_core.analyze(tone(1.0), 22050, model=model, registry=reg, analyzer_timeout=-2)
    an = instrunet_core.analyze(
        tone(1.0), 22050, model=model, registry=reg, analyzers=False, analyzer_timeout=-2
    )
    assert an.extras == {}


def test_analyzer_threads_print_to_stderr_and_stdout_is_given_back(
    tiny_registry: plugins_mod.Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    class Chatty(_Count):
        def push(self, block: np.ndarray, start: int) -> None:
            print("chatty push")
            super().push(block, start)

    def hooks(register: Any) -> None:
        register("chatty", stream=Chatty)
        register("loud", lambda ctx: print("loud whole") or {"ok": True})

    reg = build_registry(extra_plugins=[_plugin("talks", hooks)])
    model = instrunet_core.load_model("tiny", registry=tiny_registry)
    before = sys.stdout
    an = instrunet_core.analyze(tone(3.0), 22050, model=model, registry=reg)
    print("the host's own line")
    out, err = capsys.readouterr()
    assert an.extras["loud"] == {"ok": True} and an.extras["chatty"]["samples"] == 3 * 22050
    assert "chatty push" in err and "loud whole" in err
    assert out == "the host's own line\n"
    assert sys.stdout is before  # no analyzer thread is left: the routing is gone


def test_a_failing_decode_lets_the_analyzer_threads_end(
    tiny_registry: plugins_mod.Registry, tmp_path: Path
) -> None:
    reg = build_registry(extra_plugins=[_plugin("counts", lambda register: register("count", stream=_Count))])
    model = instrunet_core.load_model("tiny", registry=tiny_registry)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    before = {t for t in threading.enumerate() if t.name.startswith("instrunet analyzer")}
    with pytest.raises(instrunet_core.InstrunetError, match="broken.wav"):
        instrunet_core.analyze(bad, model=model, registry=reg)
    for t in threading.enumerate():
        if t.name.startswith("instrunet analyzer") and t not in before:
            t.join(timeout=10)
            assert not t.is_alive()


def test_cli_analyzer_timeout(
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    release: threading.Event,
) -> None:
    import soundfile as sf

    from instrunet_core import cli

    def hooks(register: Any) -> None:
        register("stuck", lambda ctx: {"never": release.wait()})
        register("count", stream=_Count)

    reg = build_registry(extra_plugins=[("tiny-test", ModelPlugin(tiny_model_dir)), _plugin("hangs", hooks)])
    monkeypatch.setattr(plugins_mod, "_REGISTRY", reg)
    wav = tmp_path / "tone.wav"
    sf.write(wav, tone(3.0), 22050)
    rc = cli.main(["analyze", str(wav), "--model", "tiny", "--json", "-", "--analyzer-timeout", "0.2"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["extras"]["stuck"]["error"].startswith("TimeoutError: ran longer than its time limit (0.2 s")
    assert doc["extras"]["count"]["samples"] == 3 * 22050
    for bad in ("0", "-1", "nan", "soon"):
        with pytest.raises(SystemExit) as e:
            cli.main(["analyze", str(wav), "--model", "tiny", "--analyzer-timeout", bad])
        assert e.value.code == 2
        assert "analyzer-timeout" in capsys.readouterr().err
    monkeypatch.setenv(threads_mod.TIMEOUT_ENV_VAR, "never")
    rc = cli.main(["analyze", str(wav), "--model", "tiny", "--json", "-"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert "INSTRUNET_ANALYZER_TIMEOUT: expected seconds, got 'never'" in err


def test_a_source_that_cannot_be_opened_starts_no_analyzer(
    tiny_registry: plugins_mod.Registry, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The analyzers' threads were started before the file was opened; a process exiting on the
    error while one loaded its model was aborted by the C++ runtime (exit 134; an audit). And
    INSTRUNET_ANALYZER_TIMEOUT=1e10 overflowed a timestamp inside the analyzer."""
    from instrunet_core.errors import DecodeError

    made: list[str] = []

    class Records(_Count):
        def __init__(self, context: Any) -> None:
            made.append("made")
            super().__init__(context)

    reg = build_registry(extra_plugins=[_plugin("records", lambda register: register("rec", stream=Records))])
    model = instrunet_core.load_model("tiny", registry=tiny_registry)
    bad = tmp_path / "not-audio.wav"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(DecodeError, match="not an audio file"):
        instrunet_core.analyze(str(bad), model=model, registry=reg)
    assert made == []
    monkeypatch.setenv(threads_mod.TIMEOUT_ENV_VAR, "1e10")
    with pytest.raises(InputError, match="at most 1e\\+07"):
        instrunet_core.analyze(tone(1.0), 22050, model=model, registry=reg)
