"""`python -m tools.parallel`: the trainings at the same time, with DVC's bookkeeping as if run one by one.

Two copies of the project run on a tiny archive, one with a plain `dvc repro`, one with the
parallel command; their dvc.lock, .gitignore files and metrics must match. Then a training that
diverges must be reported while the other one is recorded.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.data import make_reviews, write_aclimdb_archive
from tests.support.project import copy_pipeline, pipeline_environment, run_dvc, stages_changed, stages_run
from tools.project import lock_differences, set_params

MODELS = {"basic": {"regularizer": "none", "rate": 0.0}, "l2": {"regularizer": "l2", "rate": 0.001}}


def _parallel(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.parallel", *args],
        cwd=repo,
        env=pipeline_environment(repo),
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parallel")
    archive = write_aclimdb_archive(root / "tiny_aclImdb.tar.gz", make_reviews(10))
    tiny = {
        "data.source": "aclimdb",
        "data.url": str(archive),
        "train.epochs": 1,
        "train.batch_size": 10,
        "train.hidden_units": [8],
        "models": MODELS,
    }
    repos = {name: copy_pipeline(root / name, tiny) for name in ("sequential", "parallel")}
    run_dvc(repos["sequential"], "repro")
    result = _parallel(repos["parallel"], "--jobs", "2")
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
    # A penalty this large makes the loss infinite at once, so train raises TrainingError.
    set_params(
        repo,
        {"models.l2": {"regularizer": "l2", "rate": 1e38}, "models.basic": {"regularizer": "none", "rate": 0.5}},
    )
    result = _parallel(repo)
    assert result.returncode == 1
    assert "train@l2, evaluate@l2 failed" in result.stderr
    assert "the loss became NaN or infinite" in result.stderr  # the end of its log, shown
    assert "train@basic, evaluate@basic done" in result.stderr
    changed = stages_changed(repo)
    assert "train@l2" in changed and "train@basic" not in changed and "evaluate@basic" not in changed
    assert "plots" in changed  # the rest of the pipeline waits for the fix
