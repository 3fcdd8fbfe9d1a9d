"""Streaming a file through a board, a router and a tagger: :func:`process_file`."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.audio import AudioReader
from instrunet_core.errors import InputError
from instrunet_core.writers import atomic_path

from .router import Router
from .tagger import Tagger

__all__ = ["process_file"]


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
    ``board(audio, sr)``, a reverb tail past the end is cut.

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
        Samples read per block.
    bit_depth : int
        Output bit depth (``AudioFile``'s ``bit_depth``).
    quality : optional
        Output quality for compressed formats (``AudioFile``'s ``quality``).

    Returns
    -------
    instrunet_core.Analysis
        The tagger's analysis if given, else the router's; ``source`` is ``src``.

    Raises
    ------
    DecodeError
        ``src`` cannot be opened or decoded, or holds no audio (the core's messages).
    InputError
        Bad arguments, ``dst`` equal to ``src`` or not a regular file, or a ``dst`` without an
        extension or in a format pedalboard cannot write.
    OutputError
        ``dst`` (or its folder) cannot be written: nothing is left at ``dst`` but what was there.
    ConcurrentUseError
        Another thread is feeding the same ``tagger`` or ``router``.
    """
    from pedalboard import Plugin
    from pedalboard.io import AudioFile

    from instrunet_core.errors import OutputError

    src_p = Path(os.fspath(src))
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size <= 0:
        raise InputError(f"{src_p}: block_size must be a positive number of samples, got {block_size!r}")
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
    dst_p = Path(os.fspath(dst)) if dst is not None else None
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

    def emit(y: np.ndarray) -> None:
        nonlocal writer
        if y.shape[-1] == 0:
            return
        if tagger is not None:
            tagger._layout.assume("first", y.shape[0])  # blocks here are (channels, n), even (2, 1)
            tagger(y, sr, reset=False)
        if tmp is None:
            return
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
        for block in reader.blocks(block_size):
            x = np.ascontiguousarray(block.T)  # pedalboard's (channels, n)
            if x.shape[-1] == 0:
                continue
            if board is not None:
                x = board(x, sr, reset=False)
            if router is not None:
                router._layout.assume("first", x.shape[0])
                x, _ = router._push(x, sr)
            emit(x)
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
    analysis = tagger.analysis if tagger is not None else router.analysis  # type: ignore[union-attr]
    return dataclasses.replace(analysis, source=str(src_p))
