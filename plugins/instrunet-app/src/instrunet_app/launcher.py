"""``instrunet-app``: start the web app (``streamlit run`` on :mod:`instrunet_app.app`).

Serves on 127.0.0.1 only by default, headless, without usage statistics or file
watching, with Streamlit's own upload limit a tenth above the app's (``--max-mb``: the app's check,
which names the file, answers a file a little too large).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from instrunet_core.arguments import HelpSaidParser
from instrunet_core.errors import InputError
from instrunet_core.inputs import plain_float, plain_int

from .service import Limits

__all__ = ["APP_FILE", "streamlit_command", "upload_cap_mb", "main"]

#: The Streamlit script.
APP_FILE = Path(__file__).resolve().parent / "app.py"


def _positive(text: str) -> float:
    try:
        v = plain_float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return v


def _whole(text: str) -> int:
    try:
        return plain_int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _host(text: str) -> str:
    """``--host``: an address or name; empty is refused (Streamlit would serve on every interface)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"empty address {text!r} (it would serve on every interface; "
            "give 0.0.0.0 to mean that, or 127.0.0.1 for this machine only)"
        )
    return text.strip()


def _parser() -> argparse.ArgumentParser:
    p = HelpSaidParser(
        prog="instrunet-app",
        description="Start the instrunet web app: upload a recording, see which instruments play, "
        "download the JSON and PDF reports.",
    )
    p.add_argument(
        "--host",
        type=_host,
        default="127.0.0.1",
        help="address to serve on (default 127.0.0.1: this machine only)",
    )
    p.add_argument("--port", type=_whole, default=8501, help="port (default 8501)")
    limits = Limits()
    p.add_argument(
        "--max-mb",
        type=_positive,
        default=limits.max_mb,
        help=f"largest upload in MB (default {limits.max_mb:g})",
    )
    p.add_argument(
        "--max-seconds",
        type=_positive,
        default=limits.max_seconds,
        help=f"longest recording in seconds (default {limits.max_seconds:g})",
    )
    p.add_argument(
        "--max-analyses",
        type=_whole,
        default=limits.max_analyses,
        help="most analyses at once, over every visitor; an upload beyond them waits (default: the "
        f"usable cores, 1 to 4: {limits.max_analyses} here)",
    )
    return p


def upload_cap_mb(max_mb: float) -> int:
    """Streamlit's upload limit for an app limit of ``max_mb``: a tenth more (at least 1 MB more):
    a file a little too large reaches the app's check, and what Streamlit keeps of a refused
    upload for its session stays close to the limit (twice it before: three refused 100 MB
    uploads held 330 MB)."""
    return int(max(max_mb + 1, 1.1 * max_mb) // 1) + 1


def streamlit_command(args: argparse.Namespace) -> list[str]:
    """The ``python -m streamlit run ...`` command line for ``args``."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_FILE),
        "--server.address", args.host,
        "--server.port", str(args.port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        # Streamlit's own limit (MB of 10**6 bytes) above the app's, so a file a little too large
        # reaches the app's check and its message naming the file; what Streamlit refuses itself
        # is only its uploader's note, and the page would keep showing the previous result
        "--server.maxUploadSize", str(upload_cap_mb(args.max_mb)),
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--global.developmentMode", "false",
        "--theme.base", "light",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Parse the options and replace this process with the Streamlit server."""
    args = _parser().parse_args(argv)  # (--help that stdout cannot take is said: HelpSaidParser)
    if not 0 < args.port < 65536:
        _parser().error(f"--port must be in 1..65535, got {args.port}")
    try:  # the page's own rule (inf, 1e400, above the caps), before a server starts that refuses it
        Limits(max_mb=args.max_mb, max_seconds=args.max_seconds, max_analyses=args.max_analyses)
    except InputError as e:
        _parser().error(
            str(e)
            .replace("Limits: max_mb", "--max-mb")
            .replace("Limits: max_seconds", "--max-seconds")
            .replace("Limits: max_analyses", "--max-analyses")
        )
    os.environ["INSTRUNET_APP_MAX_MB"] = repr(args.max_mb)
    os.environ["INSTRUNET_APP_MAX_SECONDS"] = repr(args.max_seconds)
    os.environ["INSTRUNET_APP_MAX_ANALYSES"] = str(args.max_analyses)
    os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    cmd = streamlit_command(args)
    with contextlib.suppress(OSError, ValueError):  # (a stdout that cannot take it stops no server)
        print(f"instrunet-app: serving on http://{args.host}:{args.port}", flush=True)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":  # pragma: no cover
    main()
