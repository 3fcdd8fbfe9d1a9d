"""Rewrite the "## Help" section of docs/cli.md from the parser (``make cli-doc``).

tests/test_cli.py checks that docs/cli.md holds every subcommand's help as the parser prints it
at 100 columns; run this after changing the command line.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent / "cli.md"


def main() -> None:
    os.environ["COLUMNS"] = "100"
    from instrunet_core.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = ["## Help\n"]
    for name, sub in [("", parser), *subs.choices.items()]:
        title = f"instrunet {name} --help".replace("  ", " ")
        parts.append(f"`{title}`\n\n```\n{sub.format_help()}```\n")
    text = DOC.read_text()
    start = text.index("## Help\n")
    rest = re.search(r"\n## (?!Help)", text[start:])
    end = start + rest.start() + 1 if rest else len(text)
    DOC.write_text(text[:start] + "\n".join(parts) + ("\n" + text[end:] if rest else ""))


if __name__ == "__main__":
    main()
