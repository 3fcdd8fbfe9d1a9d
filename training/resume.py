"""Checkpoints of a training run after every epoch, and ``--resume`` from the last one.

After each epoch :func:`training.train.fit_and_select` writes, into the run's ``--out``:

* ``<model>.resume-<N>.npz`` — the network's variables (weights, batch-normalisation
  statistics and the dropout layers' random-generator state), the optimizer's variables
  (step count, Adam's moments), the weights kept so far as the best and those kept for
  ``--average-epochs``, and the training batches' order for the next epoch;
* ``resume.json`` — what the loop knows besides: the run's options, the epoch reached, the
  history, the best score and its thresholds, the epochs without improvement, the batches'
  random-generator state, the seconds spent, and whether the loop had ended (early stop or
  time budget).

The arrays are written first and the state that names them second, each whole or not at all
(:func:`instrunet_core.writers.atomic_path`), and the previous epoch's arrays are deleted
only after that: an interruption at any moment leaves a state whose arrays are there.
``python -m training.train ... --resume`` with the same options continues after the last
finished epoch as if the run had not stopped (same batches, same optimizer steps, same
learning-rate schedule; the same weights to float32 rounding), then scores, saves and reports
as usual. Interrupted while it scores or reports after the last epoch, it does that part
again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from instrunet_core.writers import atomic_path

from .cli_checks import ToolError

STATE = "resume.json"
#: options that may differ between a run and its resumption (they change nothing trained)
FREE = frozenset({"progress", "workers", "report_dir", "time_budget_min", "patience"})


def _arrays_name(model: str, epoch: int) -> str:
    return f"{model}.resume-{epoch}.npz"


def save(
    out: Path,
    config: dict[str, Any],
    *,
    model: Any,
    seq: Any,
    state: dict[str, Any],
    best_weights: list[np.ndarray] | None,
    trained: list[tuple[int, list[np.ndarray]]],
) -> None:
    """Write the checkpoint of the epoch ``state["epoch"]`` (see the module's description)."""
    out.mkdir(parents=True, exist_ok=True)
    old = _read_state(out)
    name = _arrays_name(config["model"], int(state["epoch"]))
    arrays: dict[str, np.ndarray] = {"order": np.asarray(seq.order)}
    for i, v in enumerate(model.variables):
        arrays[f"model/{i}"] = np.asarray(v)
    opt = getattr(model, "optimizer", None)
    for i, v in enumerate(opt.variables if opt is not None else ()):
        arrays[f"optimizer/{i}"] = np.asarray(v)
    for i, w in enumerate(best_weights or ()):
        arrays[f"best/{i}"] = np.asarray(w)
    for j, (_, weights) in enumerate(trained):
        for i, w in enumerate(weights):
            arrays[f"trained{j}/{i}"] = np.asarray(w)
    with atomic_path(out / name) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # (numpy's stubs take ** for allow_pickle)
    doc = {
        "schema": 1,
        "config": config,
        "arrays": name,
        **state,
        "rng": seq.rng.bit_generator.state,
        "trained_epochs": [e for e, _ in trained],
        "has_best": best_weights is not None,
    }
    with atomic_path(out / STATE) as tmp:
        # NaN stays NaN (the warm start's "epoch 0" has no loss): this file is read back only here
        Path(tmp).write_text(json.dumps(doc, indent=1, default=_plain))
    if old is not None and old.get("arrays") not in (None, name):
        (out / old["arrays"]).unlink(missing_ok=True)


def _plain(o: Any) -> Any:
    """numpy scalars and arrays (thresholds, scores) as JSON's numbers and lists."""
    if isinstance(o, (np.generic, np.ndarray)):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _read_state(out: Path) -> dict[str, Any] | None:
    path = out / STATE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ToolError(f"{path}: not a readable checkpoint ({e})") from e
    if not isinstance(doc, dict) or doc.get("schema") != 1:
        raise ToolError(f"{path}: not a checkpoint of this trainer (schema {doc.get('schema')!r})")
    return doc


def check(out: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint in ``out`` that a run with ``config`` may resume.

    Raises
    ------
    ToolError
        No checkpoint there, its arrays are missing, or it was written by a run with other
        options (those that change what is trained; :data:`FREE` may differ).
    """
    doc = _read_state(out)
    if doc is None:
        raise ToolError(f"--resume: {out / STATE} not found (no epoch of a run in {out} has finished)")
    if not (out / doc["arrays"]).is_file():
        raise ToolError(f"--resume: {out / doc['arrays']} is missing (named by {out / STATE})")
    saved = doc["config"]
    differ = sorted(k for k in set(saved) | set(config) if k not in FREE and saved.get(k) != config.get(k))
    if differ:
        said = "; ".join(
            f"--{k.replace('_', '-')} {saved.get(k)!r} there, {config.get(k)!r} now" for k in differ
        )
        raise ToolError(
            f"--resume: the run in {out} had other options ({said}); resume with the same options"
        )
    return doc


def restore(out: Path, doc: dict[str, Any], *, model: Any, seq: Any) -> dict[str, Any]:
    """Put the checkpoint ``doc`` (from :func:`check`) back into ``model`` (compiled) and the
    batches ``seq``; return ``best_weights`` and ``trained`` as :func:`save` took them."""
    with np.load(out / doc["arrays"]) as z:
        arrays = {k: z[k] for k in z.files}

    def group(prefix: str) -> list[np.ndarray]:
        n = sum(1 for k in arrays if k.startswith(prefix + "/"))
        return [arrays[f"{prefix}/{i}"] for i in range(n)]

    variables = group("model")
    if [tuple(v.shape) for v in model.variables] != [a.shape for a in variables]:
        raise ToolError(f"--resume: {out / doc['arrays']} holds another network's variables")
    for v, a in zip(model.variables, variables, strict=True):
        v.assign(a)
    opt = model.optimizer
    opt.build(model.trainable_variables)
    saved_opt = group("optimizer")
    if [tuple(v.shape) for v in opt.variables] != [a.shape for a in saved_opt]:
        raise ToolError(f"--resume: {out / doc['arrays']} holds another optimizer's state")
    for v, a in zip(opt.variables, saved_opt, strict=True):
        v.assign(a)
    seq.rng.bit_generator.state = doc["rng"]
    seq.order = arrays["order"]
    return {
        "best_weights": group("best") if doc["has_best"] else None,
        "trained": [(e, group(f"trained{j}")) for j, e in enumerate(doc["trained_epochs"])],
    }


def remove(out: Path) -> None:
    """Delete the checkpoint of a run that has finished (its model and report are written)."""
    doc = _read_state(out)
    if doc is None:
        return
    (out / doc["arrays"]).unlink(missing_ok=True)
    (out / STATE).unlink(missing_ok=True)
