"""The library in services: processes (fork, pickling), SIGTERM, a file that changes while it
is analysed (a concurrency audit, 2026-12-06)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, cli_child, tone

import instrunet_core

BIN = Path(sys.executable).parent / "instrunet"


def _classify_in_child(clf: instrunet_core.Classifier, y: np.ndarray, q: multiprocessing.Queue) -> None:
    q.put(len(clf.classify(y, SR)))


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_a_classifier_used_before_a_fork_works_in_the_child(tiny_model) -> None:
    """The child inherited the parent's thread pool without its threads, and its first job
    waited for ever."""
    y = np.tile(tone(4.0), 30)  # 2 minutes: several batches, the worker thread starts
    clf = tiny_model.classifier(workers=1)
    n = len(clf.classify(y, SR))
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: what this tests
        child = ctx.Process(target=_classify_in_child, args=(clf, y, q))
        child.start()
    child.join(60)
    if child.is_alive():  # pragma: no cover - the bug
        child.kill()
        pytest.fail("the forked child hung in the classifier's pipeline")
    assert child.exitcode == 0 and q.get(timeout=5) == n


def test_a_model_pickles_as_its_artifact(tiny_model, tmp_path: Path) -> None:
    """`pickle.dumps(model)` (a process pool's workers) was onnxruntime's TypeError."""
    again = pickle.loads(pickle.dumps(tiny_model))
    assert again.path == tiny_model.path and again.manifest.sha256 == tiny_model.manifest.sha256
    y = tone(3.0)
    np.testing.assert_array_equal(
        again.predict(y, SR).probabilities["brass"], tiny_model.predict(y, SR).probabilities["brass"]
    )


def test_a_file_changed_while_it_is_analysed_is_not_read_again(tiny_model, tmp_path: Path) -> None:
    """A file longer than the evidence store is read again for refinement: replaced meanwhile,
    the analysis mixed two files' audio; deleted, it failed after the first reading."""
    f = tmp_path / "a.wav"
    sf.write(f, tone(60.0), SR)

    real = instrunet_core.orchestration.Classifier.classify

    def classify_then_delete(self, src, *a, **kw):  # type: ignore[no-untyped-def]
        out = real(self, src, *a, **kw)
        os.unlink(src)
        return out

    instrunet_core.orchestration.Classifier.classify = classify_then_delete  # type: ignore[method-assign]
    try:
        with pytest.warns(
            RuntimeWarning, match=r"a\.wav: the file changed \(or was deleted\) while it was analysed"
        ):
            an = instrunet_core.analyze(str(f), model=tiny_model, analyzers=False)
    finally:
        instrunet_core.orchestration.Classifier.classify = real  # type: ignore[method-assign]
    assert an.duration == pytest.approx(60.0, abs=0.01) and an.label == "brass"


@pytest.mark.skipif(sys.platform != "linux", reason="signals")
def test_sigterm_unwinds_the_cli_like_ctrl_c(tiny_model_dir: Path, tmp_path: Path) -> None:
    """SIGTERM (a service manager's stop) killed the command at once: a half-written output's
    temporary file stayed behind. It now unwinds: exit 143, one line, nothing left."""
    f = tmp_path / "long.wav"
    sf.write(f, np.tile(tone(4.0), 450), SR)  # 30 minutes
    out = tmp_path / "out"
    out.mkdir()
    cmd, env = cli_child(tiny_model_dir)
    # SIGHUP too (a terminal closed): it left the temporary file behind (an interruption audit)
    for sig, code, line in (
        (signal.SIGTERM, 143, "instrunet: error: terminated"),
        (signal.SIGHUP, 129, "instrunet: error: terminated (SIGHUP)"),
    ):
        if sig == signal.SIGHUP and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
            # (under nohup the child inherits an ignored SIGHUP, which the command leaves ignored:
            # what nohup asks; the analysis then runs to its end)
            continue
        p = subprocess.Popen(
            [*cmd, "analyze", str(f), "--hop", "0.1", "--json", str(out / "a.json")],  # some seconds of work
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.0)
        p.send_signal(sig)
        err = p.communicate(timeout=60)[1]
        if p.returncode == 0:  # pragma: no cover - the machine finished first
            pytest.skip("the analysis ended before the signal")
        assert p.returncode == code, err
        assert err.strip().splitlines()[-1] == line
        assert os.listdir(out) == []


@pytest.mark.skipif(sys.platform != "linux", reason="pipes")
def test_a_reader_that_stops_early_is_not_a_writers_failure(tiny_model_dir: Path, tmp_path: Path) -> None:
    """An interruption audit (2026-12-06): `analyze --json - | head` said "writer 'json' failed:
    Broken pipe"; a closed stdout stops quietly (exit 1), as the docs say."""
    f = tmp_path / "long.wav"
    sf.write(f, np.tile(tone(4.0), 60), SR)  # 4 minutes: more JSON than a pipe holds
    cmd, env = cli_child(tiny_model_dir)
    for opts in (["--json", "-"], ["--csv", "-"]):
        p = subprocess.Popen(
            [*cmd, "analyze", str(f), "--hop", "0.1", *opts],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert p.stdout is not None
        p.stdout.read(10)
        p.stdout.close()  # the reader goes (as `head -c 10` does)
        p.wait(60)
        assert p.stderr is not None
        err = p.stderr.read().decode()
        assert p.returncode == 1 and "failed" not in err and "Traceback" not in err, err


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="a character device")
def test_stdin_from_a_device_is_read_as_a_stream(tiny_model_dir: Path) -> None:
    """A docs audit (2026-12-06): `classify - < /dev/zero` said "empty stream (0 bytes)": a
    descriptor on a character device says it can seek, and its "end" is 0. It is read as a
    stream is, so the documented refusal from its first MiB is what comes out."""
    cmd, env = cli_child(tiny_model_dir)
    with open("/dev/zero", "rb") as zero:
        r = subprocess.run(
            [*cmd, "classify", "-"], stdin=zero, env=env, capture_output=True, text=True, timeout=60
        )
    assert r.returncode == 1
    assert (
        r.stderr.strip() == "instrunet: error: -: not an audio file (its first 1024 KiB hold no audio header)"
    )
    with open("/dev/null", "rb") as null:
        r = subprocess.run(
            [*cmd, "classify", "-"], stdin=null, env=env, capture_output=True, text=True, timeout=60
        )
    assert r.returncode == 1 and r.stderr.strip() == "instrunet: error: -: empty stream (0 bytes)"


def test_a_ctrl_c_while_the_package_is_imported_is_one_line() -> None:
    """A Ctrl-C in the command's first few tenths of a second (numpy and onnxruntime still being
    imported) printed an import traceback: the console script's entry module imports the package
    itself and ends like any interruption, exit 130 and one line. The import is made to be
    interrupted, not raced: a finder raises KeyboardInterrupt when ``instrunet_core.cli`` is
    looked up."""
    code = (
        "import sys\n"
        "class Stop:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'instrunet_core.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Stop())\n"
        "import _instrunet_cli\n"
        "assert 'numpy' not in sys.modules  # the entry module itself starts light\n"
        "sys.exit(_instrunet_cli.main(['classify', 'x.wav']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 130, r.stderr
    assert r.stderr == "instrunet: error: interrupted\n"
    assert r.stdout == ""
    # and the installed command is that module's
    assert "from _instrunet_cli import main" in BIN.read_text()


def _registry_in_child(q: multiprocessing.Queue) -> None:
    from instrunet_core import registry

    q.put(type(registry.get_registry()).__name__)


def _torn_classifier_in_child(
    clf: instrunet_core.Classifier, y: np.ndarray, q: multiprocessing.Queue
) -> None:
    out = []
    for call in (clf.prediction, lambda: clf.classify(y, SR)):
        try:
            call()
            out.append("ran")
        except instrunet_core.errors.ConcurrentUseError as e:
            out.append(str(e))
    clf.reset()  # taken: the stream starts again, whole
    out.append(len(clf.classify(y, SR)))
    q.put(out)


def _forked(target: object, *args: object) -> object:
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: what this tests
        child = ctx.Process(target=target, args=(*args, q))
        child.start()
    child.join(60)
    if child.is_alive():  # pragma: no cover - the bug
        child.kill()
        pytest.fail("the forked child hung")
    assert child.exitcode == 0
    return q.get(timeout=5)


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_a_fork_while_the_registry_is_being_built_does_not_hang_the_child() -> None:
    """A host audit (2026-12-06): a process forked while another thread was in its first
    `load_model()` (a warm-up thread beside a fork-based `multiprocessing.Pool`) copied the
    registry's lock held, by a thread the child does not have: every child waited for ever."""
    from instrunet_core import registry

    registry._REGISTRY = None
    with registry._LOCK:  # held, as the warm-up thread held it, when the process forks
        assert _forked(_registry_in_child) == "Registry"


def _print_route_in_child(q: multiprocessing.Queue) -> None:
    from instrunet_core import _analyzer_threads

    with _analyzer_threads._route_lock:  # the parent's thread holds it: a new one here
        q.put("routed")


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_a_fork_while_plugin_prints_are_routed_does_not_hang_the_child() -> None:
    """The print routing's lock, held at the fork by another thread, is one of the module locks
    made anew in the child (one mechanism for both, ``instrunet_core._forksafe``)."""
    from instrunet_core import _analyzer_threads

    with _analyzer_threads._route_lock:
        assert _forked(_print_route_in_child) == "routed"


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_a_classifier_fed_while_the_process_forks_says_so_in_the_child(tiny_model) -> None:
    """Its readers waited for ever on the copied locks, and its feeders blamed a thread the
    child does not have. A stream being fed at the fork is half updated in the child: every call
    but reset() says so; after reset() it works."""
    import threading

    y = tone(4.0)
    clf = tiny_model.classifier()
    clf.classify(y, SR)
    inside, done = threading.Event(), threading.Event()

    def feed() -> None:
        with clf._owner.feeding("process"):  # a host thread in the middle of feeding it
            inside.set()
            done.wait(30)

    t = threading.Thread(target=feed, name="feeder")
    t.start()
    inside.wait(10)
    try:
        out = _forked(_torn_classifier_in_child, clf, y)
    finally:
        done.set()
        t.join()
    assert isinstance(out, list) and len(out) == 3
    for said in out[:2]:
        assert "was being fed by thread 'feeder' when the process forked" in said and "reset()" in said
    assert out[2] == len(clf.classify(y, SR))


def test_an_analyzer_left_behind_with_a_pool_thread_does_not_hang_the_command(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A plugin audit (2026-12-06): an analyzer stuck in a call on its own ThreadPoolExecutor
    (an HTTP client, a model server) was left behind at its time limit, the report printed, and
    then the process never exited: Python waits for pool workers at exit. The command now ends
    with its status once its output is written."""
    f = tmp_path / "a.wav"
    sf.write(f, tone(3.0), SR)
    code = (
        "import sys, time, threading\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from conftest import ModelPlugin\n"
        "from pathlib import Path\n"
        "from instrunet_core import hookimpl, registry as P\n"
        "pool = ThreadPoolExecutor(1)\n"
        "class Stuck:\n"
        "    @hookimpl\n"
        "    def instrunet_register_analyzers(self, register):\n"
        "        register('stuck', lambda ctx: pool.submit(time.sleep, 3600).result())\n"
        f"P._REGISTRY = P.build_registry(extra_plugins=[('t', ModelPlugin(Path({str(tiny_model_dir)!r}), default=False)), ('stuck', Stuck())], entry_points=False)\n"
        "import _instrunet_cli\n"
        "sys.exit(_instrunet_cli.main(sys.argv[1:]))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parent),
        "INSTRUNET_PLUGINS": "",
        "INSTRUNET_DEFAULT_MODEL": "tiny",
    }
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-c", code, "analyze", str(f), "--analyzer-timeout", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "stuck" in r.stdout and "left behind" in r.stdout and time.monotonic() - t0 < 60
