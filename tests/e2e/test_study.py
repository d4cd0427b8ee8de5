"""The regularization study end to end: the real `python -m study.run` and `study.summarize` on a tiny
archive in a copy of the project. Its pure parts are tested in tests/unit/test_study.py.
"""

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from study.run import grid_points
from tests.support.data import make_reviews, write_aclimdb_archive
from tests.support.project import copy_pipeline, run_dvc, run_in, stages_run

# One rate keeps it to six trainings (each pays TensorFlow's start-up).
STUDY_RATE = 0.1


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, str]:
    """A temporary repo after `study.run` (1 rate x 2 seeds) and `study.summarize`, and the run's output."""
    repo = copy_pipeline(
        tmp_path_factory.mktemp("study") / "project",
        {"train.epochs": 1, "train.batch_size": 10, "train.hidden_units": [8]},
    )
    # Untracked and named by a relative path: queued experiments only find it if the study makes it absolute.
    write_aclimdb_archive(repo / "tiny_aclImdb.tar.gz", make_reviews(20))
    output = run_in(
        repo,
        sys.executable,
        "-m",
        "study.run",
        "--rates",
        str(STUDY_RATE),
        "--seeds",
        "2",
        "--jobs",
        "2",
        "-S",
        "data.source=aclimdb",
        "-S",
        "data.url=tiny_aclImdb.tar.gz",
    )
    run_in(repo, sys.executable, "-m", "study.summarize")
    return repo, output


def test_the_study_runs_every_point_as_a_named_experiment(study):
    repo, output = study
    expected = {point.name for point in grid_points((STUDY_RATE,), seeds=2, first_seed=42)}
    assert set(run_dvc(repo, "exp", "list", "--name-only").split()) == expected
    assert output.count("Running stage 'train@") == len(expected)
    assert stages_run(output) == {
        "fetch",
        "encode",
        "train@basic",
        "train@l1",
        "train@l2",
        "evaluate@basic",
        "evaluate@l1",
        "evaluate@l2",
    }
    assert output.count("Running stage 'encode'") <= 2  # at most once per worker; after that the run-cache has it


def test_the_summary_averages_each_points_seeds(study):
    repo, _ = study
    results = repo / "study" / "results"
    points, summary = _read_csv(results / "points.csv"), _read_csv(results / "summary.csv")
    assert len(points) == 6
    assert [(row["model"], row["seeds"]) for row in summary] == [("basic", "2"), ("l1", "2"), ("l2", "2")]
    for row in summary:
        scores = [
            float(point["test_bce"])
            for point in points
            if (point["model"], point["rate"]) == (row["model"], row["rate"])
        ]
        assert float(row["test_bce_mean"]) == pytest.approx(np.mean(scores), abs=1e-4)
        assert float(row["test_bce_std"]) == pytest.approx(np.std(scores, ddof=1), abs=1e-4)
    assert (results / "study.png").stat().st_size > 10_000
    assert "Lowest mean test BCE" in (results / "summary.md").read_text()
    assert len(_read_csv(results / "plot.csv")) == 3


def test_rerunning_points_restores_them_from_the_run_cache(study):
    repo, _ = study
    output = run_in(
        repo,
        sys.executable,
        "-m",
        "study.run",
        "--rates",
        str(STUDY_RATE),
        "--seeds",
        "1",
        "-S",
        "data.source=aclimdb",
        "-S",
        "data.url=tiny_aclImdb.tar.gz",
    )
    assert stages_run(output) == set()
    assert all(f"Stage 'train@{model}' is cached" in output for model in ("basic", "l1", "l2"))
    assert len(run_dvc(repo, "exp", "list", "--name-only").split()) == 6
