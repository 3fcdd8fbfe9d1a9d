"""Open-set material: sounds that are none of the eight families (training.others)."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from training import corpus
from training.others import (
    NOISE_KINDS,
    OTHER_PROGRAMS,
    drum_pattern,
    load_others,
    noise,
    one_shot,
    plan_font_others,
    plan_locked_others,
    render_other,
)


def test_font_plan_splits_by_font_and_crosses_valid() -> None:
    plans = plan_font_others(corpus.SOUNDFONTS, corpus.TEST_FONT, corpus.training_groups())
    by = collections.defaultdict(set)
    for p in plans:
        by[(p.source, p.split)].add((p.sound, p.entry()["program"]))
    assert {s for (src, s) in by if src == corpus.TEST_FONT} == {"test"}
    assert all(p.split != "test" for p in plans if p.source != corpus.TEST_FONT)
    # the two training groups hold out different programs, and every program still trains
    valid_f = by[("fluidr3", "valid")]
    valid_c = by[("csound", "valid")]
    assert valid_f and valid_c and not (valid_f & valid_c)
    trained = by[("fluidr3", "train")] | by[("musescore", "train")] | by[("csound", "train")]
    assert valid_f | valid_c <= trained
    # no program of the eight families is "other"
    family_programs = {p for progs in corpus.PROGRAMS.values() for p in progs}
    assert not family_programs & {p for progs in OTHER_PROGRAMS.values() for p in progs}


def test_locked_negatives_are_planned_from_the_lock() -> None:
    lock = {
        "sources": [{"key": "inst", "split": "train", "sample_group": "g", "instruments": [{"name": "x"}]}],
        "negatives": [
            {
                "key": "kit",
                "role": "negative",
                "sound": "drums",
                "play": "sfz",
                "split": "dev",
                "sample_group": "k",
                "instruments": [{"name": "studio", "sfz": "kit.sfz"}],
            },
            {
                "key": "talk",
                "role": "negative",
                "sound": "speech",
                "play": "audio",
                "split": "train",
                "sample_group": "t",
                "files": ["voices"],
                "exclude": ["voices/silence"],
            },
        ],
    }
    plans = plan_locked_others(lock)
    assert [(p.key, p.kind, p.sound, p.split) for p in plans] == [
        ("lock-kit-studio", "sfz-drums", "drums", "dev"),
        ("lock-talk", "recordings", "speech", "train"),
    ]


def test_recordings_are_cut_and_short_ones_strung_together(tmp_path: Path) -> None:
    import soundfile as sf

    from training.others import OtherPlan

    (tmp_path / "voices" / "silence").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(30):  # spoken words of 0.3 s
        sf.write(
            tmp_path / "voices" / f"w{i:02d}.wav", 0.3 * rng.standard_normal(2400).astype(np.float32), 8000
        )
    sf.write(tmp_path / "voices" / "long.wav", 0.3 * rng.standard_normal(8000 * 20).astype(np.float32), 8000)
    sf.write(tmp_path / "voices" / "silence" / "s.wav", np.zeros(8000, np.float32), 8000)
    plan = OtherPlan(
        "lock-talk",
        "speech",
        "talk",
        "t",
        "train",
        "recordings",
        (("exclude", ("voices/silence",)), ("files", ("voices",))),
    )
    _, recs = render_other(plan, root=str(tmp_path), out=str(tmp_path / "out"), seed=0)
    durations = [r["duration_s"] for r in recs.values()]
    assert recs and all(r["sound"] == "speech" for r in recs.values())
    assert min(durations) >= 0.9  # the 0.3 s words were strung into clips of 1-4 s
    assert len(recs) < 31  # strung together, not one clip per word


def test_noise_kinds_and_drum_patterns() -> None:
    rng = np.random.default_rng(0)
    for kind in NOISE_KINDS:
        y = noise(rng, 22050, kind)
        assert y.shape == (22050,) and y.dtype == np.float32 and np.isfinite(y).all()
        assert abs(float(np.abs(y).max()) - 0.9) < 1e-4
    # pink and brown put more energy in the lows than white
    spec = {
        k: np.abs(np.fft.rfft(noise(np.random.default_rng(1), 1 << 15, k))) ** 2
        for k in ("white", "pink", "brown")
    }
    low = {k: s[1:300].sum() / s.sum() for k, s in spec.items()}
    assert low["white"] < low["pink"] < low["brown"]
    with pytest.raises(ValueError, match="unknown noise"):
        noise(rng, 10, "purple")
    ev = drum_pattern(np.random.default_rng(3), range(35, 82))
    assert ev and all(0 <= t < 3.7 and 35 <= k < 82 and 1 <= v <= 127 for t, k, v, _ in ev)
    assert drum_pattern(rng, []) == []
    hits = [one_shot(np.random.default_rng(i), [36, 38, 38, 49]) for i in range(40)]
    assert all(len(h) == 1 and 0 <= h[0][0] <= 0.3 and 40 <= h[0][2] <= 127 for h in hits)
    assert {h[0][1] for h in hits} == {36, 38, 49}
    assert one_shot(rng, []) == []


def test_a_kit_played_as_one_shots_gives_one_hit_per_clip(tmp_path: Path) -> None:
    import soundfile as sf

    from training.others import OtherPlan

    # a one-sample kit: a 0.4 s decaying noise burst on key 36, played by sfizz
    rng = np.random.default_rng(0)
    burst = (rng.standard_normal(17640) * np.exp(-np.arange(17640) / 2000.0)).astype(np.float32) * 0.5
    sf.write(tmp_path / "hit.wav", burst, 44100)
    (tmp_path / "kit.sfz").write_text("<region> sample=hit.wav key=36 loop_mode=one_shot\n")
    entry = (("clips", 5), ("name", "kit_hits"), ("one_shots", True), ("sfz", "kit.sfz"))
    plan = OtherPlan("lock-kit-kit_hits", "drums", "kit", "k", "train", "sfz-drums", entry)
    _, recs = render_other(plan, root=str(tmp_path), out=str(tmp_path / "out"), seed=0)
    assert len(recs) == 5
    for name in recs:
        y, sr = sf.read(tmp_path / "out" / "train" / "others" / f"{name}.wav", dtype="float32")
        frames = np.abs(y[: len(y) // 441 * 441]).reshape(-1, 441).max(axis=1)
        # one onset: the envelope rises once, then only falls (no second hit)
        onsets = np.flatnonzero(frames[1:] > 4 * frames[:-1] + 1e-3)
        assert len(onsets) <= 1, (name, onsets)
        assert len(y) / sr < 1.5  # the hit rang out and the silence after it was trimmed


def test_font_programs_and_kits_render(tmp_path: Path) -> None:
    fonts = corpus.fetch_soundfonts(corpus.default_cache())
    plans = plan_font_others(corpus.SOUNDFONTS, corpus.TEST_FONT, corpus.training_groups())
    picked = {}
    for p in plans:
        if p.source == "fluidr3" and p.sound not in picked:
            picked[p.sound] = p
    assert set(picked) == {*OTHER_PROGRAMS, "drums"}
    for p in picked.values():
        key, recs = render_other(p, root=str(fonts["fluidr3"]), out=str(tmp_path), seed=1, limit=2)
        assert key == p.key and len(recs) == 2, p.key
        for r in recs.values():
            assert r["sound"] == p.sound and 0.1 <= r["duration_s"] <= 4.0
    import json

    (tmp_path / p.split / "others.json").write_text(json.dumps(recs))
    got = load_others(tmp_path / p.split)
    assert [o.name for o in got] == sorted(recs) and all(o.path.is_file() for o in got)


def test_generated_synths_and_noises_for_dev(tmp_path: Path) -> None:
    from training.others import plan_generated_others, synth

    y = synth(np.random.default_rng(2), 22050)
    assert y.shape == (22050,) and np.isfinite(y).all() and abs(float(np.abs(y).max()) - 0.9) < 1e-4
    plans = plan_generated_others()
    assert {(p.sound, p.split, p.source) for p in plans} == {
        ("synth", "dev", "generated"),
        ("noise", "dev", "generated"),
        ("synth", "train", "generated-oscillators"),
    }
    _, recs = render_other(plans[0], root="", out=str(tmp_path), seed=0, limit=3)
    assert len(recs) == 3 and all(r["sound"] == plans[0].sound for r in recs.values())


def test_training_oscillators_are_their_own_generator(tmp_path: Path) -> None:
    """The train split's oscillator tones: every kind finite, peak 0.9, seeded, and made by
    other code than the dev set's synthesizers (a different signal for the same draw)."""
    from training.others import OSCILLATOR_KINDS, oscillators, plan_generated_others, synth

    kinds_seen = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        kinds_seen.add(OSCILLATOR_KINDS[int(np.random.default_rng(seed).integers(len(OSCILLATOR_KINDS)))])
        y = oscillators(rng, 30000)
        assert y.shape == (30000,) and y.dtype == np.float32 and np.isfinite(y).all(), seed
        assert abs(float(np.abs(y).max()) - 0.9) < 1e-4, seed
        spec = np.abs(np.fft.rfft(y))
        assert spec[1:].sum() > 0 and float(np.sqrt(np.mean(y**2))) > 0.01, seed  # not silence
    assert kinds_seen == set(OSCILLATOR_KINDS)
    a = oscillators(np.random.default_rng(7), 22050)
    assert np.array_equal(a, oscillators(np.random.default_rng(7), 22050))
    assert not np.allclose(a, synth(np.random.default_rng(7), 22050), atol=1e-2)
    (train,) = [p for p in plan_generated_others() if p.split == "train"]
    _, recs = render_other(train, root="", out=str(tmp_path), seed=0, limit=2)
    assert len(recs) == 2 and {r["source"] for r in recs.values()} == {"generated-oscillators"}
    assert all((tmp_path / "train" / "others" / f"{n}.wav").is_file() for n in recs)
