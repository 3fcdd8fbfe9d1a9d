"""The multisample reader: sfizz plays SFZ libraries with their own key/velocity mapping; GUS
patches are converted faithfully; musical clips have the planned lengths."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("pysfizz")

from conftest import SR

from training.sfz import Clip, Event, SfzPlayer, pat_to_sfz, patched_sfz, plan_clip, read_pat  # noqa: E402


def _f0(y: np.ndarray, sr: int = SR) -> float:
    """Frequency of the strongest FFT bin (Hann window, parabolic interpolation)."""
    seg = y[: min(len(y), sr)]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    k = int(np.argmax(spec[1:])) + 1
    a, b, c = spec[k - 1], spec[k], spec[k + 1]
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / len(seg)


def _sine(path: Path, hz: float, seconds: float = 2.0, sr: int = 44100, amp: float = 0.5) -> None:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32), sr, subtype="PCM_16")


@pytest.fixture()
def library(tmp_path: Path) -> Path:
    """Two key zones (A3, A4 roots) and two velocity layers (quiet 0.1, loud 0.8) in the lower zone.

    The samples are 0.1 s loops (4,410 frames): shorter than sfizz's preload, so that no
    background file loading is involved (see docs/data.md on long samples under load)."""
    _sine(tmp_path / "a3_soft.wav", 220.0, seconds=0.1, amp=0.1)
    _sine(tmp_path / "a3_loud.wav", 220.0, seconds=0.1, amp=0.8)
    _sine(tmp_path / "a4.wav", 440.0, seconds=0.1, amp=0.5)
    (tmp_path / "lib.sfz").write_text(
        "<group> ampeg_release=0.05 amp_veltrack=0 loop_mode=loop_continuous loop_start=0 loop_end=4409\n"
        "<region> sample=a3_soft.wav lokey=50 hikey=62 pitch_keycenter=57 lovel=1 hivel=63\n"
        "<region> sample=a3_loud.wav lokey=50 hikey=62 pitch_keycenter=57 lovel=64 hivel=127\n"
        "<region> sample=a4.wav lokey=63 hikey=75 pitch_keycenter=69\n"
    )
    return tmp_path / "lib.sfz"


def _note(pitch: int, velocity: int, hold: float = 0.5) -> Clip:
    return Clip("note", (Event(0.0, pitch, velocity, hold),))


def test_sfizz_uses_the_librarys_key_and_velocity_mapping(library: Path) -> None:
    p = SfzPlayer(library, sample_rate=SR)
    assert p.keys == list(range(50, 76))
    # key zones: root notes, and a transposition within a zone
    assert _f0(p.render(_note(57, 100))) == pytest.approx(220.0, rel=0.01)
    assert _f0(p.render(_note(69, 100))) == pytest.approx(440.0, rel=0.01)
    assert _f0(p.render(_note(60, 100))) == pytest.approx(220.0 * 2 ** (3 / 12), rel=0.01)
    # velocity layers: the soft sample below 64, the loud one from 64 (no velocity tracking)
    soft = float(np.abs(p.render(_note(57, 30))).max())
    loud = float(np.abs(p.render(_note(57, 100))).max())
    assert loud / soft == pytest.approx(8.0, rel=0.15)
    # keys outside every region are silent
    assert p.render(_note(90, 100)).size == 0


def test_clip_length_follows_hold_and_release(library: Path) -> None:
    p = SfzPlayer(library, sample_rate=SR)
    for hold in (0.1, 0.3, 1.2):
        y = p.render(_note(57, 100, hold))
        assert hold <= len(y) / SR <= hold + 0.1, (hold, len(y) / SR)
    # a repeated note: silence between the notes
    rep = Clip("repeat", (Event(0.0, 57, 100, 0.2), Event(0.6, 57, 100, 0.2)))
    y = p.render(rep)
    assert len(y) / SR == pytest.approx(0.8, abs=0.1)
    gap = np.abs(y[int(0.35 * SR) : int(0.55 * SR)]).max()
    assert gap < 0.01 * np.abs(y).max()
    # never longer than max_s
    assert len(p.render(_note(57, 100, 9.0), max_s=2.0)) <= 2 * SR


def test_plan_clip_is_seeded_and_musical() -> None:
    keys = list(range(40, 80))
    a = [
        plan_clip(np.random.default_rng([1, i]), pitch=60, velocity=90, keys=keys, cc_ranges={1: (0, 127)})
        for i in range(300)
    ]
    b = [
        plan_clip(np.random.default_rng([1, i]), pitch=60, velocity=90, keys=keys, cc_ranges={1: (0, 127)})
        for i in range(300)
    ]
    assert a == b
    kinds = {c.kind for c in a}
    assert kinds == {"note", "repeat", "phrase"}
    holds = [c.events[0].hold_s for c in a if c.kind == "note"]
    assert min(holds) >= 0.1 and max(holds) <= 4.0 and np.median(holds) < 1.0
    for c in a:
        assert all(e.pitch in keys and 1 <= e.velocity <= 127 for e in c.events)
        assert c.cc and 0 <= c.cc[0][1] <= 127


def _pat_bytes(waves: list[dict]) -> bytes:
    head = b"GF1PATCH110\x00" + b"ID#000002\x00" + b"test".ljust(60, b"\x00")
    head += struct.pack("<BBBHHI", 1, 14, 0, len(waves), 127, 0) + b"\x00" * 36
    inst = struct.pack("<H", 0) + b"inst".ljust(16, b"\x00") + struct.pack("<IB", 0, 1) + b"\x00" * 40
    layer = struct.pack("<BBIB", 0, 0, 0, len(waves)) + b"\x00" * 40
    body = b""
    for w in waves:
        data = (w["y"] * 32767).astype("<i2").tobytes()
        hdr = b"wave".ljust(7, b"\x00") + b"\x00"
        hdr += struct.pack("<IIIH", len(data), w["loop"][0] * 2, w["loop"][1] * 2, w["sr"])
        hdr += struct.pack("<III", int(w["low"] * 1000), int(w["high"] * 1000), int(w["root"] * 1000))
        hdr += struct.pack("<hB", 0, 7) + b"\x3f" * 6 + b"\xf0" * 6 + b"\x00" * 6
        hdr += struct.pack("<B", 1 | 4 | 32) + struct.pack("<HH", 60, 1024) + b"\x00" * 36
        assert len(hdr) == 96
        body += hdr + data
    out = head + inst + layer + body
    assert len(head + inst + layer) == 239
    return out


def test_gus_patch_is_read_and_played_at_its_root(tmp_path: Path) -> None:
    sr = 22050
    t = np.arange(sr) / sr

    def wave(root: float, low: float, high: float, loop: int) -> dict[str, Any]:
        """A sine at its root, looped over ``loop`` samples (a whole number of its periods)."""
        y = 0.5 * np.sin(2 * np.pi * root * t)
        return {"y": y, "sr": sr, "low": low, "high": high, "root": root, "loop": (sr // 2, sr // 2 + loop)}

    # 100 samples = exactly 22 periods of 220 Hz, 50 samples 11 periods of 440 Hz
    waves = [wave(220.0, 100.0, 300.0, 100), wave(440.0, 300.0, 4000.0, 50)]
    pat = tmp_path / "056_Test.pat"
    pat.write_bytes(_pat_bytes(waves))
    got = read_pat(pat)
    assert [round(w.root_hz) for w in got] == [220, 440]
    assert got[0].looping and got[0].sustain and not got[0].pingpong
    assert got[0].loop_start == sr // 2 and np.allclose(got[0].data[:100], waves[0]["y"][:100], atol=1e-4)
    sfz = pat_to_sfz(pat, tmp_path / "conv")
    p = SfzPlayer(sfz, sample_rate=sr)
    assert _f0(p.render(_note(57, 100, 2.5))) == pytest.approx(220.0, rel=0.01)  # A3 from wave 0
    assert _f0(p.render(_note(69, 100, 2.5))) == pytest.approx(440.0, rel=0.01)  # A4 from wave 1
    # sustain loop: a note held past the end of the wave keeps sounding until note-off
    y = p.render(_note(57, 100, 2.5))
    assert len(y) / sr >= 2.5 and np.abs(y[int(2.0 * sr) : int(2.4 * sr)]).max() > 0.1 * np.abs(y).max()
    with pytest.raises(ValueError, match="not a GUS patch"):
        bad = tmp_path / "bad.pat"
        bad.write_bytes(b"RIFF" + b"\x00" * 300)
        read_pat(bad)


def test_patched_sfz_resolves_a_differently_named_sample_folder(tmp_path: Path) -> None:
    (tmp_path / "Samples").mkdir()
    _sine(tmp_path / "Samples" / "C4.wav", 261.63)
    (tmp_path / "orig").mkdir()
    (tmp_path / "orig" / "x.sfz").write_text(
        "<region> sample=samples/C4.wav lokey=55 hikey=65 pitch_keycenter=60\n"
    )
    with pytest.raises(ValueError):
        SfzPlayer(tmp_path / "orig" / "x.sfz", sample_rate=SR)  # samples/ does not exist there
    fixed = patched_sfz(
        tmp_path / "orig" / "x.sfz",
        tmp_path / "work" / "x.sfz",
        sample_dir=tmp_path / "Samples",
        replace={"sample=samples/": "sample="},
    )
    p = SfzPlayer(fixed, sample_rate=SR)
    assert _f0(p.render(_note(60, 100))) == pytest.approx(261.63, rel=0.01)


def test_patched_sfz_inlines_includes_and_drops_a_player_variable(tmp_path: Path) -> None:
    """Shinyguitar's layout: a main file that #includes its parts beside it and sets
    ``default_path=$sample_dir/`` (a variable of Plogue's player) under a second <control>."""
    (tmp_path / "Samples" / "low").mkdir(parents=True)
    _sine(tmp_path / "Samples" / "low" / "C4.wav", 261.63)
    _sine(tmp_path / "Samples" / "low" / "A4.wav", 440.0)
    prog = tmp_path / "Programs"
    (prog / "parts").mkdir(parents=True)
    (prog / "main.sfz").write_text(
        '<control>\ndefault_path=$sample_dir/ \n<global> ampeg_release=0.1\n#include "parts/a.sfz"\n'
    )
    (prog / "parts" / "a.sfz").write_text(
        '<region> sample=low\\C4.wav lokey=55 hikey=65 pitch_keycenter=60\n#include "b.sfz"\n'
    )
    (prog / "parts" / "b.sfz").write_text(
        "<region> sample=low\\A4.wav lokey=66 hikey=75 pitch_keycenter=69\n"
    )
    fixed = patched_sfz(
        prog / "main.sfz",
        tmp_path / "work" / "main.sfz",
        sample_dir=tmp_path / "Samples",
        replace={"<control>\ndefault_path=$sample_dir/ \n": ""},
    )
    text = fixed.read_text()
    assert "#include" not in text and "$sample_dir" not in text and text.count("<region>") == 2
    p = SfzPlayer(fixed, sample_rate=SR)
    assert p.keys[0] == 55 and p.keys[-1] == 75
    assert _f0(p.render(_note(60, 100))) == pytest.approx(261.63, rel=0.01)
    assert _f0(p.render(_note(69, 100))) == pytest.approx(440.0, rel=0.01)
    (prog / "loop.sfz").write_text('#include "loop.sfz"\n')
    with pytest.raises(ValueError, match="nested"):
        patched_sfz(prog / "loop.sfz", tmp_path / "work" / "loop.sfz", sample_dir=tmp_path, replace={})
