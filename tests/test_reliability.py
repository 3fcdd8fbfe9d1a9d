"""Regression tests for the defects of issue 13 (a careless or hostile user), one per row.

Each test names its row; each failed on main before the fix. Row 14 (very short input) is
covered with the inference layer.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import tone

from instrunet_core import DecodeError, InputError
from instrunet_core.audio import load_audio
from instrunet_core.cli import main

SR = 22050


def _wav_bytes(y: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# ---------------------------------------------------------------- rows 1-3: rates and hops
@pytest.mark.parametrize("rate", [1, True, False, 999, 10**9, 44100.5, "44100", float("nan"), -44100])
def test_row1_absurd_array_rates_refused(tiny_model, rate: object) -> None:
    with pytest.raises(InputError, match="array: sample rate"):
        tiny_model.predict(np.full(132300, 0.1, np.float32), sample_rate=rate)


def test_row1_valid_rate_forms_accepted(tiny_model) -> None:
    y = tone(1.0, sr=8000)
    for rate in (8000, 8000.0, np.int64(8000), np.float32(8000)):
        assert tiny_model.predict(y, sample_rate=rate).n_windows == 1


def _with_header_rate(data: bytes, rate: int) -> bytes:
    b = bytearray(data)
    assert b[:4] == b"RIFF" and b[12:16] == b"fmt "
    block_align = struct.unpack("<H", b[32:34])[0]
    b[24:28] = struct.pack("<I", rate)
    b[28:32] = struct.pack("<I", rate * block_align)
    return bytes(b)


@pytest.mark.parametrize("n_bytes", [444, 40_000])
def test_row2_one_hz_header_refused_fast(tmp_path: Path, tiny_model, n_bytes: int) -> None:
    p = tmp_path / "onehz.wav"
    p.write_bytes(_with_header_rate(_wav_bytes(np.zeros((n_bytes - 44) // 2, np.int16)), 1))
    t = time.perf_counter()
    with pytest.raises(DecodeError, match=r"onehz\.wav: the file header says a sample rate of 1 Hz"):
        tiny_model.predict(p)
    assert time.perf_counter() - t < 5.0


@pytest.mark.parametrize("hop", [1e-6, 0.0, -1.0, float("nan"), float("inf"), True, "1.5", 1e300])
def test_row3_absurd_hops_refused(tiny_model, hop: object) -> None:
    with pytest.raises(InputError, match="hop must be"):
        tiny_model.predict(tone(3.0), SR, hop=hop)


def test_row3_cli_hop_is_a_usage_error(tiny_registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "a.wav"
    sf.write(p, tone(3.0), SR)
    with pytest.raises(SystemExit) as e:
        main(["classify", "--hop", "1e-6", str(p)])
    assert e.value.code == 2
    assert "hop must be between" in capsys.readouterr().err


def test_long_array_at_low_rate_resampled_in_bounded_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """An array is resampled block by block: no single resampler call sees more than a block."""
    import soxr

    seen: list[int] = []
    orig = soxr.ResampleStream.resample_chunk

    def spy(self, x, last=False):  # type: ignore[no-untyped-def]
        seen.append(len(x))
        return orig(self, x, last=last)

    monkeypatch.setattr(soxr.ResampleStream, "resample_chunk", spy)
    y = load_audio(np.zeros(1000 * 60, np.int16), 1000)
    assert abs(len(y) - 60 * SR) <= 2
    assert len(seen) >= 6 and max(seen) <= 10 * 1000


# ---------------------------------------------------------------- rows 15-17: decoding
def test_row15_png_renamed_mp3_refused_quietly(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    for ext in ("mp3", "wav", "flac"):
        p = tmp_path / f"picture.{ext}"
        p.write_bytes(png)
        with pytest.raises(DecodeError, match=rf"picture\.{ext}: not an audio file \(the data looks like a PNG image\)"):
            load_audio(p)
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"\x00\x01" * 500)
    with pytest.raises(DecodeError, match=r"junk\.mp3: not an MP3 file"):
        load_audio(junk)
    err = capfd.readouterr().err
    assert "MPEG" not in err and "pipe" not in err


def _pipe_with(data: bytes) -> io.BufferedReader:
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(data)

    threading.Thread(target=feed, daemon=True).start()
    return os.fdopen(r, "rb")


def test_row16_predict_from_pipe(tiny_model) -> None:
    y = tone(3.0)
    ref = tiny_model.predict(y, SR)
    with _pipe_with(_wav_bytes(y)) as pipe:
        assert not pipe.seekable()
        got = tiny_model.predict(pipe)
    assert got.label == ref.label and abs(got.confidence - ref.confidence) < 1e-3


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_row16_fifo_path(tmp_path: Path, tiny_model) -> None:
    fifo = tmp_path / "audio.fifo"
    os.mkfifo(fifo)
    data = _wav_bytes(tone(3.0))

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    assert tiny_model.predict(fifo).n_windows == 2
    t.join(5)


def test_row16_classify_stdin(tiny_registry, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    class FakeStdin:
        buffer = io.BufferedReader(io.BytesIO(_wav_bytes(tone(3.0))))  # type: ignore[arg-type]

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    assert main(["classify", "--json", "-"]) == 0
    import json

    (row,) = json.loads(capsys.readouterr().out)
    assert row["path"] == "-" and row["label"] == "brass"


def test_row17_non_utf8_file_name(tmp_path: Path, tiny_model) -> None:
    if sys.getfilesystemencoding().lower() not in ("utf-8", "utf8"):
        pytest.skip("needs a UTF-8 file system encoding")
    p = os.path.join(os.fsencode(tmp_path), b"bad\xffname.wav")
    with open(p, "wb") as f:
        f.write(_wav_bytes(tone(3.0)))
    name = os.fsdecode(p)  # surrogate-escaped, as Python gives it from argv or listdir
    assert tiny_model.predict(name).label == "brass"
