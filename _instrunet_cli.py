"""The ``instrunet`` command's entry point, kept outside the package so that it starts light.

The console script imports this module, which imports nothing heavy: a Ctrl-C while
:mod:`instrunet_core` and its dependencies are still being imported (numpy, onnxruntime,
pluggy: a few tenths of a second) ends the command like any later interruption, with one line
and exit status 130, instead of an import traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Import :mod:`instrunet_core.cli` and run its ``main``; a Ctrl-C during the import is
    reported in one line (exit status 130)."""
    try:
        from instrunet_core.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("instrunet: error: interrupted\n")
        return EXIT_INTERRUPTED
    return run(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
