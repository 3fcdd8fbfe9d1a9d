"""The whole path on a tiny corpus: render → train one epoch → report → export → instrunet_core.

This is the CI run of the training and export issues: real SoundFont notes (fetched from
Debian's packages on a fresh machine), real augmentation, a real Keras epoch, a real
tf2onnx conversion with parity, and the artifact loaded and run by the runtime.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import needs

needs("tensorflow")
pytestmark = [pytest.mark.training, pytest.mark.slow]

import instrunet_core  # noqa: E402
from instrunet_core import hookimpl  # noqa: E402
from instrunet_core.labels import FAMILIES  # noqa: E402
from instrunet_core.manifest import read_manifest, sha256_file  # noqa: E402
from instrunet_core.registry import build_registry  # noqa: E402


class _Models:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @hookimpl
    def instrunet_register_models(self, register: Any) -> None:
        register(self.folder.parent.name, self.folder, default=True)


def _tiny_run_args(corpus: Path, cache: Path, version: str) -> list[str]:
    """``training.train`` options for one quick epoch on the tiny corpus (a shared example cache)."""
    return [
        "--corpus",
        str(corpus),
        "--epochs",
        "1",
        "--n-train",
        "96",
        "--n-valid",
        "48",
        "--n-valid-mix",
        "24",
        "--n-test-mix",
        "24",
        "--batch-size",
        "16",
        "--cache",
        str(cache),
        "--version",
        version,
        "--workers",
        "1",
        "--quiet",
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from training import corpus, train

    root = tmp_path_factory.mktemp("pipeline")
    assert (
        corpus.main(
            ["build", "--out", str(root / "corpus"), "--limit", "3", "--workers", "1", "--no-progress"]
        )
        == 0
    )
    args = _tiny_run_args(root / "corpus", root / "cache", "0.0.1")
    assert (
        train.main(
            ["--model", "default", "--out", str(root / "run"), "--report-dir", str(root / "report"), *args]
        )
        == 0
    )
    return {"root": root, "corpus": root / "corpus", "run": root / "run", "report": root / "report"}


def test_training_writes_report(trained: dict[str, Path]) -> None:
    report = trained["report"]
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["task"] == "multilabel"
    assert metrics["labels"] == list(FAMILIES)
    assert "valid only" in metrics["selection"]
    for split in ("valid", "test"):
        single = metrics[split]["single"]
        assert 0.0 <= single["accuracy"] <= 1.0
        assert set(single["per_class"]) == set(FAMILIES)
        assert np.array(single["confusion"]).sum() == metrics[split]["n_single"]
        assert 0.0 <= metrics[split]["mixture"]["micro_f1"] <= 1.0
    # the test split here is every test note of the tiny corpus: 3 per family
    assert metrics["test"]["n_single"] == 3 * len(FAMILIES)
    assert set(metrics["thresholds"]) == set(FAMILIES)
    assert all(0 < t < 1 for t in metrics["thresholds"].values())
    for png in ("confusion_matrix.png", "curves.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test (unseen TimGM6mb instruments)" in (report / "summary.md").read_text()
    history = json.loads((trained["run"] / "history.json").read_text())
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])


def test_export_and_run_with_instrunet_core(trained: dict[str, Path]) -> None:
    out = trained["root"] / "models"
    cmd = [
        sys.executable,
        "-m",
        "export",
        str(trained["run"] / "default.keras"),
        "--name",
        "family",
        "--version",
        "0.0.1",
        "--out",
        str(out),
        "--corpus",
        str(trained["corpus"]),
        "--report",
        str(trained["report"] / "metrics.json"),
        "--n-parity",
        "200",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr
    folder = out / "family" / "0.0.1"
    manifest = read_manifest(folder / "manifest.json")
    assert manifest.sha256 == sha256_file(folder / "model.onnx")
    assert manifest.task == "multilabel" and tuple(manifest.labels) == FAMILIES
    raw = json.loads((folder / "manifest.json").read_text())
    assert raw["parity"]["n"] >= 200 and raw["parity"]["max_abs_diff"] <= 1e-4
    assert raw["parity"]["top1_agreement"] == 1.0
    assert raw["thresholds"] == json.loads((trained["report"] / "metrics.json").read_text())["thresholds"]

    registry = build_registry(extra_plugins=[_Models(folder)], entry_points=False)
    model = instrunet_core.load_model("family", registry=registry)
    t = np.arange(3 * 22050) / 22050
    pred = model.predict((0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 22050)
    assert pred.label in FAMILIES
    assert pred.confidence == pytest.approx(pred.probabilities[pred.label])
    assert pred.confidence == pytest.approx(max(pred.probabilities.values()))
    assert all(0.0 <= p <= 1.0 for p in pred.probabilities.values())
    with np.load(folder / "references.npz") as z:
        got = model.predict_features(z["inputs"].astype(np.float32))
        np.testing.assert_allclose(got, z["outputs"], atol=1e-4)


def test_multiclass_models_train_on_the_same_cache(trained: dict[str, Path]) -> None:
    from training import train

    root = trained["root"]
    args = _tiny_run_args(trained["corpus"], root / "cache", "0.0.1")
    assert (
        train.main(
            [
                "--model",
                "baseline",
                "--out",
                str(root / "run-b"),
                "--report-dir",
                str(root / "report-b"),
                *args,
            ]
        )
        == 0
    )
    metrics = json.loads((root / "report-b" / "metrics.json").read_text())
    assert metrics["task"] == "multiclass" and metrics["thresholds"] is None
    # a softmax model names one family per mixture: its mixture recall is bounded by 1/2
    assert metrics["test"]["mixture"]["micro_recall"] <= 0.5 + 1e-9


def test_distilled_targets_mix_labels_with_the_teacher(trained: dict[str, Path]) -> None:
    from training.dataset import ExampleSpec, cached_examples
    from training.train import distilled_targets, teacher_targets

    root = trained["root"]
    ex = cached_examples(trained["corpus"], ExampleSpec("valid", 16, 7, random_crop=False), root / "cache")
    teacher = Path(instrunet_core.__file__).parent / "models" / "family" / "2.0.0"
    p = instrunet_core.load_model(teacher).predict_features(np.asarray(ex.X, np.float32))
    got_p = teacher_targets(teacher, ex, cache=root / "cache")
    np.testing.assert_allclose(got_p, p, atol=1e-6)
    np.testing.assert_array_equal(teacher_targets(teacher, ex, cache=root / "cache"), got_p)  # cached
    # an open-set teacher gives its "other" probability as a ninth column
    open_teacher = Path(instrunet_core.__file__).parent / "models" / "family-open" / "1.0.0"
    o = instrunet_core.load_model(open_teacher).outputs_features(np.asarray(ex.X, np.float32))
    got_open = teacher_targets(open_teacher, ex, cache=root / "cache")
    assert got_open.shape == (len(ex), 9) and o.other is not None
    np.testing.assert_allclose(got_open, np.column_stack([o.probabilities, o.other]), atol=1e-6)
    got = distilled_targets(ex.Y, got_p, 0.25)
    # the teacher has no open-set output: the ninth column ("other") keeps its labels
    np.testing.assert_allclose(got[:, :8], 0.75 * ex.Y[:, :8] + 0.25 * p, atol=1e-6)
    np.testing.assert_array_equal(got[:, 8], ex.Y[:, 8])
    assert got.dtype == np.float32 and got.shape == ex.Y.shape
    # an "other" example keeps its labels: the eight-family teacher's guesses would name a family
    y = np.zeros((2, 9), np.float32)
    y[0, 2], y[1, 8] = 1.0, 1.0
    mixed = distilled_targets(y, np.full((2, 8), 0.5, np.float32), 0.5)
    np.testing.assert_allclose(mixed[0, :8], 0.5 * y[0, :8] + 0.25)
    np.testing.assert_array_equal(mixed[1], y[1])
    with pytest.raises(ValueError, match="distill weight"):
        distilled_targets(ex.Y, got_p, 1.5)
    # where two or more families play, the teacher weighs mix_weight (here: the labels alone)
    y3 = np.zeros((3, 9), np.float32)
    y3[0, 2] = 1.0  # one family
    y3[1, [2, 5]] = 1.0  # two families: a mixture
    y3[2, 8] = 1.0  # other
    t3 = np.full((3, 8), 0.4, np.float32)
    got3 = distilled_targets(y3, t3, 0.5, mix_weight=0.0)
    np.testing.assert_allclose(got3[0, :8], 0.5 * y3[0, :8] + 0.2)
    np.testing.assert_array_equal(got3[1], y3[1])
    np.testing.assert_array_equal(got3[2], y3[2])
    half = distilled_targets(y3, t3, 0.5, mix_weight=0.25)
    np.testing.assert_allclose(half[1, :8], 0.75 * y3[1, :8] + 0.1)
    with pytest.raises(ValueError, match="distill weight"):
        distilled_targets(y3, t3, 0.5, mix_weight=-0.1)
    # an open-set teacher's answer on "other" sound alone weighs other_weight (0: the labels)
    t9 = np.full((3, 9), 0.4, np.float32)
    both = distilled_targets(y3, t9, 0.5)
    np.testing.assert_allclose(both[2], 0.5 * y3[2] + 0.2)
    kept = distilled_targets(y3, t9, 0.5, other_weight=0.0)
    np.testing.assert_array_equal(kept[2], y3[2])
    np.testing.assert_allclose(kept[:2], both[:2])  # the instruments are distilled as before
    with pytest.raises(ValueError, match="distill weight"):
        distilled_targets(y3, t9, 0.5, other_weight=2.0)


def test_mean_targets_average_each_column_over_the_teachers_that_have_it() -> None:
    from training.train import mean_targets

    closed = np.array([[0.2] * 8, [0.6] * 8], np.float32)  # an eight-family teacher
    open_ = np.array([[0.4] * 8 + [0.9], [0.0] * 8 + [0.1]], np.float32)  # an open-set one
    got = mean_targets([closed, open_])
    assert got.shape == (2, 9) and got.dtype == np.float32
    np.testing.assert_allclose(got[:, :8], [[0.3] * 8, [0.3] * 8], atol=1e-7)
    np.testing.assert_allclose(got[:, 8], [0.9, 0.1], atol=1e-7)  # "other" from the open-set teacher only
    np.testing.assert_array_equal(mean_targets([closed]), closed)


def test_the_other_target_can_come_from_chosen_teachers(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--other-teacher``: the families stay the mean of every teacher, the "other" column is
    the mean of the named teachers' alone."""
    from training import train
    from training.dataset import ExampleSpec, cached_examples

    root = trained["root"]
    ex = cached_examples(trained["corpus"], ExampleSpec("valid", 16, 7, random_crop=False), root / "cache")
    models = Path(instrunet_core.__file__).parent / "models"
    closed, open_a, open_b = (
        models / "family" / "2.0.0",
        models / "family-open" / "1.0.0",
        models / "family-compact" / "2.0.0",
    )
    a, b, c = (train.teacher_targets(t, ex, cache=root / "cache") for t in (closed, open_a, open_b))
    every = train.ensemble_targets([closed, open_a, open_b], ex, cache=root / "cache")
    np.testing.assert_allclose(every[:, 8], (b[:, 8] + c[:, 8]) / 2, atol=1e-6)
    chosen = train.ensemble_targets([closed, open_a, open_b], ex, cache=root / "cache", other_from=[open_b])
    np.testing.assert_allclose(chosen[:, :8], (a + b[:, :8] + c[:, :8]) / 3, atol=1e-6)
    np.testing.assert_array_equal(chosen[:, 8], c[:, 8])
    # an eight-family teacher alone gets its "other" column from the named teacher
    grown = train.ensemble_targets([closed], ex, cache=root / "cache", other_from=[open_a])
    assert grown.shape == (len(ex), 9)
    np.testing.assert_array_equal(grown[:, 8], b[:, 8])
    with pytest.raises(ValueError, match="other"):
        train.ensemble_targets([open_a], ex, cache=root / "cache", other_from=[closed])
    args = [*_tiny_run_args(trained["corpus"], root / "cache", "0.0.1"), "--no-test"]
    with pytest.raises(SystemExit):  # an "other" target needs --open-set
        train.main(
            [
                "--model",
                "compact",
                "--out",
                str(root / "x"),
                "--teacher",
                str(closed),
                "--other-teacher",
                str(open_a),
                *args,
            ]
        )
    assert "--other-teacher needs --teacher and --open-set" in capsys.readouterr().err


def test_score_teachers_needs_a_dev_split(trained: dict[str, Path]) -> None:
    """``--score-teachers`` scores on the real dev clips only: a corpus without them is a clear
    error, and nothing is written (test is never the fallback)."""
    from training import train

    root = trained["root"]
    teacher = Path(instrunet_core.__file__).parent / "models" / "family" / "2.0.0"
    out = root / "teachers-dev.json"
    args = [*_tiny_run_args(trained["corpus"], root / "cache", "0.0.1"), "--no-test"]
    run = ["--model", "compact", "--out", str(root / "run-t"), "--teacher", str(teacher)]
    with pytest.raises(ValueError, match="no dev split to score the teachers on"):
        train.main([*run, *args, "--score-teachers", str(out)])
    assert not out.exists()
    # the README's command gives no --out (a docs audit: it failed on argparse's "required")
    with pytest.raises(ValueError, match="no dev split to score the teachers on"):
        train.main([*run[:2], *run[4:], *args, "--score-teachers", str(out)])
    with pytest.raises(SystemExit):
        train.main([*run[:2], *run[4:], *args])  # a training run needs its folder


def test_the_condition_builders_refuse_a_corpus_without_the_splits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A docs audit (2026-12-06): `training.condition build` on a missing corpus said each split
    was "skipped", wrote an empty condition.json and exited 0; `recordings` ended in a traceback."""
    from training.condition.__main__ import main as condition_main

    for cmd in ("build", "recordings"):
        assert condition_main([cmd, "--corpus", str(tmp_path / "none"), "--out", str(tmp_path / "c")]) == 2
        assert "none: no " in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_compact_open_set_model_trains_distilled_and_exports(trained: dict[str, Path]) -> None:
    """An open-set model (a ninth output, "other"), trained on ensembles and other sounds with a
    teacher, exported with its other and embedding outputs, and run by the runtime."""
    from training import train

    root = trained["root"]
    teacher = Path(instrunet_core.__file__).parent / "models" / "family" / "2.0.0"
    second = Path(instrunet_core.__file__).parent / "models" / "family-compact" / "1.0.0"
    args = [*_tiny_run_args(trained["corpus"], root / "cache", "0.0.1"), "--no-test"]
    run = ["--model", "compact", "--out", str(root / "run-c"), "--report-dir", str(root / "report-c")]
    open_set = ["--open-set", "--other-prob", "0.3", "--ensemble-prob", "0.3", "--n-valid-other", "24"]
    teachers = ["--teacher", str(teacher), "--teacher", str(second)]
    assert train.main([*run, *teachers, "--distill", "0.5", *open_set, *args]) == 0
    metrics = json.loads((root / "report-c" / "metrics.json").read_text())
    assert metrics["model"] == "compact" and metrics["task"] == "multilabel"
    assert metrics["config"]["teacher"] == [str(teacher), str(second)] and metrics["config"]["distill"] == 0.5
    assert metrics["outputs"] == [*FAMILIES, "other"] and 0 < metrics["thresholds"]["other"] < 1
    assert "answered_other" in metrics["valid"]["other"]
    out = root / "models-c"
    cmd = [
        sys.executable,
        "-m",
        "export",
        str(root / "run-c" / "compact.keras"),
        "--name",
        "family",
        "--version",
        "0.0.2",
        "--out",
        str(out),
        "--corpus",
        str(trained["corpus"]),
        "--report",
        str(root / "report-c" / "metrics.json"),
        "--n-parity",
        "64",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr
    raw = json.loads((out / "family" / "0.0.2" / "manifest.json").read_text())
    assert raw["parity"]["max_abs_diff"] <= 1e-4 and raw["parity"]["top1_agreement"] == 1.0
    assert raw["other"]["threshold"] == metrics["thresholds"]["other"] and "other" not in raw["thresholds"]
    assert raw["embedding"]["shape"] == [None, 128]
    model = instrunet_core.load_model(out / "family" / "0.0.2")
    y = 0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * 22050) / 22050).astype(np.float32)
    pred = model.predict(y, 22050)
    assert pred.other is not None and 0.0 <= pred.other <= 1.0
    emb = model.embed(y, 22050)
    assert emb.dim == 128 and abs(float(np.linalg.norm(emb.vector)) - 1.0) < 1e-5


def test_a_softmax_teacher_is_refused(trained: dict[str, Path]) -> None:
    from training import train

    baseline = pytest.importorskip("instrunet_baseline")
    folder = next(Path(baseline.__file__).parent.glob("models/baseline/*"))
    with pytest.raises(SystemExit):
        train.main(
            [
                "--model",
                "baseline",
                "--corpus",
                str(trained["corpus"]),
                "--out",
                str(trained["root"] / "x"),
                "--teacher",
                str(folder),
            ]
        )
    from training.dataset import Examples

    ex = Examples(np.zeros((2, 128, 128), np.float16), np.zeros((2, 9), np.float32), [["a"], ["b"]])
    with pytest.raises(ValueError, match="multilabel"):
        train.teacher_targets(folder, ex)


def test_training_continues_from_a_saved_keras_model(trained: dict[str, Path]) -> None:
    from training import train

    root = trained["root"]
    saved = root / "run-c" / "compact.keras"
    if not saved.is_file():
        pytest.skip("needs test_compact_open_set_model_trains_distilled_and_exports first")
    args = [*_tiny_run_args(trained["corpus"], root / "cache", "0.0.3"), "--no-test", "--open-set"]
    run = ["--model", "compact", "--out", str(root / "run-c2"), "--report-dir", str(root / "report-c2")]
    assert train.main([*run, "--init-keras", str(saved), *args]) == 0
    metrics = json.loads((root / "report-c2" / "metrics.json").read_text())
    assert metrics["init"]["from"] == str(saved)
    # the saved weights are scored as epoch 0, then one epoch of training
    assert len(metrics["init"]) > 2 and metrics["epochs_run"] == 2
    with pytest.raises(ValueError, match="not a default model"):
        train.main(["--model", "default", "--out", str(root / "run-x"), "--init-keras", str(saved), *args])


def test_average_weights_is_the_element_wise_mean_of_one_models_weights() -> None:
    from training.train import average_weights

    a = [np.array([1.0, 2.0], np.float32), np.array([[0.0]], np.float32)]
    b = [np.array([3.0, 6.0], np.float32), np.array([[1.0]], np.float32)]
    mean = average_weights([a, b])
    assert [m.dtype for m in mean] == [np.float32, np.float32]
    np.testing.assert_array_equal(mean[0], [2.0, 4.0])
    np.testing.assert_array_equal(mean[1], [[0.5]])
    with pytest.raises(ValueError, match="not of one model"):
        average_weights([a, [a[0], np.zeros((2, 1), np.float32)]])
    with pytest.raises(ValueError, match="no weights"):
        average_weights([])


def test_the_mean_of_the_last_epochs_is_scored_as_a_candidate(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from training import train

    root = trained["root"]
    saved = root / "run-c" / "compact.keras"
    if not saved.is_file():
        pytest.skip("needs test_compact_open_set_model_trains_distilled_and_exports first")
    args = [*_tiny_run_args(trained["corpus"], root / "cache", "0.0.4"), "--no-test", "--open-set"]
    args[args.index("--epochs") + 1] = "2"
    run = ["--model", "compact", "--out", str(root / "run-avg"), "--report-dir", str(root / "report-avg")]
    assert train.main([*run, "--init-keras", str(saved), "--average-epochs", "2", *args]) == 0
    metrics = json.loads((root / "report-avg" / "metrics.json").read_text())
    averaged = metrics["averaged"]
    # the start is scored as epoch 0 and never averaged; the two trained epochs are
    assert averaged["epochs"] == [1, 2]
    assert 0.0 <= averaged["score"] <= 1.0 and "valid_balanced_accuracy" in averaged
    # each averaged epoch's network is saved, so that another mean can be scored later
    assert {p.name for p in (root / "run-avg").glob("compact.epoch*.keras")} == {
        "compact.epoch1.keras",
        "compact.epoch2.keras",
    }
    summary = (root / "report-avg" / "summary.md").read_text()
    kept = "the mean of epochs 1, 2" if averaged.get("kept") else f"epoch {metrics['best_epoch']}"
    assert f"kept {kept}." in summary
    # a mean chosen afterwards is scored the same way from the saved epochs
    capsys.readouterr()
    assert train.main([*run, *args, "--score-means", "1,2", "--score-means", "2"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("mean of epochs")]
    assert [ln.split(":")[0] for ln in lines] == ["mean of epochs 1, 2", "mean of epochs 2"]
    assert f"score {averaged['score']:.4f}" in lines[0]  # the candidate the run itself scored
    with pytest.raises(SystemExit):
        train.main([*run, *args, "--score-means", "one"])
    with pytest.raises(ValueError, match="no such saved epoch"):
        train.main([*run, *args, "--score-means", "3"])
    with pytest.raises(SystemExit):  # one epoch is no mean
        train.main([*run, *args, "--average-epochs", "1"])
    with pytest.raises(SystemExit):  # a weight for the teachers in mixtures, without teachers
        train.main([*run, *args, "--distill-mix", "0"])
    assert "--distill-mix needs --teacher" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no real draws to change the chance of
        train.main([*run, *args, "--real-prob-family", "reed=0"])
    assert "--real-prob-family needs --real-prob" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a chance, not a count
        train.main([*run, *args, "--chord-prob", "1.5"])
    assert "--chord-prob must be a chance in [0, 1]" in capsys.readouterr().err
    assert metrics["best_score"] == max(
        averaged["score"], *json.loads((root / "run-avg" / "history.json").read_text())["score"]
    )


def test_real_prob_family_is_parsed_and_keeps_the_cache_keys_of_sets_without_it() -> None:
    import dataclasses
    import hashlib

    from training.dataset import ExampleSpec
    from training.train import real_prob_family

    assert real_prob_family(["reed=0.1", "brass=1"]) == (("brass", 1.0), ("reed", 0.1))
    for bad in ("reed", "reed=x", "drums=0.5", "reed=1.5"):
        with pytest.raises(ValueError, match="real-prob-family"):
            real_prob_family([bad])
    spec = ExampleSpec("train", 10, 1, real_prob=0.5)
    d = dataclasses.asdict(spec)
    del d["real_prob_family"], d["chord_prob"], d["fragment_prob"]
    old_key = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
    assert spec.key() == old_key  # sets cached before the field existed are found again
    assert dataclasses.replace(spec, real_prob_family=(("reed", 0.0),)).key() != old_key


def test_a_family_can_draw_its_real_instruments_at_its_own_chance() -> None:
    from training import dataset
    from training.dataset import ExampleSpec
    from training.nsynth import Note

    def note(i: int, family: str, real: bool) -> Note:
        return Note(
            f"n{i}",
            Path(f"n{i}.wav"),
            i,
            10 * FAMILIES.index(family) + real,
            f"i{i}",
            60,
            100,
            16000,
            0,
            family,
            0,
            "acoustic",
            (),
            (),
            {"library": "lib"} if real else {},
        )

    notes = [
        note(i, fam, real)
        for i, (fam, real) in enumerate(
            [("reed", True), ("reed", False), ("brass", True), ("brass", False)] * 3
        )
    ]
    saved = (dataset._NOTES, dataset._TABLE, dataset._REAL, dataset._FONT, dataset._IRS, dataset._OTHERS)
    try:
        dataset._init(notes)
        spec = ExampleSpec("train", 1, 0, real_prob=0.5, real_prob_family=(("reed", 0.0),))
        rng = np.random.default_rng(0)
        drawn = {
            f: [dataset.is_real(notes[dataset._pick(rng, spec, FAMILIES.index(f))]) for _ in range(400)]
            for f in ("reed", "brass")
        }
        assert not any(drawn["reed"])  # reed: never its real instruments
        assert 0.4 < np.mean(drawn["brass"]) < 0.6  # brass: real_prob as before
    finally:  # the module's worker state, as other tests left it
        (dataset._NOTES, dataset._TABLE, dataset._REAL, dataset._FONT, dataset._IRS, dataset._OTHERS) = saved


def test_the_trainer_checks_its_numbers_and_keeps_earlier_results(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A training-tools audit: --lr nan trained a model of NaN weights, saved it and exited 0;
    --batch-size 0 was a ZeroDivisionError after the example sets were built; a run with the
    default report folder replaced the shipped report of the same version; a rerun replaced the
    earlier run's model; a corpus without its test split failed after the whole training."""
    from training import train

    args = _tiny_run_args(trained["corpus"], trained["root"] / "cache", "0.0.9")
    run = ["--model", "compact", "--out", str(tmp_path / "run"), "--report-dir", str(tmp_path / "report")]
    for flag, value, says in (
        ("--lr", "nan", "--lr must be a finite number > 0, got nan"),
        ("--batch-size", "0", "--batch-size must be an integer >= 1, got 0"),
        ("--epochs", "-1", "--epochs must be an integer >= 1"),
        ("--mix-prob", "5", "--mix-prob must be a chance in [0, 1]"),
        ("--distill", "0.3", "--distill needs --teacher"),
    ):
        with pytest.raises(SystemExit):
            train.main([*run, *args, flag, value])
        assert says in capsys.readouterr().err, flag
    # an earlier run's model and report are kept unless --force
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "compact.keras").write_bytes(b"an earlier run")
    assert train.main([*run, *args]) == 1
    err = capsys.readouterr().err
    assert "compact.keras: exists (an earlier run's model or results); pass --force" in err
    assert (tmp_path / "run" / "compact.keras").read_bytes() == b"an earlier run"
    (tmp_path / "run" / "compact.keras").unlink()
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "metrics.json").write_text("{}")
    assert train.main([*run, *args]) == 1
    assert "metrics.json: exists (an earlier run's report)" in capsys.readouterr().err
    # a corpus without its test split is said before anything is built
    import shutil

    shutil.copytree(trained["corpus"], tmp_path / "notest", ignore=shutil.ignore_patterns("test"))
    assert train.main([*run, *args, "--corpus", str(tmp_path / "notest"), "--force"]) == 1
    assert "no test/examples.json" in capsys.readouterr().err
    # a loss that blows up ends the run with one line, nothing of that epoch saved
    assert train.main([*run, *args, "--lr", "3e38", "--force"]) == 1
    err = capsys.readouterr().err
    assert "the training loss became" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "compact.keras").exists()


def test_a_corpus_rendered_again_is_not_served_old_features(trained: dict[str, Path], tmp_path: Path) -> None:
    """The example cache was keyed by the note names only: a corpus whose audio was replaced under
    the same names got the old renders' features back (a tools audit)."""
    import shutil

    import soundfile as sf

    from training.dataset import ExampleSpec, cached_examples

    corpus = tmp_path / "corpus"
    shutil.copytree(trained["corpus"], corpus)
    spec = ExampleSpec("valid", 8, 7, balanced=False, random_crop=False)
    first = cached_examples(corpus, spec, tmp_path / "cache", progress=False, workers=1)
    assert np.asarray(first.X).max() > 0
    again = cached_examples(corpus, spec, tmp_path / "cache", progress=False, workers=1)
    assert np.array_equal(np.asarray(again.X), np.asarray(first.X))  # unchanged: served from the cache
    for wav in (corpus / "valid" / "audio").glob("*.wav"):
        y, sr = sf.read(wav)
        sf.write(wav, np.zeros_like(y), sr)
    silent = cached_examples(corpus, spec, tmp_path / "cache", progress=False, workers=1)
    assert np.asarray(silent.X).max() == 0.0


def test_an_interrupted_run_resumes_after_its_last_finished_epoch(
    trained: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A run stopped by Ctrl-C lost every epoch but the best one's weights (the large model's
    first run ended after an epoch and had to be restarted by hand from ``large.best.keras``):
    every finished epoch is now a checkpoint, and ``--resume`` continues as if nothing had
    stopped — the same batches, optimizer steps, schedule and selection as an uninterrupted run."""
    import keras

    from training import train

    args = [
        *_tiny_run_args(trained["corpus"], trained["root"] / "cache", "0.0.8"),
        "--no-test",
        "--epochs",
        "3",
        "--average-epochs",
        "2",
        "--patience",
        "9",
    ]

    def run(name: str) -> list[str]:
        return [
            "--model",
            "compact",
            "--out",
            str(tmp_path / name),
            "--report-dir",
            str(tmp_path / f"report-{name}"),
        ]

    assert train.main([*run("whole"), *args]) == 0
    capsys.readouterr()

    scores = train.epoch_scores
    calls = {"n": 0}

    def interrupted(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # Ctrl-C while the second epoch is scored: one epoch has finished
            raise KeyboardInterrupt
        return scores(*a, **k)

    monkeypatch.setattr(train, "epoch_scores", interrupted)
    assert train.main([*run("cut"), *args]) == 130
    err = capsys.readouterr().err
    assert "interrupted; the run's last finished epoch is kept in" in err and "--resume" in err
    state = json.loads((tmp_path / "cut" / "resume.json").read_text())
    assert state["epoch"] == 1 and not state["ended"] and (tmp_path / "cut" / state["arrays"]).is_file()
    monkeypatch.setattr(train, "epoch_scores", scores)
    assert train.main([*run("cut"), *args]) == 1  # started again without a word: refused
    assert "an interrupted run is there (resume.json): continue it with --resume" in capsys.readouterr().err

    # other options than the run's are refused, naming them
    assert train.main([*run("cut"), *args, "--lr", "1e-4", "--resume"]) == 1
    assert "--lr 0.002 there, 0.0001 now" in capsys.readouterr().err
    assert train.main([*run("nothing"), *args, "--resume"]) == 1
    assert "resume.json not found" in capsys.readouterr().err

    assert train.main([*run("cut"), *args, "--resume"]) == 0
    assert "resuming after epoch 1/3" in capsys.readouterr().out
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    cut = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    for key in ("best_epoch", "best_score", "epochs_run", "thresholds", "averaged", "valid"):
        assert cut[key] == whole[key], key
    hw = json.loads((tmp_path / "whole" / "history.json").read_text())
    hc = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert hc["loss"] == hw["loss"] and hc["score"] == hw["score"] and len(hc["score"]) == 3
    a = keras.models.load_model(tmp_path / "whole" / "compact.keras", compile=False).get_weights()
    b = keras.models.load_model(tmp_path / "cut" / "compact.keras", compile=False).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    # finished: the checkpoint is gone, and a finished run is not resumed
    assert not (tmp_path / "cut" / "resume.json").exists()
    assert not list((tmp_path / "cut").glob("*.resume-*.npz"))
    assert train.main([*run("cut"), *args, "--resume"]) == 1
    assert "has finished" in capsys.readouterr().err
