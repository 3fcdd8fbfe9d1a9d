"""The NSynth json/wav loader, on a small split that the test writes itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instrunet_core.labels import FAMILIES
from training.nsynth import FAMILY_NAMES, SOURCE_NAMES, NSynthError, load_audio, load_split, note_str

SR = 16000


def _entry(family: str, source: str, inst: int, pitch: int, velocity: int, note: int) -> dict:
    name = note_str(family, source, inst, pitch, velocity)
    return {
        "note": note,
        "note_str": name,
        "instrument": inst,
        "instrument_str": f"{family}_{source}_{inst:03d}",
        "pitch": pitch,
        "velocity": velocity,
        "sample_rate": SR,
        "qualities": [0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        "qualities_str": ["dark"],
        "instrument_family": FAMILY_NAMES.index(family),
        "instrument_family_str": family,
        "instrument_source": SOURCE_NAMES.index(source),
        "instrument_source_str": source,
    }


def _write_split(root: Path, entries: list[dict], *, audio: bool = True, stereo: str | None = None) -> Path:
    (root / "audio").mkdir(parents=True, exist_ok=True)
    data = {e["note_str"]: e for e in entries}
    (root / "examples.json").write_text(json.dumps(data))
    if audio:
        t = np.arange(SR // 4) / SR
        for e in entries:
            y = 0.5 * np.sin(2 * np.pi * 440 * 2 ** ((e["pitch"] - 69) / 12) * t)
            if e["note_str"] == stereo:
                y = np.stack([y, 0.5 * y], axis=1)
            sf.write(root / "audio" / f"{e['note_str']}.wav", y, SR, subtype="PCM_16")
    return root


@pytest.fixture()
def split(tmp_path: Path) -> Path:
    entries = [
        _entry("guitar", "acoustic", 3, 60, 100, 0),
        _entry("vocal", "acoustic", 7, 64, 75, 1),
        _entry("brass", "acoustic", 1, 55, 127, 2),
        _entry("guitar", "electronic", 4, 60, 100, 3),  # not acoustic: dropped by default
        _entry("bass", "acoustic", 2, 40, 100, 4),  # family the models do not classify
        _entry("organ", "electronic", 5, 60, 50, 5),
    ]
    return _write_split(tmp_path / "valid", entries, stereo=entries[1]["note_str"])


def test_default_filter_keeps_acoustic_model_families(split: Path) -> None:
    notes = load_split(split)
    assert [n.note_str for n in notes] == sorted(
        ["guitar_acoustic_003-060-100", "vocal_acoustic_007-064-075", "brass_acoustic_001-055-127"]
    )
    for n in notes:
        assert n.source_str == "acoustic"
        assert FAMILIES[n.label] == n.family_str
        assert n.path == split / "audio" / f"{n.note_str}.wav"
        assert n.sample_rate == SR
        assert n.qualities_str == ("dark",)


def test_filters_can_be_widened(split: Path) -> None:
    assert len(load_split(split, families=None, sources=None)) == 6
    acoustic_all = load_split(split, families=None)
    assert {n.family_str for n in acoustic_all} == {"guitar", "vocal", "brass", "bass"}
    electronic = load_split(split, families=None, sources=("electronic",))
    assert {n.note_str for n in electronic} == {
        "guitar_electronic_004-060-100",
        "organ_electronic_005-060-050",
    }


def test_note_fields(split: Path) -> None:
    (n,) = [n for n in load_split(split) if n.family_str == "vocal"]
    assert (n.instrument, n.instrument_str, n.pitch, n.velocity, n.note) == (
        7,
        "vocal_acoustic_007",
        64,
        75,
        1,
    )
    assert n.family == FAMILY_NAMES.index("vocal") and n.label == FAMILIES.index("vocal")
    assert n.qualities == (0, 1, 0, 0, 0, 0, 0, 0, 0, 0)


def test_load_audio_mono_float32(split: Path) -> None:
    for n in load_split(split):
        y = load_audio(n)
        assert y.dtype == np.float32 and y.ndim == 1 and y.shape[0] == SR // 4
        # The vocal file is stereo (0.5 and 0.25 amplitude): averaged to mono, peak 0.375.
        expected = 0.375 if n.family_str == "vocal" else 0.5
        assert float(np.abs(y).max()) == pytest.approx(expected, abs=2e-3)


def test_extra_keys_are_kept(tmp_path: Path) -> None:
    e = _entry("reed", "acoustic", 0, 60, 100, 0)
    e["soundfont"] = "fluidr3"
    (n,) = load_split(_write_split(tmp_path / "s", [e]))
    assert n.extra == {"soundfont": "fluidr3"}


def test_missing_examples_json(tmp_path: Path) -> None:
    with pytest.raises(NSynthError, match="examples.json"):
        load_split(tmp_path)


def test_invalid_json_names_file(tmp_path: Path) -> None:
    (tmp_path / "examples.json").write_text("{not json")
    with pytest.raises(NSynthError, match=r"examples\.json.*not valid JSON"):
        load_split(tmp_path)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda e: e.pop("pitch"), "lacks keys"),
        (lambda e: e.update(instrument_family=9), "instrument_family 9 does not match"),
        (lambda e: e.update(instrument_source_str="acustic"), "instrument_source"),
        (lambda e: e.update(note_str="something_else"), "has note_str"),
    ],
)
def test_malformed_entry_names_file_and_note(tmp_path: Path, corrupt, message: str) -> None:
    good = _entry("flute", "acoustic", 0, 72, 100, 0)
    bad = _entry("string", "acoustic", 1, 50, 100, 1)
    corrupt(bad)
    root = tmp_path / "train"
    _write_split(root, [good], audio=True)
    data = json.loads((root / "examples.json").read_text())
    data["string_acoustic_001-050-100"] = bad
    (root / "examples.json").write_text(json.dumps(data))
    with pytest.raises(NSynthError, match=message) as info:
        load_split(root)
    assert str(root / "examples.json") in str(info.value)
    assert "string_acoustic_001-050-100" in str(info.value)


def test_missing_audio(tmp_path: Path) -> None:
    root = _write_split(tmp_path / "test", [_entry("mallet", "acoustic", 2, 70, 100, 0)], audio=False)
    with pytest.raises(NSynthError, match=r"audio file missing") as info:
        load_split(root)
    assert "mallet_acoustic_002-070-100.wav" in str(info.value)
    (n,) = load_split(root, check_audio=False)  # metadata only
    with pytest.raises(NSynthError, match="file not found") as info:
        load_audio(n)
    assert str(n.path) in str(info.value)


def test_dropped_notes_need_no_audio(tmp_path: Path) -> None:
    """Only kept notes are checked for audio (NSynth's non-acoustic notes may be absent)."""
    root = _write_split(tmp_path / "x", [_entry("keyboard", "acoustic", 0, 60, 100, 0)])
    data = json.loads((root / "examples.json").read_text())
    e = _entry("synth_lead", "synthetic", 9, 60, 100, 1)
    data[e["note_str"]] = e
    (root / "examples.json").write_text(json.dumps(data))
    assert [n.family_str for n in load_split(root)] == ["keyboard"]


def test_sample_rate_mismatch(tmp_path: Path) -> None:
    e = _entry("keyboard", "acoustic", 0, 60, 100, 0)
    e["sample_rate"] = 22050
    (n,) = load_split(_write_split(tmp_path / "x", [e]))
    with pytest.raises(NSynthError, match="sample rate 16000 Hz"):
        load_audio(n)


def test_note_str_format() -> None:
    assert note_str("guitar", "acoustic", 10, 66, 100) == "guitar_acoustic_010-066-100"


def test_load_audio_is_the_core_loader(tmp_path: Path) -> None:
    """Training reads a note through ``instrunet_core.audio.load_audio``: the same decoder,
    mixdown and resampler as serving, bit for bit, at the note's rate or another."""
    from instrunet_core.audio import load_audio as core_load_audio

    e = _entry("string", "acoustic", 1, 50, 100, 0)
    root = _write_split(tmp_path / "s", [e])
    (n,) = load_split(root)
    t = np.arange(SR, dtype=np.float64) / SR
    y = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)], axis=1)
    sf.write(n.path, y, SR, subtype="PCM_16")  # stereo, 16 kHz
    native = load_audio(n)
    assert native.shape == (SR,)
    np.testing.assert_array_equal(native, core_load_audio(n.path, target_sr=SR))
    at_22k = load_audio(n, target_sr=22050)
    assert at_22k.shape == (22050,)
    np.testing.assert_array_equal(at_22k, core_load_audio(n.path))
    (n.path).write_bytes(b"not audio at all")
    with pytest.raises(NSynthError, match="cannot decode") as info:
        load_audio(n)
    assert str(n.path) in str(info.value)
