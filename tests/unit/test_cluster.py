"""The cluster study's pure parts: the experiment a worker gets, the checks before submitting, progress, outcomes.

The real `python -m study.run --scheduler ...` on a `distributed.LocalCluster` is in tests/e2e/test_cluster.py.
"""

import argparse
import io
import subprocess
from pathlib import Path

import pytest

from study.cluster import (
    Checkout,
    ClusterProgress,
    ClusterStudy,
    Outcome,
    _absolute_url,
    check_workers_reach,
    choose_experiment,
    data_path,
    describe_checkout,
)
from study.grid import Point, StudyError, plan
from study.run import _check_flags

RATES = (0.1,)


def test_a_worker_gets_a_width_it_holds_first_and_never_a_second_of_a_width_it_is_encoding():
    wide_42, narrow_42, wide_43, narrow_43 = plan((100, 1000), RATES, seeds=2, first_seed=42)
    waiting = [wide_42, narrow_42, wide_43, narrow_43]
    assert choose_experiment(waiting, held={100}, preparing=set()) is narrow_42
    assert choose_experiment(waiting, held=set(), preparing=set()) is wide_42
    assert choose_experiment(waiting, held=set(), preparing={1000}) is narrow_42
    assert choose_experiment([wide_43], held=set(), preparing={1000}) is None


def test_the_data_path_is_the_last_override_or_the_params_url_and_none_for_a_url():
    assert data_path(["data.url=/a.tar.gz", "data.url='/b c.tar.gz'"], None) == Path("/b c.tar.gz")
    assert data_path([], "file:///x/y.tar.gz") == Path("/x/y.tar.gz")
    assert data_path(["train.epochs=1"], "https://example.org/a.tar.gz") is None
    assert data_path([], None) is None


def test_remote_urls_that_are_paths_become_absolute_and_urls_stay(tmp_path):
    assert _absolute_url("~/dvc-storage/x", tmp_path) == str(Path.home() / "dvc-storage" / "x")
    assert _absolute_url("../remote.git", tmp_path / "repo") == str(tmp_path / "remote.git")
    for url in ("s3://bucket/x", "ssh://host/x", "git@github.com:owner/repo.git"):
        assert _absolute_url(url, tmp_path) == url


def _git(repo: Path, *arguments: str) -> None:
    subprocess.run(["git", *arguments], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A committed git repository with a params.yaml and a README, as the current directory."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text("train: {}\n")
    (repo / "README.md").write_text("readme\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "first")
    monkeypatch.chdir(repo)
    return repo


def test_uncommitted_params_are_refused_before_anything_runs(repo):
    (repo / "params.yaml").write_text("train: {epochs: 2}\n")
    with pytest.raises(StudyError) as caught:
        describe_checkout("origin", repo)
    assert str(caught.value) == ("uncommitted changes to params.yaml: workers run the commit; commit and push it first")


def test_a_git_remote_that_is_missing_or_lacks_the_commit_is_named(repo, tmp_path):
    # A changed README is no reason to refuse: the workers' points do not depend on it.
    (repo / "README.md").write_text("changed\n")
    with pytest.raises(StudyError, match="no git remote 'origin': name one every worker can clone with --remote"):
        describe_checkout("origin", repo)
    _git(tmp_path, "init", "-q", "--bare", "remote.git")
    _git(repo, "remote", "add", "origin", str(tmp_path / "remote.git"))
    with pytest.raises(
        StudyError, match=r"commit [0-9a-f]{12} is not on the git remote origin: `git push origin` first"
    ):
        describe_checkout("origin", repo)


class FakeClient:
    """`client.run` of two workers, `b` of which sees none of the paths it is asked about."""

    def run(self, function, paths):
        return {"tcp://a:1": function(paths), "tcp://b:2": list(paths)}


def test_a_data_file_or_remote_directory_a_worker_cannot_read_is_named_with_what_to_share(tmp_path):
    data = tmp_path / "data.tar.gz"
    data.write_bytes(b"x")
    checkout = Checkout("/git", "0" * 40, "storage", str(tmp_path / "remote"))
    with pytest.raises(StudyError) as caught:
        check_workers_reach(FakeClient(), data, checkout)
    assert str(caught.value) == (
        f"data.url {data} cannot be read on workers tcp://b:2: put it on a mount every worker shares at the same "
        "path, or serve it over http(s) and pin data.sha256"
    )
    with pytest.raises(StudyError) as caught:
        check_workers_reach(FakeClient(), None, checkout)
    assert str(caught.value).startswith(
        f"the DVC remote storage ({tmp_path / 'remote'}) cannot be read on workers tcp://b:2"
    )
    # The probe the driver wrote into the remote is gone again.
    assert list((tmp_path / "remote").iterdir()) == []
    # A remote that is a URL is not probed.
    check_workers_reach(FakeClient(), None, Checkout("/git", "0" * 40, "team", "s3://bucket/x"))


def test_progress_follows_each_workers_reports_and_counts_per_worker():
    (experiment,) = plan((100,), RATES, seeds=1, first_seed=0)
    stream = io.StringIO()
    progress = ClusterProgress(list(experiment.points), stream)
    newly = progress.update(experiment, "tcp://a:1", {"done": ["basic"], "running": ["l1_0p1"], "failed": []})
    assert newly == [experiment.points[0]]
    assert progress.line().startswith("study: 1/3 points done, 1 running, 0 failed")
    assert progress.line().endswith("; a:1 1 done, 1 running")
    # The same report again is nothing new.
    assert progress.update(experiment, "tcp://a:1", {"done": ["basic"], "running": [], "failed": []}) == []
    progress.forget(experiment)
    assert progress.line().startswith("study: 0/3 points done, 0 running, 0 failed")


def test_an_outcome_with_a_failed_point_names_it_with_its_log_on_the_driver(tmp_path):
    (experiment,) = plan((100,), RATES, seeds=1, first_seed=0)
    checkout = Checkout("/git", "0" * 40, "storage", "/remote")
    study = ClusterStudy(object(), [experiment], [], checkout, None, tmp_path)
    study.progress.stream = io.StringIO()
    outcome = Outcome(
        experiment.name,
        "tcp://a:1",
        "/worker/checkout",
        pushed=True,
        failed={"l2_0p1": "study-w100-s0.log"},
        logs={"study-w100-s0.log": "first attempt", "study-w100-s0.attempt2.log": "second attempt"},
    )
    study._record(experiment, outcome)
    assert (tmp_path / "study-w100-s0.attempt2.log").read_text() == "second attempt"
    assert study.failed_logs == {Point(100, "l2", 0.1, 0): tmp_path / "study-w100-s0.log"}
    assert study.succeeded == ["study-w100-s0"]
    assert study.progress.done == set(experiment.points) - {Point(100, "l2", 0.1, 0)}
    assert f"FAILED study-w100-s0/l2_0p1: see {tmp_path / 'study-w100-s0.log'}" in study.progress.stream.getvalue()


def test_a_push_that_failed_fails_the_experiments_points(tmp_path):
    (experiment,) = plan((100,), RATES, seeds=1, first_seed=0)
    study = ClusterStudy(object(), [experiment], [], Checkout("/git", "0" * 40, "s", "/r"), None, tmp_path)
    study.progress.stream = io.StringIO()
    study._record(experiment, Outcome(experiment.name, "tcp://a:1", "/c", pushed=False, error="`dvc exp push` failed"))
    assert set(study.failed_logs) == set(experiment.points) and study.succeeded == []
    assert (tmp_path / "study-w100-s0.push.log").read_text() == "`dvc exp push` failed\n"


def test_the_cluster_flags_are_checked_together():
    def flags(**given) -> argparse.Namespace:
        return argparse.Namespace(
            **{"jobs": 2, "jobs_per_worker": None, "remote": "origin", "scheduler": None} | {"shard": "1/1", **given}
        )

    _check_flags(flags(scheduler="tcp://h:8786", jobs_per_worker=2, remote="upstream"))
    for given, message in (
        ({"jobs_per_worker": 2}, "--jobs-per-worker and --remote go with --scheduler"),
        ({"scheduler": "tcp://h:8786", "jobs_per_worker": 0}, "--jobs-per-worker must be at least 1, got 0"),
        ({"scheduler": "tcp://h:8786", "shard": "1/2"}, "--shard splits a study between machines by hand"),
    ):
        with pytest.raises(StudyError, match=message):
            _check_flags(flags(**given))
