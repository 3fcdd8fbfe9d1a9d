"""What an audit of the API as an embedding application uses it found (session of 2026-12-06):
results objects, file objects read twice, the host's stdout and BLAS settings, array memory."""

from __future__ import annotations

import io
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, tone

import instrunet_core
from instrunet_core.errors import DecodeError

ROOT = Path(__file__).resolve().parent.parent


def test_results_compare_without_raising_and_print_short(tiny_model: instrunet_core.Model) -> None:
    """``a == b`` raised numpy's "truth value of an array is ambiguous" (arrays inside), and the
    repr of an hour's analysis was a megabyte of text."""
    a = instrunet_core.analyze(tone(4.0), SR, model=tiny_model, analyzers=False)
    b = instrunet_core.analyze(tone(4.0), SR, model=tiny_model, analyzers=False)
    assert a == a and a != b and a in [a] and b not in [a]  # identity: compare to_dict() for values
    assert a.to_dict() == b.to_dict()
    assert a.activity == a.activity and a.activity != b.activity
    w = tiny_model.classifier().classify(tone(4.0), SR)
    assert w[0] == w[0] and w[0] != w[1] and hash(w[0]) == hash(w[0])
    text = repr(a)
    assert text.startswith("Analysis(source='array', duration=4.00, model='tiny 1.0.0', label=")
    assert "windows=" in text and len(text) < 500


def test_a_file_object_read_to_its_end_says_so(tiny_model: instrunet_core.Model) -> None:
    """A second call on the same open file said "empty stream (0 bytes)" of a 1.2 MB file."""
    with open(ROOT / "examples" / "ensemble.flac", "rb") as f:
        tiny_model.predict(f)
        with pytest.raises(
            DecodeError, match=r"ensemble\.flac: the file object is at its end \(position \d+\).*seek\(0\)"
        ):
            tiny_model.predict(f)
        f.seek(0)
        assert tiny_model.predict(f).label  # read again from its start
    with pytest.raises(DecodeError, match="empty stream"):
        tiny_model.predict(io.BytesIO(b""))


def test_a_file_object_is_read_from_where_it_stands_by_analyze_and_its_refinement(
    tmp_path: Path, tiny_model: instrunet_core.Model
) -> None:
    """analyze read the header, then rewound to 0 (not to where the audio starts), and the
    refinement's second reading rewound to 0 too."""
    wav = io.BytesIO()
    sf.write(wav, tone(5.0), SR, format="WAV")
    prefix = b"JUNKJUNK" * 100  # the audio starts 800 bytes into the stream
    data = io.BytesIO(prefix + wav.getvalue())
    data.seek(len(prefix))
    a = instrunet_core.analyze(data, model=tiny_model, analyzers=False, hop=1.5)
    b = instrunet_core.analyze(io.BytesIO(wav.getvalue()), model=tiny_model, analyzers=False, hop=1.5)
    assert a.duration == b.duration == pytest.approx(5.0)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)


def test_analyze_on_an_array_does_not_copy_it_to_read_its_length(tiny_model: instrunet_core.Model) -> None:
    """The duration of an array source was read by mixing the whole array to float (6x a
    30-minute int16 stereo array); its shape says it."""
    from instrunet_core.audio import audio_info

    y = np.zeros((SR * 600, 2), np.int16)  # 10 minutes, 53 MB
    tracemalloc.start()
    try:
        info = audio_info(y, SR)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (info.frames, info.channels, info.duration) == (SR * 600, 2, 600.0)
    assert peak < 1_000_000  # no copy of the samples
    assert audio_info(y.T, SR).frames == SR * 600  # (channels, n) too


def test_stdout_left_swapped_by_a_host_steps_aside(capsys: pytest.CaptureFixture[str]) -> None:
    """A host that redirected stdout in one thread while another thread's analysis ran restored
    the analysis's routing object after the last analyzer thread ended: sys.stdout stayed a
    RoutedStdout. It now steps aside at its first use."""
    from instrunet_core import _analyzer_threads as at

    orig = sys.stdout
    at._enter_routing()  # thread B's analysis
    saved = sys.stdout  # the host's redirect_stdout in thread A saves this...
    sys.stdout = io.StringIO()
    at._enter_routing()  # thread A's analysis under the redirect
    at._leave_routing()  # B ends
    at._leave_routing()  # A ends
    sys.stdout = saved  # ... and restores it when its block ends
    assert isinstance(sys.stdout, at.RoutedStdout)
    print("still printed")
    assert sys.stdout is orig and "still printed" in capsys.readouterr().out


def test_the_core_leaves_the_hosts_blas_setting_alone() -> None:
    """A host thread's BLAS limit set while a prediction ran in another thread was undone when
    the prediction ended, and the library's limit held for every thread while it ran: the
    front end's products now run on the calling thread and the core never sets a limit."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import threading

    ctl = threadpoolctl.ThreadpoolController().select(user_api="blas")
    if not ctl.lib_controllers:
        pytest.skip("numpy has no BLAS thread pool here")
    from instrunet_core import features

    seen: list[int] = []
    real = features._project_mel

    def spy(*a: object, **k: object) -> None:
        seen.append(min(c.num_threads for c in ctl.lib_controllers))
        real(*a, **k)  # type: ignore[arg-type]

    features._project_mel = spy  # type: ignore[assignment]
    try:
        with threadpoolctl.threadpool_limits(2, user_api="blas"):
            t = threading.Thread(target=features.batch_features, args=(np.zeros((4, 65024), np.float32),))
            t.start()
            t.join()
            assert seen and set(seen) == {2}  # not limited while the library computed
            assert {c.num_threads for c in ctl.lib_controllers} == {2}
    finally:
        features._project_mel = real  # type: ignore[assignment]


def test_nearest_takes_one_path_to_exclude_and_a_whole_k() -> None:
    """``exclude="a.wav"`` excluded nothing (its letters were the paths); ``k=2.5`` returned all."""
    from instrunet_core.errors import InputError
    from instrunet_core.search import Library

    lib = Library()
    model = {"name": "m", "version": "1.0.0", "sha256": "0" * 64}
    lib.add("a.wav", [1.0, 0.0], model, origin="a")
    lib.add("b.wav", [0.9, 0.1], model, origin="b")
    assert [m.path for m in lib.nearest([1.0, 0.0], k=2, exclude="a.wav")] == ["b.wav"]
    for k in (2.5, 0, True):
        with pytest.raises(InputError, match="nearest: k must be an int >= 1"):
            lib.nearest([1.0, 0.0], k=k)  # type: ignore[arg-type]
