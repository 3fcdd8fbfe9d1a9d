"""Orchestration: one call from a recording to its :class:`~instrunet_core.analysis.Analysis`.

:func:`analyze` puts the jobs of the other modules in order, and does none of them itself:

1. the :class:`~instrunet_core.inference.Classifier` reads the source once, block by block,
   and classifies its windows; the streaming analyzers the caller chose
   (:meth:`~instrunet_core.registry.Registry.open_streams`) are fed the same decoded blocks and
   windows in that pass, so no plugin decodes the file again;
2. :meth:`~instrunet_core.inference.Classifier.refine` reads the stretches where a label's
   presence is in doubt again, with windows in between the hop's;
3. the timeline, detected instruments and overall prediction are read off the windows
   (:meth:`~instrunet_core.inference.Classifier.analysis`), and the embedding when asked for;
4. each analyzer finishes into :attr:`Analysis.extras`, one by one, with progress reported.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ._analyzer_threads import resolve_limit
from ._files import file_identity
from .analysis import Analysis, AnalysisContext
from .audio import UNKNOWN_FRAMES, AudioSource, audio_info, rereadable_source, source_name
from .errors import InputError, warn
from .features import DEFAULT_BATCH_SIZE
from .inference import Classifier
from .inputs import SampleRate, check_flag, check_sample_rate
from .model import ModelSpec
from .output import model_info
from .registry import Registry, get_registry
from .timeline import DEFAULT_MIN_DURATION, DEFAULT_SMOOTHING

__all__ = ["analyze", "analyzer_names"]


def analyze(
    source: AudioSource,
    sample_rate: SampleRate | None = None,
    *,
    model: ModelSpec = None,
    hop: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    smoothing: float = DEFAULT_SMOOTHING,
    min_duration: float = DEFAULT_MIN_DURATION,
    other_veto: float | None = None,
    leading: int | None = None,
    thresholds: Mapping[str, float] | None = None,
    registry: Registry | None = None,
    analyzers: bool | Sequence[str] | None = True,
    workers: int | None = None,
    embeddings: bool = False,
    refine: bool = True,
    progress: Callable[[str, float], Any] | None = None,
    analyzer_timeout: float | None = None,
) -> Analysis:
    """Analyse a recording: which instruments play, when, and how strongly.

    Parameters
    ----------
    source : str, PathLike, binary file object, or np.ndarray [shape=(n,) or (n, channels)]
        Audio at any rate and channel count.
    sample_rate : int, optional
        Required when ``source`` is an array. A file is read at its header's rate: a
        ``sample_rate`` that differs from it is an ``InputError``.
    model : Model, str, PathLike or None
        A loaded model, a registered model name, an artifact folder, or the default model.
    hop : float, optional
        Seconds between window starts (default 1.5, snapped to whole STFT frames: 1.5093 s).
    batch_size : int
        Most windows per model run.
    smoothing : float
        Seconds of moving mean applied to each label's probability over time before its
        threshold (0 disables it).
    min_duration : float
        Seconds a label must be present to be reported (or over all of a shorter sound), and
        absent to split a range.
    other_veto : float, optional
        Open-set models: where "none of the labels" is the answer with at least this smoothed
        probability, no label is detected; 1 turns it off. Default: the model's own
        (:attr:`~instrunet_core.model.Model.other_veto`: its manifest's ``other.veto``, else
        :data:`~instrunet_core.timeline.OTHER_VETO`).
    leading : int, optional
        How many of the most probable labels at a moment need only their thresholds there; a
        label behind them needs its threshold plus the model's margin for it (in a mixture, what
        the network spills over from the parts that play). Default: the model's own
        (:attr:`~instrunet_core.model.Model.leading`: its manifest's ``secondary``); 0: every
        label at its threshold alone.
    thresholds : dict, optional
        Per-label presence thresholds overriding the model's (a label keeps its margin above
        its threshold).
    registry : Registry, optional
        Where models and analyzers come from (default: :func:`instrunet_core.get_registry`).
    analyzers : bool or sequence of str
        Run the registered analyzer plugins into ``extras``: all (``True``), none (``False``)
        or those named.
    workers : int, optional
        Worker threads analysing batches of windows side by side (see :class:`Classifier`).
    embeddings : bool
        Also compute the embeddings (:attr:`Analysis.embedding`; the model needs an embedding
        output).
    refine : bool
        Read the source again where the hop's windows leave a label's presence in doubt, for
        windows every 0.5 s there (:meth:`Classifier.refine`), so that what is detected does not
        depend on the hop.
    progress : callable, optional
        ``progress(step, fraction)`` as each step after reading the source starts:
        ``("refine", 0.0)``, then ``("analyzer NAME", i / n)`` before each analyzer.
    analyzer_timeout : float, optional
        Seconds each analyzer may take on this source; one that takes longer is left behind
        and its entry in ``extras`` becomes a ``TimeoutError`` (default:
        ``INSTRUNET_ANALYZER_TIMEOUT``, else 60 s plus the audio's duration). Each analyzer runs
        on a thread of its own.

    Returns
    -------
    Analysis

    Raises
    ------
    DecodeError, InputError, ModelError

    Examples
    --------
    >>> import numpy as np, instrunet_core
    >>> a = instrunet_core.analyze(np.zeros(44100, np.float32), 44100)  # doctest: +SKIP
    >>> a.label, a.confidence, a.instruments  # doctest: +SKIP
    ('silence', 1.0, [])
    """
    if isinstance(source, np.ndarray) and sample_rate is None:
        raise InputError("array: sample_rate is required for array input")
    refine = check_flag(refine, name="refine", what="analyze")
    embeddings = check_flag(embeddings, name="embeddings", what="analyze")
    if progress is not None and not callable(progress):
        raise InputError(
            f"analyze: progress must be callable (step, fraction), got {type(progress).__name__}"
        )
    clf = Classifier(
        model,
        hop=hop,
        thresholds=thresholds,
        smoothing=smoothing,
        min_duration=min_duration,
        other_veto=other_veto,
        leading=leading,
        batch_size=batch_size,
        registry=registry,
        workers=workers,
        embeddings=embeddings,
    )
    reg = registry or get_registry()
    names = analyzer_names(reg, analyzers)
    # a bad limit is refused before anything is opened; the source is opened (and a bad one
    # refused) before any analyzer's thread starts
    limit = resolve_limit(analyzer_timeout) if names else None
    src = rereadable_source(source)
    expected, source_rate = _source_facts(src, sample_rate)
    context = None
    feed = None
    if names:
        # Streaming analyzers are fed the blocks and windows of this one pass; whole-file ones
        # run after it.
        context = AnalysisContext(
            source=src,
            sample_rate_in=None
            if sample_rate is None
            else check_sample_rate(sample_rate, what="sample_rate"),
            labels=clf.labels,
            model=model_info(clf.model),
            settings=clf.settings,
            expected_duration=expected,
            source_sample_rate=source_rate,
            lag_seconds=clf.lag_seconds,
        )
        feed = reg.open_streams(context, names=names, timeout=limit)
    try:
        # What refine needs is kept from this pass when it fits the store's bound (a longer
        # file is read again; its header says so before anything is kept).
        keep = refine and (expected is None or clf.keeps_evidence(expected))
        before = file_identity(src)
        clf.classify(src, sample_rate, listener=feed if feed else None, keep_evidence=keep)
        if refine and before is not None and file_identity(src) != before:
            # a file replaced, rewritten or deleted since the first reading began: a second
            # reading would mix two files' audio in one analysis (or fail on what is gone)
            refine = False
            warn(
                f"{source_name(src)}: the file changed (or was deleted) while it was analysed; the "
                "analysis is of its first reading, without the evidence windows of a second"
            )
        if refine:
            if progress is not None:
                progress("refine", 0.0)
            clf.refine(src, sample_rate)
        an = clf.analysis(source=os.fspath(source_name(source)))  # a file cut short: clf warned
        if embeddings:
            an.embedding = clf.embedding()
        if context is not None:
            context.complete(an)
            for i, name in enumerate(names):
                if progress is not None:
                    progress(f"analyzer {name}", i / len(names))
                an.extras.update(reg.run_analyzers(context, feed, names=[name]))  # the feed's limit
    finally:
        try:
            if feed is not None:
                feed.close()  # the analyzers' threads end (after an error: with nothing more to do)
        finally:
            # the classifier's worker threads and buffers (the evidence store, up to 32 MB) are
            # let go however the call ends: a host that keeps a failed call's exception (a
            # Future does) kept them alive through its traceback
            clf.close()
    return an


def _source_facts(source: AudioSource, sample_rate: SampleRate | None) -> tuple[float | None, int | None]:
    """Seconds the source says it holds and its own sample rate, read from its header (each
    ``None`` when it cannot say).

    Raises
    ------
    InstrunetError
        The source cannot be opened (missing, empty, not audio, a header out of range): said
        before any analyzer's thread starts, as decoding would say it.
    """
    try:
        # not counted: a file whose header does not give its length (a FLAC written to a pipe)
        # would be decoded once more only to say it
        info = audio_info(source, sample_rate, count=False)
    except (OSError, ValueError):
        return None, None  # decoding reports the problem
    d = float(info.duration)
    known = 0 < d and info.frames < UNKNOWN_FRAMES
    return (d if known else None), int(info.sample_rate)


def analyzer_names(reg: Registry, analyzers: bool | Sequence[str] | None) -> list[str]:
    """The registered analyzers to run: all, none, or those named (each must be registered).

    Raises
    ------
    InputError
        ``analyzers`` is not True, False or a list of names, or names one not registered.
    """
    if analyzers is True:
        return list(reg.analyzers)
    if analyzers is False or analyzers is None:
        return []
    if isinstance(analyzers, str):
        raise InputError(f"analyzers: give a list of names, not the string {analyzers!r}")
    names = list(analyzers) if isinstance(analyzers, Iterable) else None
    if names is None or not all(isinstance(n, str) for n in names):
        raise InputError(f"analyzers must be True, False or a list of analyzer names, got {analyzers!r}")
    unknown = [n for n in names if n not in reg.analyzers]
    if unknown:
        raise InputError(
            f"analyzers: unknown {', '.join(map(repr, unknown))} (registered: {', '.join(reg.analyzers) or 'none'})"
        )
    return list(dict.fromkeys(names))
