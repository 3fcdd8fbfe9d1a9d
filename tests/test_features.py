"""The one log-mel front end: parity with librosa, padding, silence and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import librosa_logmel

from instrunet_core.errors import InputError
from instrunet_core.features import (
    DEFAULT_FRONT_END,
    FrontEnd,
    batch_features,
    logmel,
    mel_filterbank,
    power_features,
    window_features,
)

librosa = pytest.importorskip("librosa")

FE = DEFAULT_FRONT_END
SR = FE.sample_rate


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(FE.window_samples) / SR
    harmonic = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 12)) * np.exp(-t)
    chirp = np.sin(2 * np.pi * (100 + 2000 * t) * t)
    return {
        "harmonic_decay": (0.3 * harmonic).astype(np.float32),
        "chirp": (0.5 * chirp).astype(np.float32),
        "white_noise": (0.1 * rng.standard_normal(FE.window_samples)).astype(np.float32),
        "quiet_tone": (1e-3 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32),
    }


def test_filterbank_matches_librosa() -> None:
    ref = librosa.filters.mel(sr=SR, n_fft=FE.n_fft, n_mels=FE.n_mels)
    np.testing.assert_allclose(mel_filterbank(FE), ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", list(_signals()))
def test_logmel_parity_with_librosa(name: str) -> None:
    y = _signals()[name]
    ours = logmel(y)
    ref = librosa_logmel(y)
    assert ours.shape == ref.shape == (FE.n_mels, FE.frames)
    assert float(np.abs(ours - ref).max()) <= 1e-4
    assert ours.min() >= 0.0 and ours.max() == pytest.approx(1.0)


def test_window_features_shape_and_batch_agree() -> None:
    sig = _signals()
    batch = np.stack([sig["chirp"], sig["harmonic_decay"], sig["white_noise"]])
    out = batch_features(batch, chunk=2)  # chunking must not change anything
    assert out.shape == (3, FE.n_mels, FE.frames) and out.dtype == np.float32
    for i in range(3):  # the same numbers up to float32 rounding of the batched GEMM
        np.testing.assert_allclose(out[i], window_features(batch[i]), atol=1e-6)
        assert float(np.abs(out[i] - librosa_logmel(batch[i])).max()) <= 1e-4


def test_short_window_is_padded_with_silence_not_loudness() -> None:
    """The seed padded dB spectrograms with 0 dB (the loudest value); we pad the audio with silence."""
    y = _signals()["harmonic_decay"][: SR // 2]  # 0.5 s: about 22 of 128 frames hold sound
    x = window_features(y)
    assert x.shape == (FE.n_mels, FE.frames)
    sounding = 1 + len(y) // FE.hop_length
    assert x[:, : sounding - 4].max() == pytest.approx(1.0)
    # frames wholly past the end (beyond the STFT's half-window) are the floor, never the peak
    assert x[:, sounding + 4 :].max() == 0.0
    padded = np.zeros(FE.window_samples, np.float32)
    padded[: len(y)] = y
    np.testing.assert_array_equal(x, window_features(padded))


def test_long_audio_is_cut_to_one_window() -> None:
    y = np.tile(_signals()["chirp"], 2)
    np.testing.assert_array_equal(window_features(y), window_features(y[: FE.window_samples]))


def test_digital_silence_is_the_floor() -> None:
    x = window_features(np.zeros(FE.window_samples, np.float32))
    assert x.shape == (FE.n_mels, FE.frames) and not x.any()


def test_level_does_not_change_features() -> None:
    y = _signals()["harmonic_decay"]
    np.testing.assert_allclose(window_features(y), window_features(0.01 * y), atol=2e-5)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.array([0.0, np.nan, 0.1], np.float32), "NaN or infinite"),
        (np.array([0.0, np.inf], np.float32), "NaN or infinite"),
        (np.zeros(100, np.int16), "floating-point"),
        (np.zeros((2, 100), np.float32), "mono"),
    ],
)
def test_bad_input_is_named(bad: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        window_features(bad)


def test_batch_shape_checked() -> None:
    with pytest.raises(InputError, match=r"\(batch, n\)"):
        batch_features(np.zeros(100, np.float32))


def test_front_end_round_trip_and_validation() -> None:
    d = FE.to_dict()
    assert d["window_samples"] == (FE.frames - 1) * FE.hop_length == 65024
    assert FrontEnd.from_dict(d) == FE
    with pytest.raises(InputError, match="unknown front-end"):
        FrontEnd.from_dict({**d, "bogus": 1})
    with pytest.raises(InputError, match="window_samples"):
        FrontEnd.from_dict({**d, "window_samples": 1000})
    with pytest.raises(InputError, match="normalization"):
        FrontEnd.from_dict({**d, "normalization": "minmax"})


@pytest.mark.parametrize(
    "fe",
    [FE, FrontEnd(n_mels=64, fmin=50.0, fmax=8000.0), FrontEnd(n_fft=1024, n_mels=40)],
    ids=["default", "64-bands-50-8000Hz", "1024-fft-40-bands"],
)
def test_banded_mel_projection_equals_the_dense_product(fe: FrontEnd) -> None:
    from instrunet_core.features import _power_mel

    rng = np.random.default_rng(3)
    frames = rng.standard_normal((37, fe.n_fft)).astype(np.float32)
    got = _power_mel(frames, fe)  # [n_mels, 37], projected band block by band block
    spec = np.fft.rfft(
        frames.astype(np.float64) * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(fe.n_fft) / fe.n_fft))
    )
    dense = (np.abs(spec) ** 2) @ mel_filterbank(fe).T.astype(np.float64)
    np.testing.assert_allclose(got, dense.T, rtol=1e-5, atol=1e-6 * dense.max())


def test_window_stream_phases_put_windows_between_the_hops() -> None:
    """Windows at several phases of each hop share the frames and still equal batch_features of
    their own samples; n_ready counts them; bad phases are refused."""
    from instrunet_core.features import WindowStream

    fe = FrontEnd()
    rng = np.random.default_rng(5)
    y = (0.2 * rng.standard_normal(12 * fe.sample_rate)).astype(np.float32)
    stream = WindowStream(fe, 1.5, phases=(22, 43))
    stream.push(y[:100_000])
    stream.push(y[100_000:])
    n = stream.n_ready()
    ready = stream.ready(100)
    assert n == len(ready) > 6
    starts = [stream.start(k) for k, _ in ready]
    hop = stream.hop_samples
    assert starts[:3] == [22 * 512, 43 * 512, hop + 22 * 512]
    x = stream.features(ready)
    ref = batch_features(np.stack([y[s : s + fe.window_samples] for s in starts]), fe=fe)
    np.testing.assert_allclose(x, ref.reshape(x.shape), atol=2e-5)
    for bad in ((), (43, 22), (0, 65), (-1,)):
        with pytest.raises(InputError, match="phases"):
            WindowStream(fe, 1.5, phases=bad)


def test_evidence_phases_fall_about_half_a_second_apart() -> None:
    from instrunet_core.refine import evidence_phases

    frame = 512 / 22050
    assert evidence_phases(65, frame_seconds=frame) == (22, 43)  # the default hop: 0.51, 0.49, 0.51 s
    assert evidence_phases(22, frame_seconds=frame) == ()  # a hop of 0.5 s: nothing to add
    gaps = np.diff([0, *evidence_phases(129, frame_seconds=frame), 129]) * frame
    assert np.all(np.abs(gaps - 0.5) < 0.02)


@pytest.mark.parametrize("name", ["harmonic_decay", "chirp", "white_noise", "quiet_tone"])
def test_power_features_of_a_windows_stft_is_its_model_input(name: str) -> None:
    """Code that has taken a window's STFT already (the condition analyzer) gets the model input
    from its power: the same as window_features, within float32 rounding."""
    y = _signals()[name]
    padded = np.pad(y, FE.n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, FE.n_fft)[:: FE.hop_length]
    hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FE.n_fft) / FE.n_fft)).astype(np.float32)
    power = (np.abs(np.fft.rfft((frames * hann).astype(np.float64), axis=1)) ** 2).astype(np.float32)
    assert power.shape == (FE.frames, FE.n_fft // 2 + 1)
    got = power_features(power)
    assert got.shape == (FE.n_mels, FE.frames) and got.dtype == np.float32
    np.testing.assert_allclose(got, window_features(y), atol=1e-5)
    # frames beyond the window's are not read
    np.testing.assert_array_equal(power_features(np.concatenate([power, power[:3]])), got)


def test_power_features_refuses_what_is_not_a_windows_power() -> None:
    ok = np.ones((FE.frames, FE.n_fft // 2 + 1), np.float32)
    with pytest.raises(InputError, match="expected shape"):
        power_features(ok[:-1])  # too few frames
    with pytest.raises(InputError, match="expected shape"):
        power_features(ok[:, :-1])
    bad = ok.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        power_features(bad)
