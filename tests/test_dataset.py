"""Example builder: notes reshaped like music, real libraries drawn on purpose."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import soundfile as sf
from conftest import SR, write_nsynth_note

from instrunet_core.labels import FAMILIES
from training.dataset import ExampleSpec, fragment, is_real, make_examples, shape_note, split_notes


def test_shape_note_lengths_and_onset() -> None:
    t = np.arange(4 * SR) / SR
    y = (0.5 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    other = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    lengths = []
    for seed in range(200):
        z = shape_note(np.random.default_rng(seed), y, SR, [other])
        assert 0 < len(z) <= 4 * SR and np.all(np.isfinite(z))
        assert abs(z[:200]).max() > 0  # still starts at the onset
        assert abs(z[-50:]).max() < 0.05  # ends in a release, not a cut
        lengths.append(len(z) / SR)
    assert min(lengths) < 0.4 and max(lengths) > 2.0 and np.median(lengths) < 1.5


def _tiny_corpus(root: Path) -> None:
    split = root / "train"
    ex = {}
    for i, (fam, real) in enumerate([("reed", False), ("reed", True), ("guitar", False)]):
        y = np.full(SR, 0.1 * (i + 1), np.float32)
        ex |= write_nsynth_note(split, i, fam, y, **({"library": "lib"} if real else {}))
    (split / "examples.json").write_text(json.dumps(ex))


def test_real_prob_draws_the_real_library(tmp_path: Path) -> None:
    _tiny_corpus(tmp_path)
    notes = split_notes(tmp_path, "train")
    assert [is_real(n) for n in notes].count(True) == 1
    reed = FAMILIES.index("reed")

    def real_share(p: float) -> float:
        ex = make_examples(notes, ExampleSpec("train", 400, 0, real_prob=p), workers=1, progress=False)
        Y, names = ex.Y, ex.names
        picked = [nm[0] for nm, y in zip(names, Y, strict=True) if y[reed]]
        return sum(nm.startswith("reed_acoustic_001") for nm in picked) / len(picked)

    assert real_share(1.0) == 1.0
    assert real_share(0.0) == 0.0 or 0.3 < real_share(0.0) < 0.7  # p=0: instruments drawn uniformly
    assert 0.1 < real_share(0.3) < 0.5


def test_audible_judges_parts_against_the_mix() -> None:
    from training.dataset import audible

    t = np.arange(3 * SR) / SR
    loud = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    ten_below = (0.5 * 10 ** (-10 / 20) * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    thirty_below = (0.5 * 10 ** (-30 / 20) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    assert audible([loud, ten_below, thirty_below], sr=SR).tolist() == [True, True, False]
    blip = np.zeros_like(loud)
    blip[: int(0.05 * SR)] = 0.5  # 50 ms: too short to count as playing in the window
    assert audible([blip], sr=SR).tolist() == [False]
    later = np.zeros_like(loud)
    later[2 * SR :] = loud[2 * SR :]  # enters for the last second, alone then: audible
    assert audible([np.where(t < 1.5, loud, 0).astype(np.float32), later], sr=SR).tolist() == [True, True]


def _tiny_others(root: Path, split: str = "train") -> None:
    folder = root / split / "others"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    recs = {}
    for i, sound in enumerate(("drums", "speech")):
        name = f"other_x-{sound}-{i:03d}"
        sf.write(folder / f"{name}.wav", (0.3 * rng.standard_normal(2 * SR)).astype(np.float32), SR)
        recs[name] = {
            "name": name,
            "sound": sound,
            "source": "x",
            "sample_group": "x",
            "split": split,
            "duration_s": 2.0,
        }
    (root / split / "others.json").write_text(json.dumps(recs))


def test_other_examples_and_ensembles(tmp_path: Path) -> None:
    from training.dataset import OTHER, TARGETS
    from training.others import load_others

    _tiny_corpus(tmp_path)
    _tiny_others(tmp_path)
    notes, others = split_notes(tmp_path, "train"), load_others(tmp_path / "train")
    assert TARGETS[OTHER] == "other" and len(others) == 2
    ex = make_examples(
        notes,
        ExampleSpec("train", 300, 1, other_prob=0.3, ensemble_prob=0.5),
        workers=1,
        progress=False,
        others=others,
    )
    is_other = ex.Y[:, OTHER] == 1
    assert 0.2 < is_other.mean() < 0.4
    assert not ex.Y[is_other, :OTHER].any()  # "other" means no family plays
    assert ex.Y[~is_other, :OTHER].any(1).all()  # otherwise at least one family is labelled
    picked_noise = [nm for nm, o in zip(ex.names, is_other, strict=True) if o and "noise" in nm]
    assert picked_noise, "generated noise is among the other examples (noise_share)"
    assert (ex.Y[~is_other, :OTHER].sum(1) >= 2).any()  # ensembles label several families
    # the sweep over other clips takes each clip once, at its start
    sweep = make_examples(
        notes,
        ExampleSpec("train", 10, 2, balanced=False, other_prob=1.0, random_crop=False),
        workers=1,
        progress=False,
        others=others,
    )
    assert [n[0] for n in sweep.names] == [o.name for o in others] and (sweep.Y[:, OTHER] == 1).all()


def test_other_under_an_instrument_keeps_the_audible_family(tmp_path: Path) -> None:
    from training.dataset import OTHER

    _tiny_corpus(tmp_path)
    _tiny_others(tmp_path)
    notes = split_notes(tmp_path, "train")
    from training.others import load_others

    ex = make_examples(
        notes,
        ExampleSpec("train", 200, 3, other_under_prob=1.0),
        workers=1,
        progress=False,
        others=load_others(tmp_path / "train"),
    )
    # other sound is mixed 3-20 dB under every example: the family stays audible
    assert ex.Y[:, :OTHER].any(1).all() and not ex.Y[:, OTHER].any()
    assert all(len(n) == 2 for n in ex.names)


def test_old_specs_draw_what_they_always_drew(tmp_path: Path) -> None:
    """New options left off, a spec makes the same examples whatever the worker count; and the
    waveforms kept with keep_audio are the windows the features were computed from."""
    from instrunet_core.features import batch_features

    _tiny_corpus(tmp_path)
    notes = split_notes(tmp_path, "train")
    spec = ExampleSpec("train", 300, 5, mix_prob=0.4, music_prob=0.5, pre_silence_prob=0.3, keep_audio=True)
    a = make_examples(notes, spec, workers=1, progress=False)
    b = make_examples(notes, spec, workers=2, progress=False)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.Y, b.Y)
    assert a.W is not None and a.W.dtype == np.int16
    again = batch_features(a.W[:4].astype(np.float32) / 32767.0).astype(np.float16)
    assert np.abs(again.astype(np.float32) - a.X[:4].astype(np.float32)).max() < 0.02


def _one_instrument(root: Path, pitches: dict[int, float]) -> None:
    """A train split of one string instrument: a sine per pitch (``pitch -> Hz``)."""
    split = root / "train"
    ex = {}
    t = np.arange(SR) / SR
    for i, (pitch, hz) in enumerate(sorted(pitches.items())):
        entry = write_nsynth_note(split, i, "string", (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32))
        ((old, e),) = entry.items()
        name = f"string_acoustic_000-{pitch:03d}-100"
        (split / "audio" / f"{old}.wav").rename(split / "audio" / f"{name}.wav")
        ex[name] = {
            **e,
            "note_str": name,
            "instrument": 0,
            "instrument_str": "string_acoustic_000",
            "pitch": pitch,
        }
    (split / "examples.json").write_text(json.dumps(ex))


def test_chords_sound_other_notes_of_the_same_instrument(tmp_path: Path) -> None:
    """With chord_prob a note is struck with one or two more of its instrument's notes (a third,
    fourth, fifth, sixth, octave or second away) and keeps its one family; without it nothing
    changes, cache key included."""
    hz = {p: 440.0 * 2 ** ((p - 69) / 12) for p in range(48, 73)}  # every semitone of two octaves
    _one_instrument(tmp_path, hz)
    notes = split_notes(tmp_path, "train")
    string = FAMILIES.index("string")

    def tones(spec: ExampleSpec) -> list[int]:
        ex = make_examples(notes, spec, workers=1, progress=False)
        assert ex.W is not None and (ex.Y[:, string] == 1).all() and ex.Y.sum(1).max() == 1
        counts = []
        for w in ex.W.astype(np.float64):
            mag = np.abs(np.fft.rfft(w[: SR // 2]))
            f = np.fft.rfftfreq(SR // 2, 1 / SR)
            peak = mag.max()
            counts.append(sum(mag[np.abs(f - h) < 2].max() > 0.2 * peak for h in hz.values()))
        return counts

    base = ExampleSpec("train", 40, 3, keep_audio=True, random_crop=False)
    assert max(tones(base)) == 1
    chords = tones(dataclasses.replace(base, chord_prob=1.0))
    # at the range's edges some intervals fall outside it: that note then sounds with fewer
    assert min(chords) >= 1 and max(chords) == 3 and sum(c >= 2 for c in chords) >= 30
    assert (
        base.key()
        == dataclasses.replace(base, chord_prob=0.0).key()
        != dataclasses.replace(base, chord_prob=0.5).key()
    )


def test_fragments_are_sounding_stretches_with_silence_around() -> None:
    """fragment_prob cuts an other clip to one or two of its sounding stretches (a word, a hit):
    gaps under 80 ms stay inside one stretch, each stretch is at most 1.2 s, silence (nothing
    else of the clip) between two; a silent clip comes back as it was; the cache key changes
    only when the option is on."""

    # three "words" of 0.3 s, 0.5 s (with a 40 ms gap inside) and 2 s, 0.5 s of silence apart
    def tone(s: float) -> np.ndarray:
        return (0.5 * np.sin(2 * np.pi * 220 * np.arange(int(s * SR)) / SR)).astype(np.float32)

    gap = np.zeros(SR // 2, np.float32)
    y = np.concatenate([gap, tone(0.3), gap, tone(0.23), np.zeros(int(0.04 * SR), np.float32), tone(0.23)])
    y = np.concatenate([y, gap, tone(2.0), gap])
    lengths = set()
    for seed in range(60):
        z = fragment(np.random.default_rng(seed), y, SR)
        assert z.dtype == np.float32 and np.all(np.isfinite(z))
        loud = np.abs(z) > 0.01
        runs = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
        # zero crossings make short quiet runs inside a tone: count stretches split by >= 0.1 s
        starts = [a for i, a in enumerate(runs[::2]) if i == 0 or a - runs[1::2][i - 1] > SR // 10]
        assert 1 <= len(starts) <= 2
        assert len(z) <= 2 * 1.2 * SR + 0.6 * SR + 2
        lengths.add(round(len(z) / SR, 1) if len(starts) == 1 else None)
    assert {0.3, 0.5, 1.2} <= lengths  # each word whole (the gapped one too), the long one cut
    silent = np.zeros(SR, np.float32)
    assert fragment(np.random.default_rng(0), silent, SR) is silent
    base = ExampleSpec("train", 10, 3)
    assert base.key() == dataclasses.replace(base, fragment_prob=0.0).key()
    assert base.key() != dataclasses.replace(base, fragment_prob=0.5).key()
