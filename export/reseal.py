"""``python -m export.reseal DIR...``: add ``manifest_sha256`` to artifacts exported before it existed.

Each DIR is an artifact folder ``<name>/<version>/``. The ONNX file must match the manifest's
``sha256``; nothing but the digest is changed. Exit code 1 if any folder failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from instrunet_core.errors import describe

from . import ExportError
from .artifact import reseal_artifact


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.reseal", description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, metavar="DIR", help="artifact folders <name>/<version>/")
    args = ap.parse_args(argv)
    rc = 0
    for d in args.folders:
        try:
            m = reseal_artifact(d)
        except ExportError as e:
            print(f"export.reseal: error: {e}", file=sys.stderr)
            rc = 1
            continue
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - one folder's surprise never stops the others
            print(f"export.reseal: error: {d}: {describe(e)}", file=sys.stderr)
            rc = 1
            continue
        print(f"{d}: manifest_sha256 {m['manifest_sha256']}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
