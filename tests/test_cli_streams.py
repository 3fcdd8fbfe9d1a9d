"""The command line as a tool in pipelines: where its data goes, what it reads from standard
input, its exit statuses (a pipelines audit, 2026-12-06). Each test runs ``instrunet`` in a
child process with file descriptors of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, cli_child, tone

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/dev/stdout, /dev/full")


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    f = tmp_path / "a.wav"
    sf.write(f, np.tile(tone(4.0), 2), SR)
    return f


def _run(model_dir: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    cmd, env = cli_child(model_dir)
    return subprocess.run([*cmd, *args], env=env, capture_output=True, timeout=120, **kw)  # type: ignore[call-overload]


def test_an_output_named_dev_stdout_is_stdout(tiny_model_dir: Path, wav: Path, tmp_path: Path) -> None:
    """`--json /dev/stdout` was opened while file descriptor 1 pointed at stderr (so that plugin
    prints cannot reach the data): the JSON went to stderr, and a stderr appended to a log file
    replaced that file, its earlier lines lost."""
    r = _run(tiny_model_dir, "analyze", str(wav), "--json", "/dev/stdout")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["schema"].startswith("instrunet.analysis/")  # the data alone, as `--json -`
    assert b"schema" not in r.stderr
    log = tmp_path / "log.txt"
    log.write_text("an earlier line\n")
    out = tmp_path / "out.txt"
    with open(out, "wb") as o, open(log, "ab") as e:
        cmd, env = cli_child(tiny_model_dir)
        rc = subprocess.run([*cmd, "analyze", str(wav), "--csv", "/dev/fd/1"], env=env, stdout=o, stderr=e, timeout=120).returncode
    assert rc == 0
    assert log.read_text().startswith("an earlier line\n") and "start" not in log.read_text()
    assert out.read_text().splitlines()[0].startswith("start")  # the CSV's header, on stdout
    # two outputs on stdout, whatever their names: refused before the file is read
    r = _run(tiny_model_dir, "analyze", str(wav), "--json", "-", "--csv", "/dev/stdout")
    assert r.returncode == 2 and b"only one output can go to stdout" in r.stderr
