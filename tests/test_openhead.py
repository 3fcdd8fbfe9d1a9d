"""An open-set head grafted onto an exported family model (export.openhead, training.openhead):
the family outputs stay the same numbers, "other" is the head's, and the shipped default that
was made this way answers "other" for noise and still names instruments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import pink

import instrunet_core as inet
from export import ExportError
from export.openhead import (
    BASE_PREFIX,
    HEAD_INPUT,
    Head,
    features,
    graft,
    graph_tensors,
    head_input,
    timbre_embedding,
    without_outputs,
)
from instrunet_core.session import onnx_session
from training.openhead import choose_threshold, fit_head, other_answers

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "instrunet_core" / "models" / "family" / "2.0.0"


@pytest.fixture(scope="module")
def base() -> onnx.ModelProto:
    return onnx.load(str(BASE / "model.onnx"))


def _head(d: int, hidden: int = 0, seed: int = 0) -> Head:
    rng = np.random.default_rng(seed)
    dims = [d, hidden, 1] if hidden else [d, 1]
    layers = tuple(
        (rng.normal(0, 0.05, (a, b)), rng.normal(0, 0.1, b)) for a, b in zip(dims[:-1], dims[1:], strict=True)
    )
    return Head(rng.normal(size=d), rng.uniform(0.5, 2.0, d), layers)


def test_graph_tensors_of_the_family_network(base: onnx.ModelProto) -> None:
    t = graph_tensors(base)
    assert (t.pooled_dim, t.embedding_dim, t.n_mels) == (4096, 128, 128)
    assert [c for _, c in t.blocks] == [16, 32, 64, 128, 256]
    assert t.head_dim == 4096 + 2 * (16 + 32 + 64 + 128 + 256) + 2 * 128
    assert t.timbre_channels == 512  # the last block's 256 channels, mean and maximum over time


def test_a_graph_of_another_shape_is_refused(base: onnx.ModelProto) -> None:
    with pytest.raises(ExportError, match="does not end MatMul"):
        graph_tensors(base, output_name="Relu_28:0")
    with pytest.raises(ExportError, match="no input 'audio'"):
        graph_tensors(base, input_name="audio")


@pytest.mark.parametrize(("hidden", "embedding"), [(0, "timbre"), (8, "dense")])
def test_graft_keeps_the_families_and_adds_other_and_embedding(
    base: onnx.ModelProto, hidden: int, embedding: str
) -> None:
    t = graph_tensors(base)
    head = _head(t.head_dim, hidden)
    grafted = graft(base, head, t, graph_name="test", embedding=embedding)
    x = np.random.default_rng(1).random((6, 128, 128)).astype(np.float32)
    p, h, emb = features(base, t, x)
    assert h.shape == (6, t.head_dim) and np.all(np.isfinite(h))
    got = onnx_session(grafted.SerializeToString()).run(
        ["probabilities", "other", "embedding"], {"mel": x[..., None]}
    )
    np.testing.assert_array_equal(got[0], p)  # the same numbers: the family network is untouched
    want = onnx_session(BASE / "model.onnx").run(["probabilities"], {"mel": x[..., None]})[0]
    np.testing.assert_allclose(got[0], want, atol=1e-6)
    np.testing.assert_allclose(got[1][:, 0], head(h), atol=1e-5)  # the head folded into the graph
    if embedding == "dense":
        np.testing.assert_array_equal(got[2], emb)
    else:  # the pooled features averaged over the frequency bands
        assert got[2].shape == (6, 512)
        np.testing.assert_allclose(got[2], timbre_embedding(h[:, : t.pooled_dim], t), atol=1e-5)
        np.testing.assert_allclose(got[2], h[:, : t.pooled_dim].reshape(6, 8, 512).mean(1), atol=1e-5)
    with pytest.raises(ExportError, match="already has the outputs"):
        graft(grafted, head, t, graph_name="twice")


def test_head_input_statistics_match_numpy(base: onnx.ModelProto) -> None:
    t = graph_tensors(base)
    m = head_input(base, t)
    m.graph.output.append(onnx.helper.make_tensor_value_info(HEAD_INPUT, onnx.TensorProto.FLOAT, None))
    x = np.random.default_rng(2).random((3, 128, 128)).astype(np.float32)
    h = onnx_session(m.SerializeToString()).run([HEAD_INPUT], {"mel": x[..., None]})[0]
    np.testing.assert_allclose(h[:, -256:-128], x.mean(2), atol=1e-5)  # per band, over time
    np.testing.assert_allclose(h[:, -128:], x.std(2), atol=1e-4)


def test_head_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="last layer"):
        Head(np.zeros(4), np.ones(4), ((np.zeros((4, 2)), np.zeros(2)),))
    with pytest.raises(ValueError, match="NaN"):
        Head(np.full(2, np.nan), np.ones(2), ((np.zeros((2, 1)), np.zeros(1)),))


def test_fit_head_learns_and_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.2).astype(np.float32)
    x = rng.normal(size=(2000, 12)).astype(np.float32) + 2.5 * y[:, None] * (np.arange(12) < 3)
    a, hist = fit_head(x, y, hidden=0, epochs=6, lr=0.01, batch=64, seed=5)
    b, _ = fit_head(x, y, hidden=0, epochs=6, lr=0.01, batch=64, seed=5)
    np.testing.assert_array_equal(a.layers[0][0], b.layers[0][0])
    assert len(hist) == 6 and hist[-1]["loss"] < hist[0]["loss"]
    acc = np.mean((a(x) >= 0.5) == (y >= 0.5))
    assert acc > 0.95
    with pytest.raises(ValueError, match="one class"):
        fit_head(x, np.zeros(2000), epochs=1)


def test_choose_threshold_keeps_the_drop() -> None:
    rng = np.random.default_rng(4)
    n = 400
    fam = rng.integers(0, 8, n)
    p = np.full((n, 8), 0.1, np.float32)
    p[np.arange(n), fam] = 0.6
    Y = np.zeros((n, 9), np.float32)
    Y[np.arange(n), fam] = 1
    h_inst = rng.uniform(0.0, 0.7, n)  # the head's score on instruments: some false alarms
    h_oth = rng.uniform(0.4, 1.0, n)  # on other sound
    identity = lambda h: np.asarray(h)[:, 0]  # noqa: E731 - the "head input" is the score itself
    single = {"valid": (p, h_inst[:, None], None)}
    other = {"valid": (np.full((n, 8), 0.1, np.float32), h_oth[:, None], None)}
    t, row = choose_threshold(single, other, {"valid": Y}, identity, max_drop=0.02)  # type: ignore[arg-type]
    ans = other_answers(p, h_inst, t)
    assert ans.mean() <= 0.03 and row["valid_balanced_accuracy_drop"] <= 0.02
    # a lower threshold would find more other sound but cost more than the drop allows
    assert other_answers(p, h_inst, t - 0.05).mean() > 0.02 or t == 0.05


SHIPPED = ROOT / "instrunet_core" / "models" / "family" / "2.1.0"


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="family 2.1.0 not built (python -m training.openhead)")
def test_the_shipped_openhead_model_knows_none_of_the_eight(installed_registry: object) -> None:
    """``family`` 2.1.0 (the default until 3.0.0): 2.0.0's network with the grafted head."""
    m = inet.load_model("family", "2.1.0")
    assert (m.name, m.version) == ("family", "2.1.0")
    assert m.other_threshold is not None and m.embedding_dim == 512
    assert m.manifest.to_dict()["source"]["version"] == "2.0.0"
    # the family outputs are 2.0.0's, to the last bit
    old = inet.load_model(BASE)
    flute_wav = ROOT / "examples" / "solo_flute.wav"
    assert m.predict(flute_wav).probabilities == old.predict(flute_wav).probabilities
    noise = m.predict(pink(6.0), 22050)
    assert noise.label == inet.OTHER_LABEL and noise.other is not None and noise.other >= m.other_threshold
    flute = m.predict(flute_wav)
    assert flute.label == "flute" and flute.other is not None and flute.other < m.other_threshold
    e = m.embed(ROOT / "examples" / "solo_flute.wav")
    assert e.vector.shape == (512,) and abs(float(np.linalg.norm(e.vector)) - 1.0) < 1e-5


def test_the_cli_refuses_unusable_bases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.openhead import main

    common = ["--version", "9.9.9", "--corpus", str(tmp_path), "--sources", str(tmp_path)]
    common += ["--out", str(tmp_path / "models"), "--report-dir", str(tmp_path / "report")]
    compact = ROOT / "instrunet_core" / "models" / "family-compact" / "2.0.0"
    assert main([str(compact), *common]) == 2
    err = capsys.readouterr().err
    assert "already has an open-set output" in err and "--replace-other" in err
    # with --replace-other it gets as far as the corpus, which is not there
    assert main([str(compact), *common, "--replace-other"]) == 2
    assert "training.openhead: error:" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere"), *common]) == 2
    err = capsys.readouterr().err
    assert err.startswith("training.openhead: error:") and "nowhere" in err
    assert not (tmp_path / "models").exists()  # nothing written


COMPACT = ROOT / "instrunet_core" / "models" / "family-compact" / "2.0.0"


def test_a_network_with_its_own_other_is_grafted_after_its_outputs_are_removed() -> None:
    """family-compact 2.0.0 ends Sigmoid (nine wide) → Slice → probabilities, with its own
    ``other`` and dense ``embedding`` outputs: without them the graft reads the same network."""
    own = onnx.load(str(COMPACT / "model.onnx"))
    t_own = graph_tensors(own)
    with pytest.raises(ExportError, match="already has the outputs"):
        graft(own, _head(t_own.head_dim), t_own, graph_name="clash")
    stripped = without_outputs(own, ["other", "embedding"])
    assert [o.name for o in stripped.graph.output] == ["probabilities"]
    assert len(stripped.graph.node) == len(own.graph.node) - 1  # the Slice that gave "other"
    produced = {o for n in stripped.graph.node for o in n.output}
    assert "embedding" not in produced and BASE_PREFIX + "embedding:0" in produced  # the dense layer, renamed
    t = graph_tensors(stripped)
    assert t.embedding == BASE_PREFIX + "embedding:0"
    head = _head(t.head_dim, seed=3)
    grafted = graft(stripped, head, t, graph_name="test")
    x = np.random.default_rng(2).random((5, 128, 128)).astype(np.float32)
    p, o, e = onnx_session(grafted.SerializeToString()).run(
        ["probabilities", "other", "embedding"], {"mel": x[..., None]}
    )
    own_p, own_o = onnx_session(COMPACT / "model.onnx").run(["probabilities", "other"], {"mel": x[..., None]})
    np.testing.assert_array_equal(p, own_p)  # the eight families: the same numbers
    _, h, _ = features(stripped, t, x)
    np.testing.assert_allclose(o[:, 0], head(h), atol=1e-5)  # "other" is the head's, not the network's
    assert not np.allclose(o, own_o, atol=1e-3)
    assert e.shape == (5, t.timbre_channels)
    with pytest.raises(ExportError, match="no outputs"):
        without_outputs(own, ["nothing"])
    with pytest.raises(ExportError, match="none"):
        without_outputs(stripped, ["probabilities"])


def test_a_slice_that_is_not_the_first_labels_is_refused() -> None:
    own = onnx.load(str(COMPACT / "model.onnx"))
    # "other" is the ninth sigmoid, sliced from 8: not a graph this graft reads as families
    with pytest.raises(ExportError, match="does not keep the first sigmoids"):
        graph_tensors(own, output_name="other")
