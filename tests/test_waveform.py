"""Waveform-in artifacts: the front end inside the ONNX graph, composed with the shipped model.

Real throughout: the shipped ``family`` artifact, the bundled recordings, librosa as the
reference, onnxruntime in Python and onnxruntime-node in Node.js.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import librosa_logmel

from instrunet_core.audio import load_audio
from instrunet_core.errors import ModelError
from instrunet_core.features import DEFAULT_FRONT_END, batch_features
from instrunet_core.manifest import MANIFEST_SCHEMA, read_manifest, seal_manifest, validate_manifest
from instrunet_core.model import load_model

onnx = pytest.importorskip("onnx")
from export import ExportError  # noqa: E402
from export.__main__ import main as export_main  # noqa: E402
from export.waveform import frontend_graph  # noqa: E402
from instrunet_core.session import onnx_session  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FAMILY = ROOT / "instrunet_core" / "models" / "family" / "1.0.0"
EXAMPLES = ROOT / "examples"
NODE_DIR = ROOT / "examples" / "node"
FE = DEFAULT_FRONT_END


@pytest.fixture(scope="module")
def waveform_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("waveform")
    rc = export_main(["waveform", "--from", str(FAMILY), "--out", str(out)])
    assert rc == 0
    return out / "family-waveform" / "1.0.0"


def _clip_windows(n: int = 6) -> np.ndarray:
    y = load_audio(EXAMPLES / "ensemble.flac")
    starts = np.linspace(0, len(y) - FE.window_samples, n).astype(int)
    return np.stack([y[s : s + FE.window_samples] for s in starts])


def test_manifest_of_waveform_artifact(waveform_dir: Path) -> None:
    m = read_manifest(waveform_dir)
    src = read_manifest(FAMILY)
    assert m.schema == MANIFEST_SCHEMA == "instrunet.manifest/3"
    assert m.input_kind == "waveform" and src.input_kind == "logmel"
    assert m.input["shape"] == [None, FE.window_samples] and m.input["sample_rate"] == FE.sample_rate
    assert m.raw["source"] == {"name": "family", "version": "1.0.0", "sha256": src.sha256}
    assert m.labels == src.labels and m.thresholds == src.thresholds and m.front_end == src.front_end
    assert m.parity["features_max_abs_diff"] <= 1e-4 and m.parity["max_abs_diff"] <= 1e-4
    assert m.parity["top1_agreement"] == 1.0 and m.parity["n"] >= 20


def test_frontend_graph_matches_librosa_on_real_audio() -> None:
    sess = onnx_session(frontend_graph(FE).SerializeToString())
    x = _clip_windows(4)
    got = sess.run(None, {"audio": x})[0][..., 0]
    for i, w in enumerate(x):
        ref = librosa_logmel(w, FE)
        assert float(np.abs(got[i] - ref[:, : FE.frames]).max()) <= 1e-4
    # and with the numpy front end (the reference the runtime uses), silence included
    x = np.concatenate([x, np.zeros((1, FE.window_samples), np.float32)])
    got = sess.run(None, {"audio": x})[0][..., 0]
    assert float(np.abs(got - batch_features(x)).max()) <= 1e-4
    assert not got[-1].any()


def test_runtime_loads_both_kinds_and_they_agree(waveform_dir: Path) -> None:
    wave = load_model(waveform_dir)
    feat = load_model(FAMILY)
    assert (wave.input_kind, feat.input_kind) == ("waveform", "logmel")
    x = _clip_windows(6)
    np.testing.assert_allclose(wave.predict_windows(x), feat.predict_windows(x), atol=1e-4)
    # whole files, any rate and channel count, through the same Classifier path (windows as audio
    # for the waveform artifact, shared STFT frames for the feature artifact)
    for clip in ("solo_flute.wav", "ensemble.flac"):
        a, b = wave.predict(EXAMPLES / clip), feat.predict(EXAMPLES / clip)
        assert a.label == b.label and a.n_windows == b.n_windows
        for lab in a.probabilities:
            assert a.probabilities[lab] == pytest.approx(b.probabilities[lab], abs=1e-4)
    from instrunet_core import Classifier

    clf_w, clf_f = Classifier(wave, hop=0.7), Classifier(feat, hop=0.7)
    y = load_audio(EXAMPLES / "solo_flute.wav")
    ww = [
        r for i in range(0, len(y), 5000) for r in clf_w.process(y[i : i + 5000], FE.sample_rate)
    ] + clf_w.flush()
    wf = clf_f.classify(y, FE.sample_rate)
    assert [(r.start, r.end, r.silent) for r in ww] == [(r.start, r.end, r.silent) for r in wf]
    np.testing.assert_allclose(
        np.stack([r.probabilities for r in ww]), np.stack([r.probabilities for r in wf]), atol=1e-4
    )
    # a short window is padded with silence exactly as the numpy path pads it
    short = x[:2, : FE.window_samples // 3]
    np.testing.assert_allclose(wave.predict_windows(short), feat.predict_windows(short), atol=1e-4)
    with pytest.raises(ModelError, match="takes waveform input"):
        wave.predict_features(np.zeros((1, 128, 128), np.float32))


def test_analysis_reports_input_kind_and_provider(waveform_dir: Path) -> None:
    from instrunet_core import analyze

    an = analyze(EXAMPLES / "solo_flute.wav", model=load_model(waveform_dir), analyzers=False)
    model = an.to_dict()["model"]
    assert model == {
        "name": "family-waveform",
        "version": "1.0.0",
        "task": "multilabel",
        "sha256": read_manifest(waveform_dir).sha256,
        "manifest_sha256": read_manifest(waveform_dir).raw["manifest_sha256"],
        "input": "waveform",
        "provider": "CPUExecutionProvider",
    }


def test_schema_1_manifests_still_load_and_waveform_needs_2(waveform_dir: Path) -> None:
    old = json.loads((FAMILY / "manifest.json").read_text())
    assert old["schema"] == "instrunet.manifest/1"  # the shipped artifact predates schema 2
    assert validate_manifest(old, where="m.json").input_kind == "logmel"
    new = json.loads((waveform_dir / "manifest.json").read_text())
    with pytest.raises(ModelError, match="waveform input needs schema"):
        validate_manifest(seal_manifest({**new, "schema": "instrunet.manifest/1"}), where="m.json")
    with pytest.raises(ModelError, match="window_samples"):
        validate_manifest(
            seal_manifest({**new, "input": {**new["input"], "shape": [None, 1000]}}), where="m.json"
        )
    with pytest.raises(ModelError, match="input.kind must be"):
        validate_manifest(
            seal_manifest({**old, "input": {**old["input"], "kind": "spectrum"}}), where="m.json"
        )
    with pytest.raises(ModelError, match="source must be"):
        validate_manifest(seal_manifest({**new, "source": {"name": "family"}}), where="m.json")
    # schema 1 → 2 migration as documented: change "schema", re-seal
    migrated = validate_manifest(seal_manifest({**old, "schema": MANIFEST_SCHEMA}), where="m.json")
    assert migrated.schema == MANIFEST_SCHEMA and migrated.input_kind == "logmel"


def test_export_waveform_refuses_bad_sources(
    waveform_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from export.waveform import export_waveform

    with pytest.raises(ExportError, match="the source must take log-mel"):
        export_waveform(waveform_dir, tmp_path)
    with pytest.raises(ExportError, match="already exists"):
        export_waveform(FAMILY, waveform_dir.parent.parent)
    # a name, version or tolerance the artifact cannot have: said before composing and parity
    for kw, says in (
        ({"name": "Bad Name"}, "--name 'Bad Name': use a lower-case identifier"),
        ({"version": "1.0.0\n"}, "expected semver X.Y.Z"),
        ({"atol": float("nan")}, "--atol nan: must be a finite number"),
        ({"n_references": -1}, "--n-references -1: must be >= 0"),
    ):
        with pytest.raises(ExportError, match=says):
            export_waveform(FAMILY, tmp_path / "early", audio=[], **kw)  # no audio: parity would fail first
        assert not (tmp_path / "early").exists()
    broken = tmp_path / "broken" / "1.0.0"
    shutil.copytree(FAMILY, broken)
    (broken / "model.onnx").write_bytes(b"not a model")
    assert export_main(["waveform", "--from", str(broken), "--out", str(tmp_path / "o")]) == 1
    assert "does not match the manifest" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_export_is_deterministic(waveform_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    from export.waveform import export_waveform

    a = export_waveform(FAMILY, tmp_path / "a", log=lambda s: None)
    assert a["sha256"] == read_manifest(waveform_dir).sha256


def test_node_example_matches_python(waveform_dir: Path, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip(
            "node is not installed (make's .venv/.dev target installs the example's packages with npm)"
        )
    if not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir():
        pytest.skip("examples/node/node_modules missing: run 'npm ci' in examples/node (make test does)")
    import soundfile as sf

    from instrunet_core import Classifier

    def node_classify(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [node, str(NODE_DIR / "classify.js"), str(waveform_dir), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    y = load_audio(EXAMPLES / "solo_flute.wav")  # 32 kHz file → 22,050 Hz mono, as the runtime does it
    wav = tmp_path / "flute22.wav"
    sf.write(wav, y, FE.sample_rate, subtype="FLOAT")
    out = node_classify(str(wav), check=True)
    js = json.loads(out.stdout)
    wins = Classifier(load_model(FAMILY)).classify(y, FE.sample_rate)  # shared STFT frames, numpy
    assert js["labels"] == list(read_manifest(FAMILY).labels)
    assert js["starts"] == [int(round(w.start * FE.sample_rate)) for w in wins]
    np.testing.assert_allclose(
        np.array(js["probabilities"]), np.stack([w.probabilities for w in wins]), atol=1e-4
    )
    # its `mean` is instrunet's answer: silent windows out, the others weighted by loudness (it
    # was a plain mean over every window: a models audit)
    quiet_first = tmp_path / "quiet_first.wav"
    sf.write(
        quiet_first,
        np.concatenate([np.zeros(10 * FE.sample_rate, np.float32), y]),
        FE.sample_rate,
        subtype="FLOAT",
    )
    js = json.loads(node_classify(str(quiet_first), check=True).stdout)
    want = load_model(FAMILY).predict(str(quiet_first)).probabilities
    assert any(js["silent"]) and not all(js["silent"])
    np.testing.assert_allclose(js["mean"], [want[lab] for lab in js["labels"]], atol=2e-3)
    for hop in (["--hop", "abc"], ["--hop"], ["--hop", "0"]):
        bad = node_classify(str(wav), *hop)
        assert bad.returncode == 1 and "--hop must be a number of seconds from 0.01 to 3600" in bad.stderr
    # a file it cannot use is a clear error
    sf.write(tmp_path / "44k.wav", np.zeros(4410, np.float32), 44100)
    bad = node_classify(str(tmp_path / "44k.wav"))
    assert bad.returncode == 1 and "resample first" in bad.stderr
    # a Ray/Node audit (2026-12-06): a DC offset counted as sound in its levels (4 s of DC at
    # 0.5: "brass 0.906" against instrunet's silence), a header cut short was a Node
    # RangeError, and a data size of 0 (a recorder's unfinished header) "no samples"
    offset = tmp_path / "offset.wav"
    sf.write(
        offset, np.concatenate([y[: 5 * FE.sample_rate] * 0.05, y]) + 0.25, FE.sample_rate, subtype="FLOAT"
    )
    dc = tmp_path / "dc.wav"
    sf.write(dc, np.full(4 * FE.sample_rate, 0.5, np.float32), FE.sample_rate, subtype="FLOAT")
    pcm = tmp_path / "unfinished.wav"
    sf.write(pcm, y, FE.sample_rate, subtype="PCM_16")
    raw = bytearray(pcm.read_bytes())
    raw[raw.index(b"data") + 4 : raw.index(b"data") + 8] = (0).to_bytes(4, "little")
    pcm.write_bytes(bytes(raw))
    for f in (offset, dc, pcm):
        js = json.loads(node_classify(str(f), check=True).stdout)
        want = load_model(FAMILY).predict(str(f)).probabilities
        np.testing.assert_allclose(js["mean"], [want[lab] for lab in js["labels"]], atol=2e-3, err_msg=f.name)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(pcm.read_bytes()[:30])
    bad = node_classify(str(cut))
    assert bad.returncode == 1 and "cut.wav: its fmt chunk is cut short" in bad.stderr


def test_cuda_request_falls_back_to_cpu_and_says_so(waveform_dir: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here; the fallback is what this test checks")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = load_model(FAMILY, providers="cuda")
    assert any("CUDAExecutionProvider is not available" in str(x.message) for x in w)
    assert m.providers == ["CPUExecutionProvider"] and m.provider == "CPUExecutionProvider"
    assert load_model(FAMILY, providers="auto").providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("dft", ["stages", "four-step", "stft"])
def test_every_dft_of_the_graph_matches_the_numpy_front_end(dft: str) -> None:
    """The three ways the graph can compute the spectrum give the reference features (silence included)."""
    sess = onnx_session(frontend_graph(FE, dft=dft).SerializeToString())
    x = np.concatenate([_clip_windows(3), np.zeros((1, FE.window_samples), np.float32)])
    got = sess.run(None, {"audio": x})[0][..., 0]
    assert float(np.abs(got - batch_features(x)).max()) <= 1e-4
    assert not got[-1].any()


def test_stages_graph_for_other_front_ends() -> None:
    """Other n_fft / hop / mel / frame settings (as a manifest may give) build and match numpy."""
    from instrunet_core.features import FrontEnd

    rng = np.random.default_rng(3)
    for fe in (
        FrontEnd(n_fft=1024, hop_length=256, n_mels=64, frames=64),
        FrontEnd(n_fft=1536, hop_length=512, n_mels=40, frames=32, fmin=100.0, fmax=8000.0),
        FrontEnd(n_fft=512, hop_length=512, n_mels=32, frames=16, top_db=60.0),
    ):
        y = (0.1 * rng.standard_normal((3, fe.window_samples))).astype(np.float32)
        sess = onnx_session(frontend_graph(fe).SerializeToString())
        got = sess.run(None, {"audio": y})[0][..., 0]
        assert got.shape == (3, fe.n_mels, fe.frames)
        assert float(np.abs(got - batch_features(y, fe=fe)).max()) <= 1e-4
    with pytest.raises(ExportError, match="dft must be one of"):
        frontend_graph(FE, dft="fft")


def test_an_open_set_model_with_an_embedding_exports_every_output(tmp_path: Path) -> None:
    """``family-compact`` 2.0.0 has three outputs (families, "other", embedding) whose order in
    the graph is not the families first: the waveform artifact declares all three, and each
    agrees with the log-mel artifact's."""
    source = ROOT / "instrunet_core" / "models" / "family-compact" / "2.0.0"
    assert export_main(["waveform", "--from", str(source), "--out", str(tmp_path)]) == 0
    out = tmp_path / "family-compact-waveform" / "2.0.0"
    m, src = read_manifest(out), read_manifest(source)
    assert m.output == src.output and m.other == src.other and m.embedding == src.embedding
    wave, feat = load_model(out), load_model(source)
    x = _clip_windows(4)
    a, b = wave.outputs_windows(x, embedding=True), feat.outputs_windows(x, embedding=True)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4)
    np.testing.assert_allclose(a.other, b.other, atol=1e-4)
    np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-3)
    assert wave.predict(EXAMPLES / "solo_flute.wav").label == feat.predict(EXAMPLES / "solo_flute.wav").label


def test_the_defaults_waveform_artifact_keeps_its_veto_and_margins(tmp_path: Path) -> None:
    """An audit (2026-12-07): the waveform-in build of ``family`` 3.0.0 left ``other.veto`` out,
    so its timeline ran at the runtime's 0.93 instead of the model's 0.72; 3.1.0's margins for the
    families behind the leading two (its manifest's ``secondary``) are kept the same way."""
    source = ROOT / "instrunet_core" / "models" / "family" / "3.1.0"
    assert export_main(["waveform", "--from", str(source), "--out", str(tmp_path)]) == 0
    out = tmp_path / "family-waveform" / "3.1.0"
    assert read_manifest(out).other == read_manifest(source).other
    assert read_manifest(out).secondary == read_manifest(source).secondary
    wave, src = load_model(out), load_model(source)
    assert wave.other_veto == src.other_veto == 0.72
    assert (wave.leading, wave.margins) == (src.leading, src.margins) and src.leading == 2
