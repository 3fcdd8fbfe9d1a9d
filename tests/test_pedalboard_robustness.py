"""Bad input to the instrunet-pedalboard plugin: clear ``InstrunetError``s, never NaN, a hang or garbage.

Real pedalboard objects and the default model; the audio is a tone generated here (no SoundFont).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pedalboard = pytest.importorskip("pedalboard")
pytest.importorskip("instrunet_pedalboard")

from instrunet_pedalboard import Router, StreamTagger, Tagger, process_file  # noqa: E402
from pedalboard import (  # noqa: E402
    Delay,
    Gain,
    GSMFullRateCompressor,
    MP3Compressor,
    Pedalboard,
    Resample,
)
from pedalboard.io import AudioFile  # noqa: E402

import instrunet_core  # noqa: E402
from instrunet_core import InputError, load_model  # noqa: E402

FAMILY_DIR = Path(instrunet_core.__file__).resolve().parent / "models" / "family" / "1.0.0"
SR = 44100


@pytest.fixture(scope="module")
def model() -> instrunet_core.Model:
    return load_model(FAMILY_DIR)


def _tone(seconds: float = 4.0) -> np.ndarray:
    """Stereo float32 ``(2, n)``: 440 Hz at -10 dBFS."""
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.stack([np.sin(2 * np.pi * 440 * t)] * 2)).astype(np.float32)


@pytest.fixture
def tone_file(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    with AudioFile(str(path), "w", SR, 2) as f:
        f.write(_tone())
    return path


def _frames(path: Path) -> int:
    with AudioFile(str(path)) as f:
        return int(f.frames)


def test_a_router_chain_that_outputs_inf_is_refused_naming_it(model: instrunet_core.Model) -> None:
    router = Router({"flute": Pedalboard([Gain(gain_db=1000)])}, model=model)
    with pytest.raises(InputError, match=r"Router: the 'flute' board's output: .*NaN or infinite"):
        router(_tone(), SR)


def test_process_file_refuses_a_board_or_router_that_outputs_inf_and_writes_nothing(
    tone_file: Path, tmp_path: Path, model: instrunet_core.Model
) -> None:
    dst = tmp_path / "out" / "o.wav"
    with pytest.raises(InputError, match=r"tone\.wav: the board's output: .*NaN or infinite"):
        process_file(tone_file, dst, tagger=Tagger(model), board=Pedalboard([Gain(gain_db=1000)]))
    assert not dst.exists()
    router = Router({"string": Pedalboard([Gain(gain_db=1000)])}, model=model)
    with pytest.raises(
        InputError, match=r"tone\.wav: Router: the 'string' board's output: .*NaN or infinite"
    ):
        process_file(tone_file, dst, router=router)
    assert not dst.exists()
    assert [p.name for p in dst.parent.iterdir()] == []  # no temporary file left either


@pytest.mark.parametrize(
    "plugin", [MP3Compressor(), GSMFullRateCompressor(), Resample(target_sample_rate=8000.0)], ids=type
)
@pytest.mark.parametrize("block_size", [3000, 4096, 65536])
def test_process_file_keeps_the_length_through_a_board_that_holds_audio_back(
    tone_file: Path, tmp_path: Path, plugin: Any, block_size: int, model: instrunet_core.Model
) -> None:
    dst = tmp_path / "o.wav"
    analysis = process_file(
        tone_file, dst, tagger=Tagger(model), board=Pedalboard([plugin]), block_size=block_size
    )
    assert _frames(dst) == _frames(tone_file)
    assert analysis.duration == pytest.approx(4.0, abs=1e-6)
    with AudioFile(str(dst)) as f:
        y = f.read(f.frames)
    assert np.abs(y[:, SR : 3 * SR]).max() > 0.1  # the tone came through, not silence


def test_router_says_a_chain_changed_the_length_not_the_channel_count(model: instrunet_core.Model) -> None:
    router = Router({"flute": Pedalboard([MP3Compressor()])}, model=model)
    with pytest.raises(
        InputError, match=r"'flute' board returned \d+ samples for a block of \d+.*holds audio back"
    ):
        router(_tone(), SR)


@pytest.mark.parametrize("value", [None, "abc", "50", [1], True, math.nan, math.inf, -1, 10_001, 1e7, 1e9])
def test_router_crossfade_ms_is_a_number_of_ms_up_to_10_s(value: Any, model: instrunet_core.Model) -> None:
    with pytest.raises(
        InputError, match=r"Router: crossfade_ms must be a number of milliseconds from 0 to 10,000"
    ):
        Router({"flute": Pedalboard([])}, model=model, crossfade_ms=value)


def test_router_takes_the_longest_crossfade_without_an_absurd_allocation(model: instrunet_core.Model) -> None:
    router = Router({"flute": Pedalboard([])}, model=model, crossfade_ms=10_000)
    assert router.latency_seconds < 15.0
    out = router(np.zeros((2, 512), np.float32), SR, reset=False)
    assert out.shape == (2, 512)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": "0.5"}, r"threshold for 'flute' must be in \(0, 1\)"),
        ({"lookahead": "no"}, "lookahead must be True or False"),
        ({"lookahead": None}, "lookahead must be True or False"),
    ],
)
def test_router_refuses_arguments_of_the_wrong_type(
    kwargs: dict[str, Any], message: str, model: instrunet_core.Model
) -> None:
    with pytest.raises(InputError, match=message):
        Router({"flute": Pedalboard([])}, model=model, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"worker": "yes"}, "StreamTagger: worker must be True or False"),
        ({"thresholds": "x"}, r"StreamTagger: thresholds must be a dict"),
    ],
)
def test_stream_tagger_refuses_arguments_of_the_wrong_type(
    kwargs: dict[str, Any], message: str, model: instrunet_core.Model
) -> None:
    with pytest.raises(InputError, match=message):
        StreamTagger(model, **kwargs)


@pytest.mark.parametrize("cls", [StreamTagger, Tagger])
def test_a_closed_worker_tagger_refuses_at_once_instead_of_hanging(
    cls: type, model: instrunet_core.Model
) -> None:
    tagger = cls(model, worker=True)
    tagger.close()
    tagger.close()  # twice is fine
    feed = tagger.feed if cls is StreamTagger else (lambda b, sr: tagger(b, sr, reset=False))
    end = tagger.finish if cls is StreamTagger else tagger.flush
    got: list[BaseException] = []

    def calls() -> None:
        for call in (lambda: feed(np.zeros((2, 4410), np.float32), SR), end, tagger.reset):
            try:
                call()
            except BaseException as e:  # noqa: BLE001 - checked below
                got.append(e)

    t = threading.Thread(target=calls, daemon=True)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive(), "a call on a closed tagger hung"
    assert len(got) == 3 and all(isinstance(e, InputError) for e in got), got
    assert all("closed" in str(e) for e in got)
    assert tagger.results == []  # still readable


class _Source:
    def __init__(self, rate: Any) -> None:
        self.sample_rate = rate

    def read(self, n: int) -> np.ndarray:
        return np.zeros((2, n), np.float32)


def test_listen_names_a_sample_rate_of_zero(model: instrunet_core.Model) -> None:
    with pytest.raises(
        InputError, match=r"StreamTagger.listen: source: sample rate 0 Hz, outside the supported range"
    ):
        list(StreamTagger(model).listen(_Source(0)))


@pytest.mark.parametrize("shape", [(2, 0), (0, 2), (0,)])
def test_router_returns_an_empty_array_in_its_own_shape(
    shape: tuple[int, ...], model: instrunet_core.Model
) -> None:
    router = Router({"flute": Pedalboard([])}, model=model)
    out = router(np.zeros(shape, np.float32), SR)
    assert out.shape == shape and out.dtype == np.float32
    assert router(np.zeros(shape, np.float32), SR, reset=False).shape == shape


@pytest.mark.parametrize("src", [None, b"/tmp/x.wav", 5])
def test_process_file_refuses_a_source_that_is_not_a_path(src: Any, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"process_file: src must be a path"):
        process_file(src, tmp_path / "o.wav")


def test_process_file_refuses_a_destination_that_is_not_a_path(tone_file: Path) -> None:
    with pytest.raises(InputError, match=r"process_file: dst must be a path"):
        process_file(tone_file, b"/tmp/o.wav")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"block_size": 10**12}, r"block_size must be an int from 1 to 4194304"),
        ({"block_size": True}, r"block_size must be an int"),
        ({"bit_depth": "16"}, r"bit_depth must be an int from 8 to 32"),
        ({"bit_depth": None}, r"bit_depth must be an int from 8 to 32"),
    ],
)
def test_process_file_bounds_its_numeric_arguments(
    tone_file: Path, tmp_path: Path, kwargs: dict[str, Any], message: str, model: instrunet_core.Model
) -> None:
    with pytest.raises(InputError, match=rf"tone\.wav: {message}"):
        process_file(tone_file, tmp_path / "o.wav", tagger=Tagger(model), **kwargs)
    assert not (tmp_path / "o.wav").exists()


class _ChannelsFirst:
    """A stream source as pedalboard's: ``read(n) -> (channels, n)``."""

    def __init__(self, data: np.ndarray, rate: int) -> None:
        self.data, self.sample_rate, self.pos = data, rate, 0

    def read(self, n: int) -> np.ndarray:
        out = self.data[:, self.pos : self.pos + n]
        self.pos += n
        return out


@pytest.mark.parametrize("channels, block_size", [(2, 1), (3, 2), (4, 3), (2, 4410)])
def test_listen_reads_every_block_as_channels_first(
    model: instrunet_core.Model, channels: int, block_size: int
) -> None:
    """A block of no more samples than channels, (2, 1), was read by the shorter-axis rule:
    stereo came out as mono of twice the length (an audit); read(n) is (channels, n) always."""
    y = _tone(3.0)[0]
    src = _ChannelsFirst(np.stack([y] * channels), SR)
    tagger = StreamTagger(model)
    got = list(tagger.listen(src, block_size=block_size))
    assert tagger.seconds == pytest.approx(3.0)
    assert got and got[-1].end == pytest.approx(3.0, abs=1e-3)
    ref = StreamTagger(model)
    want = ref.feed(np.stack([y] * channels), SR) + ref.finish()
    assert [w.label for w in got] == [w.label for w in want]


@pytest.mark.parametrize("worker", [False, True])
def test_a_bad_block_is_refused_by_its_own_call_and_not_counted(
    model: instrunet_core.Model, worker: bool
) -> None:
    """With a worker thread a NaN block was accepted and its error raised by the next call, whose
    good block was then lost; either way the refused block counted as fed (an audit)."""
    y = _tone(6.0)[0]
    with StreamTagger(model, worker=worker) as tagger:
        tagger.feed(y[:SR], SR)
        with pytest.raises(InputError, match="StreamTagger: audio contains NaN"):
            tagger.feed(np.full(4410, np.nan, np.float32), SR)
        for i in range(SR, len(y), 4410):
            tagger.feed(y[i : i + 4410], SR)
        tagger.finish()
        assert tagger.seconds == pytest.approx(6.0)
        assert tagger.results[-1].end == pytest.approx(6.0, abs=1e-3)


def test_too_many_channels_are_refused_in_the_callers_layout(model: instrunet_core.Model) -> None:
    """65 channels given as pedalboard's (channels, n) were refused with advice to transpose."""
    with pytest.raises(InputError, match=r"Tagger: block of shape \(65, 44100\): 65 channels, outside"):
        Tagger(model)(np.zeros((65, SR), np.float32), SR)
    ran: list[int] = []
    router = Router({"string": Pedalboard([Gain(gain_db=0.0)])}, model=model)
    router._run_boards = lambda x, sr: ran.append(x.shape[0])  # type: ignore[method-assign]
    with pytest.raises(InputError, match=r"Router: block of shape \(65, 44100\): 65 channels, outside"):
        router(np.zeros((65, SR), np.float32), SR)
    assert ran == []  # refused before any board ran


def test_a_worker_tagger_dropped_without_close_stops_its_thread(model: instrunet_core.Model) -> None:
    """Its thread held the tagger (and its buffers) for the life of the process: 50 taggers
    dropped without close() left 50 threads and hundreds of MB (an audit)."""
    import gc

    def alive() -> int:
        return sum(t.name == "instrunet-tagger" and t.is_alive() for t in threading.enumerate())

    before = alive()
    for _ in range(3):
        tagger = Tagger(model, worker=True)
        tagger(_tone(3.0), SR)
        del tagger
    stream = StreamTagger(model, worker=True)
    next(iter(stream.listen(_ChannelsFirst(_tone(20.0), SR))), None)  # a generator left half-way
    del stream
    gc.collect()
    for _ in range(50):  # the threads end once they see their tagger gone
        if alive() == before:
            break
        threading.Event().wait(0.1)
    assert alive() == before


@pytest.mark.parametrize(
    "audio, kwargs, message",
    [
        (
            [[0.1, 0.2], [0.3]],
            {},
            "audio must be an array of samples, got list",
        ),  # ragged: numpy's ValueError
        ("abc", {}, "audio must be an array of samples, got str"),  # was "got shape ()"
        (np.zeros(SR, np.float32), {"reset": None}, "reset must be True or False, got None"),  # streamed
        (
            np.zeros(SR, np.float32),
            {"reset": "no"},
            "reset must be True or False, got 'no'",
        ),  # counted as yes
    ],
)
def test_adapters_refuse_what_they_would_misread(
    model: instrunet_core.Model, audio: Any, kwargs: dict, message: str
) -> None:
    for adapter in (Tagger(model), Router({"string": Pedalboard([Gain()])}, model=model)):
        with pytest.raises(InputError, match=f"{type(adapter).__name__}: {message}"):
            adapter(audio, SR, **kwargs)


def test_audit2_streams_keep_their_audio_and_a_refused_block_sets_nothing(model, tmp_path: Path) -> None:
    """A streaming audit (2026-12-06): after an `on_windows` error the worker skipped the blocks
    queued meanwhile (0.17 s lost, later windows shifted); a NaN first block fixed the adapters'
    rate and channels; one board object under two routes ran twice a block (its second route's
    audio wrong); `process_file` with a router alone returned the router's last 16 windows as
    the file's analysis."""
    import time

    import soundfile as sf

    t = np.arange(12 * SR) / SR
    a = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
    ref = StreamTagger(model)
    for i in range(0, a.shape[1], 512):
        ref.feed(a[:, i : i + 512], SR)
    ref.finish()
    calls = {"n": 0}

    def flaky(wins: list[Any]) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("callback bug (once)")

    errors = 0
    with StreamTagger(model, worker=True, on_windows=flaky) as st:
        for i in range(0, a.shape[1], 512):
            try:
                st.feed(a[:, i : i + 512], SR)
            except RuntimeError:
                errors += 1
            if i % (512 * 20) == 0:
                time.sleep(0.02)
        st.finish()
        assert errors == 1 and st.seconds == pytest.approx(12.0)
        got, want = st.results, ref.results
        assert [(w.start, w.end) for w in got] == [(w.start, w.end) for w in want]
        np.testing.assert_allclose([w.probabilities for w in got], [w.probabilities for w in want], atol=1e-5)

    bad = a[:, :4096].copy()
    bad[0, 7] = np.nan
    for adapter in (
        Tagger(model),
        StreamTagger(model),
        Router({"brass": Pedalboard([Gain(gain_db=-3)])}, model=model),
    ):
        with pytest.raises(InputError, match="NaN or infinite"):
            adapter.process(bad, SR) if not isinstance(adapter, StreamTagger) else adapter.feed(bad, SR)
        mono48 = a[0, :48000].copy()
        adapter.process(mono48, 48000) if not isinstance(adapter, StreamTagger) else adapter.feed(
            mono48, 48000
        )

    shared = Pedalboard([Delay(delay_seconds=0.25, feedback=0.0, mix=1.0)])
    y = Router({"brass": shared, "string": shared}, model=model)(a, SR)
    fresh = Pedalboard([Delay(delay_seconds=0.25, feedback=0.0, mix=1.0)])(a, SR)
    np.testing.assert_allclose(y, fresh, atol=1e-6)  # whatever the routes, the one delay's output

    src = tmp_path / "two.wav"
    sf.write(src, np.concatenate([a.T, a.T]), SR)  # 24 s: more than the router keeps (16 windows)
    an = process_file(src, None, router=Router({"brass": Pedalboard([Gain(gain_db=-3)])}, model=model))
    assert an.times[0, 0] == 0.0 and an.times[-1, 1] == pytest.approx(24.0)


def test_audit2_a_one_frame_file_and_a_board_that_streams_silence(model, tmp_path: Path) -> None:
    """A one-frame stereo file through a buffering board was an error blaming the board ("turned
    2 channel(s) into shape (0, 1)": pedalboard read the block as 2 mono samples); a PitchShift,
    which pedalboard 0.9 streams as zeros below 65,536-sample blocks, wrote a silent file without
    a word."""
    import warnings

    import soundfile as sf
    from pedalboard import PitchShift

    one = tmp_path / "one.wav"
    sf.write(one, np.array([[0.5, -0.25]], np.float32), SR, subtype="FLOAT")
    out = tmp_path / "o.wav"
    process_file(one, out, board=Pedalboard([MP3Compressor()]), bit_depth=32, tagger=Tagger(model))
    assert sf.info(str(out)).frames == 1
    process_file(one, out, board=Pedalboard([Gain(gain_db=-6)]), bit_depth=32, tagger=Tagger(model))
    np.testing.assert_allclose(sf.read(out, dtype="float32")[0], [[0.25, -0.125]], atol=2e-3)

    src = tmp_path / "tone.wav"
    sf.write(src, _tone(2.0).T, SR)
    with pytest.warns(
        RuntimeWarning, match=r"the board returned silence for the whole file.*block_size \(it was 4096\)"
    ):
        process_file(src, out, board=Pedalboard([PitchShift(2)]), block_size=4096, tagger=Tagger(model))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        process_file(src, out, board=Pedalboard([Gain(gain_db=-6)]), block_size=4096, tagger=Tagger(model))


def test_audit2_a_routers_analysis_judges_as_it_routes(model, tmp_path: Path) -> None:
    """A review: `process_file(router=...)` alone returned an analysis with the model's own
    thresholds (a family the router never routed, at 0.95, detected at 0.3), from a second
    classifier; the router's analysis uses its thresholds, of the whole file, with no second run."""
    import soundfile as sf

    src = tmp_path / "t.wav"
    sf.write(src, _tone(20.0).T, SR)
    router = Router({"brass": Pedalboard([Gain(gain_db=-3)])}, model=model, threshold={"brass": 0.95})
    an = process_file(src, None, router=router)
    assert (
        an.settings["thresholds"]["brass"] == 0.95 and router.analysis.settings["thresholds"]["brass"] == 0.95
    )
    assert an.times[0, 0] == 0.0 and an.times[-1, 1] == pytest.approx(20.0)
    assert ("brass" in {i.label for i in an.instruments}) == any(
        lab == "brass" for _, _, lab in router.regions
    )
    assert router._clf.keep == 16  # (kept every window for the call only)


def test_a_worker_queue_holds_a_bounded_backlog(
    model: instrunet_core.Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pedalboard audit (2026-12-06): blocks fed faster than the worker classifies them were
    queued without bound (140 MB more over 40 minutes of audio). Past MAX_BACKLOG_SECONDS the
    feeding call waits for the worker; every block is still classified."""
    import time

    from instrunet_pedalboard import tagger as tagger_mod

    monkeypatch.setattr(tagger_mod, "MAX_BACKLOG_SECONDS", 2.0)
    sr = 22050
    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(20 * sr) / sr)).astype(np.float32)
    slow = tagger_mod._Tagging._work

    def slow_work(self: Any, item: Any) -> None:
        time.sleep(0.02)
        slow(self, item)

    monkeypatch.setattr(tagger_mod._Tagging, "_work", slow_work)
    most = 0.0
    with StreamTagger(model, worker=True) as t:
        for i in range(0, len(y), sr // 2):
            t.feed(y[i : i + sr // 2], sr)
            assert t._worker is not None
            most = max(most, t._worker._backlog)
        t.finish()
        n = len(t.results)
    reference = Tagger(model)
    reference(y, sr)
    reference.flush()
    assert most <= 2.0 and n == len(reference.results)
