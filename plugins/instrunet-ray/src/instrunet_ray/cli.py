"""``instrunet-ray DIR --out results.jsonl``: ``instrunet batch`` on Ray Data."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from instrunet_core.arguments import HelpSaidParser, add_count_option, hop_type
from instrunet_core.errors import describe
from instrunet_core.features import DEFAULT_HOP_SECONDS


def build_parser() -> argparse.ArgumentParser:
    p = HelpSaidParser(
        prog="instrunet-ray",
        description="Classify every audio file under DIR on Ray Data (an actor pool with one model per worker) "
        "into the records 'instrunet batch' writes; resumable.",
    )
    p.add_argument("source", metavar="DIR", help="directory searched recursively for audio files")
    p.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="results.jsonl (JSON lines) or a folder (Parquet parts); files already in it are skipped",
    )
    p.add_argument(
        "--format",
        dest="fmt",
        choices=["jsonl", "parquet"],
        help="default: parquet for a folder, jsonl otherwise",
    )
    p.add_argument("--model", metavar="NAME", help="registered model name (default model if omitted)")
    add_count_option(p, "--workers", default=2, help="actors, one model and one CPU each (default 2)")
    add_count_option(p, "--batch-size", default=4, help="files per actor call (default 4)")
    p.add_argument(
        "--hop",
        type=hop_type,
        metavar="S",
        help=f"seconds between windows, snapped to whole 23 ms frames (default {DEFAULT_HOP_SECONDS:g})",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster to join (ray.init(address=...), e.g. auto or ray://head:10001); "
        "default: start a local Ray instance",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``instrunet-ray``: 0 when every file was tagged, 1 when any failed (each
    named on stderr) or the run could not complete, 2 for a bad command line.

    When it starts a local Ray instance it also ends it: ``ray.shutdown()`` on the way out, and a
    watchdog process (:mod:`instrunet_ray._reaper`) that ends Ray's processes if this one is
    killed outright (``kill -9``).
    """
    args = build_parser().parse_args(argv)
    from instrunet_core.errors import InstrunetWarning

    from . import _reaper
    from .engine import tag_collection

    reaper = _reaper.start() if args.address is None else None
    with warnings.catch_warnings():  # (the filters and showwarning are restored afterwards)
        # the core's warnings (a named pipe left out of a folder, ...) as this command's lines, not
        # Python's with a source line, and lines whatever PYTHONWARNINGS says (=error made them
        # tracebacks: an environment audit)
        warnings.showwarning = lambda message, *a, **k: _say(f"instrunet-ray: warning: {message}")
        warnings.filterwarnings("default", category=InstrunetWarning)
        warnings.filterwarnings(
            "default", module=r"ray(\.|$)"
        )  # (Ray's own deprecations: not ours to stop on)
        return _tag(args, reaper, tag_collection)


def _tag(args: Any, reaper: Any, tag_collection: Any) -> int:
    """:func:`main`'s run, its warnings already routed."""
    from instrunet_core.errors import InstrunetError

    from . import _reaper

    try:
        s = tag_collection(**vars(args))  # the options are named as its parameters
    except InstrunetError as e:
        _error(str(e))
        return 1
    except KeyboardInterrupt:
        _error("interrupted; the records written so far are kept, rerun to resume")
        return 130
    except Exception as e:  # noqa: BLE001 - Ray's own failures: one line, not a traceback
        _error(describe(e, first_line=True))
        return 1
    finally:
        _shutdown_ray(args.address)
        _reaper.stop(reaper)
    return 1 if s["errors"] else 0


def _say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        print(line, file=sys.stderr, flush=True)


def _error(msg: str) -> None:
    _say(f"instrunet-ray: error: {msg}")


def _shutdown_ray(address: str | None) -> None:
    """End the local Ray instance this command started (a cluster it joined is left alone)."""
    if address is not None or "ray" not in sys.modules:
        return
    import ray

    with contextlib.suppress(Exception):
        if ray.is_initialized():
            ray.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
