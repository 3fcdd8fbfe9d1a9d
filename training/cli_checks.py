"""What the training tools check before they work, and how they write what they keep.

One home for the rules every ``python -m training.*`` command follows (a tools audit found
each had its own, or none):

* numbers are checked before anything is built (:func:`number_problems`): a learning rate
  of NaN trained a model of NaN weights and exited 0;
* a report, a run folder or an output that already holds a previous run's results is not
  replaced without ``--force`` (:func:`refuse_existing`): a run with the default report folder
  overwrote the shipped, version-controlled report of the same version;
* files are written whole or not at all (:func:`write_json`, :func:`save_keras`): a full disk
  left a truncated model where the last good one had been; JSON has no ``NaN`` token (not
  JSON), non-finite numbers are ``null``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["number_problems", "refuse_existing", "write_json", "save_keras", "finite_json", "ToolError"]


class ToolError(RuntimeError):
    """A training tool's input or output is unusable: its message names the file or argument."""


def number_problems(
    values: Mapping[str, Any],
    *,
    positive: Iterable[str] = (),
    non_negative: Iterable[str] = (),
    chances: Iterable[str] = (),
    positive_real: Iterable[str] = (),
    non_negative_real: Iterable[str] = (),
) -> list[str]:
    """What is wrong with ``values`` (``{name: value}``; ``None`` passes, it means "not set"):
    ``positive`` integers >= 1, ``non_negative`` integers >= 0, ``chances`` finite numbers in
    [0, 1], ``positive_real`` finite numbers > 0, ``non_negative_real`` finite numbers >= 0.
    Each problem names the option as the command line spells it (``--batch-size``)."""
    out = []

    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    def real(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))

    for name in positive:
        v = values.get(name)
        if v is not None and not (isinstance(v, int) and v >= 1):
            out.append(f"{flag(name)} must be an integer >= 1, got {v!r}")
    for name in non_negative:
        v = values.get(name)
        if v is not None and not (isinstance(v, int) and v >= 0):
            out.append(f"{flag(name)} must be an integer >= 0, got {v!r}")
    for name in chances:
        v = values.get(name)
        if v is not None and not (real(v) and 0.0 <= float(v) <= 1.0):
            out.append(f"{flag(name)} must be a chance in [0, 1], got {v!r}")
    for name in positive_real:
        v = values.get(name)
        if v is not None and not (real(v) and float(v) > 0):
            out.append(f"{flag(name)} must be a finite number > 0, got {v!r}")
    for name in non_negative_real:
        v = values.get(name)
        if v is not None and not (real(v) and float(v) >= 0):
            out.append(f"{flag(name)} must be a finite number >= 0, got {v!r}")
    return out


def refuse_existing(paths: Iterable[Path], *, force: bool, what: str) -> None:
    """Raise :class:`ToolError` when one of ``paths`` exists and ``force`` is not given (naming
    it and ``what`` it holds); a path whose parent is a file is refused whatever ``force``."""
    for p in paths:
        p = Path(p)
        for parent in p.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ToolError(f"{p}: cannot be written: {parent} is a file, not a folder")
                break
        if p.exists() and not force:
            raise ToolError(f"{p}: exists ({what}); pass --force to replace it, or choose another path")


def finite_json(x: Any) -> Any:
    """``x`` with every non-finite float as ``None`` (``NaN`` is no JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {k: finite_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_json(v) for v in x]
    return x


def write_json(path: Path, data: Any, **dump: Any) -> None:
    """``data`` as JSON at ``path``, whole or not at all (the core's atomic writer:
    :func:`instrunet_core.writers.atomic_write_text`, the replaced file's permissions kept, a
    link written through); NaN and infinities are written as ``null``."""
    from instrunet_core.writers import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(finite_json(data), allow_nan=False, **dump))


def save_keras(model: Any, path: Path) -> None:
    """``model.save(path)`` whole or not at all (the core's :func:`~instrunet_core.writers.atomic_path`,
    a ``.keras`` suffix for Keras to see): a full disk left a truncated ``.keras`` where the
    previous good one had been."""
    from instrunet_core.writers import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
