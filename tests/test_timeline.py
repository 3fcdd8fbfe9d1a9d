"""Timeline, silence handling and presence ranges with a tiny real model."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, tone

import instrunet_core
from instrunet_core.errors import InputError
from instrunet_core.timeline import Detection, activity, merge_ranges


def test_silence_is_silence(tiny_model: instrunet_core.Model) -> None:
    for y in (np.zeros(SR * 7, np.float32), np.full(SR * 4, 1e-5, np.float32)):  # -100 dBFS
        an = instrunet_core.analyze(y, SR, model=tiny_model)
        assert (an.label, an.confidence, an.instruments) == ("silence", 1.0, [])
        assert all(s.silent for s in an.timeline)
        assert all(v == 0.0 for s in an.timeline for v in s.probabilities.values())
        d = an.to_dict()
        assert d["label"] == "silence" and d["silent"] is True


def test_segments_cover_file_and_presence_ranges(tiny_model: instrunet_core.Model) -> None:
    # (the gap ends 0.2 s after a window's end: no window holds just a few ms of tone)
    y = np.concatenate([tone(6.0), np.zeros(int(SR * 6.2), np.float32), tone(6.0)])
    an = instrunet_core.analyze(y, SR, model=tiny_model, hop=1.5, smoothing=1)
    tl = an.timeline
    assert tl[0].start == 0.0 and tl[-1].end == pytest.approx(18.2, abs=1e-3)
    assert all(b.start <= a.end for a, b in zip(tl, tl[1:], strict=False))  # no gaps
    # the hop is snapped to whole STFT frames: 1.5 s -> 65 x 512 samples = 1.5093 s
    assert an.settings["hop"] == pytest.approx(65 * 512 / SR)
    # every hop, the last window aligned to the end (from the first frame that reaches it)
    end = int(np.ceil((len(y) - 65024) / 512)) * 512 / SR
    assert [s.start for s in tl] == pytest.approx([65 * 512 / SR * i for i in range(len(tl) - 1)] + [end])
    assert any(s.silent for s in tl) and not tl[0].silent
    assert an.label == "brass"
    (brass,) = an.instruments
    assert brass.label == "brass" and brass.presence == 1.0  # every non-silent window
    assert len(brass.ranges) == 2  # the tone, a silent gap, the tone again
    (a0, a1), (b0, b1) = brass.ranges
    assert a0 == 0.0 and a1 <= 9.0 and b0 >= 6.0 and b1 == pytest.approx(18.2, abs=1e-3)
    assert 0 < brass.intensity <= brass.max_probability <= 1
    # quieter audio gives lower intensity but the same detection
    an_q = instrunet_core.analyze(y * 0.05, SR, model=tiny_model, hop=1.5, smoothing=1)
    assert an_q.instruments[0].intensity == pytest.approx(brass.intensity, rel=0.05)  # relative loudness


def test_thresholds_and_smoothing(tiny_model: instrunet_core.Model) -> None:
    y = tone(9.0)
    an = instrunet_core.analyze(y, SR, model=tiny_model, thresholds={"brass": 0.99})
    assert an.instruments == [] and an.label == "brass"  # overall label stays, nothing "present"
    an = instrunet_core.analyze(y, SR, model=tiny_model, thresholds={"flute": 0.15}, smoothing=5)
    assert {i.label for i in an.instruments} == {"brass", "flute"}
    with pytest.raises(InputError, match="unknown label 'tuba'"):
        instrunet_core.analyze(y, SR, model=tiny_model, thresholds={"tuba": 0.3})
    with pytest.raises(InputError, match="hop must be"):
        instrunet_core.analyze(y, SR, model=tiny_model, hop=0)
    with pytest.raises(InputError, match="sample_rate is required"):
        instrunet_core.analyze(y, model=tiny_model)


def test_smoothing_is_a_moving_mean_in_seconds_and_merge() -> None:
    # one label whose window probability steps from 0 to 1 at 10 s, windows every 0.5 s
    step = 512 / SR
    centres = np.arange(0.25, 20.0, 0.5)
    p = (centres >= 10.0).astype(np.float32)[:, None]
    level = np.full(int(20.0 / step), -20.0, np.float32)
    kw = {"step": step, "duration": 20.0, "labels": ("x",), "thresholds": {"x": 0.5}}
    for smoothing in (0.0, 2.0, 4.0):
        act = activity(
            centres, p, np.zeros(len(centres), bool), level, detection=Detection(smoothing=smoothing), **kw
        )
        t = act.times + step / 2
        # the moving mean spreads the step over `smoothing` seconds, symmetric about 10 s
        ramp = (t > 10.0 - smoothing / 2 + 0.3) & (t < 10.0 + smoothing / 2 - 0.3)
        assert np.all((act.probability[ramp, 0] > 0.0) & (act.probability[ramp, 0] < 1.0)) or smoothing == 0
        assert np.all(act.probability[t < 9.75 - smoothing / 2, 0] == 0.0)
        assert np.all(act.probability[t > 10.25 + smoothing / 2, 0] == 1.0)
        (rng,) = act.ranges("x")  # the threshold 0.5 is crossed at the step whatever the smoothing
        assert rng[0] == pytest.approx(10.0, abs=0.3) and rng[1] == pytest.approx(20.0, abs=step)
    assert merge_ranges([(3, 5), (0, 1), (0.5, 2), (5, 6)]) == [[0, 2], [3, 6]]


def test_analyze_path_and_file_object(tiny_model: instrunet_core.Model, tmp_path: Path) -> None:
    p = tmp_path / "t.flac"
    sf.write(p, np.stack([tone(4.0, 48000)] * 2, axis=1), 48000)
    an = instrunet_core.analyze(p, model=tiny_model)
    assert an.source == str(p) and an.label == "brass" and an.duration == pytest.approx(4.0, abs=1e-3)
    buf = io.BytesIO(p.read_bytes())
    an2 = instrunet_core.analyze(buf, model=tiny_model)
    assert an2.prediction == an.prediction
    d = an.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) >= {"label", "confidence", "probabilities", "timeline", "instruments", "extras", "duration"}
    assert set(d["timeline"][0]) == {"start", "end", "probabilities", "rms_db", "silent"}


def test_answers_other_is_one_rule_for_values_and_arrays() -> None:
    from instrunet_core.timeline import answers_other

    assert bool(answers_other(0.9, 0.5, 0.8)) and not bool(answers_other(0.7, 0.5, 0.8))
    assert not bool(answers_other(0.9, 0.95, 0.8))  # a family more probable still wins
    assert bool(answers_other(0.8, 0.5, 0.8))  # at the threshold counts
    got = answers_other(np.array([0.9, 0.7, 0.9]), np.array([0.5, 0.5, 0.95]), 0.8)
    assert got.tolist() == [True, False, False]


def _veto_case(other_level: float, other_veto: float, *, seconds: float = 4.0) -> list[list[float]]:
    """One label at 0.9 for 20 s (windows every 0.5 s, no smoothing); "other" at ``other_level``
    from 8 s for ``seconds``, its threshold 0.8. Returns the label's ranges."""
    step = 512 / SR
    centres = np.arange(0.25, 20.0, 0.5)
    p = np.full((len(centres), 1), 0.9, np.float32)
    other = np.where((centres >= 8.0) & (centres < 8.0 + seconds), other_level, 0.1).astype(np.float32)
    level = np.full(int(20.0 / step), -20.0, np.float32)
    act = activity(
        centres,
        p,
        np.zeros(len(centres), bool),
        level,
        step=step,
        duration=20.0,
        labels=("x",),
        thresholds={"x": 0.5},
        detection=Detection(smoothing=0.0, other_veto=other_veto),
        other=other,
        other_threshold=0.8,
    )
    assert act.ranges("x") == act._ranges(act.presence_at("x", 0.5))  # presence_at decides alike
    return act.ranges("x")


def test_no_label_where_other_is_the_answer_with_the_veto_probability() -> None:
    # "other" at 0.99 beats the label's 0.9 for 4 s (windows centred 8.25-11.75 s, the curve
    # between centres linear): the label's range is cut where it is above 0.93 and 0.9
    (a, b), (c, d) = _veto_case(0.99, 0.93)
    assert b == pytest.approx(8.2, abs=0.05) and c == pytest.approx(11.8, abs=0.05)
    assert a == 0.0 and d == pytest.approx(20.0, abs=0.03)
    # below the veto probability (0.92 < 0.93), turned off (1), or not beating the label: untouched
    for level, veto in ((0.92, 0.93), (0.99, 1.0), (0.85, 0.8)):
        ((a, b),) = _veto_case(level, veto)
        assert a == 0.0 and b == pytest.approx(20.0, abs=0.03), (level, veto)
    # a win shorter than min_duration (1 s) is bridged like any other gap
    ((a, b),) = _veto_case(0.99, 0.93, seconds=0.5)
    assert a == 0.0 and b == pytest.approx(20.0, abs=0.03)
    with pytest.raises(InputError, match="other_veto must be a probability"):
        Detection(other_veto=1.5)


def test_a_sound_shorter_than_min_duration_counts_when_the_label_holds_over_all_of_it(
    tiny_model: instrunet_core.Model,
) -> None:
    low = {"brass": 0.3}  # the tiny model gives a 0.5 s tone's padded window brass 0.39
    # a 0.5 s one-shot: its label holds over the whole sound, all the evidence there is
    an = instrunet_core.analyze(tone(0.5), SR, model=tiny_model, thresholds=low)
    (brass,) = an.instruments
    ((a, b),) = brass.ranges
    assert brass.label == "brass" and a == 0.0 and b == pytest.approx(0.5, abs=0.03)
    # two of them 2 s apart (the silence between them ends each sound): two ranges
    y = np.concatenate([tone(0.5), np.zeros(2 * SR, np.float32), tone(0.5)])
    (brass,) = instrunet_core.analyze(y, SR, model=tiny_model, thresholds=low).instruments
    assert np.allclose(brass.ranges, [[0.0, 0.5], [2.5, 3.0]], atol=0.03)
    # where the label does not hold, nothing; shorter min_duration, the same range
    assert (
        instrunet_core.analyze(tone(0.5), SR, model=tiny_model, thresholds={"brass": 0.99}).instruments == []
    )
    (brass,) = instrunet_core.analyze(
        tone(0.5), SR, model=tiny_model, thresholds=low, min_duration=0.2
    ).instruments
    assert np.allclose(brass.ranges, [[0.0, 0.5]], atol=0.03)


def test_a_click_answered_other_lists_no_family(installed_registry: object) -> None:
    """A full-scale click in silence: the default answers "other" 0.997 there, and the time axis
    listed guitar anyway (the short sound's one point, vetoed by "other", was bridged back from
    the silence around it). A short sound is decided on its own points."""
    y = np.zeros(3 * SR, np.float32)
    y[SR] = 1.0
    an = instrunet_core.analyze(y, SR, analyzers=False)
    assert an.label == "other" and an.low_evidence
    assert an.instruments == [] and an.other_ranges()


def test_a_presence_inside_a_longer_sound_that_sounds_for_less_than_min_duration_is_dropped() -> None:
    """A timeline audit (2026-12-06): noise at 2-8 s whose "other" veto cut the middle of a
    label's curve left that label 0.7 s and 0.56 s at the noise's ends, because the silence
    before and after the noise (where the curve, carried out of it, held) counted towards
    ``min_duration`` before the ranges were trimmed to the sound."""
    step = 512 / SR
    centres = np.arange(0.25, 12.0, 0.5)
    p = np.where(centres < 9.0, 0.9, 0.0).astype(np.float32)[:, None]  # high over the silence too
    other = np.where((centres > 2.2) & (centres < 7.8), 0.99, 0.1).astype(np.float32)
    t = (np.arange(int(12.0 / step)) + 0.5) * step
    level = np.where((t >= 2.0) & (t < 8.0), -20.0, -120.0).astype(np.float32)
    kw: dict[str, Any] = {"step": step, "duration": 12.0, "labels": ("x",), "thresholds": {"x": 0.5}}
    act = activity(
        centres,
        p,
        np.zeros(len(centres), bool),
        level,
        detection=Detection(smoothing=0.0, other_veto=0.93),
        other=other,
        other_threshold=0.8,
        **kw,
    )
    assert act.ranges("other") and act.ranges("x") == []  # was [[2.0, 2.6], [7.4, 8.0]]
    # the same curve over a sound shorter than min_duration is still that sound's answer (a one-shot)
    short = np.where((t >= 2.0) & (t < 2.6), -20.0, -120.0).astype(np.float32)
    act = activity(centres, p, np.zeros(len(centres), bool), short, detection=Detection(smoothing=0.0), **kw)
    ((a, b),) = act.ranges("x")
    assert a == pytest.approx(2.0, abs=0.03) and b == pytest.approx(2.6, abs=0.03)


def _three_labels(c: float, detection: Detection, *, thresholds: dict[str, float] | None = None) -> Any:
    """10 s of steady sound: labels a and b lead at 0.6 and 0.5, c behind them at ``c``."""
    step = 512 / SR
    n = int(10.0 / step)
    centres = np.arange(0.5, 10.0, 0.5)
    probs = np.tile(np.array([0.6, 0.5, c], np.float32), (centres.size, 1))
    return activity(
        centres,
        probs,
        np.zeros(centres.size, bool),
        np.full(n, -20.0, np.float32),
        step=step,
        duration=10.0,
        labels=("a", "b", "c"),
        thresholds=thresholds or {"a": 0.3, "b": 0.3, "c": 0.3},
        detection=detection,
    )


def test_a_label_behind_the_leading_ones_needs_its_margin_above_its_threshold() -> None:
    two = Detection(leading=2, margins={"c": 0.05})
    assert two.margins == (("c", 0.05),) and two.margin("c") == 0.05 and two.margin("a") == 0.0
    assert two.to_dict()["margins"] == {"c": 0.05} and two.to_dict()["leading"] == 2

    def found(act: Any) -> list[str]:
        return [lab for j, lab in enumerate(act.labels) if act.active[:, j].any()]

    # c (0.32) holds its threshold (0.3) but is third: it needs 0.35 there
    act = _three_labels(0.32, two)
    assert found(act) == ["a", "b"]
    assert found(_three_labels(0.36, two)) == ["a", "b", "c"]
    # among the leading three, with the rule off (leading 0), or without a margin: its threshold alone
    for det in (
        Detection(leading=3, margins={"c": 0.05}),
        Detection(margins={"c": 0.05}),
        Detection(leading=2),
    ):
        assert found(_three_labels(0.32, det)) == ["a", "b", "c"], det
    # an overridden threshold keeps the label's margin: at 0.25 it needs 0.30 behind the others
    assert act.presence_at("c", 0.25).any() and not act.presence_at("c", 0.3).any()
    assert found(_three_labels(0.32, two, thresholds={"a": 0.3, "b": 0.3, "c": 0.25})) == ["a", "b", "c"]
    # one leading label: b (0.5) behind a needs 0.55, c 0.35
    assert found(_three_labels(0.32, Detection(leading=1, margins={"b": 0.25, "c": 0.05}))) == ["a"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"leading": -1}, "leading must be a count"),
        ({"leading": True}, "leading must be a count"),
        ({"leading": 1.5}, "leading must be a count"),
        ({"margins": {"a": 1.0}}, "margins must map labels"),
        ({"margins": {"a": -0.1}}, "margins must map labels"),
        ({"margins": {"a": float("nan")}}, "margins must map labels"),
        ({"margins": {3: 0.1}}, "margins must map labels"),
        ({"margins": ("a",)}, "margins must map labels"),
    ],
)
def test_leading_and_margins_are_checked(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        Detection(**kwargs)


def test_a_leading_count_of_every_label_leaves_no_margin_and_says_none() -> None:
    from instrunet_core.analysis import measures_for

    # every label leads: no margin applies, as with the rule off
    act = _three_labels(0.32, Detection(leading=3, margins={"c": 0.05}))
    assert act.active[:, 2].any()
    assert Detection(margins={"c": 0.05}).to_dict()["margins"] == {}  # off: none recorded
    labels = ("a", "b", "c")
    for k in (0, 3, 1000):
        assert (
            "more probable" not in measures_for(labels, {"leading": k, "margins": {"c": 0.05}})["threshold"]
        )
    assert (
        "Where two others are more probable"
        in measures_for(labels, {"leading": 2, "margins": {"c": 0.05}})["threshold"]
    )
