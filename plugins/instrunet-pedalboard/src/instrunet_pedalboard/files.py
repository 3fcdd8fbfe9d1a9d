"""Streaming a file through a board, a router and a tagger: :func:`process_file`."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.audio import AudioReader
from instrunet_core.errors import InputError, InstrunetWarning, warn
from instrunet_core.inputs import MAX_BLOCK_SAMPLES, check_amplitude, check_count
from instrunet_core.writers import atomic_path

from .router import Router
from .tagger import Tagger

__all__ = ["ClippingWarning", "process_file"]


def process_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | None = None,
    *,
    board: Any = None,
    tagger: Tagger | None = None,
    router: Router | None = None,
    block_size: int = 65536,
    bit_depth: int = 16,
    quality: Any = None,
) -> Any:
    """Stream ``src`` block by block through ``board``, then ``router``, then ``tagger``; write ``dst``.

    At most one block (plus the router's lookahead) is in memory at a time, so an
    hour-long file is processed in constant memory (``docs/pedalboard.md`` gives the
    measured peak). The output is aligned with the input and has its length; as with
    ``board(audio, sr)``, a reverb tail past the end is cut. A board that holds audio back
    when streamed (latency or buffering: ``MP3Compressor``, ``GSMFullRateCompressor``,
    ``Resample``) returns fewer samples than it was given; at the end it is fed silence until
    it has returned as many samples as the input has (what it returns past that is cut), so
    the output keeps the input's length, as ``board(audio, sr)`` does.

    Parameters
    ----------
    src : str or PathLike
        An audio file, opened, checked and decoded by the core, as ``instrunet classify`` reads
        it (:class:`instrunet_core.audio.AudioReader`: wav, flac, ogg, mp3, ...). A file cut
        short is processed up to where it ends (the output is as long as the audio that is
        there, never padded); one whose data stops decoding raises ``DecodeError``.
    dst : str or PathLike, optional
        Output file, format from its extension, at ``src``'s sample rate; its folder is
        created if needed. Written through the core's writer layer
        (:func:`instrunet_core.writers.atomic_path`: a uniquely named temporary file next to it,
        renamed when complete), so a failure never leaves a truncated file. ``None``: only analyse.
    board : pedalboard.Pedalboard or plugin, optional
        Applied first (streamed with ``reset=False``).
    tagger : Tagger, optional
        Tags the final audio (what is written). Without a tagger and a router, a
        :class:`Tagger` with the default model is used.
    router : Router, optional
        Per-instrument chains after ``board``, with lookahead (aligned output).
    block_size : int
        Samples read per block, more than the channel count and at most
        :data:`~instrunet_core.inputs.MAX_BLOCK_SAMPLES`.
    bit_depth : int
        Output bit depth (``AudioFile``'s ``bit_depth``: 8, 16, 24 or 32 as the format allows).
        A 32-bit WAV holds float samples; every other output holds samples within full scale,
        and what the board or router pushes beyond it is clipped: a :class:`ClippingWarning`
        then says how many samples were.
    quality : optional
        Output quality for compressed formats (``AudioFile``'s ``quality``).

    Returns
    -------
    instrunet_core.Analysis
        The whole file's analysis: the tagger's if given, else the router's (its windows,
        0.5 s apart, and the thresholds it routes by: all of the file's, kept for this call),
        else the default ``Tagger()``'s; ``source`` is ``src``.

    Raises
    ------
    DecodeError
        ``src`` cannot be opened or decoded, or holds no audio (the core's messages).
    InputError
        Bad arguments (``src`` or ``dst`` not a path), ``dst`` equal to ``src`` or not a regular
        file, or a ``dst`` without an extension or in a format pedalboard cannot write; a
        ``board`` or ``router`` chain whose output holds NaN or infinite samples (the message
        names ``src`` and the chain; nothing is written at ``dst``).
    OutputError
        ``dst`` (or its folder) cannot be written: nothing is left at ``dst`` but what was there.
    ConcurrentUseError
        Another thread is feeding the same ``tagger`` or ``router``.
    """
    from pedalboard import Plugin
    from pedalboard.io import AudioFile

    from instrunet_core.errors import OutputError

    for name, path in (("src", src), ("dst", dst)):
        if not isinstance(path, (str, os.PathLike)) and not (name == "dst" and path is None):
            raise InputError(f"process_file: {name} must be a path (str or PathLike), got {path!r}")
    try:
        src_p = Path(os.fspath(src))
        dst_p = Path(os.fspath(dst)) if dst is not None else None
    except TypeError as e:  # a PathLike whose __fspath__ returns bytes
        raise InputError(f"process_file: src and dst must be str paths ({e})") from None
    check_count(block_size, name="block_size", maximum=MAX_BLOCK_SAMPLES, what=str(src_p), unit="samples")
    check_count(bit_depth, name="bit_depth", minimum=8, maximum=32, what=str(src_p))
    if board is not None and not isinstance(board, Plugin):
        raise InputError(
            f"{src_p}: board must be a pedalboard Pedalboard or plugin, got {type(board).__name__}"
        )
    if tagger is not None and not isinstance(tagger, Tagger):
        raise InputError(
            f"{src_p}: tagger must be an instrunet_pedalboard.Tagger, got {type(tagger).__name__}"
        )
    if router is not None and not isinstance(router, Router):
        raise InputError(
            f"{src_p}: router must be an instrunet_pedalboard.Router, got {type(router).__name__}"
        )
    if dst_p is not None:
        if dst_p.exists() and src_p.exists() and os.path.samefile(src_p, dst_p):
            raise InputError(f"{dst_p}: the output would overwrite the input")
        if dst_p.exists() and not dst_p.is_file():
            raise InputError(
                f"{dst_p}: not a regular file (the output is written beside it and renamed over it)"
            )
        if not dst_p.suffix:
            raise InputError(
                f"{dst_p}: no file extension to choose the output format from (.wav, .flac, ...)"
            )
    if tagger is None and router is None:
        tagger = Tagger()
    reader = AudioReader(src_p)  # DecodeError / InputError with the core's messages
    if dst_p is not None:
        try:
            dst_p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            reader.close()
            raise OutputError(f"{dst_p.parent}: cannot create the output folder: {e.strerror or e}") from None
    writer: Any = None
    # Every format but a 32-bit WAV (float samples) holds samples within full scale: what a
    # chain pushes beyond it is clipped when written, which the user is told of at the end.
    clips = dst_p is not None and not (bit_depth == 32 and dst_p.suffix.lower() == ".wav")
    clipped = written = 0

    def emit(y: np.ndarray) -> None:
        nonlocal writer, clipped, written
        if y.shape[-1] == 0:
            return
        if tagger is not None:
            tagger._layout.assume("first", y.shape[0])  # blocks here are (channels, n), even (2, 1)
            tagger(y, sr, reset=False)
        if tmp is None:
            return
        if clips:
            clipped += int(np.count_nonzero(np.abs(y) > 1.0))
            written += y.size
        if writer is None:
            try:
                writer = AudioFile(tmp, "w", sr, y.shape[0], bit_depth=bit_depth, quality=quality)
            except Exception as e:  # noqa: BLE001 - pedalboard's errors for a format it cannot write
                raise InputError(f"{dst_p}: cannot write this file ({e})") from None
        try:
            writer.write(y)
        except Exception as e:  # noqa: BLE001 - a full disk, as pedalboard reports it
            raise OutputError(f"{dst_p}: cannot write: {e}") from None

    with contextlib.ExitStack() as stack:
        stack.callback(reader.close)
        # One feeding call for the whole file: another thread feeding the same tagger or router
        # meanwhile is refused (ConcurrentUseError), as in their own calls.
        for adapter in (tagger, router):
            if adapter is not None:
                stack.enter_context(adapter._owner.feeding("process_file"))
        if router is not None and tagger is None:
            # with a router alone its analysis is the file's: its classifier, which keeps only its
            # last windows (ROUTER_KEEP) for live use, keeps them all for this call (the analysis
            # returned was the last 16 windows')
            log = router._clf._log
            stack.callback(setattr, log, "keep", log.keep)
            log.keep = None
        tmp = stack.enter_context(atomic_path(dst_p, suffix=dst_p.suffix)) if dst_p is not None else None
        stack.callback(lambda: writer is not None and writer.close())
        sr = reader.sample_rate
        if block_size <= reader.channels:
            raise InputError(
                f"{src_p}: block_size must exceed the channel count ({reader.channels}) "
                "so pedalboard can tell channels from samples"
            )
        for part in (board, router, tagger):
            if part is not None:
                part.reset()
        n_in = n_board = 0  # samples read, samples the board returned
        heard = said = False  # sound read, sound the board returned

        def through(x: np.ndarray) -> None:
            """``x`` (the board's output) through the router and the tagger, into ``dst``."""
            if router is not None:
                router._layout.assume("first", x.shape[0])
                try:
                    x, _ = router._push(x, sr)
                except InputError as e:  # a chain's output the router refuses: name the file
                    raise InputError(f"{src_p}: {e}") from None
            emit(x)

        chain: Any = board

        def run_board(x: np.ndarray) -> np.ndarray:
            nonlocal n_board, heard, said
            heard = heard or bool(np.any(x))
            y = np.asarray(chain(x, sr, reset=False), dtype=np.float32)
            if y.ndim == 1:
                y = y[None, :]
            if y.ndim != 2 or y.shape[0] != x.shape[0]:
                raise InputError(
                    f"{src_p}: the board turned {x.shape[0]} channel(s) into shape {y.shape}; "
                    "it must keep the channel count"
                )
            check_amplitude(y, what=f"{src_p}: the board's output")
            y = y[:, : max(0, n_in - n_board)]  # never more than was read
            n_board += y.shape[1]
            said = said or bool(np.any(y))
            return y

        for block in reader.blocks(block_size):
            x = np.ascontiguousarray(block.T)  # pedalboard's (channels, n)
            if x.shape[-1] == 0:
                continue
            n_in += x.shape[1]
            if board is not None and 1 < x.shape[0] >= x.shape[1]:
                # pedalboard reads a block of no more frames than channels as channels-last
                # (2 channels x 1 frame: 2 mono samples); zeros after it make the layout plain,
                # as the silence that pushes a board's tail out would, and are cut from its output
                x = np.pad(x, ((0, 0), (0, x.shape[0] + 1 - x.shape[1])))
            through(run_board(x) if board is not None else x)
        if board is not None and n_board < n_in:
            # The board held audio back (latency, buffering): silence pushes it out. What a board
            # still holds after twice as much silence (10 s more at most) is lost: zeros stand in.
            missing = n_in - n_board
            n = min(max(block_size, 4096), MAX_BLOCK_SAMPLES // reader.channels)
            silence = np.zeros((reader.channels, n), dtype=np.float32)
            budget = min(2 * missing, missing + 10 * sr) + 4 * n
            while n_board < n_in and budget > 0:
                through(run_board(silence))
                budget -= n
            while n_board < n_in:
                pad = silence[:, : n_in - n_board]
                n_board += pad.shape[1]
                through(pad)
        if router is not None:
            emit(router._finish())
        if tagger is not None:
            tagger.flush()
        if writer is not None:  # complete before the rename
            try:
                writer.close()
            except Exception as e:  # noqa: BLE001
                raise OutputError(f"{dst_p}: cannot write: {e}") from None
            finally:
                writer = None
    if board is not None and heard and not said and n_in >= sr:  # (a codec may silence a few samples)
        warn(
            f"{src_p}: the board returned silence for the whole file, which has sound: a board that "
            "streams zeros at this block size (pedalboard 0.9's PitchShift does below 65,536 samples); "
            f"try a larger block_size (it was {block_size})"
        )
    if clipped:
        warn(
            f"{dst_p}: {clipped} of {written} samples ({100 * clipped / written:.2g} %) were beyond full "
            f"scale and clipped in the {_output_kind(dst_p, bit_depth)}; lower the chain's gain, or write a "
            "32-bit float WAV (bit_depth=32)",
            ClippingWarning,
        )
    analysis = tagger.analysis if tagger is not None else router.analysis  # type: ignore[union-attr]
    return dataclasses.replace(analysis, source=str(src_p))


class ClippingWarning(InstrunetWarning, UserWarning):
    """:func:`process_file` wrote samples beyond full scale to a format that clips them (an
    ``InstrunetWarning``, and a ``UserWarning`` as it always was)."""


def _output_kind(path: Path | None, bit_depth: int) -> str:
    """How a clipping warning names the output: a bit depth where the format has one (an MP3 or
    an Ogg file has none: "the 16-bit output" misled, a pedalboard audit)."""
    suffix = "" if path is None else path.suffix.lower()
    if suffix in (".mp3", ".ogg", ".opus", ".oga"):
        return f"{suffix[1:].upper()} output (it holds no samples beyond full scale)"
    return f"{bit_depth}-bit output"
