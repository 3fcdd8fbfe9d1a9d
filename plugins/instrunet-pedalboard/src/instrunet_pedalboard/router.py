"""Per-instrument processing: :class:`Router` sends each region through the chain of the instrument heard there."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from instrunet_core.analysis import OTHER_LABEL
from instrunet_core.errors import InputError
from instrunet_core.inputs import check_amplitude, check_flag, check_sample_rate, resampler_holdback
from instrunet_core.timeline import (
    DEFAULT_MIN_DURATION,
    DEFAULT_SMOOTHING,
    EVIDENCE_HOP,
    Activity,
    Detector,
    with_overrides,
)

from ._core import Adapter, Layout, as_array

__all__ = ["Router"]

#: Route key of the ``default`` board (or of the dry signal when there is none).
DEFAULT = None
#: A moment where nothing sounds: the current route goes on.
_KEEP = "\0keep"

#: Margin for the classifier reporting a window after its last sample arrived: its resampler
#: holds back some audio (up to 42 ms at 44.1 kHz, 0.12 s at 8 kHz; none at 22.05 kHz:
#: :func:`instrunet_core.inputs.resampler_holdback`). Routes change this much after a window's
#: nominal end (more at rates whose hold-back is longer: below 8 kHz), and the lookahead is this
#: much longer, so where blocks are cut never changes the output.
EMIT_SLACK_S = 0.15
#: Results the router's classifier keeps (it reads each window once, as it comes): a live
#: router's memory stays flat however long it runs.
ROUTER_KEEP = 16
#: Frames per block when a whole piece is routed (``router(audio, sr)``): 3 s at 22,050 Hz.
WHOLE_BLOCK = 65536
#: Longest crossfade accepted (ms). The lookahead, and so the delay and the audio held per chain
#: when streaming, grows with the crossfade: 10 s of crossfade is 5 s more of it.
MAX_CROSSFADE_MS = 10_000.0


class _Fifo:
    """Float32 ``(channels, n)`` first-in first-out buffer with amortised O(1) appends."""

    def __init__(self, channels: int) -> None:
        self.buf = np.zeros((channels, 1024), dtype=np.float32)
        self.a = 0
        self.b = 0

    def __len__(self) -> int:
        return self.b - self.a

    def append(self, y: np.ndarray) -> None:
        n = y.shape[1]
        if self.b + n > self.buf.shape[1]:
            live = self.b - self.a
            cap = self.buf.shape[1]
            if live + n > cap // 2:
                cap = max(2 * cap, 2 * (live + n))
            new = np.zeros((self.buf.shape[0], cap), dtype=np.float32)
            new[:, :live] = self.buf[:, self.a : self.b]
            self.buf, self.a, self.b = new, 0, live
        self.buf[:, self.b : self.b + n] = y
        self.b += n

    def view(self, i: int, j: int) -> np.ndarray:
        return self.buf[:, self.a + i : self.a + j]

    def consume(self, n: int) -> None:
        self.a += n


class Router(Adapter):
    """Process each region of the audio through the chain of the instrument detected there.

    Every chain runs on the whole signal, block by block with ``reset=False``, so a chain
    coming in has its state (reverb tail, compressor envelope) warm and the switch is a
    mix of running outputs. At each change of route the outgoing and incoming chains
    are crossfaded with equal-power (cosine/sine) gains over ``crossfade_ms``.

    What plays where is decided by the core's detection (:mod:`instrunet_core.timeline`, the
    logic of :func:`instrunet_core.analyze`): each label's probability on a time axis, smoothed
    over ``smoothing`` seconds, against its threshold, held for ``min_duration``, cut by a
    second of silence. At each moment the route is the detected routed label with the highest
    smoothed probability, else ``default``; where the model hears sound that is none of its
    labels (an open-set model: its "other" probability holds its threshold and beats every
    label's) the ``"other"`` route if ``boards`` has one; where nothing sounds, the current
    route goes on. Two modes:

    * ``lookahead=True`` (default; files): the audio is delayed until the detection around it is
      settled, so every route changes where the detection changes (the crossfade centred
      there), exactly as :func:`instrunet_core.analyze` would place it. Calling the router on a
      whole array (``reset=True``) or :func:`process_file` returns aligned output; block by block
      (``reset=False``) the output is delayed by :attr:`latency_seconds` (about 6 s with the
      defaults), like a plugin with latency, and :meth:`flush` returns the rest.
    * ``lookahead=False`` (live): no added latency; the route follows what the detection says
      about the newest window as soon as it is complete (plus :data:`EMIT_SLACK_S`), so a change
      the model detects is followed a window and a hop late, or ``min_duration`` more.
      Before the first window the default route plays.

    Parameters
    ----------
    boards : dict of {str: pedalboard.Plugin}
        Model label (e.g. ``"vocal"``, ``"guitar"``), or ``"other"`` for sound that is none of
        the labels (models with an open-set output), → the ``Pedalboard`` (or single plugin) for
        regions where it is detected.
    default : pedalboard.Plugin, optional
        Chain for regions where none of ``boards``' labels is detected (silence keeps
        the current route). ``None`` passes those regions through unprocessed.
    threshold : float or dict of {str: float}, optional
        Presence thresholds overriding the model's (one number for every routed label, or per
        label); the model's own by default, as ``analyze`` uses them.
    crossfade_ms : float
        Length of each crossfade (equal-gain on a raised-cosine curve: the chains' gains sum to
        1, as suits outputs of one signal), from 0 (switches hard, with clicks) to
        :data:`MAX_CROSSFADE_MS` (10,000).
    lookahead : bool
        See above (``True`` or ``False``).
    smoothing, min_duration : float
        Seconds, as for :func:`instrunet_core.analyze`.
    other_veto : float, optional
        As for :func:`instrunet_core.analyze`: no label is routed where "other" is the answer with
        at least this smoothed probability (open-set models; 1 turns it off; default: the
        model's own).
    leading : int, optional
        As for :func:`instrunet_core.analyze`: how many of the most probable labels at a moment
        need only their thresholds (default: the model's own; 0: every label at its threshold).
    model : Model, str or PathLike, optional
        As for :class:`Tagger`.
    hop : float, optional
        Seconds between windows; default :data:`~instrunet_core.timeline.EVIDENCE_HOP` (0.5 s),
        the spacing at which the detection needs no extra windows.

    Examples
    --------
    >>> from pedalboard import Pedalboard, Reverb, Compressor  # doctest: +SKIP
    >>> router = Router({"vocal": Pedalboard([Compressor(), Reverb()]),
    ...                  "guitar": Pedalboard([Reverb(room_size=0.8)])})  # doctest: +SKIP
    >>> out = router(audio, 44100)  # doctest: +SKIP
    >>> router.regions  # doctest: +SKIP
    [(0.0, 8.01, 'vocal'), (8.01, 16.0, 'guitar')]
    """

    _what = "Router"

    def __init__(
        self,
        boards: Mapping[str, Any],
        *,
        default: Any = None,
        threshold: float | Mapping[str, float] | None = None,
        crossfade_ms: float = 50.0,
        lookahead: bool = True,
        smoothing: float = DEFAULT_SMOOTHING,
        min_duration: float = DEFAULT_MIN_DURATION,
        model: Any = None,
        hop: float | None = EVIDENCE_HOP,
        other_veto: float | None = None,
        leading: int | None = None,
    ) -> None:
        from pedalboard import Plugin

        if hop is None:  # the router's own default, as documented (None took the core's 1.509 s)
            hop = EVIDENCE_HOP

        if not isinstance(boards, Mapping) or not boards:
            raise InputError(
                f"{self._what}: boards must be a non-empty dict {{label: Pedalboard}}, got {boards!r}"
            )
        if not _is_real(crossfade_ms) or not 0.0 <= float(crossfade_ms) <= MAX_CROSSFADE_MS:
            raise InputError(
                f"{self._what}: crossfade_ms must be a number of milliseconds from 0 to "
                f"{MAX_CROSSFADE_MS:,.0f}, got {crossfade_ms!r}"
            )
        check_flag(lookahead, name="lookahead", what=self._what)
        super().__init__(model, hop=hop, keep=ROUTER_KEEP)
        labels = self.labels
        self._other_threshold = self._clf.other_threshold
        for lab, board in boards.items():
            if lab == OTHER_LABEL and lab not in labels:
                if self._other_threshold is None:
                    raise InputError(
                        f"{self._what}: boards[{OTHER_LABEL!r}]: this model has no open-set output "
                        "(it cannot tell sound that is none of its labels)"
                    )
            elif lab not in labels:
                raise InputError(f"{self._what}: unknown label {lab!r} (this model's labels: {list(labels)})")
            if not isinstance(board, Plugin):
                raise InputError(
                    f"{self._what}: boards[{lab!r}] must be a pedalboard Pedalboard or plugin, "
                    f"got {type(board).__name__}"
                )
        if default is not None and not isinstance(default, Plugin):
            raise InputError(
                f"{self._what}: default must be a pedalboard Pedalboard or plugin, got {type(default).__name__}"
            )
        self.boards = dict(boards)
        self.default = default
        self._index = {lab: labels.index(lab) for lab in self.boards if lab in labels}
        self._all_thresholds = self._thresholds(threshold)
        #: The presence threshold of each routed label (and of ``"other"``).
        self.thresholds = {lab: self._all_thresholds[lab] for lab in self.boards}
        self.crossfade_ms = float(crossfade_ms)
        self.lookahead = bool(lookahead)
        try:
            self.detection = self._clf.model.detection(
                smoothing=smoothing, min_duration=min_duration, other_veto=other_veto, leading=leading
            )
        except InputError as e:
            raise InputError(f"{self._what}: {e}") from None
        self.smoothing = self.detection.smoothing
        self.min_duration = self.detection.min_duration
        # its classifier judges presence as the router routes, so that `analysis` says what was
        # routed (it said what the model's own thresholds detect)
        self._clf.thresholds = {lab: v for lab, v in self._all_thresholds.items() if lab != OTHER_LABEL}
        self._clf.detection = self.detection
        self.reset()

    def _thresholds(self, threshold: float | Mapping[str, float] | None) -> dict[str, float]:
        """Every label's threshold (the model's, with the caller's overrides), and ``"other"``'s."""
        model = dict(self._clf.thresholds)
        if self._other_threshold is not None:
            model[OTHER_LABEL] = float(self._other_threshold)
        if threshold is None:
            return model
        if isinstance(threshold, Mapping):
            extra = set(threshold) - set(self.boards)
            if extra:
                raise InputError(f"{self._what}: thresholds for labels without a board: {sorted(extra)}")
            over = dict(threshold)
        else:
            over = dict.fromkeys(self.boards, threshold)
        for lab, v in over.items():
            if not (_is_real(v) and 0.0 < float(v) < 1.0):
                raise InputError(f"{self._what}: threshold for {lab!r} must be in (0, 1), got {v!r}")
        other = over.pop(OTHER_LABEL, None)
        out = with_overrides(model, over)
        if other is not None:
            out[OTHER_LABEL] = float(other)
        return out

    # ------------------------------------------------------------------ properties

    @property
    def latency_seconds(self) -> float:
        """Delay of block-by-block (``reset=False``) output: 0 without lookahead, else the
        lookahead :meth:`latency_samples` explains (about 6 s with the defaults), at the rate of
        the stream fed so far (below 8 kHz the resampler holds back more: before the first
        block, the figure without it; :meth:`latency_samples` takes the rate)."""
        if not self.lookahead:
            return 0.0
        return self._lookahead_seconds(self._sr)

    def _lookahead_seconds(self, sample_rate: float | None = None) -> float:
        # A moment is settled once a window centred a detection horizon (and a grid step) after
        # it is classified; that window is emitted half a window after its centre (plus the
        # resampler's delay: up to a second at 1 kHz, where EMIT_SLACK_S alone let where the
        # blocks were cut change the routes), and windows come one hop apart.
        step = self._clf.level_step
        slack = EMIT_SLACK_S
        if sample_rate is not None:
            held = resampler_holdback(int(sample_rate), self._clf.model.front_end.sample_rate)
            slack = max(EMIT_SLACK_S, held + 0.03)
        return (
            self.window_seconds / 2
            + self.hop_seconds
            + self.detection.horizon
            + 2 * step
            + slack
            + self.crossfade_ms / 2000.0
        )

    def latency_samples(self, sample_rate: float) -> int:
        """Delay of block-by-block output at ``sample_rate``, in samples.

        With lookahead a sample's route is known once the detection there is settled: the
        window centred :attr:`~instrunet_core.timeline.Detection.horizon` seconds after it has
        been classified (half a window after its centre, a hop at most after the sample's own,
        plus :data:`EMIT_SLACK_S` or, below 8 kHz, what the resampler holds back at that rate),
        and half a crossfade before the change.
        """
        if not self.lookahead:
            return 0
        sr = check_sample_rate(sample_rate, what=self._what)
        return int(math.ceil(sr * self._lookahead_seconds(sr))) + 1

    def _xfade(self, sr: int) -> int:
        return int(round(self.crossfade_ms * sr / 1000.0))

    @property
    def regions(self) -> list[tuple[float, float, str | None]]:
        """``(start, end, label)`` seconds of each route taken so far (``None``: the default route).

        A boundary is the middle of its crossfade.
        """
        with self._owner.reading():
            return self._regions()

    def _regions(self) -> list[tuple[float, float, str | None]]:
        if not self._sr:
            return []
        end = self._n_in / self._sr
        pts = [(max(0.0, s / self._sr), k) for s, k in self._history]
        out = []
        for i, (s, k) in enumerate(pts):
            e = pts[i + 1][0] if i + 1 < len(pts) else end
            if e > s:
                out.append((round(s, 4), round(min(e, end), 4), k))
        return out

    # ------------------------------------------------------------------ stream state

    def reset(self) -> None:
        """Forget the stream: classifier, routes, buffered audio; every board is reset too."""
        with self._owner.feeding("reset"):
            self._reset()

    def _reset(self) -> None:
        super().reset()
        for board in self._all_boards().values():
            if board is not None:
                board.reset()
        self._channels = 0
        self._n_in = 0
        self._n_out = 0
        self._fifos: dict[str | None, _Fifo] = {}
        self._target: str | None = DEFAULT
        self._decided = False
        self._det = Detector(
            self.labels,
            {lab: v for lab, v in self._all_thresholds.items() if lab != OTHER_LABEL},
            step=self._clf.level_step,
            spacing=self.hop_seconds,
            detection=self.detection,
            other_threshold=self._all_thresholds.get(OTHER_LABEL),
        )
        self._known = 0
        self._events: list[tuple[int, str | None]] = []
        self._fade: tuple[float, dict[str | None, float], str | None] = (-math.inf, {}, DEFAULT)
        self._history: list[tuple[int, str | None]] = [(0, DEFAULT)]
        self._outq: _Fifo | None = None

    def _all_boards(self) -> dict[str | None, Any]:
        out: dict[str | None, Any] = {lab: board for lab, board in self.boards.items()}
        out[DEFAULT] = self.default
        return out

    # ------------------------------------------------------------------ decisions

    def _evidence(self, windows: list[Any], *, final: bool = False) -> None:
        """Give the detector each classified window with the level track up to its end, and route:
        what is decided never depends on how the audio was cut into blocks."""
        step = self._clf.level_step
        for w in windows:
            self._det.add_window(0.5 * (w.start + w.end), w.probabilities, w.silent, w.other, end=w.end)
            upto = int(w.end / step + 1e-6)
            if upto > self._det.blocks:
                lv = self._clf.level_db(self._det.blocks)[: upto - self._det.blocks]
                self._det.add_levels(lv, self._det.blocks * step + lv.shape[0] * step)
            self._route(final=False)
        if final:
            self._det.add_levels(self._clf.level_db(self._det.blocks), self._clf.duration)
            self._route(final=True)

    def _keys(self, act: Activity) -> list[str | None]:
        """The route of each moment of ``act`` (:data:`_KEEP` where nothing sounds)."""
        out: list[str | None] = []
        routed = list(self._index.items())
        other = OTHER_LABEL in self.boards
        for j in range(act.n):
            if not act.sounding[j]:
                out.append(_KEEP)
                continue
            if other and act.other_active is not None and act.other_active[j]:
                out.append(OTHER_LABEL)  # none of the labels is the answer here: it beats them all
                continue
            best, best_p = DEFAULT, -1.0
            for lab, i in routed:
                if act.active[j, i] and act.probability[j, i] > best_p:
                    best, best_p = lab, float(act.probability[j, i])
            out.append(best)
        return out

    def _route(self, *, final: bool) -> None:
        """Turn what the detector has settled (lookahead) or says now (live) into route changes."""
        sr = self._sr or 1
        x = self._xfade(sr)
        if not self.lookahead:
            self._det.update(final=final)  # keeps its memory bounded
            act = self._det.peek()
            if act is None or act.n == 0:
                return
            centre = self._det.last_centre
            j = min(act.n - 1, max(0, int((centre - act.start) / act.step)))
            key = self._keys(_window(act, j))[0]
            if key is _KEEP:
                return
            slack = max(EMIT_SLACK_S, resampler_holdback(sr, self._clf.model.front_end.sample_rate) + 0.03)
            self._change(key, int(round(sr * (self._det.last_end + slack))), x)
            return
        got = self._det.update(final=final)
        if got is None:
            return
        first, act = got
        step = act.step
        for j, key in enumerate(self._keys(act)):
            if key is _KEEP:
                continue
            if not self._decided:
                self._decided = True
                t = (first + j) * step
                if int(round(sr * t)) - x // 2 <= 0:  # from the very start: no crossfade in
                    self._target = key
                    self._fade = (-math.inf, {}, key)
                    self._history = [(0, key)]
                    continue
            self._change(key, int(round(sr * (first + j) * step)) - x // 2, x)
        self._known = int(round(sr * (first + act.n) * step)) - x // 2
        if final:
            self._known = max(self._known, self._n_in)

    def _change(self, key: str | None, s: int, x: int) -> None:
        self._decided = True
        if key == self._target:
            return
        s = max(s, self._n_out)
        self._events.append((s, key))
        self._history.append((s + x // 2, key))
        self._target = key

    # ------------------------------------------------------------------ mixing

    def _gains(self, p: int, q: int) -> dict[str | None, Any]:
        s, frm, to = self._fade
        x = self._xfade(self._sr or 1)
        if x == 0 or p >= s + x:
            return {to: 1.0}
        t = np.clip((np.arange(p, q, dtype=np.float64) - s) / x, 0.0, 1.0)
        # Equal-gain, on a raised-cosine curve: the gains sum to 1 at every sample. The chains
        # process the same signal, so their outputs are correlated: the equal-power cos/sin
        # pair summed them up to 1.414 (+3 dB mid-fade with every chain a Gain(0 dB), and
        # near-full-scale audio clipped: a pedalboard audit).
        si = np.sin(0.5 * np.pi * t) ** 2
        c = 1.0 - si
        g: dict[str | None, Any] = {k: v * c for k, v in frm.items()}
        g[to] = g.get(to, 0.0) + si
        return g

    def _mix(self, end: int) -> np.ndarray:
        a = self._n_out
        out = np.zeros((self._channels, max(0, end - a)), dtype=np.float32)
        pos = a
        while pos < end:
            if self._events and self._events[0][0] <= pos:
                _, key = self._events.pop(0)
                now = {k: float(np.atleast_1d(v)[0]) for k, v in self._gains(pos, pos + 1).items()}
                self._fade = (pos, {k: v for k, v in now.items() if v > 1e-7}, key)
                continue
            stop = min(end, self._events[0][0]) if self._events else end
            for key, g in self._gains(pos, stop).items():
                src = self._fifos[key].view(pos - a, stop - a)
                out[:, pos - a : stop - a] += (
                    (np.asarray(g, dtype=np.float32) * src) if np.ndim(g) else src * np.float32(g)
                )
            pos = stop
        for f in self._fifos.values():
            f.consume(end - a)
        self._n_out = end
        return out

    # ------------------------------------------------------------------ streaming

    def _run_boards(self, x: np.ndarray, sr: int) -> None:
        """Every chain's output for the block ``x``, appended to each chain's buffer only once
        every chain's output passed its checks: a refused block leaves the buffers in step (the
        chains' own state, a reverb's tail, has seen it)."""
        ch, n = x.shape
        first = not self._fifos
        outs: dict[Any, np.ndarray] = {}
        done: dict[int, np.ndarray] = {}  # one board object under several routes runs once a block
        for key, board in self._all_boards().items():
            if board is None:
                outs[key] = x
                continue
            if id(board) in done:
                outs[key] = done[id(board)]
                continue
            if first and 1 < ch and n <= ch:
                # pedalboard cannot tell channels from samples in a first block this short
                board.process(np.zeros((ch, ch + 1), dtype=np.float32), sr, reset=False)
            y = np.asarray(board.process(x[0] if ch == 1 else x, sr, reset=False), dtype=np.float32)
            if y.ndim == 1:
                y = y[None, :]
            name = "default" if key is None else repr(key)
            if y.ndim != 2 or y.shape[0] != ch:
                raise InputError(
                    f"{self._what}: the {name} board turned {ch} channel(s) x {n} samples into "
                    f"shape {y.shape}; every board must keep the channel count"
                )
            if y.shape[1] != n:
                raise InputError(
                    f"{self._what}: the {name} board returned {y.shape[1]} samples for a block of {n}: "
                    "it holds audio back (latency or buffering, as MP3Compressor, GSMFullRateCompressor "
                    "and Resample do); every board must return each block's length"
                )
            check_amplitude(y, what=f"{self._what}: the {name} board's output")
            outs[key] = done[id(board)] = y
        if first:
            self._fifos = {k: _Fifo(ch) for k in outs}
        for key, y in outs.items():
            self._fifos[key].append(y)

    def _push(self, audio: Any, sample_rate: Any) -> tuple[np.ndarray, str]:
        """Process the next block; returns the aligned output that is ready, ``(channels, m)``, and the layout."""
        got = self._accept(audio, sample_rate)
        if got is None:
            return np.zeros((self._channels or 1, 0), dtype=np.float32), self._layout.kind or "mono"
        a, kind, ch, sr = got
        self._channels = ch
        x = Layout.channels_first(a, kind, self._what)
        self._run_boards(x, sr)
        self._n_in += x.shape[1]
        self._evidence(self._clf.process(x.T, sr))
        ready = self._n_in if not self.lookahead else min(self._n_in, self._known)
        return self._mix(max(ready, self._n_out)), kind

    def _finish(self) -> np.ndarray:
        """End the stream: classify the last partial window and return the rest of the output."""
        if self._finished or self._sr is None:
            self._finished = True
            return np.zeros((self._channels or 1, 0), dtype=np.float32)
        self._evidence(self._clf.flush(), final=True)
        out = self._mix(self._n_in)
        self._finished = True
        return out

    def __call__(
        self, audio: Any, sample_rate: float, buffer_size: int | None = None, reset: bool = True
    ) -> np.ndarray:
        """Route ``audio`` (a whole piece, or with ``reset=False`` the next block of a stream).

        Parameters
        ----------
        audio : np.ndarray [shape=(samples,), (channels, samples) or (samples, channels)]
            Any int or float dtype.
        sample_rate : float
        buffer_size : int, optional
            Accepted for pedalboard compatibility; unused.
        reset : bool
            ``True``: ``audio`` is a whole piece, processed from a clean state and returned
            aligned. ``False``: the next block; the output has the block's length and lags
            by :meth:`latency_samples` (zeros first); :meth:`flush` returns the rest.

        Returns
        -------
        np.ndarray [float32, same layout and shape as ``audio``]
        """
        return self.process(audio, sample_rate, buffer_size=buffer_size, reset=reset)

    def process(
        self, audio: Any, sample_rate: float, buffer_size: int | None = None, reset: bool = True
    ) -> np.ndarray:
        """Same as calling the router (pedalboard's ``Plugin.process`` signature)."""
        with self._owner.feeding("process"):
            return self._process(audio, sample_rate, reset)

    def _process(self, audio: Any, sample_rate: float, reset: bool) -> np.ndarray:
        if check_flag(reset, name="reset", what=self._what):
            self.reset()
            a = as_array(audio, self._what)
            if a.size == 0 and a.ndim in (1, 2):  # nothing to route: the same empty shape back
                check_sample_rate(sample_rate, what=self._what)
                return np.zeros(a.shape, dtype=np.float32)
            return self._whole(a, sample_rate)
        if self._finished:
            self.reset()
        sr = check_sample_rate(sample_rate, what=self._what)
        d = self.latency_samples(sr)
        a = as_array(audio, self._what)
        if a.size == 0:
            return np.zeros(a.shape, dtype=np.float32)
        n_before = self._n_in
        y, kind = self._push(a, sr)
        n = self._n_in - n_before
        if self._outq is None:
            self._outq = _Fifo(self._channels or 1)
            self._outq.append(np.zeros((self._channels or 1, d), dtype=np.float32))
        if self._n_in - d > self._n_out:  # the windows came later than planned: keep the current route
            y = np.concatenate([y, self._mix(self._n_in - d)], axis=1)
        self._outq.append(y)
        out = self._outq.view(0, n).copy()
        self._outq.consume(n)
        return Layout.restore(out, kind)

    def _whole(self, a: np.ndarray, sample_rate: Any) -> np.ndarray:
        """A whole piece, routed in blocks of :data:`WHOLE_BLOCK` frames into one aligned output:
        each chain's output is held only until it is mixed (the lookahead and a block), not for
        the whole piece per chain. The output equals one push of the whole piece (block by
        block equals the whole call, as the streaming tests check)."""
        sr = check_sample_rate(sample_rate, what=self._what)
        kind, ch = self._layout.detect(a)  # the piece's layout, kept for its blocks
        n = a.shape[0] if kind != "first" else a.shape[1]
        out = np.empty((ch, n), dtype=np.float32)
        filled = 0
        for i in range(0, n, WHOLE_BLOCK):
            y, _ = self._push(a[:, i : i + WHOLE_BLOCK] if kind == "first" else a[i : i + WHOLE_BLOCK], sr)
            out[:, filled : filled + y.shape[1]] = y
            filled += y.shape[1]
        rest = self._finish()
        out[:, filled : filled + rest.shape[1]] = rest
        filled += rest.shape[1]
        if filled != n:  # the router's own bookkeeping: every sample in, one sample out
            raise AssertionError(f"{self._what}: routed {filled} samples of {n}")
        return Layout.restore(out, kind)

    def flush(self) -> np.ndarray:
        """End a ``reset=False`` stream: the last :meth:`latency_samples` samples of output, in the stream's layout."""
        with self._owner.feeding("flush"):
            return self._flush()

    def _flush(self) -> np.ndarray:
        kind = self._layout.kind or "mono"
        rest = self._finish()
        if self._outq is None:
            return Layout.restore(rest, kind)
        self._outq.append(rest)
        out = self._outq.view(0, len(self._outq)).copy()
        self._outq.consume(len(self._outq))
        return Layout.restore(out, kind)


def _is_real(x: Any) -> bool:
    """``x`` is a finite real number (not a bool, not a string)."""
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_)) and math.isfinite(float(x))


def _window(act: Activity, j: int) -> Activity:
    """Moment ``j`` of ``act`` alone."""
    import dataclasses

    return dataclasses.replace(
        act,
        start=act.start + j * act.step,
        probability=act.probability[j : j + 1],
        active=act.active[j : j + 1],
        sounding=act.sounding[j : j + 1],
        level_db=act.level_db[j : j + 1],
        other=None if act.other is None else act.other[j : j + 1],
        other_active=None if act.other_active is None else act.other_active[j : j + 1],
    )
