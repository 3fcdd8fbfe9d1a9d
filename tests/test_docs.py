"""Every ```python snippet in README.md and docs/*.md runs as written.

Each file's snippets run in order in one fresh interpreter (the real registry: the packaged
models and the installed plugins, not the tests' isolated one), from the repository root, as
a reader pastes them. A snippet is skipped only when it imports a distribution listed in
``OPTIONAL`` that is not installed here (say, the Pedalboard adapter plugin in an environment
without it); the skip names the module.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

#: Top-level modules a snippet may need that are optional here (separately installed plugins).
OPTIONAL = {"instrunet_pedalboard", "instrunet_app", "instrunet_ray", "ray", "streamlit"}

RUNNER = r"""
import importlib.util, json, os, sys, tempfile, traceback
snippets = json.loads(sys.stdin.read())
ns = globals()
ns["__file__"] = os.path.join(tempfile.mkdtemp(), "snippet.py")  # plugin examples use Path(__file__)
report = []
for i, (code, needs) in enumerate(snippets):
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        report.append({"i": i, "skipped": missing})
        continue
    try:
        exec(compile(code, f"snippet {i}", "exec"), ns)
        report.append({"i": i, "ok": True})
    except BaseException:
        report.append({"i": i, "error": traceback.format_exc()})
        break
print("@@REPORT@@" + json.dumps(report))
"""


def _imports(code: str) -> set[str]:
    mods = set(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_][\w]*)", code, re.M))
    return mods & OPTIONAL


def _run(codes: list[str]) -> list[dict[str, Any]]:
    """Run ``codes`` in order in one fresh interpreter (:data:`RUNNER`); its report, one entry
    per snippet run or skipped (up to the first that fails)."""
    r = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps([(code, sorted(_imports(code))) for code in codes]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=_env(),
    )
    assert "@@REPORT@@" in r.stdout, r.stderr[-3000:]
    report: list[dict[str, Any]] = json.loads(r.stdout.split("@@REPORT@@")[-1])
    return report


def test_docs_have_snippets() -> None:
    counts = {p.name: len(SNIPPET.findall(p.read_text())) for p in DOCS}
    assert counts["README.md"] >= 2 and counts["inference.md"] >= 3 and counts["plugins.md"] >= 4


@pytest.mark.parametrize("doc", [p for p in DOCS if SNIPPET.search(p.read_text())], ids=lambda p: p.name)
def test_snippets_run(doc: Path) -> None:
    snippets = SNIPPET.findall(doc.read_text())
    report = _run(snippets)
    for entry in report:
        assert "error" not in entry, f"{doc.name}, python snippet {entry['i'] + 1}:\n{entry['error']}"
    assert len(report) == len(snippets)
    skipped = [e for e in report if "skipped" in e]
    if skipped:
        pytest.skip(
            f"{doc.name}: snippets {[e['i'] + 1 for e in skipped]} need "
            f"{sorted({m for e in skipped for m in e['skipped']})}, not installed here"
        )


@pytest.mark.parametrize("i", range(len(SNIPPET.findall((ROOT / "docs" / "plugins.md").read_text()))))
def test_plugin_page_snippets_run_alone(i: int) -> None:
    """Each snippet of docs/plugins.md, pasted alone into a fresh interpreter (the last one once
    needed the hooks of the snippets before it)."""
    code = SNIPPET.findall((ROOT / "docs" / "plugins.md").read_text())[i]
    (entry,) = _run([code])
    assert "error" not in entry, f"plugins.md, python snippet {i + 1} alone:\n{entry['error']}"


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("INSTRUNET_PLUGINS", None)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def test_the_channel_limit_the_docs_state_is_the_codes() -> None:
    """README said headers of more than 1,024 channels are refused; the code refuses more than
    ``MAX_CHANNELS`` (64), as docs/cli.md says."""
    from instrunet_core.inputs import MAX_CHANNELS

    for doc in (ROOT / "README.md", ROOT / "docs" / "cli.md"):
        stated = re.findall(r"more than\s+([\d,]+)\s+channels", doc.read_text())
        assert stated and {int(n.replace(",", "")) for n in stated} == {MAX_CHANNELS}, doc.name
