"""The instrunet-pedalboard plugin with real pedalboard objects and the shipped model.

The fixture is a flute phrase followed by a string part, rendered from the FluidR3
SoundFont (fetched from Debian's package on a fresh machine, as the corpus tests do) at
each tested sample rate.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

pedalboard = pytest.importorskip("pedalboard")
instrunet_pedalboard = pytest.importorskip("instrunet_pedalboard")

from instrunet_pedalboard import Router, StreamTagger, Tagger, process_file  # noqa: E402
from pedalboard import Compressor, Gain, HighpassFilter, Pedalboard, Reverb  # noqa: E402
from pedalboard.io import AudioFile  # noqa: E402

import instrunet_core  # noqa: E402
from instrunet_core import (  # noqa: E402
    DecodeError,
    InputError,
    load_model,  # noqa: E402
)

FAMILY_DIR = Path(instrunet_core.__file__).resolve().parent / "models" / "family" / "1.0.0"
RATES = (22050, 44100, 48000)
SWITCH = 8.0  # seconds: the flute stops and the strings start
SECONDS = 16.0


def _score() -> list[tuple[float, float, str, tuple[int, ...], int]]:
    flute = [(i * 1.0, 0.9, "flute", (p,), 100) for i, p in enumerate([72, 74, 76, 77, 79, 77, 76, 74])]
    chords = [(60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62)]
    strings = [(SWITCH + 2.0 * i, 1.95, "strings", c, 100) for i, c in enumerate(chords)]
    return flute + strings


@pytest.fixture(scope="session")
def fluidr3() -> Path:
    from training.corpus import SOUNDFONTS, default_cache, fetch_soundfonts

    return fetch_soundfonts(default_cache(), [f for f in SOUNDFONTS if f.key == "fluidr3"])["fluidr3"]


_RENDERS: dict[int, np.ndarray] = {}


def flute_then_strings(font: Path, sr: int) -> np.ndarray:
    """Stereo float32 ``(2, n)`` (pedalboard's layout): flute for 8 s, then strings for 8 s."""
    if sr not in _RENDERS:
        from training.examples import render

        _RENDERS[sr] = np.ascontiguousarray(render(_score(), SECONDS, sr, font).T)
    return _RENDERS[sr].copy()


@pytest.fixture(scope="session")
def model() -> instrunet_core.Model:
    return load_model(FAMILY_DIR)


def chains() -> dict[str, Pedalboard]:
    """Distinct signatures: the flute chain cuts lows and level, the string chain compresses, adds reverb and +18 dB."""
    return {
        "flute": Pedalboard([HighpassFilter(cutoff_frequency_hz=1500.0), Gain(gain_db=-12.0)]),
        "string": Pedalboard(
            [Compressor(threshold_db=-24.0, ratio=4.0), Reverb(room_size=0.4), Gain(gain_db=18.0)]
        ),
    }


def streamed(proc, audio: np.ndarray, sr: int, block: int) -> list[np.ndarray]:
    return [proc(audio[:, i : i + block], sr, reset=False) for i in range(0, audio.shape[1], block)]


# --------------------------------------------------------------------------- Tagger


@pytest.mark.parametrize("sr", RATES)
def test_tagger_after_a_chain_returns_its_input_bit_identical(fluidr3: Path, model, sr: int) -> None:
    x = flute_then_strings(fluidr3, sr)
    board = Pedalboard(
        [Compressor(threshold_db=-20.0), HighpassFilter(100.0), Reverb(room_size=0.3), Gain(-3.0)]
    )
    y = board(x, sr)
    before = y.copy()
    tagger = Tagger(model)
    out = tagger(y, sr)
    assert out is y and out.dtype == before.dtype and out.shape == before.shape
    assert np.array_equal(out, before)
    found = {i.label: i.ranges for i in tagger.instruments}
    assert "flute" in found and "string" in found, found
    assert found["flute"][0][0] == 0.0 and found["flute"][-1][1] <= SWITCH + 1.5
    assert found["string"][0][0] >= SWITCH - 3.0 and found["string"][-1][1] == pytest.approx(
        SECONDS, abs=1e-3
    )
    assert tagger.analysis.duration == pytest.approx(SECONDS, abs=1e-3)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last", "mono", "int16", "float64"])
def test_tagger_keeps_every_layout_and_dtype(fluidr3: Path, model, layout: str) -> None:
    x = flute_then_strings(fluidr3, 22050)
    a = {
        "channels_first": x,
        "channels_last": np.ascontiguousarray(x.T),
        "mono": x[0].copy(),
        "int16": (x * 32767).astype(np.int16),
        "float64": x.astype(np.float64),
    }[layout]
    before = a.copy()
    tagger = Tagger(model)
    out = tagger(a, 22050)
    assert out is a and np.array_equal(out, before) and out.dtype == before.dtype
    assert [r.label for r in tagger.results][0] == "flute"


@pytest.mark.parametrize("block", [1, 511, 4096, 1_000_000])
def test_tagger_block_by_block_equals_the_whole_call(fluidr3: Path, model, block: int) -> None:
    x = flute_then_strings(fluidr3, 22050)
    first = 0
    if block == 1:
        # 3.5 s in 1-sample calls; as for pedalboard, a (2, 1) block reads as one stereo frame
        # once a longer block has shown the layout
        x, first = x[:, : int(3.5 * 22050)], 1000
    whole = Tagger(model)
    whole(x, 22050)
    t = Tagger(model)
    outs = [t(x[:, :first], 22050, reset=False)] if first else []
    outs += streamed(t, x[:, first:], 22050, block)
    assert all(o is not None for o in outs)
    assert np.array_equal(np.concatenate(outs, axis=1), x)
    t.flush()
    a, b = whole.results, t.results
    assert [(r.start, r.end) for r in a] == [(r.start, r.end) for r in b]
    np.testing.assert_allclose([r.probabilities for r in a], [r.probabilities for r in b], atol=1e-5)


def test_tagger_matches_the_core_analysis(fluidr3: Path, model) -> None:
    x = flute_then_strings(fluidr3, 44100)
    t = Tagger(model)
    t(x, 44100)
    ref = instrunet_core.analyze(x.T, 44100, model=model, analyzers=False)
    assert [round(s.start, 3) for s in t.analysis.timeline] == [round(s.start, 3) for s in ref.timeline]
    np.testing.assert_allclose(
        [list(s.probabilities.values()) for s in t.analysis.timeline],
        [list(s.probabilities.values()) for s in ref.timeline],
        atol=1e-4,
    )


def test_tagger_rejects_what_it_cannot_read(model) -> None:
    t = Tagger(model)
    with pytest.raises(InputError, match="cannot tell channels"):
        t(np.zeros((2, 2), np.float32), 44100)
    t(np.zeros((2, 1000), np.float32), 44100, reset=False)
    with pytest.raises(InputError, match="2 channel"):
        t(np.zeros((1000,), np.float32), 44100, reset=False)
    with pytest.raises(InputError, match="sample rate changed"):
        t(np.zeros((2, 1000), np.float32), 48000, reset=False)
    with pytest.raises(InputError, match="sample rate 0 Hz, outside the supported range"):
        Tagger(model)(np.zeros(100, np.float32), 0)
    with pytest.raises(InputError, match="shape"):
        Tagger(model)(np.zeros((2, 3, 4), np.float32), 44100)


# --------------------------------------------------------------------------- Router


def _region(sr: int, a: float, b: float) -> slice:
    return slice(int(a * sr), int(b * sr))


@pytest.mark.parametrize("sr", RATES)
def test_router_applies_each_instruments_chain_to_its_region(fluidr3: Path, model, sr: int) -> None:
    x = flute_then_strings(fluidr3, sr)
    refs = {lab: board(x, sr) for lab, board in chains().items()}
    router = Router(chains(), model=model, threshold=0.4)
    y = router(x, sr)
    assert y.shape == x.shape and y.dtype == np.float32
    regions = router.regions
    assert regions[0][2] == "flute" and regions[0][0] == 0.0
    assert regions[-1][2] == "string" and regions[-1][1] == pytest.approx(SECONDS, abs=1e-3)
    # the route changes once, where the detection does: within 0.6 s of the real change at 8 s
    assert len(regions) == 2 and abs(regions[1][0] - SWITCH) <= 0.6, regions
    fl, st = _region(sr, 0.0, SWITCH - 1.5), _region(sr, SWITCH + 1.5, SECONDS)
    # in each region the output is that chain's output, sample for sample ...
    np.testing.assert_allclose(y[:, fl], refs["flute"][:, fl], atol=1e-6)
    np.testing.assert_allclose(y[:, st], refs["string"][:, st], atol=1e-6)

    # ... which carries its signature: the flute chain is quieter, the string chain louder
    def rms(a: np.ndarray) -> float:
        return float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))

    assert rms(y[:, fl]) < 0.25 * rms(x[:, fl])
    assert rms(y[:, st]) > 1.5 * rms(x[:, st])


def test_router_without_lookahead_follows_one_window_late(fluidr3: Path, model) -> None:
    sr = 44100
    x = flute_then_strings(fluidr3, sr)
    refs = {lab: board(x, sr) for lab, board in chains().items()}
    router = Router(chains(), model=model, threshold=0.4, lookahead=False)
    y = router(x, sr)
    w = router.window_seconds
    assert router.latency_seconds == 0.0
    np.testing.assert_array_equal(
        y[:, _region(sr, 0, w - 0.1)], x[:, _region(sr, 0, w - 0.1)]
    )  # dry until heard
    np.testing.assert_allclose(
        y[:, _region(sr, w + 0.2, SWITCH)], refs["flute"][:, _region(sr, w + 0.2, SWITCH)], atol=1e-6
    )
    changes = [s for s, _, lab in router.regions[1:]]
    late = w + router.hop_seconds + instrunet_pedalboard.router.EMIT_SLACK_S + 0.025  # + half a crossfade
    assert all(SWITCH < s <= SWITCH + late for s in changes[1:]), router.regions
    assert router.regions[-1][2] == "string"


@pytest.mark.parametrize(
    ("sr", "block"),
    [
        (22050, 512),
        (22050, 65536),
        (44100, 511),
        (44100, 4096),
        (48000, 4096),
        (48000, 65536),
        (8000, 333),
        (2000, 97),  # the resampler holds back half a second here: the live routes wait for it
        (1000, 37),  # about a second: so does the lookahead (it did not: a streaming audit)
    ],
)
@pytest.mark.parametrize("lookahead", [True, False])
def test_router_block_by_block_equals_the_whole_call(
    fluidr3: Path, model, sr: int, block: int, lookahead: bool
) -> None:
    x = flute_then_strings(fluidr3, sr)
    whole = Router(chains(), model=model, threshold=0.4, lookahead=lookahead)(x, sr)
    router = Router(chains(), model=model, threshold=0.4, lookahead=lookahead)
    outs = streamed(router, x, sr, block)
    assert [o.shape for o in outs] == [x[:, i : i + block].shape for i in range(0, x.shape[1], block)]
    y = np.concatenate([*outs, router.flush()], axis=1)
    d = router.latency_samples(sr)
    assert y.shape[1] == x.shape[1] + d
    assert not np.any(y[:, :d])  # the latency is silence, like a plugin's
    np.testing.assert_allclose(y[:, d:], whole, atol=1e-6)


@pytest.mark.parametrize("lookahead", [True, False])
def test_router_smoothing_streams_like_the_whole_call(fluidr3: Path, model, lookahead: bool) -> None:
    sr = 44100
    x = flute_then_strings(fluidr3, sr)
    plain = Router(chains(), model=model, threshold=0.4, lookahead=lookahead)
    opts = {"smoothing": 3.0, "min_duration": 2.0}
    whole_router = Router(chains(), model=model, threshold=0.4, lookahead=lookahead, **opts)
    whole = whole_router(x, sr)
    router = Router(chains(), model=model, threshold=0.4, lookahead=lookahead, **opts)
    y = np.concatenate([*streamed(router, x, sr, 4096), router.flush()], axis=1)
    d = router.latency_samples(sr)
    np.testing.assert_allclose(y[:, d:], whole, atol=1e-6)
    assert router.regions == whole_router.regions and router.regions[-1][2] == "string"
    if lookahead:  # the detection settles later: half the extra smoothing, twice the extra min_duration
        assert router.latency_seconds == pytest.approx(plain.latency_seconds + 0.75 + 2.0)
    else:
        assert router.latency_seconds == 0.0


def test_router_routes_where_the_core_detects(fluidr3: Path, model) -> None:
    """The router's routes are the core's detection (analyze on the same audio, model, hop and
    thresholds): at each moment the routed label detected there with the highest smoothed
    probability."""
    sr = 44100
    x = flute_then_strings(fluidr3, sr)
    router = Router(chains(), model=model, threshold=0.4)
    router(x, sr)
    an = instrunet_core.analyze(
        x.T,
        sr,
        model=model,
        hop=router.hop_seconds,
        thresholds={"flute": 0.4, "string": 0.4},
        analyzers=False,
    )
    act = an.activity
    routed = [act.labels.index(lab) for lab in ("flute", "string")]
    best = np.where(act.active[:, routed], act.probability[:, routed], -1.0)
    want = np.where(best.max(axis=1) >= 0, np.argmax(best, axis=1), -1)
    t = act.times + act.step / 2
    for start, end, label in router.regions:
        inside = (t > start + 0.05) & (t < end - 0.05) & act.sounding
        assert inside.any()
        expect = -1 if label is None else ["flute", "string"].index(label)
        assert np.all(want[inside] == expect), (start, end, label)


def test_router_takes_empty_and_one_sample_blocks(fluidr3: Path, model) -> None:
    sr = 22050
    x = flute_then_strings(fluidr3, sr)[:, : int(3.5 * sr)]
    whole = Router(chains(), model=model, lookahead=False)(x, sr)
    router = Router(chains(), model=model, lookahead=False)
    outs = [router(x[:, :1000], sr, reset=False), router(x[:, :0], sr, reset=False)]
    assert outs[1].shape == (2, 0)
    outs += [router(x[:, i : i + 1], sr, reset=False) for i in range(1000, 1500)]
    assert outs[-1].shape == (2, 1)
    outs.append(router(x[:, 1500:], sr, reset=False))
    np.testing.assert_allclose(np.concatenate(outs, axis=1), whole, atol=1e-6)


def _max_step(a: np.ndarray) -> float:
    return float(np.abs(np.diff(a, axis=1)).max())


@pytest.mark.parametrize("lookahead", [True, False])
def test_router_crossfades_are_click_free(fluidr3: Path, model, lookahead: bool) -> None:
    sr = 44100
    x = flute_then_strings(fluidr3, sr)
    level = {None: 1.0, "flute": 10 ** (-24 / 20), "string": 10 ** (6 / 20)}  # dry, -24 dB, +6 dB
    boards = {lab: Pedalboard([Gain(gain_db=20 * np.log10(g))]) for lab, g in level.items() if lab}
    refs = {lab: b(x, sr) for lab, b in boards.items()}
    refs[None] = x
    smooth = Router(boards, model=model, threshold=0.4, lookahead=lookahead, crossfade_ms=50.0)
    y = smooth(x, sr)
    hard = Router(boards, model=model, threshold=0.4, lookahead=lookahead, crossfade_ms=0.0)
    z = hard(x, sr)
    regions = smooth.regions
    assert len(regions) >= 2 and [r[2] for r in regions] == [r[2] for r in hard.regions]
    x_n = int(0.05 * sr)
    worse = 0
    for (_, _, before), (s, _, after), (h, _, _) in zip(regions, regions[1:], hard.regions[1:], strict=False):
        # Equal-gain fades (cos², sin²) of two chains that are gains a, b of one signal never
        # pass the louder chain's own level.
        allowed = 1.001
        i, j = int(round(s * sr)), int(round(h * sr))  # middle of the crossfade; the hard switch
        near = slice(i - x_n, i + x_n)
        own = max(_max_step(refs[before][:, near]), _max_step(refs[after][:, near]))
        assert _max_step(y[:, near]) <= own * allowed, (s, before, after)
        around = slice(j - x_n, j + x_n)
        own_h = max(_max_step(refs[before][:, around]), _max_step(refs[after][:, around]))
        worse += _max_step(z[:, around]) > own_h * allowed  # a hard switch jumps by more than the signal does
    assert worse >= 1
    # chains that change nothing pass the audio through every change unchanged (the equal-power
    # fade summed them to +3 dB mid-fade: a pedalboard audit)
    same = Router(
        {lab: Pedalboard([Gain(gain_db=0.0)]) for lab in level if lab},
        model=model,
        threshold=0.4,
        lookahead=lookahead,
        crossfade_ms=50.0,
    )
    out = same(x, sr)
    assert len(same.regions) >= 2 and np.max(np.abs(out - x)) < 1e-5


def test_router_rejects_bad_arguments(model) -> None:
    with pytest.raises(InputError, match="unknown label 'drums'"):
        Router({"drums": Pedalboard([])}, model=model)
    with pytest.raises(InputError, match="must be a pedalboard"):
        Router({"flute": lambda a, sr: a}, model=model)
    with pytest.raises(InputError, match="non-empty"):
        Router({}, model=model)
    with pytest.raises(InputError, match="crossfade_ms"):
        Router({"flute": Pedalboard([])}, model=model, crossfade_ms=-1)
    with pytest.raises(InputError, match="smoothing"):
        Router({"flute": Pedalboard([])}, model=model, smoothing=-1)
    with pytest.raises(InputError, match="Router: other_veto must be a probability"):
        Router({"flute": Pedalboard([])}, model=model, other_veto=2.0)
    with pytest.raises(InputError, match=r"threshold for 'flute' must be in \(0, 1\)"):
        Router({"flute": Pedalboard([])}, model=model, threshold=1.5)


# --------------------------------------------------------------------------- process_file


@pytest.fixture
def fs_file(fluidr3: Path, tmp_path: Path) -> Path:
    p = tmp_path / "flute_then_strings.wav"
    x = flute_then_strings(fluidr3, 44100)
    with AudioFile(str(p), "w", 44100, 2, bit_depth=32) as f:
        f.write(x)
    return p


def _read(path: Path) -> tuple[np.ndarray, float]:
    with AudioFile(str(path)) as f:
        return f.read(f.frames), f.samplerate


def test_process_file_round_trip_with_board_and_tagger(fs_file: Path, tmp_path: Path, model) -> None:
    x, sr = _read(fs_file)
    board = Pedalboard([Compressor(threshold_db=-18.0), HighpassFilter(200.0), Gain(-6.0)])
    ref = board(x, int(sr))
    dst = tmp_path / "out.flac"
    tagger = Tagger(model)
    analysis = process_file(fs_file, dst, board=board, tagger=tagger, block_size=3000)
    y, sr2 = _read(dst)
    assert sr2 == sr and y.shape == x.shape
    np.testing.assert_allclose(y, ref, atol=2.0 / 32768)  # 16-bit flac
    assert analysis.source == str(fs_file)
    assert {"flute", "string"} <= {i.label for i in analysis.instruments}
    # the tagger heard what was written
    solo = Tagger(model)
    solo(ref, int(sr))
    np.testing.assert_allclose(
        [r.probabilities for r in tagger.results], [r.probabilities for r in solo.results], atol=1e-4
    )
    assert not list(tmp_path.glob(".*.tmp*"))  # no temporary file left behind


def test_process_file_with_a_router_writes_what_the_router_returns(
    fs_file: Path, tmp_path: Path, model
) -> None:
    x, sr = _read(fs_file)
    ref = Router(chains(), model=model, threshold=0.4)(x, int(sr))
    dst = tmp_path / "routed.wav"
    router = Router(chains(), model=model, threshold=0.4)
    analysis = process_file(fs_file, dst, router=router, block_size=8192, bit_depth=32)
    y, _ = _read(dst)
    np.testing.assert_allclose(y, ref, atol=1e-6)
    assert analysis.source == str(fs_file) and router.regions[0][2] == "flute"


def test_process_file_errors_name_the_file(fs_file: Path, tmp_path: Path, model) -> None:
    missing = tmp_path / "missing.wav"
    with pytest.raises(DecodeError, match="missing.wav"):
        process_file(missing, tmp_path / "o.wav", tagger=Tagger(model))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(DecodeError, match="broken.wav"):
        process_file(broken, tmp_path / "o.wav", tagger=Tagger(model))
    with pytest.raises(InputError, match="overwrite the input"):
        process_file(fs_file, fs_file, tagger=Tagger(model))
    with pytest.raises(InputError, match=r"o\.xyz"):
        process_file(fs_file, tmp_path / "o.xyz", tagger=Tagger(model))
    with pytest.raises(InputError, match="block_size"):
        process_file(fs_file, None, tagger=Tagger(model), block_size=0)
    with pytest.raises(InputError, match="exceed the channel count"):
        process_file(fs_file, None, tagger=Tagger(model), block_size=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.wav", "flute_then_strings.wav"]


def test_process_file_says_how_many_samples_the_output_clipped(fs_file: Path, tmp_path: Path, model) -> None:
    """A chain that pushes the audio beyond full scale was clipped silently by the 16-bit default."""
    from instrunet_pedalboard import ClippingWarning

    x, sr = _read(fs_file)
    loud = Pedalboard([Gain(24.0)])
    want = int(np.count_nonzero(np.abs(loud(x, int(sr))) > 1.0))
    assert want > 0
    with pytest.warns(
        ClippingWarning, match=rf"loud\.flac: {want} of {x.size} samples .* clipped in the 16-bit"
    ):
        process_file(fs_file, tmp_path / "loud.flac", board=loud, tagger=Tagger(model), block_size=5000)
    assert np.max(np.abs(_read(tmp_path / "loud.flac")[0])) <= 1.0 + 1 / 32768  # (pedalboard reads -32768 so)
    with warnings.catch_warnings():  # a 32-bit WAV keeps float samples; within full scale nothing is said
        warnings.simplefilter("error", ClippingWarning)
        process_file(fs_file, tmp_path / "float.wav", board=loud, tagger=Tagger(model), bit_depth=32)
        assert np.max(np.abs(_read(tmp_path / "float.wav")[0])) > 1.0
        process_file(fs_file, tmp_path / "quiet.flac", board=Pedalboard([Gain(-6.0)]), tagger=Tagger(model))


# --------------------------------------------------------------------------- StreamTagger


def test_stream_tagger_fed_from_a_file_predicts_each_hop(fs_file: Path, model) -> None:
    whole = Tagger(model)
    x, sr = _read(fs_file)
    whole(x, int(sr))
    st = StreamTagger(model)
    with AudioFile(str(fs_file)) as f:
        live = list(st.listen(f, block_size=2048))
    assert [r.start for r in live] == [r.start for r in whole.results]
    assert [r.label for r in live] == [r.label for r in whole.results]
    starts = np.array([r.start for r in live])
    np.testing.assert_allclose(np.diff(starts[:-1]), st.hop_seconds, atol=1e-3)
    assert 0.0 < starts[-1] - starts[-2] <= st.hop_seconds  # the last one aligned to the end
    for r in live[:-1]:  # each came out within one block of its window's end (+ compute)
        assert 0.0 <= r.stream_seconds - r.end <= 2048 / sr + 0.06
        assert r.latency == pytest.approx(r.stream_seconds - r.end + r.compute_seconds)
    assert st.seconds == pytest.approx(SECONDS, abs=1e-3)


def test_stream_tagger_feed_and_stop_after_seconds(fs_file: Path, model) -> None:
    st = StreamTagger(model)
    with AudioFile(str(fs_file)) as f:
        got = list(st.listen(f, block_size=1024, seconds=5.0))
    assert st.seconds == pytest.approx(5.0, abs=1e-3)
    assert got and got[0].label == "flute"
    st2 = StreamTagger(model)
    x, sr = _read(fs_file)
    fed = [r for i in range(0, x.shape[1], 4410) for r in st2.feed(x[:, i : i + 4410], sr)]
    fed += st2.finish()
    assert [r.start for r in fed] == [r.start for r in st2.results]


@pytest.mark.parametrize("block", [256, 512, 4096])
def test_each_block_hands_back_the_windows_it_completed(fluidr3: Path, model, block: int) -> None:
    sr = 44100
    x = flute_then_strings(fluidr3, sr)
    seen: list[list] = []
    tagger = Tagger(model, on_windows=seen.append)
    clf = instrunet_core.Classifier(model)
    for i in range(0, x.shape[1], block):
        before = len(seen)
        tagger(x[:, i : i + block], sr, reset=False)
        want = clf.process(x[:, i : i + block].T, sr)
        assert (len(seen) - before, [w.index for w in (seen[-1] if len(seen) > before else [])]) == (
            1 if want else 0,
            [w.index for w in want],
        )
    last = tagger.flush()
    assert [w.index for w in last] == [w.index for w in clf.flush()] and seen[-1] is not None
    assert [w.index for batch in seen for w in batch] == [w.index for w in tagger.results]


def test_a_worker_thread_runs_the_classifier_and_hands_back_the_same_windows(fluidr3: Path, model) -> None:
    sr = 44100
    x = flute_then_strings(fluidr3, sr)
    sync = Tagger(model)
    sync(x, sr)
    threads: set[str] = set()
    seen: list = []

    def got(wins: list) -> None:
        threads.add(threading.current_thread().name)
        seen.extend(wins)

    with Tagger(model, worker=True, on_windows=got) as tagger:
        assert tagger.worker
        for i in range(0, x.shape[1], 512):
            assert tagger(x[:, i : i + 512], sr, reset=False) is not None
        tagger.flush()
        assert threads == {"instrunet-tagger"}  # never the caller's thread
        assert [w.index for w in seen] == [w.index for w in tagger.results] == [w.index for w in sync.results]
        # within float32 rounding: fed in 512-sample blocks the worker's batches hold other
        # numbers of new STFT frames than one call with the whole signal, and OpenBLAS's
        # small-matrix kernels round a row of the mel projection differently with the rows
        np.testing.assert_allclose(
            np.array([w.probabilities for w in tagger.results]),
            np.array([w.probabilities for w in sync.results]),
            rtol=0,
            atol=1e-5,
        )
        assert [i.label for i in tagger.instruments] == [i.label for i in sync.instruments]
        # a block the worker could not use is refused by its own call, in the caller's thread
        # (before, the worker found it and the caller's next call raised, losing its block)
        tagger(x[:, :512], sr, reset=False)
        bad = x[:, :512].copy()
        bad[0, 7] = np.nan
        with pytest.raises(InputError, match="NaN|finite"):
            tagger(bad, sr, reset=False)
        tagger(x[:, 512:1024], sr, reset=False)
        tagger.flush()
        assert tagger.results[-1].end == pytest.approx(1024 / sr, abs=1e-3)


def test_on_windows_may_read_the_tagger_while_the_caller_waits(fluidr3: Path, model) -> None:
    """An ``on_windows`` callback on the worker thread reads ``results`` and ``analysis`` while
    the caller waits for the worker inside ``flush`` (holding the feeding call): no deadlock."""
    sr = 22050
    x = flute_then_strings(fluidr3, sr)
    counts: list[int] = []
    tagger = Tagger(model, worker=True)
    tagger.on_windows = lambda wins: counts.append(len(tagger.results) + 0 * len(tagger.analysis.labels))

    def run() -> None:
        for i in range(0, x.shape[1], 4096):
            tagger(x[:, i : i + 4096], sr, reset=False)
        tagger.flush()
        tagger(x, sr)  # reset=True: reset, feed and flush, each waiting for the worker

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(120)
    try:
        assert not t.is_alive(), "deadlock: the callback and the caller wait for each other"
        assert counts and all(n > 0 for n in counts)  # it saw the windows it was handed
    finally:
        tagger.close()


def test_stream_tagger_with_a_worker_predicts_what_it_predicts_without(fs_file: Path, model) -> None:
    st = StreamTagger(model)
    with AudioFile(str(fs_file)) as f:
        plain = list(st.listen(f, block_size=512))
    live: list = []
    with StreamTagger(model, worker=True, on_windows=live.extend) as wt:
        with AudioFile(str(fs_file)) as f:
            got = list(wt.listen(f, block_size=512))
        assert [r.start for r in got] == [r.start for r in plain] == [r.start for r in live]
        assert [r.label for r in got] == [r.label for r in plain]
        for r in got:  # the block that completed it was fed after the window's audio ended
            assert r.stream_seconds >= r.end - 1e-6 and r.compute_seconds >= 0.0


# --------------------------------------------------------------------------- packaging and docs


def test_the_distribution_is_an_instrunet_plugin() -> None:
    """Installed (make test does), it appears in `instrunet plugins` through its entry point."""
    import json
    import shutil
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "instrunet"
    r = subprocess.run(
        [str(exe) if exe.exists() else shutil.which("instrunet") or "instrunet", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert "pedalboard" in rows and not rows["pedalboard"]["error"], rows
    from importlib.metadata import version

    assert rows["pedalboard"]["version"] == version("instrunet-pedalboard")


def test_the_routes_the_recipe_page_prints_are_what_it_prints() -> None:
    """docs/pedalboard.md shows the output of its strings/brass routing snippet; run that snippet
    (as pasted, from the repository root, with the shipped default model) and compare. Every
    snippet of the page also runs in tests/test_docs.py."""
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    page = (root / "docs" / "pedalboard.md").read_text()
    (code,) = [
        c for c in re.findall(r"^```python\n(.*?)^```", page, flags=re.S | re.M) if "ensemble_routed" in c
    ]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    printed = page.split("prints (default model", 1)[1].split("\n\n")[1]
    assert [line.strip() for line in printed.splitlines()] == [line.strip() for line in r.stdout.splitlines()]


def test_a_whole_array_is_routed_in_blocks_as_one_push_routes_it(
    fluidr3: Path, model, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``router(audio, sr)`` held every chain's output for the whole piece (about 6x the input in
    memory); it routes in blocks now, and the output is what one push of the whole piece gave."""
    import instrunet_pedalboard.router as router_mod

    x = flute_then_strings(fluidr3, 44100)
    assert x.shape[1] > 3 * router_mod.WHOLE_BLOCK  # several blocks
    blocked = Router(chains(), model=model, threshold=0.4)
    y = blocked(x, 44100)
    y_last = Router(chains(), model=model, threshold=0.4)(np.ascontiguousarray(x.T), 44100)
    monkeypatch.setattr(router_mod, "WHOLE_BLOCK", 10**12)
    one = Router(chains(), model=model, threshold=0.4)
    np.testing.assert_allclose(y, one(x, 44100), atol=1e-6)
    assert blocked.regions == one.regions
    np.testing.assert_allclose(y_last, y.T, atol=1e-6)  # (n, channels) routes the same
    mono = Router(chains(), model=model, threshold=0.4)(x[0], 44100)
    assert mono.shape == x[0].shape and mono.dtype == np.float32


def test_a_block_one_chain_refuses_leaves_the_chains_in_step(fluidr3: Path, model) -> None:
    """A block whose output one chain got through and a later chain's was refused stayed in the
    first chain's buffer: from then on the chains were a block apart (an audit, 2026-12-06)."""
    sr = 22050
    x = flute_then_strings(fluidr3, sr)
    boards = {"string": Pedalboard([]), "flute": Pedalboard([Gain(gain_db=190)])}  # overflows on a spike
    whole = Router(boards, model=model, lookahead=False, crossfade_ms=0)(x, sr)
    router = Router(boards, model=model, lookahead=False, crossfade_ms=0)
    outs = []
    for k, i in enumerate(range(0, x.shape[1], 4096)):
        if k == 10:
            spike = x[:, i : i + 4096].copy()
            spike[:, 100] = 10.0
            with pytest.raises(InputError, match="the 'flute' board's output: samples reach"):
                router(spike, sr, reset=False)
        outs.append(router(x[:, i : i + 4096], sr, reset=False))
    y = np.concatenate([*outs, router.flush()], axis=1)
    assert {len(f) for f in router._fifos.values()} == {0}
    assert y.shape == whole.shape
    strings = [(a, b) for a, b, k in router.regions if k == "string"]
    a, b = int(strings[-1][0] * sr) + 2000, int(strings[-1][1] * sr) - 2000
    np.testing.assert_array_equal(y[:, a:b], x[:, a:b])  # the identity chain: the input, in step


def test_a_live_router_keeps_its_memory_flat_and_adapters_name_themselves(fluidr3: Path, model) -> None:
    """A live Router's classifier kept every window (about 7 MB an hour at 44.1 kHz stereo);
    Tagger(keep=0) said the core's words without the object at fault."""
    sr = 22050
    x = flute_then_strings(fluidr3, sr)
    router = Router(chains(), model=model, lookahead=False)
    for _ in range(4):  # a stream four times the piece
        for i in range(0, x.shape[1], 8192):
            router(x[:, i : i + 8192], sr, reset=False)
    assert 0 < len(router._clf.results) <= 16 and router._clf.duration > 60
    for cls in (Tagger, StreamTagger):
        with pytest.raises(InputError, match=rf"^{cls.__name__}: keep must be an int >= 1, got 0"):
            cls(model=model, keep=0)


def test_the_taggers_take_the_leading_count_as_analyze_does(installed_registry: object) -> None:
    """An audit (2026-12-07): the taggers' instruments follow family 3.1.0's margins, but they
    took no ``leading=``, the way back to 3.0.0's listing that analyze and the Router have."""
    import soundfile as sf

    ens = Path(__file__).resolve().parent.parent / "examples" / "ensemble.flac"
    y, sr = sf.read(ens, dtype="float32")
    found = {}
    for leading in (None, 0):
        tagger = Tagger(leading=leading)
        tagger(y, sr)
        found[leading] = {i.label for i in tagger.instruments}
        want = instrunet_core.analyze(ens, analyzers=False, refine=False, leading=leading)
        assert found[leading] == {i.label for i in want.instruments}, leading
    assert found[0] - found[None] == {"mallet"}
    assert StreamTagger(leading=0)._clf.detection.leading == 0
