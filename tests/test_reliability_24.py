"""Regression tests for issue 24 (reliability, second sweep: threads, process_file, resources,
full disks, the app), one or more per row of the issue's table.

Each test names its row. Row 18 (the condition analyzer's memory) belongs to the condition
issue; rows 2 and the design-review items that issue 25 had already fixed keep a test here so
that they stay fixed.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SR, ModelPlugin, tone

from instrunet_core import Classifier, errors


# ---------------------------------------------------------------- row 1: one Classifier, two threads
class _GatedFile(io.BytesIO):
    """A WAV in memory whose reads wait for ``go`` once ``entered`` is set: a classify() that is
    certainly in progress while another thread calls in."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.name = "gated.wav"
        self.entered = threading.Event()
        self.go = threading.Event()

    def readinto(self, buf: Any) -> int:  # type: ignore[override]
        if self.tell() > 1_000_000:  # the second 20-second block: classify() is well under way
            self.entered.set()
            assert self.go.wait(30)
        return super().readinto(buf)


def _wav(y: np.ndarray, sr: int = SR) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def test_row1_second_thread_feeding_a_classifier_is_refused(tiny_model) -> None:
    y = tone(30.0, amp=0.3)
    src = _GatedFile(_wav(y))
    clf = Classifier(tiny_model)
    got: dict[str, Any] = {}

    def first() -> None:
        got["windows"] = clf.classify(src)

    t = threading.Thread(target=first, name="first")
    t.start()
    assert src.entered.wait(30)
    try:
        for call in (lambda: clf.process(y[:4096], SR), clf.flush, clf.reset, lambda: clf.classify(y, SR)):
            with pytest.raises(
                errors.ConcurrentUseError, match=r"Classifier\.\w+: called by thread .* 'first'"
            ):
                call()
        # a reader waits for the feeding call instead of reading half a stream
        reader = concurrent.futures.ThreadPoolExecutor(1)
        pending = reader.submit(clf.prediction)
    finally:
        src.go.set()
    t.join(30)
    pred = pending.result(30)
    reader.shutdown()
    alone = Classifier(tiny_model).classify(y, SR)
    assert [w.probabilities.tolist() for w in got["windows"]] == [w.probabilities.tolist() for w in alone]
    assert pred.n_windows == len(alone)


def test_row1_two_threads_two_classifiers_and_handoffs_agree(tiny_model) -> None:
    """The rule's other side: one classifier per thread works, and calls that follow each other
    from different threads (an executor) are one stream."""
    ys = [tone(9.0, freq=f, amp=0.3) for f in (220.0, 440.0, 880.0, 1760.0)]
    want = [[w.probabilities.tolist() for w in Classifier(tiny_model).classify(y, SR)] for y in ys]
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        got = list(
            ex.map(lambda y: [w.probabilities.tolist() for w in Classifier(tiny_model).classify(y, SR)], ys)
        )
        assert got == want
        clf = Classifier(tiny_model)
        wins = []
        for i in range(0, len(ys[0]), 8192):  # each block on whichever pool thread is free
            wins += ex.submit(clf.process, ys[0][i : i + 8192], SR).result()
        wins += ex.submit(clf.flush).result()
    assert [w.probabilities.tolist() for w in wins] == want[0]


class _Slow:
    """An array-like whose conversion waits for ``go``: the adapter is inside a call meanwhile."""

    def __init__(self) -> None:
        self.entered, self.go = threading.Event(), threading.Event()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        self.entered.set()
        assert self.go.wait(30)
        return tone(1.0, amp=0.3)


def test_row1_adapters_follow_the_same_rule(tiny_model) -> None:
    pytest.importorskip("pedalboard")
    from instrunet_pedalboard import StreamTagger, Tagger

    for adapter in (Tagger(tiny_model), StreamTagger(tiny_model)):
        slow = _Slow()
        call = adapter.feed if isinstance(adapter, StreamTagger) else adapter
        t = threading.Thread(target=call, args=(slow, SR), name="audio")
        t.start()
        assert slow.entered.wait(30)
        try:
            with pytest.raises(errors.ConcurrentUseError, match=f"{type(adapter).__name__}.* thread 'audio'"):
                call(tone(1.0), SR)
        finally:
            slow.go.set()
        t.join(30)
        assert not t.is_alive()


# ---------------------------------------------------------------- row 4: bounded thread counts
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["classify", "--threads", "100000", "x.wav"], "must be an int"),
        (["classify", "--workers", "100000", "x.wav"], "must be an int"),
        (["classify", "--threads", "-1", "x.wav"], "must be an int"),
        (["analyze", "--workers", "0", "x.wav"], "must be an int"),
        (["batch", "d", "--out", "r.jsonl", "--threads", "1e9"], "must be an int"),
        # row 20: a bad --smoothing is a usage error too (exit 2), not a failed analysis (exit 1);
        # it is seconds since issue 22, as --min-duration is
        (["analyze", "--smoothing", "-1", "x.wav"], "smoothing must be in [0, 600] seconds"),
        (["analyze", "--min-duration", "nan", "x.wav"], "min-duration must be in [0, 600] seconds"),
        (["analyze", "--other-veto", "1.5", "x.wav"], "other-veto must be in [0, 1], got '1.5'"),
        (["analyze", "--other-veto", "high", "x.wav"], "other-veto must be a probability, got 'high'"),
    ],
)
def test_row4_thread_counts_bounded_on_the_command_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from instrunet_core.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_row4_thread_counts_bounded_in_the_api(tiny_model_dir) -> None:
    from instrunet_core import InputError, RuntimeOptions, load_model

    with pytest.raises(InputError, match=r"intra_op_threads must be an int from 0 to 256 .*, got 100000"):
        load_model(tiny_model_dir, intra_op_threads=100_000)
    with pytest.raises(InputError, match="inter_op_threads must be an int from 0 to 256"):
        RuntimeOptions(inter_op_threads=10**40)
    with pytest.raises(InputError, match="workers must be an int from 1 to 256"):
        Classifier(tiny_model_dir, workers=100_000)
    assert Classifier(tiny_model_dir, workers=256).workers == 256  # the bound itself is allowed


@pytest.mark.parametrize(
    "args", [["--hop", "-1"], ["--hop", "nan"], ["--workers", "0"], ["--batch-size", "x"]]
)
def test_design_review_ray_options_checked_when_parsed(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    cli = pytest.importorskip("instrunet_ray.cli")
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["d", "--out", "o.jsonl", *args])
    assert e.value.code == 2
    assert "instrunet-ray: error: argument" in capsys.readouterr().err


# ---------------------------------------------------------------- row 5: manifest values bounded
def _edit_manifest(d: Path, text_edit: Any) -> None:
    p = d / "manifest.json"
    p.write_text(text_edit(p.read_text()))


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda t: t.replace('"macro_f1": 0.5', '"macro_f1": ' + "9" * 5000), "integer of 5000 digits"),
        (lambda t: t.replace('"macro_f1": 0.5', '"macro_f1": ' + "9" * 200), "integer of 200 digits"),
        (lambda t: t.replace('"macro_f1": 0.5', '"macro_f1": NaN'), "NaN is not a JSON number"),
        (lambda t: t.replace('"macro_f1": 0.5', '"macro_f1": 1e999'), "a number is inf"),
    ],
)
def test_row5_huge_or_non_finite_manifest_numbers(tiny_model_dir: Path, edit: Any, says: str) -> None:
    from instrunet_core import ModelError, load_model

    _edit_manifest(tiny_model_dir, edit)
    with pytest.raises(ModelError, match=f"manifest.json: .*{says}"):
        load_model(tiny_model_dir)


def test_row5_huge_numbers_in_a_parsed_manifest(tiny_model_dir: Path) -> None:
    """validate_manifest gets dicts from code too (the exporter, plugins): bounded before use."""
    from instrunet_core import ModelError
    from instrunet_core.manifest import validate_manifest

    base = json.loads((tiny_model_dir / "manifest.json").read_text())
    for key, value in [("thresholds", {"brass": 10**400}), ("metrics", {"x": -(10**5000)})]:
        with pytest.raises(ModelError, match="m.json: invalid manifest: an integer of"):
            validate_manifest({**base, key: value}, where="m.json")
    with pytest.raises(ModelError, match="m.json: invalid manifest: a number is inf"):
        validate_manifest({**base, "parity": {"max_abs_diff": float("inf")}}, where="m.json")


def test_row5_one_broken_manifest_keeps_the_plugins_other_models(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from instrunet_core.manifest import seal_manifest
    from instrunet_core.registry import build_registry

    good = tmp_path / "more" / "good" / "1.0.0"
    shutil.copytree(tiny_model_dir, good)
    _edit_manifest(good, lambda t: t.replace('"name": "tiny"', '"name": "good"'))
    import json

    (good / "manifest.json").write_text(
        json.dumps(seal_manifest(json.loads((good / "manifest.json").read_text())))
    )
    _edit_manifest(tiny_model_dir, lambda t: t.replace('"macro_f1": 0.5', '"macro_f1": ' + "9" * 5000))
    reg = build_registry(extra_plugins=[("two", ModelPlugin(tiny_model_dir, good, default=False))])
    by_name = {e.name: e for e in reg.models}
    assert by_name["good"].error is None and by_name["good"].manifest is not None
    assert "integer of 5000 digits" in str(by_name["tiny"].error)
    assert next(p for p in reg.plugins if p.name == "two").error is None


# ---------------------------------------------------------------- rows 6, 7, 13: outputs that cannot be written
def _write_wav(p: Path, y: np.ndarray, sr: int = SR) -> Path:
    import soundfile as sf

    with open(p, "wb") as f:  # by file object: soundfile cannot encode a name that is not UTF-8
        sf.write(f, y, sr, format="WAV", subtype="PCM_16")
    return p


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    """A working folder holding ``in/t.wav`` (4 s of tone)."""
    (tmp_path / "in").mkdir()
    _write_wav(tmp_path / "in" / "t.wav", tone(4.0))
    return tmp_path


def _cli(argv: list[str], *, model_dir: Path, timeout: float = 120, **kw: Any) -> Any:
    """``instrunet ARGV`` in a child process (file descriptors of its own), the tiny model
    registered, no installed plugins."""
    import subprocess

    from conftest import cli_child

    cmd, env = cli_child(model_dir)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([*cmd, *argv], env=env, text=True, timeout=timeout, **kw)


COMMANDS = [
    ["classify", "--json", "{wav}"],
    ["classify", "{wav}"],
    ["analyze", "{wav}", "--json", "-"],
    ["analyze", "{wav}"],
    ["models"],
    ["models", "--json"],
    ["plugins", "--json"],
    ["plugins"],
    ["--version"],
]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_row6_stdout_full(argv: list[str], wav: Path, tiny_model_dir: Path) -> None:
    w = str(wav / "in" / "t.wav")
    with open("/dev/full", "w") as full:
        r = _cli([a.format(wav=w) for a in argv], model_dir=tiny_model_dir, stdout=full)
    assert r.returncode == 1
    assert r.stderr == "instrunet: error: -: cannot write to stdout: No space left on device\n"


@pytest.mark.parametrize("argv", [*COMMANDS[:4], ["analyze", "{wav}", "--json", "{out}"]], ids=" ".join)
def test_row13_stdout_closed(argv: list[str], wav: Path, tiny_model_dir: Path) -> None:
    import os

    w, out = str(wav / "in" / "t.wav"), wav / "out.json"
    r = _cli(
        [a.format(wav=w, out=out) for a in argv], model_dir=tiny_model_dir, preexec_fn=lambda: os.close(1)
    )
    assert r.returncode == 1
    assert r.stderr == "instrunet: error: -: cannot write to stdout: it is closed\n"
    if "{out}" in argv:  # the file is written before the summary, whole, and nothing else went into it
        from instrunet_core.output import ANALYSIS_SCHEMA

        assert json.loads(out.read_text())["schema"] == ANALYSIS_SCHEMA


def _fsize_limited(limit: int) -> Any:
    def set_limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return set_limit


def _lines(p: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in p.read_bytes().split(b"\n") if line]


def test_row7_batch_onto_a_full_disk_then_resumed(wav: Path, tiny_model_dir: Path) -> None:
    """A full disk mid-record (RLIMIT_FSIZE: writes past the limit fail with EFBIG, as on a full
    disk): one error line, no traceback, every line of the results still a record; after
    "freeing space" the rerun completes it, each file once."""
    folder, out = wav / "in", wav / "r.jsonl"
    for i in range(3):
        _write_wav(folder / f"x{i}.wav", tone(3.0, freq=300.0 + 100 * i))
    r = _cli(["batch", str(folder), "--out", str(out)], model_dir=tiny_model_dir)
    assert r.returncode == 0, r.stderr
    size = out.stat().st_size
    first = _lines(out)
    for i in range(3, 6):
        _write_wav(folder / f"x{i}.wav", tone(3.0, freq=300.0 + 100 * i))
    r = _cli(
        ["batch", str(folder), "--out", str(out)],
        model_dir=tiny_model_dir,
        preexec_fn=_fsize_limited(size + 200),
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("instrunet: error:")]
    assert errors == [
        f"instrunet: error: {out}: cannot write: File too large; the results so far are kept, rerun to resume"
    ]
    assert out.stat().st_size == size and _lines(out) == first  # the torn record was rolled back
    r = _cli(["batch", str(folder), "--out", str(out)], model_dir=tiny_model_dir)
    assert r.returncode == 0, r.stderr
    recs = _lines(out)  # every line parses
    assert len(recs) == 7 and len({rec["path"] for rec in recs}) == 7


def test_row7_torn_last_line_cut_on_resume(wav: Path, tiny_model_dir: Path) -> None:
    """A run killed mid-line leaves a torn record: the next run cuts it off and redoes its file."""
    folder, out = wav / "in", wav / "r.jsonl"
    r = _cli(["batch", str(folder), "--out", str(out)], model_dir=tiny_model_dir)
    assert r.returncode == 0, r.stderr
    whole = out.read_bytes()
    out.write_bytes(whole + whole[: len(whole) // 2])  # as if a second record had been cut short
    _write_wav(folder / "y.wav", tone(3.0))
    r = _cli(["batch", str(folder), "--out", str(out)], model_dir=tiny_model_dir)
    assert r.returncode == 0, r.stderr
    assert [rec["path"].rsplit("/", 1)[1] for rec in _lines(out)] == ["t.wav", "y.wav"]


@pytest.mark.parametrize(
    "content",
    [
        b"keep me\nlast line, no newline",  # notes: the last line was cut before
        b"[1, 2, 3]\n",  # JSON, but not records
        b'{"path": "/x.wav", "label": "brass"}\n[1, 2, 3]',  # a record, then a last line that is no object
        b"fLaC\x00\x00\x00\x22\x12\x00\x12\x00" + bytes(range(256)) * 300,  # binary (an audio file)
        b"{" + b"\x00" * (1 << 17),  # starts as an object, then no line end and no JSON
    ],
    ids=["notes", "json-list", "record-then-list", "binary", "no-line-end"],
)
def test_audit_batch_out_that_is_not_batch_results_is_refused_untouched(
    wav: Path, tiny_registry, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    from instrunet_core.cli import main

    out = wav / "notes.txt"
    out.write_bytes(content)
    assert main(["batch", str(wav / "in"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"instrunet: error: {out}: not the results of instrunet batch (")
    assert err.endswith("refusing to change it (choose another --out)\n") and len(err.splitlines()) == 1
    assert out.read_bytes() == content


def test_audit_a_torn_record_after_blank_lines_is_still_cut(wav: Path, tiny_registry) -> None:
    from instrunet_core.cli import main

    out = wav / "r.jsonl"
    assert main(["batch", str(wav / "in"), "--out", str(out)]) == 0
    whole = out.read_bytes()
    for torn in (whole[:1], whole[:20], whole[: len(whole) // 2]):
        out.write_bytes(b"\n" + whole.replace(b"/t.wav", b"/gone.wav") + torn)
        assert main(["batch", str(wav / "in"), "--out", str(out)]) == 0
        assert [rec["path"].rsplit("/", 1)[1] for rec in _lines(out)] == ["gone.wav", "t.wav"]


# ---------------------------------------------------------------- row 8: analyzer output at the fd level
def test_row8_analyzer_writing_to_fd1_kept_out_of_json(
    tiny_model_dir: Path, wav: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import subprocess
    import sys

    from instrunet_core import hookimpl
    from instrunet_core import registry as plugins_mod
    from instrunet_core.cli import main

    class Noisy:
        @hookimpl
        def instrunet_register_analyzers(self, register: Any) -> None:
            def noisy(ctx: Any) -> dict[str, Any]:
                import os

                print("python print")
                os.write(1, b"native write on fd 1\n")
                subprocess.run([sys.executable, "-c", "print('a child process')"], check=True)
                return {"ok": True}

            register("noisy", noisy)

    reg = plugins_mod.build_registry(extra_plugins=[("t", ModelPlugin(tiny_model_dir)), ("n", Noisy())])
    monkeypatch.setattr(plugins_mod, "_REGISTRY", reg)
    assert main(["analyze", str(wav / "in" / "t.wav"), "--json", "-"]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["extras"]["noisy"] == {"ok": True}
    for noise in ("python print", "native write on fd 1", "a child process"):
        assert noise in err and noise not in out


# ---------------------------------------------------------------- rows 9, 12: names a terminal or a plot interprets
def test_row12_control_characters_in_names_escaped(
    tiny_registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from instrunet_core.cli import main

    names = ["new\nline.wav", "esc\x1b[2J.wav", "tab\there.wav"]
    paths = [str(_write_wav(tmp_path / n, tone(3.0))) for n in names]
    (tmp_path / "bad\n\x1b.wav").write_bytes(b"not audio")
    assert main(["classify", *paths, str(tmp_path / "bad\n\x1b.wav")]) == 1
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err
    lines = out.splitlines()
    assert len(lines) == 3 and all(line.count("\t") == 2 for line in lines)
    assert lines[0].startswith(str(tmp_path / "new\\nline.wav")) and "esc\\x1b[2J.wav" in lines[1]
    (error,) = err.splitlines()
    assert error.startswith(f"instrunet: error: {tmp_path}/bad\\n\\x1b.wav: ")


def test_row9_plot_of_a_name_that_is_not_utf8(tiny_registry, tmp_path: Path) -> None:
    import os
    import sys

    from instrunet_core.cli import main

    if sys.getfilesystemencoding().lower() not in ("utf-8", "utf8"):
        pytest.skip("needs a UTF-8 file system encoding")
    name = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"bad\xff $\\frac{.wav"))
    _write_wav(Path(name), tone(3.0))
    assert main(["analyze", name, "--plot", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- rows 3, 15, 16, 20: one decoding path
def _damaged(folder: Path) -> dict[str, Path]:
    """The issue's files: a FLAC cut in half, a 100-byte WAV, a 2 KB WAV whose header claims
    2**31 frames, a WAV cut short (``head -c``), an ID3 tag followed by noise, an MP3 cut short."""
    import os
    import struct

    import soundfile as sf

    y = tone(10.0, sr=44100, amp=0.3)
    encoded: dict[str, bytes] = {}
    for fmt, kw in (("FLAC", {}), ("WAV", {"subtype": "PCM_16"}), ("MP3", {"subtype": "MPEG_LAYER_III"})):
        from instrunet_core.audio import MP3_SUPPORTED

        if fmt == "MP3" and not MP3_SUPPORTED:
            continue
        buf = io.BytesIO()
        sf.write(buf, y, 44100, format=fmt, **kw)
        encoded[fmt] = buf.getvalue()
    wav = encoded["WAV"]
    huge = bytearray(wav[:2048])
    i = huge.find(b"data")
    huge[i + 4 : i + 8] = struct.pack("<I", 2**32 - 2)
    huge[4:8] = struct.pack("<I", 2**32 - 1)
    contents = {
        "half.flac": encoded["FLAC"][: len(encoded["FLAC"]) // 2],
        "tiny.wav": wav[:100],
        "cut.wav": wav[:300_000],
        "huge.wav": bytes(huge),
        "id3.mp3": b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10 + os.urandom(50_000),
    }
    if "MP3" in encoded:
        contents["cut.mp3"] = encoded["MP3"][: len(encoded["MP3"]) // 2]
    out: dict[str, Path] = {}
    for name, data in contents.items():
        out[name] = folder / name
        out[name].write_bytes(data)
    return out


def _core_outcome(p: Path) -> tuple[str, float]:
    """What the core's decoder makes of a file: ("ok", seconds) or ("DecodeError", 0)."""
    from instrunet_core import InstrunetError
    from instrunet_core.audio import load_audio

    try:
        return "ok", len(load_audio(p)) / SR
    except InstrunetError as e:
        return type(e).__name__, 0.0


def test_row3_process_file_decodes_as_the_core_does(tmp_path: Path, tiny_model) -> None:
    pytest.importorskip("pedalboard")
    import time

    import soundfile as sf
    from instrunet_pedalboard import Tagger, process_file

    from instrunet_core import InstrunetError

    for name, src in _damaged(tmp_path).items():
        want, seconds = _core_outcome(src)
        dst = tmp_path / "out" / f"{name}.wav"
        t0 = time.perf_counter()
        try:
            an = process_file(src, dst, tagger=Tagger(tiny_model))
        except InstrunetError as e:
            assert want != "ok", f"{name}: the core decodes it, process_file refused it: {e}"
            assert type(e).__name__ == want and str(e).startswith(str(src)), e
            assert not dst.exists()  # nothing half-written is left
            continue
        finally:
            assert time.perf_counter() - t0 < 20, name  # the 2**31-frame header once took 191 s
        assert want == "ok", f"{name}: process_file accepted what the core refuses ({want})"
        # the output holds what is there, never padded with silence to the header's length
        assert an.duration == pytest.approx(seconds, abs=0.01), name
        assert sf.info(dst).duration == pytest.approx(seconds, abs=0.01), name
    assert _core_outcome(tmp_path / "huge.wav") == ("ok", pytest.approx(1000 / 44100, abs=1e-3))


def test_row2_concurrent_process_file_to_one_path(tmp_path: Path) -> None:
    """Two processes writing one output: each renames its own whole file into place, so the
    result is one of the two inputs, and no temporary file is left (fixed by issue 25's
    writer layer; kept here)."""
    pytest.importorskip("pedalboard")
    import os
    import subprocess
    import sys

    import soundfile as sf

    srcs = [
        _write_wav(tmp_path / f"{k}.wav", tone(6.0, freq=f, amp=0.3)) for k, f in (("a", 440.0), ("b", 660.0))
    ]
    code = "import sys; from instrunet_pedalboard import process_file; process_file(sys.argv[1], sys.argv[2])"
    out = tmp_path / "out" / "shared.wav"
    env = {**os.environ, "INSTRUNET_PLUGINS": ""}
    refs = []
    for s in srcs:  # each alone, as the reference
        ref = tmp_path / "ref" / s.name
        subprocess.run([sys.executable, "-c", code, str(s), str(ref)], env=env, check=True, timeout=120)
        refs.append(sf.read(ref, dtype="float32")[0])
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(s), str(out)], env=env, stderr=subprocess.PIPE)
        for s in srcs
    ]
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read() if p.stderr else ""
    got, _ = sf.read(out, dtype="float32")
    assert any(np.array_equal(got, ref) for ref in refs)
    assert sorted(os.listdir(out.parent)) == ["shared.wav"]


def test_row15_mp3_noise_refused_quietly_in_the_cli(tmp_path: Path, tiny_model_dir: Path) -> None:
    """An ID3 tag then noise: one error line, no decoder chatter, no "possibly a pipe?"; a cut
    MP3 is classified without its decoder's warning."""
    from instrunet_core.audio import MP3_SUPPORTED

    if not MP3_SUPPORTED:
        pytest.skip("this libsndfile decodes no MP3")
    files = _damaged(tmp_path)
    r = _cli(["classify", str(files["id3.mp3"]), str(files["cut.mp3"])], model_dir=tiny_model_dir, stdout=-1)
    assert r.returncode == 1
    err = r.stderr.splitlines()
    assert err[0] == (
        f"instrunet: error: {files['id3.mp3']}: cannot decode audio "
        "(corrupt or unsupported format: no audio frames found in the data)"
    )
    # the MP3 cut in half is classified on what decoded, with one line that says so (no decoder chatter)
    assert err[1:] == [
        f"instrunet: warning: {files['cut.mp3']}: the header announces 10.00 s but only "
        f"{err[1].split('only ')[1][:4]} s could be decoded (the file is cut short or damaged); what decoded is used"
    ]
    assert r.stdout.startswith(f"{files['cut.mp3']}\t")


def test_audit_embed_and_search_drop_the_mp3_decoders_chatter_too(tmp_path: Path) -> None:
    """embed and search decode through the same filter as classify: a cut MP3 and a 10-byte one
    give one error line for the second, and nothing of libmpg123's own."""
    from test_open_set import _open_set_dir

    from instrunet_core.audio import MP3_SUPPORTED

    if not MP3_SUPPORTED:
        pytest.skip("this libsndfile decodes no MP3")
    files = _damaged(tmp_path)
    stub = tmp_path / "stub.mp3"
    stub.write_bytes(files["cut.mp3"].read_bytes()[:10])
    model = _open_set_dir(tmp_path / "models")
    query = _write_wav(tmp_path / "q.wav", tone(3.0))
    one_line = f"instrunet: error: {stub}: cannot decode audio (corrupt or unsupported format: "
    folder = tmp_path / "lib"
    folder.mkdir()
    shutil.copy(files["cut.mp3"], folder / "cut.mp3")
    shutil.copy(stub, folder / "stub.mp3")
    stub_in_folder = one_line.replace(str(stub), str(folder / "stub.mp3"))
    for argv, says in (
        (["embed", str(files["cut.mp3"]), str(stub)], one_line),
        (["search", str(query), str(files["cut.mp3"]), str(stub)], one_line),
        (["search", str(query), str(folder)], stub_in_folder),
        (["search", str(files["cut.mp3"]), str(query)], None),
    ):
        r = _cli([*argv, "--model", str(model)], model_dir=model, stdout=-1)
        errors = [line for line in r.stderr.splitlines() if not line.startswith(f"{argv[1]}: ")]
        # the MP3 cut in half is used as far as it decodes, with one line of ours that says so
        said = [line for line in errors if line.startswith("instrunet: warning: ")]
        assert said and all("cut.mp3: the header announces 10.00 s but only" in w for w in said), r.stderr
        errors = [line for line in errors if line not in said]
        if says is None:
            assert r.returncode == 0 and errors == [], r.stderr
        else:
            assert r.returncode == 1 and len(errors) == 1 and errors[0].startswith(says), r.stderr


def test_row16_cut_wav_behaves_as_documented(tmp_path: Path) -> None:
    """docs/cli.md says what a file cut short gets; the decoder does that."""
    files = _damaged(tmp_path)
    assert _core_outcome(files["cut.wav"]) == ("ok", pytest.approx((300_000 - 44) / 2 / 44100, abs=1e-3))
    assert _core_outcome(files["half.flac"])[0] == "DecodeError"
    doc = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    assert "read up to where it ends" in doc and "decoding failed after N frames" in doc


def test_cli_classifies_a_cut_flac_on_what_decodes_and_says_so(tmp_path: Path, tiny_model_dir: Path) -> None:
    """classify, analyze and batch on a FLAC cut in half: exit 0 with the answer of what decoded
    and one warning line (was: exit 1, the error after the decoded half had been analysed);
    the JSON and the batch record carry the message as ``damage``."""
    import json

    files = _damaged(tmp_path)
    half = files["half.flac"]
    prefix = f"instrunet: warning: {half}: decoding failed after "
    r = _cli(["classify", "--json", str(half)], model_dir=tiny_model_dir, stdout=-1)
    assert r.returncode == 0 and r.stderr.startswith(prefix) and len(r.stderr.splitlines()) == 1, r.stderr
    (rec,) = json.loads(r.stdout)
    assert rec["damage"] == r.stderr[len("instrunet: warning: ") :].strip() and "label" in rec
    assert 3 < rec["duration"] < 7
    out = tmp_path / "a.json"
    r = _cli(["analyze", str(half), "--json", str(out)], model_dir=tiny_model_dir, stdout=-1)
    assert r.returncode == 0 and [ln for ln in r.stderr.splitlines() if ln.startswith(prefix)], r.stderr
    assert json.loads(out.read_text())["damage"] == rec["damage"]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "half.flac").write_bytes(half.read_bytes())
    results = tmp_path / "r.jsonl"
    for _run in range(2):  # a damaged file's result is done: the second run skips it
        r = _cli(["batch", str(folder), "--out", str(results)], model_dir=tiny_model_dir, stdout=-1)
        assert r.returncode == 0, r.stderr
    (rec,) = [json.loads(ln) for ln in results.read_text().splitlines()]
    assert "decoding failed after" in rec["damage"] and "error" not in rec
    assert "1 already done, 0 to go" in r.stderr


def test_cut_flac_says_where_decoding_stops(tmp_path: Path) -> None:
    """A FLAC cut in half: what decodes is passed on before the error (a failed block is read
    again in small steps), and the message gives that position, not the start of the block the
    decoder failed in (it said "after 0 frames" for a file whose first seconds decode)."""
    from instrunet_core import DecodeError
    from instrunet_core.audio import AudioReader

    files = _damaged(tmp_path)
    got = 0
    with AudioReader(files["half.flac"]) as r, pytest.raises(DecodeError) as e:
        for block in r.blocks(r.frames):  # one block would hold the whole file
            got += block.shape[0]
    assert 0.3 * 441_000 < got < 441_000  # the first half decodes, 10 s are announced
    assert str(e.value).startswith(
        f"{files['half.flac']}: decoding failed after {got} frames ({got / 44100:.2f} s; "
        "the header announces 441000 frames: "
    )


def test_row20_messages(tmp_path: Path, tiny_model) -> None:
    from instrunet_core import InputError

    with pytest.raises(InputError, match=r"^bytes: unsupported source type bytes \(.*io\.BytesIO\(data\)"):
        tiny_model.predict(b"RIFF....", 44100)
    with pytest.raises(
        InputError, match=r"^array: samples reach 1e\+30; float audio is expected within \[-1, 1\]"
    ):
        tiny_model.predict(np.full(44100, 1e30, np.float32), 44100)
    assert tiny_model.predict(tone(3.0) * 2.0**31, SR).label == "brass"  # unscaled int32 as floats
    p = _write_wav(tmp_path / "t.wav", tone(3.0))
    with open(p) as text, pytest.raises(InputError, match="t.wav: file object must be opened in binary mode"):
        tiny_model.predict(text)


def test_row20_model_file_linked_to_a_device(tiny_model_dir: Path) -> None:
    import os

    from instrunet_core import ModelError, load_model

    (tiny_model_dir / "model.onnx").unlink()
    os.symlink("/dev/zero", tiny_model_dir / "model.onnx")
    with pytest.raises(ModelError, match="model.onnx: not a regular file"):
        load_model(tiny_model_dir)


def test_row20_stdin_named_once(
    tiny_registry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from instrunet_core.cli import main

    class Stdin:
        buffer = io.BytesIO(b"garbage\n")

    monkeypatch.setattr(sys, "stdin", Stdin())
    assert main(["classify", "-"]) == 1
    assert capsys.readouterr().err == (
        "instrunet: error: -: cannot decode audio (corrupt or unsupported format: Format not recognised.)\n"
    )


# ---------------------------------------------------------------- row 14: StreamTagger.listen's arguments and source
class _Source:
    """A stand-in for pedalboard's AudioStream: ``read(n)`` returns what ``kind`` says."""

    def __init__(self, kind: str, seconds: float = 4.0, sr: int = 44100) -> None:
        self.sample_rate, self.kind = sr, kind
        self.y = tone(seconds, sr=sr, amp=0.3)
        self.pos = 0

    def read(self, n: int) -> Any:
        block = self.y[self.pos : self.pos + n]
        self.pos += len(block)
        if self.kind == "list":
            return block.tolist()
        if self.kind == "channels-first":
            return np.stack([block, block])
        if self.kind == "text":
            return "not audio"
        if self.kind == "3d":
            return block[None, None, :]
        return block


@pytest.mark.parametrize(
    "kwargs, says",
    [
        ({"seconds": float("nan")}, "seconds must be a finite number of seconds, got nan"),
        ({"seconds": float("inf")}, "seconds must be a finite number of seconds, got inf"),
        ({"seconds": -1.0}, "seconds must be more than 0 seconds, got -1.0"),
        ({"seconds": "3"}, "seconds must be a number of seconds, got '3'"),
        ({"block_size": 0}, "block_size must be an int from 1 to"),
        ({"block_size": 10**12}, "block_size must be an int from 1 to 4194304"),
        ({"block_size": 4.5}, "block_size must be an int"),
    ],
)
def test_row14_listen_arguments_checked(tiny_model, kwargs: dict[str, Any], says: str) -> None:
    pytest.importorskip("pedalboard")
    from instrunet_pedalboard import StreamTagger

    from instrunet_core import InputError

    with pytest.raises(InputError, match=f"^StreamTagger.listen: {says}"):
        list(StreamTagger(tiny_model).listen(_Source("array"), **kwargs))


def test_row14_listen_sources(tiny_model) -> None:
    pytest.importorskip("pedalboard")
    from instrunet_pedalboard import StreamTagger

    from instrunet_core import InputError

    want = [r.label for r in StreamTagger(tiny_model).listen(_Source("array"), seconds=4.0)]
    assert want
    for kind in ("list", "channels-first"):  # a list of samples is audio too
        assert [r.label for r in StreamTagger(tiny_model).listen(_Source(kind), seconds=4.0)] == want
    for kind, says in (("text", "returned shape \\(\\)"), ("3d", "returned shape \\(1, 1, ")):
        with pytest.raises(InputError, match=f"^StreamTagger.listen: source.read\\(\\) {says}"):
            list(StreamTagger(tiny_model).listen(_Source(kind)))
    with pytest.raises(InputError, match="^StreamTagger.listen: source must have read"):
        list(StreamTagger(tiny_model).listen(object()))


# ---------------------------------------------------------------- row 17: DC and near-constant input
def test_row17_dc_and_near_constant_input_is_no_evidence(tiny_model) -> None:
    rng = np.random.default_rng(0)
    n = 3 * 44100
    for name, y in [
        ("DC 0.5", np.full(n, 0.5)),
        ("DC -0.9 with noise at -80 dB", -0.9 + 1e-4 * rng.standard_normal(n)),
        ("a slow ramp", np.linspace(-0.9, 0.9, n)),
    ]:
        p = tiny_model.predict(y.astype(np.float32), 44100)
        assert (p.label, p.silent, p.low_evidence) == ("silence", True, True), name
        assert p.sounding_seconds < 0.1, name  # at most the resampler's edges
    # an offset under a real sound changes nothing: the level is the sound's
    t = tone(3.0, sr=44100, amp=0.3)
    with_dc = Classifier(tiny_model).classify(t + 0.5, 44100)
    without = Classifier(tiny_model).classify(t, 44100)
    assert [round(w.rms_db, 2) for w in with_dc] == [round(w.rms_db, 2) for w in without]
    assert with_dc[0].rms_db == pytest.approx(20 * np.log10(0.3 / np.sqrt(2)), abs=0.1)


# ---------------------------------------------------------------- rows 10, 11: the app's upload names
HOSTILE_NAMES = [
    "**bold** [x](https://evil.example) ![p](http://127.0.0.1:9/p.png).wav",
    "<img src=x onerror=alert(1)>.wav",
    "$\\frac{a}{b}$ :red[red] :smile: `code` # h1 > quote.wav",
    "line\nbreak\x1b[31m.wav",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_row10_upload_names_shown_as_text_in_markdown(name: str) -> None:
    import html as html_mod
    import re

    service = pytest.importorskip("instrunet_app.service")
    markdown_it = pytest.importorskip("markdown_it")
    from instrunet_core.output import display_name

    md = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
    for text in (f"{name}: the recording is silent", f"Cannot analyse this upload. {name}: not audio (x.y)"):
        html = md.render(service.markdown_text(text, literal=[name]))
        for tag in ("<a", "<img", "<strong", "<em", "<h1", "<blockquote", "<script"):
            assert tag not in html, (name, html)
        # the name is a code span: no Markdown there, nor Streamlit's autolinking of bare URLs
        assert f"<code>{html_mod.escape(display_name(name), quote=False)}</code>" in html
        assert html_mod.unescape(re.sub(r"<[^>]+>", "", html)).strip() == display_name(text)


def test_row10_app_messages_go_through_markdown_text() -> None:
    """Every Streamlit element of the page that renders Markdown and may hold the upload's name
    gets it through service.markdown_text."""
    import ast

    pytest.importorskip("instrunet_app")
    src = (
        Path(__file__).resolve().parent.parent / "plugins/instrunet-app/src/instrunet_app/app.py"
    ).read_text()
    calls = [
        n
        for n in ast.walk(ast.parse(src))
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in ("warning", "error", "info", "markdown", "caption", "success")
    ]
    for call in calls:
        arg = ast.unparse(call.args[0]) if call.args else ""
        if any(k in arg for k in ("notice", "up.name", "{e}", "filename")):
            assert arg.startswith("service.markdown_text("), arg
            if "Configuration" not in arg:  # the upload's name goes in verbatim, as code
                assert "literal=[" in arg, arg


@pytest.mark.parametrize("name", ["😀🎻.wav", "名前.wav", "Ærøskøbing – café.wav", "a\nb\x1b.wav"])
def test_row11_pdf_title_keeps_the_name(name: str, tiny_registry) -> None:
    pytest.importorskip("fpdf")
    pypdf = pytest.importorskip("pypdf")
    from instrunet_app.report import build_pdf

    from instrunet_core import analyze

    pdf = build_pdf(analyze(tone(3.0, amp=0.3), SR, model="tiny"), filename=name, registry=tiny_registry)
    first = pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text().splitlines()[0]
    want = {
        "😀🎻.wav": "😀\\U0001f3bb.wav",  # DejaVu has the face; the violin is shown as its code point
        "名前.wav": "\\u540d\\u524d.wav",
        "Ærøskøbing – café.wav": "Ærøskøbing – café.wav",
        "a\nb\x1b.wav": "a\\nb\\x1b.wav",
    }[name]
    assert first == f"instrunet report: {want}" and "?" not in first
