"""The ``instrunet`` command line.

Subcommands: ``classify``, ``analyze``, ``batch``, ``models``, ``plugins``. A bad
input file prints one line ``instrunet: error: <file>: <problem>`` on stderr; the
other files of the same call are still processed and the exit code is 1. A bad
command line (an unusable ``--hop``, an output path that is an input) exits 2. An output
that cannot be written (stdout closed or full, a full disk) prints one line
``instrunet: error: <path>: cannot write...`` and exits 1 (``-`` is stdout). Machine
output (``--json``, batch lines) follows the schemas in ``instrunet_core/schema/`` (:func:`instrunet_core.output.json_schemas`); in text output
file names are shown escaped (:func:`~instrunet_core.output.display_name`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import logging
import os
import re
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from ._files import file_identity
from .arguments import add_count_option, count_type, hop_type
from .batch import error_message
from .errors import InputError, InstrunetError, InstrunetWarning, OutputError, UnknownModelError, describe
from .features import DEFAULT_HOP_SECONDS
from .inputs import MAX_THREADS, plain_float
from .labels import FAMILIES
from .output import SEARCH_SCHEMA, model_info
from .timeline import DEFAULT_MIN_DURATION, DEFAULT_SMOOTHING, OTHER_VETO, answers_other

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


def _say(text: str) -> None:
    """One line on stderr; a closed or missing stderr (``2>&-``) is not an error."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):
        pass


def _err(msg: str) -> None:
    """One ``instrunet: error:`` line (control characters of file names in it escaped)."""
    _say(f"instrunet: error: {_shown(msg)}")


def _out(text: str = "") -> None:
    """One line of the command's output on stdout.

    Raises
    ------
    OutputError
        stdout is closed or cannot be written (reported by :func:`main`).
    """
    from .writers import write_stdout

    write_stdout(text + "\n")


def _shown(name: str) -> str:
    from .output import display_name

    return display_name(name)


def _reserve_std_fds() -> None:
    """Hold the slots of closed standard descriptors (``>&-``, ``2>&-``) with /dev/null, so that
    no file this command opens becomes fd 1 or 2 (where native code, or the plugin-output
    redirection, would write into it). ``sys.stdout`` stays ``None``: writing output still fails."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            with contextlib.suppress(OSError):
                null = os.open(os.devnull, os.O_RDWR)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)


def _plugin_stdout() -> Any:
    """:func:`~instrunet_core.registry.plugin_stdout` down to file descriptor 1: the command is
    single-threaded, so native plugin code's output can be sent to stderr too."""
    from .registry import plugin_stdout

    return plugin_stdout(fd=True)


#: What libmpg123 (inside libsndfile) prints on file descriptor 2 about a damaged MP3: resync
#: notes and warnings that name no file ("Note: Trying to resync...", "Warning: Xing stream
#: size off..."); the file's own error line, if any, says what matters.
_DECODER_CHATTER = re.compile(rb"^(?:(?:Note|Warning|Error): |\[src/libmpg123/)")


#: The filter process of :func:`_decoder_chatter_dropped`: reads what file descriptor 2 gets,
#: line by line, and writes every line but the decoder's chatter to the real stderr (the file
#: descriptor its first argument names) as it comes, to the end.
_CHATTER_FILTER = (
    "import os,re,signal,sys\n"
    "signal.signal(signal.SIGINT,signal.SIG_IGN)\n"  # (Ctrl-C is the command's to answer)
    "p=re.compile(os.fsencode(sys.argv[2]))\n"  # (_DECODER_CHATTER's pattern)
    "o=int(sys.argv[1]);b=b''\n"
    "try:\n"
    " while True:\n"
    "  c=os.read(0,65536)\n"
    "  if not c:break\n"
    "  b+=c;*ls,b=b.split(b'\\n')\n"
    "  k=b''.join(l+b'\\n' for l in ls if not p.match(l))\n"
    "  if k:os.write(o,k)\n"
    " if b and not p.match(b):os.write(o,b)\n"
    "except Exception:pass\n"
)


def _chatter_filter(saved: int) -> tuple[Any, int] | None:
    """A filter process (:data:`_CHATTER_FILTER`) writing to ``saved`` and the write end of the
    pipe it reads; ``None`` where none can be started (no interpreter of our own: a host that
    calls :func:`main` in its process)."""
    exe = sys.executable
    if not exe or not os.path.basename(exe).lower().startswith("python"):
        return None
    import subprocess

    try:
        r, w = os.pipe()
    except OSError:
        return None
    try:
        proc = subprocess.Popen(
            [exe, "-I", "-S", "-c", _CHATTER_FILTER, str(saved), os.fsdecode(_DECODER_CHATTER.pattern)],
            stdin=r,
            stdout=subprocess.DEVNULL,
            stderr=saved,
            pass_fds=(saved,),
        )
    except (OSError, ValueError):
        os.close(r)
        os.close(w)
        return None
    os.close(r)
    return proc, w


@contextlib.contextmanager
def _decoder_chatter_dropped() -> Iterator[None]:
    """While a command that decodes files runs, send file descriptor 2 through a filter process
    that passes on every line but the MP3 decoder's chatter (:data:`_DECODER_CHATTER`) as it
    comes. A process of its own, not a capture read back afterwards: a native library that writes
    its last line and ends the process (OpenBLAS out of memory, a C++ abort, a fatal signal's
    dump) was silenced, exit 1 and nothing said (an environment audit); the filter still writes
    what the pipe holds. Where no filter can start, the output is captured and filtered
    afterwards, as before. Swapping a descriptor is process-wide: only the command line, which
    owns its process, does it."""
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    filt = _chatter_filter(saved)
    capture = None
    try:
        if filt is not None:
            os.dup2(filt[1], 2)
            os.close(filt[1])
        else:
            capture = tempfile.TemporaryFile()
            os.dup2(capture.fileno(), 2)
    except OSError:
        os.close(saved)
        if capture is not None:
            capture.close()
        if filt is not None:
            with contextlib.suppress(OSError):
                os.close(filt[1])  # (the filter then reads its end and goes)
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            if sys.stderr is not None:
                sys.stderr.flush()
        os.dup2(saved, 2)  # (the pipe's last write end in this process: the filter sees its end)
        os.close(saved)
        if filt is not None:
            import subprocess

            with contextlib.suppress(subprocess.TimeoutExpired):
                # (what it still holds comes before what is said next; a process that inherited
                # the pipe may keep it open: the filter then ends with it, unwaited for)
                filt[0].wait(timeout=2.0)
        if capture is not None:
            with capture, contextlib.suppress(OSError):
                capture.seek(0)
                kept = [
                    ln for ln in capture.read().splitlines(keepends=True) if not _DECODER_CHATTER.match(ln)
                ]
                if kept:
                    os.write(2, b"".join(kept))


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """While the command runs, each Python warning (an execution provider that is not available,
    a plugin that failed to load) is one line ``instrunet: warning: <message>`` on stderr rather
    than Python's two, which show a line of the library's source."""

    def show(
        message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        text = str(message)
        _say(f"instrunet: warning: {_shown(text.removeprefix('instrunet: '))}")

    class _Lines(logging.Handler):  # a library's log warnings (matplotlib's), the same way
        def emit(self, record: logging.LogRecord) -> None:
            show(record.getMessage(), None, "", 0)

    root = logging.getLogger()
    handler = _Lines(logging.WARNING)
    root.addHandler(handler)  # (without one, logging's last resort printed the bare message)
    try:
        with warnings.catch_warnings():  # the filters and showwarning are restored afterwards
            warnings.showwarning = show
            # instrunet's own warnings are lines of the command's output, whatever the interpreter
            # was told (PYTHONWARNINGS=error, -W error made a damaged file's note a traceback that
            # stopped a batch for good: an environment audit); other warnings keep their filters
            warnings.filterwarnings("default", category=InstrunetWarning)
            yield
    finally:
        root.removeHandler(handler)


def _results_path(text: str) -> str:
    """argparse type of ``batch --out``: a file it can read back and lock (not stdout)."""
    if text == "-":
        raise argparse.ArgumentTypeError(
            "batch writes its results to a file it reads back to resume; '-' (stdout) cannot be one"
        )
    if not text:
        raise argparse.ArgumentTypeError("an output path cannot be empty (give the results file's path)")
    return text


def _output_path(text: str) -> str:
    """argparse type of an output path: anything but the empty string, which would name no file
    and silently write nothing (``-`` is stdout)."""
    if not text:
        raise argparse.ArgumentTypeError("an output path cannot be empty (give '-' for stdout)")
    return text


def _bounded_float(name: str, lo: float, hi: float, *, noun: str, unit: str = "") -> Any:
    """An argparse type: a number in [``lo``, ``hi``] (NaN refused), named ``name`` in messages
    ("``name`` must be ``noun``" when it is no number, "in [lo, hi] ``unit``" when outside)."""

    def parse(text: str) -> float:
        try:
            v = plain_float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {noun}, got {text!r}") from None
        if not (v == v and lo <= v <= hi):
            raise argparse.ArgumentTypeError(f"{name} must be in [{lo:g}, {hi:g}]{unit}, got {text!r}")
        return v

    return parse


def _add_seconds_option(p: argparse.ArgumentParser, flag: str, *, default: float, help: str) -> None:
    """Add the duration option ``flag`` (metavar ``S``): a number of seconds in [0, 600], named
    in messages as the flag without its dashes."""
    name = flag.lstrip("-")
    parse = _bounded_float(name, 0.0, 600.0, noun="a number of seconds", unit=" seconds")
    p.add_argument(flag, type=parse, default=default, metavar="S", help=help)


class _Stdin:
    """Standard input's binary stream, named ``-`` in messages (as on the command line)."""

    name = "-"

    def __init__(self, f: Any) -> None:
        self._f = f

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._f, attr)


def _source(path: str) -> Any:
    """``-`` is standard input (read once, into memory); anything else a path."""
    if path == "-":
        stdin = sys.stdin
        if stdin is None:
            raise InputError("-: standard input is closed")
        return _Stdin(getattr(stdin, "buffer", stdin))
    return path


def _stdin_library() -> tuple[bool, Any]:
    """Standard input given as a search library: :func:`_sniffed` (JSON lines, else audio, as a
    stream given by name is), named ``-``; stdin itself stays open (a host calling ``main``)."""
    stdin = sys.stdin
    if stdin is None:
        raise InputError("-: standard input is closed")
    raw = getattr(stdin, "buffer", None)
    if raw is None:  # a text stream without bytes below it (a host's replacement): text
        return True, stdin
    return _sniffed(raw, "-", own=False)


#: The output tag of ``--plot`` (no writer's name can be it: a plugin's writer named "plot" was
#: never run for ``--format plot``, the built-in plot ran instead).
_PLOT = "--plot"


def _is_stream(path: str) -> bool:
    """Whether ``path`` names something read once rather than a file (a FIFO, a process
    substitution's pipe, ``/dev/stdin``, a character device): ``-`` aside."""
    if path == "-":
        return False
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    return not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode)


#: Bytes read from a stream given as a search library before it is taken for JSON lines or audio.
_SNIFF_BYTES = 1 << 16


def _open_stream(path: str) -> tuple[bool, Any]:
    """A search library given as a stream (a FIFO, a process substitution, ``/dev/stdin``),
    read once: ``(True, text)`` when it starts like the JSON lines of ``instrunet embed`` (read
    line by line, strict UTF-8), else ``(False, binary file)`` that gives its bytes from the
    start, for the audio decoder (which reads a stream at most ``MAX_STREAM_BYTES`` long, and
    refuses one without an audio header in its first MiB: ``/dev/zero`` was read until memory
    ran out, a review)."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    return _sniffed(f, path, own=True)


def _sniffed(f: Any, name: str, *, own: bool) -> tuple[bool, Any]:
    """:func:`_open_stream` of an open binary file ``f`` (closed with what is returned when
    ``own``; standard input is not)."""
    try:
        head = b""
        eof = False
        while len(head) < _SNIFF_BYTES and not head.removeprefix(b"\xef\xbb\xbf").strip():
            more = f.read(_SNIFF_BYTES - len(head))
            if not more:
                eof = True  # (a terminal's Ctrl-D is not asked for twice)
                break
            head += more
    except OSError as e:
        raise InputError(f"{name}: cannot read: {e.strerror or e}") from None
    stream = io.BufferedReader(_Prefixed(head, f, name, own=own, eof=eof))
    if not _looks_like_json_lines(head):
        return False, stream
    return True, io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline=None)


def _starts_like_json(path: str) -> bool:
    """Whether a regular file starts like JSON lines (read as a library, whatever its name).
    The file is put back at its start: where opening ``/dev/stdin`` shares the position of
    file descriptor 0 (macOS, the BSDs), the sniff would otherwise eat what is read next."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
            with contextlib.suppress(OSError):
                f.seek(0)
            return _looks_like_json_lines(head)
    except OSError:
        return False  # (said when it is embedded)


def _looks_like_json_lines(data: bytes) -> bool:
    """Whether a stream's bytes start like the JSON lines of ``instrunet embed`` (after blanks
    and a byte-order mark): no audio format starts with ``{``."""
    return data.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"{"


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were already read (``head``): them, then the rest of it
    (none when reading the head met its end); ``f`` is closed with it when ``own``."""

    def __init__(self, head: bytes, f: Any, name: str, *, own: bool = True, eof: bool = False) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._f = f
        self._own = own
        self._eof = eof
        self.name = name

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        if self._eof:
            return 0
        return int(self._f.readinto(b) or 0)

    def close(self) -> None:
        if self._own:
            with contextlib.suppress(OSError):
                self._f.close()
        super().close()


def _is_stdout(path: str) -> bool:
    """Whether an output path names the file standard output already writes to: ``-``,
    ``/dev/stdout``, ``/dev/fd/1``, or the very file stdout is redirected to. Such an output is
    written as ``-``: while writers run, file descriptor 1 points at stderr (plugin prints must
    not reach the data), so opening ``/dev/stdout`` then would write into stderr's file."""
    if path == "-":
        return True
    try:
        a, b = os.stat(path), os.fstat(1)
    except (OSError, ValueError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _same_file(a: str, b: str) -> bool:
    if a == "-" or b == "-":
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _version() -> str:
    from . import __version__

    return __version__


def _model_arg(text: str) -> str:
    """``--model``'s value: a name, ``name@version`` or a path; blank is a usage error."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "give a model name (instrunet models lists them) or an artifact folder"
        )
    return text


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """The options every classifying command takes: the model, how it runs, the hop."""
    p.add_argument(
        "--model",
        metavar="NAME|PATH",
        type=_model_arg,
        help="registered model name, or artifact folder as a path (./NAME for one here); default model if omitted",
    )
    p.add_argument(
        "--providers",
        metavar="LIST",
        help="onnxruntime execution providers, comma-separated: cpu (default), cuda, auto "
        "(CUDA when onnxruntime-gpu is installed); CPU is always the fallback",
    )
    add_count_option(
        p,
        "--threads",
        minimum=0,
        maximum=MAX_THREADS,
        help=f"onnxruntime intra-op threads, 0 to {MAX_THREADS} (default 1, chosen by measurement; "
        "0: one per core)",
    )
    add_count_option(
        p,
        "--workers",
        maximum=MAX_THREADS,
        help=f"threads that analyse batches of windows beside the main thread, 1 to {MAX_THREADS} "
        "(default: one fewer than the usable cores, at least 1, at most 4)",
    )
    p.add_argument(
        "--hop",
        type=hop_type,
        default=None,  # the model's default; search: the hop its .jsonl library was made with
        metavar="S",
        help=f"seconds between windows, 0.01 to 3600, snapped to whole 23 ms frames "
        f"(default {DEFAULT_HOP_SECONDS:g}; search: its .jsonl library's); above a window's 2.95 s "
        "the audio between windows is not classified (warned beyond 0.1 s of it)",
    )


class _Parser(argparse.ArgumentParser):
    """argparse's parser, except that help and ``--version`` that cannot be written to stdout
    (``> /dev/full``) are said (exit 1) instead of being dropped by argparse without a word."""

    def _print_message(self, message: str, file: Any = None) -> None:
        if not message:
            return
        if file is None or file is sys.stdout:
            from .writers import write_stdout

            write_stdout(message)
        else:  # stderr: a message that cannot be written is dropped (docs/cli.md)
            with contextlib.suppress(OSError, ValueError, AttributeError):
                file.write(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="instrunet",
        description="Which instrument families play in a recording? (InstruNet, ONNX runtime)",
    )
    p.add_argument("--version", action="version", version=f"instrunet {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("classify", help="overall label and its mean probability, for each file")
    c.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="audio files (wav, flac, ogg, mp3, ...; any rate and channels); '-' reads stdin",
    )
    _add_model_options(c)
    c.add_argument(
        "--json", action="store_true", help="print one JSON array of instrunet.classification/2 records"
    )

    a = sub.add_parser("analyze", help="timeline and detected instruments of one file")
    a.add_argument("file", metavar="FILE", help="an audio file ('-' reads stdin)")
    _add_model_options(a)
    a.add_argument(
        "--json",
        type=_output_path,
        metavar="OUT",
        help="write the analysis as instrunet.analysis/3 JSON ('-' for stdout)",
    )
    a.add_argument(
        "--csv",
        type=_output_path,
        metavar="OUT",
        help="write the timeline as CSV, one row per window ('-' for stdout)",
    )
    a.add_argument(
        "--plot",
        type=_output_path,
        metavar="OUT.png",
        help="write the timeline plot (needs matplotlib; '-' for stdout)",
    )
    _add_seconds_option(
        a,
        "--smoothing",
        default=DEFAULT_SMOOTHING,
        help=f"seconds of moving mean of each family's probability over time before its threshold "
        f"(default {DEFAULT_SMOOTHING:g}; 0: none)",
    )
    _add_seconds_option(
        a,
        "--min-duration",
        default=DEFAULT_MIN_DURATION,
        help=f"seconds a family must be present to be reported (or all of a shorter sound), and absent "
        f"to split a range (default {DEFAULT_MIN_DURATION:g})",
    )
    a.add_argument(
        "--other-veto",
        type=_bounded_float("other-veto", 0.0, 1.0, noun="a probability"),
        default=None,
        metavar="P",
        help=f"open-set models: no family is reported where 'other' is the answer with at least this "
        f"smoothed probability (default: the model's own, else {OTHER_VETO:g}; 1: off)",
    )
    add_count_option(
        a,
        "--leading",
        minimum=0,
        maximum=1000,
        default=None,
        help="how many of the most probable families at a moment need only their thresholds; a family "
        "behind them needs its threshold plus the model's margin for it (default: the model's own; 0: "
        "every family at its threshold alone)",
    )
    a.add_argument(
        "--embed", action="store_true", help="add the recording's and the windows' embeddings to the JSON"
    )
    a.add_argument(
        "--analyzers",
        metavar="none|NAME,...",
        help="analyzer plugins to run (default: all installed; 'none' skips them, e.g. the "
        "condition analysis)",
    )
    a.add_argument(
        "--analyzer-timeout",
        type=_bounded_float("analyzer-timeout", 0.001, 1e7, noun="a number of seconds", unit=" seconds"),
        metavar="S",
        help="seconds each analyzer may take; one that takes longer is left behind and reported as a "
        "TimeoutError in its entry (default: $INSTRUNET_ANALYZER_TIMEOUT, else 60 plus the audio's "
        "duration)",
    )
    a.add_argument(
        "--format",
        metavar="NAME",
        help="a registered writer: json, csv, ranges (CSV of the detected ranges), audacity "
        "(label track), jams, png, or a plugin's (pdf: instrunet-app)",
    )
    a.add_argument(
        "--out", type=_output_path, metavar="PATH", help="output path for --format ('-' for stdout)"
    )

    b = sub.add_parser(
        "batch", help="classify every audio file under a directory into JSON lines (resumable)"
    )
    b.add_argument("dir", metavar="DIR", help="directory searched recursively for audio files")
    b.add_argument(
        "--out",
        required=True,
        type=_results_path,
        metavar="results.jsonl",
        help="JSON lines (instrunet.classification/2), one per file; files already done in it "
        "are skipped, failed ones and ones changed since (size or time) done again; one model "
        "and one --hop per output; locked while the batch runs",
    )
    _add_model_options(b)

    e = sub.add_parser(
        "embed", help="embedding of each file (JSON lines: path, model, dim, vector) for similarity search"
    )
    e.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="audio files or folders (searched recursively; '-' reads stdin)",
    )
    _add_model_options(e)
    e.add_argument("--windows", action="store_true", help="also each window's vector")

    s = sub.add_parser(
        "search",
        help="the recordings of a library that sound most like a query (cosine similarity of embeddings)",
        description="Rank a library of recordings by how much each sounds like the query: the cosine "
        "similarity of their embeddings (docs/embeddings.md). The library is JSON lines written by "
        "`instrunet embed` (embedded once, searched often), folders (searched recursively for audio "
        "files) or audio files, embedded now; all with one model. The query itself is left out.",
    )
    s.add_argument(
        "query", metavar="QUERY", help="audio file to find similar recordings for ('-' reads it from stdin)"
    )
    s.add_argument(
        "library",
        nargs="+",
        metavar="LIBRARY",
        help="`instrunet embed` output (JSON lines: a .jsonl, .ndjson or .json file, or any file or "
        "stream that starts with '{'; '-' reads stdin), a folder, or an audio file (or stream)",
    )
    s.add_argument(
        "-k",
        "--top",
        type=count_type("top", 1, None),
        default=10,
        metavar="N",
        help="matches shown (default 10)",
    )
    s.add_argument(
        "--where",
        action="store_true",
        help="also say where in each match it sounds most like the query (its best window; "
        "a .jsonl library needs `instrunet embed --windows`)",
    )
    s.add_argument("--json", action="store_true", help=f"print one JSON document ({SEARCH_SCHEMA})")
    _add_model_options(s)

    m = sub.add_parser("models", help="installed models")
    m.add_argument(
        "--json",
        action="store_true",
        help="print name, version, sha256 (checked), labels, task, the open-set threshold and veto, the "
        "embedding size, metrics and parity as JSON",
    )
    m.add_argument(
        "--check",
        action="store_true",
        help="also replay each model's stored references through onnxruntime (exit 1 if any model fails)",
    )

    pl = sub.add_parser("plugins", help="loaded plugins")
    pl.add_argument("--json", action="store_true", help="print name, version, hooks and errors as JSON")
    return p


def _load(name: str | None, args: argparse.Namespace | None = None) -> Any:
    from .model import load_model

    providers = getattr(args, "providers", None)
    if providers:
        providers = [p.strip() for p in providers.split(",") if p.strip()]
    with _plugin_stdout():
        return load_model(name, providers=providers or None, intra_op_threads=getattr(args, "threads", None))


class _NoEmbedding(InstrunetError):
    """``--model`` names a model without an embedding output where one is needed."""


def _model_failed(e: BaseException) -> int:
    """Say why the model cannot be had; the exit status: a name or version that names nothing
    installed, or a model without the output the command needs, is the command line's mistake
    (2, as an unknown ``--format``); an artifact that fails to load is a failure (1)."""
    _err(str(e))
    return EXIT_USAGE if isinstance(e, (UnknownModelError, _NoEmbedding)) else EXIT_FAIL


def _classify_one(clf: Any, source: Any) -> tuple[Any, float]:
    """Overall prediction and duration (seconds) of one source, through the one inference path."""
    clf.classify(source)
    return clf.prediction(), clf.duration


# ---------------------------------------------------------------- classify
def _classify(args: argparse.Namespace) -> int:
    from .output import classification_record, error_record

    if args.files.count("-") > 1:
        _err("classify: stdin ('-') can be read only once; give it once")
        return EXIT_USAGE
    try:
        model = _load(args.model, args)
    except InstrunetError as e:
        return _model_failed(e)
    clf = model.classifier(hop=args.hop, workers=args.workers)
    rows: list[dict[str, Any]] = []
    rc = EXIT_OK
    for path in args.files:
        try:
            pred, duration = _classify_one(clf, _source(path))
        except (InstrunetError, OSError) as e:
            rc = EXIT_FAIL
            msg = error_message(path, e)
            _err(msg)
            rows.append(error_record(path, msg, model))
            continue
        rows.append(classification_record(path, pred, model, duration=duration, damage=clf.damage))
        if not args.json:  # stdout failing here is the command's failure (main), not this file's
            note = "\tlow evidence" if pred.low_evidence else ""
            _out(f"{_shown(path)}\t{pred.label}\t{pred.confidence:.3f}{note}")
    if args.json:
        _out(json.dumps(rows, indent=2))
    return rc


# ---------------------------------------------------------------- embed
def _embedding_model(args: argparse.Namespace) -> Any:
    """The ``--model`` of ``embed`` and ``search``, which must have an embedding output
    (``InstrunetError`` otherwise)."""
    model = _load(args.model, args)
    if model.embedding_dim is None:
        raise _NoEmbedding(f"{model.name} {model.version} has no embedding output; choose another --model")
    return model


def _embed(args: argparse.Namespace) -> int:
    from .analysis import embedding_json_chunks
    from .output import EMBEDDING_SCHEMA, instrunet_version
    from .writers import write_stdout

    if args.files.count("-") > 1:
        _err("embed: stdin ('-') can be read only once; give it once")
        return EXIT_USAGE
    try:
        model = _embedding_model(args)
    except InstrunetError as e:
        return _model_failed(e)
    from .batch import file_stamp

    rc = EXIT_OK
    # a folder stands for the audio files under it (as for batch and search)
    files = [p for item in args.files for p in (_folder_files(item) if os.path.isdir(item) else [item])]
    for path in files:
        # a file is named by its resolved path (as batch names it): a library read from another
        # folder names the same file, and a search leaves the query out of its own results
        # a stream (a FIFO, `<(...)`, /dev/stdin) names no file that is still there afterwards
        # (its record said /proc/PID/fd/pipe:[...], which search then dropped as gone): "-",
        # as stdin, a recording of its own
        stream = path == "-" or _is_stream(path)
        name = "-" if stream else os.path.realpath(path)
        stamp = None if stream else file_stamp(path)
        try:
            emb = model.embed(_source(path), hop=args.hop, workers=args.workers)
        except (InstrunetError, OSError) as e:
            _err(error_message(path, e))
            rc = EXIT_FAIL
            continue
        line = {"schema": EMBEDDING_SCHEMA, "instrunet_version": instrunet_version(), "path": name}
        # written in pieces of 1 MB: a long file's windows never become one string; a record up
        # to that size goes out with its newline in one write, so that `>> lib.jsonl` appends
        # running side by side cannot put a record inside another
        chunks = embedding_json_chunks(line, emb, stamp or {}, windows=args.windows)
        for piece in _batched_text(itertools.chain(chunks, ["\n"])):
            write_stdout(piece)
    return rc


def _batched_text(chunks: Iterator[str], size: int = 1 << 20) -> Iterator[str]:
    """``chunks`` joined into pieces of about ``size`` characters (fewer writes)."""
    buf: list[str] = []
    n = 0
    for c in chunks:
        buf.append(c)
        n += len(c)
        if n >= size:
            yield "".join(buf)
            buf, n = [], 0
    if buf:
        yield "".join(buf)


def _folder_files(folder: str) -> list[str]:
    """The audio files under ``folder`` (:func:`~instrunet_core.batch.collect_files`), with a
    warning when there are none."""
    from .batch import collect_files

    found = collect_files(folder)
    if not found:
        _say(f"instrunet: warning: {_shown(folder)}: no audio files under it")
    return found


#: A plugin whose import and hooks take this long (seconds) gets its time in ``instrunet plugins``.
SLOW_PLUGIN_SECONDS = 0.5

#: Library arguments read as ``instrunet embed`` output rather than decoded as audio.
_INDEX_SUFFIXES = (".jsonl", ".ndjson", ".json")


def _search(args: argparse.Namespace) -> int:
    if args.query == "-" and "-" in args.library:
        _err("search: stdin cannot be both the query and the library; give one of them as a file")
        return EXIT_USAGE
    if args.library.count("-") > 1:
        _err("search: stdin ('-') can be read only once; give it once")
        return EXIT_USAGE
    # a library given twice (also by two names: `- /dev/stdin`, `ff ./ff`) is read once: a
    # stream could not be read twice, and two readers split it between them (a review)
    first: dict[Any, str] = {}
    for item in args.library:
        first.setdefault(_identity(item), item)
    args.library = list(first.values())
    streamed: dict[str, Any] = {}  # audio given as a stream (a FIFO, a process substitution)
    try:
        return _search_with(args, streamed)
    finally:
        for stream in streamed.values():  # (those not embedded: the search ended early)
            with contextlib.suppress(OSError, ValueError):
                stream.close()


def _identity(item: str) -> Any:
    """What a LIBRARY argument names: its file's device and inode (``-``: standard input's),
    else the name itself."""
    try:
        st = os.fstat(0) if item == "-" else os.stat(item)
    except (OSError, ValueError):
        return item
    return (st.st_dev, st.st_ino)


def _search_with(args: argparse.Namespace, streamed: dict[str, Any]) -> int:
    from .output import instrunet_version, jsonable
    from .search import Library
    from .timeline import format_time

    try:
        model = _embedding_model(args)
    except InstrunetError as e:
        return _model_failed(e)
    from .registry import embedding_digests

    # records written before they named their vectors' digest: read as the installed artifact
    # their manifest names (family 3.0.0's vectors are the default's)
    lib = Library(model=model_info(model, embedding=True), known=embedding_digests())
    rc = EXIT_OK
    # The libraries written by `instrunet embed` first: their hop is the one the query and the
    # folders are embedded with, when --hop is not given (vectors of two hops differ a little).
    read: set[str] = set()  # the items read as libraries here, not embedded below
    try:
        for item in args.library:
            if item == "-":  # `instrunet embed ... | instrunet search QUERY -`, or audio
                is_text, stream = _stdin_library()
                if is_text:
                    Library.read(stream, into=lib, name="-", windows=args.where)  # (stdin itself stays open)
                    read.add(item)
                else:
                    streamed[item] = stream
            elif not os.path.isdir(item) and item.lower().endswith(_INDEX_SUFFIXES):
                if not os.path.lexists(item):  # said; the other libraries are searched
                    _err(f"{item}: file not found")  # (_err shows the name escaped)
                    rc = EXIT_FAIL
                    continue
                Library.read(item, into=lib, windows=args.where)
            elif _is_stream(item):  # `<(zcat lib.jsonl.gz)`, `/dev/stdin` from a pipe: read once
                is_text, stream = _open_stream(item)
                if is_text:
                    with stream:
                        Library.read(stream, into=lib, name=item, windows=args.where)
                    read.add(item)
                else:
                    streamed[item] = stream
            elif os.path.isfile(item) and _starts_like_json(item):  # lib.txt, `/dev/stdin < lib.jsonl`
                Library.read(item, into=lib, windows=args.where)
                read.add(item)
    except InstrunetError as e:
        _err(str(e))
        return EXIT_FAIL
    stale = lib.drop_stale()  # said once the folders are embedded: they may hold them again
    if lib.earlier:
        n = lib.earlier
        _say(
            f"instrunet: warning: {n} vector{'' if n == 1 else 's'} of the library embedded by an earlier "
            "instrunet (before 0.2.0: no hop recorded); its windows were not always today's, so the same "
            "model may embed those files otherwise now (embed them again to compare like with like)"
        )
    hop = args.hop if args.hop is not None else lib.hop
    try:
        query = model.embed(_source(args.query), hop=hop, workers=args.workers)
    except (InstrunetError, OSError) as e:
        _err(error_message(args.query, e))
        return EXIT_FAIL
    if lib.hop is not None and query.hop is not None and abs(query.hop - lib.hop) > 1e-6:
        _err(
            f"search: the library's vectors were made with a hop of {round(lib.hop, 3):g} s, not this "
            f"search's {round(query.hop, 3):g} s; search with --hop {round(lib.hop, 3):g} (or embed again)"
        )
        return EXIT_FAIL

    def failed(path: str, e: BaseException) -> None:
        nonlocal rc
        _err(error_message(path, e))
        rc = EXIT_FAIL

    def embed(paths: list[str]) -> None:
        for path in paths:  # one at a time: each file's error line comes as it is embedded
            Library.embed(
                model,
                [path],
                hop=hop,
                windows=args.where,
                into=lib,
                on_error=failed,
                workers=args.workers,
            )

    def embed_stream(name: str, stream: Any) -> None:
        try:
            with stream:
                emb = model.embed(stream, hop=hop, workers=args.workers)
        except (InstrunetError, OSError) as e:
            failed(name, e)
            return
        keep = ~emb.silent
        lib.add(
            "-",  # a stream names no file: a recording of its own, as stdin's
            emb.vector,
            emb.model,
            origin=name,
            windows=emb.windows[keep] if args.where else None,
            times=emb.times[keep] if args.where else None,
            hop=emb.hop,
        )

    try:
        for item in args.library:
            if item in streamed:
                embed_stream(item, streamed[item])
            elif item in read or item == "-" or _is_stream(item):
                continue  # read as a library above (each item's kind is decided once, there)
            elif os.path.isdir(item):
                embed(_folder_files(item))
            elif not item.lower().endswith(_INDEX_SUFFIXES):
                embed([item])
    except InstrunetError as e:
        _err(str(e))
        return EXIT_FAIL
    for path, why in stale:
        if path not in lib:  # not embedded again from a folder or file given
            said = "no longer exists" if why == "gone" else "changed since it was embedded (size or time)"
            _say(f"instrunet: warning: {_shown(path)}: {said}; left out (embed it again)")
    if not query.vector.any():
        _say(
            f"instrunet: warning: {_shown(args.query)}: the query is silent (no window has sound): "
            "it is similar to nothing, and every similarity is 0"
        )
    exclude = [args.query] if args.query != "-" else []
    matches = lib.nearest(query, k=args.top, exclude=exclude)
    size = lib.distinct
    if size == 0:
        _say("instrunet: warning: the library holds no recordings")
    if args.json:
        doc = {
            "schema": SEARCH_SCHEMA,
            "instrunet_version": instrunet_version(),
            "query": args.query,
            "model": query.model,
            "library_size": size,
            "matches": [m.to_dict() for m in matches],
        }
        _out(json.dumps(jsonable(doc)))
    else:
        among = " (the query among them, left out)" if args.query != "-" and args.query in lib else ""
        _say(
            f"{_shown(args.query)}: {len(matches)} of {size} recordings{among}, model {model.name} {model.version}"
        )
        if args.where and matches and all(m.where is None for m in matches):
            _say("(no match has its windows: embed the library with --windows, or give its folder)")
        for m in matches:
            at = ""
            if args.where:
                w = m.where
                if w is not None:
                    at = (
                        f"  at {format_time(w.start, decimals=2)}-{format_time(w.end, decimals=2)} "
                        f"({w.similarity:.4f})"
                    )
                else:  # its windows were kept and none sounds, or they were not kept
                    at = "  (silent)" if lib.has_windows(m.path) else "  (no windows)"
            _out(f"{m.similarity:7.4f}  {_shown(m.path)}{at}")
    return rc


# ---------------------------------------------------------------- analyze
#: Characters of one analyzer value the text summary shows (the JSON has it all).
SUMMARY_VALUE_CHARS = 80


def _clip(text: str, limit: int = SUMMARY_VALUE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis and the full length when cut."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters; see the JSON)"


def _text_of(result: dict[str, Any], key: str) -> str:
    """An analyzer result's ``key`` (``label``, ``reason``) as it reads: its ``<key>_text`` when
    the analyzer gives one (the condition analyzer's "broken / noisy", as the app writes it),
    else the value with underscores as spaces."""
    text = result.get(f"{key}_text")
    return text if isinstance(text, str) and text else str(result.get(key, "?")).replace("_", " ")


def summarize_extra(name: str, extra: Any) -> str:
    """One readable line for an analyzer's result: its ``label`` (as its ``label_text`` reads,
    with that label's probability and how many seconds it judged, when it says), its ``error`` (with the plugin that
    registered it), or its first few plain values (long strings cut to
    :data:`SUMMARY_VALUE_CHARS` characters)."""
    if not isinstance(extra, dict):
        return f"{name}: {_clip(str(extra))}"
    if "error" in extra:
        plugin = f" (plugin {extra['plugin']!s})" if extra.get("plugin") else ""
        return f"{name}{plugin}: failed: {_clip(str(extra['error']), 160)}"
    if "label" in extra:
        parts = [_clip(_text_of(extra, "label"))]
        if isinstance(extra.get("reason"), str):  # why there is no verdict: "unknown (too short)"
            parts[0] += f" ({_clip(_text_of(extra, 'reason'))})"
        probs = extra.get("probabilities")
        if isinstance(probs, dict) and isinstance(probs.get(extra["label"]), (int, float)):
            parts.append(f"probability {float(probs[extra['label']]):.2f}")
        if isinstance(extra.get("seconds"), (int, float)) and extra["seconds"]:
            parts.append(f"on {float(extra['seconds']):.1f} s of sound")
        per = extra.get("instruments")
        if isinstance(per, dict) and per:
            each = [f"{k} {_text_of(v, 'label')}" for k, v in per.items() if isinstance(v, dict)]
            if each:
                parts.append("per instrument: " + "; ".join(each))  # (a label may hold a comma)
        return f"{name}: " + "; ".join(parts)
    plain = [(k, v) for k, v in extra.items() if isinstance(v, (str, int, float, bool))][:4]
    if not plain:
        return f"{name}: {len(extra)} fields (see the JSON)"
    return f"{name}: " + ", ".join(
        f"{_clip(k)} {v:.3g}" if isinstance(v, float) else f"{_clip(k)} {_clip(str(v))}" for k, v in plain
    )


def _columns(text: str) -> int:
    """Terminal columns ``text`` takes: East Asian wide and full-width characters two, combining
    marks and zero-width joiners none, the rest one."""
    import unicodedata

    return sum(
        0
        if unicodedata.combining(ch) or ch in "\u200b\u200c\u200d"
        else 2
        if unicodedata.east_asian_width(ch) in ("W", "F")
        else 1
        for ch in text
    )


def _print_analysis(an: Any) -> None:
    from .timeline import format_ranges, format_time

    _out(
        f"{_shown(an.source)}: {format_time(an.duration, decimals=1)} ({an.duration:.2f} s), "
        f"model {an.model['name']} {an.model['version']}"
    )
    _out(
        f"overall: {an.label} (mean probability {an.confidence:.3f})"
        + (f", low evidence: {an.prediction.sounding_seconds:.2f} s of sound" if an.low_evidence else "")
        + ("" if an.prediction.other is None else f"; none of the labels: {an.prediction.other:.3f}")
    )
    other_at = an.settings.get("other_threshold")
    _out(
        "timeline (window start-end, level, most probable "
        + ("families" if tuple(an.labels) == FAMILIES else "labels")
        + ('; "other": none of them' if other_at is not None else "")
        + "):"
    )
    for s in an.timeline:
        if s.silent:
            desc = "silence"
        else:
            top = sorted(s.probabilities.items(), key=lambda kv: -kv[1])[:3]
            # a window an open-set model answers "other" (at its threshold and above every
            # family) says so first: noise reads "other 1.00, guitar 0.98", not "guitar 0.98"
            if s.other is not None and other_at is not None and answers_other(s.other, top[0][1], other_at):
                top = [("other", s.other), *top[:2]]
            desc = ", ".join(f"{k} {v:.2f}" for k, v in top)
        _out(
            f"  {format_time(s.start, decimals=2)}-{format_time(s.end, decimals=2)}  {s.rms_db:7.1f} dB  {desc}"
        )
    if an.instruments:
        _out("detected instruments: mean probability, share of the sound, intensity, where")
        width = max(10, *(_columns(ins.label) for ins in an.instruments))
        for ins in an.instruments:
            pad = " " * (width - _columns(ins.label))  # (in terminal columns: 二胡 takes four)
            _out(
                f"  {ins.label}{pad} {ins.mean_probability:.2f}  {ins.presence:4.0%}  {ins.intensity:.2f}  "
                f"{format_ranges(ins.ranges)}"
            )
    else:
        _out("detected instruments: none" + (" (silence)" if an.silent else ""))
    if an.other_ranges():
        _out(f"other sounds (none of the labels): {format_ranges(an.other_ranges())}")
    for name, extra in an.extras.items():
        _out(_shown(summarize_extra(name, extra)))


def _make_parent(out: str) -> None:
    """Create the folder an output file goes into (``-``, stdout, has none).

    Raises
    ------
    OutputError
        It cannot be created (a file where a folder should be is named).
    """
    from .writers import make_folder

    make_folder(out)


def _analyzers_arg(text: str | None) -> bool | list[str]:
    if text is None:
        return True
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return False
    if not names or "none" in names:
        raise InputError(f"--analyzers: give 'none' or analyzer names separated by commas, got {text!r}")
    return names


def _analyze(args: argparse.Namespace) -> int:
    from . import writers
    from ._analyzer_threads import resolve_limit
    from .errors import PluginError
    from .orchestration import analyze, analyzer_names
    from .registry import get_registry

    if (args.format is None) != (args.out is None):
        _err("--format and --out go together")
        return EXIT_USAGE
    outputs = []
    if args.json:
        outputs.append(("json", args.json))
    if args.csv:
        outputs.append(("csv", args.csv))
    if args.format:
        outputs.append((args.format, args.out))
    if args.plot:
        outputs.append((_PLOT, args.plot))  # the png writer, in the format its name asks for
    # `--json /dev/stdout` is `--json -` (it was written into stderr's file: an output audit)
    outputs = [(fmt, "-" if _is_stdout(t) else t) for fmt, t in outputs]
    targets = [t for _, t in outputs]
    for t in targets:
        if _same_file(t, args.file):
            _err(f"{t}: is the input file; refusing to overwrite it (choose another output path)")
            return EXIT_USAGE
    named = [t for t in targets if t != "-"]
    if any(_same_file(a, b) for i, a in enumerate(named) for b in named[i + 1 :]):  # hard links too
        _err("--json, --csv, --out and --plot must name different files")
        return EXIT_USAGE
    if targets.count("-") > 1:
        _err("only one output can go to stdout ('-')")
        return EXIT_USAGE
    try:  # an output that cannot be written is said now, not after the analysis of hours of audio
        for t in targets:
            writers.check_writable(t)
    except OutputError as e:
        _err(str(e))
        return EXIT_FAIL
    plotted = args.plot or args.format == "png"  # the png writer (also SVG by the name asked for)
    if plotted:  # a matplotlib missing, or one that cannot import, is said before the file is read
        from . import plots

        try:
            plots.new_figure(1.0, 1.0)
        except InstrunetError as e:
            _err(f"{'--plot' if args.plot else '--format png'}: {e}")
            return EXIT_FAIL
    with _plugin_stdout():
        reg = get_registry()
    try:  # a format or an analyzer that is not there: a bad command line, said before any audio is read
        analyzers = _analyzers_arg(args.analyzers)
        if analyzer_names(reg, analyzers):
            resolve_limit(args.analyzer_timeout)  # $INSTRUNET_ANALYZER_TIMEOUT checked here too
        if args.format is not None:
            reg.writer(args.format)
    except (InputError, PluginError) as e:
        _err(f"--format: {e}" if isinstance(e, PluginError) else str(e))
        return EXIT_USAGE
    try:
        model = _load(args.model, args)
    except (InstrunetError, OSError) as e:
        return _model_failed(e)
    if args.embed and model.embedding_dim is None:  # said before the file is read, not blamed on it
        _err(f"--embed: {model.name} {model.version} has no embedding output (choose a model that has one)")
        return EXIT_USAGE
    try:
        # Analyzer plugins run inside: whatever they (or native code they call) write to file
        # descriptor 1 goes to stderr, never into `--json -`.
        with _plugin_stdout():
            an = analyze(
                _source(args.file),
                model=model,
                hop=args.hop,
                smoothing=args.smoothing,
                min_duration=args.min_duration,
                other_veto=args.other_veto,
                leading=args.leading,
                workers=args.workers,
                embeddings=args.embed,
                analyzers=analyzers,
                analyzer_timeout=args.analyzer_timeout,
            )
    except (InstrunetError, OSError) as e:
        _err(error_message(args.file, e))
        return EXIT_FAIL
    if an.source != args.file:
        an.source = args.file  # '-' rather than '<stdin>'
    rc = EXIT_OK
    for fmt, out in outputs:
        try:
            _make_parent(out)
            writer = writers.write_plot if fmt == _PLOT else reg.writer(fmt)
            before = file_identity(out) if out != "-" else None
            written = writers.stdout_writes
            # a writer's prints go to stderr, also when its data goes to stdout (write_stdout)
            with _plugin_stdout():
                writer(an, out)
            unwritten = before is not None and os.path.isfile(out) and file_identity(out) == before
            if out != "-" and (not os.path.exists(out) or unwritten):
                # a plugin writer that returned without writing: said, not taken for a success
                _err(f"{out}: writer {fmt!r} returned without writing it")
                rc = EXIT_FAIL
            elif out == "-" and writers.stdout_writes == written:
                # (its print() or sys.stdout.write went to stderr; open("-") made a file named -)
                _err(
                    f"-: writer {fmt!r} wrote nothing to stdout (a writer writes '-' through "
                    "instrunet_core.writers: atomic_write_text, atomic_write_bytes or write_stdout)"
                )
                rc = EXIT_FAIL
        except (KeyboardInterrupt, BrokenPipeError):
            raise  # (stdout closed by its reader: main stops quietly; not the writer's failure)
        except OutputError as e:  # the writer layer names the path and the problem
            _err(str(e))
            if out == "-":
                _drop_stdout()  # reported once: its buffered rest is not written again at exit
            rc = EXIT_FAIL
        except BaseException as e:  # noqa: BLE001 - a plugin writer must not crash the CLI, nor exit it
            _err(f"{out}: writer {fmt!r} failed: {_describe(e)}")
            rc = EXIT_FAIL
    # The summary comes after the files: a stdout that cannot be written costs no output file.
    if "-" not in targets:
        _print_analysis(an)
    return rc


def _describe(e: BaseException) -> str:
    if isinstance(e, InstrunetError):
        return str(e)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ---------------------------------------------------------------- batch
def _batch(args: argparse.Namespace) -> int:
    from .batch import (
        ResultsFile,
        ResultsLocked,
        collect_files,
        earlier_text,
        file_record,
        is_results_file,
        pending,
        pending_text,
    )

    try:
        files = collect_files(args.dir)
    except InputError as e:
        _err(str(e))
        return EXIT_FAIL
    out = args.out
    if os.path.realpath(out) in files:
        if is_results_file(out):  # this batch's own results, named like audio inside DIR: not an input
            files.remove(os.path.realpath(out))
        else:
            _err(f"{out}: is one of the input files; refusing to overwrite it (choose another --out)")
            return EXIT_USAGE
    if not files:  # a mistyped or unmounted folder is not a finished job (embed says so too)
        _say(
            f"instrunet: warning: {_shown(args.dir)}: no audio files under it; nothing written to {_shown(out)}"
        )
        return EXIT_OK
    try:
        model = _load(args.model, args)
    except InstrunetError as e:
        return _model_failed(e)
    if os.path.exists(out) and not os.path.isfile(out):
        _err(f"{out}: not a regular file (batch results are read back to resume and appended to)")
        return EXIT_USAGE
    clf = model.classifier(hop=args.hop, workers=args.workers)
    try:
        results = ResultsFile(out)
    except (ResultsLocked, InputError, OutputError) as e:  # locked; not results; no folder
        _err(str(e))
        return EXIT_FAIL
    except OSError as e:
        _err(f"{out}: cannot write: {e.strerror or e}")
        return EXIT_FAIL
    with results:
        try:
            results.check_model(model_info(model))
            results.check_hop(clf.hop_seconds)
        except InputError as e:
            _err(str(e))
            return EXIT_FAIL
        if results.earlier:
            _say(f"instrunet: warning: {_shown(earlier_text(out, results.earlier))}")
        todo, changed = pending(files, results.done)
        n = len(todo)
        _say(f"instrunet batch: {pending_text(len(files), n, changed)}")
        failed = 0
        try:
            for i, path in enumerate(todo, 1):
                rec = file_record(clf, path)
                if "error" in rec:
                    failed += 1
                    _err(rec["error"])
                results.append(rec)
                _say(f"[{i}/{n}] {_shown(path)}")
        except OutputError as e:  # the record was rolled back: a rerun redoes this file
            _err(f"{e}; the results so far are kept, rerun to resume")
            return EXIT_FAIL
    if failed:  # the errors above are among thousands of progress lines: say how many at the end
        _say(
            f"instrunet batch: {failed} of {n} file{'' if n == 1 else 's'} failed (their error records are in "
            f"{_shown(out)}; a rerun tries them again)"
        )
    return EXIT_FAIL if failed else EXIT_OK


# ---------------------------------------------------------------- models / plugins
def _models(args: argparse.Namespace) -> int:
    from .registry import get_registry
    from .verify import verify_artifact

    with _plugin_stdout():
        reg = get_registry()
    try:
        default_entry = reg.resolve_model(None)
    except InstrunetError as why:
        default_entry = None
        if os.environ.get("INSTRUNET_DEFAULT_MODEL", "").strip():  # the listing is where to notice it
            _say(f"instrunet: warning: {_shown(str(why))}; no model is the default")
    rows = []
    failed = False
    for e in reg.models:
        row: dict[str, Any] = {
            "name": e.name,
            "version": e.version,
            "default": e is default_entry,
            "path": str(e.path),
            "plugin": e.plugin,
        }
        m = e.manifest
        if m is not None:
            row.update(
                sha256=m.sha256,
                sha256_actual=None,
                sha256_ok=False,
                labels=list(m.labels),
                task=m.task,
                # what changes a timeline's answers or a vector index, without reading manifest.json
                other_threshold=m.other_threshold,
                other_veto=m.other_veto,
                leading=m.leading,
                margins=m.margins,
                embedding_dim=m.embedding_dim,
                metrics=dict(m.metrics),
                parity=dict(m.parity),
            )
            try:
                row.update(
                    sha256_actual=verify_artifact(e.path, references=False, manifest=m).sha256, sha256_ok=True
                )
                if args.check:
                    c = verify_artifact(e.path, references=True, manifest=m)
                    row["references"] = {
                        "n": c.n_references,
                        "max_abs_diff": c.max_abs_diff,
                        "top1_agreement": c.top1_agreement,
                    }
            except InstrunetError as ex:
                row["error"] = str(ex)
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as ex:  # noqa: BLE001 - one model the check trips over never hides the others
                row["error"] = f"{e.path}: the check failed: {describe(ex)}"
        if e.error:
            row["error"] = e.error
        failed = failed or "error" in row
        rows.append(row)
    if args.json:
        _out(json.dumps(rows, indent=2))
    elif not rows:
        _out("no models installed")
    else:
        for r in rows:
            flag = " (default)" if r["default"] else ""
            if "labels" in r:
                # "ok" only for a model that passed everything asked; the error line says why not
                # (without --check only the file's sha256 was checked: "matches", not "ok", since a
                # graph that cannot load or run passes that)
                passed = "ok" if args.check else "matches (--check loads and runs it)"
                ok = passed if not r.get("error") else "matches; FAILED" if r["sha256_ok"] else "FAILED"
                refs = ""
                if "references" in r:
                    ref = r["references"]
                    refs = (
                        f", references {ref['n']} reproduced (max |diff| {ref['max_abs_diff']:.2g})"
                        if ref["n"]
                        else ", no references stored (outputs checked on test input)"
                    )
                _out(
                    f"{r['name']} {r['version']}{flag}: {r['task']}, {len(r['labels'])} label{'' if len(r['labels']) == 1 else 's'}, "
                    f"sha256 {r['sha256'][:12]}... {ok}{refs}, {_shown(r['path'])}"
                )
            else:
                _out(f"{r['name']} {r['version']}: {_shown(r['path'])}")
            if r.get("error"):
                _out(f"  error: {_shown(r['error'])}")
    # A broken artifact is listed, not a failure of the listing; --check makes it one.
    return EXIT_FAIL if args.check and failed else EXIT_OK


def _plugins(args: argparse.Namespace) -> int:
    from .registry import get_registry

    with _plugin_stdout():
        reg = get_registry()
    rows = [p.to_dict() for p in reg.plugins]
    if args.json:
        _out(json.dumps(rows, indent=2))
    else:
        for r in rows:
            tag = " [built-in]" if r["builtin"] else ""
            # a plugin slow to import slows every command: said where it is listed
            slow = f" (loaded in {r['seconds']:.1f} s)" if r["seconds"] >= SLOW_PLUGIN_SECONDS else ""
            _out(f"{r['name']} {r['version'] or '?'}{tag}: {', '.join(r['hooks']) or 'no hooks'}{slow}")
            if r["analyzers"]:
                _out(f"  analyzers: {', '.join(r['analyzers'])}")
            if r["error"]:
                _out(f"  error: {_shown(r['error'])}")
        if reg.writers:
            _out(f"writers: {', '.join(sorted(reg.writers))}")
        if reg.analyzers:
            _out(f"analyzers: {', '.join(sorted(reg.analyzers))}")
    return EXIT_OK


def _surrogate_safe_stdout() -> None:
    """File names that are not valid UTF-8 reach Python surrogate-escaped; print them back as
    the original bytes instead of failing with UnicodeEncodeError."""
    out = sys.stdout
    if out is not None and hasattr(out, "reconfigure"):
        try:
            out.reconfigure(errors="surrogateescape")
        except (ValueError, OSError):
            pass


def _drop_stdout() -> None:
    """stdout is gone (its reader left, or it cannot be written): point it at /dev/null, so that
    Python does not complain again when it flushes stdout at exit."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def _flush_stdout() -> None:
    """Flush what is still buffered (argparse's help, ``--version``).

    Raises
    ------
    OutputError, BrokenPipeError
    """
    from .writers import write_stdout

    if sys.stdout is not None:
        write_stdout("")


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager stopping the command): unwinds as Ctrl-C does, so temporary
    files are removed and locks released on the way out."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While the command runs in the main thread with SIGTERM's default action (which ends the
    process at once, leaving a half-written output's temporary file behind), SIGTERM raises
    :class:`_Terminated` instead; the handler before is put back afterwards."""
    import signal

    try:
        if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        ):
            yield
            return
    except (AttributeError, ValueError):  # pragma: no cover - a platform without SIGTERM
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    # SIGHUP too (a terminal or ssh session closed): it left a half-written output's temporary
    # file behind, never removed (an interruption audit)
    hup = getattr(signal, "SIGHUP", None)
    hup_was = signal.getsignal(hup) if hup is not None else None
    signal.signal(signal.SIGTERM, stop)
    if hup is not None and hup_was is signal.SIG_DFL:
        signal.signal(hup, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if hup is not None and hup_was is signal.SIG_DFL:
            signal.signal(hup, signal.SIG_DFL)


def _ignore_stops() -> None:
    """The command was stopped (Ctrl-C, SIGTERM): while the interpreter winds down (it waits for
    the worker threads' last batches), a second Ctrl-C printed a traceback from inside that wait
    and often aborted the process (SIGABRT, an onnxruntime thread still running); the stop is
    already under way, so further stops are ignored (the console command only: a host calling
    ``main()`` keeps its handlers)."""
    import signal

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``instrunet`` command; returns the exit code."""
    _reserve_std_fds()
    _surrogate_safe_stdout()
    try:
        try:
            with _warnings_as_lines(), _sigterm_unwinds():
                code = _run(argv)
            if argv is None and code > 128:
                _ignore_stops()
            return code
        finally:
            _flush_stdout()
    except BrokenPipeError:
        # stdout closed by its reader (e.g. `| head`): stop quietly.
        _drop_stdout()
        return EXIT_FAIL
    except OutputError as e:
        _err(str(e))
        _drop_stdout()
        return EXIT_FAIL


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a usage error: its help goes where errors go (stdout is for data)
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handler = {
        "classify": _classify,
        "analyze": _analyze,
        "embed": _embed,
        "search": _search,
        "batch": _batch,
        "models": _models,
        "plugins": _plugins,
    }
    try:
        with contextlib.ExitStack() as stack:
            if args.command in ("classify", "analyze", "embed", "search", "batch"):  # (they decode)
                stack.enter_context(_decoder_chatter_dropped())
            return handler[args.command](args)
    except MemoryError:  # numpy's, in any command: one line, not its traceback
        # (the file only where the command reads one: which of several was being read is not known)
        where = f"{_shown(args.file)}: " if args.command == "analyze" else f"{args.command}: "
        _err(f"{where}out of memory (give the process more memory, or fewer --workers)")
        return EXIT_FAIL
    except _Terminated as e:
        import signal

        signum = int(e.args[0]) if e.args else int(signal.SIGTERM)
        _err("terminated" if signum == signal.SIGTERM else f"terminated ({signal.Signals(signum).name})")
        return 128 + signum  # as a shell reports it: 143 for SIGTERM, 129 for SIGHUP
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except (BrokenPipeError, OutputError):
        raise
    except InstrunetError as e:
        _err(str(e))
        return EXIT_FAIL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
