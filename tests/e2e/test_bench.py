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
from tools.bench.run import Measured, measure
from tools.project import copy_project

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
