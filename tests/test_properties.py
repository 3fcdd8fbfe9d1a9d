"""Property-based tests (hypothesis, derandomized) and a seeded decoder fuzz pass.

For any rate, length, channel count, dtype or manifest: no crash other than an
``InstrunetError``, no hang, no NaN, and no allocation beyond a bound. Every test here is
seeded (``derandomize=True`` / a fixed ``numpy`` seed) and bounded in examples and time, so
the module runs in CI in well under a minute.
"""

from __future__ import annotations

import io
import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from conftest import SR

from instrunet_core import InstrunetError
from instrunet_core.audio import MP3_SUPPORTED, iter_blocks, load_audio
from instrunet_core.errors import InputError, ModelError
from instrunet_core.features import (
    DEFAULT_FRONT_END,
    FRONT_END_LIMITS,
    FrontEnd,
    batch_features,
    logmel,
    window_audio,
)
from instrunet_core.inputs import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from instrunet_core.manifest import seal_manifest, validate_manifest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parent.parent


def _props(max_examples: int, *checks: HealthCheck) -> settings:
    """Reproducible settings (derandomized, no example database, no deadline) running
    ``max_examples`` examples, with the too-slow health check and ``checks`` suppressed."""
    return settings(
        derandomize=True,
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, *checks],
    )


PROPS = _props(60, HealthCheck.data_too_large)


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail (rather than hang CI) when the block runs longer than ``seconds``."""

    def boom(*_: Any) -> None:
        raise TimeoutError(f"took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- arrays: rates, lengths, channels, dtypes
DTYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "float16",
    "float32",
    "float64",
    "bool",
    "complex64",
    "object",
]
rates = st.one_of(
    st.integers(-10, 2 * MAX_SAMPLE_RATE),
    st.sampled_from([1, 999, 1000, 8000, 11025, 22050, 44100, 48000, 96000, 192000, MAX_SAMPLE_RATE]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
)


def _array(dtype: str, n: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n,) if channels == 0 else (n, channels)
    if dtype == "object":
        return np.empty(shape, dtype=object)
    x = rng.uniform(-1, 1, shape)
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return (info.min + (x + 1) / 2 * (float(info.max) - info.min)).astype(dt)
    return x.astype(dt)


@PROPS
@given(
    rate=rates,
    n=st.integers(0, 4000),
    channels=st.integers(0, 6),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
    transpose=st.booleans(),
)
def test_any_array_decodes_or_is_refused(
    rate: Any, n: int, channels: int, dtype: str, seed: int, transpose: bool
) -> None:
    y = _array(dtype, n, channels, seed)
    if transpose and y.ndim == 2:
        y = y.T
    with time_limit(10):
        try:
            out = load_audio(y, rate)
        except InputError:
            return
    assert out.dtype == np.float32 and out.ndim == 1 and np.all(np.isfinite(out))
    assert np.abs(out).max(initial=0) <= 4.0  # resampling may ring a little above full scale, never explode
    r = int(rate)
    assert MIN_SAMPLE_RATE <= r <= MAX_SAMPLE_RATE
    assert abs(len(out) - n * SR / r) <= 2 + SR / r  # the length follows the rate: bounded allocation


@_props(40, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture)
@given(
    # usable values drawn as often as hostile ones, so that both sides are exercised
    rate=st.one_of(
        st.sampled_from([1000, 8000, 22050, 44100, 96000]), st.sampled_from([22050, 44100]), rates
    ),
    n=st.integers(0, 20_000),
    channels=st.integers(0, 4),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
    hop=st.one_of(
        st.none(), st.none(), st.floats(0.01, 5.0), st.floats(0.0, 5.0), st.sampled_from([1e-6, True])
    ),
)
def test_any_array_through_the_classifier(
    tiny_model_template: Path, rate: Any, n: int, channels: int, dtype: str, seed: int, hop: Any
) -> None:
    """The one inference path (Model.predict → Classifier): an answer with finite probabilities, or an InputError."""
    from instrunet_core import load_model

    model = _MODELS.get("tiny") or _MODELS.setdefault("tiny", load_model(tiny_model_template))
    y = _array(dtype, n, channels, seed)
    with time_limit(20):
        try:
            pred = model.predict(y, rate, hop=hop)
        except InputError:
            _OUTCOMES.append("refused")
            return
    assert all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in pred.probabilities.values())
    assert 0.0 <= pred.confidence <= 1.0 and pred.n_windows >= 1
    _OUTCOMES.append("answered")


_OUTCOMES: list[str] = []


def test_classifier_property_test_answered_some() -> None:
    """The property test above must not pass by refusing everything (it once answered 0 of 40)."""
    if not _OUTCOMES:
        pytest.skip("run together with test_any_array_through_the_classifier")
    assert _OUTCOMES.count("answered") >= 5 and _OUTCOMES.count("refused") >= 5


_MODELS: dict[str, Any] = {}


@PROPS
@given(n=st.integers(1, 70_000), hop=st.integers(221, 70_000), seed=st.integers(0, 2**16))
def test_windows_cover_any_length(n: int, hop: int, seed: int) -> None:
    y = np.random.default_rng(seed).uniform(-1, 1, n).astype(np.float32)
    win = DEFAULT_FRONT_END.window_samples
    starts: list[int] = []
    for s, w in window_audio(iter_blocks(y, SR), hop=hop / SR, batch_size=4):
        assert w.shape == (len(s), win) and len(s) <= 4 and np.all(np.isfinite(w))
        starts.extend(s.tolist())
    snapped = max(1, round(hop / 512)) * 512
    assert starts[0] == 0 and starts == [i * snapped for i in range(len(starts))]
    assert starts[-1] < n  # no window starts past the end
    if snapped <= win:  # windows that overlap or touch cover the audio to its end
        assert n <= starts[-1] + win


# ---------------------------------------------------------------- the front end
front_ends = st.builds(
    lambda sr, n_fft_exp, hop_div, mel_frac, frames, top_db, fmin_frac, fmax_frac: dict(
        sample_rate=sr,
        n_fft=2**n_fft_exp,
        hop_length=max(1, 2**n_fft_exp // hop_div),
        n_mels=max(1, int(mel_frac * (2**n_fft_exp // 2 + 1))),
        frames=frames,
        top_db=top_db,
        fmin=fmin_frac * sr / 2,
        fmax=None if fmax_frac is None else fmin_frac * sr / 2 + fmax_frac * (1 - fmin_frac) * sr / 2,
    ),
    sr=st.integers(*map(int, FRONT_END_LIMITS["sample_rate"])),
    n_fft_exp=st.integers(5, 11),
    hop_div=st.sampled_from([1, 2, 4, 8]),
    mel_frac=st.floats(0.01, 1.0),
    frames=st.integers(1, 64),
    top_db=st.floats(*FRONT_END_LIMITS["top_db"]),
    fmin_frac=st.floats(0.0, 0.9),
    fmax_frac=st.one_of(st.none(), st.floats(0.05, 1.0)),
)


@PROPS
@given(
    params=front_ends,
    n=st.integers(0, 5000),
    seed=st.integers(0, 2**16),
    level=st.sampled_from([0.0, 1e-9, 0.5]),
)
def test_front_end_output_finite_and_in_range(params: dict, n: int, seed: int, level: float) -> None:
    try:
        fe = FrontEnd(**params)
    except InputError:
        return  # e.g. fmax rounding onto fmin: refused, not crashed
    y = (level * np.random.default_rng(seed).uniform(-1, 1, n)).astype(np.float32)
    S = logmel(y, fe=fe)
    assert S.shape == (fe.n_mels, 1 + n // fe.hop_length)
    X = batch_features(y[None, :], fe=fe)
    assert X.shape == (1, fe.n_mels, fe.frames)
    for a in (S, X):
        assert np.all(np.isfinite(a)) and a.min(initial=0) >= 0 and a.max(initial=0) <= 1


json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=8)
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
FE_KEYS = [
    "sample_rate",
    "n_fft",
    "hop_length",
    "n_mels",
    "fmin",
    "fmax",
    "frames",
    "top_db",
    "normalization",
    "window_samples",
]


@PROPS
@given(key=st.sampled_from(FE_KEYS), value=json_values)
def test_front_end_from_any_json_value(key: str, value: Any) -> None:
    d = FrontEnd().to_dict()
    d[key] = value
    try:
        fe = FrontEnd.from_dict(d)
    except InputError as e:
        assert len(str(e)) < 400
        return
    assert fe.window_samples <= 60 * SR


# ---------------------------------------------------------------- manifests
def _valid_manifest() -> dict[str, Any]:
    return json.loads((ROOT / "instrunet_core" / "models" / "family" / "1.0.0" / "manifest.json").read_text())


PATHS = [
    ("name",),
    ("version",),
    ("task",),
    ("labels",),
    ("labels", 0),
    ("input",),
    ("input", "shape"),
    ("input", "shape", 1),
    ("output", "shape", 1),
    ("output", "activation"),
    ("front_end",),
    ("front_end", "n_fft"),
    ("front_end", "fmax"),
    ("thresholds",),
    ("file",),
    ("sha256",),
    ("metrics",),
    ("parity", "max_abs_diff"),
    ("references",),
    ("schema",),
    ("manifest_sha256",),
    ("bogus",),
]


@PROPS
@given(path=st.sampled_from(PATHS), value=json_values, seal=st.booleans())
def test_any_manifest_edit_is_a_model_error_or_valid(path: tuple, value: Any, seal: bool) -> None:
    data = _valid_manifest()
    original = json.dumps(data, sort_keys=True)
    node: Any = data
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    if seal:
        try:
            data = seal_manifest(data)
        except ValueError:  # NaN cannot be sealed: the reader refuses it below
            pass
    try:
        m = validate_manifest(data, where="m.json")
    except ModelError as e:
        assert str(e).startswith("m.json: invalid manifest: ") and len(str(e)) < 600
        return
    # only a sealed, consistent edit loads (or one that changed nothing)
    assert seal or json.dumps(data, sort_keys=True) == original
    assert m.labels and m.front_end.window_samples > 0


# ---------------------------------------------------------------- seeded decoder fuzz on real files
def _seed_files(tmp: Path) -> list[Path]:
    """One second of the bundled recordings in each format the decoder reads."""
    y, sr = sf.read(ROOT / "examples" / "solo_flute.wav", frames=44100, dtype="float32", always_2d=True)
    z, sr2 = sf.read(ROOT / "examples" / "ensemble.flac", frames=44100, dtype="float32", always_2d=True)
    out = []
    for name, data, rate, kw in [
        ("a.wav", y, sr, {"subtype": "PCM_16"}),
        ("b.flac", z, sr2, {}),
        ("c.ogg", y, sr, {"format": "OGG", "subtype": "VORBIS"}),
        ("d.aiff", z, sr2, {"format": "AIFF", "subtype": "PCM_24"}),
        ("e.wav", y[::4], 11025, {"subtype": "FLOAT"}),
    ]:
        p = tmp / name
        sf.write(p, data, rate, **kw)
        out.append(p)
    if MP3_SUPPORTED:
        p = tmp / "f.mp3"
        sf.write(p, y, sr, format="MP3", subtype="MPEG_LAYER_III")
        out.append(p)
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = int(rng.integers(0, 5))
    if kind == 0:  # flip bytes, biased to the header
        for _ in range(int(rng.integers(1, 16))):
            i = int(rng.integers(0, min(len(b), 256))) if rng.random() < 0.7 else int(rng.integers(0, len(b)))
            b[i] = int(rng.integers(0, 256))
    elif kind == 1:  # truncate
        b = b[: int(rng.integers(0, len(b)))]
    elif kind == 2:  # overwrite a 32-bit field in the header with an extreme value
        i = int(rng.integers(0, max(1, min(len(b) - 4, 128))))
        b[i : i + 4] = int(rng.choice([0, 1, 2**31 - 1, 2**32 - 1, 0x7FFF, 44100 * 1000])).to_bytes(
            4, "little"
        )
    elif kind == 3:  # splice a chunk of another position
        i, j = sorted(int(x) for x in rng.integers(0, len(b), 2))
        b[i:i] = b[j : j + int(rng.integers(1, 512))]
    else:  # random garbage after a valid header
        k = int(rng.integers(4, 64))
        b[k:] = rng.integers(0, 256, len(b) - k, dtype=np.uint8).tobytes()
    return bytes(b)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_decoder_fuzz_mutated_real_files(tmp_path: Path) -> None:
    """300 seeded mutants of real wav/flac/ogg/aiff/mp3 files: each decodes to finite audio or
    raises an InstrunetError, within a time bound, from a path and from a file object."""
    rng = np.random.default_rng(20261125)
    seeds = _seed_files(tmp_path)
    outcomes = {"decoded": 0, "refused": 0}
    t0 = time.perf_counter()
    with time_limit(50):
        for k in range(300):
            src = seeds[k % len(seeds)]
            data = _mutate(src.read_bytes(), rng)
            p = tmp_path / f"m{k}{src.suffix}"
            p.write_bytes(data)
            for source in (p, io.BytesIO(data)):
                t = time.perf_counter()
                try:
                    y = load_audio(source)
                except InstrunetError as e:
                    assert str(e), "an error names its problem"
                    outcomes["refused"] += 1
                else:
                    assert y.dtype == np.float32 and np.all(np.isfinite(y))
                    assert len(y) <= 60 * SR  # a mutated 1-second file never claims a huge length
                    outcomes["decoded"] += 1
                assert time.perf_counter() - t < 5.0, f"{p.name}: decoding took too long"
            p.unlink()
    assert outcomes["decoded"] and outcomes["refused"]  # the pass exercised both sides
    assert time.perf_counter() - t0 < 50


# ---------------------------------------------------------------- process_file: the core's decoding, any damage
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_process_file_fuzz_agrees_with_the_core_decoder(tmp_path: Path, tiny_model_template: Path) -> None:
    """Seeded mutants of real files through process_file: the same outcome as the core's decoder
    (one decoding path), an output as long as the decoded audio, and nothing left at ``dst``
    when it fails."""
    pytest.importorskip("pedalboard")
    from instrunet_pedalboard import Tagger, process_file

    from instrunet_core import load_model

    model = _MODELS.get("tiny") or _MODELS.setdefault("tiny", load_model(tiny_model_template))
    rng = np.random.default_rng(20261204)
    seeds = _seed_files(tmp_path)
    outcomes = {"same": 0, "refused": 0}
    with time_limit(120):
        for k in range(150):
            src = seeds[k % len(seeds)]
            p = tmp_path / f"m{k}{src.suffix}"
            p.write_bytes(_mutate(src.read_bytes(), rng))
            dst = tmp_path / "out" / f"m{k}.wav"
            try:
                y = load_audio(p)
                want: str | None = None
            except InstrunetError as e:
                want = type(e).__name__
            t = time.perf_counter()
            try:
                an = process_file(p, dst, tagger=Tagger(model), block_size=int(rng.integers(64, 70_000)))
            except InstrunetError as e:
                assert want == type(e).__name__, (
                    f"{p.name}: the core {want or 'decodes it'}, process_file: {e}"
                )
                assert str(e).startswith(str(p)) and not dst.exists()
                outcomes["refused"] += 1
            else:
                assert want is None, f"{p.name}: process_file accepted what the core refuses ({want})"
                assert an.duration == pytest.approx(len(y) / SR, abs=0.01)
                assert sf.info(dst).duration == pytest.approx(len(y) / SR, abs=0.01)
                assert all(np.isfinite(v) for v in an.prediction.probabilities.values())
                outcomes["same"] += 1
            assert time.perf_counter() - t < 10, p.name
    assert outcomes["same"] and outcomes["refused"]
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left behind


# ---------------------------------------------------------------- the pedalboard adapters' streams
def _stream_audio(seed: int, seconds: float, sr: int, channels: int) -> np.ndarray:
    """Noise bursts and a tone, ``(channels, n)`` float32 (pedalboard's layout)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = 0.3 * np.sin(2 * np.pi * 440 * t) * (rng.random() < 0.7) + 0.1 * rng.standard_normal(n) * (t % 2 < 1)
    return np.stack([y * (1 - 0.2 * c) for c in range(channels)]).astype(np.float32)


def _cuts(n: int, seed: int) -> list[int]:
    """Block boundaries of ``n`` samples: blocks of 1 to 40,000 samples, at random."""
    rng = np.random.default_rng(seed)
    cuts, pos = [0], 0
    while pos < n:
        pos = min(n, pos + int(rng.choice([1, 7, 511, 4096, 40_000])))
        cuts.append(pos)
    return cuts


ADAPTER_PROPS = _props(30, HealthCheck.function_scoped_fixture)


@ADAPTER_PROPS
@given(
    sr=st.sampled_from([8000, 22050, 44100, 48000]),
    channels=st.integers(1, 3),
    seconds=st.floats(0.05, 7.0),
    seed=st.integers(0, 2**16),
    layout=st.sampled_from(["first", "last", "mono"]),
)
def test_tagger_and_stream_tagger_streams_equal_the_core(
    tiny_model_template: Path, sr: int, channels: int, seconds: float, seed: int, layout: str
) -> None:
    """Any cut into blocks, any rate and layout: the Tagger and the StreamTagger give the windows
    of the core's Classifier on the whole audio (the one inference path)."""
    pytest.importorskip("pedalboard")
    from instrunet_pedalboard import StreamTagger, Tagger

    from instrunet_core import Classifier, load_model

    model = _MODELS.get("tiny") or _MODELS.setdefault("tiny", load_model(tiny_model_template))
    y = _stream_audio(seed, seconds, sr, 1 if layout == "mono" else channels)
    arr = y[0] if layout == "mono" else (y if layout == "first" else y.T)
    want = [w.probabilities for w in Classifier(model).classify(y.T if layout != "mono" else y[0], sr)]
    tagger, live = Tagger(model), StreamTagger(model)
    # pedalboard's rule: a first block longer than the channel count (later ones as short as 1)
    cuts = [0, *[c for c in _cuts(y.shape[1], seed)[1:] if c > 3 or c == y.shape[1]]]
    got_live = []
    with time_limit(30):
        for a, b in zip(cuts, cuts[1:], strict=False):
            block = arr[a:b] if layout in ("mono", "last") else arr[:, a:b]
            assert tagger(block, sr, reset=False) is block
            got_live += [r.window.probabilities for r in live.feed(block, sr)]
        tagger.flush()
        got_live += [r.window.probabilities for r in live.finish()]
    for got in ([w.probabilities for w in tagger.results], got_live):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, atol=2e-5)


@ADAPTER_PROPS
@given(seed=st.integers(0, 2**16), sr=st.sampled_from([22050, 44100]), lookahead=st.booleans())
def test_router_stream_equals_the_whole_array(
    tiny_model_template: Path, seed: int, sr: int, lookahead: bool
) -> None:
    """The Router block by block (``reset=False``, any cuts) returns the samples of the whole-array
    call, delayed by its latency; every sample finite."""
    pytest.importorskip("pedalboard")
    from instrunet_pedalboard import Router
    from pedalboard import Gain

    from instrunet_core import load_model

    model = _MODELS.get("tiny") or _MODELS.setdefault("tiny", load_model(tiny_model_template))
    y = _stream_audio(seed, 6.0, sr, 2)
    boards = {"brass": Gain(gain_db=-6), "flute": Gain(gain_db=3)}
    whole = Router(boards, model=model, lookahead=lookahead, threshold=0.3)(y, sr)
    router = Router(boards, model=model, lookahead=lookahead, threshold=0.3)
    d = router.latency_samples(sr)
    cuts = _cuts(y.shape[1], seed)
    cuts = [0, *[c for c in cuts[1:] if c > 2]]  # a first block longer than the channel count
    with time_limit(60):
        out = np.concatenate(
            [router(y[:, a:b], sr, reset=False) for a, b in zip(cuts, cuts[1:], strict=False)]
            + [router.flush()],
            axis=1,
        )
    assert np.all(np.isfinite(out)) and out.shape == (2, y.shape[1] + d)
    np.testing.assert_allclose(out[:, d:], whole, atol=1e-5)


@pytest.mark.parametrize(
    "block",
    [
        np.full(4096, np.nan, np.float32),
        np.full(4096, 1e30, np.float32),
        np.zeros((2, 2, 512), np.float32),
        np.array(["a"] * 600),
        np.zeros((4096, 100), np.float32),
        np.zeros(0, np.float32),
    ],
    ids=["nan", "1e30", "3d", "strings", "100-channels", "empty"],
)
def test_adapter_streams_refuse_bad_blocks_and_carry_on(tiny_model_template: Path, block: np.ndarray) -> None:
    """A hostile block is an InputError (or, empty, nothing), and the adapter is usable after it."""
    pytest.importorskip("pedalboard")
    from instrunet_pedalboard import Router, StreamTagger, Tagger
    from pedalboard import Gain

    from instrunet_core import load_model

    model = _MODELS.get("tiny") or _MODELS.setdefault("tiny", load_model(tiny_model_template))
    good = _stream_audio(1, 4.0, 44100, 1)[0]
    for adapter in (Tagger(model), StreamTagger(model), Router({"brass": Gain()}, model=model)):
        call = (
            adapter.feed
            if isinstance(adapter, StreamTagger)
            else (lambda b, sr, a=adapter: a(b, sr, reset=False))
        )
        try:
            call(block, 44100)
        except InputError as e:
            assert str(e) and len(str(e)) < 400
        else:
            assert block.size == 0
        adapter.reset()
        call(good, 44100)
        assert all(np.all(np.isfinite(w.probabilities)) for w in adapter.results)


# ---------------------------------------------------------------- the app's upload path
@_props(80, HealthCheck.function_scoped_fixture)
@given(
    name=st.text(min_size=0, max_size=40),
    ext=st.sampled_from([".wav", ".flac", ".ogg", ".mp3", ".txt", ""]),
    which=st.integers(0, 5),
    seed=st.integers(0, 2**16),
    mutate=st.booleans(),
)
def test_app_upload_path_fuzz(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model_template: Path,
    name: str,
    ext: str,
    which: int,
    seed: int,
    mutate: bool,
) -> None:
    """Any name, any (damaged) content through the app's upload path: a result, or an
    InstrunetError naming the upload; every message the page would show is safe Markdown."""
    service = pytest.importorskip("instrunet_app.service")
    markdown_it = pytest.importorskip("markdown_it")
    from instrunet_core import load_model

    model = _MODELS.get("tiny") or _MODELS.setdefault("tiny", load_model(tiny_model_template))
    seeds = _MODELS.get("seeds") or _MODELS.setdefault("seeds", _seed_files(tmp_path_factory.mktemp("seeds")))
    src = seeds[which % len(seeds)]
    data = src.read_bytes()
    if mutate:
        data = _mutate(data, np.random.default_rng(seed))
    filename = name + ext
    md = markdown_it.MarkdownIt("commonmark")
    with time_limit(20):
        try:
            res = service.analyze_upload(
                data, filename, model=model, limits=service.Limits(max_mb=5, max_seconds=60)
            )
        except InstrunetError as e:
            message = f"Cannot analyse this upload. {e}"
            assert str(e).startswith(filename) or not filename
        else:
            assert all(np.isfinite(v) for v in res.analysis.prediction.probabilities.values())
            message = res.notice or f"{filename}: done"
    html = md.render(service.markdown_text(message, literal=[filename]))
    assert "<a " not in html and "<img " not in html and "<script" not in html
