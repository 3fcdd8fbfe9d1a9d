"""Per-instrument processing: :class:`Router` sends each region through the chain of the instrument heard there."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from instrunet_core.errors import InputError
from instrunet_core.inputs import check_sample_rate

from ._core import Adapter, Layout

__all__ = ["Router"]

#: Route key of the ``default`` board (or of the dry signal when there is none).
DEFAULT = None

#: Margin for the classifier reporting a window after its last sample arrived: its resampler
#: holds back some audio (measured up to 42 ms at 44.1 kHz, 103 ms at 8 kHz; none at
#: 22.05 kHz). Routes change this much after a window's nominal end, and the lookahead is this
#: much longer, so where blocks are cut never changes the output.
EMIT_SLACK_S = 0.15


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

    A route can only change after the window that hears the change is complete
    (``window_seconds``, 2.949 s, one every ``hop_seconds``, 1.509 s). Two modes:

    * ``lookahead=True`` (default; files): the audio is delayed until the windows around
      it are heard, and each sample takes the route of the window whose centre is nearest,
      so the crossfade sits, to within half a hop, where the instrument changes. Calling
      the router on a whole array (``reset=True``) or :func:`process_file` returns aligned
      output; block by block (``reset=False``) the output is delayed by
      :attr:`latency_seconds` (3.1 s with the defaults), like a plugin with latency, and
      :meth:`flush` returns the last ``latency`` samples.
    * ``lookahead=False`` (live): no added latency; a route changes at the end of the
      window that detected it (plus :data:`EMIT_SLACK_S`), so a change the model detects is
      followed at most a window + hop + slack late (4.6 s), often sooner.
      Before the first window the default route plays.

    Parameters
    ----------
    boards : dict of {str: pedalboard.Plugin}
        Model label (e.g. ``"vocal"``, ``"guitar"``) → the ``Pedalboard`` (or single plugin)
        for regions where that instrument is detected.
    default : pedalboard.Plugin, optional
        Chain for regions where none of ``boards``' labels is detected (silence keeps
        the current route). ``None`` passes those regions through unprocessed.
    threshold : float or dict of {str: float}
        Probability a label needs to take its route; when several qualify the most
        probable wins.
    crossfade_ms : float
        Length of each equal-power crossfade (0 switches hard, with clicks).
    lookahead : bool
        See above.
    smoothing : int
        Moving median of each label's probability over this many windows before choosing a
        route (1: off; 3 is what ``instruments`` uses). It keeps a route from flickering on
        one doubtful window. With lookahead the median is centred and the lookahead grows by
        ``ceil((smoothing - 1) / 2)`` hops (one for 3); without, it trails, so changes come
        ``(smoothing - 1) / 2`` hops later on average.
    model, hop
        As for :class:`Tagger`: the model, and seconds between windows.

    Examples
    --------
    >>> from pedalboard import Pedalboard, Reverb, Compressor  # doctest: +SKIP
    >>> router = Router({"vocal": Pedalboard([Compressor(), Reverb()]),
    ...                  "guitar": Pedalboard([Reverb(room_size=0.8)])})  # doctest: +SKIP
    >>> out = router(audio, 44100)  # doctest: +SKIP
    >>> router.regions  # doctest: +SKIP
    [(0.0, 8.22, 'vocal'), (8.22, 16.0, 'guitar')]
    """

    _what = "Router"

    def __init__(
        self,
        boards: Mapping[str, Any],
        *,
        default: Any = None,
        threshold: float | Mapping[str, float] = 0.5,
        crossfade_ms: float = 50.0,
        lookahead: bool = True,
        smoothing: int = 1,
        model: Any = None,
        hop: float | None = None,
    ) -> None:
        from pedalboard import Plugin

        if not isinstance(boards, Mapping) or not boards:
            raise InputError(
                f"{self._what}: boards must be a non-empty dict {{label: Pedalboard}}, got {boards!r}"
            )
        super().__init__(model, hop=hop)
        labels = self.labels
        for lab, board in boards.items():
            if lab not in labels:
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
        self._index = {lab: labels.index(lab) for lab in self.boards}
        self.thresholds = self._thresholds(threshold)
        x = float(crossfade_ms)
        if not math.isfinite(x) or x < 0:
            raise InputError(f"{self._what}: crossfade_ms must be >= 0, got {crossfade_ms!r}")
        self.crossfade_ms = x
        self.lookahead = bool(lookahead)
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, np.integer)) or smoothing < 0:
            raise InputError(f"{self._what}: smoothing must be an int >= 0 (windows), got {smoothing!r}")
        self.smoothing = max(1, int(smoothing))
        # moving median over `smoothing` windows: centred with lookahead, trailing without
        self._after = (self.smoothing - 1 - (self.smoothing - 1) // 2) if self.lookahead else 0
        self._before = self.smoothing - 1 - self._after
        self.reset()

    def _thresholds(self, threshold: float | Mapping[str, float]) -> dict[str, float]:
        if isinstance(threshold, Mapping):
            extra = set(threshold) - set(self.boards)
            if extra:
                raise InputError(f"{self._what}: thresholds for labels without a board: {sorted(extra)}")
            thr = {lab: float(threshold.get(lab, 0.5)) for lab in self.boards}
        else:
            thr = dict.fromkeys(self.boards, float(threshold))
        for lab, v in thr.items():
            if not 0.0 < v < 1.0:
                raise InputError(f"{self._what}: threshold for {lab!r} must be in (0, 1), got {v!r}")
        return thr

    # ------------------------------------------------------------------ properties

    @property
    def latency_seconds(self) -> float:
        """Delay of block-by-block (``reset=False``) output: 0 without lookahead, else the
        lookahead :meth:`latency_samples` explains (3.1 s with the defaults)."""
        if not self.lookahead:
            return 0.0
        return self._lookahead_seconds()

    def _lookahead_seconds(self) -> float:
        w, h = self.window_seconds, self.hop_seconds
        return max(w, (w + h) / 2 + self.crossfade_ms / 2000.0) + self._after * h + EMIT_SLACK_S

    def latency_samples(self, sample_rate: float) -> int:
        """Delay of block-by-block output at ``sample_rate``, in samples.

        With lookahead a sample's route is known once the window whose centre is nearest
        has been heard: the first window after ``window`` seconds, later ones at most
        ``(window + hop) / 2`` plus half a crossfade after the sample, plus
        :data:`EMIT_SLACK_S`; a centred ``smoothing`` median waits for the windows after.
        """
        if not self.lookahead:
            return 0
        sr = check_sample_rate(sample_rate, what=self._what)
        return int(math.ceil(sr * self._lookahead_seconds())) + 1

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
        self._recent: list[tuple[Any, np.ndarray]] = []  # (window, probabilities; 0 when silent)
        self._base = 0  # stream index of _recent[0]
        self._n_decided = 0
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

    def _receive(self, w: Any, *, final: bool = False) -> None:
        """Take the next classified window (``None``: none) and decide every window that can be.

        A window is decided once the ``after`` windows of its median have arrived (at the end
        of the stream, with the neighbours there are, as the core's moving median does).
        """
        if w is not None:
            p = np.zeros(len(self._clf.labels)) if w.silent else np.asarray(w.probabilities, dtype=np.float64)
            self._recent.append((w, p))
        while True:
            k = self._n_decided - self._base  # position of the next undecided window in _recent
            if k >= len(self._recent) or (not final and len(self._recent) - 1 - k < self._after):
                break
            lo, hi = max(0, k - self._before), min(len(self._recent), k + self._after + 1)
            probs = (
                np.median(np.stack([q for _, q in self._recent[lo:hi]]), axis=0)
                if hi - lo > 1
                else self._recent[k][1]
            )
            self._decide(self._recent[k][0], probs)
            self._n_decided += 1
        drop = max(0, self._n_decided - self._before - self._base)
        if drop:
            del self._recent[:drop]
            self._base += drop

    def _choose(self, probabilities: np.ndarray) -> str | None:
        p = probabilities
        best, best_p = DEFAULT, -1.0
        for lab, i in self._index.items():
            if p[i] >= self.thresholds[lab] and p[i] > best_p:
                best, best_p = lab, float(p[i])
        return best

    def _decide(self, w: Any, probabilities: np.ndarray) -> None:
        sr = self._sr or 1
        win, hop = self.window_seconds, self.hop_seconds
        x = self._xfade(sr)
        start = float(w.start)
        if self.lookahead:
            # the next boundary is halfway between this window's centre and the next one's
            self._known = int(round(sr * (start + win / 2 + hop / 2))) - x // 2
        if w.silent:
            return
        key = self._choose(probabilities)
        if not self._decided and self.lookahead and self._n_out == 0:
            self._decided = True
            self._target = key
            self._fade = (-math.inf, {}, key)
            self._history = [(0, key)]
            return
        self._decided = True
        if key == self._target:
            return
        if self.lookahead:
            mid = int(round(sr * (start + win / 2 - hop / 2)))
            s = mid - x // 2
        else:
            s = int(round(sr * (start + win + EMIT_SLACK_S)))
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
        c, si = np.cos(0.5 * np.pi * t), np.sin(0.5 * np.pi * t)
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
        ch, n = x.shape
        first = not self._fifos
        if first:
            self._fifos = {k: _Fifo(ch) for k in self._all_boards()}
        for key, board in self._all_boards().items():
            if board is None:
                self._fifos[key].append(x)
                continue
            if first and 1 < ch and n <= ch:
                # pedalboard cannot tell channels from samples in a first block this short
                board.process(np.zeros((ch, ch + 1), dtype=np.float32), sr, reset=False)
            y = np.asarray(board.process(x[0] if ch == 1 else x, sr, reset=False), dtype=np.float32)
            if y.ndim == 1:
                y = y[None, :]
            if y.shape != (ch, n):
                name = "default" if key is None else repr(key)
                raise InputError(
                    f"{self._what}: the {name} board turned {ch} channel(s) x {n} samples into "
                    f"shape {y.shape}; every board must keep the channel count"
                )
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
        for w in self._clf.process(x.T, sr):
            self._receive(w)
        self._n_in += x.shape[1]
        ready = self._n_in if not self.lookahead else min(self._n_in, self._known)
        return self._mix(max(ready, self._n_out)), kind

    def _finish(self) -> np.ndarray:
        """End the stream: classify the last partial window and return the rest of the output."""
        if self._finished or self._sr is None:
            self._finished = True
            return np.zeros((self._channels or 1, 0), dtype=np.float32)
        for w in self._clf.flush():
            self._receive(w)
        self._receive(None, final=True)
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
        if reset:
            self.reset()
            y, kind = self._push(audio, sample_rate)
            y = np.concatenate([y, self._finish()], axis=1)
            return Layout.restore(y, kind)
        if self._finished:
            self.reset()
        sr = check_sample_rate(sample_rate, what=self._what)
        d = self.latency_samples(sr)
        a = audio if isinstance(audio, np.ndarray) else np.asarray(audio)
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
