"""Plugin registry: built-ins, entry points (broken ones too), INSTRUNET_PLUGINS, analyzers, writers."""

from __future__ import annotations

import importlib.metadata
import json
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ModelPlugin, tone

import instrunet_core
from instrunet_core import hookimpl
from instrunet_core import registry as plugins_mod
from instrunet_core.errors import PluginError
from instrunet_core.registry import build_registry, get_registry


def _ep(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group="instrunet")


def _module_plugin(name: str, **hooks: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    for k, v in hooks.items():
        setattr(mod, k, hookimpl(v))
    return mod


def test_builtins_always_registered() -> None:
    reg = build_registry()
    assert [p.name for p in reg.plugins] == ["instrunet_core.default_plugins"]
    assert reg.plugins[0].builtin and reg.plugins[0].error is None
    assert "json" in reg.writers
    assert get_registry() is get_registry() and get_registry(refresh=True) is not None


def test_in_process_plugin_registered_and_fresh_registry(tiny_model_dir: Path) -> None:
    reg = build_registry(extra_plugins=[("t", ModelPlugin(tiny_model_dir))])
    assert [(e.name, e.version, e.plugin) for e in reg.models] == [("tiny", "1.0.0", "t")]
    assert reg.default_model_name == "tiny"
    assert build_registry().models == []  # nothing leaks into the next registry


def _install_eps(
    monkeypatch: pytest.MonkeyPatch, eps: list[importlib.metadata.EntryPoint], mods: dict
) -> None:
    import sys

    for k, v in mods.items():
        monkeypatch.setitem(sys.modules, k, v)
    monkeypatch.setattr(plugins_mod, "_entry_points", lambda: eps)


def test_broken_entry_point_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    good = _module_plugin(
        "good_plugin_mod", instrunet_register_writers=lambda register: register("txt", print)
    )
    _install_eps(
        monkeypatch,
        [_ep("broken", "no_such_module_xyz:plugin"), _ep("good", "good_plugin_mod")],
        {"good_plugin_mod": good},
    )
    with pytest.warns(
        RuntimeWarning, match="'broken'.*entry point broken = no_such_module_xyz:plugin failed to load"
    ):
        reg = build_registry()
    rows = {p.name: p for p in reg.plugins}
    assert "ModuleNotFoundError" in (rows["broken"].error or "")
    assert rows["good"].error is None and rows["good"].hooks == ["instrunet_register_writers"]
    assert "txt" in reg.writers


def test_entry_point_whose_load_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    class Boom(importlib.metadata.EntryPoint):
        def load(self) -> Any:
            raise RuntimeError("kaboom at import")

    monkeypatch.setattr(
        plugins_mod, "_entry_points", lambda: [Boom(name="boom", value="x:y", group="instrunet")]
    )
    with pytest.warns(RuntimeWarning, match="kaboom at import"):
        reg = build_registry()
    assert any(p.name == "boom" and "RuntimeError: kaboom" in (p.error or "") for p in reg.plugins)


def test_hook_that_raises_is_isolated(tiny_model_dir: Path) -> None:
    def bad(register: Any) -> None:
        raise ValueError("bad hook")

    bad_plugin = _module_plugin("badhook", instrunet_register_models=bad)
    with pytest.warns(RuntimeWarning, match="instrunet_register_models failed: ValueError: bad hook"):
        reg = build_registry(extra_plugins=[bad_plugin, ("ok", ModelPlugin(tiny_model_dir))])
    assert [e.name for e in reg.models] == ["tiny"]


def test_instrunet_plugins_env_restricts(monkeypatch: pytest.MonkeyPatch) -> None:
    a = _module_plugin("plug_a", instrunet_register_writers=lambda register: register("a", print))
    b = _module_plugin("plug_b", instrunet_register_writers=lambda register: register("b", print))
    _install_eps(monkeypatch, [_ep("a", "plug_a"), _ep("b", "plug_b")], {"plug_a": a, "plug_b": b})
    monkeypatch.setenv("INSTRUNET_PLUGINS", "b")
    built_in = {"json", "csv", "ranges", "audacity", "jams", "png"}
    assert set(build_registry().writers) == built_in | {"b"}
    monkeypatch.setenv("INSTRUNET_PLUGINS", "")
    reg = build_registry()
    assert set(reg.writers) == built_in and len(reg.plugins) == 1
    monkeypatch.delenv("INSTRUNET_PLUGINS")
    assert set(build_registry().writers) == built_in | {"a", "b"}


def test_duplicates_and_invalid_registrations(tiny_model_dir: Path) -> None:
    p1 = _module_plugin("p1", instrunet_register_writers=lambda register: register("json", print))
    p2 = _module_plugin("p2", instrunet_register_analyzers=lambda register: register("x", "not callable"))
    with pytest.warns(RuntimeWarning):
        reg = build_registry(
            extra_plugins=[p1, p2, ("a", ModelPlugin(tiny_model_dir)), ("b", ModelPlugin(tiny_model_dir))]
        )
    from instrunet_core.writers import write_json

    assert reg.writers["json"] is write_json  # built-in kept
    assert "x" not in reg.analyzers
    assert len([e for e in reg.models if e.name == "tiny"]) == 1
    errors = {p.name: p.error for p in reg.plugins}
    assert "already registered" in errors["p1"] and "not callable" in errors["p2"]
    assert "already registered" in errors["b"]
    with pytest.raises(PluginError, match="unknown output format 'yaml'"):
        reg.writer("yaml")


def test_broken_model_artifact_listed(tmp_path: Path) -> None:
    d = tmp_path / "broken" / "1.0.0"
    d.mkdir(parents=True)
    (d / "manifest.json").write_text("{}")
    reg = build_registry(extra_plugins=[ModelPlugin(d)])
    (e,) = reg.models
    assert e.name == "broken" and "missing required key" in (e.error or "")
    with pytest.raises(instrunet_core.ModelError, match="missing required key"):
        instrunet_core.load_model("broken", registry=reg)


def test_analyzers_fill_extras_and_failures_are_reported(tiny_registry: plugins_mod.Registry) -> None:
    def peak(ctx: Any) -> dict:
        y = ctx.audio()
        seg = ctx.segment_audio(0)
        return {
            "peak": np.float32(np.abs(y).max()),
            "n_segments": len(ctx.times),
            "seg0": seg.shape[0],
            "sr": ctx.sample_rate,
        }

    def boom(ctx: Any) -> dict:
        raise RuntimeError("analyzer exploded")

    plug = _module_plugin(
        "an", instrunet_register_analyzers=lambda register: (register("peak", peak), register("boom", boom))
    )
    reg = build_registry(extra_plugins=[plug])
    an = instrunet_core.analyze(
        tone(4.0, 44100), 44100, model=instrunet_core.load_model("tiny", registry=tiny_registry), registry=reg
    )
    assert an.label == "brass"
    assert abs(an.extras["peak"]["peak"] - 0.5) < 0.01 and an.extras["peak"]["sr"] == 22050
    assert an.extras["peak"]["seg0"] == 65024
    assert an.extras["boom"] == {"error": "RuntimeError: analyzer exploded", "plugin": "an"}
    json.dumps(an.to_dict())


def test_an_analyzer_result_too_large_is_its_error_not_a_huge_document(
    tiny_registry: plugins_mod.Registry,
) -> None:
    big = plugins_mod.ANALYZER_MAX_VALUES + 1
    plug = _module_plugin(
        "big",
        instrunet_register_analyzers=lambda register: (
            register("array", lambda ctx: {"x": np.zeros(big, np.float32)}),
            register("text", lambda ctx: {"log": "x" * (100 * big)}),
            register("nested", lambda ctx: {"rows": [{"a": 1, "b": 2.0}] * big}),
            register("empties", lambda ctx: {"rows": [[]] * big}),
            register(
                "objects", lambda ctx: {"x": np.array([[0.5] * 1000] * (big // 1000 + 1), dtype=object)}
            ),
            register("fits", lambda ctx: {"x": np.arange(1000), "s": "y" * 10_000}),
        ),
    )
    reg = build_registry(extra_plugins=[plug])
    an = instrunet_core.analyze(
        tone(2.0, 22050), 22050, model=instrunet_core.load_model("tiny", registry=tiny_registry), registry=reg
    )
    for name in ("array", "text", "nested", "empties", "objects"):
        assert an.extras[name]["plugin"] == "big"
        assert an.extras[name]["error"].startswith(
            "ValueError: its result is too large: more than 1,000,000 values"
        )
    assert an.extras["fits"]["x"] == list(range(1000)) and len(an.extras["fits"]["s"]) == 10_000
    json.dumps(an.to_dict())


class _Recorder:
    """A streaming analyzer that keeps what it is fed (a test's eyes on the hook)."""

    made: list[Any] = []

    def __init__(self, context: Any) -> None:
        self.before = {
            "expected": context.expected_duration,
            "sr": context.sample_rate,
            "labels": context.labels,
            "thresholds": dict(context.thresholds),
            "hop": context.hop_seconds,
            "windows_known": len(context.times),
        }
        self.blocks: list[tuple[int, np.ndarray]] = []
        self.wins: list[Any] = []
        _Recorder.made.append(self)

    def push(self, block: np.ndarray, start: int) -> None:
        self.blocks.append((start, np.array(block)))

    def windows(self, results: Any) -> None:
        self.wins += list(results)

    def finish(self, context: Any) -> dict:
        return {"blocks": len(self.blocks), "windows": len(self.wins), "after": len(context.times)}


def test_streaming_analyzer_sees_the_one_pass(
    tiny_registry: plugins_mod.Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blocks the classifier decodes (contiguous, the whole file once) and its windows in
    order, without a second decode; the context before and after the pass."""
    import soundfile as sf

    from instrunet_core import audio as audio_mod

    y = np.concatenate([tone(30.0, 44100), np.zeros(44100 * 20, np.float32), tone(25.0, 44100)])
    path = tmp_path / "long.wav"
    sf.write(path, y, 44100, subtype="PCM_16")
    reference = audio_mod.load_audio(str(path), None, target_sr=22050)
    opened: list[Any] = []
    real_open = audio_mod._open
    monkeypatch.setattr(audio_mod, "_open", lambda src, **kw: opened.append(src) or real_open(src, **kw))
    _Recorder.made = []
    plug = _module_plugin(
        "st", instrunet_register_analyzers=lambda register: register("rec", stream=_Recorder)
    )
    reg = build_registry(extra_plugins=[plug])
    assert reg.streaming == {"rec"} and "rec" in reg.analyzers
    model = instrunet_core.load_model("tiny", registry=tiny_registry)
    # refine=False: the refinement step reads doubtful stretches again for the classifier only
    # (analyzers are fed the first pass either way), which would add a third open here.
    an = instrunet_core.analyze(str(path), model=model, registry=reg, refine=False)
    (rec,) = _Recorder.made
    # One decode for the classifier, one header read for the expected duration; no second decode.
    assert len(opened) == 2
    assert rec.before["expected"] == pytest.approx(75.0)
    assert (
        rec.before["sr"] == 22050
        and rec.before["labels"] == model.labels
        and rec.before["windows_known"] == 0
    )
    assert rec.before["thresholds"] == an.settings["thresholds"] and rec.before["hop"] == an.settings["hop"]
    starts = [s for s, _ in rec.blocks]
    assert starts[0] == 0 and len(rec.blocks) > 1
    assert all(
        s + b.shape[0] == n for (s, b), n in zip(rec.blocks[:-1], starts[1:], strict=True)
    )  # contiguous
    fed = np.concatenate([b for _, b in rec.blocks])
    np.testing.assert_array_equal(fed, reference)  # exactly the decoded file, once
    assert [w.index for w in rec.wins] == list(range(len(an.timeline)))
    assert [round(w.start, 6) for w in rec.wins] == [round(s.start, 6) for s in an.timeline]
    assert an.extras["rec"] == {
        "blocks": len(rec.blocks),
        "windows": len(an.timeline),
        "after": len(an.timeline),
    }


def test_streaming_analyzer_failures_are_its_own(tiny_registry: plugins_mod.Registry) -> None:
    class Boom(_Recorder):
        def __init__(self, context: Any, where: str) -> None:
            if where == "factory":
                raise ValueError("no state")
            super().__init__(context)
            self.where = where

        def push(self, block: np.ndarray, start: int) -> None:
            if self.where == "push":
                raise RuntimeError("push failed")
            super().push(block, start)

        def windows(self, results: Any) -> None:
            if self.where == "windows":
                raise SystemExit(3)
            super().windows(results)

        def finish(self, context: Any) -> dict:
            if self.where == "finish":
                raise KeyError("finish")
            return super().finish(context)

    def hooks(register: Any) -> None:
        for where in ("factory", "push", "windows", "finish"):
            register(where, stream=lambda ctx, where=where: Boom(ctx, where))
        register("good", stream=_Recorder)
        register("both", lambda ctx: {}, stream=_Recorder)  # refused: one kind only

    with pytest.warns(RuntimeWarning, match="either func or stream"):
        reg = build_registry(extra_plugins=[_module_plugin("bad", instrunet_register_analyzers=hooks)])
    assert "both" not in reg.analyzers
    _Recorder.made = []
    an = instrunet_core.analyze(
        tone(8.0, 44100), 44100, model=instrunet_core.load_model("tiny", registry=tiny_registry), registry=reg
    )
    assert an.extras["factory"] == {"error": "ValueError: no state", "plugin": "bad"}
    assert an.extras["push"] == {"error": "RuntimeError: push failed", "plugin": "bad"}
    assert an.extras["windows"] == {"error": "SystemExit: 3", "plugin": "bad"}
    assert an.extras["finish"] == {"error": "KeyError: 'finish'", "plugin": "bad"}
    assert an.extras["good"]["windows"] == len(an.timeline) > 0
    # without the pass, a streaming analyzer has nothing to finish: reported, never fatal
    from instrunet_core.analysis import AnalysisContext

    ctx = AnalysisContext(source=tone(1.0), sample_rate_in=22050, analysis=an)
    assert "decoding pass" in reg.run_analyzers(ctx)["good"]["error"]


class _Vandal:
    """A streaming analyzer that writes into everything it is handed."""

    def __init__(self, context: Any) -> None:
        pass

    def push(self, block: np.ndarray, start: int) -> None:
        block[:] = 0.0

    def windows(self, results: Any) -> None:
        for w in results:
            w.probabilities[:] = 0.0

    def finish(self, context: Any) -> dict:
        return {}


class _ListVandal(_Vandal):
    """Empties the list of windows it is handed (the core's own list, if it were handed that)."""

    def push(self, block: np.ndarray, start: int) -> None:
        pass

    def windows(self, results: Any) -> None:
        results.clear()


def test_analyzers_cannot_change_what_the_core_and_other_analyzers_see(
    tiny_registry: plugins_mod.Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    """Blocks, windows and the context are read-only: an analyzer that writes fails alone,
    named with its plugin, and the core's result and the other analyzers' inputs are intact."""

    def ctx_vandal(what: str) -> Any:
        def run(ctx: Any) -> dict:
            if what == "labels":
                ctx.labels = ("x",)
            elif what == "thresholds":
                ctx.thresholds["brass"] = 0.0
            elif what == "probabilities":
                ctx.probabilities[:] = 0.0
            elif what == "instruments":
                ctx.instruments[0].ranges.clear()  # its own copy: harmless, and no error
                ctx.instruments.clear()
            return {"ok": True}

        return run

    def seen(ctx: Any) -> dict:
        return {
            "labels": list(ctx.labels),
            "thresholds": dict(ctx.thresholds),
            "probabilities": ctx.probabilities.tolist(),
            "instruments": [[i.label, i.ranges] for i in ctx.instruments],
        }

    def vandals(register: Any) -> None:
        register("vandal", stream=_Vandal)
        register("list_vandal", stream=_ListVandal)
        for what in ("labels", "thresholds", "probabilities", "instruments"):
            register(f"ctx_{what}", ctx_vandal(what))

    def witnesses(register: Any) -> None:
        register("rec", stream=_Recorder)
        register("seen", seen)

    model = instrunet_core.load_model("tiny", registry=tiny_registry)
    clean = build_registry(
        extra_plugins=[("witness", _module_plugin("w", instrunet_register_analyzers=witnesses))]
    )
    reg = build_registry(
        extra_plugins=[
            ("vandals", _module_plugin("v", instrunet_register_analyzers=vandals)),
            ("witness", _module_plugin("w", instrunet_register_analyzers=witnesses)),
        ]
    )
    y = tone(8.0, 44100)
    _Recorder.made = []
    want = instrunet_core.analyze(y, 44100, model=model, registry=clean)
    got = instrunet_core.analyze(y, 44100, model=model, registry=reg)
    ref, rec = _Recorder.made
    assert got.label == want.label and got.confidence == want.confidence
    np.testing.assert_array_equal(got.probabilities, want.probabilities)
    assert [(i.label, i.ranges) for i in got.instruments] == [(i.label, i.ranges) for i in want.instruments]
    assert got.instruments and got.extras["seen"] == want.extras["seen"]
    assert got.extras["rec"] == want.extras["rec"]
    np.testing.assert_array_equal(
        np.concatenate([b for _, b in rec.blocks]), np.concatenate([b for _, b in ref.blocks])
    )
    np.testing.assert_array_equal([w.probabilities for w in rec.wins], [w.probabilities for w in ref.wins])
    for name in ("vandal", "ctx_probabilities"):
        assert got.extras[name] == {
            "error": "ValueError: assignment destination is read-only",
            "plugin": "vandals",
        }
    assert got.extras["list_vandal"]["error"].startswith("AttributeError: 'tuple' object")
    assert got.extras["ctx_labels"]["error"] == (
        "PluginError: the analysis context is read-only: cannot set 'labels' "
        "(every analyzer shares it; copy what you want to change)"
    )
    assert got.extras["ctx_thresholds"]["error"].startswith("TypeError: 'mappingproxy' object")
    assert got.extras["ctx_instruments"] == {"ok": True}
    assert reg.analyzer_plugins["vandal"] == "vandals" and reg.analyzer_plugins["seen"] == "witness"
    assert [p.analyzers for p in reg.plugins if p.name == "witness"] == [["rec", "seen"]]
    # the command line names the plugin with the failure
    from instrunet_core.cli import summarize_extra

    assert summarize_extra("vandal", got.extras["vandal"]) == (
        "vandal (plugin vandals): failed: ValueError: assignment destination is read-only"
    )


def test_writer_plugin_used(tiny_registry: plugins_mod.Registry, tmp_path: Path) -> None:
    def write_txt(analysis: Any, path: Any) -> None:
        Path(path).write_text(f"{analysis.label}\n")

    reg = build_registry(
        extra_plugins=[
            _module_plugin("w", instrunet_register_writers=lambda register: register("txt", write_txt))
        ]
    )
    an = instrunet_core.analyze(
        tone(1.0), 22050, model=instrunet_core.load_model("tiny", registry=tiny_registry)
    )
    reg.writer("txt")(an, tmp_path / "o.txt")
    assert (tmp_path / "o.txt").read_text() == "brass\n"
    reg.writer("json")(an, tmp_path / "o.json")
    assert json.loads((tmp_path / "o.json").read_text())["label"] == "brass"


class _WrappedWriters:
    """A plugin whose writer hook is wrapped by its own wrapper hookimpl, which registers too."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl(wrapper=True)
    def instrunet_register_writers(self, register: Any) -> Any:
        self.calls.append("wrapper before")
        register("wrapped-txt", lambda analysis, path: None)
        result = yield
        self.calls.append("wrapper after")
        return result


class _PlainWriter:
    @hookimpl
    def instrunet_register_writers(self, register: Any) -> None:
        register("plain-txt", lambda analysis, path: None)


def test_hooks_are_called_through_pluggy_so_wrappers_run() -> None:
    """A wrapper hookimpl runs around its plugin's own implementations (called directly, the
    generator it returns would never run); another plugin's implementations are not wrapped."""
    wrapped = _WrappedWriters()
    reg = build_registry(extra_plugins=[("wrapped", wrapped), ("plain", _PlainWriter())], entry_points=False)
    assert wrapped.calls == ["wrapper before", "wrapper after"]
    assert {"wrapped-txt", "plain-txt"} <= set(reg.writers)
    info = {p.name: p for p in reg.plugins}
    assert info["wrapped"].hooks == ["instrunet_register_writers"] and info["wrapped"].error is None


def test_audit_plugin_authoring_mistakes_are_said(
    tiny_registry: plugins_mod.Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A plugin-authoring audit (2026-12-06): a misspelt hook was accepted and never ran; an
    analyzer raising KeyboardInterrupt on its own thread aborted the analysis; a factory that
    returns a dict failed later with an AttributeError; names with a newline or ESC were taken;
    a taken name did not say who holds it; a writer's print went into `--out -`."""
    from instrunet_core.cli import main

    typo = types.ModuleType("typo")

    @hookimpl
    def instrunet_register_analyser(register: Any) -> None:  # the British spelling: no such hook
        register("never", lambda c: {})

    typo.instrunet_register_analyser = instrunet_register_analyser  # type: ignore[attr-defined]

    def analyzers(register: Any) -> None:
        def interrupt(context: Any) -> dict[str, Any]:
            raise KeyboardInterrupt

        register("kbi", interrupt)
        register("after", lambda c: {"ok": 1})
        register("dict-as-stream", stream=lambda c: {"not": "a stream"})
        register("bad\nname\x1b[31m", lambda c: {})
        register("json-twice", lambda c: {})

    def writers(register: Any) -> None:
        def printing(analysis: Any, path: Any) -> None:
            from instrunet_core.writers import atomic_write_text

            print("PRINTED BY THE WRITER")
            atomic_write_text(path, "DATA\n")

        register("printing", printing)
        register("json", printing)
        register("nothing", lambda analysis, path: None)  # returns without writing

        def plot(analysis: Any, path: Any) -> None:
            from instrunet_core.writers import atomic_write_text

            atomic_write_text(path, "THE PLUGIN'S PLOT\n")

        register("plot", plot)  # not the built-in --plot

    reg = build_registry(
        extra_plugins=[
            ("typo", typo),
            (
                "mine",
                _module_plugin(
                    "mine", instrunet_register_analyzers=analyzers, instrunet_register_writers=writers
                ),
            ),
            (
                "again",
                _module_plugin(
                    "again", instrunet_register_analyzers=lambda register: register("after", lambda c: {})
                ),
            ),
        ]
    )
    errors = {p.name: p.error for p in reg.plugins}
    assert (
        "@hookimpl instrunet_register_analyser is not one of instrunet's hooks; did you mean instrunet_register_analyzers?"
        in errors["typo"]
    )
    assert (
        "analyzer name must be letters, digits" in errors["mine"]
        and "'bad\\nname\\x1b[31m'" in errors["mine"]
    )
    assert "writer 'json' is already registered by plugin 'instrunet_core.default_plugins'" in errors["mine"]
    assert "analyzer 'after' is already registered by plugin 'mine'" in errors["again"]

    model = instrunet_core.load_model("tiny", registry=tiny_registry)
    an = instrunet_core.analyze(tone(2.0), 22050, model=model, registry=reg)
    assert (
        an.extras["kbi"]["error"] == "RuntimeError: the analyzer raised KeyboardInterrupt on its own thread"
    )
    assert an.extras["after"] == {"ok": 1}
    assert (
        "its factory returned dict, not a streaming analyzer (it lacks push, windows, finish)"
        in (an.extras["dict-as-stream"]["error"])
    )

    monkeypatch.setattr(plugins_mod, "_REGISTRY", reg)
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, tone(2.0), 22050)
    capfd.readouterr()
    assert (
        main(
            [
                "analyze",
                str(wav),
                "--model",
                str(model.path),
                "--analyzers",
                "none",
                "--format",
                "printing",
                "--out",
                "-",
            ]
        )
        == 0
    )
    out, err = capfd.readouterr()
    assert out == "DATA\n" and "PRINTED BY THE WRITER" in err
    target = tmp_path / "o.txt"
    args = ["analyze", str(wav), "--model", str(model.path), "--analyzers", "none", "--format", "nothing"]
    for existed in (False, True):  # a writer that returned without writing was a success
        if existed:
            target.write_text("old")
        assert main([*args, "--out", str(target)]) == 1
        assert f"{target}: writer 'nothing' returned without writing it" in capfd.readouterr().err
    assert main([*args, "--out", "/dev/null"]) == 0  # a device: written into, nothing to compare
    # ... and to stdout (a plugin audit: exit 0 with nothing on stdout)
    capfd.readouterr()
    assert main([*args, "--out", "-"]) == 1
    out, err = capfd.readouterr()
    assert out == "" and "-: writer 'nothing' wrote nothing to stdout" in err
    # a plugin's writer named "plot" is the one --format plot runs (the built-in --plot ran instead)
    args[-1] = "plot"
    assert main([*args, "--out", str(target)]) == 0 and target.read_text() == "THE PLUGIN'S PLOT\n"


def test_a_slow_plugin_is_named_with_its_load_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plugin that took 5 s to import slowed every command, and nothing said which one."""
    from instrunet_core.cli import main

    (tmp_path / "slowplug.py").write_text(
        "import time\ntime.sleep(0.6)\nfrom instrunet_core import hookimpl\n"
        "@hookimpl\ndef instrunet_register_writers(register):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins_mod, "_entry_points", lambda: [_ep("slowplug", "slowplug")])
    monkeypatch.setattr(plugins_mod, "_REGISTRY", None)
    reg = build_registry()
    (info,) = [p for p in reg.plugins if p.name == "slowplug"]
    assert info.seconds >= 0.6 and info.to_dict()["seconds"] == info.seconds
    monkeypatch.setattr(plugins_mod, "_REGISTRY", reg)
    assert main(["plugins"]) == 0
    assert "slowplug ?: instrunet_register_writers (loaded in 0.6 s)" in capsys.readouterr().out


def test_audit2_two_distributions_with_one_entry_point_name_are_said(monkeypatch: pytest.MonkeyPatch) -> None:
    """A models audit: two packages using the entry-point name `models` dropped one of them with
    pluggy's "Plugin name already registered" and a dict of module reprs."""
    birds = _module_plugin("birds_mod", instrunet_register_writers=lambda register: register("birds", print))
    frogs = _module_plugin("frogs_mod", instrunet_register_writers=lambda register: register("frogs", print))
    eps = [
        _ep("models", "frogs_mod")._for(types.SimpleNamespace(name="frogs-plugin", version="2.0.0")),  # type: ignore[attr-defined]
        _ep("models", "birds_mod")._for(types.SimpleNamespace(name="birds-plugin", version="1.0.0")),  # type: ignore[attr-defined]
    ]
    _install_eps(monkeypatch, eps, {"birds_mod": birds, "frogs_mod": frogs})
    with pytest.warns(RuntimeWarning) as caught:
        reg = build_registry()
    (msg,) = [str(w.message) for w in caught]
    # (loaded by distribution name, whatever order they are listed in: birds-plugin first)
    assert (
        "entry point 'models' of frogs-plugin 2.0.0 has the name of birds-plugin 1.0.0's plugin; not loaded"
        in msg
    )
    assert (
        "Plugin name already registered" not in msg and "birds" in reg.writers and "frogs" not in reg.writers
    )


def test_plugins_load_in_a_fixed_order_instrunets_own_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin audit (2026-12-06): which of two plugins got a name both register depended on
    the order site-packages lists its folders: an unrelated plugin took over the `condition`
    analyzer on one machine. The project's own distributions load first, then by name."""
    real = _module_plugin(
        "real_cond",
        instrunet_register_analyzers=lambda register: register("condition", lambda c: {"real": 1}),
    )
    other = _module_plugin(
        "aaa_cond", instrunet_register_analyzers=lambda register: register("condition", lambda c: {"dup": 1})
    )
    eps = [
        _ep("zz", "aaa_cond")._for(types.SimpleNamespace(name="aaa-tools", version="1.0.0")),  # type: ignore[attr-defined]
        _ep("condition", "real_cond")._for(
            types.SimpleNamespace(name="instrunet_condition", version="2.0.0")
        ),  # type: ignore[attr-defined]
    ]
    _install_eps(monkeypatch, eps, {"real_cond": real, "aaa_cond": other})
    with pytest.warns(
        RuntimeWarning, match="analyzer 'condition' is already registered by plugin 'condition'"
    ):
        reg = build_registry()
    assert reg.analyzer_plugins["condition"] == "condition"
    assert [p.name for p in reg.plugins if not p.builtin] == ["condition", "zz"]


def test_audit2_a_hook_that_yields_is_async_or_returns_is_said() -> None:
    """A models audit: a hook written with `yield` or `async def` registered nothing and its
    plugin was listed as healthy (the coroutine's warning named no plugin); a returned value
    was ignored."""
    import warnings

    def gen(register: Any) -> Any:
        yield register("never", print)

    async def coro(register: Any) -> None:
        register("never2", print)

    def returns(register: Any) -> dict[str, Any]:
        register("used", print)
        return {"x": 1}

    plugins = [
        (n, _module_plugin(f"{n}_mod", instrunet_register_writers=f))
        for n, f in (("g", gen), ("c", coro), ("r", returns))
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = build_registry(extra_plugins=plugins)
    rows = {p.name: p.error or "" for p in reg.plugins}
    assert "instrunet_register_writers is a generator (it yields): its body never ran" in rows["g"]
    assert "instrunet_register_writers is a coroutine (async def): its body never ran" in rows["c"]
    assert "instrunet_register_writers returned a dict, which is not used" in rows["r"]
    assert "used" in reg.writers and "never" not in reg.writers and "never2" not in reg.writers
    assert not any("never awaited" in str(w.message) for w in caught)


def test_a_plugin_that_replaces_stdout_gets_it_put_back() -> None:
    """A plugin audit (2026-12-06): the common "UTF-8 output" line run by a plugin,
    `sys.stdout = io.TextIOWrapper(sys.stdout.buffer, ...)`, wrapped stderr's buffer (a plugin's
    prints are routed to stderr while its code runs): every later command printed its data on
    stderr, and the host's own prints too."""
    import io
    import sys

    class Utf8:
        @hookimpl
        def instrunet_register_writers(self, register: Any) -> None:
            sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", line_buffering=True)
            register("utf8", lambda an, path: None)

    before = sys.stdout
    with pytest.warns(
        RuntimeWarning, match="instrunet plugin 'utf8' replaced sys.stdout while it loaded; put back"
    ):
        reg = build_registry(extra_plugins=[("utf8", Utf8())], entry_points=False)
    assert sys.stdout is before and "utf8" in reg.writers  # the plugin itself still works
    # with warnings as errors (a test suite's filter), the warning itself is raised, not taken
    # for the plugin's failure to load (a docs audit)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(instrunet_core.InstrunetWarning, match="replaced sys.stdout while it loaded"):
            build_registry(extra_plugins=[("utf8", Utf8())], entry_points=False)
    assert sys.stdout is before


def test_an_analyzer_named_none_and_colliding_keys_are_said() -> None:
    """A plugin audit (2026-12-06): an analyzer named "none" was listed but could never be
    chosen (`--analyzers none` skips them all); a result with the keys 1 and "1" lost one of
    the two values without a word."""

    class Odd:
        @hookimpl
        def instrunet_register_analyzers(self, register: Any) -> None:
            register("none", lambda ctx: {})
            register("collide", lambda ctx: {1: "int one", "1": "str one"})

    with pytest.warns(RuntimeWarning, match="analyzer name 'none' is reserved"):
        reg = build_registry(extra_plugins=[("odd", Odd())], entry_points=False)
    assert "none" not in reg.analyzers and "collide" in reg.analyzers
    model = instrunet_core.load_model(
        Path(instrunet_core.__file__).parent / "models" / "family-compact" / "2.1.0"
    )
    an = instrunet_core.analyze(tone(2.0), 22050, model=model, registry=reg)
    assert (
        "its result is ambiguous: keys 1 and '1' are both '1' as JSON keys" in an.extras["collide"]["error"]
    )


def test_a_hook_without_its_decorator_is_said() -> None:
    """A plugin audit (2026-12-06): a module defining instrunet_register_writers without
    @hookimpl was listed with "no hooks" and its writer was simply unknown."""
    plugin = types.ModuleType("nodeco")

    def instrunet_register_writers(register: Any) -> None:  # no @hookimpl
        register("md", lambda an, path: None)

    plugin.instrunet_register_writers = instrunet_register_writers  # type: ignore[attr-defined]
    with pytest.warns(
        RuntimeWarning, match="instrunet_register_writers is not marked @hookimpl, so it never runs"
    ):
        reg = build_registry(extra_plugins=[("nodeco", plugin)], entry_points=False)
    assert "md" not in reg.writers and "not marked @hookimpl" in (reg.plugins[-1].error or "")


def test_the_print_routings_own_wrapper_is_no_replaced_stream() -> None:
    """A review (2026-12-06): with the routing's wrapper left installed (a host's
    redirect_stdout restored it after an analysis), or taken down by another thread's analysis
    ending while a plugin loaded, the check took the change for the plugin's, blamed it, and
    detached the interpreter's real stdout: every later print failed."""
    import io
    import sys
    import warnings

    from instrunet_core._analyzer_threads import RoutedStdout

    class Quiet:
        @hookimpl
        def instrunet_register_writers(self, register: Any) -> None:
            register("quiet", lambda an, path: None)

    real = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    saved = sys.stdout
    sys.stdout = RoutedStdout(real)  # left installed, no analyzer thread alive
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            build_registry(extra_plugins=[("quiet", Quiet())], entry_points=False)
        print("still writable", file=real)  # not detached
        assert sys.stdout is real or (isinstance(sys.stdout, RoutedStdout) and sys.stdout.wrapped is real)
    finally:
        sys.stdout = saved


def test_a_third_party_instrunet_name_is_not_the_projects_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A review (2026-12-06): any `instrunet-*` distribution counted as the project's own and
    sorted before instrunet-condition by name: the name prefix is open to anyone."""
    real = _module_plugin(
        "real_c", instrunet_register_analyzers=lambda register: register("condition", lambda c: {})
    )
    other = _module_plugin(
        "comm_c", instrunet_register_analyzers=lambda register: register("condition", lambda c: {})
    )
    eps = [
        _ep("acoustics", "comm_c")._for(
            types.SimpleNamespace(name="instrunet-acoustics-community", version="1.0.0")
        ),  # type: ignore[attr-defined]
        _ep("condition", "real_c")._for(types.SimpleNamespace(name="instrunet-condition", version="2.0.0")),  # type: ignore[attr-defined]
    ]
    _install_eps(monkeypatch, eps, {"real_c": real, "comm_c": other})
    with pytest.warns(RuntimeWarning, match="already registered by plugin 'condition'"):
        reg = build_registry()
    assert reg.analyzer_plugins["condition"] == "condition"
