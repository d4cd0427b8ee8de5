"""A smoke test of the benchmark's harness on a tiny copy of the project: each stage measured by the
real `dvc repro`, and the reference scripts run on its data.

The benchmark itself (`python -m tools.bench.run`) takes minutes and is not part of the test suite; the
parts of the harness that need no `dvc` are tested in tests/unit/test_bench.py.
"""

import json
import sys
from pathlib import Path

import pytest

from tests.support.data import make_reviews, write_aclimdb_archive
from tools.bench import run as run_module
from tools.bench.run import Benchmark, Measured, StudyGrid, measure
from tools.project import copy_project

TINY_MODELS = {"basic": {"regularizer": "none", "rate": 0.0}, "l1": {"regularizer": "l1", "rate": 0.001}}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return write_aclimdb_archive(tmp_path_factory.mktemp("archive") / "tiny_aclImdb.tar.gz", make_reviews(10))


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


TINY_PARAMS = {
    "data.source": "aclimdb",
    "data.url": None,  # the archive, set by the fixtures
    "train.epochs": 1,
    "train.batch_size": 10,
    "train.hidden_units": [8],
    "models": TINY_MODELS,
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory, archive) -> Path:
    return copy_project(tmp_path_factory.mktemp("bench") / "project", {**TINY_PARAMS, "data.url": str(archive)})


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


def test_the_reference_scripts_run_on_tiny_data(repo, encoded, archive, tmp_path):
    notebook = tmp_path / "notebook.json"
    measure(
        ["python", "-m", "tools.bench.notebook", str(archive), "--timings", str(notebook)],
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
        ["python", "-m", "tools.bench.training", "--data", "data/encoded", "--model", "l1", "--out", str(training)],
        name="training",
        cwd=repo,
        logs=tmp_path,
    )
    variants = json.loads(training.read_text())
    assert variants[0]["variant"] == "bare model.fit" and variants[0]["max_val_loss_difference"] == 0
    assert all(variant["samples_per_second"] > 0 for variant in variants)


def test_a_scale_row_measures_notebook_parallel_run_train_and_floor(archive, tmp_path, monkeypatch):
    """One width of the scale phase, wide enough (300 columns for about ten words a review) to train sparse."""
    monkeypatch.setattr(run_module, "FLOOR_WIDTH", 300)
    monkeypatch.setattr(run_module, "TRAIN_REPEATS", 2)
    bench = Benchmark(archive, tmp_path, {key: value for key, value in TINY_PARAMS.items() if key != "data.url"})
    row = bench.scale_width(300, "l1", notebook_ceiling_mb=8_000)
    assert row["num_words"] == 300 and row["train"]["input"] == "sparse"
    runs = row["train"]["runs_seconds"]
    assert len(runs) == 2 and row["train"]["seconds"] == pytest.approx(sum(runs) / 2, abs=1e-3)  # their median
    assert row["notebook"]["out_of_memory"] is False and row["notebook"]["peak_rss_mb"] > 100
    parallel = row["parallel"]
    assert parallel["jobs"] >= 1 and parallel["peak_pss_mb"] > row["train"]["peak_rss_mb"] / 2
    assert {"encode", "train@basic", "train@l1", "plots"} <= set(parallel["stages"])
    floor = row["floor"]
    assert floor["num_words"] == 300 and 0 < floor["floor_seconds"] <= floor["start_up_seconds"] + 1
    assert floor["products_seconds"] > 0 and floor["kernel_update_seconds"] > 0
    assert floor["memory_rate_gbs"] > 0 and 0 < floor["floor_kernel_update_seconds"] < floor["floor_seconds"]
    assert floor["batching_seconds"] > 0
    fits = [
        "fit_seconds",
        "fit_one_batch_seconds",
        "fit_keras_adam_seconds",
        "fit_one_batch_keras_adam_seconds",
        "fit_free_products_seconds",
        "fit_without_penalty_seconds",
        "fit_descent_seconds",
        "fit_without_first_layer_costs_seconds",
    ]
    assert all(floor[fit] > 0 for fit in fits)
    assert all(len(runs) == floor["fit_rounds"] for runs in floor["fit_runs_seconds"].values())
    assert not (tmp_path / "scale-300").exists()  # each width's copy goes once measured


def test_the_study_row_counts_every_new_point_of_a_tiny_study(archive, tmp_path):
    """`study.run` on one seed of three points: its stages reach the hook through `dvc exp run --temp`."""
    bench = Benchmark(archive, tmp_path, {key: value for key, value in TINY_PARAMS.items() if key != "data.url"})
    row = bench.study(StudyGrid(rates="1e-3", seeds=1, jobs=1))
    assert row["revision"] is None and row["num_words"] == 100 and row["points"] == 3
    assert row["train_runs"] == row["evaluate_runs"] == 3
    assert 0 < row["train_seconds"] + row["evaluate_seconds"] < row["seconds"]
