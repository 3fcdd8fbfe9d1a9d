"""Built-in writers (registered by :mod:`instrunet_core.default_plugins`)."""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["write_json"]


def write_json(analysis: Any, path: str | os.PathLike[str]) -> None:
    """Write ``analysis.to_dict()`` as indented UTF-8 JSON (``-`` writes to stdout)."""
    text = json.dumps(analysis.to_dict(), indent=2, allow_nan=False) + "\n"
    if os.fspath(path) == "-":
        import sys

        sys.stdout.write(text)
        return
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
