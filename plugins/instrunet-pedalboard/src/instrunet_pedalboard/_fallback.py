"""TEMPORARY stand-in for ``instrunet_core.Classifier`` until the core's inference layer lands.

Same contract (push blocks, windows out), built on the current core's pieces. Removed
when ``instrunet_core.Classifier`` exists.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import soxr

from instrunet_core.analysis import Analysis, aggregate
from instrunet_core.audio import SILENCE_DB, as_float_audio, rms_db, to_mono
from instrunet_core.features import batch_features
from instrunet_core.model import Model, load_model, load_model_from_path
from instrunet_core.timeline import build_timeline, detect_instruments


@dataclasses.dataclass(frozen=True)
class WindowResult:
    start: float
    end: float
    probabilities: np.ndarray
    rms_db: float
    silent: bool
    label: str


class Classifier:
    def __init__(self, model: Any = None, *, hop: float | None = None, thresholds: Any = None) -> None:
        if isinstance(model, Model):
            self.model = model
        elif isinstance(model, os.PathLike) or (isinstance(model, str) and os.sep in model):
            self.model = load_model_from_path(model)
        else:
            self.model = load_model(model)
        fe = self.model.front_end
        self.sr = fe.sample_rate
        self.win = fe.window_samples
        self.hop_seconds = float(hop) if hop is not None else 1.5
        self.hop = int(round(self.hop_seconds * self.sr))
        self.window_seconds = self.win / self.sr
        self.latency_seconds = self.window_seconds
        self.labels = self.model.labels
        self.thresholds = self.model.thresholds
        if thresholds:
            self.thresholds.update(thresholds)
        self.reset()

    def reset(self) -> None:
        self.results: list[WindowResult] = []
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0
        self._next = 0
        self._total = 0
        self._rs: Any = None
        self._in_sr: int | None = None

    def _emit(self, items: list[tuple[np.ndarray, int, int]]) -> list[WindowResult]:
        if not items:
            return []
        w = np.stack([i[0] for i in items])
        p = self.model.predict_features(batch_features(w, fe=self.model.front_end))
        out = []
        for (x, s, n), pr in zip(items, p, strict=True):
            lv = float(rms_db(x[: max(1, n)]))
            sil = lv < SILENCE_DB
            out.append(WindowResult(s / self.sr, (s + n) / self.sr, pr.astype(np.float32), lv, sil,
                                    "silence" if sil else self.labels[int(np.argmax(pr))]))
        self.results.extend(out)
        return out

    def _push(self, y: np.ndarray) -> list[WindowResult]:
        self._total += y.shape[0]
        self._buf = np.concatenate([self._buf, y])
        items = []
        while self._next + self.win <= self._buf_start + self._buf.shape[0]:
            off = self._next - self._buf_start
            items.append((self._buf[off: off + self.win].copy(), self._next, self.win))
            self._next += self.hop
        drop = min(self._next - self._buf_start, self._buf.shape[0])
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return self._emit(items)

    def process(self, block: np.ndarray, sample_rate: int) -> list[WindowResult]:
        if self._in_sr is None:
            self._in_sr = int(sample_rate)
            if self._in_sr != self.sr:
                self._rs = soxr.ResampleStream(self._in_sr, self.sr, 1, dtype="float32", quality="HQ")
        b = np.asarray(block)
        y = to_mono(b) if b.ndim == 1 else as_float_audio(b).mean(axis=1).astype(np.float32)
        if self._rs is not None:
            y = self._rs.resample_chunk(y)
        return self._push(y)

    def flush(self) -> list[WindowResult]:
        out = []
        if self._rs is not None:
            out += self._push(self._rs.resample_chunk(np.zeros(0, np.float32), last=True))
        if self._next < self._total and (not self.results or self.results[-1].end * self.sr < self._total):
            off = self._next - self._buf_start
            tail = self._buf[off:]
            w = np.zeros(self.win, np.float32)
            w[: tail.shape[0]] = tail
            out += self._emit([(w, self._next, tail.shape[0])])
            self._next = self._total
        return out

    def analysis(self) -> Analysis:
        r = self.results
        L = len(self.labels)
        times = np.array([[w.start, w.end] for w in r]).reshape(-1, 2)
        probs = np.array([w.probabilities for w in r], np.float32).reshape(-1, L)
        lv = np.array([w.rms_db for w in r])
        sil = np.array([w.silent for w in r], bool)
        m = self.model
        return Analysis(
            source="stream", duration=self._total / self.sr,
            model={"name": m.name, "version": m.version, "task": m.task}, labels=m.labels,
            prediction=aggregate(m, probs, sil), timeline=build_timeline(times, probs, lv, sil, m.labels),
            instruments=detect_instruments(times, probs, lv, sil, m.labels, self.thresholds),
            extras={}, settings={"hop": self.hop_seconds},
        )
