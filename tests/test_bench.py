"""A smoke test of the benchmark's harness on tiny data: its measurements, its reference script, its report.

The benchmark itself (`python -m bench.run`) takes minutes and is not part of the test suite.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.encoding import compare_encoders
from bench.notebook import as_lists, read_ranked, sequences_shaping
from bench.project import copy_project
from bench.report import markdown, summarize
from bench.run import BenchError, Measured, measure
from stages.encode import encode_aclimdb, index_reviews, iter_reviews, keras_indices, multi_hot
from tests.conftest import make_reviews, write_aclimdb_archive

TINY_MODELS = {"basic": {"regularizer": "none", "rate": 0.0}, "l1": {"regularizer": "l1", "rate": 0.001}}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return write_aclimdb_archive(tmp_path_factory.mktemp("archive") / "tiny_aclImdb.tar.gz", make_reviews(10))


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def repo(tmp_path_factory, archive) -> Path:
    return copy_project(
        tmp_path_factory.mktemp("bench") / "project",
        {
            "data.source": "aclimdb",
            "data.url": str(archive),
            "train.epochs": 1,
            "train.batch_size": 10,
            "train.hidden_units": [8],
            "models": TINY_MODELS,
        },
    )


@pytest.fixture(scope="module")
def encoded(repo, logs) -> Measured:
    """`dvc repro encode` in the tiny project, measured: the data the reference scripts train on."""
    return measure([sys.executable, "-m", "dvc", "repro", "encode"], name="repro", cwd=repo, logs=logs)


def test_each_stage_records_its_time_memory_and_imports(encoded, logs):
    assert set(encoded.processes) == {"repro", "fetch", "encode"}
    for record in encoded.processes.values():
        assert record["seconds"] > 0 and 10 < record["peak_rss_mb"] < 2000
        assert record["tensorflow"] is False
    assert "Running stage 'encode'" in (logs / "repro.log").read_text()


def test_a_process_that_imports_tensorflow_is_flagged(tmp_path):
    # Registering a module under that name is all the check looks at, and costs no start-up.
    run = measure(
        ["python", "-c", "import sys; sys.modules['tensorflow'] = sys"], name="fake", cwd=tmp_path, logs=tmp_path
    )
    assert run.processes["fake"]["tensorflow"] is True


def test_a_process_that_leaves_through_os_exit_is_recorded_too(tmp_path):
    # As the train stage does, to spare TensorFlow's teardown.
    run = measure(["python", "-c", "import os; os._exit(0)"], name="quick", cwd=tmp_path, logs=tmp_path)
    assert run.processes["quick"]["peak_rss_mb"] > 0


def test_a_failing_command_is_reported_with_its_output(tmp_path):
    with pytest.raises(BenchError, match="(?s)exit 3.*the reason"):
        measure(["python", "-c", "print('the reason'); raise SystemExit(3)"], name="fail", cwd=tmp_path, logs=tmp_path)


def test_the_notebook_loop_and_the_encode_stage_give_the_same_rows(archive):
    for ranks, _ in read_ranked(archive).values():
        indices = keras_indices(ranks, 30)
        np.testing.assert_array_equal(sequences_shaping(as_lists(indices), 30), multi_hot(indices, 30))
    # The reference ranks words with its own plain code: it must train on exactly the encode stage's arrays.
    stage_arrays, _ = encode_aclimdb(index_reviews(iter_reviews(archive), archive, workers=1), num_words=30)
    for split, (ranks, labels) in read_ranked(archive).items():
        reference_rows = sequences_shaping(as_lists(keras_indices(ranks, 30)), 30)
        np.testing.assert_array_equal(reference_rows, stage_arrays[f"x_{split}"])
        np.testing.assert_array_equal(labels, stage_arrays[f"y_{split}"])
    timings = compare_encoders(archive, (30, 300))
    assert set(timings[30]) == {"pipeline_seconds", "notebook_seconds"} and set(timings[300]) == {"pipeline_seconds"}


def test_the_reference_scripts_run_on_tiny_data(repo, encoded, archive, tmp_path):
    notebook = tmp_path / "notebook.json"
    measure(
        ["python", "-m", "bench.notebook", str(archive), "--timings", str(notebook)],
        name="notebook",
        cwd=repo,
        logs=tmp_path,
    )
    recorded = json.loads(notebook.read_text())
    assert list(recorded["seconds_by_phase"]) == [
        "read and tokenize",
        "encode (per-row loop)",
        "import tensorflow",
        "train basic",
        "train l1",
    ]
    assert set(recorded["scores"]) == set(TINY_MODELS)

    training = tmp_path / "training.json"
    measure(
        ["python", "-m", "bench.training", "--data", "data/encoded", "--model", "l1", "--out", str(training)],
        name="training",
        cwd=repo,
        logs=tmp_path,
    )
    variants = json.loads(training.read_text())
    assert variants[0]["variant"] == "bare model.fit" and variants[0]["max_val_loss_difference"] == 0
    assert all(variant["samples_per_second"] > 0 for variant in variants)


def _results(notebook_seconds: float) -> dict:
    """Results shaped like `bench.run.run_benchmark`'s, with round numbers."""
    stage = {"seconds": 1.0, "peak_rss_mb": 100.0, "tensorflow": False}
    fit = {"seconds": 1.0, "samples_per_second": 1000, "max_val_loss_difference": 0.0, "val_loss": [0.5]}
    return {
        "notebook": {"seconds": notebook_seconds, "seconds_by_phase": {"import tensorflow": 7.0}},
        "cold": {
            "seconds": 60.0,
            "stage_seconds": 50.0,
            "stages": {"encode": stage, "train@l1": {**stage, "tensorflow": True}},
        },
        "parallel_cold": {
            "seconds": 40.0,
            "jobs": 2,
            "stages": {"train@l1": stage},
            "lock_differences": [],
            "metrics_identical": True,
        },
        "noop": {"repeats": 5, "repro_seconds": 1.5, "status_seconds": 1.2},
        "one_change": {
            "model": "l1",
            "rate": 0.002,
            "seconds": 20.0,
            "stages_run": ["train@l1", "evaluate@l1", "plots"],
        },
        "encode": {
            100: {"seconds": 10.0, "peak_rss_mb": 300.0, "pipeline_seconds": 0.01, "notebook_seconds": 1.0},
            1000: {"seconds": 11.0, "peak_rss_mb": 350.0, "pipeline_seconds": 0.05},
            10000: {"seconds": 20.0, "peak_rss_mb": 900.0, "pipeline_seconds": 0.5},
        },
        "training": [
            {**fit, "variant": "bare model.fit"},
            {**fit, "variant": "train stage", "samples_per_second": 2000},
        ],
        "load_average": {"before": (1.0, 1.0, 1.0), "after": (2.0, 1.0, 1.0)},
    }


def test_the_report_marks_each_target_met_or_not():
    met = {target["target"]: target["met"] for target in summarize(_results(notebook_seconds=70.0))["targets"]}
    assert met == {
        "cold `dvc repro` ÷ notebook ≤ 1.0": True,
        "cold, parallel trainings ÷ notebook ≤ 0.6": True,
        "parallel run leaves dvc.lock and metrics as the sequential one": True,
        "one change ÷ notebook ≤ 0.3": True,
        "one change reruns only train@l1, evaluate@l1, plots": True,
        "no-op `dvc repro` ≤ 1.5 × `dvc status`": True,
        "encode's multi-hot ≥ 20 × the notebook's loop at num_words=100": True,
        "encode time and peak RSS grow no faster than num_words (× [10.0, 10.0])": True,
        "no stage but train imports TensorFlow": True,
        "train stage's fit ≥ bare `model.fit` (samples/s, same val losses)": True,
    }
    slower_notebook = summarize(_results(notebook_seconds=50.0))["targets"]
    assert [target["met"] for target in slower_notebook][:4] == [False, False, True, False]


def test_the_markdown_report_shows_targets_and_ratios():
    results = _results(notebook_seconds=50.0)
    table = markdown(summarize(results), results)
    assert "| cold `dvc repro` ÷ notebook ≤ 1.0 | 1.20 | **not met** |" in table
    assert "| cold `python -m stages.parallel -j 2` (trainings at once) | 40.0 | 0.80 |" in table
    assert "| `train@l1` | 1.0 | 100 | yes | 1.0 |" in table
    assert "1-minute load average 1.0 before the run, 2.0 after" in table


def test_the_train_stage_predicts_in_one_call_what_model_predict_gives():
    """The speed change in stages.train: one forward pass instead of `model.predict`, the same probabilities."""
    from stages.model import build_model, predict_probabilities, seed_everything
    from stages.params import RegularizerSpec

    seed_everything(0)
    model = build_model(num_words=50, hidden_units=(16, 16), spec=RegularizerSpec("l2", 0.001))
    x = np.random.default_rng(0).integers(0, 2, size=(1234, 50)).astype(np.float32)
    expected = model.predict(x, batch_size=500, verbose=0)[:, 0]
    np.testing.assert_allclose(predict_probabilities(model, x), expected, rtol=0, atol=1e-6)
