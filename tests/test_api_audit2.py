"""A second audit of the public Python API (2026-12-06): what a developer embedding instrunet
met — wide integer arrays of 16-bit values, decoded-audio readers as sources, windows whose
arrays were the classifier's own, the default marked on every version, reprs of 161 KB,
errors that were not InstrunetErrors, a Classifier sent to a process pool."""

from __future__ import annotations

import copy
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, tone

import instrunet_core
from instrunet_core.errors import InputError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_16_bit_values_in_a_wide_integer_array_are_warned_about(tiny_model: instrunet_core.Model) -> None:
    y = (tone(3.0) * 32767).astype(np.int16)
    with pytest.warns(
        RuntimeWarning, match=r"16-bit values held in a wider integer type.*y\.astype\(np\.int16\)"
    ):
        tiny_model.predict(y.astype(np.int64), SR)  # what .astype(int) and np.array(ints) give
    with pytest.warns(RuntimeWarning, match="int32 samples are scaled by their type's full scale"):
        tiny_model.predict(y.astype(np.int32), SR)  # a whole recording that never passes -96 dBFS
    with pytest.warns(RuntimeWarning, match="wider integer type"):
        tiny_model.classifier().process(y.astype(np.int64), SR)  # a stream's block: 64-bit only
    quiet = np.concatenate([(y // 4096).astype(np.int32), y.astype(np.int32) << 16])  # room tone, then sound
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        tiny_model.predict(quiet, SR)  # real 32-bit audio with a quiet start: judged whole, not by block
        tiny_model.classifier().process(quiet[: len(y)], SR)  # one quiet block of a 32-bit stream
        tiny_model.predict(y, SR)  # int16: its own full scale
        tiny_model.predict(y.astype(np.int32) << 16, SR)  # int32 at full scale
        tiny_model.predict(np.zeros(SR, np.int64), SR)  # digital silence is silence


def test_a_decoded_audio_reader_is_refused_in_one_line(tiny_model: instrunet_core.Model) -> None:
    pedalboard_io = pytest.importorskip("pedalboard.io")
    for f in (
        sf.SoundFile(EXAMPLES / "solo_flute.wav"),
        pedalboard_io.AudioFile(str(EXAMPLES / "solo_flute.wav")),
    ):
        with pytest.raises(InputError, match=r"reads decoded audio, not the file's bytes; pass its path"):
            tiny_model.predict(f)
        f.close()


def test_windows_handed_out_are_read_only(tiny_model: instrunet_core.Model) -> None:
    clf = tiny_model.classifier()
    wins = clf.classify(tone(8.0), SR)
    before = clf.prediction().probabilities
    with pytest.raises(ValueError, match="read-only"):
        np.divide(wins[0].probabilities, 2.0, out=wins[0].probabilities)
    assert clf.prediction().probabilities == before


def test_list_models_marks_the_one_default(tiny_registry, monkeypatch: pytest.MonkeyPatch) -> None:
    marked = [(e.name, e.version) for e in instrunet_core.list_models() if e.default]
    chosen = tiny_registry.resolve_model(None)
    assert marked == [(chosen.name, chosen.version)]


def test_reprs_are_short_and_errors_are_instrunet_errors(tiny_model: instrunet_core.Model) -> None:
    reg = instrunet_core.get_registry()
    assert len(repr(instrunet_core.list_models())) < 5000 and repr(reg).startswith("<Registry: ")
    emb = tiny_model.embed(tone(4.0), SR) if tiny_model.embedding_dim else None
    if emb is not None:
        assert repr(emb).startswith(f"Embedding(dim={emb.dim}, windows=")
    clf = tiny_model.classifier()
    assert repr(clf).startswith(f"<Classifier: {tiny_model.name} {tiny_model.version}, hop ")
    for f in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(
            InputError, match="a Classifier holds one stream's state and cannot be pickled or copied"
        ):
            f(clf)
    an = instrunet_core.analyze(tone(4.0), SR, model=tiny_model, analyzers=None)
    with pytest.raises(InputError, match=r"ranges: unknown label 'Flute' \(labels: "):
        an.activity.ranges("Flute")
    with pytest.raises(InputError, match="registry must be an instrunet_core Registry, got int"):
        instrunet_core.load_model("tiny", registry=1)  # type: ignore[arg-type]
    assert instrunet_core.analyze(tone(4.0), 44100.0, model=tiny_model).duration > 0  # a whole float rate


def test_warnings_have_instrunets_category_and_point_at_the_caller(tiny_model) -> None:
    """A host audit (2026-12-06): the same warning pointed at the host's line from one entry
    point and at a library line from another, and all were plain RuntimeWarnings: a host could
    neither filter instrunet's by module nor by category."""
    import warnings

    import instrunet_core

    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        tiny_model.predict(np.arange(3 * SR, dtype=np.int64) % 3, SR)  # int64 "16-bit" samples
        instrunet_core.analyze(tone(12.0), SR, model=tiny_model, hop=5, analyzers=())
        tiny_model.classifier(hop=5)
    assert len(got) == 3, [str(w.message) for w in got]
    for w in got:
        assert issubclass(w.category, instrunet_core.InstrunetWarning) and issubclass(
            w.category, RuntimeWarning
        )
        assert w.filename == __file__, (w.filename, str(w.message))
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=instrunet_core.InstrunetWarning)
        tiny_model.classifier(hop=5)
    assert got == []
    # raised where the standard library sits between (a `with` block's contextlib): still the
    # caller's line, not contextlib's (a review)
    import io
    import sys

    from instrunet_core import hookimpl
    from instrunet_core.registry import build_registry

    class Utf8:
        @hookimpl
        def instrunet_register_writers(self, register):  # type: ignore[no-untyped-def]
            sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8")

    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        build_registry(extra_plugins=[("utf8", Utf8())], entry_points=False)
    assert [w.filename for w in got] == [__file__], [(w.filename, str(w.message)) for w in got]


def test_a_hosts_installed_package_is_where_a_warning_points() -> None:
    """A second review (2026-12-06): the standard library was told by path, and site-packages
    lies inside it in a virtualenv: a host package installed there was skipped, its warnings
    pointed at its caller. It is told by module name."""
    import sysconfig
    from types import SimpleNamespace

    from instrunet_core.errors import _library_frame

    def frame(module: str, filename: str) -> SimpleNamespace:
        return SimpleNamespace(f_globals={"__name__": module}, f_code=SimpleNamespace(co_filename=filename))

    site = sysconfig.get_paths()["purelib"]
    assert not _library_frame(frame("myhost", f"{site}/myhost/__init__.py"))
    assert not _library_frame(frame("__main__", "<stdin>"))  # host code typed in
    assert not _library_frame(
        frame("wave", f"{site}/wave/__init__.py")
    )  # a host's, named like a stdlib module
    assert _library_frame(frame("contextlib", f"{sysconfig.get_paths()['stdlib']}/contextlib.py"))
    assert _library_frame(frame("runpy", "<frozen runpy>"))
    assert _library_frame(frame("instrunet_pedalboard.files", f"{site}/instrunet_pedalboard/files.py"))
