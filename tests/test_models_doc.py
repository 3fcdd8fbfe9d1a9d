"""docs/models.md is what ``make models-doc`` writes: its prose lives in the generator's intro
and outro (benchmarks/models_intro.md, benchmarks/models_outro.md), so a section added to the
doc alone would be lost at the next run (seven sections and 252 lines of others once nearly
were)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What a rerun measures anew: each model's latency cells and the line saying where and when.
_MEASURED = (
    (re.compile(r"\| \d+\.\d\d ms, \d+\.\d\d ms \|"), "| (latency) |"),
    (re.compile(r"^Latency: .*$", re.M), "Latency: (measured)"),
)


def _fixed(text: str) -> str:
    for pattern, repl in _MEASURED:
        text = pattern.sub(repl, text)
    return text


def test_models_doc_is_what_its_generator_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import models_table

    monkeypatch.chdir(ROOT)  # the generator's paths are the repository's
    out = tmp_path / "models.md"
    assert models_table.main(["--out", str(out)]) == 0
    written, committed = out.read_text(), (ROOT / "docs" / "models.md").read_text()
    assert "| (latency) |" in _fixed(written)  # the masking found the measured cells
    assert _fixed(written) == _fixed(committed), (
        "docs/models.md differs from what `make models-doc` writes: edit benchmarks/models_intro.md "
        "or benchmarks/models_outro.md, then run `make models-doc`"
    )
