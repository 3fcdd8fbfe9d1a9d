"""The Ray Data engine (plugins/instrunet-ray) on a local Ray instance, against ``instrunet batch``.

Real: a local Ray (2 CPUs), the shipped default model loaded by each actor, real recordings
and a corrupt file; the reference is the ``instrunet`` console script in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instrunet_core.errors import InstrunetWarning

ray = pytest.importorskip(
    "ray",
    reason="ray is not installed (make's .venv/.dev target installs plugins/instrunet-ray with ray[data])",
)
instrunet_ray = pytest.importorskip("instrunet_ray", reason="plugins/instrunet-ray is not installed")

pytestmark = pytest.mark.slow  # a local Ray instance takes seconds to start
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "instrunet"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    d = tmp_path / "samples"
    (d / "nested").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "solo_flute.wav", d / "flute.wav")
    y, sr = sf.read(ROOT / "examples" / "ensemble.flac", dtype="float32")
    sf.write(d / "nested" / "ensemble_8s.flac", y[: 8 * sr], sr)
    sf.write(d / "nested" / "quiet.ogg", np.zeros(22050, np.float32), 22050)
    (d / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (d / "notes.txt").write_text("not audio")
    return d


def _records(path: Path) -> dict[str, dict]:
    return {r["path"]: r for r in map(json.loads, path.read_text().splitlines()) if r}


def _batch_reference(collection: Path, tmp_path: Path) -> dict[str, dict]:
    exe = str(BIN) if BIN.exists() else shutil.which("instrunet")
    assert exe, "the instrunet console script is not installed"
    out = tmp_path / "reference.jsonl"
    subprocess.run(
        [exe, "batch", str(collection), "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    return _records(out)


def test_same_records_as_instrunet_batch_and_resumable(
    local_ray: None, installed_registry: object, collection: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ray.jsonl"
    s = instrunet_ray.tag_collection(collection, out, workers=2, batch_size=1, log=lambda m: None)
    assert (s["files"], s["written"], s["skipped"], s["errors"]) == (4, 4, 0, 1)
    assert 0 < s["first_record_s"] <= s["seconds"] and s["steady_files_per_s"] > 0
    got, ref = _records(out), _batch_reference(collection, tmp_path)
    real = Path(os.path.realpath(collection))
    assert (
        set(got)
        == set(ref)
        == {
            str(real / "flute.wav"),
            str(real / "broken.wav"),
            str(real / "nested" / "ensemble_8s.flac"),
            str(real / "nested" / "quiet.ogg"),
        }
    )
    for path, r in ref.items():
        g = got[path]
        assert set(g) == set(r), path
        if "error" in r:
            assert g["error"] == r["error"] and g["error"].startswith(path)
            continue
        assert g["schema"] == r["schema"] == "instrunet.classification/2"
        for k in ("label", "model", "duration", "n_windows", "silent", "low_evidence", "sounding_seconds"):
            assert g[k] == r[k], (path, k)
        assert g["confidence"] == pytest.approx(r["confidence"], abs=1e-6)
        for lab, p in r["probabilities"].items():
            assert g["probabilities"][lab] == pytest.approx(p, abs=1e-6)
    assert got[str(real / "nested" / "quiet.ogg")]["label"] == "silence"

    # resume: the done files are skipped, the failed one is retried (as instrunet batch does)
    again = instrunet_ray.tag_collection(collection, out, workers=1, log=lambda m: None)
    assert (again["written"], again["skipped"], again["errors"]) == (1, 3, 1)
    assert again["first_record_s"] > 0 and again["steady_files_per_s"] is None  # one record: no rate after it
    # an interrupted run (a torn last line) redoes only that file
    (collection / "broken.wav").unlink()
    lines = [ln for ln in out.read_text().splitlines() if '"error"' not in ln]
    out.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    third = instrunet_ray.tag_collection(collection, out, workers=1, log=lambda m: None)
    assert (third["files"], third["written"], third["skipped"]) == (3, 1, 2)
    assert set(_records_lenient(out)) == set(ref) - {str(real / "broken.wav")}


def _records_lenient(path: Path) -> dict[str, dict]:
    recs = {}
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        recs[r["path"]] = r
    return recs


def test_parquet_output_and_resume(
    local_ray: None, installed_registry: object, collection: Path, tmp_path: Path
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "parquet_out"
    s = instrunet_ray.tag_collection(
        collection, out, fmt="parquet", workers=1, part_size=2, log=lambda m: None
    )
    assert s["written"] == 4
    table = pq.read_table(out)
    rows = {r["path"]: r for r in table.to_pylist()}
    assert len(rows) == 4 and len(list(out.glob("part-*.parquet"))) == 2
    real = Path(os.path.realpath(collection))
    flute = rows[str(real / "flute.wav")]
    assert flute["error"] is None and set(json.loads(flute["probabilities"])) >= {"flute", "brass"}
    assert json.loads(flute["model"])["name"] == "family"
    assert rows[str(real / "broken.wav")]["label"] is None
    again = instrunet_ray.tag_collection(collection, out, workers=1, log=lambda m: None)
    assert (again["written"], again["skipped"]) == (1, 3)  # only the failed file is retried
    assert flute["hop"] > 0 and flute["file_size"] == os.stat(real / "flute.wav").st_size

    # a part of an earlier version, without hop and stamp columns, is still read as done
    import pyarrow as pa

    old = tmp_path / "old_parts"
    old.mkdir()
    kept = [r for r in table.to_pylist() if r["error"] is None]
    cols = [c for c in table.column_names if c not in ("hop", "file_size", "file_mtime_ns")]
    pq.write_table(pa.Table.from_pylist([{c: r[c] for c in cols} for r in kept]), old / "part-0-old.parquet")
    # flute.wav rewritten since its record: done again; another hop: refused before Ray runs
    st = os.stat(real / "flute.wav")
    with open(real / "flute.wav", "r+b") as f:
        f.seek(st.st_size - 4)
        f.write(b"\x00\x00\x00\x00")
    os.utime(real / "flute.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 3_000_000_000))
    from instrunet_core.errors import InputError

    with pytest.raises(
        InputError, match=r"holds results made with a hop of [0-9.]+ s, not this run's 0\.511 s"
    ):
        instrunet_ray.tag_collection(collection, out, hop=0.5, log=lambda m: None)
    third = instrunet_ray.tag_collection(collection, out, workers=1, log=lambda m: None)
    assert (third["written"], third["changed"]) == (2, 1)  # flute.wav and the failed file
    assert sum(r["path"] == str(real / "flute.wav") for r in pq.read_table(out).to_pylist()) == 2
    lines: list[str] = []
    with pytest.warns(InstrunetWarning, match=r"old_parts: 3 results written by an earlier instrunet"):
        fourth = instrunet_ray.tag_collection(collection, old, workers=1, log=lines.append)
    assert (fourth["written"], fourth["skipped"], fourth["changed"]) == (
        1,
        3,
        0,
    )  # the old part's results stand
    # an upgrade audit: the folder read as one table took the old part's columns (it sorts
    # first), so every row lost hop, the stamps and damage; the old part now has today's columns
    assert any("1 part of an earlier version given today's columns" in m for m in lines)
    whole = pq.read_table(old)
    assert whole.column_names == table.column_names and whole.num_rows == 4
    assert [r["hop"] for r in whole.to_pylist() if r["error"] is None] == [None] * 3  # (null: not recorded)
    assert {json.loads(r["model"])["name"] for r in whole.to_pylist() if r["error"] is None} == {"family"}
    lines.clear()
    with pytest.warns(InstrunetWarning, match="3 results written by an earlier instrunet"):  # still said
        instrunet_ray.tag_collection(collection, old, workers=1, log=lines.append)  # no second upgrade
    assert not any("earlier version given" in m for m in lines)


def test_bad_arguments_are_clear_errors(installed_registry: object, collection: Path, tmp_path: Path) -> None:
    from instrunet_core.errors import InputError

    with pytest.raises(InputError, match="nope: not found"):
        instrunet_ray.tag_collection(tmp_path / "nope", tmp_path / "o.jsonl", log=lambda m: None)
    with pytest.raises(InputError, match="workers must be"):
        instrunet_ray.tag_collection(collection, tmp_path / "o.jsonl", workers=0, log=lambda m: None)
    with pytest.raises(InputError, match="format must be"):
        instrunet_ray.tag_collection(collection, tmp_path / "o.jsonl", fmt="csv", log=lambda m: None)
    # each used to start Ray and end in an ActorDiedError traceback, a TypeError, or one part per record
    import ray

    started = ray.is_initialized()
    bad = [
        ({"hop": -1}, "hop"),
        ({"part_size": 0}, "part_size must be"),
    ]
    for kwargs, message in bad:
        with pytest.raises(InputError, match=message):
            instrunet_ray.tag_collection(collection, tmp_path / "o.jsonl", log=lambda m: None, **kwargs)
    with pytest.raises(InputError, match="source must be a directory or a list of file paths, got int"):
        instrunet_ray.tag_collection(5, tmp_path / "o.jsonl", log=lambda m: None)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="out must be a path, got NoneType"):
        instrunet_ray.tag_collection(collection, None, log=lambda m: None)  # type: ignore[arg-type]
    assert ray.is_initialized() == started  # refused before Ray


def test_a_model_that_is_not_installed_is_one_error_before_ray(
    installed_registry: object, collection: Path, tmp_path: Path
) -> None:
    """Audit 2 F24: the model is loaded on the driver first, as ``instrunet batch`` does, not in
    the actors (whose failure came back as 214 lines of Ray's ActorDiedError)."""
    from instrunet_core.errors import ModelError

    out = tmp_path / "r.jsonl"
    with pytest.raises(ModelError, match="model 'nope' is not installed"):
        instrunet_ray.tag_collection(collection, out, model="nope", log=lambda m: None)
    assert not out.exists()
    env = {**os.environ, "RAY_ADDRESS": ""}
    p = subprocess.run(
        [sys.executable, "-m", "instrunet_ray.cli", str(collection), "--out", str(out), "--model", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert p.returncode == 1 and not out.exists()
    assert p.stderr.splitlines() == [p.stderr.strip()], p.stderr  # one line
    assert p.stderr.startswith("instrunet-ray: error: model 'nope' is not installed (available: ")
    assert "Traceback" not in p.stderr and "\x1b[" not in p.stderr


def test_an_output_of_the_wrong_kind_is_an_output_error(
    installed_registry: object, collection: Path, tmp_path: Path
) -> None:
    """Audit 2 F26: an output path that is a directory (JSON lines) or a file (Parquet)."""
    from instrunet_core.errors import OutputError

    folder = tmp_path / "isdir.jsonl"
    folder.mkdir()
    with pytest.raises(OutputError, match=r"isdir\.jsonl: is a directory"):
        instrunet_ray.tag_collection(collection, folder, fmt="jsonl", log=lambda m: None)
    file = tmp_path / "parts.txt"
    file.write_text("x")
    with pytest.raises(OutputError, match=r"parts\.txt: not a directory"):
        instrunet_ray.tag_collection(collection, file, fmt="parquet", log=lambda m: None)
    assert file.read_text() == "x"
    # a FIFO as JSON lines: "cannot open the results file: Illegal seek" before; now batch's words
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(
        OutputError, match=r"^\S*fifo\.jsonl: not a regular file \(batch results are read back"
    ):
        instrunet_ray.tag_collection(collection, fifo, log=lambda m: None)


def test_missing_and_empty_files_are_error_records_named_as_batch_names_them(
    local_ray: None, installed_registry: object, tmp_path: Path
) -> None:
    """Audit 2 F25, F26: a listed file that does not exist is its error record (the run goes on,
    it used to abort on Ray's FileNotFoundError); an empty file gets instrunet batch's message."""
    d = tmp_path / "given"
    d.mkdir()
    flute = d / "flute.wav"
    shutil.copy(ROOT / "examples" / "solo_flute.wav", flute)
    (d / "empty.wav").write_bytes(b"")
    missing = str(d / "nope.wav")
    out = tmp_path / "r.jsonl"
    lines: list[str] = []
    s = instrunet_ray.tag_collection(
        [str(flute), missing, str(d / "empty.wav")], out, workers=1, log=lines.append
    )
    assert (s["files"], s["written"], s["errors"]) == (3, 3, 2)
    got = _records(out)
    empty = os.path.realpath(d / "empty.wav")
    assert got[os.path.realpath(missing)]["error"] == f"{os.path.realpath(missing)}: file not found"
    assert "label" in got[os.path.realpath(flute)]
    ref = _batch_reference(d, tmp_path)  # instrunet batch on the same folder
    assert got[empty]["error"] == ref[empty]["error"] == f"{empty}: empty file (0 bytes)"
    assert got[empty]["model"] == ref[empty]["model"]
    assert sum(ln.startswith("instrunet-ray: error: ") for ln in lines) == 2


def test_an_actor_uses_one_pipeline_worker(installed_registry: object) -> None:
    """Ray gives each actor one CPU: its classifier starts no more than one worker thread."""
    from instrunet_ray.engine import TaggingActor

    t = TaggingActor()
    assert t.classifier.workers == 1 and t.model.session_options["intra_op_threads"] == 1


def test_failed_files_are_named(
    local_ray: None, installed_registry: object, collection: Path, tmp_path: Path
) -> None:
    """Issue 24 row 19: a run with a corrupt file says which file and why, as instrunet batch does."""
    lines: list[str] = []
    s = instrunet_ray.tag_collection(collection, tmp_path / "r.jsonl", workers=1, log=lines.append)
    broken = os.path.realpath(collection / "broken.wav")
    errors = [ln for ln in lines if ln.startswith("instrunet-ray: error:")]
    assert s["errors"] == 1 and len(errors) == 1
    assert errors[0].startswith(f"instrunet-ray: error: {broken}: ")


def test_kill_9_of_the_driver_leaves_no_ray_process(tmp_path: Path) -> None:
    """Issue 24 row 19: ``kill -9`` of instrunet-ray (no atexit, no ray.shutdown) used to leave
    Ray's agents and workers running; its watchdog ends every process the driver started."""
    import signal
    import time

    from instrunet_ray._reaper import _stat, descendants

    if not os.path.isdir("/proc/self"):
        pytest.skip("the watchdog reads /proc (Linux)")
    d = tmp_path / "many"
    d.mkdir()
    for i in range(40):
        shutil.copy(ROOT / "examples" / "solo_flute.wav", d / f"f{i:02d}.wav")
    out = tmp_path / "r.jsonl"
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "instrunet_ray.cli", str(d), "--out", str(out), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 240
        while not (out.exists() and out.stat().st_size) and proc.poll() is None:
            assert time.monotonic() < deadline, "no record within 240 s"
            time.sleep(0.5)
        assert proc.poll() is None, "the run ended before it could be killed"
        started = descendants(proc.pid)
        assert len(started) >= 3  # Ray's GCS, raylet, agents, the actor...
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 30
        while True:
            left = [p for p, t in started.items() if (_stat(p) or (0, -1))[1] == t]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not left, f"{len(left)} of the driver's {len(started)} processes still run 30 s after kill -9"
    finally:
        if proc.poll() is None:
            proc.kill()


# --------------------------------------------------------------------------- an audit of the engine


def test_odd_names_and_files_that_vanish_are_their_own_error_records(
    local_ray: None,
    installed_registry: object,
    collection: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name that is not UTF-8 (or holds a newline) and a file deleted during the run aborted
    the whole run (Ray's read tasks); the actors read the files themselves now."""
    import instrunet_ray.engine as engine

    odd = Path(os.fsdecode(bytes(collection) + b"/bad\xffname.wav"))
    shutil.copy(collection / "flute.wav", odd)
    shutil.copy(collection / "flute.wav", collection / "new\nline.wav")
    gone = collection / "gone.wav"
    shutil.copy(collection / "flute.wav", gone)
    real = engine._unreadable

    def vanishing(
        path: str, model: object
    ) -> object:  # the driver saw it; it is gone before an actor reads it
        if path.endswith("gone.wav"):
            gone.unlink()
            return None
        return real(path, model)

    monkeypatch.setattr(engine, "_unreadable", vanishing)
    out = tmp_path / "r.jsonl"
    s = instrunet_ray.tag_collection(collection, out, workers=1, log=lambda m: None)
    recs = {os.path.basename(p): r for p, r in _records(out).items()}
    assert s["written"] == 7 and set(recs) >= {"bad\udcffname.wav", "new\nline.wav", "gone.wav"}
    assert (
        recs["bad\udcffname.wav"]["label"] == recs["flute.wav"]["label"]
        and "error" not in recs["new\nline.wav"]
    )
    assert "file not found" in recs["gone.wav"]["error"]


def test_parquet_outputs_are_named_locked_and_hold_one_model(
    local_ray: None, installed_registry: object, collection: Path, tmp_path: Path
) -> None:
    """`--out results.parquet` wrote JSON lines into that file; a Parquet folder took another
    model's results and a second concurrent run without a word."""
    from instrunet_core.batch import ResultsLocked
    from instrunet_core.errors import InputError

    out = tmp_path / "results.parquet"
    assert instrunet_ray.engine._format_of(out, None) == "parquet"
    sub = tmp_path / "one"
    sub.mkdir()
    shutil.copy(collection / "flute.wav", sub / "flute.wav")
    instrunet_ray.tag_collection(sub, out, model="family-compact", workers=1, log=lambda m: None)
    assert out.is_dir() and list(out.glob("part-*.parquet"))
    with pytest.raises(InputError, match=r"holds results of family-compact .* not of this run's family"):
        instrunet_ray.tag_collection(collection, out, workers=1, log=lambda m: None)
    held = instrunet_ray.engine._Parts(out)
    try:
        with pytest.raises(ResultsLocked, match="another instrunet-ray run is writing this folder"):
            instrunet_ray.tag_collection(
                collection, out, model="family-compact", workers=1, log=lambda m: None
            )
    finally:
        held.close()


def test_the_api_stops_the_ray_instance_it_started(tmp_path: Path) -> None:
    d = tmp_path / "c"
    d.mkdir()
    shutil.copy(ROOT / "examples" / "solo_flute.wav", d / "flute.wav")
    code = (
        "import ray, instrunet_ray; "
        f"instrunet_ray.tag_collection({str(d)!r}, {str(tmp_path / 'r.jsonl')!r}, workers=1, log=lambda m: None); "
        "print('initialized', ray.is_initialized())"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "initialized False" in p.stdout


def test_a_parquet_output_holds_a_name_that_is_not_utf8(
    local_ray: None, installed_registry: object, tmp_path: Path
) -> None:
    """Parquet's strings are UTF-8: one such name aborted the whole run and lost every record."""
    pq = pytest.importorskip("pyarrow.parquet")
    d = tmp_path / "c"
    d.mkdir()
    shutil.copy(ROOT / "examples" / "solo_flute.wav", Path(os.fsdecode(bytes(d) + b"/b\xffname.wav")))
    shutil.copy(ROOT / "examples" / "solo_flute.wav", d / "flute.wav")
    out = tmp_path / "r.parquet"
    s = instrunet_ray.tag_collection(d, out, workers=1, log=lambda m: None)
    assert s["written"] == 2 and s["errors"] == 0
    paths = sorted(os.path.basename(r["path"]) for r in pq.read_table(out).to_pylist())
    assert paths == ["b\\xffname.wav", "flute.wav"]


def test_an_actor_refuses_a_model_other_than_the_drivers(installed_registry: object) -> None:
    """A Ray audit (2026-12-06): the actors resolved the user's --model again on the worker (its
    own default, its newest version) and nothing compared it with the driver's: one output held
    two models' records. The actor loads the driver's model and checks its digest."""
    from instrunet_ray.engine import TaggingActor

    from instrunet_core.errors import ModelError

    t = TaggingActor("family@2.1.0", expect_sha256=instrunet_core_sha("family", "2.1.0"))
    assert (t.model.name, t.model.version) == ("family", "2.1.0")
    with pytest.raises(ModelError, match="not the driver's model"):
        TaggingActor("family-compact", expect_sha256=instrunet_core_sha("family", "2.1.0"))
    # the same ONNX file under another manifest (thresholds, labels, front end) answers otherwise
    import instrunet_core

    digest = instrunet_core.load_model("family", "2.1.0").manifest.raw["manifest_sha256"]
    sha = instrunet_core_sha("family", "2.1.0")
    TaggingActor("family@2.1.0", expect_sha256=sha, expect_manifest=digest)
    with pytest.raises(ModelError, match=r"with another manifest \(manifest_sha256 " + digest[:12]):
        TaggingActor("family@2.1.0", expect_sha256=sha, expect_manifest="0" * 64)


def instrunet_core_sha(name: str, version: str) -> str:
    import instrunet_core

    return instrunet_core.load_model(name, version).manifest.sha256


def test_pipes_addresses_empty_folders_and_parquet_parts_by_time(
    local_ray: None, installed_registry: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ray audit (2026-12-06): a named pipe in a list of paths hung the run; an address that
    does not answer retried for minutes; an empty folder looked like a finished job; a driver
    killed outright lost up to 255 Parquet records held in memory."""
    import time

    from instrunet_ray import engine

    from instrunet_core.errors import InputError

    d = tmp_path / "given"
    d.mkdir()
    flute = d / "flute.wav"
    shutil.copy(ROOT / "examples" / "solo_flute.wav", flute)
    fifo = d / "pipe.wav"
    os.mkfifo(fifo)
    out = tmp_path / "r.jsonl"
    s = instrunet_ray.tag_collection([str(flute), str(fifo)], out, workers=1, log=lambda _: None)
    assert (s["written"], s["errors"]) == (2, 1)
    assert "not a regular file (a named pipe" in _records(out)[os.path.realpath(fifo)]["error"]
    with pytest.raises(InputError, match="cannot reach a Ray cluster there"):
        engine._check_reachable("127.0.0.1:1", timeout=2.0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.warns(RuntimeWarning, match="no audio files under it; nothing written to"):
        s = instrunet_ray.tag_collection(empty, tmp_path / "e.jsonl", workers=1, log=lambda _: None)
    assert s["files"] == 0 and not (tmp_path / "e.jsonl").exists()
    parts = engine._Parts(tmp_path / "pq", part_size=256)
    try:
        parts.append({"path": "a", "label": "x"})
        assert not list((tmp_path / "pq").glob("*.parquet"))
        monkeypatch.setattr(engine, "PART_SECONDS", 0.0)
        time.sleep(0.01)
        parts.append({"path": "b", "label": "y"})
        assert len(list((tmp_path / "pq").glob("*.parquet"))) == 1 and not parts.pending
    finally:
        parts.close()
