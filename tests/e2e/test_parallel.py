"""`python -m tools.parallel`: the trainings at the same time, with DVC's bookkeeping as if run one by one.

Two copies of the project run on a tiny archive, one with a plain `dvc repro`, one with the
parallel command; their dvc.lock, .gitignore files and metrics must match. Then a training that
diverges must be reported while the other one is recorded, and a stop signal must end both
trainings at once.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.data import make_reviews, write_aclimdb_archive
from tests.support.processes import describe, kill_all_under, processes_under, wait_until_none_under
from tests.support.project import (
    copy_pipeline,
    module_result,
    pipeline_environment,
    run_dvc,
    stages_changed,
    stages_run,
)
from tools.project import lock_differences, set_params

MODELS = {"basic": {"regularizer": "none", "rate": 0.0}, "l2": {"regularizer": "l2", "rate": 0.001}}
# The params of the first run (besides the data), which the last test returns to.
TINY = {
    "train.epochs": 1,
    "train.batch_size": 10,
    "train.hidden_units": [8],
    "train.optimizer": "adam",
    "train.learning_rate": 0.001,
    "models": MODELS,
}
# How long everything a stopped command started may take to end.
STOP_SECONDS = 10
# Trainings this long (about a minute each on the tiny data) would still run long after STOP_SECONDS.
LONG_EPOCHS = 1000
TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parallel")
    archive = write_aclimdb_archive(root / "tiny_aclImdb.tar.gz", make_reviews(10))
    tiny = {"data.source": "aclimdb", "data.url": str(archive), **TINY}
    repos = {name: copy_pipeline(root / name, tiny) for name in ("sequential", "parallel")}
    run_dvc(repos["sequential"], "repro")
    result = module_result(repos["parallel"], "tools.parallel", "--jobs", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    (repos["parallel"] / "parallel.log").write_text(result.stdout + result.stderr)
    return repos


def test_each_training_ran_with_its_evaluation_beside_the_other_then_the_rest(repos):
    output = (repos["parallel"] / "parallel.log").read_text()
    assert "running train@basic, evaluate@basic; train@l2, evaluate@l2, 2 at a time" in output
    assert stages_run(output) == {"fetch", "encode", "plots"}
    for model in ("basic", "l2"):
        log = (repos["parallel"] / ".dvc/tmp/parallel" / f"train@{model}.log").read_text()
        assert stages_run(log) == {f"train@{model}", f"evaluate@{model}"}


def test_dvc_lock_gitignore_and_metrics_match_a_sequential_run(repos):
    sequential, parallel = repos["sequential"], repos["parallel"]
    assert lock_differences(sequential, parallel) == []
    for name in ("models/.gitignore", "data/.gitignore", "metrics/basic.json", "metrics/l2.json", "plots/test.csv"):
        assert (sequential / name).read_bytes() == (parallel / name).read_bytes(), name


def test_a_plain_repro_afterwards_runs_nothing(repos):
    output = run_dvc(repos["parallel"], "repro")
    assert stages_run(output) == set()
    assert "Data and pipelines are up to date" in output


def test_a_diverging_training_is_reported_and_the_other_one_recorded(repos):
    repo = repos["parallel"]
    # Plain gradient steps of 1.0 on the largest L2 penalty multiply the weights by -19 each step: the loss
    # becomes infinite within ten epochs, so train raises TrainingError. Without a penalty, the loss stays finite.
    set_params(
        repo,
        {
            "train.epochs": 10,
            "train.optimizer": "sgd",
            "train.learning_rate": 1.0,
            "models.l2": {"regularizer": "l2", "rate": 10},
            "models.basic": {"regularizer": "none", "rate": 0.5},
        },
    )
    result = module_result(repo, "tools.parallel")
    assert result.returncode == 1
    assert "train@l2, evaluate@l2 failed" in result.stderr
    assert "the loss became NaN or infinite" in result.stderr  # the end of its log, shown
    assert "train@basic, evaluate@basic done" in result.stderr
    changed = stages_changed(repo)
    assert "train@l2" in changed and "train@basic" not in changed and "evaluate@basic" not in changed
    assert "plots" in changed  # the rest of the pipeline waits for the fix


def _wait_for_both_trainings(repo: Path, runner: subprocess.Popen) -> None:
    """Poll the runner's per-chain logs until both stages log that training has begun."""
    logs = [repo / ".dvc/tmp/parallel" / f"train@{model}.log" for model in MODELS]
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not all(log.exists() and "stages.train: training " in log.read_text() for log in logs):
        assert runner.poll() is None, f"the runner ended first:\n{runner.communicate()}"
        assert time.monotonic() < deadline, "the trainings did not start in time"
        time.sleep(0.2)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_to_the_runner_ends_both_trainings_and_records_nothing(repos, stop_signal):
    repo = repos["parallel"]
    set_params(repo, {**TINY, "train.epochs": LONG_EPOCHS})
    lock_before = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    for old_log in (repo / ".dvc/tmp/parallel").glob("*.log"):
        old_log.unlink()  # the runs before logged training too
    runner = subprocess.Popen(
        [sys.executable, "-m", "tools.parallel", "--jobs", "2"],
        cwd=repo,
        env=pipeline_environment(repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for_both_trainings(repo, runner)
        os.kill(runner.pid, stop_signal)  # the runner alone, as `kill <pid>` does
        _, stderr = runner.communicate(timeout=STOP_SECONDS)
        # Before, SIGTERM ended the runner and left both `dvc repro --single-item` training.
        left = wait_until_none_under(repo, STOP_SECONDS)
        assert left == {}, f"still running after the stop:\n{describe(left)}"
    finally:
        kill_all_under(repo)
    assert runner.returncode == 128 + stop_signal
    assert f"stopped by {stop_signal.name}; outputs not yet complete were deleted" in stderr
    assert "Traceback" not in stderr
    for model in MODELS:
        assert "stopped by SIGINT" in (repo / ".dvc/tmp/parallel" / f"train@{model}.log").read_text()
    # No model, and no temporary of one.
    assert [path.name for path in (repo / "models").iterdir()] == [".gitignore"]
    # Nothing of the stopped trainings is recorded; the entries of the run before are untouched.
    assert yaml.safe_load((repo / "dvc.lock").read_text())["stages"] == lock_before


def test_after_a_stop_the_next_run_can_start_at_once(repos):
    repo = repos["parallel"]
    set_params(repo, TINY)
    # Back to the params of the first run: both trainings come straight from the run-cache.
    result = module_result(repo, "tools.parallel", "--jobs", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert processes_under(repo) == {}
    assert "Data and pipelines are up to date" in run_dvc(repo, "status")
