"""`python -m stages.parallel`: the trainings at the same time, with DVC's bookkeeping as if run one by one.

Two copies of the project run on a tiny archive, one with a plain `dvc repro`, one with the
parallel command; their dvc.lock, .gitignore files and metrics must match. Then a training that
diverges must be reported while the other one is recorded.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.project import lock_differences
from stages.parallel import ParallelError, followers, parse_jobs, plan_group
from tests.conftest import (
    copy_pipeline,
    edit_params,
    make_reviews,
    pipeline_environment,
    run_dvc,
    stages_run,
    write_aclimdb_archive,
)

MODELS = {"basic": {"regularizer": "none", "rate": 0.0}, "l2": {"regularizer": "l2", "rate": 0.001}}


def _parallel(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stages.parallel", *args],
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

    def tiny(params):
        params["data"].update(source="aclimdb", url=str(archive))
        params["train"].update(epochs=1, batch_size=10, hidden_units=[8])
        params["models"] = MODELS

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
    edit_params(
        repo,
        lambda params: params["models"].update(
            l2={"regularizer": "l2", "rate": 1e38}, basic={"regularizer": "none", "rate": 0.5}
        ),
    )
    result = _parallel(repo)
    assert result.returncode == 1
    assert "train@l2, evaluate@l2 failed" in result.stderr
    assert "the loss became NaN or infinite" in result.stderr  # the end of its log, shown
    assert "train@basic, evaluate@basic done" in result.stderr
    changed = json.loads(run_dvc(repo, "status", "--json"))
    assert "train@l2" in changed and "train@basic" not in changed and "evaluate@basic" not in changed
    assert "plots" in changed  # the rest of the pipeline waits for the fix


def _graph(**upstream: str) -> dict[str, set[str]]:
    return {stage: set(names.split()) for stage, names in upstream.items()}


def test_plan_group_finds_the_members_and_their_upstream():
    graph = _graph(fetch="", encode="fetch", **{"train@a": "encode", "train@b": "encode", "plots": "train@a train@b"})
    assert plan_group(graph, "train") == (["train@a", "train@b"], ["encode"])


def test_followers_are_the_stages_that_need_nothing_but_one_member_and_its_inputs():
    graph = _graph(
        fetch="",
        encode="fetch",
        **{
            "train@a": "encode",
            "train@b": "encode",
            "evaluate@a": "train@a encode",
            "evaluate@b": "train@b fetch",
            "compare": "train@a train@b",
            "plots": "evaluate@a evaluate@b",
        },
    )
    assert followers(graph, ["train@a", "train@b"]) == {"train@a": ["evaluate@a"], "train@b": ["evaluate@b"]}


def test_plan_group_refuses_members_that_depend_on_each_other():
    graph = _graph(encode="", **{"train@a": "encode", "train@b": "train@a"})
    with pytest.raises(ParallelError, match="train@b depends on train@a"):
        plan_group(graph, "train")


def test_plan_group_refuses_a_group_that_is_not_there():
    with pytest.raises(ParallelError, match="no foreach stages named fit@"):
        plan_group(_graph(train="", plots="train"), "fit")


@pytest.mark.parametrize("text", ["0", "-1", "two", ""])
def test_jobs_must_be_a_whole_number_of_at_least_one(text):
    with pytest.raises(argparse.ArgumentTypeError, match="whole number >= 1"):
        parse_jobs(text)
