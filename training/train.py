"""Train a family model and write its report.

Usage::

    python -m training.train --model default --corpus data/corpus --out runs/default [--version 1.0.0]

Selection rules (enforced by the code's structure, not by convention):

* epochs, the kept weights and the multi-label presence thresholds are chosen on
  ``valid`` and, when the corpus has one, on ``dev`` - whole real-recording libraries that
  training never sees (:func:`fit_and_select` never receives test data);
* the ``test`` split (unseen TimGM6mb instruments) is featurised only after the model and
  its thresholds are frozen, by :func:`final_report`, and its numbers are written, never read
  back by anything that chooses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np

from instrunet_core.labels import FAMILIES

from .dataset import ExampleSpec, cached_examples, split_notes
from .metrics import multiclass_metrics, multilabel_metrics, pick_thresholds

REPORTS = Path(__file__).resolve().parent / "reports"


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
    n_test_mix: int = 2000
    mix_prob: float = 0.4
    onset_prob: float = 0.5
    augment: bool = True
    spec_augment: bool = True
    test: bool = True  # --no-test: experiments that must not even compute test numbers
    eq_db: float = 0.0
    width: int = 0  # default/compact model: channels of the first block (0: the model's own default)
    depth: int = 0  # default model: 4 or 5 conv blocks (0: the model's own default)
    patience: int = 5
    time_budget_min: float | None = 70.0
    real_prob: float = 0.0  # chance to draw a family's real-library instrument (see training.dataset)
    music_prob: float = 0.0  # chance to reshape a SoundFont note into a musical clip
    pre_silence_prob: float = 0.0  # chance of silence before the onset
    irs: bool = False  # measured room/device impulse responses in the augmentation (needs --sources)
    sources: Path | None = None  # mirror folder of training/sources.lock.json
    init_onnx: Path | None = None  # start from an exported artifact's weights (same architecture)
    init_keras: Path | None = (
        None  # continue from a saved Keras model of the same architecture (e.g. *.best.keras)
    )
    teacher: Path | None = None  # distil from an exported multilabel artifact (folder or model.onnx)
    distill: float = 0.5  # with --teacher: weight of the teacher's probabilities in the training targets
    n_dev: int = 4000  # at most this many dev clips (all of them when fewer)
    cache: Path = Path("cache/examples")
    report_dir: Path | None = None
    workers: int | None = None
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


def _as_input(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32)[..., None]


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
    """Shuffled float32 batches from a float16 array without copying the whole set."""

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
                x = X[idx].astype(np.float32)
                if masks:
                    spec_augment(x, s.rng, eq_db=eq_db)
                return x[..., None], Y[idx]

            def on_epoch_end(s) -> None:
                s.order = s.rng.permutation(len(X))

        self.seq = Seq()


def distilled_targets(
    Y: np.ndarray, X: np.ndarray, teacher: Path, weight: float, *, batch_size: int = 256
) -> np.ndarray:
    """Training targets mixed with a teacher's outputs (knowledge distillation).

    ``Y``: ``[N, L]`` the 0/1 family labels; ``X``: ``[N, n_mels, frames]`` the training
    windows. The teacher (an exported artifact of a sigmoid model with the same labels, run by
    the runtime) scores every window; the result is ``(1 - weight) * Y + weight * teacher``:
    soft targets that carry what the teacher learned about similar families (a muted trumpet
    that sounds half like a reed) while the labels keep it honest where the teacher is wrong.
    """
    from instrunet_core.model import open_model

    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distill weight must be in [0, 1], got {weight}")
    session = open_model(teacher)
    if session.task != "multilabel" or tuple(session.labels) != tuple(FAMILIES):
        raise ValueError(
            f"{teacher}: the teacher must be a multilabel model over {list(FAMILIES)} "
            f"(it is {session.task} over {list(session.labels)})"
        )
    p = np.concatenate(
        [
            session.predict_features(X[i : i + batch_size].astype(np.float32))
            for i in range(0, len(X), batch_size)
        ]
    )
    return ((1.0 - weight) * Y + weight * p).astype(np.float32)


def predict(model: Any, X: np.ndarray, batch_size: int = 256) -> np.ndarray:
    out = [model.predict_on_batch(_as_input(X[i : i + batch_size])) for i in range(0, len(X), batch_size)]
    return np.concatenate(out).astype(np.float32)


def fit_and_select(
    cfg: Config,
    task: str,
    train: tuple[np.ndarray, np.ndarray],
    valid: dict[str, tuple[np.ndarray, np.ndarray]],
    dev: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train on ``train``; choose epoch and weights on ``valid`` (and ``dev``, the unseen real
    libraries' single clips, when given: the score then averages in dev's balanced accuracy).
    Never sees test data."""
    import keras

    from .models import build_model

    keras.utils.set_random_seed(cfg.seed)
    arch = {k: v for k, v in (("width", cfg.width), ("depth", cfg.depth)) if v}
    model = build_model(cfg.model, len(FAMILIES), **arch)
    init = None
    if cfg.init_onnx is not None:
        from .warmstart import init_from_onnx

        init = init_from_onnx(
            model, cfg.init_onnx, calibration=train[0][:: max(1, len(train[0]) // 512)][:512]
        )
        print(f"initialised from {cfg.init_onnx} (max difference {init['max_abs_diff']:.1e})", flush=True)
    elif cfg.init_keras is not None:
        saved = keras.models.load_model(cfg.init_keras, compile=False)
        shapes = [w.shape for w in model.get_weights()]
        if [w.shape for w in saved.get_weights()] != shapes:
            raise ValueError(f"{cfg.init_keras}: not a {cfg.model} model of this shape (weights differ)")
        model.set_weights(saved.get_weights())
        init = {"from": str(cfg.init_keras), "kind": "keras"}
        print(f"initialised from {cfg.init_keras}", flush=True)
    X, Y = train
    steps = math.ceil(len(X) / cfg.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=steps * cfg.epochs, alpha=0.05)
    loss = "binary_crossentropy" if task == "multilabel" else "categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss)
    Xv, Yv = valid["single"]
    history: dict[str, list[float]] = {
        "loss": [],
        "valid_loss": [],
        "valid_accuracy": [],
        "valid_balanced_accuracy": [],
        "valid_mix_micro_f1": [],
        "score": [],
        "dev_balanced_accuracy": [],
        "seconds": [],
    }
    best: dict[str, Any] = {"score": -1.0, "epoch": -1, "weights": None}
    t0 = time.time()
    stale = 0
    batches = _Batches(X, Y, cfg.batch_size, cfg.seed, masks=cfg.spec_augment, eq_db=cfg.eq_db)
    for epoch in range(-1 if init is not None else 0, cfg.epochs):
        # Epoch "0" (warm start only): the initial weights, scored like any epoch, so that
        # training has to beat the model it started from on valid and dev to replace it.
        h = model.fit(batches.seq, epochs=1, verbose=2 if cfg.progress else 0) if epoch >= 0 else None
        pv = predict(model, Xv)
        mc = multiclass_metrics(Yv.argmax(1), pv.argmax(1))
        eps = 1e-7
        dev_bal = float("nan")
        if dev is not None:
            pd_ = predict(model, dev[0])
            dev_bal = multiclass_metrics(dev[1].argmax(1), pd_.argmax(1))["balanced_accuracy"]
        if task == "multilabel":
            vl = float(-np.mean(Yv * np.log(pv + eps) + (1 - Yv) * np.log(1 - pv + eps)))
            pm = predict(model, valid["mix"][0])
            # Scored as it would ship: with presence thresholds tuned on valid (singles + mixtures).
            th = pick_thresholds(np.concatenate([Yv, valid["mix"][1]]), np.concatenate([pv, pm]))
            mix_f1 = multilabel_metrics(valid["mix"][1], pm, np.array(th))["micro_f1"]
            parts = [mc["balanced_accuracy"], mix_f1] + ([dev_bal] if dev is not None else [])
        else:
            vl = float(-np.mean(np.sum(Yv * np.log(pv + eps), axis=1)))
            mix_f1 = float("nan")
            parts = [mc["balanced_accuracy"]] + ([dev_bal] if dev is not None else [])
        score = float(np.mean(parts))
        history["loss"].append(float(h.history["loss"][-1]) if h is not None else float("nan"))
        history["valid_loss"].append(vl)
        history["valid_accuracy"].append(mc["accuracy"])
        history["valid_balanced_accuracy"].append(mc["balanced_accuracy"])
        history["valid_mix_micro_f1"].append(mix_f1)
        history["dev_balanced_accuracy"].append(dev_bal)
        history["score"].append(score)
        history["seconds"].append(time.time() - t0)
        print(
            f"epoch {epoch + 1}/{cfg.epochs}: loss {history['loss'][-1]:.4f} valid loss {vl:.4f} "
            f"acc {mc['accuracy']:.4f} bal {mc['balanced_accuracy']:.4f} mixF1 {mix_f1:.4f} "
            f"dev bal {dev_bal:.4f} score {score:.4f} [{time.time() - t0:.0f}s]",
            flush=True,
        )
        if epoch < 0:
            assert init is not None
            init.update(
                valid_balanced_accuracy=mc["balanced_accuracy"],
                valid_mix_micro_f1=mix_f1,
                dev_balanced_accuracy=dev_bal,
                score=score,
            )
        if score > best["score"]:
            best = {"score": score, "epoch": epoch + 1, "weights": model.get_weights()}
            stale = 0
            cfg.out.mkdir(parents=True, exist_ok=True)
            model.save(cfg.out / f"{cfg.model}.best.keras")  # survives an interrupted run
        else:
            stale += 1
        if epoch < 0:
            continue
        if stale >= cfg.patience:
            print(f"early stop: no valid improvement in {cfg.patience} epochs", flush=True)
            break
        if (
            cfg.time_budget_min is not None
            and (time.time() - t0) / 60 * (epoch + 2) / (epoch + 1) > cfg.time_budget_min
        ):
            print(f"time budget of {cfg.time_budget_min} min reached", flush=True)
            break
    model.set_weights(best["weights"])
    info: dict[str, Any] = {
        "best_epoch": best["epoch"],
        "best_valid_score": best["score"],
        "epochs_run": len(history["loss"]),
        "train_seconds": time.time() - t0,
        "history": history,
        "init": init,
    }
    if task == "multilabel":
        pv = np.concatenate(
            [predict(model, Xv), predict(model, valid["mix"][0])]
            + ([predict(model, dev[0])] if dev is not None else [])
        )
        yv = np.concatenate([Yv, valid["mix"][1]] + ([dev[1]] if dev is not None else []))
        info["thresholds"] = dict(zip(FAMILIES, pick_thresholds(yv, pv), strict=True))
    return model, info


def evaluate(
    model: Any, task: str, sets: dict[str, tuple[np.ndarray, np.ndarray]], thresholds: dict[str, float] | None
) -> dict[str, Any]:
    Xs, Ys = sets["single"]
    p = predict(model, Xs)
    res: dict[str, Any] = {"single": multiclass_metrics(Ys.argmax(1), p.argmax(1)), "n_single": int(len(Xs))}
    if "mix" in sets:
        pm = predict(model, sets["mix"][0])
        if task == "multilabel":
            th = np.array([thresholds[f] for f in FAMILIES]) if thresholds else 0.5
            res["mixture"] = multilabel_metrics(sets["mix"][1], pm, th)
        else:
            # A softmax model can only name one family: score its argmax as a one-label answer.
            one = np.zeros_like(pm)
            one[np.arange(len(pm)), pm.argmax(1)] = 1.0
            res["mixture"] = multilabel_metrics(sets["mix"][1], one, 0.5)
        res["n_mixture"] = int(len(sets["mix"][0]))
    return res


def dev_breakdown(
    model: Any, X: np.ndarray, Y: np.ndarray, names: list[list[str]], notes: dict[str, Any]
) -> dict[str, Any]:
    """Dev single clips scored per family, per source library, per clip kind and for clips
    shorter than 1 s (``duration_s`` of the corpus metadata)."""
    p = predict(model, X)
    true, pred = Y.argmax(1), p.argmax(1)
    meta = [notes[nm[0]].extra for nm in names]

    def score(sel: np.ndarray) -> dict[str, Any]:
        if not sel.any():
            return {"n": 0}
        m = multiclass_metrics(true[sel], pred[sel])
        return {"n": int(sel.sum()), "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"]}

    lib = np.array([str(m.get("library", "")) for m in meta])
    kind = np.array([str(m.get("clip", "")) for m in meta])
    dur = np.array([float(m.get("duration_s", 4.0)) for m in meta])
    per_fam = multiclass_metrics(true, pred)["per_class"]
    return {
        "per_family_recall": {f: per_fam[f]["recall"] for f in FAMILIES},
        "per_source": {s: score(lib == s) for s in sorted(set(lib))},
        "per_clip": {k: score(kind == k) for k in sorted(set(kind))},
        "shorter_than_1s": score(dur < 1.0),
        "from_1s": score(dur >= 1.0),
        "per_source_family": {
            s: {f: score((lib == s) & (true == i)) for i, f in enumerate(FAMILIES)} for s in sorted(set(lib))
        },
    }


def final_report(
    cfg: Config,
    task: str,
    model: Any,
    info: dict[str, Any],
    valid: dict[str, tuple[np.ndarray, np.ndarray]],
    corpus_counts: dict[str, Any],
    dev: tuple[np.ndarray, np.ndarray, list[list[str]]] | None = None,
) -> dict[str, Any]:
    """Evaluate the frozen model on valid and dev, then - last - on the unseen-instrument test split."""
    thresholds = info.get("thresholds")
    dev_metrics = None
    if dev is not None:
        dev_notes = {n.note_str: n for n in split_notes(cfg.corpus, "dev")}
        dev_metrics = evaluate(model, task, {"single": dev[:2]}, thresholds)
        dev_metrics.update(dev_breakdown(model, dev[0], dev[1], dev[2], dev_notes))
    test = None
    if cfg.test:
        test_notes = split_notes(cfg.corpus, "test")
        test = {
            "single": cached_examples(
                cfg.corpus,
                ExampleSpec("test", len(test_notes), cfg.seed + 3, balanced=False, random_crop=False),
                cfg.cache,
                workers=cfg.workers,
                progress=cfg.progress,
            )[:2],
            "mix": cached_examples(
                cfg.corpus,
                ExampleSpec("test", cfg.n_test_mix, cfg.seed + 4, mix_prob=1.0, random_crop=False),
                cfg.cache,
                workers=cfg.workers,
                progress=cfg.progress,
            )[:2],
        }
    metrics = {
        "model": cfg.model,
        "version": cfg.version,
        "task": task,
        "labels": list(FAMILIES),
        "parameters": int(model.count_params()),
        "train_seconds": round(info["train_seconds"], 1),
        "epochs_run": info["epochs_run"],
        "best_epoch": info["best_epoch"],
        "thresholds": thresholds,
        "selection": (
            "epochs, weights and thresholds chosen on valid and the real-recording dev libraries; "
            "test evaluated once, after freezing"
        )
        if dev is not None
        else "epochs, weights and thresholds chosen on valid only; test evaluated once, after freezing",
        "init": info.get("init"),
        "valid": evaluate(model, task, valid, thresholds),
        "dev": dev_metrics,
        "test": evaluate(model, task, test, thresholds) if test is not None else None,
        "corpus": corpus_counts,
        "config": cfg.to_dict(),
    }
    return metrics


def _corpus_counts(corpus: Path) -> dict[str, Any]:
    info = corpus / "corpus.json"
    if info.is_file():
        data = json.loads(info.read_text())
        return {"counts": data.get("counts"), "soundfonts": [f["key"] for f in data.get("soundfonts", [])]}
    return {}


def run(cfg: Config) -> dict[str, Any]:
    from .models import TASKS
    from .report import write_report

    task = TASKS[cfg.model]
    mix_prob = cfg.mix_prob
    # One cached training set serves every model: multiclass models keep its single-note rows.
    Xt, Yt, _ = cached_examples(
        cfg.corpus,
        ExampleSpec(
            "train",
            cfg.n_train,
            cfg.seed,
            mix_prob=mix_prob,
            augment=cfg.augment,
            onset_prob=cfg.onset_prob,
            real_prob=cfg.real_prob,
            music_prob=cfg.music_prob,
            pre_silence_prob=cfg.pre_silence_prob,
            irs=cfg.irs,
        ),
        cfg.cache,
        workers=cfg.workers,
        progress=cfg.progress,
        sources=cfg.sources,
    )
    if task == "multiclass":
        keep = Yt.sum(1) == 1
        Xt, Yt = Xt[keep], Yt[keep]
    if cfg.teacher is not None:
        t0 = time.time()
        Yt = distilled_targets(Yt, Xt, cfg.teacher, cfg.distill)
        print(
            f"targets: labels x {1 - cfg.distill:.2f} + {cfg.teacher} x {cfg.distill:.2f} "
            f"[{time.time() - t0:.0f}s]",
            flush=True,
        )
    valid = {
        "single": cached_examples(
            cfg.corpus,
            ExampleSpec("valid", cfg.n_valid, cfg.seed + 1, random_crop=False),
            cfg.cache,
            workers=cfg.workers,
            progress=cfg.progress,
        )[:2],
        "mix": cached_examples(
            cfg.corpus,
            ExampleSpec("valid", cfg.n_valid_mix, cfg.seed + 2, mix_prob=1.0, random_crop=False),
            cfg.cache,
            workers=cfg.workers,
            progress=cfg.progress,
        )[:2],
    }
    dev = None
    if (cfg.corpus / "dev" / "examples.json").is_file():
        n_dev = min(cfg.n_dev, len(split_notes(cfg.corpus, "dev")))
        dev = cached_examples(
            cfg.corpus,
            ExampleSpec("dev", n_dev, cfg.seed + 5, balanced=False, random_crop=False),
            cfg.cache,
            workers=cfg.workers,
            progress=cfg.progress,
        )
    print(
        f"{cfg.model}: {len(Xt)} training examples ({task}); dev: "
        f"{'none' if dev is None else f'{len(dev[0])} real-library clips'}",
        flush=True,
    )
    model, info = fit_and_select(cfg, task, (Xt, Yt), valid, None if dev is None else dev[:2])
    cfg.out.mkdir(parents=True, exist_ok=True)
    model_path = cfg.out / f"{cfg.model}.keras"
    model.save(model_path)
    (cfg.out / "history.json").write_text(json.dumps(info["history"], indent=1))
    metrics = final_report(cfg, task, model, info, valid, _corpus_counts(cfg.corpus), dev)
    report_dir = cfg.report_dir or REPORTS / cfg.model / cfg.version
    write_report(report_dir, metrics, info["history"])
    (cfg.out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"saved {model_path}; report in {report_dir}", flush=True)
    if metrics["dev"] is not None:
        d = metrics["dev"]
        print(
            f"dev balanced accuracy {d['single']['balanced_accuracy']:.4f}; shorter than 1 s: "
            f"{d['shorter_than_1s'].get('accuracy', float('nan')):.4f}",
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


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.train", description="Train a family model.")
    ap.add_argument("--model", required=True, choices=["baseline", "seed_v3", "default", "compact"])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    for f in dataclasses.fields(Config):
        if f.name in {"model", "corpus", "out", "progress"}:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool",):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        elif f.name in {"cache", "report_dir", "sources", "init_onnx", "init_keras", "teacher"}:
            ap.add_argument(flag, type=Path, default=f.default)
        elif f.name in {
            "time_budget_min",
            "lr",
            "mix_prob",
            "eq_db",
            "onset_prob",
            "real_prob",
            "music_prob",
            "pre_silence_prob",
            "distill",
        }:
            ap.add_argument(flag, type=float, default=f.default)
        elif f.name == "version":
            ap.add_argument(flag, default=f.default)
        else:
            ap.add_argument(flag, type=int, default=f.default)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    kw = {k: v for k, v in vars(args).items() if k != "quiet"}
    cfg = Config(**kw, progress=not args.quiet)
    if cfg.depth and cfg.model != "default":
        ap.error("--depth applies to the default model only")
    if cfg.width and cfg.model not in {"default", "compact"}:
        ap.error("--width applies to the default and compact models only")
    from .models import TASKS

    if cfg.teacher is not None and TASKS[cfg.model] != "multilabel":
        ap.error("--teacher applies to the multilabel (sigmoid) models only")
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
    run(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
