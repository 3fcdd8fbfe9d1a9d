"""The command line as a tool in pipelines: where its data goes, what it reads from standard
input, its exit statuses (a pipelines audit, 2026-12-06). Each test runs ``instrunet`` in a
child process with file descriptors of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, cli_child, tone

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/dev/stdout, /dev/full")


@pytest.fixture
def open_model_dir(tmp_path: Path) -> Path:
    from test_open_set import _open_set_dir

    return _open_set_dir(tmp_path)


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    f = tmp_path / "a.wav"
    sf.write(f, np.tile(tone(4.0), 2), SR)
    return f


def _child(model_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The command in a child process, the model at ``model_dir`` its default."""
    cmd, env = cli_child(model_dir)
    return cmd, {**env, "INSTRUNET_DEFAULT_MODEL": model_dir.parent.name}


def _run(model_dir: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    cmd, env = _child(model_dir)
    return subprocess.run([*cmd, *args], env=env, capture_output=True, timeout=120, **kw)  # type: ignore[call-overload]


def test_an_output_named_dev_stdout_is_stdout(tiny_model_dir: Path, wav: Path, tmp_path: Path) -> None:
    """`--json /dev/stdout` was opened while file descriptor 1 pointed at stderr (so that plugin
    prints cannot reach the data): the JSON went to stderr, and a stderr appended to a log file
    replaced that file, its earlier lines lost."""
    r = _run(tiny_model_dir, "analyze", str(wav), "--json", "/dev/stdout")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["schema"].startswith("instrunet.analysis/")  # the data alone, as `--json -`
    assert b"schema" not in r.stderr
    log = tmp_path / "log.txt"
    log.write_text("an earlier line\n")
    out = tmp_path / "out.txt"
    with open(out, "wb") as o, open(log, "ab") as e:
        cmd, env = cli_child(tiny_model_dir)
        rc = subprocess.run(
            [*cmd, "analyze", str(wav), "--csv", "/dev/fd/1"], env=env, stdout=o, stderr=e, timeout=120
        ).returncode
    assert rc == 0
    assert log.read_text().startswith("an earlier line\n") and "start" not in log.read_text()
    assert out.read_text().splitlines()[0].startswith("start")  # the CSV's header, on stdout
    # two outputs on stdout, whatever their names: refused before the file is read
    r = _run(tiny_model_dir, "analyze", str(wav), "--json", "-", "--csv", "/dev/stdout")
    assert r.returncode == 2 and b"only one output can go to stdout" in r.stderr


def test_a_library_on_stdin_is_named_and_checked_as_text(open_model_dir: Path, wav: Path) -> None:
    """`search Q -` with stdin closed was a traceback; audio piped in as the library was scanned
    as lines ("<stdin>:367: not an embedding record"): it is embedded, as any stream's audio."""
    cmd, env = _child(open_model_dir)
    p = subprocess.run(
        [*cmd, "search", str(wav), "-"],
        env=env,
        capture_output=True,
        timeout=120,
        preexec_fn=lambda: os.close(0),
    )
    assert p.returncode == 1 and p.stderr.decode() == "instrunet: error: -: standard input is closed\n"
    # audio piped in is a recording, as through /dev/stdin or a FIFO (a docs audit: the two
    # spellings of stdin gave two outcomes); bytes that are neither are said
    other = wav.parent / "other.wav"
    sf.write(other, tone(4.0, freq=330.0), SR)
    p = _run(open_model_dir, "search", str(other), "-", input=wav.read_bytes())
    assert p.returncode == 0 and p.stdout.decode().split()[1:] == ["-"], p.stderr
    p = _run(open_model_dir, "search", str(other), "-", input=b"\x00\x01 neither audio nor text")
    assert p.returncode == 1 and "instrunet: error: -: cannot decode audio" in p.stderr.decode()
    p = _run(open_model_dir, "search", str(other), "-", input=b'{"path": "\xff\xfe"}\n')
    assert p.returncode == 1 and "-: not a text file" in p.stderr.decode()
    lib = _run(open_model_dir, "embed", str(wav)).stdout
    p = _run(open_model_dir, "search", str(wav), "-", input=lib + b'{"a": 1}\n')
    assert p.returncode == 1 and p.stderr.decode().startswith(
        "instrunet: error: -:2: not an embedding record"
    )


def _through_fifo(
    tmp_path: Path, name: str, data: bytes, model_dir: Path, *args: str
) -> subprocess.CompletedProcess[bytes]:
    """Run the command with ``data`` written into a FIFO named ``name`` (as `<(...)` gives)."""
    from test_reliability import _fed_fifo

    fifo, t = _fed_fifo(tmp_path, data, name)
    r = _run(model_dir, *[str(fifo) if a == "FIFO" else a for a in args])
    t.join(10)
    return r


def test_streams_as_embed_inputs_and_search_libraries(
    open_model_dir: Path, wav: Path, tmp_path: Path
) -> None:
    """`embed <(cat a.wav)` wrote the record's path as /proc/PID/fd/pipe:[...], which search
    then dropped as gone (exit 0, the vector lost); a library given as `<(zcat lib.jsonl.gz)`
    was decoded as audio because its name has no .jsonl suffix."""
    r = _through_fifo(tmp_path, "in1", wav.read_bytes(), open_model_dir, "embed", "FIFO")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["path"] == "-" and "file_size" not in rec
    lib = tmp_path / "lib.jsonl"
    lib.write_bytes(r.stdout)
    s = _run(open_model_dir, "search", str(wav), str(lib))
    assert s.returncode == 0 and s.stdout.decode().split()[1:] == ["-"], s.stderr  # kept, not "gone"
    # a library of JSON lines through a pipe
    emb = _run(open_model_dir, "embed", str(wav)).stdout
    other = tmp_path / "b.wav"
    sf.write(other, tone(4.0, freq=330.0), SR)
    s = _through_fifo(tmp_path, "lib2", emb, open_model_dir, "search", str(other), "FIFO")
    assert s.returncode == 0, s.stderr
    assert s.stdout.decode().split()[1:] == [str(wav.resolve())]
    # audio through a pipe, as a library: embedded, named as given in messages
    s = _through_fifo(tmp_path, "aud", b"not audio at all", open_model_dir, "search", str(other), "FIFO")
    assert s.returncode == 1 and f"{tmp_path / 'aud'}: cannot decode audio" in s.stderr.decode()
    # an endless stream is refused from its first MiB, as an audio input is (a review: it was
    # read until memory ran out)
    s = _run(open_model_dir, "search", str(other), "/dev/zero")
    assert (
        s.returncode == 1
        and b"/dev/zero: not an audio file (its first 1024 KiB hold no audio header)" in s.stderr
    )
    # a library whatever its name: /dev/stdin redirected from a file, a .txt (a docs audit)
    named = tmp_path / "lib.txt"
    named.write_bytes(emb)
    for args, stdin in ((("/dev/stdin",), emb), ((str(named),), None)):
        s = _run(open_model_dir, "search", str(other), *args, input=stdin)
        assert s.returncode == 0 and s.stdout.decode().split()[1:] == [str(wav.resolve())], (args, s.stderr)


def test_exit_statuses_say_whose_mistake_it_was(tiny_model_dir: Path, wav: Path, tmp_path: Path) -> None:
    """A pipelines audit (2026-12-06): a successful batch, which writes nothing to stdout, exited 1
    with stdout on /dev/full (an empty write reached it); a --model naming nothing installed was
    1 where an unknown --format is 2; `classify - -` read stdin and then said "empty stream"."""
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "a.wav", tone(4.0), SR)
    with open("/dev/full", "wb") as full:
        cmd, env = _child(tiny_model_dir)
        r = subprocess.run(
            [*cmd, "batch", str(folder), "--out", str(tmp_path / "r.jsonl")],
            env=env,
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    assert r.returncode == 0, r.stderr
    for args in (
        ("classify", str(wav)),
        ("analyze", str(wav)),
        ("batch", str(folder), "--out", str(tmp_path / "r2.jsonl")),
    ):
        r = _run(tiny_model_dir, *args, "--model", "bogus")
        assert r.returncode == 2 and b"model 'bogus' is not installed" in r.stderr, (args, r.stderr)
    r = _run(tiny_model_dir, "embed", str(wav))  # the tiny model has no embedding output
    assert r.returncode == 2 and b"has no embedding output" in r.stderr
    r = _run(tiny_model_dir, "classify", "-", "-", input=wav.read_bytes())
    assert r.returncode == 2 and r.stdout == b"" and b"stdin ('-') can be read only once" in r.stderr


def test_usage_goes_to_stderr_and_a_missing_library_is_one_error(
    open_model_dir: Path, wav: Path, tmp_path: Path
) -> None:
    """A pipelines audit (2026-12-06): `instrunet` alone printed its help on stdout (exit 2);
    `batch --out ''` suggested '-', which batch refuses; a missing .jsonl library stopped the
    whole search where a missing audio file is one error line."""
    r = _run(open_model_dir)
    assert r.returncode == 2 and r.stdout == b"" and b"usage: instrunet" in r.stderr
    r = _run(open_model_dir, "batch", str(tmp_path), "--out", "")
    assert r.returncode == 2 and b"give the results file's path" in r.stderr and b"'-'" not in r.stderr
    lib = tmp_path / "lib.jsonl"
    lib.write_bytes(_run(open_model_dir, "embed", str(wav)).stdout)
    other = tmp_path / "b.wav"
    sf.write(other, tone(4.0, freq=330.0), SR)
    r = _run(open_model_dir, "search", str(other), str(lib), str(tmp_path / "missing.jsonl"))
    assert r.returncode == 1 and f"{tmp_path / 'missing.jsonl'}: file not found".encode() in r.stderr
    assert r.stdout.decode().split()[1:] == [str(wav.resolve())]  # the other library still searched


def test_a_json_path_does_not_depend_on_the_locale(tmp_path: Path) -> None:
    """A pipelines audit (2026-12-06): under an ISO-8859-1 locale the JSON path of `été.wav` was
    `Ã©tÃ©.wav`, and a batch resumed under the other locale did the file again: the command
    runs in Python's UTF-8 mode whatever the locale."""
    import shutil

    if shutil.which("localedef") is None:  # pragma: no cover - glibc's tool is on Debian
        pytest.skip("no localedef to make a non-UTF-8 locale")
    loc = tmp_path / "loc"
    loc.mkdir()
    made = subprocess.run(
        ["localedef", "-i", "en_US", "-f", "ISO-8859-1", str(loc / "en_US.ISO-8859-1")],
        capture_output=True,
        timeout=120,
    )
    if made.returncode not in (0, 1) or not (loc / "en_US.ISO-8859-1").exists():  # pragma: no cover
        pytest.skip(f"localedef failed: {made.stderr[-200:]!r}")
    f = tmp_path / "été.wav"
    sf.write(f, tone(1.0), SR)
    cmd = [
        str(Path(sys.executable).parent / "instrunet"),
        "classify",
        "--json",
        "--model",
        "family-compact",
        str(f),
    ]
    paths = []
    for env in ({"LC_ALL": "C.UTF-8"}, {"LC_ALL": "en_US.ISO-8859-1", "LOCPATH": str(loc)}):
        e = {k: v for k, v in os.environ.items() if k not in ("PYTHONUTF8", "LANG", "LC_ALL", "LC_CTYPE")}
        r = subprocess.run(cmd, env={**e, **env}, capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        paths.append(json.loads(r.stdout)[0]["path"])
    assert paths == [str(f), str(f)]


def test_a_writer_whose_whole_output_is_empty_succeeds_on_stdout(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A review (2026-12-06): the check that a writer asked for `-` wrote to stdout counted only
    non-empty writes, so an Audacity label track with no labels (silence) failed the command."""
    f = tmp_path / "silence.wav"
    sf.write(f, np.zeros(4 * SR, np.float32), SR)
    r = _run(tiny_model_dir, "analyze", str(f), "--format", "audacity", "--out", "-")
    assert r.returncode == 0 and r.stdout == b"", r.stderr


def test_libraries_given_twice_and_stdin_left_open(open_model_dir: Path, wav: Path, tmp_path: Path) -> None:
    """A review (2026-12-06): `search Q - -` and a stream given twice were tracebacks; reading
    a library from stdin closed stdin (a host calling main() in-process)."""
    emb = _run(open_model_dir, "embed", str(wav)).stdout
    other = tmp_path / "b.wav"
    sf.write(other, tone(4.0, freq=330.0), SR)
    r = _run(open_model_dir, "search", str(other), "-", "-", input=emb)
    assert r.returncode == 2 and b"stdin ('-') can be read only once" in r.stderr
    lib = tmp_path / "lib.txt"
    lib.write_bytes(emb)
    r = _run(open_model_dir, "search", str(other), str(lib), str(lib))
    assert r.returncode == 0 and r.stdout.decode().split()[1:] == [str(wav.resolve())], r.stderr
    # one stream under two names is read by one reader (two split it between them)
    r = _run(open_model_dir, "search", str(other), "-", "/dev/stdin", input=wav.read_bytes())
    assert r.returncode == 0 and r.stdout.decode().split()[1:] == ["-"], r.stderr
    cmd, env = _child(open_model_dir)
    code = cmd[2].replace(
        "sys.exit(main(sys.argv[1:]))",
        "rc = main(sys.argv[1:]); print(rc, sys.stdin.buffer.closed, file=sys.stderr)",
    )
    r = subprocess.run(
        [*cmd[:2], code, "search", str(other), "-"], env=env, input=emb, capture_output=True, timeout=120
    )
    assert r.stderr.decode().strip().splitlines()[-1] == "0 False", r.stderr
