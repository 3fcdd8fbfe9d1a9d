"""The export pipeline: Keras model → checked ONNX artifact folder(s)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.errors import ModelError
from instrunet_core.features import DEFAULT_FRONT_END, FrontEnd
from instrunet_core.labels import FAMILIES
from instrunet_core.manifest import NAME_RE, SEMVER_RE, _check_identity, _check_thresholds, is_veto
from instrunet_core.session import onnx_session

from . import DEFAULT_ATOL, PARITY_RUNTIME, ExportError
from .artifact import (
    AUDIO_INPUT,
    build_manifest,
    check_artifact,
    created_timestamp,
    report_metrics,
    training_data_info,
    write_artifact,
)
from .data import Windows, corpus_windows

__all__ = ["ExportConfig", "export_model", "parity_stats"]

_TASK_OF = {"sigmoid": "multilabel", "softmax": "multiclass"}


@dataclasses.dataclass
class ExportConfig:
    """Everything ``python -m export`` takes (see ``docs/export.md``)."""

    model: Path
    name: str
    version: str
    out: Path
    task: str | None = None
    corpus: Path | None = None
    split: str = "valid"
    report: Path | None = None
    n_parity: int = 200
    n_references: int = 24
    license: str = "MIT"
    thresholds: Path | None = None
    description: str | None = None
    other_veto: float | None = None  # manifest other.veto (open-set models)
    atol: float = DEFAULT_ATOL
    quantize: bool = False
    force: bool = False
    front_end: FrontEnd = DEFAULT_FRONT_END
    features: Path | None = None
    embedding: str = "dense"  # the embedding output's kind (convert.EMBEDDING_KINDS)


def parity_stats(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(max |a - b|, fraction of rows with the same arg-max)."""
    if a.shape != b.shape:
        raise ExportError(f"output shapes differ: keras {a.shape}, onnxruntime {b.shape}")
    return float(np.abs(a - b).max()), float(np.mean(a.argmax(1) == b.argmax(1)))


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ExportError(f"{path}: {what} not found") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: cannot read {what}: {e}") from None


def _pick_corpus(cfg: ExportConfig, report: Mapping[str, Any] | None) -> Path:
    if cfg.corpus is not None:
        return cfg.corpus
    cands = []
    if report and (report.get("config") or {}).get("corpus"):
        cands.append(Path(report["config"]["corpus"]))
    cands.append(Path("data/corpus"))
    for c in cands:
        if (c / cfg.split / "examples.json").is_file():
            return c
    raise ExportError("no corpus for the parity check: pass --corpus DIR (an NSynth-format corpus)")


def _subset(n_total: int, n: int) -> np.ndarray:
    n = min(n, n_total)
    return np.linspace(0, n_total - 1, n).round().astype(int) if n > 0 else np.zeros(0, dtype=int)


def _features_inputs(cfg: ExportConfig, report: Mapping[str, Any] | None) -> dict[str, Any]:
    """A features-input model's manifest ``features`` (+ its parity rows under ``inputs``).

    ``cfg.features`` is an ``.npz`` with ``x`` [n, n_features] (classifier inputs of
    held-out data) and ``names``; the report's ``features_manifest`` object (how a host
    computes the features) is copied into the manifest next to the names.
    """
    path = Path(cfg.features or "")
    try:
        with np.load(path, allow_pickle=False) as z:
            x = np.asarray(z["x"], dtype=np.float32)
            names = [str(n) for n in z["names"]]
    except FileNotFoundError:
        raise ExportError(f"{path}: features file not found") from None
    except (OSError, KeyError, ValueError) as e:
        raise ExportError(
            f"{path}: expected an .npz with arrays 'x' [n, n_features] and 'names': {e}"
        ) from None
    if x.ndim != 2 or x.shape[1] != len(names) or len(x) == 0:
        raise ExportError(f"{path}: x has shape {x.shape}, expected (n > 0, {len(names)})")
    if not np.all(np.isfinite(x)):
        raise ExportError(f"{path}: x holds NaN or infinite values")
    extra = dict((report or {}).get("features_manifest") or {})
    extra.pop("names", None)
    return {"names": names, **extra, "inputs": x}


@dataclasses.dataclass
class _Inputs:
    """What stage 1 resolved: destinations, report, labels, thresholds, the Keras model and its
    task, and the parity data (corpus windows, or feature rows for a features-input model)."""

    dest: Path
    q_dest: Path
    report: Mapping[str, Any] | None
    labels: list[str]
    thresholds: dict[str, float] | None
    model: Any
    task: str
    feats: dict[str, Any] | None
    corpus: Path | None
    win: Windows
    waveform: bool  # the network takes window audio (its front end inside)
    view: Any  # the model with the artifact's outputs (probabilities[, other][, embedding])
    out_names: list[str]
    other_threshold: float | None


@dataclasses.dataclass
class _Converted:
    """Stage 2's result: the canonical ONNX bytes, their session and the parity that passed."""

    model_bytes: bytes
    sess: Any
    y_keras: np.ndarray
    parity: dict[str, Any]


@dataclasses.dataclass
class _Artifact:
    """One folder to write: ``dest/{model.onnx, manifest.json, references.npz}``."""

    dest: Path
    model_bytes: bytes
    manifest: dict[str, Any]
    references: dict[str, np.ndarray] | None


def _check_arguments(cfg: ExportConfig) -> Path:
    """Name, version and counts; the destination must not exist without ``force``. Returns it."""
    if not NAME_RE.match(cfg.name):
        raise ExportError(f"--name {cfg.name!r}: use a lower-case identifier ([a-z0-9_.-])")
    if not SEMVER_RE.match(cfg.version):
        raise ExportError(f"--version {cfg.version!r}: expected semver X.Y.Z")
    if cfg.n_references < 0 or cfg.n_parity < 1:
        raise ExportError("--n-parity must be >= 1 and --n-references >= 0")
    if not (isinstance(cfg.atol, (int, float)) and math.isfinite(cfg.atol) and cfg.atol >= 0):
        raise ExportError(f"--atol must be a finite number >= 0, got {cfg.atol!r}")
    from instrunet_core.verify import MAX_DECLARED_ATOL

    if cfg.atol > MAX_DECLARED_ATOL:  # the runtime's replay of the references would refuse it
        raise ExportError(
            f"--atol {cfg.atol:g} is more than the runtime accepts in its replay of the references "
            f"({MAX_DECLARED_ATOL:g}, instrunet models --check)"
        )
    dest = cfg.out / cfg.name / cfg.version
    targets = [dest, cfg.out / f"{cfg.name}-int8" / cfg.version] if cfg.quantize else [dest]
    for d in targets:
        if d.is_symlink() and not d.exists() and not cfg.force:
            raise ExportError(
                f"{d}: a link to {os.readlink(d)}, which does not exist (remove it, or pass --force)"
            )
        if os.path.lexists(d) and not cfg.force:
            raise ExportError(f"{d}: already exists (pass --force to replace it)")
        if os.path.lexists(d) and not d.is_dir() and not d.is_symlink():  # (--force replaces a link)
            raise ExportError(f"{d}: not a folder (remove it, or export another version)")
        _check_writable(d)
    return dest


def _check_writable(out: Path) -> None:
    """The artifact's folder can be made: the first folder on its path that exists (``--out``,
    or ``--out/NAME``) is a folder this process may write in; said before the conversion, not
    after it."""
    here = Path(out).parent
    while not here.exists():  # the first folder that exists is where the new ones are made
        if here.parent == here:
            break
        here = here.parent
    if here.exists() and not here.is_dir():
        raise ExportError(f"{out}: --out must be a folder, and {here} is a file")
    try:
        read_only = bool(os.statvfs(here).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows)
        read_only = False
    if read_only:
        raise ExportError(f"{out}: cannot write in {here} (a read-only file system)")
    if here.exists() and not os.access(here, os.W_OK | os.X_OK):
        raise ExportError(f"{out}: cannot write in {here} (permission denied)")


def _thresholds(cfg: ExportConfig, report: Mapping[str, Any] | None) -> dict[str, float] | None:
    """``--thresholds`` file, else the report's ``thresholds``, else none."""
    if cfg.thresholds is not None:
        thresholds = _read_json(cfg.thresholds, "thresholds file")
        if not isinstance(thresholds, dict):
            raise ExportError(f"{cfg.thresholds}: expected a JSON object {{label: threshold}}")
        return _numbers(thresholds, cfg.thresholds)
    if report and report.get("thresholds") is not None:
        if not isinstance(report["thresholds"], dict):
            raise ExportError(f"{cfg.report}: 'thresholds' must be a JSON object {{label: threshold}}")
        return _numbers(report["thresholds"], cfg.report)
    return None


def _numbers(thresholds: Mapping[str, Any], where: Any) -> dict[str, float]:
    """Each threshold a number (the manifest checks their range and labels)."""
    out = {}
    for k, v in thresholds.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ExportError(f"{where}: threshold of {k!r} must be a number, got {v!r}")
        out[str(k)] = float(v)
    return out


def _labels(cfg: ExportConfig, report: Mapping[str, Any] | None) -> list[str]:
    """The report's ``labels`` (a non-empty list of strings), else the eight families."""
    if report is None or "labels" not in report:
        return list(FAMILIES)
    labels = report["labels"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ExportError(f"{cfg.report}: 'labels' must be a non-empty list of strings, got {labels!r}")
    return list(labels)


def _check_labels_and_thresholds(
    cfg: ExportConfig, labels: list[str], thresholds: Mapping[str, float] | None
) -> None:
    """The manifest's own rules for labels (unique, printable, not reserved) and thresholds (known
    labels, in (0, 1); ``other`` too), applied before converting, naming the file they came from."""
    where = str(cfg.report or "the default labels")
    try:
        _check_identity(
            {"name": cfg.name, "version": cfg.version, "task": "multilabel", "labels": labels}, where
        )
        if thresholds:
            where = str(cfg.thresholds or cfg.report)
            _check_thresholds({k: v for k, v in thresholds.items() if k != "other"}, labels, where)
            _check_thresholds({k: v for k, v in thresholds.items() if k == "other"}, ["other"], where)
    except ModelError as e:
        raise ExportError(str(e).replace(": invalid manifest: ", ": ", 1)) from None


def _shapes(cfg: ExportConfig, model: Any) -> tuple[tuple[Any, ...], Any]:
    """The model's input and output shapes, or a one-line error (a Sequential model saved
    before it was built has none; a model of several inputs is not one the runtime can feed)."""
    try:
        in_shape, out_shape = model.input_shape, model.output_shape
    except (AttributeError, ValueError, TypeError) as e:
        raise ExportError(
            f"{cfg.model}: the model has no defined input or output shape ({e}; a Sequential model saved "
            "before it was built: give it a keras.Input first)"
        ) from None
    if isinstance(in_shape, list) or (
        isinstance(in_shape, tuple) and any(isinstance(d, (tuple, list)) for d in in_shape)
    ):
        raise ExportError(
            f"{cfg.model}: the model has {len(in_shape)} inputs {tuple(in_shape)}; the exporter takes one"
        )
    return tuple(in_shape), out_shape


def _check_model(cfg: ExportConfig, model: Any, labels: list[str], feats: Mapping[str, Any] | None) -> str:
    """Input shape (log-mel windows or feature rows), output count, and the task, which is
    ``--task`` or inferred from the last activation (sigmoid: multilabel, softmax: multiclass)."""
    from . import convert

    fe = cfg.front_end
    in_shape, out_shape = _shapes(cfg, model)
    if len(in_shape) == 2 and feats is None:
        if in_shape[1] != fe.window_samples:
            raise ExportError(f"{cfg.model}: audio input shape {in_shape} is not (None, {fe.window_samples})")
    elif feats is not None:
        if in_shape[1:] != (len(feats["names"]),):
            raise ExportError(
                f"{cfg.model}: input shape {in_shape} is not (None, {len(feats['names'])}) "
                f"for the {len(feats['names'])} features of {cfg.features}"
            )
    elif in_shape[1:] != (fe.n_mels, fe.frames, 1):
        raise ExportError(f"{cfg.model}: input shape {in_shape} is not (None, {fe.n_mels}, {fe.frames}, 1)")
    if not (isinstance(out_shape, tuple) and all(d is None or isinstance(d, int) for d in out_shape)):
        raise ExportError(
            f"{cfg.model}: has several outputs {out_shape}; the exporter takes one, of shape (None, n_labels)"
        )
    if len(out_shape) != 2:
        raise ExportError(
            f"{cfg.model}: output shape {out_shape} is not (None, n_labels): the runtime reads one "
            "probability per label and window (pool or flatten before the last layer)"
        )
    n_out = out_shape[-1]
    if n_out not in (len(labels), len(labels) + 1):
        raise ExportError(
            f"{cfg.model}: {n_out} outputs but {len(labels)} labels {labels} (or one more: 'other')"
        )
    act = convert.model_activation(model)
    name = convert.activation_name(model)
    if act is None and name is not None:  # relu, tanh, linear (logits): not probabilities
        raise ExportError(
            f"{cfg.model}: the last layer's activation is {name!r}; the runtime needs probabilities "
            "(sigmoid for multilabel, softmax for multiclass)"
        )
    if n_out == len(labels) + 1 and act == "softmax":
        raise ExportError(
            f"{cfg.model}: {n_out} softmax outputs for {len(labels)} labels: an open-set 'other' output is "
            "a sigmoid of its own (a softmax's extra column is not an independent probability)"
        )
    task = cfg.task or _TASK_OF.get(act or "")
    if task is None:
        raise ExportError(
            f"{cfg.model}: the last layer has no activation of its own (neither sigmoid nor softmax); pass --task"
        )
    if act is not None and _TASK_OF[act] != task:
        raise ExportError(
            f"{cfg.model}: ends in {act} but --task {task} needs "
            f"{'sigmoid' if task == 'multilabel' else 'softmax'}"
        )
    return task


def _parity_data(
    cfg: ExportConfig,
    report: Mapping[str, Any] | None,
    labels: list[str],
    feats: dict[str, Any] | None,
    log: Callable[[str], None],
    waveform: bool = False,
) -> tuple[Windows, Path | None]:
    """The parity inputs: ``cfg.n_parity`` feature rows (taken out of ``feats["inputs"]``), or
    log-mel windows of the corpus split. Returns them and the corpus (``None`` for features)."""
    if cfg.n_parity < 200:
        log(f"warning: parity on {cfg.n_parity} windows (the release rule is at least 200)")
    if feats is not None:
        x_all = feats.pop("inputs")
        sel = _subset(len(x_all), cfg.n_parity)
        win = Windows(x=x_all[sel], labels=np.full(len(sel), -1, np.int64), n_notes=len(sel))
        log(f"parity data: {len(win.x)} feature rows of {cfg.features}")
        if cfg.quantize:
            raise ExportError("--quantize is for the spectrogram models, not a features-input model")
        return win, None
    corpus = _pick_corpus(cfg, report)
    win = corpus_windows(corpus, cfg.split, cfg.n_parity, labels=labels, fe=cfg.front_end, audio=waveform)
    log(f"parity data: {len(win.x)} windows from {win.n_notes} notes of {corpus / cfg.split}")
    return win, corpus


def _resolve_inputs(cfg: ExportConfig, log: Callable[[str], None]) -> _Inputs:
    """Stage 1, resolve the inputs: arguments, training report, labels, thresholds, the Keras
    model and its task, and the parity data. Nothing is converted or written yet."""
    from . import convert

    dest = _check_arguments(cfg)
    report = _read_json(cfg.report, "training report") if cfg.report else None
    if report is not None and not isinstance(report, dict):
        raise ExportError(
            f"{cfg.report}: expected a JSON object (a training report), got {type(report).__name__}"
        )
    labels = _labels(cfg, report)
    thresholds = _thresholds(cfg, report)
    _check_labels_and_thresholds(cfg, labels, thresholds)
    model = convert.load_keras(cfg.model)
    feats = _features_inputs(cfg, report) if cfg.features is not None else None
    task = _check_model(cfg, model, labels, feats)
    if thresholds and task != "multilabel":
        log("note: thresholds ignored (they apply to multilabel models only)")
        thresholds = None
    other_threshold = None
    if thresholds and "other" in thresholds:
        thresholds = dict(thresholds)
        other_threshold = float(thresholds.pop("other"))
    waveform = feats is None and len(_shapes(cfg, model)[0]) == 2
    win, corpus = _parity_data(cfg, report, labels, feats, log, waveform)
    view, out_names = convert.output_view(model, len(labels), embedding=cfg.embedding)
    if "other" in out_names and other_threshold is None:
        other_threshold = 0.5
        log("note: no 'other' threshold in the report; the open-set output gets 0.5")
    if "other" not in out_names and other_threshold is not None:
        log("note: an 'other' threshold is given but the model has no open-set output; it is not used")
        other_threshold = None
    if cfg.other_veto is not None and not is_veto(cfg.other_veto):
        raise ExportError(f"--other-veto must be a number in (0, 1], got {cfg.other_veto!r}")
    if "other" not in out_names and cfg.other_veto is not None:
        raise ExportError("--other-veto: the model has no open-set output ('other') for a veto to apply to")
    return _Inputs(
        dest=dest,
        q_dest=cfg.out / f"{cfg.name}-int8" / cfg.version,
        report=report,
        labels=labels,
        thresholds=thresholds,
        model=model,
        task=task,
        feats=feats,
        corpus=corpus,
        win=win,
        waveform=waveform,
        view=view,
        out_names=out_names,
        other_threshold=other_threshold,
    )


def _convert_with_parity(cfg: ExportConfig, inp: _Inputs, log: Callable[[str], None]) -> _Converted:
    """Stage 2, convert and check parity: tf2onnx, canonical names, ``onnx.checker``, then Keras
    against onnxruntime on the parity data (max abs difference <= ``cfg.atol`` and 100 % top-1
    agreement), or :class:`ExportError` naming by how much it failed."""
    from . import convert

    input_name = "features" if inp.feats is not None else AUDIO_INPUT if inp.waveform else convert.INPUT_NAME
    proto = convert.canonicalize(
        convert.to_onnx(inp.view, input_name=input_name, output_names=inp.out_names),
        graph_name=f"{cfg.name}-{cfg.version}",
    )
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"onnx.checker rejected the converted model: {e}") from None
    model_bytes = proto.SerializeToString()
    sess = onnx_session(model_bytes, PARITY_RUNTIME)

    win = inp.win
    ys_keras = _as_list(convert.keras_predict(inp.view, win.x))
    ys_onnx = convert.onnx_predict(sess, win.x, names=inp.out_names)
    diff, agree = parity_stats(ys_keras[0], ys_onnx[0])
    for name, a, b in zip(inp.out_names[1:], ys_keras[1:], ys_onnx[1:], strict=True):
        d = parity_stats(a, b)[0]
        log(f"parity of {name!r}: max |keras - onnxruntime| = {d:.3g}")
        diff = max(diff, d)
    y_keras = ys_keras[0]
    for who, ys in (("Keras", ys_keras), ("onnxruntime", ys_onnx)):
        for name, y in zip(inp.out_names, ys, strict=True):
            _check_finite(cfg, who, name, y)
    for name, y in zip(inp.out_names, ys_keras, strict=True):
        if name != "embedding":
            _check_probabilities(cfg, inp.task if name == inp.out_names[0] else "multilabel", name, y)
    log(
        f"parity: max |keras - onnxruntime| = {diff:.3g}, top-1 agreement {agree:.2%} on {len(win.x)} windows"
    )
    if not diff <= cfg.atol or agree < 1.0:
        problems = []
        if not diff <= cfg.atol:
            problems.append(
                f"max |keras - onnxruntime| = {diff:.3g} exceeds atol {cfg.atol:g} by {diff - cfg.atol:.3g}"
            )
        if agree < 1.0:
            k = int(round((1 - agree) * len(win.x)))
            problems.append(f"top-1 agreement {agree:.2%} ({k} of {len(win.x)} windows differ)")
        raise ExportError("parity failed: " + "; ".join(problems) + "; nothing written")
    parity = {
        "max_abs_diff": diff,
        "top1_agreement": agree,
        "n": int(len(win.x)),
        "atol": cfg.atol,
        "split": cfg.split,
        "notes": win.n_notes,
        "against": "keras float32 (inference mode)",
    }
    if inp.feats is not None:
        parity.pop("notes")
        parity["data"] = str(cfg.features)
    return _Converted(model_bytes=model_bytes, sess=sess, y_keras=y_keras, parity=parity)


def _check_finite(cfg: ExportConfig, who: str, name: str, y: np.ndarray) -> None:
    bad = ~np.isfinite(np.asarray(y, np.float64)).reshape(len(y), -1).all(axis=1)
    if bad.any():
        raise ExportError(
            f"{cfg.model}: {who} gives NaN or infinite {name!r} on {int(bad.sum())} of {len(y)} parity windows "
            f"(the first: window {int(np.argmax(bad))}); nothing written"
        )


def _check_probabilities(cfg: ExportConfig, task: str, name: str, y: np.ndarray) -> None:
    """What the runtime reads as probabilities is (:func:`instrunet_core.verify.probability_problem`,
    the rule ``models --check`` applies to the stored references)."""
    from instrunet_core.verify import probability_problem

    why = probability_problem(y, task, name, "on the parity windows")
    if why is not None:
        raise ExportError(f"{cfg.model}: {why}; nothing written")


def _as_list(y: Any) -> list[np.ndarray]:
    return list(y) if isinstance(y, list) else [y]


def _reference_inputs(
    cfg: ExportConfig, inp: _Inputs, conv: _Converted
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cfg.n_references`` parity inputs spread over the data, as stored (spectrograms in
    float16, feature rows in float32) and as replayed (float32), with Keras's outputs on the
    stored values; parity is checked again on them.

    Returns
    -------
    x_stored : np.ndarray [shape=(r, ...)]
    x_ref : np.ndarray [shape=(r, ...), dtype=float32]
    y_ref : np.ndarray [shape=(r, n_labels), dtype=float32]
    """
    from . import convert

    idx = _subset(len(inp.win.x), cfg.n_references)
    x_stored = inp.win.x[idx].astype(np.float16 if inp.feats is None else np.float32)
    x_ref = x_stored.astype(np.float32)
    y_ref = _as_list(convert.keras_predict(inp.view, x_ref))[0]  # the probabilities
    y_onnx = convert.onnx_predict(conv.sess, x_ref, names=inp.out_names[:1])[0] if len(idx) else y_ref
    rdiff, ragree = parity_stats(y_ref, y_onnx) if len(idx) else (0.0, 1.0)
    if not rdiff <= cfg.atol or ragree < 1.0:
        raise ExportError(
            f"parity failed on the float16 reference inputs: max diff {rdiff:.3g}, "
            f"top-1 agreement {ragree:.2%}; nothing written"
        )
    return x_stored, x_ref, y_ref


def _artifacts(cfg: ExportConfig, inp: _Inputs, conv: _Converted) -> tuple[list[_Artifact], dict[str, Any]]:
    """Stage 3, the artifacts: the float model's manifest and references and, with
    ``cfg.quantize``, the int8 variant (quantised, compared, its own manifest and references).
    Returns the folders to write (float first) and the summary :func:`export_model` returns."""
    from . import convert

    fe = cfg.front_end
    x_stored, x_ref, y_ref = _reference_inputs(cfg, inp, conv)
    has_refs = len(x_ref) > 0
    exporter = convert.versions()
    created = created_timestamp()
    metrics = report_metrics(inp.report) if inp.report else {}
    tdata = training_data_info(inp.report, inp.corpus)
    manifest = build_manifest(
        name=cfg.name,
        version=cfg.version,
        task=inp.task,
        labels=inp.labels,
        front_end=fe.to_dict() if inp.feats is None else None,
        input_shape=[None, len(inp.feats["names"])]
        if inp.feats is not None
        else [None, fe.window_samples]
        if inp.waveform
        else [None, fe.n_mels, fe.frames, 1],
        waveform=inp.waveform,
        other_threshold=inp.other_threshold if "other" in inp.out_names else None,
        other_veto=cfg.other_veto if "other" in inp.out_names else None,
        embedding_dim=_embedding_dim(inp.view, inp.out_names),
        sha256=hashlib.sha256(conv.model_bytes).hexdigest(),
        parity=conv.parity,
        exporter=exporter,
        metrics=metrics,
        training_data=tdata,
        thresholds=inp.thresholds,
        license=cfg.license,
        description=cfg.description,
        created=created,
        references=has_refs,
        features=inp.feats,
    )
    refs = {"inputs": x_stored, "outputs": y_ref} if has_refs else None
    out = [_Artifact(inp.dest, conv.model_bytes, manifest, refs)]
    summary: dict[str, Any] = {
        "path": str(inp.dest),
        "sha256": manifest["sha256"],
        "parity": conv.parity,
        "task": inp.task,
    }
    if not cfg.quantize:
        return out, summary

    from .quantize import compare, quantize_bytes

    if inp.q_dest.exists() and not cfg.force:
        raise ExportError(f"{inp.q_dest}: already exists (pass --force to replace it)")
    win = inp.win
    q_bytes = quantize_bytes(conv.model_bytes)
    prob = inp.out_names[:1]  # the probabilities (a graph's outputs may list other/embedding first)
    q = compare(conv.model_bytes, q_bytes, win.x, win.labels, conv.y_keras, output=prob[0])
    q.pop("int8_outputs")
    q["split"] = cfg.split
    q_sess = onnx_session(q_bytes, PARITY_RUNTIME)
    y_qref = convert.onnx_predict(q_sess, x_ref, names=prob)[0] if has_refs else None
    q_parity = {
        "max_abs_diff": q["max_abs_diff_vs_keras"],
        "top1_agreement": float(
            np.mean(convert.onnx_predict(q_sess, win.x, names=prob)[0].argmax(1) == conv.y_keras.argmax(1))
        ),
        "n": int(len(win.x)),
        "split": cfg.split,
        "against": "keras float32 (int8 is approximate; references hold the int8 model's outputs)",
    }
    q_manifest = build_manifest(
        name=f"{cfg.name}-int8",
        version=cfg.version,
        task=inp.task,
        labels=inp.labels,
        front_end=fe.to_dict(),
        input_shape=[None, fe.n_mels, fe.frames, 1],
        other_threshold=inp.other_threshold if "other" in inp.out_names else None,
        other_veto=cfg.other_veto if "other" in inp.out_names else None,
        embedding_dim=_embedding_dim(inp.view, inp.out_names),
        sha256=hashlib.sha256(q_bytes).hexdigest(),
        parity=q_parity,
        exporter={**exporter, "quantization": "onnxruntime quantize_dynamic, uint8 weights"},
        metrics={"quantization": q, "float_model": metrics},
        training_data=tdata,
        thresholds=inp.thresholds,
        license=cfg.license,
        description=f"dynamically quantised int8 variant of {cfg.name} {cfg.version}",
        created=created,
        references=has_refs,
    )
    out.append(
        _Artifact(
            inp.q_dest,
            q_bytes,
            q_manifest,
            {"inputs": x_stored, "outputs": y_qref} if y_qref is not None else None,
        )
    )
    summary["quantization"] = q
    summary["quantized_path"] = str(inp.q_dest)
    return out, summary


def _embedding_dim(view: Any, names: list[str]) -> int | None:
    if "embedding" not in names:
        return None
    return int(view.outputs[names.index("embedding")].shape[-1])


def _write_all_or_nothing(cfg: ExportConfig, artifacts: list[_Artifact]) -> None:
    """Stage 4, write: each folder atomically and checked (:func:`check_artifact`) before it
    appears; when one fails, the folders this call created before it are removed again (with
    their ``NAME/`` folder if it is left empty). A folder replaced with ``--force`` stays replaced."""
    written: list[Path] = []
    try:
        for art in artifacts:
            existed = art.dest.exists()
            write_artifact(
                art.dest,
                model_bytes=art.model_bytes,
                manifest=art.manifest,
                references=art.references,
                force=cfg.force,
                verify=lambda f: check_artifact(f, atol=cfg.atol),
            )
            if not existed:
                written.append(art.dest)
    except BaseException:
        for dest in written:
            shutil.rmtree(dest, ignore_errors=True)
            try:
                dest.parent.rmdir()  # NAME/, if now empty
            except OSError:
                pass
        raise


def export_model(
    cfg: ExportConfig, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)
) -> dict[str, Any]:
    """Convert, check parity, write the artifact; returns a summary (paths, parity, quantisation).

    The four stages: resolve the inputs, convert with parity, build the artifacts (references,
    optional int8 variant), write them all or nothing.
    Raises :class:`ExportError` (nothing written) on any failed check.
    """
    inputs = _resolve_inputs(cfg, log)
    converted = _convert_with_parity(cfg, inputs, log)
    artifacts, summary = _artifacts(cfg, inputs, converted)
    _write_all_or_nothing(cfg, artifacts)
    return summary
