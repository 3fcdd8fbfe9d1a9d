"""Real decoding of generated files and arrays; streaming with bounded blocks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR

from instrunet_core.audio import MP3_SUPPORTED, iter_blocks, load_audio
from instrunet_core.errors import DecodeError, InputError
from instrunet_core.features import DEFAULT_FRONT_END, window_audio
from instrunet_core.inputs import to_mono


def _sig(sr: int, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    y = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([y] * channels, axis=1) if channels > 1 else y


@pytest.mark.parametrize(
    "fmt,subtype,ext",
    [
        ("WAV", "PCM_16", "wav"),
        ("FLAC", "PCM_24", "flac"),
        ("OGG", "VORBIS", "ogg"),
        ("MP3", "MPEG_LAYER_III", "mp3"),
    ],
)
def test_decode_formats(tmp_path: Path, fmt: str, subtype: str, ext: str) -> None:
    if fmt == "MP3" and not MP3_SUPPORTED:
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} cannot write/read MP3 (needs >= 1.1.0)")
    p = tmp_path / f"a.{ext}"
    sf.write(p, _sig(44100, 1.0, 2), 44100, format=fmt, subtype=subtype)
    y = load_audio(p)
    assert y.dtype == np.float32 and y.ndim == 1
    # 1 s at 44.1 kHz → ~22,050 samples (codecs may add a little priming/padding)
    assert abs(y.shape[0] - SR) < 3000
    assert 0.2 < np.sqrt(np.mean(y**2)) < 0.5  # 0.5-amplitude sine: RMS ≈ 0.354


@pytest.mark.parametrize("sr", [8000, 44100, 48000, 96000])
def test_odd_rates_resampled(tmp_path: Path, sr: int) -> None:
    p = tmp_path / "r.wav"
    sf.write(p, _sig(sr, 2.0), sr)
    y = load_audio(p)
    assert abs(y.shape[0] - 2 * SR) <= 2
    # the 440 Hz tone survives: dominant FFT bin at 440 Hz
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * SR / y.shape[0] - 440) < 2


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_channels_mixed_to_mono(tmp_path: Path, channels: int) -> None:
    p = tmp_path / "c.wav"
    data = _sig(SR, 0.5, channels)
    if channels > 1:
        data[:, 1:] = 0.0  # only channel 0 carries signal: mono is the mean
    sf.write(p, data, SR, subtype="FLOAT")
    y = load_audio(p)
    ref = (data if channels == 1 else data[:, 0]) / (1 if channels == 1 else channels)
    np.testing.assert_allclose(y, ref, atol=1e-6)


def test_int_and_float_arrays() -> None:
    f = _sig(SR, 0.2)
    i16 = (f * 32767).astype(np.int16)
    i32 = (f * (2**31 - 1)).astype(np.int32)
    for arr in (i16, i32, f.astype(np.float64), f.astype(np.float32)):
        y = load_audio(arr, SR)
        np.testing.assert_allclose(y, f, atol=1e-4)
    # (channels, n) layout is accepted too
    st = np.stack([f, f])
    np.testing.assert_allclose(to_mono(st), f, atol=1e-6)


def test_array_errors() -> None:
    with pytest.raises(InputError, match="array.*NaN"):
        load_audio(np.array([0.0, np.nan, 0.1]), SR)
    with pytest.raises(InputError, match="array.*infinite"):
        load_audio(np.array([0.0, np.inf]), SR)
    for bad in (0, -8000, None):
        with pytest.raises(InputError, match="array.*sample rate|array.*sample_rate"):
            load_audio(np.zeros(100, np.float32), bad)
    with pytest.raises(InputError, match="array.*shape"):
        load_audio(np.zeros((2, 3, 4), np.float32), SR)
    with pytest.raises(InputError, match="array.*empty"):
        load_audio(np.zeros(0, np.float32), SR)
    with pytest.raises(InputError, match="dtype"):
        load_audio(np.array(["a", "b"]), SR)


def test_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.wav"
    with pytest.raises(DecodeError, match=r"missing\.wav: file not found"):
        load_audio(missing)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match=r"empty\.wav: empty file"):
        load_audio(empty)
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(0, np.float32), SR)
    with pytest.raises(DecodeError, match=r"zero\.wav: no audio frames"):
        load_audio(zero)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(DecodeError, match=r"corrupt\.wav: cannot decode"):
        load_audio(corrupt)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.5] * 100, np.float32), SR, subtype="FLOAT")
    with pytest.raises(DecodeError, match=r"nan\.wav: .*NaN"):
        load_audio(nan)


def test_file_object(tmp_path: Path) -> None:
    buf = io.BytesIO()
    sf.write(buf, _sig(16000, 1.0), 16000, format="WAV")
    buf.seek(0)
    y = load_audio(buf)
    assert abs(y.shape[0] - SR) <= 2


def test_stream_long_file_in_bounded_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 10-minute file is written and read block by block; no read exceeds the block size."""
    sr = 8000
    p = tmp_path / "long.wav"
    block = np.zeros(sr * 10, dtype=np.int16)
    with sf.SoundFile(p, "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for k in range(60):  # 60 × 10 s, written with bounded memory
            block[:] = (1000 * np.sin(np.arange(block.size) * (0.05 + k * 1e-3))).astype(np.int16)
            f.write(block)
    reads: list[tuple[int, int]] = []
    orig = sf.SoundFile.read

    def spy(self, frames=-1, *a, **k):  # type: ignore[no-untyped-def]
        out = orig(self, frames, *a, **k)
        reads.append((frames, len(out)))
        return out

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    fe = DEFAULT_FRONT_END
    hop = 65 * fe.hop_length  # 1.5 s, snapped to whole frames
    n_windows = 0
    starts = []
    for s, w in window_audio(iter_blocks(p, block_seconds=5.0), fe=fe, hop=1.5, batch_size=16):
        assert w.shape[1] == fe.window_samples and w.shape[0] <= 16 and len(s) == len(w)
        n_windows += w.shape[0]
        starts.extend(s.tolist())
    assert reads, "the file must be read with SoundFile.read(frames)"
    assert all(0 < req <= 5 * sr for req, _ in reads)
    assert all(got <= 5 * sr for _, got in reads)
    assert len(reads) >= 600 // 5  # many bounded reads, never one whole-file read
    total = 600 * SR
    expected = 1 + int(np.ceil((total - fe.window_samples) / hop))
    assert n_windows == expected
    # the last window aligned to the end: it starts on the first frame from which it reaches it
    end = int(np.ceil((total - fe.window_samples) / fe.hop_length)) * fe.hop_length
    assert starts == [i * hop for i in range(expected - 1)] + [end]
    assert 0 <= end + fe.window_samples - total < fe.hop_length


def test_windows_cover_short_and_partial() -> None:
    fe = DEFAULT_FRONT_END
    y = np.ones(1000, np.float32) * 0.1
    ((s, w),) = list(window_audio(iter_blocks(y, SR), fe=fe, hop=0.5))
    assert w.shape == (1, fe.window_samples) and s.tolist() == [0]
    assert np.all(w[0, :1000] == np.float32(0.1)) and np.all(w[0, 1000:] == 0)
    y = np.ones(fe.window_samples + 10, np.float32)
    batches = list(window_audio(iter_blocks(y, SR), fe=fe, hop=fe.window_seconds))
    s, w = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    # a full window, then one aligned to the end: from the first frame that reaches it, padded by
    # the 502 samples that frame overshoots (never a window of mostly silence)
    assert s.tolist() == [0, fe.hop_length]
    n = fe.window_samples + 10 - fe.hop_length
    assert np.all(w[0] == 1) and np.all(w[1, :n] == 1) and np.all(w[1, n:] == 0)


def test_iter_blocks_array_resample_lengths() -> None:
    y = np.zeros(48000 * 3, np.float32)
    out = np.concatenate(list(iter_blocks(y, 48000, block_seconds=1.0)))
    assert abs(out.shape[0] - 3 * SR) <= 2


@pytest.mark.parametrize(
    "fmt,subtype",
    [
        ("WAV", "PCM_16"),
        ("WAV", "PCM_24"),
        ("WAV", "PCM_32"),
        ("WAV", "PCM_U8"),
        ("WAV", "FLOAT"),
        ("FLAC", "PCM_16"),
        ("FLAC", "PCM_24"),
        ("FLAC", "PCM_S8"),
    ],
)
def test_integer_files_decode_exactly_as_libsndfile_floats(tmp_path: Path, fmt: str, subtype: str) -> None:
    """Integer files are read as integers (faster) and scaled by us: same samples as libsndfile's floats."""
    rng = np.random.default_rng(1)
    y = np.clip(0.4 * rng.standard_normal((30000, 3)), -1, 1).astype(np.float32)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, y, 22050, format=fmt, subtype=subtype)
    ref = sf.read(path, dtype="float64", always_2d=True)[0].mean(axis=1)
    got = np.concatenate(list(iter_blocks(path, target_sr=22050, block_seconds=0.3)))
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=2e-7)


@pytest.mark.filterwarnings("error")  # no numpy "overflow encountered in cast" either
def test_audit_sources_that_raised_bare_python_errors(tmp_path: Path, tiny_model) -> None:
    import instrunet_core

    wav = tmp_path / "t.wav"
    sf.write(wav, np.zeros(SR, np.float32), SR)
    nul = str(tmp_path / "t\x00.wav")
    for call in (load_audio, tiny_model.predict, instrunet_core.analyze):
        with pytest.raises(InputError, match="t\x00.wav: a path cannot hold a NUL byte"):
            call(nul)
    with open(wav, "rb") as f:
        pass
    for call in (load_audio, tiny_model.predict, instrunet_core.analyze):
        with pytest.raises(InputError, match=r"t\.wav: the file object is closed"):
            call(f)
    # finite float64 beyond float32: the real peak is named, not "NaN or infinite"
    huge = np.full(SR, 1e300)
    with pytest.raises(InputError, match=r"array: samples reach 1e\+300; float audio is expected"):
        tiny_model.predict(huge, SR)
    with pytest.raises(InputError, match=r"samples reach 1e\+300"):
        tiny_model.predict_windows(huge[None, :1000])
    double = tmp_path / "double.wav"
    sf.write(double, huge, SR, subtype="DOUBLE")
    with pytest.raises(DecodeError, match=r"double\.wav: samples reach 1e\+300"):
        load_audio(double)
    # an ordinary DOUBLE file decodes as its float32 copy does
    y = np.sin(np.arange(SR) / 10.0) * 0.5
    sf.write(double, y, SR, subtype="DOUBLE")
    np.testing.assert_allclose(load_audio(double), y.astype(np.float32), atol=1e-7)


def _flac_of_unknown_length(path: Path, y: np.ndarray, sr: int) -> Path:
    """A FLAC whose STREAMINFO leaves the total at 0 ("unknown"), as ffmpeg writes one to a pipe;
    libsndfile then reports 2**63 - 1 frames and fails every seek."""
    sf.write(path, y, sr, subtype="PCM_16")
    b = bytearray(path.read_bytes())
    assert b[:4] == b"fLaC"
    b[21] &= 0xF0  # the 36-bit total: the low 4 bits of byte 21 and bytes 22-25
    b[22:26] = b"\0\0\0\0"
    path.write_bytes(bytes(b))
    assert sf.info(str(path)).frames == 2**63 - 1
    return path


def _cut_flacs(folder: Path, y: np.ndarray, sr: int) -> list[tuple[bool, Path]]:
    """``y`` as two FLACs cut in half: one whose header gives its length, one whose header does
    not (written to a pipe); ``(unknown length, path)`` each."""
    out = []
    for unknown in (False, True):
        f = folder / f"cut{int(unknown)}.flac"
        if unknown:
            _flac_of_unknown_length(f, y, sr)
        else:
            sf.write(f, y, sr, subtype="PCM_16")
        f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
        out.append((unknown, f))
    return out


def test_a_flac_of_unknown_length_is_read_whole(tmp_path: Path) -> None:
    """Such a file was refused ("decoding failed after 0 frames ... the header announces
    9223372036854775807 frames"), and the app called it 209146758205323.7 s long."""
    from instrunet_core.audio import AudioReader, audio_info

    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(44100 * 3) / 44100)).astype(np.float32)
    stereo = np.stack([y, -y], axis=1)
    f = _flac_of_unknown_length(tmp_path / "piped.flac", stereo, 44100)
    for src in (f, io.BytesIO(f.read_bytes())):
        info = audio_info(src)
        assert (info.frames, info.channels, info.duration) == (44100 * 3, 2, 3.0)
    with AudioReader(f) as r:
        got = np.concatenate(list(r.blocks(10000)))
    np.testing.assert_allclose(got, stereo, atol=1 / 32768)
    mono = load_audio(str(f), target_sr=SR)
    assert abs(len(mono) - 3 * SR) <= 1 and np.max(np.abs(mono)) < 0.05  # the channels cancel


def test_a_flac_cut_short_gives_what_decodes_before_the_error(tmp_path: Path) -> None:
    """A FLAC cut short said "decoding failed after 0 frames": the block read failed whole, and
    libsndfile cannot seek back in a FLAC after a decode error to read it again in small steps
    (two audits). Blocks are now read in steps, so what decoded is passed on and counted; for a
    FLAC whose header does not give its length the message says so instead of a count."""
    import re

    from instrunet_core.audio import AudioReader

    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(44100 * 12) / 44100)).astype(np.float32)
    for unknown, f in _cut_flacs(tmp_path, y, 44100):
        got = 0
        with pytest.raises(DecodeError) as e, AudioReader(f) as r:
            for block in r.blocks(44100 * 20):  # one block: the whole file
                got += block.shape[0]
        n = int(re.search(r"decoding failed after (\d+) frames", str(e.value)).group(1))
        assert n == got and 44100 * 3 < n < len(y)  # most of the first half, not 0
        assert ("does not give its length" in str(e.value)) == unknown


@pytest.mark.parametrize("subtype, rate", [("VORBIS", 44100), ("OPUS", 48000)])
def test_an_ogg_cut_short_is_said_not_read_as_a_shorter_file(
    tmp_path: Path, tiny_model, subtype: str, rate: int
) -> None:
    """An Ogg file cut short (a copy or download stopped, a recorder killed) decoded as a shorter
    file without a word: libsndfile counts its length from the pages that are there. A stream
    whose last page lacks the end-of-stream flag, or that stops inside a page, is now said
    wherever it is read: the classifier's damage note (the analysis, its JSON), a warning from
    :class:`AudioReader` and :func:`load_audio`; whole files and other formats say nothing."""
    import re
    import warnings

    import instrunet_core
    from instrunet_core.audio import AudioReader, ogg_ends_whole

    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate * 10) / rate)).astype(np.float32)
    whole = tmp_path / "whole.ogg"
    sf.write(whole, y, rate, format="OGG", subtype=subtype)
    data = whole.read_bytes()
    assert ogg_ends_whole(data) is True and ogg_ends_whole(data + b"TAG" + bytes(125)) is True
    # every cut, at page boundaries too (the last page then lacks the flag), is told
    assert {ogg_ends_whole(data[:k][-2 * 65307 :]) for k in range(60, len(data), 211)} == {False}
    assert ogg_ends_whole(b"RIFF" + bytes(100)) is None and ogg_ends_whole(b"") is None
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        an = instrunet_core.analyze(whole, model=tiny_model, analyzers=False)
        load_audio(whole)
    assert an.damage is None and not w
    msg = re.escape("cut.ogg: the Ogg stream stops before its last page (the file is cut short")
    with pytest.warns(RuntimeWarning, match=msg) as w:
        an = instrunet_core.analyze(cut, model=tiny_model, analyzers=False)
    assert len(w) == 1 and an.damage == str(w[0].message) and 2.0 < an.duration < 8.0
    assert an.to_dict()["damage"] == an.damage
    with pytest.warns(RuntimeWarning, match=msg):
        with AudioReader(cut) as r:
            assert sum(b.shape[0] for b in r.blocks(rate)) > rate
    with pytest.warns(RuntimeWarning, match="<file object>: the Ogg stream stops before its last page"):
        assert load_audio(io.BytesIO(cut.read_bytes()), target_sr=SR).size > SR  # a file object too


def test_a_flac_cut_short_is_classified_on_what_decodes_with_a_warning(tmp_path: Path, tiny_model) -> None:
    """A FLAC cut short was an error after its decoded half had been analysed (the work lost),
    while an MP3 cut short was analysed without a word outside ``analyze``: two policies for one
    kind of damage. Every classifier now uses what decodes and warns, naming the file and where
    decoding stopped; ``damage`` keeps the message (the analysis, its JSON, batch records)."""
    import warnings

    import instrunet_core

    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(44100 * 12) / 44100)).astype(np.float32)
    for unknown, f in _cut_flacs(tmp_path, y, 44100):
        said = "the header does not give its length" if unknown else "the header announces 529200 frames"
        clf = tiny_model.classifier()
        with pytest.warns(
            RuntimeWarning, match=rf"cut{int(unknown)}\.flac: decoding failed after \d+ frames"
        ) as w:
            wins = clf.classify(f)
        assert (
            len(w) == 1 and said in str(w[0].message) and str(w[0].message).endswith("; what decoded is used")
        )
        assert clf.damage == str(w[0].message) and 3.0 < clf.duration < 6.5 and wins
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            an = instrunet_core.analyze(f, model=tiny_model, analyzers=False)
        assert [str(x.message) for x in w] == [clf.damage]  # once, not again by analyze
        assert an.damage == clf.damage and an.to_dict()["damage"] == clf.damage
        assert an.duration == pytest.approx(clf.duration)
        # the same classifier on a whole file: no damage left from before
        good = tmp_path / "good.flac"
        sf.write(good, y[: 44100 * 3], 44100)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            clf.classify(good)
            assert (
                clf.damage is None
                and "damage" not in instrunet_core.analyze(good, model=tiny_model).to_dict()
            )
    # what decodes nothing is still an error, and load_audio (the whole file or nothing) stays strict
    stub = tmp_path / "stub.flac"
    sf.write(stub, y, 44100)
    stub.write_bytes(stub.read_bytes()[:200])
    with pytest.raises(DecodeError):
        tiny_model.classifier().classify(stub)
    with pytest.raises(DecodeError, match="decoding failed after"):
        load_audio(tmp_path / "cut0.flac")


def test_other_containers_named_mp3_are_decoded_and_batch_finds_opus_and_aifc(tmp_path: Path) -> None:
    """A WAV (or FLAC, Ogg) named .mp3 was refused as "not an MP3 file" though libsndfile reads
    it, and batch skipped .opus and .aifc files (a formats audit)."""
    from instrunet_core.batch import collect_files

    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)).astype(np.float32)
    for fmt, name in (("WAV", "a.mp3"), ("FLAC", "b.mp3"), ("OGG", "c.mp3")):
        sf.write(tmp_path / name, y, SR, format=fmt)
        assert abs(len(load_audio(str(tmp_path / name), target_sr=SR)) - SR) <= 1
    (tmp_path / "d.mp3").write_text("notes, not audio: a text file named .mp3")
    with pytest.raises(DecodeError, match="not an MP3 file|not an audio file"):
        load_audio(str(tmp_path / "d.mp3"))
    sf.write(tmp_path / "e.opus", y, 48000, format="OGG", subtype="OPUS")
    sf.write(tmp_path / "f.aifc", y, SR, format="AIFF")
    names = {Path(p).name for p in collect_files(tmp_path)}
    assert {"e.opus", "f.aifc"} <= names


def _unfinished(path: Path, good: Path, *, riff_too: bool = True, tail: bytes = b"") -> Path:
    """``good`` with the data chunk's size (and the RIFF size) left at 0, as a recorder that
    stopped before finishing the file leaves them; ``tail`` appended after the data."""
    import struct

    b = bytearray(good.read_bytes())
    i = b.find(b"data")
    b[i + 4 : i + 8] = struct.pack("<I", 0)
    if riff_too:
        b[4:8] = struct.pack("<I", 0)
    path.write_bytes(bytes(b) + tail)
    return path


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT", "PCM_U8"])
def test_an_unfinished_wav_is_read_to_its_end(tmp_path: Path, subtype: str) -> None:
    """A WAV whose header sizes are 0 (a crashed or piped recording) was refused as "no audio
    frames (0-length audio)"; its samples are read to the end of the file, as ffmpeg and sox do."""
    from instrunet_core.audio import AudioReader, audio_info

    t = np.arange(44100 * 2) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)], axis=1)
    good = tmp_path / "good.wav"
    sf.write(good, stereo, 44100, subtype=subtype)
    bad = _unfinished(tmp_path / "unfinished.wav", good)
    assert sf.info(str(bad)).frames == 0  # what libsndfile makes of it
    inside = io.BytesIO(
        b"\0" * 999 + bad.read_bytes()
    )  # a WAV inside a larger stream, read from its position
    inside.seek(999)
    for src in (bad, io.BytesIO(bad.read_bytes()), inside):
        info = audio_info(src)
        assert (info.frames, info.channels, info.sample_rate, info.format) == (44100 * 2, 2, 44100, "WAV")
    inside.seek(999)
    np.testing.assert_array_equal(load_audio(inside), load_audio(str(good)))
    with AudioReader(bad) as r, AudioReader(good) as g:
        got, want = np.concatenate(list(r.blocks(30000))), np.concatenate(list(g.blocks(30000)))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(load_audio(str(bad)), load_audio(str(good)))
    # a last frame cut in the middle is left out; only the data size at 0 (RIFF size kept) reads the same
    cut = tmp_path / "cut.wav"
    cut.write_bytes(bad.read_bytes()[:-1])
    assert audio_info(cut).frames == 44100 * 2 - 1
    assert audio_info(_unfinished(tmp_path / "data-only.wav", good, riff_too=False)).frames == 44100 * 2


def test_a_wav_whose_data_really_is_empty_is_still_refused(tmp_path: Path) -> None:
    """Nothing after the empty data chunk, or only metadata chunks: no audio, as before."""
    empty = tmp_path / "empty-data.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    list_chunk = b"LIST" + (12).to_bytes(4, "little") + b"INFOISFT" + (0).to_bytes(4, "little")
    meta = _unfinished(tmp_path / "meta.wav", empty, tail=list_chunk)
    for f in (empty, meta):
        with pytest.raises(DecodeError, match=rf"{f.name}: no audio frames \(0-length audio\)"):
            load_audio(f)


def test_a_flac_of_unknown_length_is_decoded_once_by_analyze(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model
) -> None:
    """It was decoded once only to count its length (for the analyzers' expected duration), then
    again to analyse it (a resources audit: a 12-hour piped FLAC paid 45 s for the count): the
    length is left unknown, as a stream's, and the one reading goes to the end."""
    import instrunet_core
    import instrunet_core.audio as audio

    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SR * 4) / SR)).astype(np.float32)
    f = _flac_of_unknown_length(tmp_path / "piped.flac", y, SR)
    decoded = []
    fill = audio._fill
    monkeypatch.setattr(audio, "_fill", lambda sf_, buf: decoded.append(len(out := fill(sf_, buf))) or out)
    a = instrunet_core.analyze(f, model=tiny_model, analyzers=False, refine=False)
    assert a.duration == pytest.approx(4.0) and sum(decoded) == SR * 4


def test_a_sample_rate_given_with_a_file_must_be_its_own(tmp_path: Path, tiny_model) -> None:
    """``analyze("x.wav", 44100)`` on a 32 kHz file ran at 32 kHz without a word: the argument
    was ignored. The file's own rate passes; another is refused before anything is decoded."""
    import instrunet_core
    from instrunet_core.audio import audio_info

    f = tmp_path / "tone.wav"
    sf.write(f, (0.3 * np.sin(2 * np.pi * 440 * np.arange(32000 * 3) / 32000)).astype(np.float32), 32000)
    assert audio_info(f, 32000).sample_rate == 32000 and len(load_audio(f, 32000)) == 3 * SR
    msg = r"sample_rate=44100 was given, but the file's header says 32000 Hz.*for arrays"
    for call in (
        lambda: load_audio(f, 44100),
        lambda: audio_info(io.BytesIO(f.read_bytes()), 44100),
        lambda: instrunet_core.analyze(f, 44100, model=tiny_model, analyzers=False),
        lambda: tiny_model.predict(str(f), 44100),
    ):
        with pytest.raises(InputError, match=msg):
            call()
    with pytest.raises(InputError, match=r"tone\.wav: " + msg):
        load_audio(f, 44100)


def test_analyze_warns_when_decoding_ends_well_before_the_headers_length(tmp_path: Path, tiny_model) -> None:
    """A damaged MP3 ends early without an error: the analysis covered 1.2 s of 8 s without a word."""
    import instrunet_core

    if not MP3_SUPPORTED:  # pragma: no cover - libsndfile without MPEG
        pytest.skip("libsndfile here has no MP3")
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 440 * np.arange(8 * SR) / SR), SR, format="MP3")
    data = bytearray(buf.getvalue())
    rng = np.random.default_rng(1)
    for i in rng.choice(np.arange(2000, len(data)), len(data) // 50, replace=False):
        data[i] = int(rng.integers(0, 256))
    bad = tmp_path / "damaged.mp3"
    bad.write_bytes(bytes(data))
    with pytest.warns(
        RuntimeWarning,
        match=r"damaged\.mp3: the header announces 8\.\d\d s but only \d\.\d\d s could be decoded",
    ):
        a = instrunet_core.analyze(bad, model=tiny_model, analyzers=False)
    assert a.duration < 7.0
    good = tmp_path / "good.mp3"
    good.write_bytes(buf.getvalue())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        instrunet_core.analyze(good, model=tiny_model, analyzers=False)


def test_an_mp3_whose_xing_tag_counts_too_few_frames_is_read_whole(tmp_path: Path, tiny_model) -> None:
    """A Xing/Info tag that counts 5 frames made the decoder stop there: a 10-minute MP3 was
    analysed as 0.1 s, without a word (a resources audit). A count that makes the audio denser
    than MPEG audio can be is not trusted: every frame is read, through every entry point, behind
    an ID3 tag of any size and from a file object at any position; an honest MP3 is read exactly
    as before (the first version of this fix moved a file object under the decoder: every MP3
    read from one was shifted by 78 ms, which a test of durations alone did not see)."""
    import warnings

    import instrunet_core
    from instrunet_core.audio import AudioReader, audio_info

    if not MP3_SUPPORTED:  # pragma: no cover - libsndfile without MPEG
        pytest.skip("libsndfile here has no MP3")
    t = np.arange(20 * SR) / SR
    y = 0.3 * np.sin(2 * np.pi * (200 + 20 * t) * t)  # a chirp: a shift in time shows
    sf.write(tmp_path / "good.mp3", y, SR, format="MP3")
    good = (tmp_path / "good.mp3").read_bytes()
    data = bytearray(good)
    at = data.find(b"Xing") if b"Xing" in data[:4096] else data.find(b"Info")
    assert 0 < at < 4096 and data[at + 7] & 1  # the tag, with a frame count
    data[at + 8 : at + 12] = (5).to_bytes(4, "big")
    lie = bytes(data)
    n = 100_000  # a 100 kB ID3v2 tag (cover art), its size in 7-bit bytes
    tag = (
        b"ID3\x04\x00\x00" + bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F]) + bytes(n)
    )
    for name, blob in (("lie.mp3", lie), ("tagged_lie.mp3", tag + lie), ("tagged_good.mp3", tag + good)):
        (tmp_path / name).write_bytes(blob)
    assert sf.info(str(tmp_path / "lie.mp3")).duration < 0.5  # what the decoder alone believes
    ref = load_audio(tmp_path / "good.mp3")
    assert ref.shape[0] == pytest.approx(20 * SR, abs=10)
    for src in (tmp_path / "tagged_good.mp3", io.BytesIO(good), io.BytesIO(b"junk" + good)):
        if isinstance(src, io.BytesIO) and src.getvalue().startswith(b"junk"):
            src.seek(4)  # audio starts at a file object's position
        assert np.array_equal(load_audio(src), ref)  # an honest MP3: exactly as before
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is damaged: no warning
        for src in (
            tmp_path / "lie.mp3",
            tmp_path / "tagged_lie.mp3",
            io.BytesIO(lie),
            io.BytesIO(b"junk" + lie),
        ):
            if isinstance(src, io.BytesIO) and src.getvalue().startswith(b"junk"):
                src.seek(4)
            got = load_audio(src)
            assert got.shape[0] == pytest.approx(20 * SR, abs=0.05 * SR)
            # the same samples, but for the encoder's delay the decoder no longer trims (a few ms)
            lag = int(np.argmax(np.correlate(got[: SR // 2], ref[:2000], "valid")))
            assert (
                lag < 0.01 * SR
                and np.abs(got[lag : lag + ref.shape[0] - SR] - ref[: ref.shape[0] - SR]).max() < 1e-3
            )
            if isinstance(src, io.BytesIO):
                src.seek(4 if src.getvalue().startswith(b"junk") else 0)
            with AudioReader(src) as r:
                frames = sum(len(b) for b in r.blocks(1 << 16))
                assert r.frames == frames  # what it says is what it yields
            assert frames == pytest.approx(20 * SR, abs=0.05 * SR)
        assert audio_info(tmp_path / "tagged_lie.mp3").duration == pytest.approx(20.0, abs=0.1)
        a = instrunet_core.analyze(io.BytesIO(lie), model=tiny_model, analyzers=False)
        assert a.duration == pytest.approx(20.0, abs=0.1) and a.damage is None
        # (an entry-points audit) a count short of the data but not absurdly so (half), and a VBR
        # stream without its Xing frame (the decoder estimated its length from the first frame's
        # bit rate: 12 s read as 4.9 s): read whole too, the count made right
        from instrunet_core.audio import _mpeg_start

        start = _mpeg_start(io.BytesIO(good), 0)
        assert start is not None and start.tag and start.count
        half = bytearray(good)
        half[start.count_at : start.count_at + 4] = (start.count // 2).to_bytes(4, "big")
        assert np.array_equal(load_audio(io.BytesIO(bytes(half))), ref)  # the delay still trimmed
        untagged = good[: start.first] + good[start.first + start.length :]
        assert sf.info(io.BytesIO(untagged)).duration < 19.0  # what the decoder alone estimates
        for src in (io.BytesIO(untagged), io.BytesIO(tag + untagged)):
            assert load_audio(src).shape[0] == pytest.approx(20 * SR, abs=0.05 * SR)
    # a file object at a position past other data: a FLAC and a tagged MP3 (absolute offsets)
    flac = io.BytesIO()
    sf.write(flac, y, SR, format="FLAC")
    for data in (flac.getvalue(), tag + good):
        src = io.BytesIO(b"x" * 777 + data)
        src.seek(777)
        assert load_audio(src).shape[0] == pytest.approx(20 * SR, abs=10)


def test_an_mp3_count_a_little_short_and_one_without_a_count_beside_tags_read_whole(
    tmp_path: Path, tiny_model
) -> None:
    """A codec audit: a Xing count short by less than 2 % (+2 frames) was trusted (a 5-minute
    file lost 5.7 s, its last event with it, without a word); an MP3 without a Xing frame (an
    encode to a pipe) behind a cover picture in an ID3v2 tag, or before one in an APE tag, was
    announced from its size (79 s for 60) and called cut short (a `damage` note; the web app's
    limit refused it)."""
    import warnings

    import instrunet_core
    from instrunet_core.audio import _mpeg_start, _mpeg_tags_end, _mpeg_walk, audio_info

    if not MP3_SUPPORTED:  # pragma: no cover - libsndfile without MPEG
        pytest.skip("libsndfile here has no MP3")
    t = np.arange(20 * SR) / SR
    y = 0.3 * np.sin(2 * np.pi * (200 + 20 * t) * t)
    sf.write(tmp_path / "good.mp3", y, SR, format="MP3")
    good = (tmp_path / "good.mp3").read_bytes()
    ref = load_audio(tmp_path / "good.mp3")
    start = _mpeg_start(io.BytesIO(good), 0)
    assert start is not None and start.tag and start.count
    short = bytearray(good)
    short[start.count_at : start.count_at + 4] = (start.count - start.count // 67).to_bytes(4, "big")  # 1.5 %
    untagged = good[: start.first] + good[start.first + start.length :]
    n = 300_000  # a cover picture
    id3 = (
        b"ID3\x04\x00\x00" + bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F]) + bytes(n)
    )
    items = bytes(n)  # an APEv2 tag with its header and footer: the size counts items and footer
    size = (len(items) + 32).to_bytes(4, "little")
    ape = (
        b"APETAGEX"
        + (2000).to_bytes(4, "little")
        + size
        + (1).to_bytes(4, "little")
        + (0xA0000000).to_bytes(4, "little")
        + bytes(8)
    )
    ape_tag = ape + items + ape[:20] + (0x80000000).to_bytes(4, "little") + bytes(8)
    id3v1 = b"TAG" + bytes(125)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is damaged: no warning
        assert np.array_equal(load_audio(io.BytesIO(bytes(short))), ref)  # the delay still trimmed
        for blob in (untagged, id3 + untagged, untagged + ape_tag, id3 + untagged + ape_tag + id3v1):
            (tmp_path / "x.mp3").write_bytes(blob)
            got = load_audio(tmp_path / "x.mp3")
            assert got.shape[0] == pytest.approx(20 * SR, abs=0.05 * SR)
            assert audio_info(tmp_path / "x.mp3").duration == pytest.approx(got.shape[0] / SR, abs=0.01)
            a = instrunet_core.analyze(tmp_path / "x.mp3", model=tiny_model, analyzers=False)
            assert a.damage is None and a.duration == pytest.approx(20.0, abs=0.05)
    # (a review) an honest CBR file without the tag reads as it always did (no Xing frame put in:
    # it would make the decoder trim its own delay, moving every such file's start); a zeroed APE
    # footer ends the look at the tags (its size 0 never moved on: a hang)
    from instrunet_core.audio import _mpeg_fix

    cbr = (bytes([0xFF, 0xFB, 0x90, 0xC0]) + bytes(413)) * 500  # 500 silent frames: 128 kbps, 44.1 kHz
    assert _mpeg_fix(io.BytesIO(cbr), 0) is None and load_audio(io.BytesIO(cbr)).shape == (500 * 1152 // 2,)
    fix = _mpeg_fix(io.BytesIO(id3 + cbr), 0)  # behind a cover picture the estimate is 47 % off
    assert fix is not None and fix[0] == "insert"
    import threading

    zeroed = untagged + b"APETAGEX" + bytes(24)
    answer: list[bool] = []
    t = threading.Thread(
        target=lambda: answer.append(_mpeg_tags_end(io.BytesIO(zeroed), len(untagged), len(zeroed)))
    )
    t.start()
    t.join(10)
    assert answer == [False]
    # frames that stop at damage (not at the end, nor at tags) are not taken for the whole file
    damaged = untagged[: len(untagged) // 2] + b"\x00" * 4096 + untagged[len(untagged) // 2 :]

    src = io.BytesIO(damaged)
    frames, stop = _mpeg_walk(src, 0)
    assert frames < start.count * 0.6 and stop < len(damaged) and not _mpeg_tags_end(src, stop, len(damaged))
    src = io.BytesIO(untagged + ape_tag + id3v1)
    frames, stop = _mpeg_walk(src, 0)
    assert frames == start.count and stop == len(untagged) and _mpeg_tags_end(src, stop, len(src.getvalue()))


def _wav_header(
    *, rate: int = 22050, channels: int = 1, bits: int = 16, align: int | None = None, data: bytes = b""
) -> bytes:
    import struct

    align = channels * ((bits + 7) // 8) if align is None else align
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * align, align, bits)
    body = b"WAVE" + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_audit2_hostile_headers_and_streams(tmp_path: Path, tiny_model) -> None:
    """A hostile-input audit (2026-12-06): a link to /dev/zero was read into memory (1.1 GB)
    before it was refused, as if it were audio; one sample at 192 kHz was answered "silence";
    a WAV whose bits per sample contradict its frame size was read as noise without a word;
    a header rate of 0 Hz said libsndfile's "SF_INFO struct incomplete"; millions of tiny chunks
    after an empty data chunk were walked one by one; block_seconds=nan raised numpy's error;
    a header announcing 1e14 s overflowed the analyzers' default time limit."""
    import os
    import struct
    import warnings

    from instrunet_core._analyzer_threads import MAX_LIMIT_SECONDS, Limit

    zero = tmp_path / "zero.wav"
    os.symlink("/dev/zero", zero)
    with pytest.raises(
        DecodeError, match=r"zero\.wav: not an audio file \(its first 1024 KiB hold no audio header\)"
    ):
        load_audio(zero)  # refused from its first MiB (it read 1 GiB into memory first)

    one = tmp_path / "one.wav"
    sf.write(one, np.array([0.5], np.float32), 192000)
    with pytest.raises(DecodeError, match="too short to analyse: resampled from 192000 Hz to 22050 Hz"):
        tiny_model.predict(str(one))
    with pytest.raises(InputError, match="too short to analyse"):
        tiny_model.predict(np.array([0.5], np.float32), 192000)

    tone16 = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR) * 32767).astype("<i2").tobytes()
    odd = tmp_path / "odd.wav"
    odd.write_bytes(_wav_header(bits=8, align=2, data=tone16))
    with pytest.warns(
        RuntimeWarning,
        match=r"the WAV header contradicts itself: 8 bits per sample x 1 channel\(s\) make 1 bytes a frame, but it says 2",
    ):
        load_audio(odd)
    fine = tmp_path / "fine.wav"
    fine.write_bytes(_wav_header(data=tone16))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        load_audio(fine)

    zero_rate = tmp_path / "rate0.wav"
    zero_rate.write_bytes(_wav_header(rate=0, data=tone16))
    with pytest.raises(DecodeError, match="the header's sample rate or channel count is invalid"):
        load_audio(zero_rate)

    chunks = tmp_path / "chunks.wav"
    head = _wav_header()
    chunks.write_bytes(
        head[:4] + struct.pack("<I", 0) + head[8:] + (b"junk" + struct.pack("<I", 0)) * 200_000
    )
    with pytest.raises(DecodeError, match="no audio frames"):
        load_audio(chunks)  # taken for metadata after 4,096 chunks, not walked to the end

    with pytest.raises(InputError, match="block_seconds must be a finite number of seconds, got nan"):
        list(iter_blocks(fine, block_seconds=float("nan")))
    assert Limit().seconds(1e14) == MAX_LIMIT_SECONDS


def test_audit2_a_header_that_counts_too_little_is_not_where_decoding_stops(tmp_path: Path) -> None:
    """A hostile-input audit: a 60 s FLAC whose STREAMINFO said 1 s was read as 1 s without a
    word (the label changed); a WAV whose data size stopped 2 s before its samples dropped them
    silently. The FLAC is read whole (its last frames counted); the WAV's reader is warned."""
    import struct
    import warnings

    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * SR) / SR)).astype(np.float32)
    for sub in ("PCM_16", "PCM_24"):
        buf = io.BytesIO()
        sf.write(buf, np.stack([y, 0.5 * y], axis=1), SR, format="FLAC", subtype=sub)
        data = bytearray(buf.getvalue())
        packed = int.from_bytes(data[18:26], "big")
        data[18:26] = ((packed >> 36 << 36) | SR // 2).to_bytes(8, "big")  # "0.5 s"
        short = tmp_path / f"short_{sub}.flac"
        short.write_bytes(bytes(data))
        got = load_audio(short)
        assert got.shape == (3 * SR,) and abs(got[-SR:]).max() > 0.2
        assert load_audio(io.BytesIO(bytes(data))).shape == (3 * SR,)  # a stream too

    buf = io.BytesIO()
    sf.write(buf, y, SR, format="WAV", subtype="PCM_16")
    wav = bytearray(buf.getvalue())
    at = wav.find(b"data")
    wav[at + 4 : at + 8] = struct.pack("<I", SR * 2)  # 1 s of 3
    with pytest.warns(
        RuntimeWarning, match=r"the header's data size says 1\.00 s, but 2\.00 s more of data follow it"
    ):
        assert load_audio(io.BytesIO(bytes(wav))).shape == (SR,)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        load_audio(io.BytesIO(buf.getvalue()))  # a whole file: nothing to say


def test_rf64_aiff_and_caf_data_sizes_short_of_their_samples_are_said_or_read_whole() -> None:
    """A codec audit: the notice for a data size that stops before the samples (a header last
    updated before the recording ended) was for RIFF WAV only: an RF64 (long broadcast and field
    recordings), AIFF or CAF file lost its last seconds without a word; and one whose size was
    never written (0) read as no audio, where a WAV's samples are read to the end."""
    import struct
    import warnings

    from instrunet_core.audio import audio_info

    t = np.arange(3 * SR) / SR
    y = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    y[-SR // 4 :] = 0.6  # something at the end that a cut loses

    def sized(fmt: str, endian: str = "FILE") -> tuple[bytearray, int, str]:
        buf = io.BytesIO()
        sf.write(buf, y, SR, format=fmt, subtype="PCM_16", endian=endian)
        data = bytearray(buf.getvalue())
        if fmt == "RF64":
            at = data.find(b"ds64") + 8 + 8  # riffSize, then dataSize (64-bit)
            return data, at, "<Q"
        if fmt == "AIFF":
            at = data.find(b"SSND") + 4
            return data, at, ">I"
        at = data.find(b"data", 8) + 4  # CAF: a 64-bit size, an edit count in it
        return data, at, ">q"

    def size_of(fmt: str, frames: int) -> int:
        return frames * 2 + {"RF64": 0, "AIFF": 8, "CAF": 4}[fmt]

    for fmt, endian in (("RF64", "FILE"), ("AIFF", "FILE"), ("AIFF", "LITTLE"), ("CAF", "FILE")):
        data, at, pack = sized(fmt, endian)
        n = struct.calcsize(pack)
        data[at : at + n] = struct.pack(pack, size_of(fmt, SR))  # 1 s of 3
        with pytest.warns(
            RuntimeWarning, match=r"the header's data size says 1\.00 s, but 2\.00 s more of data follow it"
        ):
            assert load_audio(io.BytesIO(bytes(data))).shape == (SR,)
        if fmt == "CAF":
            continue  # (a CAF's size -1 means "to the end": libsndfile reads that itself)
        data[at : at + n] = struct.pack(pack, size_of(fmt, 0))  # never written: read to the end
        got = load_audio(io.BytesIO(bytes(data)))
        assert got.shape == (3 * SR,) and np.allclose(got[-100:], 0.6, atol=1e-3), (fmt, endian)
        assert audio_info(io.BytesIO(bytes(data))).duration == pytest.approx(3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for fmt in ("RF64", "AIFF", "CAF"):  # whole files: nothing to say
            assert load_audio(io.BytesIO(bytes(sized(fmt)[0]))).shape == (3 * SR,)


def test_an_aiff_rate_that_is_no_number_is_said_as_it_is(tmp_path: Path) -> None:
    """libsndfile clamps an AIFF's 80-bit rate: NaN and infinity were reported as 67,108,864 Hz."""
    import re

    buf = io.BytesIO()
    sf.write(buf, np.full(4410, 0.1, np.float32), 44100, format="AIFF", subtype="PCM_16")
    data = bytearray(buf.getvalue())
    at = data.find(b"COMM") + 16  # channels, frames, bits, then the rate
    for ext, said in (
        (b"\x7f\xff\xc0" + bytes(7), "the AIFF header's sample rate is not a number (NaN)"),
        (b"\x7f\xff\x80" + bytes(7), "the AIFF header's sample rate is infinite"),
        (bytes(10), "the AIFF header's sample rate is zero or negative"),
    ):
        data[at : at + 10] = ext
        path = tmp_path / "odd.aiff"
        path.write_bytes(bytes(data))
        with pytest.raises(DecodeError, match=r"odd\.aiff: " + re.escape(said)):
            load_audio(path)


def test_channels_that_cancel_in_the_mono_mix_are_said(tmp_path: Path) -> None:
    """A condition audit (2026-12-06): a full-scale stereo file whose right channel is the left
    inverted was "silence", confidence 1, without a word (the mean of the channels is zero)."""
    import warnings

    from instrunet_core.audio import load_audio

    t = np.arange(3 * 44100) / 44100
    left = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for y in (np.stack([left, -left], axis=1), np.stack([left, -0.999 * left], axis=1)):
        path = tmp_path / "inverted.wav"
        sf.write(path, y, 44100, subtype="PCM_16")
        for source, sr in ((str(path), None), (y, 44100)):
            with pytest.warns(RuntimeWarning, match=r"its channels cancel when mixed to mono \(the mix is "):
                load_audio(source, sr)
    with warnings.catch_warnings():  # one silent channel, a mono file, digital silence: nothing to say
        warnings.simplefilter("error")
        load_audio(np.stack([left, np.zeros_like(left)], axis=1), 44100)
        load_audio(left, 44100)
        load_audio(np.zeros((44100, 2), np.float32), 44100)


def test_an_intact_ogg_read_in_short_reads_is_not_called_cut(tmp_path: Path) -> None:
    """The end check read the file's tail with one ``read()``; a stream that gives fewer bytes
    than asked (as a file object may) made an intact file "cut short" (a review). ``count_until``
    is checked like any length (it was not)."""
    import warnings

    from instrunet_core.audio import audio_info

    class ShortReads(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            return super().read(1000 if n is None or n < 0 else min(n, 1000))

    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(44100) / 44100)).astype(np.float32)
    f = tmp_path / "long.ogg"
    with sf.SoundFile(f, "w", 44100, 1, format="OGG", subtype="VORBIS") as out:
        for _ in range(30):  # in blocks: libsndfile's Vorbis encoder crashes on one long write
            out.write(y)
    assert f.stat().st_size > 10_000  # the tail is read in many short reads
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_audio(ShortReads(f.read_bytes()), target_sr=SR).size > 29 * SR
    for bad in (-1, 0, float("nan")):
        with pytest.raises(InputError, match="count_until"):
            audio_info(f, count_until=bad)
    assert audio_info(f, count_until=1e308).duration == 30.0  # no overflow (a second review)
    piped = _flac_of_unknown_length(tmp_path / "piped.flac", y, 44100)
    assert audio_info(piped, count_until=1e308).duration == 1.0  # counted whole, no overflow

    class NoneNow(ShortReads):  # a raw stream may answer a read with None: nothing to give now
        calls = 0

        def read(self, n: int | None = -1) -> bytes | None:  # type: ignore[override]
            self.calls += 1
            return None if self.calls == 3 else super().read(n)

    from instrunet_core.audio import _ogg_unfinished

    assert _ogg_unfinished(NoneNow(f.read_bytes()), "x.ogg", 0) is None  # not told: not "cut short"
