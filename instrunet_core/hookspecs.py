"""Plugin hook specifications (pluggy project name ``"instrunet"``).

A plugin is a module (or any object) with functions decorated by
:data:`hookimpl`, exposed through the ``instrunet`` entry-point group::

    # pyproject.toml of the plugin package
    [project.entry-points.instrunet]
    my_plugin = "my_package.instrunet_plugin"

Every hook receives a ``register`` callback. The core decides naming, de-duplication
and error handling: a hook that raises, or registers something invalid, is reported
(``instrunet plugins`` shows an error row and a warning is issued) and never breaks
the host. See ``docs/plugins.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:  # annotations only: the hook specification imports no layer above it
    import numpy as np

    from .analysis import Analysis, AnalysisContext, WindowResult

__all__ = [
    "PROJECT_NAME",
    "hookspec",
    "hookimpl",
    "Analyzer",
    "BlockListener",
    "StreamAnalyzer",
    "StreamFactory",
    "Writer",
    "RegisterModel",
    "RegisterAnalyzer",
    "RegisterWriter",
    "instrunet_register_models",
    "instrunet_register_analyzers",
    "instrunet_register_writers",
]

PROJECT_NAME = "instrunet"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Analyzer(Protocol):
    """``func(context)``: a JSON-ready dict stored under ``analysis.extras[name]``."""

    def __call__(self, context: AnalysisContext, /) -> Mapping[str, Any]: ...


class BlockListener(Protocol):
    """What :meth:`instrunet_core.Classifier.classify` feeds while it decodes a source: every
    decoded block, then the windows as they are classified."""

    def push(self, block: np.ndarray, start: int, /) -> None:
        """The next decoded block: mono float32 at the front end's rate (22,050 Hz); ``start`` is
        the index of its first sample in the stream. Read-only, valid during the call only:
        copy what you keep."""

    def windows(self, results: Sequence[WindowResult], /) -> None:
        """Windows just classified, in order (each window's audio was pushed before it)."""


class StreamAnalyzer(BlockListener, Protocol):
    """One analysis's state of a streaming analyzer: fed during the one decoding pass, then asked
    for its result."""

    def finish(self, context: AnalysisContext, /) -> Mapping[str, Any]:
        """After the pass: a JSON-ready dict for ``analysis.extras[name]`` (``context`` now holds
        the timeline and the detected instruments)."""
        ...


class StreamFactory(Protocol):
    """``factory(context)``: a fresh :class:`StreamAnalyzer` for one analysis, made before decoding
    (``context`` holds what is known then: source, rate, labels, thresholds, expected duration)."""

    def __call__(self, context: AnalysisContext, /) -> StreamAnalyzer: ...


class Writer(Protocol):
    """``writer(analysis, path)``: writes the analysis to ``path`` (``"-"``: stdout)."""

    def __call__(self, analysis: Analysis, path: str | os.PathLike[str], /) -> None: ...


class RegisterModel(Protocol):
    """The ``register`` callback of :func:`instrunet_register_models`."""

    def __call__(
        self, name: str, manifest_path_or_dir: str | os.PathLike[str], /, *, default: bool = False
    ) -> None: ...


class RegisterAnalyzer(Protocol):
    """The ``register`` callback of :func:`instrunet_register_analyzers`: ``register(name, func)``
    or ``register(name, stream=factory)``."""

    def __call__(
        self, name: str, func: Analyzer | None = None, /, *, stream: StreamFactory | None = None
    ) -> None: ...


class RegisterWriter(Protocol):
    """The ``register`` callback of :func:`instrunet_register_writers`."""

    def __call__(self, format_name: str, writer: Writer, /) -> None: ...


@hookspec
def instrunet_register_models(register: RegisterModel) -> None:
    """Register model artifacts.

    Call ``register(name, manifest_path_or_dir, *, default=False)`` once per model
    version. ``manifest_path_or_dir`` is a ``manifest.json`` file or the directory
    holding it (next to ``model.onnx``). ``name`` must equal the manifest's
    ``name``; the version is read from the manifest. A name belongs to the plugin that
    registered it first (built-ins first): another plugin using it is refused and reported.
    ``default=True`` asks for this model name to be the one
    :func:`instrunet_core.load_model` uses without a name; it is honoured only when no
    built-in default exists — replacing the built-in default is the user's choice
    (``INSTRUNET_DEFAULT_MODEL=<name>``), never a plugin's.

    Examples
    --------
    >>> from pathlib import Path
    >>> from instrunet_core import hookimpl
    >>> @hookimpl
    ... def instrunet_register_models(register):
    ...     register("birds", Path(__file__).parent / "models" / "birds" / "1.0.0")
    """


@hookspec
def instrunet_register_analyzers(register: RegisterAnalyzer) -> None:
    """Register analyzers that add results to :attr:`Analysis.extras`.

    Two kinds, both stored under ``analysis.extras[name]`` as the JSON-ready dict they return;
    if one raises, its entry becomes ``{"error": "<ExceptionType>: <message>", "plugin": "<plugin>"}``
    (the plugin that registered it) and the analysis goes on.

    * ``register(name, stream=factory)`` — a **streaming** analyzer: it sees the audio in the
      one decoding pass that classifies it, in bounded memory. Before decoding,
      :func:`instrunet_core.analyze` calls ``factory(context)`` for a fresh
      :class:`StreamAnalyzer`; :meth:`~instrunet_core.Classifier.classify` then calls its
      ``push(block, start)`` with every decoded block (mono float32 at 22,050 Hz; ``start``: its
      first sample's index) and its ``windows(results)`` with the windows as they are classified
      (:class:`~instrunet_core.analysis.WindowResult`: start, end, probabilities, level); after
      the pass, ``finish(context)`` returns the result. Before the pass the context holds
      ``source``, ``sample_rate``, ``labels``, ``thresholds``, ``hop_seconds``,
      ``window_seconds``, ``expected_duration`` (``None`` when the source does not say),
      ``lag_seconds`` (how long after its block a window can arrive: audio kept for windows
      must be kept that long) and the model's name and version; ``finish`` gets the same context completed with the timeline.
    * ``register(name, func)`` — a **whole-file** analyzer, called once after the timeline:
      ``func(context)``. ``context.audio()`` decodes the whole file a second time and keeps it
      in memory (fine for short files; a streaming analyzer never needs it).

    Each analyzer runs on a thread of its own, its calls in order, under a time limit per
    analysis (60 s plus the audio's duration, or ``analyze(analyzer_timeout=...)``,
    ``--analyzer-timeout``, ``INSTRUNET_ANALYZER_TIMEOUT``): one that passes it is left behind
    and its entry is a ``TimeoutError`` (docs/plugins.md, "Threads and time limits").

    After the pass the context also gives ``context.times`` (``(T, 2)`` start/end seconds),
    ``context.probabilities`` (``(T, n_labels)``), ``context.rms_db``, ``context.silent``,
    ``context.instruments`` (the detected instruments with their time ranges),
    ``context.duration`` and ``context.segment_audio(i)``.

    Examples
    --------
    >>> import numpy as np
    >>> from instrunet_core import hookimpl
    >>> class Peak:
    ...     def __init__(self, context):
    ...         self.peak = 0.0
    ...     def push(self, block, start):
    ...         self.peak = max(self.peak, float(np.max(np.abs(block), initial=0.0)))
    ...     def windows(self, results):
    ...         pass
    ...     def finish(self, context):
    ...         return {"peak": self.peak, "windows": len(context.times)}
    >>> @hookimpl
    ... def instrunet_register_analyzers(register):
    ...     register("peak", stream=Peak)
    """


@hookspec
def instrunet_register_writers(register: RegisterWriter) -> None:
    """Register output formats for analyses.

    Call ``register(format_name, writer)`` where ``writer(analysis, path)`` writes an
    :class:`instrunet_core.Analysis` to ``path``. ``instrunet analyze FILE --format
    NAME --out PATH`` uses it. The built-in ``json`` writer is registered the same way.

    Write through :mod:`instrunet_core.writers` (``atomic_write_text``, ``atomic_write_bytes``,
    ``atomic_path``): ``"-"`` goes to stdout, a reader never sees half a file, and a write that
    fails (a full disk) is an ``OutputError`` the CLI reports in one line.

    Examples
    --------
    >>> import csv, io
    >>> from instrunet_core import hookimpl
    >>> from instrunet_core.writers import atomic_write_text
    >>> def write_tsv(analysis, path):
    ...     buf = io.StringIO()
    ...     w = csv.writer(buf, delimiter="\t")
    ...     w.writerow(["start", "end", *analysis.labels])
    ...     for seg in analysis.timeline:
    ...         w.writerow([seg.start, seg.end, *seg.probabilities.values()])
    ...     atomic_write_text(path, buf.getvalue())
    >>> @hookimpl
    ... def instrunet_register_writers(register):
    ...     register("tsv", write_tsv)  # a name of its own: the built-ins' (csv, json...) are taken
    """
