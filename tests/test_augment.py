"""Waveform augmentation: determinism, shape and range contracts, the identity config."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from instrunet_core.features import DEFAULT_FRONT_END
from training.augment import AugmentConfig, augment

SR = DEFAULT_FRONT_END.sample_rate
N = DEFAULT_FRONT_END.window_samples

ALL_ON = AugmentConfig(**{f.name: 1.0 for f in dataclasses.fields(AugmentConfig) if f.name.startswith("p_")})


def _note(seed: int = 0, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = 110 * 2 ** rng.uniform(0, 4)
    y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * np.exp(-t * rng.uniform(0.3, 3))
    y = y + 0.01 * rng.standard_normal(n)
    return (0.9 * y / np.abs(y).max()).astype(np.float32)


@pytest.mark.parametrize("config", [AugmentConfig(), ALL_ON], ids=["default", "all_on"])
def test_same_seed_bit_identical(config: AugmentConfig) -> None:
    y = _note(1)
    for seed in range(6):
        log_a: list = []
        log_b: list = []
        a = augment(y, sr=SR, rng=np.random.default_rng(seed), config=config, log=log_a)
        b = augment(y, sr=SR, rng=np.random.default_rng(seed), config=config, log=log_b)
        assert a.tobytes() == b.tobytes()
        assert log_a == log_b


def test_state_does_not_leak_between_calls() -> None:
    """A clip's output does not depend on what was augmented before it (plugins are fresh)."""
    y, other = _note(2), _note(3)
    ref = augment(y, sr=SR, rng=np.random.default_rng(7), config=ALL_ON)
    augment(other, sr=SR, rng=np.random.default_rng(8), config=ALL_ON)
    assert augment(y, sr=SR, rng=np.random.default_rng(7), config=ALL_ON).tobytes() == ref.tobytes()


def test_different_seeds_differ() -> None:
    y = _note(4)
    outs = [augment(y, sr=SR, rng=np.random.default_rng(s), config=ALL_ON) for s in range(4)]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert not np.array_equal(outs[i], outs[j])


@pytest.mark.parametrize("n", [1, 300, 4096, N, 88200])
def test_contract_length_dtype_finite_peak(n: int) -> None:
    y = _note(5, n)
    for seed in range(4):
        for config in (AugmentConfig(), ALL_ON):
            z = augment(y, sr=SR, rng=np.random.default_rng(seed), config=config)
            assert z.shape == y.shape and z.dtype == np.float32
            assert np.all(np.isfinite(z))
            assert float(np.abs(z).max()) <= 1.0


def test_loud_effects_are_renormalised() -> None:
    cfg = dataclasses.replace(AugmentConfig.none(), p_gain=1.0, gain_db=(20.0, 20.0))
    log: list = []
    z = augment(_note(6), sr=SR, rng=np.random.default_rng(0), config=cfg, log=log)
    assert log == [{"effect": "gain", "gain_db": 20.0}]
    assert float(np.abs(z).max()) == 1.0


def test_none_is_identity() -> None:
    y = _note(7)
    log: list = []
    z = augment(y, sr=SR, rng=np.random.default_rng(0), config=AugmentConfig.none(), log=log)
    assert log == []
    assert z.dtype == np.float32 and z.tobytes() == y.tobytes()
    assert z is not y  # a copy: the caller's buffer is never modified
    y64 = y.astype(np.float64)
    assert (
        augment(y64, sr=SR, rng=np.random.default_rng(0), config=AugmentConfig.none()).tobytes()
        == y.tobytes()
    )


def test_input_not_modified() -> None:
    y = _note(8)
    keep = y.copy()
    augment(y, sr=SR, rng=np.random.default_rng(0), config=ALL_ON)
    assert np.array_equal(y, keep)


def test_silence_stays_finite() -> None:
    for config in (AugmentConfig(), ALL_ON):
        for seed in range(4):
            z = augment(np.zeros(N, np.float32), sr=SR, rng=np.random.default_rng(seed), config=config)
            assert z.shape == (N,) and np.all(np.isfinite(z)) and float(np.abs(z).max()) <= 1.0


def test_empty_and_bad_input() -> None:
    rng = np.random.default_rng(0)
    assert augment(np.zeros(0, np.float32), sr=SR, rng=rng).shape == (0,)
    with pytest.raises(ValueError, match="mono"):
        augment(np.zeros((2, 100), np.float32), sr=SR, rng=rng)
    with pytest.raises(ValueError, match="NaN"):
        augment(np.array([0.0, np.nan], np.float32), sr=SR, rng=rng)
    with pytest.raises(ValueError, match="floating"):
        augment(np.zeros(10, np.int16), sr=SR, rng=rng)


def test_each_effect_runs_and_is_logged() -> None:
    seen: set[str] = set()
    for seed in range(8):
        log: list = []
        augment(_note(seed), sr=SR, rng=np.random.default_rng(seed), config=ALL_ON, log=log)
        seen |= {e["effect"] for e in log}
    assert seen == {
        "pitch",
        "offset",
        "reverb",
        "noise",
        "highpass",
        "lowpass",
        "peak_eq",
        "low_shelf",
        "high_shelf",
        "gain",
        "distortion",
        "compressor",
        "mp3",
        "chorus",
        "radio",
    }


def test_noise_snr() -> None:
    y = _note(9)
    cfg = dataclasses.replace(AugmentConfig.none(), p_noise=1.0, noise_snr_db=(20.0, 20.0), p_pink=0.0)
    z = augment(y, sr=SR, rng=np.random.default_rng(0), config=cfg)
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean((z - y).astype(np.float64) ** 2))
    assert snr == pytest.approx(20.0, abs=0.1)


def test_offset_moves_onset() -> None:
    y = np.zeros(N, np.float32)
    y[1000] = 0.5
    cfg = dataclasses.replace(AugmentConfig.none(), p_offset=1.0, offset_ms=(10.0, 10.0))
    z = augment(y, sr=SR, rng=np.random.default_rng(0), config=cfg)
    assert int(np.argmax(z)) == 1000 + round(0.010 * SR)


def test_config_roundtrip_and_validation() -> None:
    cfg = AugmentConfig(p_mp3=0.0, noise_snr_db=(5, 30))
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert AugmentConfig.from_dict(d) == cfg
    assert all(v == 0.0 for k, v in AugmentConfig.none().to_dict().items() if k.startswith("p_"))
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(p_reverb=1.5)
    with pytest.raises(ValueError, match="low <= high"):
        AugmentConfig(gain_db=(6.0, -6.0))
    with pytest.raises(ValueError, match="unknown"):
        AugmentConfig.from_dict({"p_flanger": 0.5})


# --------------------------------------------------------------------------- feature-level (per epoch)


def test_feature_augment_deterministic_floor_and_peak() -> None:
    from instrunet_core.features import batch_features
    from training.train import spec_augment

    x0 = batch_features(np.stack([_note(s) for s in range(6)]))
    a = spec_augment(x0.copy(), np.random.default_rng(3), p_mask=1.0, p_eq=1.0, eq_db=12.0)
    b = spec_augment(x0.copy(), np.random.default_rng(3), p_mask=1.0, p_eq=1.0, eq_db=12.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(
        a, spec_augment(x0.copy(), np.random.default_rng(4), p_mask=1.0, p_eq=1.0, eq_db=12.0)
    )
    assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() <= 1.0
    assert not a[x0 == 0].any()  # the floor stays the floor: EQ never invents sound
    for xa in a:  # a masked band and a masked span in each window
        assert (xa == 0).all(axis=1).any() and (xa == 0).all(axis=0).any()
    # EQ alone: each window's peak is re-referenced to 1; no cell moves by more than twice eq_db
    e = spec_augment(x0.copy(), np.random.default_rng(5), p_mask=0.0, p_eq=1.0, eq_db=12.0)
    assert not np.array_equal(e, x0)
    np.testing.assert_allclose(e.max(axis=(1, 2)), 1.0, atol=1e-6)
    assert float(np.abs(e - x0).max()) <= 2 * 12.0 / 80 + 1e-6
    # probabilities 0: the identity
    np.testing.assert_array_equal(
        spec_augment(x0.copy(), np.random.default_rng(6), p_mask=0.0, p_eq=0.0, eq_db=12.0), x0
    )


def test_impulse_responses_convolve_and_log(tmp_path) -> None:
    import soundfile as sf

    from training.augment import load_irs

    # A measured-looking response: a direct sound, then one echo 20 ms later at half level (48 kHz
    # file; 20 ms apart and 20 ms in, so that both land on whole samples at 22.05 kHz).
    ir = np.zeros(4800, np.float32)
    ir[960], ir[960 + 960] = 1.0, 0.5
    sf.write(tmp_path / "room.wav", ir, 48000, subtype="FLOAT")
    ((use, h),) = load_irs([("room", tmp_path / "room.wav")], sr=SR)
    assert use == "room" and np.sum(h**2) == pytest.approx(1.0, rel=1e-4)
    assert int(np.argmax(h)) <= 3  # starts at the direct sound (resampling spreads it over a few samples)
    y = np.zeros(N, np.float32)
    y[2000] = 0.5
    cfg = dataclasses.replace(AugmentConfig.none(), p_room_ir=1.0, room_ir_wet=(1.0, 1.0))
    log: list = []
    z = augment(y, sr=SR, rng=np.random.default_rng(0), config=cfg, irs=[(use, h)], log=log)
    assert [e["effect"] for e in log] == ["room_ir"]
    echo = 2000 + round(0.020 * SR)
    direct, late = np.abs(z[1995:2010]).max(), np.abs(z[echo - 5 : echo + 10]).max()
    assert late == pytest.approx(0.5 * direct, rel=0.1)  # the echo, at the response's level
    assert np.abs(z[2100 : echo - 20]).max() < 0.05 * direct  # silence between
    # without responses nothing is drawn for them: the chain is the one it was before
    a = augment(_note(3), sr=SR, rng=np.random.default_rng(5))
    b = augment(_note(3), sr=SR, rng=np.random.default_rng(5), irs=[("device", h)] * 0)
    assert np.array_equal(a, b)


def test_random_chain_contract_and_ranges() -> None:
    """The invariance copies' chains: one or two kinds per call, each parameter inside its
    kind's range, same length, float32, finite, peak at most 1, the same output for the same
    seed; and every fixed evaluation chain is a point of those ranges (training meets the kind
    of chain, not its one setting)."""
    from training.augment import CHAIN_RANGES, CHAINS, random_chain

    assert set(CHAIN_RANGES) == set(CHAINS)
    fixed = {
        "drive": {"drive_db": 18.0, "threshold_db": -18.0, "ratio": 4.0},
        "chorus": {"rate_hz": 1.2, "depth": 0.4, "mix": 0.5},
        "radio": {"low_hz": 400.0, "high_hz": 3400.0, "drive_db": 6.0},
        "mp3": {"vbr_quality": 7.0},
        "reverb": {"room_size": 0.85, "damping": 0.3, "wet_level": 0.4, "dry_level": 0.7},
        "quiet_noisy": {"level_db": -30.0, "snr_db": 15.0},
    }
    for kind, params in fixed.items():
        for k, v in params.items():
            lo, hi = CHAIN_RANGES[kind][k]
            assert lo <= v <= hi, (kind, k)
    sr = DEFAULT_FRONT_END.sample_rate
    t = np.arange(sr) / sr
    y = (0.9 * np.sin(2 * np.pi * 330 * t) * np.exp(-2 * t)).astype(np.float32)
    seen: set[str] = set()
    for seed in range(40):
        log: list = []
        out = random_chain(y, sr, np.random.default_rng(seed), log=log)
        assert out.dtype == np.float32 and out.shape == y.shape
        assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0
        assert 1 <= len(log) <= 2 and len({e["chain"] for e in log}) == len(log)
        for e in log:
            seen.add(e["chain"])
            for k, v in e.items():
                if k != "chain":
                    lo, hi = CHAIN_RANGES[e["chain"]][k]
                    assert lo <= v <= hi, e
        assert not np.allclose(out, y)
        assert np.array_equal(out, random_chain(y, sr, np.random.default_rng(seed)))
    assert seen == set(CHAINS)


def test_chain_copies_of_a_cached_set(tmp_path) -> None:
    """``training.train --chain-copies``: the share asked of a cached set's examples, their
    windows after a random chain (finite log-mel windows in [0, 1] that differ from the clean
    ones), the same on a second call (read back from the cache), and a clear error for a set
    without its audio."""
    from instrunet_core.features import batch_features
    from training.dataset import Examples
    from training.train import Config, chain_copies

    folder = tmp_path / "train-set"
    folder.mkdir()
    W = (np.stack([_note(seed) for seed in range(6)]) * 32767).astype(np.int16)
    np.save(folder / "W.npy", W)
    X = batch_features(W.astype(np.float32) / 32767).astype(np.float16)
    ex = Examples(
        X, np.zeros((6, 9), np.float32), [[str(i)] for i in range(6)], np.load(folder / "W.npy"), "train-set"
    )
    cfg = Config(
        model="default", corpus=tmp_path, out=tmp_path / "out", cache=tmp_path, chain_copies=0.5, workers=1
    )
    idx, Xc = chain_copies(cfg, ex)
    assert len(idx) == 3 and len(set(idx.tolist())) == 3 and np.all(np.diff(idx) > 0)
    assert Xc.shape == (3, *X.shape[1:]) and Xc.dtype == np.float16
    assert np.all(np.isfinite(Xc)) and Xc.min() >= 0 and Xc.max() <= 1
    assert all(not np.allclose(Xc[j], X[i], atol=1e-2) for j, i in enumerate(idx))
    idx2, Xc2 = chain_copies(cfg, ex)
    assert np.array_equal(idx, idx2) and np.array_equal(np.asarray(Xc), np.asarray(Xc2))
    with pytest.raises(ValueError, match="audio"):
        chain_copies(cfg, Examples(X, ex.Y, ex.names, None, "train-set"))
    none, empty = chain_copies(dataclasses.replace(cfg, chain_copies=0.05), ex)  # 0.3 of an example
    assert len(none) == 0 and empty.shape == (0, *X.shape[1:])
