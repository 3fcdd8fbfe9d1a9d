"""One progress bar for the training scripts: tqdm on stderr when installed and wanted, else nothing."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["progress_bar"]


class _NoBar:
    """Stands in for a tqdm bar: ``update`` and ``close`` do nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, *, desc: str, unit: str, initial: int = 0, enabled: bool = True) -> Any:
    """A tqdm bar on stderr (``update(n)``, ``close()``), or a silent stand-in when ``enabled`` is
    false or tqdm is not installed."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr)
