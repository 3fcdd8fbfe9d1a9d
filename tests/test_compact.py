"""The packaged fast model, ``family-compact``: 2.1.0 (what ``load_model("family-compact")``
loads) learnt bare oscillator tones as "none of the eight" (docs/models.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import instrunet_core as inet

ROOT = Path(__file__).resolve().parents[1]


def _other_share(version: str, windows: np.ndarray) -> float:
    # the runtime's rule: "other" reaches its threshold and beats every family
    from training.openhead import other_answers

    m = inet.load_model("family-compact", version)
    o = m.outputs_windows(windows)
    assert o.other is not None
    return float(other_answers(o.probabilities, o.other, m.other_threshold).mean())


def test_the_fast_model_is_2_1_0_and_keeps_its_earlier_versions(installed_registry: object) -> None:
    assert inet.load_model("family-compact").version == "2.1.0"
    assert {inet.load_model("family-compact", v).version for v in ("1.0.0", "2.0.0")} == {"1.0.0", "2.0.0"}
    notice = ROOT / "instrunet_core" / "models" / "family-compact" / "2.1.0" / "NOTICE"
    assert "Apache" in notice.read_text()  # trained further from weights distilled from YAMNet


def test_synthesizer_tones_from_the_dev_generator_are_answered_other(installed_registry: object) -> None:
    """40 tones of the dev set's generator (never trained on; 2.1.0 trained on another
    generator's oscillators): 2.0.0 called nearly all of them an instrument."""
    from training.others import synth

    n = inet.load_model("family-compact").front_end.window_samples
    windows = np.stack([synth(np.random.default_rng([20261206, i]), n) for i in range(40)])
    before, after = _other_share("2.0.0", windows), _other_share("2.1.0", windows)
    assert before <= 0.1 and after >= 0.3 and after - before >= 0.25, (before, after)


def test_the_bundled_solo_flute_is_a_flute(installed_registry: object) -> None:
    """2.0.0 called it reed; the flute is what ``examples/ground_truth.json`` names."""
    m = inet.load_model("family-compact")
    assert m.predict(ROOT / "examples" / "solo_flute.wav").label == "flute"
