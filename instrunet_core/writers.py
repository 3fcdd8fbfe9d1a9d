"""The writer layer: every file instrunet writes goes through here, and the built-in writers.

* :func:`atomic_write_bytes` / :func:`atomic_write_text`: the whole content at once; ``"-"``
  means stdout.
* :func:`atomic_path`: a temporary path for a library that writes by file name (an audio
  encoder, Parquet, ``np.savez``), renamed over the target when the block ends without error.
* :func:`write_stdout`: text or bytes on standard output, flushed.

A write that fails (a full disk, a closed or full stdout, a folder that cannot be created)
raises :class:`~instrunet_core.errors.OutputError` naming the path (``-`` for stdout) and the
problem, so that the CLI reports it in one line; a closed pipe stays a ``BrokenPipeError``
(the reader has gone: ``| head``).

Either way the data goes into a uniquely named temporary file next to the target, then is
renamed over it (:func:`os.replace`), so concurrent writers to one path never share a
temporary file and a reader never sees half a file; the temporary file is removed if anything
fails. A target that exists keeps its permission bits; a symlink is written through (the file
it points to is replaced, the link stays); a FIFO or a character device (``/dev/null``,
``/dev/stdout``) is written into, never replaced, and so is a file with other hard links (once
the whole content is in the temporary file); any other kind of file (a folder, a block
device, a socket) is refused with an :class:`~instrunet_core.errors.OutputError`.

The built-in writers (registered by :mod:`instrunet_core.default_plugins`) are ``json``,
``csv`` (one row per window), ``ranges`` (one CSV row per detected range), ``audacity`` (the
ranges as an Audacity label track), ``jams`` (the ranges as a JAMS annotation, the JSON format
of MIR tools) and ``png`` (the timeline plot of ``instrunet analyze --plot``, drawn by
:mod:`instrunet_core.plots`; needs matplotlib). A writer is called as
``writer(analysis, path)``; ``path == "-"`` means stdout, for every writer.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import io
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InputError, InstrunetError, OutputError
from .output import data_stdout, instrunet_version
from .plots import activity_figure
from .timeline import format_time, range_decimals

__all__ = [
    "write_stdout",
    "write_json",
    "write_csv",
    "write_ranges",
    "write_audacity",
    "write_jams",
    "write_png",
    "write_plot",
    "detected_ranges",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_path",
    "make_folder",
    "check_writable",
    "figure_bytes",
]


def _umask() -> int:
    """The process umask, read without changing it (Linux); 0o022 elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _cannot_write(target: str, e: BaseException) -> OutputError:
    what = "cannot write to stdout" if target == "-" else "cannot write"
    reason = e.strerror if isinstance(e, OSError) and e.strerror else (str(e) or type(e).__name__)
    if isinstance(e, (NotADirectoryError, FileExistsError)) and target != "-":
        blocker = _file_on_the_way(target)
        if blocker is not None:
            reason = f"{blocker} is not a directory"
    return OutputError(f"{target}: {what}: {reason}")


def _file_on_the_way(target: str) -> str | None:
    """The first of ``target``'s folders that exists but is not a folder (``in.wav`` of
    ``in.wav/x.json``), or ``None``."""
    for parent in reversed(Path(target).parents):
        if parent.exists() and not parent.is_dir():
            return str(parent)
    return None


#: What a target that is neither a regular file, a FIFO nor a character device is called.
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _destination(target: str) -> tuple[str, os.stat_result | None]:
    """Where an output named ``target`` goes, and what is there now (``None``: nothing yet).

    A regular file (or nothing) is replaced at the path returned: ``target`` itself, or the
    file a symlink ``target`` points to, so that the link stays. A FIFO or a character device
    comes back as ``target`` with its status: it is written into, not replaced.

    Raises
    ------
    OutputError
        ``target`` is a directory, a block device or a socket, or cannot be looked at (a
        file where a folder of its path should be, a loop of symlinks, no permission).
    """
    try:
        st: os.stat_result | None = os.stat(target)  # through symlinks (/dev/stdout too)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise _cannot_write(target, e) from None
    if st is not None and not (
        stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)
    ):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "a special file")
        raise OutputError(
            f"{target}: cannot write: it is {kind}, not a regular file, a FIFO or a character device"
        )
    if st is not None and not stat.S_ISREG(st.st_mode):
        return target, st
    # a symlink (even one to a file not there yet) is written through, as a shell's `>` does
    return (os.path.realpath(target) if os.path.islink(target) else target), st


def make_folder(path: str | os.PathLike[str]) -> None:
    """Create the folder an output file goes into, and its parents (``"-"``, stdout, has none).

    Raises
    ------
    OutputError
        The folder cannot be created; a file where one of its folders should be is named
        (``in.wav/x.json: cannot write: in.wav is not a directory``).
    """
    target = os.fspath(path)
    if target == "-":
        return
    try:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _cannot_write(target, e) from None


#: How many times :func:`write_stdout` was called: the command line tells from it whether a
#: writer asked for ``-`` wrote to stdout at all.
stdout_writes = 0


def write_stdout(data: str | bytes) -> None:
    """Write ``data`` to standard output and flush it (bytes to its binary buffer).

    Raises
    ------
    OutputError
        stdout is closed (``>&-``), full (``> /dev/full``) or otherwise unwritable.
    BrokenPipeError
        Its reader has gone (``| head``): the caller decides whether that is an error.
    """
    # while plugin code runs with its prints sent to stderr, the stdout from before (a writer's
    # data reaches stdout, its prints do not)
    out = data_stdout()
    if out is None:
        raise OutputError("-: cannot write to stdout: it is closed")
    global stdout_writes
    stdout_writes += 1  # (empty data too: an empty label track is a writer's whole output)
    try:
        # (an empty write reached the file: `> /dev/full` failed a command that wrote nothing)
        if isinstance(data, bytes):
            out.flush()
            if data:
                out.buffer.write(data)
            out.buffer.flush()
        else:
            if data:
                out.write(data)
            out.flush()
    except BrokenPipeError:
        raise
    except (OSError, ValueError, AttributeError) as e:  # ValueError: closed file; AttributeError: no .buffer
        raise _cannot_write("-", e) from None


def check_writable(path: str | os.PathLike[str]) -> None:
    """Say before long work what writing ``path`` would say after it: a directory or special
    file there, a file on the way of its folders, a folder (or the nearest one that exists)
    that cannot be written, a read-only file. Nothing is created (``"-"``: stdout, unchecked).

    Raises
    ------
    OutputError
        As :func:`atomic_path` and :func:`make_folder` would, naming ``path``.
    """
    target = os.fspath(path)
    if target == "-":
        return
    dest, st = _destination(target)
    if st is not None and not stat.S_ISREG(st.st_mode):
        return  # a FIFO or a device: written into when the time comes
    folder = os.path.dirname(os.path.abspath(dest))
    while not os.path.exists(folder):  # made when written: the nearest folder that exists
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise _cannot_write(target, NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)))
    checks = [] if st is not None and st.st_nlink > 1 else [(folder, os.W_OK | os.X_OK)]  # (a hard
    # link is written into, not replaced: its folder is not written)
    checks += [(dest, os.W_OK)] if st is not None else []
    for where, mode in checks:
        if not os.access(where, mode) or _read_only_mount(where):
            why = errno.EROFS if _read_only_mount(where) else errno.EACCES
            raise _cannot_write(target, PermissionError(why, os.strerror(why)))


def _read_only_mount(path: str) -> bool:
    """Whether ``path`` lies on a file system mounted read-only (``os.access`` says only "no")."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; ``"-"`` writes to stdout.

    The temporary file is created by :func:`tempfile.mkstemp` in the target's folder
    (``.<name>.<random>.tmp``), given the permissions of the file it replaces (a new one: the
    usual ``0o666 & ~umask``), then moved over ``path`` with :func:`os.replace`; it is removed
    if anything fails. Symlinks, FIFOs and character devices are handled as by
    :func:`atomic_path`.
    """
    if os.fspath(path) == "-":
        write_stdout(text)
        return
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """:func:`atomic_write_text` for bytes; ``"-"`` writes to stdout's binary buffer."""
    target = os.fspath(path)
    if target == "-":
        write_stdout(data)
        return
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = "") -> Iterator[str]:
    """A new, uniquely named temporary file next to ``path`` for the block to write; renamed
    over ``path`` when the block ends without error, removed when it raises.

    The file is created by :func:`tempfile.mkstemp` in the target's folder
    (``.<name>.<random>.tmp<suffix>``: ``suffix`` keeps an extension a library reads the format
    from) and given the permissions of the file it replaces (a new one: the usual
    ``0o666 & ~umask``) before the rename. A symlink ``path`` is written through: the file it
    points to is replaced and the link stays. A FIFO or a character device (``/dev/null``,
    ``/dev/stdout``) is not replaced: the temporary file is made in the system's temporary
    folder and copied into it (a FIFO waits for its reader, as a shell's ``>`` does). Nor is a
    file with other hard links: the whole content is written to the temporary file next to it
    first, then copied into it, so that every link sees the new content (not atomic for a
    reader, as a shell's ``>`` is not; a failed write leaves the file as it was).

    Raises
    ------
    InputError
        ``path`` is ``"-"``: stdout has no file to rename over.
    OutputError
        ``path`` is a directory, a block device or a socket, or a file the caller may not write
        (read-only); or the temporary file cannot be created, written (an ``OSError`` in the
        block: a full disk) or renamed; other errors of the block pass through unchanged.
    """
    target = os.fspath(path)
    if target == "-":
        raise InputError("-: this output cannot go to stdout (it is written by file name)")
    dest, st = _destination(target)
    if st is not None and not os.access(dest, os.W_OK):
        # a file its owner made read-only (chmod 444) is not replaced behind its back, as a
        # shell's `>` would not write it (root may write anything: os.access says so)
        why = errno.EROFS if _read_only_mount(dest) else errno.EACCES
        raise _cannot_write(target, PermissionError(why, os.strerror(why)))
    special = st is not None and not stat.S_ISREG(st.st_mode)  # a FIFO or a device
    # written into, not replaced: a FIFO, a device, and a file with other hard links (a rename
    # would leave them holding the old content)
    into = special or (st is not None and st.st_nlink > 1)
    folder, base = os.path.split(dest)
    # the temporary name must fit the file system's 255 bytes where the target's name does: the
    # target's name is cut to leave room for mkstemp's 8 characters and the suffixes
    room = 255 - len(f"..{'x' * 8}.tmp{suffix}".encode())
    stem = os.fsdecode(os.fsencode(base)[: max(0, room)])
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=None if special else (folder or ".")
        )
        os.close(fd)
    except OSError as e:
        raise _cannot_write(target, e) from None
    try:
        yield tmp
        if into and not special:
            _copy_into_linked(tmp, target)
            os.unlink(tmp)
        elif into:
            with open(tmp, "rb") as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            os.unlink(tmp)
        else:
            os.chmod(tmp, stat.S_IMODE(st.st_mode) & 0o777 if st is not None else 0o666 & ~_umask())
            os.replace(tmp, dest)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, InstrunetError):
            raise _cannot_write(target, e) from None
        raise


def _copy_into_linked(tmp: str, target: str) -> None:
    """Copy ``tmp`` over a regular file with other hard links, which must see the new content,
    so that a full disk or a signal cannot leave it half written: the space is reserved first
    (``posix_fallocate`` to the larger of the two sizes: a full disk refuses before anything
    is touched), then the content is written over the old from its start and the file cut to
    its length with SIGINT, SIGTERM and SIGHUP held back (delivered once it is whole). Before, the
    file was emptied first: an interrupted or failed copy left both names holding a torn file."""
    size = os.path.getsize(tmp)
    with open(target, "r+b") as out:
        old = os.fstat(out.fileno()).st_size
        if size > old:
            try:
                os.posix_fallocate(out.fileno(), 0, size)
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise  # ENOSPC: refused with the file as it was
                free = os.statvfs(target)
                if free.f_bavail * free.f_frsize < size - old:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None
        with _signals_held(), open(tmp, "rb") as src:
            shutil.copyfileobj(src, out)
            out.truncate(size)
            out.flush()


_HELD_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold back the signals that stop a command while the block runs, then deliver them.

    Python runs signal handlers on the main thread whichever thread the kernel hands a signal
    to, so a thread's signal mask is not enough while other threads live (the pipeline's, an
    analyzer's): on the main thread the handlers themselves are replaced by a recorder for the
    block, and what arrived is handed on once it ends, to the handlers put back. Elsewhere no
    handler runs, so none can stop the block; a signal whose action is the default one (SIGTERM
    in a server) still ends the process there, and the copy with it (docs/plugins.md).

    Only handlers Python installed are replaced: a signal handled by the host's native code (an
    application embedding Python without its handlers, where ``signal.getsignal`` is ``None``,
    or a native handler installed after Python started, seen with ``sigaction`` on Linux), or
    ignored (by Python or, behind its back, natively), is left alone. Before, such a handler
    could not be put back: the write raised ``TypeError`` and the host's handlers were lost for
    good (a host audit). A held signal is handed on by calling the handler put back, not raised
    again: the C-level handler has already woken a host's event loop for it (asyncio's
    ``add_signal_handler``), which a second raise woke a second time."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    saved: dict[int, Any] = {}
    for sig in _HELD_SIGNALS:
        with contextlib.suppress(ValueError, OSError):
            handler = signal.getsignal(sig)
            if handler is None or handler == signal.SIG_IGN or not _python_owns(sig, handler):
                continue
            saved[sig] = signal.signal(sig, lambda n, frame: got.append(n))
    try:
        yield
    finally:
        for sig, handler in saved.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, handler)
        for n in dict.fromkeys(got):
            handler = saved.get(n)
            if callable(handler):
                handler(n, None)
            else:  # the default action (end the process): only the kernel can take it
                signal.raise_signal(n)


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    """The C library, loaded once (it was loaded again for every signal of every copy)."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _native_action(sig: int) -> int | None:
    """The C-level handler of ``sig`` (``0``: the default action, ``1``: ignored, else the
    address of a function), read with ``sigaction``; ``None`` when it cannot be read (not
    Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = _libc()
        act = (ctypes.c_void_p * 32)()  # struct sigaction: its handler is the first member
        if libc.sigaction(int(sig), None, ctypes.byref(act)) != 0:
            return None
        return int(act[0] or 0)
    except (OSError, AttributeError, ValueError):
        return None


def _python_owns(sig: int, handler: Any) -> bool:
    """Whether the process's action for ``sig`` is what Python's record of it says: a signal
    whose record is the default action must have no C-level handler (native code installed
    one after Python started: a host's, which swapping would lose), and one with a Python
    handler must not have been reset or ignored natively behind Python's back."""
    native = _native_action(sig)
    if native is None:  # cannot be told: Python's record it is
        return True
    if handler == signal.SIG_DFL:
        return native == 0
    return native not in (0, 1)


def _ignored_natively(sig: int) -> bool:
    """Whether the process ignores ``sig`` at the C level (Linux; ``False`` when it cannot be
    told)."""
    return _native_action(sig) == 1


def figure_bytes(fig: Any, fmt: str = "png", *, dpi: int = 100) -> bytes:
    """A matplotlib ``Figure`` rendered to bytes (``fmt``: any format matplotlib writes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    return buf.getvalue()


def write_json(analysis: Any, path: str | os.PathLike[str]) -> None:
    """Write ``analysis.to_dict()`` (``instrunet.analysis/3``) as indented UTF-8 JSON.

    Encoded in pieces as it is written (the same text as ``json.dumps(..., indent=2)``): with
    embeddings, one line per number of every window's vector, and the whole text at once (with
    the list of its pieces ``json.dumps`` joins) took hundreds of MB for an hour of audio.
    """
    pieces = _analysis_json_pieces(analysis)
    if os.fspath(path) == "-":
        buf: list[str] = []
        for piece in pieces:
            buf.append(piece)
            if len(buf) >= 65536:
                write_stdout("".join(buf))
                buf = []
        write_stdout("".join(buf) + "\n")
        return
    with atomic_path(os.fspath(path)) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for piece in pieces:
            f.write(piece)
        f.write("\n")


#: Stands in the document for the embedding's window rows, which are written one at a time.
_ROWS_MARK = "\x00instrunet: embedding windows\x00"


def _analysis_json_pieces(analysis: Any) -> Iterator[str]:
    """``json.dumps(analysis.to_dict(), indent=2)`` in pieces; an embedding's window rows are
    encoded one at a time where the document holds them (``embedding.windows``, two levels
    down), never as one nested list of Python floats."""
    enc = json.JSONEncoder(indent=2, allow_nan=False)
    emb = getattr(analysis, "embedding", None)
    if emb is None or not len(emb.windows):
        yield from enc.iterencode(analysis.to_dict())
        return
    d = analysis.to_dict(embedding_windows=False)
    d["embedding"]["windows"] = _ROWS_MARK
    mark = enc.encode(_ROWS_MARK)
    for piece in enc.iterencode(d):
        if piece != mark:
            yield piece
            continue
        # a list at level 2 (document, "embedding", "windows"): its rows at level 3
        yield "["
        for i, row in enumerate(emb.window_rows()):
            text = enc.encode(row).replace("\n", "\n" + " " * 6)
            yield ("," if i else "") + "\n" + " " * 6 + text
        yield "\n" + " " * 4 + "]"


def write_csv(analysis: Any, path: str | os.PathLike[str]) -> None:
    """Write the timeline as CSV: one row per segment.

    Columns: ``start, end`` (seconds), ``rms_db``, ``silent`` (0/1), then one probability
    column per label in the model's order, then ``other`` for an open-set model (the
    probability of sound that is none of the labels). Silent segments have probability 0.
    """
    d = analysis.to_dict()
    labels = list(d["labels"])
    open_set = any("other" in seg for seg in d["timeline"])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["start", "end", "rms_db", "silent", *labels, *(["other"] if open_set else [])])
    for seg in d["timeline"]:
        probs = seg.get("probabilities") or {}
        w.writerow(
            [
                seg["start"],
                seg["end"],
                seg.get("rms_db"),
                int(bool(seg.get("silent"))),
                *[probs.get(lab, 0.0) for lab in labels],
                *([seg.get("other", 0.0)] if open_set else []),
            ]
        )
    atomic_write_text(path, buf.getvalue())


def detected_ranges(analysis: Any) -> list[tuple[str, float, float, float]]:
    """Every detected range, ``(label, start, end, highest smoothed probability there)``, by start
    time (then label); ``"other"`` ranges (sound that is none of the labels) of an open-set model
    included."""
    act = analysis.activity
    out = []
    for ins in analysis.instruments:
        for a, b in ins.ranges:
            out.append((ins.label, float(a), float(b), _peak(act, ins.label, a, b)))
    for a, b in analysis.other_ranges():
        out.append(("other", float(a), float(b), _peak(act, "other", a, b)))
    return sorted(out, key=lambda r: (r[1], r[0]))


def _peak(act: Any, label: str, a: float, b: float) -> float:
    if act is None or act.n == 0:
        return float("nan")
    curve = (
        act.other
        if label == "other" and label not in act.labels
        else act.probability[:, act.labels.index(label)]
    )
    if curve is None:
        return float("nan")
    t = act.times
    inside = (t >= a - 1e-9) & (t < b)
    return float(curve[inside].max()) if inside.any() else float("nan")


def write_ranges(analysis: Any, path: str | os.PathLike[str]) -> None:
    """Write the detected ranges as CSV, one row per range in time order.

    Columns: ``label``, ``start``, ``end``, ``duration`` (seconds), ``start_time`` and
    ``end_time`` (``m:ss.s``; more digits for a range shorter than 0.1 s), ``max_probability`` (the highest smoothed probability in the
    range, the value its threshold applies to). An open-set model's ``other`` ranges (none of
    the labels) are rows too.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["label", "start", "end", "duration", "start_time", "end_time", "max_probability"])
    for lab, a, b, p in detected_ranges(analysis):
        d = range_decimals(a, b)
        w.writerow(
            [
                lab,
                f"{a:.3f}",
                f"{b:.3f}",
                f"{b - a:.3f}",
                format_time(a, decimals=d),
                format_time(b, decimals=d),
                f"{p:.4f}",
            ]
        )
    atomic_write_text(path, buf.getvalue())


def write_audacity(analysis: Any, path: str | os.PathLike[str]) -> None:
    """Write the detected ranges as an Audacity label track (``File > Import > Labels``): one
    ``start<TAB>end<TAB>label`` line per range, seconds, in time order."""
    lines = [f"{a:.6f}\t{b:.6f}\t{lab}\n" for lab, a, b, _ in detected_ranges(analysis)]
    atomic_write_text(path, "".join(lines))


def write_jams(analysis: Any, path: str | os.PathLike[str]) -> None:
    """Write the detected ranges as a JAMS file (JSON Annotated Music Specification, read by
    ``jams.load``, mir_eval and other MIR tools): one ``tag_open`` annotation whose observations
    are the ranges (``time``, ``duration``, ``value``: the family, ``confidence``: the highest
    smoothed probability in the range); the model and the settings in ``sandbox.instrunet``."""
    d = analysis.to_dict()
    duration = float(analysis.duration)
    data = [
        {
            "time": round(a, 6),
            "duration": round(b - a, 6),
            "value": lab,
            "confidence": None if p != p else round(p, 6),
        }
        for lab, a, b, p in detected_ranges(analysis)
    ]
    model = d["model"]
    doc = {
        "file_metadata": {
            "title": os.path.basename(str(analysis.source)),
            "artist": "",
            "release": "",
            "duration": duration,
            "identifiers": {},
            "jams_version": "0.3.4",
        },
        "annotations": [
            {
                "namespace": "tag_open",
                "annotation_metadata": {
                    "curator": {"name": "", "email": ""},
                    "annotator": {
                        "name": f"{model['name']} {model['version']}",
                        "sha256": model.get("sha256", ""),
                    },
                    "version": instrunet_version(),
                    "corpus": "",
                    "annotation_tools": f"instrunet {instrunet_version()}",
                    "annotation_rules": (
                        "instrument families detected where their smoothed probability holds the "
                        "model's threshold (instrunet_core.timeline)"
                    ),
                    "validation": "",
                    "data_source": "automatic",
                },
                "data": data,
                "sandbox": {},
                "time": 0.0,
                "duration": duration,
            }
        ],
        "sandbox": {
            "instrunet": {
                "schema": d["schema"],
                "model": model,
                "settings": d["settings"],
                "label": d["label"],
            }
        },
    }
    atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")


def write_png(analysis: Any, path: str | os.PathLike[str]) -> None:
    """Write the timeline plot (:func:`instrunet_core.plots.activity_figure`) as PNG, whatever
    the file name (the ``png`` writer: ``--format png``).

    Raises
    ------
    InstrunetError
        matplotlib is not installed (``pip install 'instrunet[plot]'``).
    """
    atomic_write_bytes(path, figure_bytes(activity_figure(analysis), "png"))


def write_plot(analysis: Any, path: str | os.PathLike[str]) -> None:
    """:func:`write_png` in the format the file name asks for when matplotlib knows it
    (``instrunet analyze --plot out.svg``), else PNG."""
    fig = activity_figure(analysis)
    ext = os.path.splitext(os.fspath(path))[1][1:].lower()
    fmt = ext if ext in fig.canvas.get_supported_filetypes() else "png"
    atomic_write_bytes(path, figure_bytes(fig, fmt))
