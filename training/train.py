"""Train a family model and write its report.

Usage::

    python -m training.train --model default --corpus data/corpus --out runs/default [--version 1.0.0]

Selection rules (enforced by the code's structure, not by convention):

* epochs, the kept weights and the presence thresholds are chosen on ``valid`` and, when
  the corpus has one, on ``dev`` - whole real-recording libraries that training never sees,
  scored per library (their mean *and* their worst count), plus ensembles built from them and,
  for open-set models, the dev split's "other" sounds (:func:`fit_and_select` never receives
  test data);
* the ``test`` split (unseen TimGM6mb instruments) is featurised only after the model and
  its thresholds are frozen, by :func:`final_report`, and its numbers are written, never read
  back by anything that chooses.

Open-set models (``--open-set``) have a ninth sigmoid output, "other": the window sounds but
no family plays (drums, synths, speech, noise; :mod:`training.others`). Distillation
(``--teacher``) mixes an exported model's outputs into the targets; a waveform-input
teacher scores the examples' audio (the training set is then built with ``keep_audio``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np

from instrunet_core.labels import FAMILIES

from .cli_checks import ToolError, number_problems, refuse_existing, save_keras, write_json
from .dataset import OTHER, TARGETS, Examples, ExampleSpec, cached_examples, split_notes
from .evaluate import (
    chain_robustness,
    dev_breakdown,
    inputs_of,
    library_scores,
    model_batch,
    predict,
    score_set,
    selection_score,
)
from .metrics import pick_thresholds
from .others import load_others

REPORTS = Path(__file__).resolve().parent / "reports"
F = len(FAMILIES)


@dataclasses.dataclass
class Config:
    model: str
    corpus: Path
    out: Path
    version: str = "1.0.0"
    seed: int = 1234
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    n_train: int = 72000
    n_valid: int = 4000
    n_valid_mix: int = 1500
    n_valid_other: int = 1000
    n_test_mix: int = 2000
    n_dev: int = 20000  # at most this many dev clips (all of them when fewer)
    n_dev_mix: int = 2000  # ensembles built from dev clips (per-window labels)
    mix_prob: float = 0.4
    onset_prob: float = 0.5
    augment: bool = True
    augment_preset: str = "default"
    spec_augment: bool = True
    test: bool = True  # --no-test: experiments that must not even compute test numbers
    eq_db: float = 0.0
    width: int = 0  # default/compact model: channels of the first block (0: the model's own default)
    depth: int = 0  # default model: 4 or 5 conv blocks (0: the model's own default)
    dense: int = 0  # default/compact model: width of the embedding layer (0: the model's own default)
    # default model: channels per block, e.g. "16,16,32,64,128" (width and depth then ignored); with
    # --init-onnx, the artifact's network pruned to these channels (training.prune)
    channels: str = ""
    # default model: 2x2 max-pooling anti-aliased along "time" or "both" axes (training.models._max_blur_pool)
    blur_pool: str = ""
    patience: int = 5
    # after training, the mean of the weights of the last N epochs run (N >= 2; 0: off) is scored as
    # one more candidate and kept when its selection score is the best (epoch averaging)
    average_epochs: int = 0
    time_budget_min: float | None = 70.0
    real_prob: float = 0.0  # chance to draw a family's real-library instrument (see training.dataset)
    # FAMILY=P (repeatable): that chance for one family instead (the training set only)
    real_prob_family: tuple[str, ...] = ()
    music_prob: float = 0.0  # chance to reshape a SoundFont note into a musical clip
    pre_silence_prob: float = 0.0  # chance of silence before the onset
    # chance that a SoundFont note sounds as a chord of its instrument (the training set only)
    chord_prob: float = 0.0
    # chance that an other clip is cut to one or two short sounding stretches (the training set only)
    fragment_prob: float = 0.0
    ensemble_prob: float = 0.0  # chance of an ensemble of 2-5 parts (per-window labels)
    other_prob: float = 0.0  # chance of an "other" example (drums, synths, speech, noise)
    other_under_prob: float = 0.0  # chance of other sound mixed under an instrument example
    open_set: bool = False  # a ninth output, "other"
    keep_audio: bool = False  # keep the training examples' audio (teachers and models that take audio)
    blocks: int = 4  # large model: trainable blocks at the end of YAMNet's 14 (0: all)
    irs: bool = False  # measured room/device impulse responses in the augmentation (needs --sources)
    sources: Path | None = None  # mirror folder of training/sources.lock.json
    # start from an exported artifact's weights (same architecture; a larger --width grows it: training.widen)
    init_onnx: Path | None = None
    init_keras: Path | None = None  # continue from a saved Keras model of the same architecture
    # distil from exported multilabel artifacts (folder or model.onnx) or "yamnet", averaged
    teacher: tuple[Path, ...] = ()
    distill: float = 0.5  # with --teacher: weight of the teachers' probabilities in the training targets
    # with --teacher: that weight for examples where two or more families play (default: --distill)
    distill_mix: float | None = None
    # with --teacher: that weight for examples of "other" sound alone, where no family plays
    # (default: --distill; 0 keeps their labels, so that what no teacher knows is taught as other)
    distill_other: float | None = None
    # with --teacher: the teachers whose "other" column alone makes the "other" target (repeat;
    # default: every teacher that has one)
    other_teacher: tuple[Path, ...] = ()
    # share of the training examples that also train through a random producer chain
    # (training.augment.random_chain) with the clean example's targets (needs their audio)
    chain_copies: float = 0.0
    # multilabel models: the eight family outputs' biases held at or below logit(P) from the start
    # and after every training step, so that a window whose last hidden layer is silent answers at
    # most P for every family: presence has to come from evidence (None: off). Without it the
    # shipped networks' silent-layer answer lies above most of their thresholds.
    bias_ceiling: float | None = None
    cache: Path = Path("cache/examples")
    report_dir: Path | None = None
    workers: int | None = None
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return str(v) if isinstance(v, Path) else [plain(x) for x in v] if isinstance(v, tuple) else v

        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}

    @property
    def n_outputs(self) -> int:
        return F + 1 if self.open_set else F

    @property
    def audio(self) -> bool:
        """Whether the model takes window audio (its front end inside) rather than log-mel windows."""
        from .models import AUDIO_MODELS

        return self.model in AUDIO_MODELS


def spec_augment(
    x: np.ndarray,
    rng: np.random.Generator,
    *,
    p_mask: float = 0.5,
    max_mel: int = 16,
    max_frames: int = 24,
    p_eq: float = 0.5,
    eq_db: float = 0.0,
    top_db: float = 80.0,
) -> np.ndarray:
    """Feature-level augmentation, in place, drawn afresh every epoch (so the cached,
    pre-augmented windows never repeat exactly). ``x``: ``[B, n_mels, frames]`` in [0, 1].

    * random timbre EQ (when ``eq_db > 0``, probability ``p_eq``): a smooth random curve over
      the mel axis (three cosines), at most ``eq_db`` dB, added to the sounding cells (the
      floor stays the floor), then re-referenced so the window's peak is 1 again, as the front
      end would have done;
    * SpecAugment masks: with probability ``p_mask`` each, one band of up to ``max_mel`` mel
      bins and one span of up to ``max_frames`` frames set to the floor (0).
    """
    b, n_mels, frames = x.shape
    m = np.arange(n_mels) / (n_mels - 1)
    k = np.arange(1, 4)[:, None]
    for i in range(b):
        if eq_db > 0 and rng.random() < p_eq:
            curve = (rng.uniform(-1, 1, (3, 1)) * np.cos(np.pi * k * m + rng.uniform(0, np.pi, (3, 1)))).sum(
                0
            )
            curve *= rng.uniform(0, eq_db) / max(float(np.abs(curve).max()), 1e-6) / top_db
            xi = x[i]
            sounding = xi > 0
            if sounding.any():
                xi += np.where(sounding, curve[:, None].astype(np.float32), np.float32(0))
                xi -= xi.max() - np.float32(1.0)
                np.clip(xi, 0.0, 1.0, out=xi)
                xi[~sounding] = 0.0
        if rng.random() < p_mask:
            w = int(rng.integers(1, max_mel + 1))
            a = int(rng.integers(0, n_mels - w + 1))
            x[i, a : a + w, :] = 0
        if rng.random() < p_mask:
            w = int(rng.integers(1, max_frames + 1))
            a = int(rng.integers(0, frames - w + 1))
            x[i, :, a : a + w] = 0
    return x


class _Batches:
    """Shuffled float32 batches from a float16 array of log-mel windows (or an int16 array of
    window audio) without copying the whole set."""

    def __init__(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        batch_size: int,
        seed: int,
        masks: bool = False,
        eq_db: float = 0.0,
    ):
        import keras

        class Seq(keras.utils.PyDataset):
            def __init__(s) -> None:
                super().__init__()
                s.rng = np.random.default_rng(seed)
                s.order = s.rng.permutation(len(X))

            def __len__(s) -> int:
                return math.ceil(len(X) / batch_size)

            def __getitem__(s, i: int) -> tuple[np.ndarray, np.ndarray]:
                idx = np.sort(s.order[i * batch_size : (i + 1) * batch_size])
                if X.ndim == 2:  # window audio (int16) for a model that takes audio
                    return model_batch(X[idx]), Y[idx]
                x = X[idx].astype(np.float32)
                if masks:
                    spec_augment(x, s.rng, eq_db=eq_db)
                return x[..., None], Y[idx]

            def on_epoch_end(s) -> None:
                s.order = s.rng.permutation(len(X))

        self.seq = Seq()


#: ``--teacher yamnet``: Google's AudioSet network itself (:mod:`training.teacher`), not an artifact.
YAMNET = "yamnet"


def teacher_targets(
    teacher: Path,
    ex: Examples,
    *,
    cache: Path | None = None,
    batch_size: int = 256,
    fit_on: Examples | None = None,
) -> np.ndarray:
    """An exported multilabel model's outputs on every example of ``ex``: ``[N, 8]``, or
    ``[N, 9]`` when the teacher has an open-set output. A waveform-input teacher scores the
    examples' audio (``ex.W``), a log-mel one their features. Cached under ``cache`` by the
    teacher's sha256 and the set's folder name (teachers can be slow).

    ``teacher`` may also be :data:`YAMNET`: the AudioSet network's family and group scores
    (:func:`yamnet_targets`), mapped to our outputs by regressions fitted on the labels of
    ``fit_on`` (a training set; default ``ex`` itself, right only when ``ex`` is the training
    set: a dev or test set passes the training set here)."""
    if str(teacher) == YAMNET:
        if fit_on is None:
            return yamnet_targets(ex, cache=cache, batch_size=batch_size)
        return yamnet_targets(fit_on, cache=cache, batch_size=batch_size, apply_to=ex)
    from instrunet_core.model import open_model

    session = open_model(teacher)
    if session.task != "multilabel" or tuple(session.labels)[:F] != tuple(FAMILIES):
        raise ValueError(
            f"{teacher}: the teacher must be a multilabel model over {list(FAMILIES)} "
            f"(it is {session.task} over {list(session.labels)})"
        )
    waveform = session.input_kind == "waveform"
    if waveform and ex.W is None:
        raise ValueError(f"{teacher}: a waveform-input teacher needs the examples' audio (keep_audio)")

    def run() -> np.ndarray:
        out = []
        for i in range(0, len(ex), batch_size):
            if waveform:
                assert ex.W is not None
                o = session.outputs_windows(np.asarray(ex.W[i : i + batch_size], np.float32) / 32767.0)
            else:
                o = session.outputs_features(np.asarray(ex.X[i : i + batch_size], np.float32))
            out.append(o.probabilities if o.other is None else np.column_stack([o.probabilities, o.other]))
        return np.concatenate(out).astype(np.float32)

    # ":other" in the key: before, an open-set teacher's scores were cached without its "other" column
    open_set = session.manifest.other is not None
    return _cached_scores(cache, ex, session.manifest.sha256 + (":other" if open_set else ""), run)


def _cached_scores(cache: Path | None, ex: Examples, tag: str, compute: Any) -> np.ndarray:
    """``compute()``, a teacher's scores on ``ex``, kept as ``cache/teacher-<key>.npy`` (the key
    hashes ``tag``, the teacher's identity, with the set's folder name and size) and read back
    from there next time; not kept when there is no cache or the set was not cached."""
    path = None
    if cache is not None and ex.key:
        key = hashlib.sha256(f"{tag}:{ex.key}:{len(ex)}".encode()).hexdigest()[:16]
        path = Path(cache) / f"teacher-{key}.npy"
        if path.is_file():
            return np.load(path)
    scores = np.asarray(compute(), np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, scores)
    return scores


def yamnet_groups(ex: Examples, *, cache: Path | None = None, batch_size: int = 64) -> np.ndarray:
    """YAMNet's family and group scores (:data:`training.teacher.GROUPS`, max over a group's
    classes, mean over the window's five patches) on every example's audio: ``[N, groups]``.
    Cached under ``cache`` by the teacher graph's sha256 and the set's folder name."""
    from .teacher import Teacher

    t = Teacher(threads=os.cpu_count() or 1)
    graph = t.manifest["graphs"]["yamnet_windows.onnx"]["sha256"]

    def run() -> np.ndarray:
        if ex.W is None:
            raise ValueError("the YAMNet teacher needs the examples' audio (keep_audio)")
        w = ex.W
        return np.concatenate(
            [
                t.score_windows(np.asarray(w[i : i + batch_size], np.float32) / 32767.0).groups
                for i in range(0, len(ex), batch_size)
            ]
        )

    return _cached_scores(cache, ex, f"{graph}:groups", run)


def yamnet_targets(
    ex: Examples, *, cache: Path | None = None, batch_size: int = 64, apply_to: Examples | None = None
) -> np.ndarray:
    """YAMNet as a teacher: ``[N, 9]`` probabilities for our eight families and "other".

    AudioSet's scores are not probabilities of our labels (its family classes fire at 0.2-0.6
    on a clear note, and its groups overlap ours only in part), so each output is a logistic
    regression on the log-odds of all of YAMNet's family and group scores, fitted on the
    training examples' own labels (``ex.Y``; training data only, nothing from dev or test).
    What the teacher adds is how the scores of one example compare with another's: the
    AudioSet knowledge of real voices, guitars and strings that the corpus lacks.

    ``apply_to``: score another set with the regressions fitted on ``ex`` (default: ``ex``)."""
    from sklearn.linear_model import LogisticRegression

    def log_odds(s: Examples) -> np.ndarray:
        g = np.clip(yamnet_groups(s, cache=cache, batch_size=batch_size), 1e-4, 1 - 1e-4)
        return np.log(g / (1 - g))

    z = log_odds(ex)
    za = z if apply_to is None else log_odds(apply_to)
    y = np.asarray(ex.Y) > 0.5
    p = np.zeros((len(za), y.shape[1]), np.float32)
    for j in range(y.shape[1]):
        if y[:, j].all() or not y[:, j].any():
            p[:, j] = float(y[0, j])
            continue
        lr = LogisticRegression(C=1.0, max_iter=500).fit(z, y[:, j])
        p[:, j] = lr.predict_proba(za)[:, 1]
    return p


def score_teachers(cfg: Config) -> dict[str, Any]:
    """Each of ``cfg.teacher`` and their mean (:func:`mean_targets`) on the real dev clips:
    balanced accuracy of the arg-max over the eight families, recall per family and balanced
    accuracy per dev library (YAMNet through the regressions fitted on the training set).
    What chose the teachers of a distilled model; test is never read."""
    from .evaluate import dev_breakdown

    sets = build_sets(cfg, keep_audio=True)
    if "single" not in sets.dev:
        raise ValueError(
            f"{cfg.corpus}: no dev split to score the teachers on (build the corpus with --sources)"
        )
    dev = sets.dev["single"]
    ps = {str(t): teacher_targets(t, dev, cache=cfg.cache, fit_on=sets.train) for t in cfg.teacher}
    ps["mean"] = mean_targets(list(ps.values()))
    out: dict[str, Any] = {"teachers": [str(t) for t in cfg.teacher], "n_dev": len(dev), "scores": {}}
    for name, p in ps.items():
        b = dev_breakdown(p[:, :F], dev, sets.dev_notes, None)
        recall = b["per_family_recall"]
        out["scores"][name] = {
            "balanced_accuracy": float(np.mean([r for r in recall.values() if r is not None])),
            "per_family_recall": recall,
            "per_source": {k: v.get("balanced_accuracy") for k, v in b["per_source"].items()},
        }
    return out


def score_means(cfg: Config, means: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Score means of a finished run's saved epochs (``<out>/<model>.epoch<N>.keras``, which
    ``--average-epochs`` keeps) on valid and dev as :func:`fit_and_select` scores a candidate:
    the selection parts and score, and balanced accuracy per dev library. Which epochs to
    average is a choice made on valid and dev; test is never read."""
    import keras

    from .evaluate import library_scores

    if any(not epochs for epochs in means):
        raise ValueError("an empty set of epochs to average")
    paths = {e: cfg.out / f"{cfg.model}.epoch{e}.keras" for epochs in means for e in epochs}
    for path in paths.values():
        if not path.is_file():
            raise ValueError(f"{path}: no such saved epoch (train with --average-epochs to keep them)")
    sets = build_sets(cfg, keep_audio=cfg.keep_audio or cfg.audio)
    model = None  # one network to load the means into
    weights: dict[int, list[np.ndarray]] = {}
    for e, path in sorted(paths.items()):
        saved = keras.models.load_model(path, compile=False)
        weights[e] = saved.get_weights()
        model = model or saved
    assert model is not None
    rows = []
    for epochs in means:
        model.set_weights(average_weights([weights[e] for e in epochs]))
        parts, th, preds = epoch_scores(model, sets, audio=cfg.audio)
        libraries = (
            library_scores(preds["dev"]["single"], sets.dev["single"], sets.dev_notes, th)
            if "single" in sets.dev
            else {}
        )
        rows.append(
            {"epochs": list(epochs), **parts, "score": selection_score(parts), "libraries": libraries}
        )
    return {"run": str(cfg.out), "means": rows}


def ensemble_targets(
    teachers: Sequence[Path],
    ex: Examples,
    *,
    cache: Path | None = None,
    other_from: Sequence[Path] = (),
) -> np.ndarray:
    """Several teachers' :func:`teacher_targets`, averaged by :func:`mean_targets`; with
    ``other_from``, the "other" column is the mean of those teachers' alone (each must have
    one)."""
    p = mean_targets([teacher_targets(t, ex, cache=cache) for t in teachers])
    if other_from:
        others = [teacher_targets(t, ex, cache=cache) for t in other_from]
        if any(o.shape[1] <= OTHER for o in others):
            raise ValueError(f"--other-teacher: every one must have an 'other' output ({list(other_from)})")
        if p.shape[1] <= OTHER:
            p = np.column_stack([p, np.zeros(len(p), np.float32)])
        p[:, OTHER] = np.mean([o[:, OTHER] for o in others], axis=0)
    return p


def mean_targets(ps: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of several teachers' ``[N, 8]`` or ``[N, 9]`` probabilities, column by column:
    the families over every teacher, "other" over the teachers that have it (``[N, 9]`` when any
    has)."""
    k = max(p.shape[1] for p in ps)
    total = np.zeros((len(ps[0]), k), np.float64)
    count = np.zeros(k, np.float64)
    for p in ps:
        total[:, : p.shape[1]] += p
        count[: p.shape[1]] += 1
    return (total / count).astype(np.float32)


def distilled_targets(
    Y: np.ndarray,
    p: np.ndarray,
    weight: float,
    *,
    mix_weight: float | None = None,
    other_weight: float | None = None,
) -> np.ndarray:
    """``(1 - weight) * Y + weight * p`` over the columns the teacher has (knowledge
    distillation): soft targets that carry what the teacher learned about similar families (a
    muted trumpet that sounds half like a reed) while the labels keep it honest where the
    teacher is wrong. Columns the teacher lacks keep their labels, and so do the examples
    labelled in one of them.

    ``mix_weight``: the weight for examples where two or more families play (default:
    ``weight``). Teachers that learnt from single instruments are least sure there: in this
    corpus's mixtures they give the families that play 0.33-0.37 on average and those that do
    not 0.18-0.23, so distilling from them teaches the student to leave absent families
    half-way up.

    ``other_weight``: the weight for examples of "other" sound alone (no family labelled; with
    an open-set teacher, default ``weight``). The teachers answer a sound that none of them has
    heard (a bare oscillator, a close-miked kit) with a family; 0 keeps the label there."""
    for given in (weight, mix_weight, other_weight):
        if given is not None and not 0.0 <= given <= 1.0:
            raise ValueError(f"distill weight must be in [0, 1], got {given}")
    out = Y.astype(np.float32).copy()
    k = min(p.shape[1], Y.shape[1])
    w = np.full((len(Y), 1), weight, np.float32)
    if mix_weight is not None:
        w[Y[:, : min(k, F)].sum(axis=1) >= 2] = mix_weight
    if other_weight is not None and Y.shape[1] > F:
        w[(Y[:, :F].max(axis=1) == 0) & (Y[:, F:].max(axis=1) > 0)] = other_weight
    out[:, :k] = (1.0 - w) * Y[:, :k] + w * p[:, :k]
    # An eight-family teacher has never heard drums or noise: where a column it lacks is on
    # (an open-set example), its family guesses would teach the student to name a family.
    unknown = Y[:, k:].max(axis=1) > 0 if Y.shape[1] > k else np.zeros(len(Y), bool)
    out[unknown] = Y[unknown]
    return out


@dataclasses.dataclass
class Sets:
    """Every example set a run uses, by split and kind (``single``, ``mix``, ``other``)."""

    train: Examples
    valid: dict[str, Examples]
    dev: dict[str, Examples]
    dev_notes: dict[str, Any]


def _examples(cfg: Config, spec: ExampleSpec) -> Examples:
    return cached_examples(
        cfg.corpus, spec, cfg.cache, workers=cfg.workers, progress=cfg.progress, sources=cfg.sources
    )


def real_prob_family(specs: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """``("reed=0.1", ...)`` as ``(("reed", 0.1), ...)``; an unknown family or a chance outside
    [0, 1] is a ``ValueError``."""
    out = []
    for spec in specs:
        name, _, value = spec.partition("=")
        try:
            chance = float(value)
        except ValueError:
            raise ValueError(f"--real-prob-family {spec!r}: FAMILY=CHANCE, e.g. reed=0.1") from None
        if name not in FAMILIES or not 0.0 <= chance <= 1.0:
            raise ValueError(f"--real-prob-family {spec!r}: a family of {FAMILIES} and a chance in [0, 1]")
        out.append((name, chance))
    return tuple(sorted(out))


def build_sets(cfg: Config, *, keep_audio: bool = False) -> Sets:
    """The training set, and the valid and dev sets that choose (never test)."""
    s = cfg.seed
    train = _examples(
        cfg,
        ExampleSpec(
            "train",
            cfg.n_train,
            s,
            mix_prob=cfg.mix_prob,
            augment=cfg.augment,
            onset_prob=cfg.onset_prob,
            real_prob=cfg.real_prob,
            real_prob_family=real_prob_family(cfg.real_prob_family),
            chord_prob=cfg.chord_prob,
            fragment_prob=cfg.fragment_prob,
            music_prob=cfg.music_prob,
            pre_silence_prob=cfg.pre_silence_prob,
            irs=cfg.irs,
            ensemble_prob=cfg.ensemble_prob,
            other_prob=cfg.other_prob,
            other_under_prob=cfg.other_under_prob,
            augment_preset=cfg.augment_preset,
            keep_audio=keep_audio,
        ),
    )
    valid = {
        "single": _examples(
            cfg, ExampleSpec("valid", cfg.n_valid, s + 1, random_crop=False, keep_audio=True)
        ),
        "mix": _examples(
            cfg,
            ExampleSpec("valid", cfg.n_valid_mix, s + 2, mix_prob=1.0, random_crop=False, keep_audio=True),
        ),
    }
    if cfg.open_set and load_others(cfg.corpus / "valid"):
        valid["other"] = _examples(
            cfg,
            ExampleSpec(
                "valid",
                cfg.n_valid_other,
                s + 7,
                other_prob=1.0,
                noise_share=0.2,
                random_crop=False,
                keep_audio=True,
            ),
        )
    dev: dict[str, Examples] = {}
    dev_notes: dict[str, Any] = {}
    if (cfg.corpus / "dev" / "examples.json").is_file():
        notes = split_notes(cfg.corpus, "dev")
        dev_notes = {n.note_str: n for n in notes}
        dev["single"] = _examples(  # with their audio: the robustness chains process it
            cfg,
            ExampleSpec(
                "dev", min(cfg.n_dev, len(notes)), s + 5, balanced=False, random_crop=False, keep_audio=True
            ),
        )
        if cfg.n_dev_mix:
            dev["mix"] = _examples(
                cfg, ExampleSpec("dev", cfg.n_dev_mix, s + 6, ensemble_prob=1.0, keep_audio=True)
            )
        others = load_others(cfg.corpus / "dev")
        if cfg.open_set and others:
            dev["other"] = _examples(
                cfg,
                ExampleSpec(
                    "dev",
                    len(others),
                    s + 8,
                    balanced=False,
                    other_prob=1.0,
                    random_crop=False,
                    keep_audio=True,
                ),
            )
    return Sets(train, valid, dev, dev_notes)


#: Examples processed per chunk (and per random generator) for the chained copies.
CHAIN_CHUNK = 512


def _chained_chunk(job: tuple[Path, np.ndarray, int, int]) -> np.ndarray:
    from instrunet_core.features import DEFAULT_FRONT_END, batch_features

    from .augment import random_chain

    path, idx, seed, chunk = job
    W = np.load(path, mmap_mode="r")
    rng = np.random.default_rng([seed, 11, chunk])
    sr = DEFAULT_FRONT_END.sample_rate
    return batch_features(np.stack([random_chain(w, sr, rng) for w in model_batch(W[idx])])).astype(
        np.float16
    )


def chain_copies(cfg: Config, train: Examples) -> tuple[np.ndarray, np.ndarray]:
    """``--chain-copies P``: which training examples (``idx``, a share ``P`` of them drawn with
    the run's seed) and their log-mel windows after a random producer chain
    (:func:`training.augment.random_chain`), cached beside the training set's arrays. Training
    gives each copy the targets of the clean example it came from (with ``--teacher``, the
    teachers' answers on the clean window), so that a chain changes what the network answers as
    little as possible (issue 21: the label-change rate under the producer chains)."""
    from .augment import CHAIN_RANGES

    if train.W is None or not train.key:
        raise ValueError("--chain-copies needs a cached training set with its audio (keep_audio)")
    n = len(train)
    k = int(round(cfg.chain_copies * n))
    idx = np.sort(np.random.default_rng([cfg.seed, 11]).choice(n, size=k, replace=False))
    if k == 0:
        return idx, np.zeros((0, *train.X.shape[1:]), np.float16)
    folder = Path(cfg.cache) / train.key
    ranges = hashlib.sha256(json.dumps(CHAIN_RANGES, sort_keys=True).encode()).hexdigest()[:8]
    path = folder / f"chained-{cfg.seed}-{k}-{ranges}.npy"
    if path.is_file():
        return idx, np.load(path, mmap_mode="r")
    jobs = [
        (folder / "W.npy", idx[i : i + CHAIN_CHUNK], cfg.seed, c)
        for c, i in enumerate(range(0, k, CHAIN_CHUNK))
    ]
    tmp = path.with_name(path.stem + ".partial.npy")
    X = np.lib.format.open_memmap(tmp, "w+", np.float16, (k, *train.X.shape[1:]))
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=cfg.workers or os.cpu_count() or 1) as pool:
        for c, x in enumerate(pool.map(_chained_chunk, jobs)):
            X[c * CHAIN_CHUNK : c * CHAIN_CHUNK + len(x)] = x
    X.flush()
    del X
    os.replace(tmp, path)
    print(f"chained copies: {k} of {n} training examples [{time.time() - t0:.0f}s]", flush=True)
    return idx, np.load(path, mmap_mode="r")


def _targets(cfg: Config, task: str, Y: np.ndarray) -> np.ndarray:
    return Y[:, : cfg.n_outputs] if task == "multilabel" else Y[:, :F]


def choose_thresholds(
    preds: dict[str, dict[str, np.ndarray]], sets: Sets, *, beta: float = 1.0
) -> dict[str, float]:
    """Presence thresholds per family on valid and dev singles and mixtures (per-family F1, or
    F-beta), and, for an open-set model, the "other" threshold on other sounds against instruments."""
    ys, ps = [], []
    for split, group in (("valid", sets.valid), ("dev", sets.dev)):
        for kind in ("single", "mix"):
            if kind in group and kind in preds.get(split, {}):
                ys.append(group[kind].Y[:, :F])
                ps.append(preds[split][kind][:, :F])
    th = dict(zip(FAMILIES, pick_thresholds(np.concatenate(ys), np.concatenate(ps), beta=beta), strict=True))
    if next(iter(preds["valid"].values())).shape[1] > F:
        yo, po = [], []
        for split, group in (("valid", sets.valid), ("dev", sets.dev)):
            for kind, ex in group.items():
                yo.append(ex.Y[:, OTHER])
                po.append(preds[split][kind][:, OTHER])
        th["other"] = pick_thresholds(np.concatenate(yo)[:, None], np.concatenate(po)[:, None])[0]
    return th


def epoch_scores(
    model: Any, sets: Sets, *, audio: bool = False
) -> tuple[dict[str, float], dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """Selection parts, thresholds and predictions of ``model`` on valid and dev."""
    preds = {
        split: {kind: predict(model, inputs_of(ex, audio)) for kind, ex in group.items()}
        for split, group in (("valid", sets.valid), ("dev", sets.dev))
    }
    th = choose_thresholds(preds, sets)
    pv = preds["valid"]
    parts = {
        "valid_balanced_accuracy": score_set(pv["single"], sets.valid["single"], "single", th)["single"][
            "balanced_accuracy"
        ],
        "valid_mix_micro_f1": score_set(pv["mix"], sets.valid["mix"], "mix", th)["mixture"]["micro_f1"],
    }
    if "single" in sets.dev:
        libs = library_scores(preds["dev"]["single"], sets.dev["single"], sets.dev_notes, th)
        parts["dev_library_mean"] = float(np.mean(list(libs.values())))
        parts["dev_library_worst"] = float(min(libs.values()))
    if "mix" in sets.dev:
        parts["dev_ensemble_micro_f1"] = score_set(preds["dev"]["mix"], sets.dev["mix"], "mix", th)[
            "mixture"
        ]["micro_f1"]
    if "other" in th:
        found = [
            score_set(preds[sp]["other"], g["other"], "other", th)["other"]["answered_other"]
            for sp, g in (("valid", sets.valid), ("dev", sets.dev))
            if "other" in g
        ]
        false = score_set(preds["valid"]["single"], sets.valid["single"], "single", th)["single"][
            "other_answers"
        ]
        if found:
            parts["open_set"] = float(np.mean(found)) - false
    return parts, th, preds


#: Training windows the pruning of ``--init-onnx`` to ``--channels`` measures and refits on.
PRUNE_CALIBRATION = 2048


def channels_of(text: str) -> tuple[int, ...]:
    """``"16,16,32,64,128"`` → ``(16, 16, 32, 64, 128)``."""
    try:
        out = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(
            f"--channels {text!r}: comma-separated whole numbers, e.g. 16,16,32,64,128"
        ) from None
    from .models import check_channels

    try:
        return check_channels(out)
    except ValueError as e:
        raise ValueError(f"--channels {text!r}: {e}") from None


def start_model(cfg: Config, task: str, X: np.ndarray) -> tuple[Any, dict[str, Any] | None]:
    """The network training starts from, and how it was initialised (``None``: at random).

    ``--init-onnx`` copies an exported artifact's weights (:func:`training.warmstart.init_from_onnx`;
    batch normalisation calibrated on ``X``), then with ``--channels`` prunes it
    (:func:`training.prune.prune_default`), then with ``--blur-pool`` moves the same weights
    into the network whose pooling is anti-aliased (blur pooling has no weights).
    ``--init-keras`` loads a saved model of the same shape.
    """
    import keras

    from .models import build_model

    arch: dict[str, Any] = {
        k: v for k, v in (("width", cfg.width), ("depth", cfg.depth), ("dense", cfg.dense)) if v
    }
    if cfg.audio:
        arch["blocks"] = cfg.blocks or None
    pruned = bool(cfg.channels) and cfg.init_onnx is not None
    if cfg.channels and not pruned:
        arch["channels"] = channels_of(cfg.channels)
    if cfg.blur_pool and cfg.init_onnx is None:
        arch["blur_pool"] = cfg.blur_pool
    n_out = cfg.n_outputs if task == "multilabel" else F
    model = build_model(cfg.model, n_out, **arch)
    init: dict[str, Any] | None = None
    if cfg.init_onnx is not None:
        from .warmstart import artifact_width, init_from_onnx

        calibration = np.asarray(X[:: max(1, len(X) // 512)][:512])
        width = artifact_width(cfg.init_onnx)
        if cfg.width and cfg.width > width and not cfg.channels:
            # a wider network of the artifact's architecture: the artifact at its own width,
            # then grown into this one (training.widen), computing what the artifact does
            from .widen import widen

            narrow = build_model(cfg.model, n_out, **{**arch, "width": width})
            init = init_from_onnx(narrow, cfg.init_onnx, calibration=calibration)
            init["widened"] = {"from_width": width, **widen(narrow, model)}
            print(f"widened from width {width} to {cfg.width}: {init['widened']}", flush=True)
        else:
            init = init_from_onnx(model, cfg.init_onnx, calibration=calibration)
        print(f"initialised from {cfg.init_onnx} (max difference {init['max_abs_diff']:.1e})", flush=True)
        if pruned:
            from .prune import prune_default

            t0 = time.time()
            cal = np.asarray(X[:: max(1, len(X) // PRUNE_CALIBRATION)][:PRUNE_CALIBRATION], np.float32)
            model, kept = prune_default(model, channels_of(cfg.channels), cal, seed=cfg.seed)
            init["pruned"] = {k: v for k, v in kept.items() if k != "kept"}
            print(
                f"pruned to {kept['channels_after']} channels, least-squares refit on {len(cal)} windows "
                f"(kept score share {', '.join(f'{v:.2f}' for v in kept['score_share_kept'])}) "
                f"[{time.time() - t0:.0f}s]",
                flush=True,
            )
        if cfg.blur_pool:
            # the artifact's network, pruned or not, with its pooling anti-aliased: the same
            # weights (blur pooling has none) in the network that --blur-pool builds
            shape = {"channels": channels_of(cfg.channels)} if pruned else {}
            blurred = build_model(cfg.model, n_out, **arch, **shape, blur_pool=cfg.blur_pool)
            blurred.set_weights(model.get_weights())
            model = blurred
            init["blur_pool"] = cfg.blur_pool
            print(f"pooling anti-aliased ({cfg.blur_pool}), the same weights", flush=True)
    elif cfg.init_keras is not None:
        saved = keras.models.load_model(cfg.init_keras, compile=False)
        shapes = [w.shape for w in model.get_weights()]
        if [w.shape for w in saved.get_weights()] != shapes:
            raise ValueError(f"{cfg.init_keras}: not a {cfg.model} model of this shape (weights differ)")
        model.set_weights(saved.get_weights())
        init = {"from": str(cfg.init_keras), "kind": "keras"}
        print(f"initialised from {cfg.init_keras}", flush=True)
    return model, init


def _parts_text(parts: Mapping[str, float]) -> str:
    """``name value`` pairs of selection parts, as the training log prints them."""
    return " ".join(f"{k} {v:.4f}" for k, v in parts.items())


def average_weights(runs: Sequence[list[np.ndarray]]) -> list[np.ndarray]:
    """The element-wise mean of several weight lists of one model (epoch averaging; batch
    normalisation's moving statistics are averaged as well, close enough along one low-rate run)."""
    if not runs:
        raise ValueError("no weights to average")
    if any(
        len(r) != len(runs[0]) or any(a.shape != b.shape for a, b in zip(r, runs[0], strict=False))
        for r in runs
    ):
        raise ValueError("the weights to average are not of one model")
    return [
        np.mean([r[i] for r in runs], axis=0, dtype=np.float64).astype(runs[0][i].dtype)
        for i in range(len(runs[0]))
    ]


def family_bias_ceiling(model: Any, ceiling: float) -> np.ndarray:
    """Clamp the output layer's family biases (the first :data:`F`) to at most ``logit(ceiling)``,
    in place; returns the clamped biases. The "other" output, when there is one, is left alone."""
    from .models import OUTPUT_NAME

    if not 0.0 < ceiling < 1.0:
        raise ValueError(f"bias ceiling {ceiling}: a probability in (0, 1)")
    layer = model.get_layer(OUTPUT_NAME)
    kernel, bias = layer.get_weights()
    top = float(np.log(ceiling / (1.0 - ceiling)))
    bias = bias.copy()
    bias[:F] = np.minimum(bias[:F], top)
    layer.set_weights([kernel, bias])
    return bias


class _BiasCeiling:
    """Keras callback (duck-typed, built lazily): :func:`family_bias_ceiling` at the start and
    after every training batch."""

    def __new__(cls, model: Any, ceiling: float) -> Any:
        import keras

        class BiasCeiling(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                family_bias_ceiling(model, ceiling)

        family_bias_ceiling(model, ceiling)
        return BiasCeiling()


def fit_and_select(
    cfg: Config,
    task: str,
    train: tuple[np.ndarray, np.ndarray],
    sets: Sets,
    *,
    resume: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train on ``train``; choose epoch and weights by :func:`training.evaluate.selection_score`
    of valid and dev. Never sees test data.

    After every epoch the loop's whole state is written to ``cfg.out``
    (:mod:`training.resume`); ``resume``, a checkpoint read by :func:`training.resume.check`,
    continues from it."""
    import keras

    from . import resume as checkpoint

    keras.utils.set_random_seed(cfg.seed)
    X, Y = train
    model, init = start_model(cfg, task, X)
    if resume is not None:
        init = resume["init"]
    callbacks: list[Any] = [keras.callbacks.TerminateOnNaN()]
    if cfg.bias_ceiling is not None:
        callbacks.append(_BiasCeiling(model, cfg.bias_ceiling))
        if init is not None:
            init["bias_ceiling"] = cfg.bias_ceiling
    steps = math.ceil(len(X) / cfg.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=steps * cfg.epochs, alpha=0.05)
    loss = "binary_crossentropy" if task == "multilabel" else "categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss)
    history: dict[str, list[float]] = {"loss": [], "score": [], "seconds": []}
    best: dict[str, Any] = {"score": -1.0, "epoch": -1, "weights": None, "thresholds": None}
    t0 = time.time()
    stale = 0
    batches = _Batches(X, Y, cfg.batch_size, cfg.seed, masks=cfg.spec_augment, eq_db=cfg.eq_db)
    trained: list[tuple[int, list[np.ndarray]]] = []  # the last average_epochs epochs' weights
    first, ended = (-1 if init is not None else 0), False
    if resume is not None:
        kept = checkpoint.restore(cfg.out, resume, model=model, seq=batches.seq)
        history, stale, trained = resume["history"], resume["stale"], kept["trained"]
        best = {**resume["best"], "weights": kept["best_weights"]}
        t0 -= resume["seconds"]
        first, ended = resume["epoch"], resume["ended"]
        print(
            f"resuming after epoch {first}/{cfg.epochs}"
            + (" (the loop had ended)" if ended else "")
            + f": best so far epoch {best['epoch']}, score {best['score']:.4f}",
            flush=True,
        )

    def save_checkpoint(epoch_done: int, loop_ended: bool) -> None:
        checkpoint.save(
            cfg.out,
            cfg.to_dict(),
            model=model,
            seq=batches.seq,
            state={
                "epoch": epoch_done,
                "ended": loop_ended,
                "history": history,
                "stale": stale,
                "best": {k: v for k, v in best.items() if k != "weights"},
                "init": init,
                "seconds": time.time() - t0,
            },
            best_weights=best["weights"],
            trained=trained,
        )

    for epoch in range(first, cfg.epochs) if not ended else ():
        # Epoch "0" (warm start only): the initial weights, scored like any epoch, so that
        # training has to beat the model it started from on valid and dev to replace it.
        # shuffle=False: the batches' own generator shuffles every epoch; Keras's shuffle of a
        # PyDataset's batch order drew from TensorFlow's global generator, which a resumed
        # run (training.resume) cannot restore
        h = (
            model.fit(
                batches.seq, epochs=1, shuffle=False, verbose=2 if cfg.progress else 0, callbacks=callbacks
            )
            if epoch >= 0
            else None
        )
        if h is not None and not math.isfinite(float(h.history["loss"][-1])):
            # (TerminateOnNaN stopped it): a model of NaN weights is never scored, saved or reported
            raise ToolError(
                f"the training loss became {h.history['loss'][-1]} in epoch {epoch + 1} (a learning rate of "
                f"{cfg.lr:g} too high for this model and data?); nothing of this epoch is saved"
            )
        parts, th, _ = epoch_scores(model, sets, audio=cfg.audio)
        score = selection_score(parts)
        history["loss"].append(float(h.history["loss"][-1]) if h is not None else float("nan"))
        for k, v in parts.items():
            history.setdefault(k, []).append(v)
        history["score"].append(score)
        history["seconds"].append(time.time() - t0)
        print(
            f"epoch {epoch + 1}/{cfg.epochs}: loss {history['loss'][-1]:.4f} {_parts_text(parts)}"
            f" score {score:.4f} [{time.time() - t0:.0f}s]",
            flush=True,
        )
        if epoch < 0:
            assert init is not None
            init.update(parts, score=score)
        elif cfg.average_epochs >= 2:
            trained = [*trained, (epoch + 1, model.get_weights())][-cfg.average_epochs :]
            cfg.out.mkdir(parents=True, exist_ok=True)
            save_keras(model, cfg.out / f"{cfg.model}.epoch{epoch + 1}.keras")  # for averages chosen later
        if score > best["score"]:
            best = {"score": score, "epoch": epoch + 1, "weights": model.get_weights(), "thresholds": th}
            stale = 0
            cfg.out.mkdir(parents=True, exist_ok=True)
            save_keras(model, cfg.out / f"{cfg.model}.best.keras")  # survives an interrupted run
        else:
            stale += 1
        stop = None
        if epoch >= 0 and stale >= cfg.patience:
            stop = f"early stop: no improvement in {cfg.patience} epochs"
        elif (
            epoch >= 0
            and cfg.time_budget_min is not None
            and (time.time() - t0) / 60 * (epoch + 2) / (epoch + 1) > cfg.time_budget_min
        ):
            stop = f"time budget of {cfg.time_budget_min} min reached"
        save_checkpoint(epoch + 1, stop is not None or epoch + 1 == cfg.epochs)
        if stop is not None:
            print(stop, flush=True)
            break
    averaged = None
    if len(trained) >= 2:
        model.set_weights(average_weights([w for _, w in trained]))
        parts, th, _ = epoch_scores(model, sets, audio=cfg.audio)
        score = selection_score(parts)
        averaged = {"epochs": [e for e, _ in trained], **parts, "score": score}
        print(
            f"mean of epochs {', '.join(str(e) for e, _ in trained)}: {_parts_text(parts)} score {score:.4f}",
            flush=True,
        )
        if score > best["score"]:
            best = {"score": score, "epoch": trained[-1][0], "weights": model.get_weights(), "thresholds": th}
            averaged["kept"] = True
            save_keras(model, cfg.out / f"{cfg.model}.best.keras")
    model.set_weights(best["weights"])
    info: dict[str, Any] = {
        "best_epoch": best["epoch"],
        "best_valid_score": best["score"],
        "epochs_run": len(history["loss"]),
        "train_seconds": time.time() - t0,
        "history": history,
        "init": init,
        "averaged": averaged,
        "thresholds": best["thresholds"] if task == "multilabel" else None,
    }
    return model, info


def _score_group(
    model: Any, group: dict[str, Examples], th: dict[str, float] | None, audio: bool
) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for kind, ex in group.items():
        res.update(score_set(predict(model, inputs_of(ex, audio)), ex, kind, th))
    return res


def final_report(
    cfg: Config, task: str, model: Any, info: dict[str, Any], sets: Sets, corpus_counts: dict[str, Any]
) -> dict[str, Any]:
    """Evaluate the frozen model on valid and dev, then - last - on the unseen-instrument test split."""
    th = info.get("thresholds")
    dev_metrics = None
    if sets.dev:
        dev_metrics = _score_group(model, sets.dev, th, cfg.audio)
        if "single" in sets.dev:
            p = predict(model, inputs_of(sets.dev["single"], cfg.audio))
            dev_metrics.update(dev_breakdown(p, sets.dev["single"], sets.dev_notes, th))
            dev_metrics["chains"] = chain_robustness(model, sets.dev["single"], th, audio=cfg.audio)
    test = None
    if cfg.test:
        test_notes = split_notes(cfg.corpus, "test")
        kw: dict[str, Any] = {"random_crop": False, "keep_audio": cfg.audio}
        group = {
            "single": _examples(
                cfg, ExampleSpec("test", len(test_notes), cfg.seed + 3, balanced=False, **kw)
            ),
            "mix": _examples(cfg, ExampleSpec("test", cfg.n_test_mix, cfg.seed + 4, mix_prob=1.0, **kw)),
        }
        others = load_others(cfg.corpus / "test")
        if cfg.open_set and others:
            group["other"] = _examples(
                cfg, ExampleSpec("test", len(others), cfg.seed + 9, balanced=False, other_prob=1.0, **kw)
            )
        test = _score_group(model, group, th, cfg.audio)
    dev_sel = "epochs, weights and thresholds chosen on valid and the real-recording dev libraries (mean and worst library"
    return {
        "model": cfg.model,
        "version": cfg.version,
        "task": task,
        "labels": list(FAMILIES),
        "outputs": list(TARGETS[: cfg.n_outputs]) if task == "multilabel" else list(FAMILIES),
        "parameters": int(model.count_params()),
        "train_seconds": round(info["train_seconds"], 1),
        "epochs_run": info["epochs_run"],
        "best_epoch": info["best_epoch"],
        "best_score": info["best_valid_score"],
        "thresholds": th,
        "selection": (
            f"{dev_sel}, dev ensembles{', other sounds' if cfg.open_set else ''}); test evaluated once, after freezing"
            if sets.dev
            else "epochs, weights and thresholds chosen on valid only; test evaluated once, after freezing"
        ),
        "init": info.get("init"),
        "averaged": info.get("averaged"),
        "valid": _score_group(model, sets.valid, th, cfg.audio),
        "dev": dev_metrics,
        "test": test,
        "corpus": corpus_counts,
        "config": cfg.to_dict(),
    }


def _corpus_counts(corpus: Path) -> dict[str, Any]:
    info = corpus / "corpus.json"
    if info.is_file():
        data = json.loads(info.read_text())
        return {
            "counts": data.get("counts"),
            "others": data.get("others"),
            "soundfonts": [f["key"] for f in data.get("soundfonts", [])],
        }
    return {}


def report_folder(cfg: Config) -> Path:
    """Where a run's report goes: ``--report-dir``, else ``training/reports/<model>/<version>``."""
    return cfg.report_dir or REPORTS / cfg.model / cfg.version


#: Config fields by the rule their values follow (checked before anything is built).
_NUMBERS = {
    # (n_valid_mix and n_dev 0 trained an epoch, then failed scoring it: a tools audit)
    "positive": ("epochs", "batch_size", "n_train", "n_valid", "n_valid_mix", "n_dev", "patience", "workers"),
    "non_negative": (
        "seed",
        "n_valid_other",
        "n_test_mix",
        "n_dev_mix",
        "width",
        "depth",
        "dense",
        "blocks",
    ),
    "chances": (
        "mix_prob",
        "onset_prob",
        "real_prob",
        "music_prob",
        "pre_silence_prob",
        "chord_prob",
        "fragment_prob",
        "ensemble_prob",
        "other_prob",
        "other_under_prob",
        "distill",
        "distill_mix",
        "distill_other",
        "chain_copies",
    ),
    "positive_real": ("lr", "time_budget_min"),
    "non_negative_real": ("eq_db",),
}


def preflight(cfg: Config, *, force: bool, resume: bool = False) -> dict[str, Any] | None:
    """What a run needs, checked before anything is built: the corpus's splits (test unless
    ``--no-test``), the files named by ``--init-*``, ``--teacher``, ``--sources``; and that it
    replaces no earlier run's model or report without ``force``. With ``resume``: the
    checkpoint in ``--out`` (:func:`training.resume.check`), returned; the run's own
    models in ``--out`` are then not an earlier run's.

    Raises
    ------
    ToolError
    """
    for split in ("train", "valid", *(("test",) if cfg.test else ())):
        if not (cfg.corpus / split / "examples.json").is_file():
            raise ToolError(f"{cfg.corpus}: no {split}/examples.json (build the corpus first)")
    for name, path in (
        ("--init-keras", cfg.init_keras),
        ("--init-onnx", cfg.init_onnx),
        ("--sources", cfg.sources),
    ):
        if path is not None and not Path(path).exists():
            raise ToolError(f"{name} {path}: not found")
    for t in (*cfg.teacher, *cfg.other_teacher):
        if str(t) != YAMNET and not Path(t).exists():
            raise ToolError(f"--teacher {t}: not found")
    if cfg.out.exists() and not cfg.out.is_dir():
        raise ToolError(f"--out {cfg.out}: a file, not a folder")
    if resume:
        from . import resume as checkpoint

        if (cfg.out / "metrics.json").is_file():
            raise ToolError(f"--resume: the run in {cfg.out} has finished ({cfg.out / 'metrics.json'})")
        doc = checkpoint.check(cfg.out, cfg.to_dict())
        refuse_existing([report_folder(cfg) / "metrics.json"], force=force, what="an earlier run's report")
        return doc
    if (cfg.out / "resume.json").is_file() and not force:
        raise ToolError(
            f"--out {cfg.out}: an interrupted run is there (resume.json): continue it with --resume, "
            "or pass --force to start again"
        )
    refuse_existing(
        [cfg.out / f"{cfg.model}.keras", cfg.out / f"{cfg.model}.best.keras", cfg.out / "metrics.json"],
        force=force,
        what="an earlier run's model or results",
    )
    refuse_existing([report_folder(cfg) / "metrics.json"], force=force, what="an earlier run's report")
    if force:
        from . import resume as checkpoint

        checkpoint.remove(cfg.out)  # a new run: the earlier run's checkpoint is not to be resumed
    return None


def run(cfg: Config, *, resume: dict[str, Any] | None = None) -> dict[str, Any]:
    from . import resume as checkpoint
    from .models import TASKS
    from .report import write_report

    task = TASKS[cfg.model]
    from instrunet_core.model import open_model

    hears_audio = any(str(t) == YAMNET or open_model(t).input_kind == "waveform" for t in cfg.teacher)
    sets = build_sets(cfg, keep_audio=cfg.keep_audio or cfg.audio or hears_audio or cfg.chain_copies > 0)
    Xt, Yt = inputs_of(sets.train, cfg.audio), _targets(cfg, task, sets.train.Y)
    if task == "multiclass":  # one cached training set serves every model: keep its single notes
        keep = (sets.train.Y[:, :F].sum(1) == 1) & (sets.train.Y[:, OTHER] == 0)
        Xt, Yt = np.asarray(Xt)[keep], Yt[keep]
    if cfg.teacher:
        t0 = time.time()
        p = ensemble_targets(cfg.teacher, sets.train, cache=cfg.cache, other_from=cfg.other_teacher)
        Yt = distilled_targets(Yt, p, cfg.distill, mix_weight=cfg.distill_mix, other_weight=cfg.distill_other)
        names = " + ".join(str(t) for t in cfg.teacher)
        mix = "" if cfg.distill_mix is None else f" ({cfg.distill_mix:.2f} where two or more families play)"
        if cfg.distill_other is not None:
            mix += f" ({cfg.distill_other:.2f} for other sound alone)"
        other = f" (other: {' + '.join(str(t) for t in cfg.other_teacher)})" if cfg.other_teacher else ""
        print(
            f"targets: labels x {1 - cfg.distill:.2f} + mean({names}){other} x {cfg.distill:.2f}{mix} "
            f"[{time.time() - t0:.0f}s]",
            flush=True,
        )
    if cfg.chain_copies > 0:
        idx, Xc = chain_copies(cfg, sets.train)
        Xt, Yt = np.concatenate([np.asarray(Xt), np.asarray(Xc)]), np.concatenate([Yt, Yt[idx]])
    print(
        f"{cfg.model}: {len(Xt)} training examples ({task}, outputs {list(TARGETS[: Yt.shape[1]])}); dev: "
        + (", ".join(f"{k} {len(v)}" for k, v in sets.dev.items()) or "none"),
        flush=True,
    )
    model, info = fit_and_select(cfg, task, (Xt, Yt), sets, resume=resume)
    cfg.out.mkdir(parents=True, exist_ok=True)
    model_path = cfg.out / f"{cfg.model}.keras"
    save_keras(model, model_path)
    write_json(cfg.out / "history.json", info["history"], indent=1)
    metrics = final_report(cfg, task, model, info, sets, _corpus_counts(cfg.corpus))
    report_dir = report_folder(cfg)
    write_report(report_dir, metrics, info["history"])
    write_json(cfg.out / "metrics.json", metrics, indent=1)
    checkpoint.remove(cfg.out)  # finished: nothing left to resume
    print(f"saved {model_path}; report in {report_dir}", flush=True)
    if metrics["dev"] is not None and "single" in metrics["dev"]:
        d = metrics["dev"]
        print(
            f"dev balanced accuracy {d['single']['balanced_accuracy']:.4f}; per library "
            + ", ".join(
                f"{k} {v.get('balanced_accuracy', float('nan')):.3f}" for k, v in d["per_source"].items()
            ),
            flush=True,
        )
    if metrics["test"] is not None:
        print(
            f"test accuracy {metrics['test']['single']['accuracy']:.4f} "
            f"balanced {metrics['test']['single']['balanced_accuracy']:.4f}",
            flush=True,
        )
    else:
        print("test split not evaluated (--no-test)", flush=True)
    return metrics


_PATHS = {"cache", "report_dir", "sources", "init_onnx", "init_keras"}
_STRINGS = {"version", "augment_preset", "channels", "blur_pool"}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.train", description="Train a family model.")
    ap.add_argument("--model", required=True, choices=["baseline", "seed_v3", "default", "compact", "large"])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--out", type=Path, help="the run's folder (required unless --score-teachers)")
    for f in dataclasses.fields(Config):
        if f.name in {"model", "corpus", "out", "progress"}:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool",):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        elif f.name == "teacher":
            ap.add_argument(flag, type=Path, action="append", default=[], help="repeat to average teachers")
        elif f.name == "real_prob_family":
            ap.add_argument(flag, action="append", default=[], metavar="FAMILY=P")
        elif f.name == "other_teacher":
            ap.add_argument(
                flag,
                type=Path,
                action="append",
                default=[],
                help="teachers whose other column makes the other target",
            )
        elif f.name in _PATHS:
            ap.add_argument(flag, type=Path, default=f.default)
        elif f.name in _STRINGS:
            ap.add_argument(flag, default=f.default)
        elif "float" in str(f.type):
            ap.add_argument(flag, type=float, default=f.default)
        else:
            ap.add_argument(flag, type=int, default=f.default)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument(
        "--force",
        action="store_true",
        help="replace an earlier run's model in --out and its report (refused otherwise)",
    )
    ap.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --out after its last finished epoch (the same options)",
    )
    ap.add_argument(
        "--score-teachers",
        type=Path,
        metavar="JSON",
        help="score each --teacher and their mean on the dev clips, write JSON there and stop (no training)",
    )
    ap.add_argument(
        "--score-means",
        metavar="EPOCHS",
        action="append",
        help="score the mean of these saved epochs of the run in --out (e.g. 1,2; repeat), print and stop",
    )
    args = ap.parse_args(argv)
    if args.out is None:
        if args.score_teachers is None:
            ap.error("the following arguments are required: --out (the run's folder)")
        args.out = args.score_teachers.parent  # scoring teachers writes only its JSON there
    kw = {
        k: v
        for k, v in vars(args).items()
        if k not in {"quiet", "score_teachers", "score_means", "force", "resume"}
    }
    kw["teacher"] = tuple(kw["teacher"])
    kw["other_teacher"] = tuple(kw["other_teacher"])
    kw["real_prob_family"] = tuple(kw["real_prob_family"])
    cfg = Config(**kw, progress=not args.quiet)
    for problem in number_problems(dataclasses.asdict(cfg), **_NUMBERS):
        ap.error(problem)
    if cfg.distill != Config.distill and not cfg.teacher:
        ap.error("--distill needs --teacher (the weight of the teachers' probabilities)")
    if cfg.depth and cfg.model != "default":
        ap.error("--depth applies to the default model only")
    if (cfg.width or cfg.dense) and cfg.model not in {"default", "compact"}:
        ap.error("--width and --dense apply to the default and compact models only")
    if cfg.blur_pool:
        from .models import BLUR_AXES

        if cfg.blur_pool not in BLUR_AXES:
            ap.error(f"--blur-pool: choose from {BLUR_AXES}")
        if cfg.model != "default":
            ap.error("--blur-pool applies to the default model only")
    if cfg.channels:
        if cfg.model != "default":
            ap.error("--channels applies to the default model only")
        try:
            channels_of(cfg.channels)
        except ValueError as e:
            ap.error(str(e))
    from .augment import PRESETS
    from .models import TASKS

    if cfg.augment_preset not in PRESETS:
        ap.error(f"--augment-preset: choose from {sorted(PRESETS)}")
    try:
        real_prob_family(cfg.real_prob_family)
    except ValueError as e:
        ap.error(str(e))
    if cfg.real_prob_family and cfg.real_prob <= 0:
        ap.error("--real-prob-family needs --real-prob above 0 (the real instruments are drawn only then)")
    if cfg.average_epochs < 0 or cfg.average_epochs == 1:
        ap.error("--average-epochs: at least 2 epochs to average (0: off)")
    if cfg.distill_mix is not None and not cfg.teacher:
        ap.error("--distill-mix needs --teacher")
    if cfg.distill_other is not None and not (cfg.teacher and cfg.open_set):
        ap.error("--distill-other needs --teacher and --open-set")
    if cfg.other_teacher and not (cfg.teacher and cfg.open_set):
        ap.error("--other-teacher needs --teacher and --open-set")
    if (cfg.teacher or cfg.open_set) and TASKS[cfg.model] != "multilabel":
        ap.error("--teacher and --open-set apply to the multilabel (sigmoid) models only")
    if cfg.bias_ceiling is not None and (
        not 0.0 < cfg.bias_ceiling < 1.0 or TASKS[cfg.model] != "multilabel"
    ):
        ap.error("--bias-ceiling: a probability in (0, 1), for the multilabel (sigmoid) models")
    if cfg.chain_copies and (cfg.audio or TASKS[cfg.model] != "multilabel"):
        ap.error("--chain-copies applies to the multilabel log-mel models (default, compact)")
    if cfg.init_onnx is not None and cfg.init_keras is not None:
        ap.error("--init-onnx and --init-keras exclude each other")
    if cfg.irs and cfg.sources is None:
        ap.error("--irs needs --sources (the mirror folder holding the locked impulse responses)")
    if not (cfg.corpus / "train" / "examples.json").is_file():
        print(
            f"training.train: error: {cfg.corpus}: no train/examples.json (build the corpus first)",
            file=sys.stderr,
        )
        return 2
    if args.score_teachers is not None and not cfg.teacher:
        ap.error("--score-teachers needs at least one --teacher")
    if args.score_means:
        try:
            args.score_means = [[int(e) for e in spec.split(",")] for spec in args.score_means]
        except ValueError:
            ap.error("--score-means: comma-separated epoch numbers, e.g. 1,2")
    if args.resume and (args.score_teachers is not None or args.score_means):
        ap.error("--resume continues a training run; it does not go with --score-teachers or --score-means")
    try:
        return _main(cfg, args)
    except KeyboardInterrupt:
        state = cfg.out / "resume.json"
        kept = (
            f"the run's last finished epoch is kept in {cfg.out}: continue it with the same options and --resume"
            if state.is_file() and not (cfg.out / "metrics.json").is_file()
            else "no epoch had finished: nothing to resume"
        )
        print(f"training.train: interrupted; {kept}", file=sys.stderr)
        return 130
    except (ToolError, OSError) as e:
        print(f"training.train: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        from instrunet_core.errors import InstrunetError

        from .nsynth import NSynthError
        from .sources import SourceError

        if isinstance(e, (InstrunetError, NSynthError, SourceError)):
            print(f"training.train: error: {e}", file=sys.stderr)
            return 1
        raise


def _main(cfg: Config, args: argparse.Namespace) -> int:
    if args.score_teachers is not None:
        res = score_teachers(cfg)
        args.score_teachers.parent.mkdir(parents=True, exist_ok=True)
        args.score_teachers.write_text(json.dumps(res, indent=1, sort_keys=True))
        for name, v in res["scores"].items():
            print(f"{name}: dev balanced accuracy {v['balanced_accuracy']:.4f}", flush=True)
        return 0
    if args.score_means:
        res = score_means(cfg, args.score_means)
        for row in res["means"]:
            libs = ", ".join(f"{k} {v:.3f}" for k, v in row["libraries"].items())
            parts = {k: v for k, v in row.items() if isinstance(v, float) and k != "score"}
            print(
                f"mean of epochs {', '.join(map(str, row['epochs']))}: {_parts_text(parts)}"
                f" score {row['score']:.4f}; {libs}",
                flush=True,
            )
        return 0
    doc = preflight(cfg, force=args.force, resume=args.resume)
    run(cfg, resume=doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
