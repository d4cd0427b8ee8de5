"""The study on a Dask cluster: `python -m study.run --scheduler ...` against a `distributed.LocalCluster` on 127.0.0.1.

Two worker processes (one thread each, each in a local directory of its own), a bare git repository
as the git remote, a directory as the DVC remote, the 80-review archive. The same study is run on
this machine in a second copy of the project, and the two must agree byte for byte. Then the
faults: a worker killed mid-training, a point that fails on its own, and a data file the workers
cannot read. The cluster's pure parts are tested in tests/unit/test_cluster.py.
"""

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from study.grid import parse_rates, plan
from tests.support.data import make_reviews, write_aclimdb_archive
from tests.support.processes import processes_under
from tests.support.project import copy_pipeline, module_result, pipeline_environment, run_dvc, run_in

distributed = pytest.importorskip("distributed")

RATE = "0.1"
WIDTH = 20
SEEDS = 2
POINTS = 3 * SEEDS
PARAMS = {"train.epochs": 1, "train.batch_size": 10, "train.hidden_units": [8]}
STUDY_SECONDS = 300
TRAINING = "stages.train"
RESULTS = ("points.csv", "summary.csv", "chosen.csv", "summary.md")


def _git(repo: Path, *arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=repo, check=True, capture_output=True, text=True).stdout


def _study_arguments(archive: Path, *extra: str) -> list[str]:
    return ["--num-words", str(WIDTH), "--rates", RATE, "--seeds", str(SEEDS), "-S", "data.source=aclimdb"] + [
        "-S",
        f"data.url={archive}",
        *extra,
    ]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="module")
def driver(root) -> Path:
    """The driver's project: pushed to a bare git remote, with a directory as its default DVC remote."""
    remote = root / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    repo = copy_pipeline(root / "driver", PARAMS)
    _git(repo, "remote", "add", "origin", str(remote))
    _git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    run_dvc(repo, "remote", "modify", "--local", "storage", "url", str(root / "dvc-remote"))
    return repo


@pytest.fixture(scope="module")
def archive(root) -> Path:
    # Outside every repository: the workers read it by its absolute path, as from a shared mount.
    return write_aclimdb_archive(root / "tiny_aclImdb.tar.gz", make_reviews(20))


@pytest.fixture(scope="module")
def cluster(root) -> Iterator[dict]:
    """A scheduler and two worker processes on 127.0.0.1; each worker's address, pid and local directory."""
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            local_directory=str(root / "workers"),
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield {
            "address": cluster.scheduler_address,
            "client": client,
            "root": root / "workers",
        }


def _worker_pids(client) -> dict[str, int]:
    return client.run(os.getpid)


def _worker_directories(client) -> dict[str, str]:
    return client.run(lambda dask_worker: dask_worker.local_directory)


class TrainingWatch:
    """Samples, in a thread, the training processes under the workers' directories and under the driver's repo."""

    def __init__(self, workers_root: Path, repo: Path) -> None:
        self.roots = {"workers": workers_root, "driver": repo}
        self.seen: dict[str, dict[int, str]] = {"workers": {}, "driver": {}}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, root in self.roots.items():
                for pid, command in processes_under(root).items():
                    if TRAINING in command:
                        self.seen[name][pid] = command
            time.sleep(0.05)

    def __enter__(self) -> "TrainingWatch":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


def _cluster_study(repo: Path, scheduler: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return module_result(repo, "study.run", "--scheduler", scheduler, *arguments)


def _experiment_names(repo: Path) -> list[str]:
    return run_dvc(repo, "exp", "list", "--name-only").split()


def _metrics(repo: Path) -> dict[tuple[str, str], bytes]:
    """Every metrics file of every study experiment of the repo, read from its git commit: (name, file) -> bytes."""
    found = {}
    for ref in _git(repo, "for-each-ref", "--format=%(refname)", "refs/exps").split():
        name = ref.rsplit("/", 1)[1]
        for path in _git(repo, "ls-tree", "--name-only", f"{ref}:metrics").split():
            found[name, path] = subprocess.run(
                ["git", "show", f"{ref}:metrics/{path}"], cwd=repo, check=True, capture_output=True
            ).stdout
    return found


def _results(repo: Path) -> dict[str, bytes]:
    return {name: (repo / "study" / "results" / name).read_bytes() for name in RESULTS}


@pytest.fixture(scope="module")
def cluster_study(driver, archive, cluster) -> dict:
    """The study on the cluster, summarized; what it printed and which trainings ran where."""
    with TrainingWatch(cluster["root"], driver) as watch:
        result = _cluster_study(driver, cluster["address"], *_study_arguments(archive))
    assert result.returncode == 0, result.stdout + result.stderr
    run_in(driver, sys.executable, "-m", "study.summarize")
    # Kept now: the fault tests below run other studies in the same repository.
    return {
        "output": result.stderr,
        "trainings": watch.seen,
        "experiments": _experiment_names(driver),
        "metrics": _metrics(driver),
        "results": _results(driver),
    }


@pytest.fixture(scope="module")
def local_study(root, archive) -> Path:
    """The same study run on this machine, in a copy of the project of its own, summarized."""
    repo = copy_pipeline(root / "local", PARAMS)
    run_in(repo, sys.executable, "-m", "study.run", "--jobs", "2", *_study_arguments(archive))
    run_in(repo, sys.executable, "-m", "study.summarize")
    return repo


def test_the_cluster_study_runs_every_point_and_brings_every_experiment_back(driver, cluster_study):
    expected = {experiment.name for experiment in plan((WIDTH,), parse_rates(RATE), SEEDS, first_seed=42)}
    assert sorted(cluster_study["experiments"]) == sorted(expected)
    output = cluster_study["output"]
    assert f"study: {POINTS}/{POINTS} points done, 0 running, 0 failed" in output
    # Both workers took part, and the progress line counts each one's points.
    assert output.count(" joined: 1 experiments at a time") == 2
    assert "pushed study-w20-s42 from 127.0.0.1:" in output and "pushed study-w20-s43 from 127.0.0.1:" in output
    # The logs are where a local study leaves them.
    for name in expected:
        assert "Running stage 'train@basic'" in (driver / ".dvc" / "tmp" / "study" / f"{name}.log").read_text()


def test_every_training_ran_in_a_workers_checkout_none_in_the_drivers(cluster_study):
    trainings = cluster_study["trainings"]
    assert trainings["workers"], "no training was seen under the workers' directories"
    assert trainings["driver"] == {}


def test_the_cluster_and_the_local_study_agree_byte_for_byte(cluster_study, local_study):
    assert len(cluster_study["metrics"]) == POINTS
    assert cluster_study["metrics"] == _metrics(local_study)
    assert cluster_study["results"] == _results(local_study)


def test_a_worker_killed_mid_training_its_experiment_runs_again_and_every_point_is_there_once(
    root, driver, cluster, cluster_study
):
    # Other data, so that no point comes back from the run-cache and there is a training to kill.
    other = write_aclimdb_archive(root / "other_aclImdb.tar.gz", make_reviews(15, seed=1))
    output_path = root / "killed-study.log"
    pids, directories = _worker_pids(cluster["client"]), _worker_directories(cluster["client"])
    with output_path.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "study.run", "--scheduler", cluster["address"], *_study_arguments(other)],
            cwd=driver,
            env=pipeline_environment(driver),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        victim = _wait_for_a_training(directories, process)
        os.kill(pids[victim], signal.SIGKILL)
        process.wait(timeout=STUDY_SECONDS)
    finally:
        process.kill()
    printed = output_path.read_text()
    assert process.returncode == 0, printed
    assert f"worker {victim.removeprefix('tcp://')} left" in printed
    assert "runs again on another worker" in printed
    assert f"study: {POINTS}/{POINTS} points done, 0 running, 0 failed" in printed
    names = _experiment_names(driver)
    assert sorted(names) == sorted(set(names)) and len(names) == SEEDS
    pushed = _git(root / "remote.git", "for-each-ref", "--format=%(refname)", "refs/exps").split()
    assert sorted(ref.rsplit("/", 1)[1] for ref in pushed) == sorted(names)
    run_in(driver, sys.executable, "-m", "study.summarize")
    with (driver / "study" / "results" / "points.csv").open(newline="") as file:
        points = [(row["experiment"], row["model"], row["rate"]) for row in csv.DictReader(file)]
    assert len(points) == len(set(points)) == POINTS


def _wait_for_a_training(directories: dict[str, str], process: subprocess.Popen) -> str:
    """The worker under whose directory a training runs first."""
    deadline = time.monotonic() + STUDY_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, "the study ended before any training began"
        for worker, directory in directories.items():
            if any(TRAINING in command for command in processes_under(Path(directory)).values()):
                return worker
        time.sleep(0.05)
    raise AssertionError("no training began")


def test_a_point_that_fails_is_named_with_its_log_and_the_others_finish(driver, archive, cluster, cluster_study):
    # Plain SGD at rate 1: L2 at rate 10 multiplies its weights by -19 a step and overflows to NaN;
    # L1's step is bounded and the plain network trains normally.
    settings = ["-S", "train.optimizer=sgd", "-S", "train.learning_rate=1.0", "-S", "train.epochs=10"]
    arguments = ["--num-words", str(WIDTH), "--rates", "10", "--seeds", "1", "-S", "data.source=aclimdb"]
    result = _cluster_study(driver, cluster["address"], *arguments, "-S", f"data.url={archive}", *settings)
    assert result.returncode == 1, result.stderr
    log_path = ".dvc/tmp/study/study-w20-s42.log"
    assert f"study.run: 1 of 3 points failed: study-w20-s42/l2_10 (log {log_path})" in result.stderr
    assert "NaN" in (driver / log_path).read_text()
    assert "study: 2/3 points done, 0 running, 1 failed" in result.stderr
    assert "study-w20-s42" in _experiment_names(driver)


def test_a_data_file_the_workers_cannot_read_fails_before_any_task(driver, cluster, cluster_study):
    missing = driver.parent / "only-on-the-driver.tar.gz"
    result = _cluster_study(
        driver,
        cluster["address"],
        "--rates",
        RATE,
        "--seeds",
        "1",
        "-S",
        "data.source=aclimdb",
        "-S",
        f"data.url={missing}",
    )
    assert result.returncode == 1
    assert f"study.run: data.url {missing} cannot be read on workers tcp://127.0.0.1:" in result.stderr
    assert "put it on a mount every worker shares at the same path, or serve it over http(s)" in result.stderr
    assert "started" not in result.stderr
