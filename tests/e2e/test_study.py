"""The regularization study end to end: the real `python -m study.run` and `study.summarize` on a tiny
archive in a copy of the project. Its pure parts are tested in tests/unit/test_study_run.py and test_summarize.py.

Before the study proper, a first study in the same copy is stopped while it trains, by Ctrl-C,
SIGTERM and kill -9 in turn: each must leave no process and no experiment workspace behind, and
the study proper, started right after, must run normally.
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

from study.grid import parse_rates, plan
from tests.support.data import make_reviews, write_aclimdb_archive
from tests.support.processes import describe, kill_all_under, processes_under, wait_until_none_under
from tests.support.project import copy_pipeline, pipeline_environment, run_dvc, run_in, stages_run

# One rate at two widths keeps it to twelve trainings (each pays TensorFlow's start-up).
STUDY_RATE = 0.1
WIDTHS = (20, 40)
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


def _wait_for_training(repo: Path, process: subprocess.Popen) -> None:
    """Until a log of the study's experiments says a training has begun; the study must not end before."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    logs = repo / ".dvc" / "tmp" / "study"
    while not any(TRAINING_STARTED in path.read_text() for path in logs.glob("study-*.log")):
        assert process.poll() is None, "the study ended before any training began"
        assert time.monotonic() < deadline, "no training began"
        time.sleep(0.2)


# How each stop reaches the study: Ctrl-C signals a terminal's whole job (the study's group);
# SIGTERM (a service manager, `kill`) and SIGKILL reach the study's own process only.
STOPS = {"ctrl-c": signal.SIGINT, "sigterm": signal.SIGTERM, "kill -9": signal.SIGKILL}


def _stop_a_study(repo: Path, how: str) -> dict:
    """A study of long trainings, stopped once they train: how it ended and what it left running or on disk."""
    output_path = repo.parent / f"stopped-study-{how}.log"
    with output_path.open("wb") as output_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "study.run", "--rates", str(STUDY_RATE), "--seeds", "1", "--jobs", "2"]
            + ["-S", "data.source=aclimdb", "-S", "data.url=other_aclImdb.tar.gz", "-S", "train.epochs=1000"],
            cwd=repo,
            env=pipeline_environment(repo),
            stdout=output_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a shell runs a job
        )
    try:
        _wait_for_training(repo, process)
        running = processes_under(repo)
        if how == "ctrl-c":
            os.killpg(process.pid, STOPS[how])
        else:
            process.send_signal(STOPS[how])
        started = time.monotonic()
        process.wait(timeout=STOP_SECONDS)
        ended_after = time.monotonic() - started
        left = wait_until_none_under(repo, STOP_SECONDS - ended_after)
    finally:
        kill_all_under(repo)
    for path in (repo / ".dvc" / "tmp" / "study").glob("study-*.log"):
        path.unlink()  # the next stop waits for its own training
    return {
        "code": process.returncode,
        "output": output_path.read_text(),
        "running": running,
        "left": left,
        # An experiment DVC could not clean up is listed as running forever, and its workspace stays.
        "listed as running": [
            line for line in run_dvc(repo, "exp", "show", "--csv").splitlines() if ",Running," in line
        ],
        "workspaces": sorted(path.name for path in (repo / ".dvc" / "tmp" / "exps" / "standalone").glob("tmp*")),
    }


@pytest.fixture(scope="module")
def stopped(repo) -> dict[str, dict]:
    """Each kind of stop, in turn, of a study of long trainings."""
    return {how: _stop_a_study(repo, how) for how in STOPS}


@pytest.mark.parametrize("how", STOPS)
def test_a_stop_ends_the_study_and_every_experiment_it_started_and_leaves_none_running(stopped, how):
    stop = stopped[how]
    assert any("stages.train" in command for command in stop["running"].values()), describe(stop["running"])
    assert stop["left"] == {}, f"still running after {how}:\n{describe(stop['left'])}"
    assert stop["listed as running"] == [] and stop["workspaces"] == []
    assert stop["code"] == (-signal.SIGKILL if how == "kill -9" else 128 + STOPS[how])
    if how != "kill -9":
        assert f"study.run: stopped by {STOPS[how].name}; outputs not yet complete were deleted" in stop["output"]
        assert "Traceback" not in stop["output"]


def _study(repo: Path, rates: str) -> str:
    """`study.run` at the two widths and two seeds, on the tiny archive; what it printed, then each experiment's log."""
    arguments = ["--num-words", ",".join(map(str, WIDTHS)), "--rates", rates, "--seeds", "2", "--jobs", "2"]
    arguments += ["-S", "data.source=aclimdb", "-S", "data.url=tiny_aclImdb.tar.gz"]
    printed = run_in(repo, sys.executable, "-m", "study.run", *arguments)
    names = [experiment.name for experiment in plan(WIDTHS, parse_rates(rates), seeds=2, first_seed=42)]
    logs = [repo / ".dvc" / "tmp" / "study" / f"{name}.log" for name in names]
    return printed + "".join(path.read_text() for path in logs)


@pytest.fixture(scope="module")
def study(repo, stopped) -> tuple[Path, str]:
    """The repo after `study.run` (2 widths x 1 rate x 2 seeds), run right after the stopped one, and summarized."""
    output = _study(repo, str(STUDY_RATE))
    run_in(repo, sys.executable, "-m", "study.summarize")
    return repo, output


def test_the_study_runs_each_width_and_seed_as_one_named_experiment_of_its_points(study):
    repo, output = study
    experiments = plan(WIDTHS, (STUDY_RATE,), seeds=2, first_seed=42)
    assert set(run_dvc(repo, "exp", "list", "--name-only").split()) == {experiment.name for experiment in experiments}
    points = [point for experiment in experiments for point in experiment.points]
    # First, showing what the study printed (it comes first): a failed experiment's log tail adds to the counts below.
    assert f"study: {len(points)}/{len(points)} points done, 0 running, 0 failed" in output, output[:6000]
    assert output.count("Running stage 'train@") == len(points) == 12
    assert stages_run(output) == {"fetch", "encode"} | {
        f"{stage}@{key}" for stage in ("train", "evaluate") for key in ("basic", "l1_0p1", "l2_0p1")
    }
    # Each width is encoded once: its second experiment starts after the first has the encoded data.
    assert output.count("Running stage 'encode'") == len(WIDTHS)
    assert output.count("Running stage 'fetch'") == 1


def test_the_summary_averages_each_points_seeds_and_chooses_rates_on_validation(study):
    repo, _ = study
    results = repo / "study" / "results"
    points, summary = _read_csv(results / "points.csv"), _read_csv(results / "summary.csv")
    assert len(points) == 12
    assert all(point["val_bce"] for point in points)  # every point scored on the shared held-out split
    assert [(row["width"], row["model"], row["seeds"]) for row in summary] == [
        (str(width), model, "2") for width in WIDTHS for model in ("basic", "l1", "l2")
    ]
    for row in summary:
        scores = [
            float(point["test_bce"])
            for point in points
            if (point["width"], point["model"], point["rate"]) == (row["width"], row["model"], row["rate"])
        ]
        assert float(row["test_bce_mean"]) == pytest.approx(np.mean(scores), abs=1e-4)
        assert float(row["test_bce_std"]) == pytest.approx(np.std(scores, ddof=1), abs=1e-4)
    assert len(_read_csv(results / "chosen.csv")) == len(_read_csv(results / "widths.csv")) == 3 * len(WIDTHS)
    assert len(_read_csv(results / "plot.csv")) == 3 * len(WIDTHS)
    for picture in ("study.png", "widths.png"):
        assert (results / picture).read_bytes().startswith(b"\x89PNG")
    markdown = (results / "summary.md").read_text()
    assert markdown.count("### Verdict") == len(WIDTHS)
    assert "wins" in markdown or "No clear winner" in markdown


def test_adding_a_rate_to_a_finished_study_runs_only_the_new_points(study):
    repo, _ = study
    output = _study(repo, f"{STUDY_RATE},0.01")
    assert stages_run(output) == {f"{stage}@{key}" for stage in ("train", "evaluate") for key in ("l1_0p01", "l2_0p01")}
    # Two new points in each of the four experiments; the six old ones each come from the run-cache.
    assert output.count("Running stage 'train@") == 4 * 2
    assert output.count("Stage 'train@basic' is cached") == 4
    assert len(run_dvc(repo, "exp", "list", "--name-only").split()) == 4
