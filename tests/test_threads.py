"""Thread control: the library leaves numpy's BLAS settings to the host; onnxruntime options."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from instrunet_core.errors import InputError
from instrunet_core.features import batch_features
from instrunet_core.model import load_model
from instrunet_core.session import DEFAULT_INTRA_OP_THREADS

threadpoolctl = pytest.importorskip("threadpoolctl")
FAMILY = Path(__file__).resolve().parent.parent / "instrunet_core" / "models" / "family" / "1.0.0"


def _blas_threads() -> list[int]:
    """Threads of numpy's own BLAS (the one the front end's matrix product uses; scipy and others
    may load their own, which the library has no reason to touch)."""
    return [
        p["num_threads"]
        for p in threadpoolctl.threadpool_info()
        if p["user_api"] == "blas" and "numpy" in p["filepath"]
    ]


@pytest.fixture
def host_blas_threads():
    """The host application sets numpy's BLAS to 2 threads; the test checks it is left so."""
    if not _blas_threads():
        pytest.skip("numpy has no BLAS thread pool here")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        yield _blas_threads()


def test_the_front_end_leaves_the_hosts_blas_setting(host_blas_threads: list[int]) -> None:
    batch_features(np.zeros((3, 65024), np.float32))
    assert _blas_threads() == host_blas_threads


def test_concurrent_front_ends_restore_the_host_setting(host_blas_threads: list[int]) -> None:
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((4, 65024))).astype(np.float32)
    ref = batch_features(x)
    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda _: batch_features(x), range(16)))
    for o in outs:
        np.testing.assert_allclose(o, ref, atol=1e-6)
    assert _blas_threads() == host_blas_threads


def test_onnxruntime_thread_options() -> None:
    m = load_model(FAMILY)
    assert m.session_options["intra_op_threads"] == DEFAULT_INTRA_OP_THREADS == 1
    assert m.session_options["inter_op_threads"] == 1
    m2 = load_model(FAMILY, intra_op_threads=2, inter_op_threads=1)
    assert m2.session_options["intra_op_threads"] == 2
    x = batch_features(np.zeros((2, 65024), np.float32) + np.float32(0.01))
    np.testing.assert_allclose(m.predict_features(x), m2.predict_features(x), atol=1e-6)
    assert load_model(FAMILY, intra_op_threads=0).session_options["intra_op_threads"] == 0
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(InputError, match="intra_op_threads must be an int from 0 to 256"):
            load_model(FAMILY, intra_op_threads=bad)  # type: ignore[arg-type]


# Batches on the worker threads compute their shared STFT frames again, so the mel projection
# (numpy's BLAS) sees other numbers of rows than on the synchronous path; OpenBLAS's small-matrix
# kernels (its Haswell ones among them) round a row's product differently with the rows in the
# call. The same windows therefore give the same probabilities within float32 rounding.
ATOL = 1e-5


def _same_prediction(a, b) -> None:  # type: ignore[no-untyped-def]
    assert (a.label, a.n_windows, a.silent, a.low_evidence) == (
        b.label,
        b.n_windows,
        b.silent,
        b.low_evidence,
    )
    assert [t[0] for t in a.top] == [t[0] for t in b.top]
    assert a.confidence == pytest.approx(b.confidence, abs=ATOL)
    assert a.probabilities == pytest.approx(b.probabilities, abs=ATOL)


def _spin_entries(m) -> set[str]:  # type: ignore[no-untyped-def]
    so = m._session.get_session_options()
    return {so.get_session_config_entry(f"session.{k}.allow_spinning") for k in ("intra_op", "inter_op")}


def test_spinning_option_reaches_onnxruntime() -> None:
    """Idle-thread spinning is off unless asked for; on, it changes speed, not results."""
    from instrunet_core import Classifier, RuntimeOptions

    quiet = load_model(FAMILY, intra_op_threads=2)
    assert quiet.session_options["spinning"] is False and _spin_entries(quiet) == {"0"}
    spin = load_model(FAMILY, intra_op_threads=2, spinning=True)
    assert spin.session_options["spinning"] is True and _spin_entries(spin) == {"1"}
    rng = np.random.default_rng(1)
    x = batch_features((0.1 * rng.standard_normal((3, 65024))).astype(np.float32))
    np.testing.assert_allclose(spin.predict_features(x), quiet.predict_features(x), atol=1e-6)
    clf = Classifier(FAMILY, options=RuntimeOptions(spinning=True))
    assert clf.model.session_options["spinning"] is True and _spin_entries(clf.model) == {"1"}
    with pytest.raises(InputError, match="spinning must be True or False"):
        load_model(FAMILY, spinning="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_pipelined_classify_gives_identical_results(tmp_path: Path, workers: int) -> None:
    """classify() hands whole batches (frames, features, onnxruntime) to ``workers`` threads
    (pipeline=True): same windows, same numbers (within float32 rounding, ``ATOL``) as the
    synchronous path."""
    from instrunet_core import Classifier
    from instrunet_core.errors import DecodeError

    clip = Path(__file__).resolve().parent.parent / "examples" / "ensemble.flac"
    model = load_model(FAMILY)
    a = Classifier(model, batch_size=4, workers=workers)  # several batches in flight
    b = Classifier(model, batch_size=4, pipeline=False)
    assert a.pipeline and not b.pipeline
    wa, wb = a.classify(clip), b.classify(clip)
    assert len(wa) == len(wb) > 8
    for x, y in zip(wa, wb, strict=True):
        assert (x.index, x.start, x.end, x.label, x.silent) == (y.index, y.start, y.end, y.label, y.silent)
        np.testing.assert_allclose(x.probabilities, y.probabilities, rtol=0, atol=ATOL)
        assert x.rms_db == y.rms_db
    _same_prediction(a.prediction(), b.prediction())
    assert a._pipe._executor is not None and a._pipe._executor._max_workers == workers
    # a file cut short is classified as far as it decodes, with batches in flight
    cut = tmp_path / "cut.flac"
    cut.write_bytes(clip.read_bytes()[: len(clip.read_bytes()) // 2])
    with pytest.warns(RuntimeWarning, match="decoding failed after"):
        part = a.classify(cut)
    assert 0 < len(part) < len(wb) and a.damage
    # an error in the middle of a file (a NaN sample) leaves the classifier usable
    import soundfile as sf

    y, sr = sf.read(clip, dtype="float32")
    y[len(y) // 2] = np.nan
    bad = tmp_path / "nan.wav"
    sf.write(bad, y, sr, subtype="FLOAT")
    with pytest.raises(DecodeError, match="NaN"):
        a.classify(bad)
    again = a.classify(clip)
    assert [w.index for w in again] == [w.index for w in wb]
    np.testing.assert_allclose(
        [w.probabilities for w in again], [w.probabilities for w in wb], rtol=0, atol=ATOL
    )


def test_calling_thread_computes_when_the_workers_are_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """With every worker busy and one batch waiting, classify() computes the next batch on the
    calling thread instead of waiting; the results stay in order and the same (within float32
    rounding, ``ATOL``)."""

    from instrunet_core import Classifier, inference

    rng = np.random.default_rng(3)
    y = (0.1 * rng.standard_normal(60 * 22050)).astype(np.float32)
    model = load_model(FAMILY)
    ref = Classifier(model, batch_size=2, pipeline=False).classify(y, 22050)
    main = threading.current_thread()
    ran_here = threading.Event()
    where: list[str] = []
    make_job = inference.job_of

    def job_of(make_input, run):  # type: ignore[no-untyped-def]
        job = make_job(make_input, run)

        def gated():  # type: ignore[no-untyped-def]
            if threading.current_thread() is main:
                where.append("caller")
                ran_here.set()
            else:
                where.append("worker")
                assert ran_here.wait(30), "the calling thread never computed a batch itself"
            return job()

        return gated

    monkeypatch.setattr(inference, "job_of", job_of)
    got = Classifier(model, batch_size=2, workers=1).classify(y, 22050)
    assert "caller" in where and "worker" in where
    assert [(w.index, w.label) for w in got] == [(w.index, w.label) for w in ref]
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=0, atol=ATOL)


def test_workers_option() -> None:
    from instrunet_core import Classifier
    from instrunet_core.scheduler import MAX_DEFAULT_WORKERS, default_workers

    n = default_workers()
    assert 1 <= n <= MAX_DEFAULT_WORKERS and n <= max(1, (os.cpu_count() or 1) - 1)
    model = load_model(FAMILY)
    assert Classifier(model).workers == n and Classifier(model, workers=3).workers == 3
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(InputError, match="workers must be an int from 1 to 256"):
            Classifier(model, workers=bad)  # type: ignore[arg-type]


def _sound_power(seg: np.ndarray) -> float:
    """The level's definition, written out independently: each 512-sample block (the last may
    be shorter) minus its least-squares straight line, mean square over all the samples."""
    total = 0.0
    for i in range(0, len(seg), 512):
        x = seg[i : i + 512].astype(np.float64)
        if len(x) >= 3:
            t = np.arange(len(x), dtype=np.float64)
            x = x - np.polyval(np.polyfit(t, x, 1), t)
            total += float(np.sum(x**2))
    return total / len(seg)


def test_window_levels_are_the_rms_of_their_samples() -> None:
    """Each window's rms_db (taken from the 512-sample evidence blocks when the window is made of
    whole blocks) equals the RMS of its own samples' sound (each block about its straight line:
    no DC, no drift), the zero-padded last window's too."""
    from instrunet_core import Classifier

    rng = np.random.default_rng(3)
    sr = 22050
    n = int(9.3 * sr)
    y = (rng.standard_normal(n) * np.linspace(1e-4, 0.5, n) ** 2).astype(np.float32)
    y[2 * sr : 3 * sr] = 0.0
    model = load_model(FAMILY)
    for hop in (0.5, 1.5, 4.0):
        for clf in (Classifier(model, hop=hop, batch_size=2), Classifier(model, hop=hop, pipeline=False)):
            wins = clf.classify(y, sr)
            assert (
                wins[-1].n_samples < model.front_end.window_samples
            )  # the padded last window is checked too
            for w in wins:
                s = int(round(w.start * sr))
                want = 10 * np.log10(max(_sound_power(y[s : s + w.n_samples]), 1e-20))
                assert w.rms_db == pytest.approx(want, abs=1e-4), (hop, w.index)  # float32 sums


def test_one_batch_runs_on_the_calling_thread() -> None:
    """A source that fits in one batch (a clip through Model.predict) never starts the worker
    thread; a longer one does, and both give the windows of the synchronous path."""

    from instrunet_core import Classifier

    clip = Path(__file__).resolve().parent.parent / "examples" / "ensemble.flac"
    model = load_model(FAMILY)
    t = np.arange(3 * 44100) / 44100
    y = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    before = {th.name for th in threading.enumerate()}
    short = Classifier(model)
    ws = short.classify(y, 44100)
    assert len(ws) == 2 and short._pipe._executor is None
    assert not {th.name for th in threading.enumerate()} - before
    sync = Classifier(model, pipeline=False)
    np.testing.assert_array_equal(
        [w.probabilities for w in ws], [w.probabilities for w in sync.classify(y, 44100)]
    )
    assert model.predict(y, 44100) == sync.prediction()
    assert not {th.name for th in threading.enumerate()} - before
    long = Classifier(model, batch_size=2)
    wl = long.classify(clip)
    assert len(wl) > 4 and long._pipe._executor is not None  # several batches: the worker overlaps them


def test_cli_providers_and_threads_reach_the_analysis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--providers cuda without CUDA: one ``instrunet: warning:`` line (not a Python warning with a
    source line), the CPU runs it, and the JSON says which provider ran."""
    import json
    import warnings

    import onnxruntime as ort

    from instrunet_core.cli import main

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here; the fallback is what this test checks")
    clip = Path(__file__).resolve().parent.parent / "examples" / "solo_flute.wav"
    out = tmp_path / "a.json"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        rc = main(
            [
                "analyze",
                str(clip),
                "--model",
                str(FAMILY),
                "--providers",
                "cuda,cpu",
                "--threads",
                "2",
                "--json",
                str(out),
            ]
        )
    assert rc == 0
    err = capsys.readouterr().err
    assert "instrunet: warning: execution provider CUDAExecutionProvider is not available" in err
    assert not any("CUDAExecutionProvider" in str(x.message) for x in w)  # printed, not raised
    model = json.loads(out.read_text())["model"]
    assert model["provider"] == "CPUExecutionProvider" and model["input"] == "logmel"
    with pytest.raises(SystemExit) as e:  # a bad command line: exit 2
        main(["classify", str(clip), "--model", str(FAMILY), "--threads", "-1"])
    assert e.value.code == 2
    assert "threads must be an int from 0 to 256, got -1" in capsys.readouterr().err


def test_cli_workers_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--workers reaches the pipeline: the same analysis with 1 and 3 workers; 0 is a usage error."""
    import json

    from instrunet_core.cli import main

    clip = Path(__file__).resolve().parent.parent / "examples" / "ensemble.flac"
    outs = []
    for w in ("1", "3"):
        out = tmp_path / f"a{w}.json"
        assert main(["analyze", str(clip), "--model", str(FAMILY), "--workers", w, "--json", str(out)]) == 0
        outs.append(json.loads(out.read_text()))
    assert outs[0]["timeline"] == outs[1]["timeline"] and len(outs[0]["timeline"]) > 8
    with pytest.raises(SystemExit) as e:  # a bad command line: exit 2
        main(["classify", str(clip), "--model", str(FAMILY), "--workers", "0"])
    assert e.value.code == 2
    assert "workers must be an int from 1 to 256, got 0" in capsys.readouterr().err


# ---------------------------------------------------------------- a host-application audit (2026-12-06)
ROOT = Path(__file__).resolve().parent.parent


def test_work_on_a_host_thread_finishes_after_the_main_thread_returns(tmp_path: Path) -> None:
    """CPython shuts thread-pool executors down before it joins non-daemon threads (and before
    atexit handlers): an analysis on such a thread raised "cannot schedule new futures after
    interpreter shutdown". The calling thread now does the jobs it cannot hand out."""
    import subprocess
    import sys

    script = tmp_path / "host.py"
    script.write_text(
        "import atexit, threading, instrunet_core as inet\n"
        f"path = {str(ROOT / 'examples' / 'ensemble.flac')!r}\n"
        "y = __import__('numpy').resize(__import__('soundfile').read(path, dtype='float32')[0], (60 * 44100, 2))\n"
        "def work(tag):\n"
        "    a = inet.analyze(y, 44100, workers=2)\n"
        "    print(tag, a.label, len(a.timeline), flush=True)\n"
        "threading.Thread(target=work, args=('thread',)).start()\n"
        "atexit.register(work, 'atexit')\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = sorted(out.stdout.split("\n")[:2])
    assert [ln.split()[0] for ln in lines] == ["atexit", "thread"], out.stdout + out.stderr[-2000:]
    assert lines[0].split()[1:] == lines[1].split()[1:]
    assert "RuntimeError" not in out.stderr


def test_plugin_prints_leave_other_threads_stdout_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry sent plugin prints to stderr with contextlib.redirect_stdout, which swaps
    sys.stdout for every thread: a host's other threads printed to stderr meanwhile, and two
    threads building registries at once left sys.stdout as stderr for good."""
    import io
    import sys

    from instrunet_core.registry import build_registry, plugin_stdout

    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    inside, printed = threading.Event(), threading.Event()

    def other() -> None:
        inside.wait(10)
        print("host line")
        printed.set()

    t = threading.Thread(target=other)
    t.start()
    with plugin_stdout():
        print("plugin line")
        inside.set()
        printed.wait(10)
    t.join(10)
    assert out.getvalue() == "host line\n" and err.getvalue() == "plugin line\n"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: build_registry(), range(8)))
    assert sys.stdout is out


def test_level_db_waits_for_the_feeding_call() -> None:
    """Read from a UI thread while the stream was trimmed, level_db raised "internal: item N was
    dropped": it now waits for the feeding call, as results and analysis() do."""
    from instrunet_core import Classifier

    clf = Classifier(load_model(FAMILY), keep=4)
    clf.process(np.zeros(22050, np.float32), 22050)
    got: list[int] = []
    with clf._owner.feeding("test"):  # a feeding call in progress on this thread
        reader = threading.Thread(target=lambda: got.append(len(clf.level_db())))
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and not got  # it waits
    reader.join(10)
    assert got == [len(clf.level_db())] and got[0] > 0


def test_a_host_that_raises_on_floating_point_errors_gets_the_same_answers() -> None:
    """Under np.seterr(all="raise") a decaying note's tail raised a bare FloatingPointError
    (underflow) from the front end; the library's arithmetic runs under its own errstate."""
    import instrunet_core as inet

    t = np.arange(6 * 44100) / 44100
    note = (0.5 * np.sin(2 * np.pi * 440 * t) * np.exp(-8 * t)).astype(np.float32)
    model = load_model(FAMILY)
    want = model.predict(note, 44100).probabilities
    old = np.seterr(all="raise")
    try:
        got = model.predict(note, 44100).probabilities
        inet.analyze(np.full(44100, 1e-40, np.float32), 44100, model=model, analyzers=False)
        assert np.geterr()["under"] == "raise"  # the host's setting is back
    finally:
        np.seterr(**old)
    assert got == want


def test_close_ends_a_classifiers_worker_threads() -> None:
    """A finished classifier kept its idle worker threads and their scratch buffers (about
    20 MB each with four workers) with no way to let them go."""
    import time

    from instrunet_core import Classifier

    y = np.random.default_rng(0).standard_normal(60 * 22050).astype(np.float32) * 0.1

    def batch_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("instrunet-batch")}

    before = batch_threads()
    with Classifier(load_model(FAMILY), workers=2) as clf:
        first = [w.probabilities for w in clf.classify(y, 22050)]
        assert batch_threads() - before
    for _ in range(100):
        if not batch_threads() - before:
            break
        time.sleep(0.05)
    assert not batch_threads() - before
    again = [w.probabilities for w in clf.classify(y, 22050)]  # usable again: new threads
    clf.close()
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_a_failed_call_kept_by_its_host_holds_no_threads_or_buffers() -> None:
    """``analyze``, ``predict``, ``embed`` and ``predict_batch`` made a classifier and never
    closed it: a failed call's traceback, kept by the host (a ``Future`` keeps its exception),
    kept the classifier's worker threads and buffers alive (ten cancelled ``analyze`` jobs held
    175 MB and ten threads; a long-running host audit). They close it however the call ends."""
    import time

    import instrunet_core

    model = load_model(FAMILY.parent / "2.1.0")  # the default: it has an embedding output
    y = np.random.default_rng(1).standard_normal(60 * 22050).astype(np.float32) * 0.1
    bad = y.copy()
    bad[50 * 22050] = np.nan  # found when that block is read, after batches ran on the workers

    def batch_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("instrunet-batch")}

    def stop(step: str, fraction: float) -> None:
        raise RuntimeError("stopped by the host")

    before = batch_threads()
    kept: list[BaseException] = []
    calls = [
        lambda: instrunet_core.analyze(y, 22050, model=model, analyzers=False, workers=2, progress=stop),
        lambda: instrunet_core.analyze(bad, 22050, model=model, analyzers=False, workers=2),
        lambda: model.predict(bad, 22050),
        lambda: model.embed(bad, 22050, workers=2),
        lambda: model.predict_batch([y, bad], 22050),
    ]
    for call in calls:
        try:
            call()
        except Exception as e:  # noqa: BLE001 - kept as a host keeps a failed job's exception
            kept.append(e)
    assert len(kept) == len(calls) and all(e.__traceback__ is not None for e in kept)
    for _ in range(100):
        if not batch_threads() - before:
            break
        time.sleep(0.05)
    assert not batch_threads() - before  # nothing alive for the kept tracebacks' sake
    # and a call that succeeds still returns its result (the classifier is closed after it)
    assert model.predict(y[: 5 * 22050], 22050).label == "other"  # white noise: none of the eight
    assert model.embed(y[: 5 * 22050], 22050).vector.shape == (model.embedding_dim,)


def test_release_scratch_lets_a_threads_buffers_go() -> None:
    """Each thread that runs the front end keeps its FFT scratch (about 6.5 MB) until it ends; a
    host with a pool of long-lived threads can let a thread's go (long-running host audit)."""
    from instrunet_core.features import release_scratch

    model = load_model(FAMILY)
    y = np.random.default_rng(2).standard_normal(22050).astype(np.float32) * 0.1
    want = model.predict(y, 22050).probabilities

    def in_a_thread() -> tuple[int, int, dict[str, float]]:
        model.predict(y, 22050)
        freed = release_scratch()
        again = release_scratch()
        return freed, again, model.predict(y, 22050).probabilities  # made again as needed

    with ThreadPoolExecutor(1) as pool:
        freed, again, got = pool.submit(in_a_thread).result()
    assert freed > 4_000_000 and again == 0 and got == want
