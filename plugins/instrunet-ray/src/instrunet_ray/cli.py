"""``instrunet-ray DIR --out results.jsonl``: ``instrunet batch`` on Ray Data."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from instrunet_core.features import DEFAULT_HOP_SECONDS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    p.add_argument(
        "--workers", type=int, default=2, metavar="N", help="actors, one model and one CPU each (default 2)"
    )
    p.add_argument("--batch-size", type=int, default=4, metavar="N", help="files per actor call (default 4)")
    p.add_argument(
        "--hop",
        type=float,
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
    args = build_parser().parse_args(argv)
    from instrunet_core.errors import InstrunetError

    from .engine import tag_collection

    try:
        s = tag_collection(**vars(args))  # the options are named as its parameters
    except InstrunetError as e:
        print(f"instrunet-ray: error: {e}", file=sys.stderr)
        return 1
    return 1 if s["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
