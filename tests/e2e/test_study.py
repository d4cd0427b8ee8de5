"""The regularization study end to end: the real `python -m study.run` and `study.summarize` on a tiny
archive in a copy of the project. Its pure parts are tested in tests/unit/test_study.py.

Before the study proper, a first study in the same copy is stopped with Ctrl-C while it trains:
it must leave no process behind, and the study proper, started right after, must run normally.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from study.run import grid_points
from tests.support.data import make_reviews, write_aclimdb_archive
from tests.support.processes import describe, kill_all_under, processes_under, read_until, wait_until_none_under
from tests.support.project import ALL_STAGES, copy_pipeline, pipeline_environment, run_dvc, run_in, stages_run

# One rate keeps it to six trainings (each pays TensorFlow's start-up).
STUDY_RATE = 0.1
# How long everything a stopped command started may take to end.
STOP_SECONDS = 10
TIMEOUT_SECONDS = 300
# Logged by the train stage once TensorFlow is up and the network built.
TRAINING_STARTED = "stages.train: training "


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = copy_pipeline(
        tmp_path_factory.mktemp("study") / "project",
        {"train.epochs": 1, "train.batch_size": 10, "train.hidden_units": [8]},
    )
    # Untracked and named by a relative path: queued experiments only find it if the study makes it absolute.
    write_aclimdb_archive(repo / "tiny_aclImdb.tar.gz", make_reviews(20))
    # Another archive for the stopped study, so nothing it computed is in the run-cache for the study proper.
    write_aclimdb_archive(repo / "other_aclImdb.tar.gz", make_reviews(15))
    return repo


@pytest.fixture(scope="module")
def stopped(repo) -> dict:
    """A study of long trainings, stopped with Ctrl-C once they train: how it ended and what was left running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "study.run", "--rates", str(STUDY_RATE), "--seeds", "1", "--jobs", "2"]
        + ["-S", "data.source=aclimdb", "-S", "data.url=other_aclImdb.tar.gz", "-S", "train.epochs=1000"],
        cwd=repo,
        env=pipeline_environment(repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a shell runs a job
    )
    try:
        output = read_until(process, TRAINING_STARTED, TIMEOUT_SECONDS)
        running = processes_under(repo)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the job's whole group
        started = time.monotonic()
        output += process.communicate(timeout=STOP_SECONDS)[0].decode()
        ended_after = time.monotonic() - started
        left = wait_until_none_under(repo, STOP_SECONDS - ended_after)
    finally:
        kill_all_under(repo)
    queue = run_dvc(repo, "queue", "status")
    return {"code": process.returncode, "output": output, "running": running, "left": left, "queue": queue}


def test_ctrl_c_ends_the_study_and_every_experiment_and_worker_it_started(stopped):
    assert any("stages.train" in command for command in stopped["running"].values()), describe(stopped["running"])
    assert any("queue-worker" in command for command in stopped["running"].values()), describe(stopped["running"])
    # Before, the queue workers and their trainings ran on, and the next study could not take DVC's lock.
    assert stopped["left"] == {}, f"still running after Ctrl-C:\n{describe(stopped['left'])}"
    assert stopped["code"] == 128 + signal.SIGINT
    assert "study.run: stopped by SIGINT; outputs not yet complete were deleted" in stopped["output"]
    assert "Traceback" not in stopped["output"]
    # No task of the stopped study waits in the queue to run with the next one.
    assert "Queued" not in stopped["queue"] and "Running" not in stopped["queue"], stopped["queue"]


@pytest.fixture(scope="module")
def study(repo, stopped) -> tuple[Path, str]:
    """The repo after `study.run` (1 rate x 2 seeds), run right after the stopped one, and `study.summarize`."""
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
    assert stages_run(output) == ALL_STAGES - {"plots"}  # each point targets evaluate@<model>
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
