"""Robustness on the real `dvc`: stopped stages, two `dvc repro` at once, a diverging training, byte-identical reruns.

One tiny pipeline copy per module (one model, three epochs) is killed during training and
resumed, run twice at once, sent back to earlier params (the run-cache) and to a diverging
learning rate. A second copy runs cold in the background meanwhile, for the byte-for-byte
comparison. The atomic writers and worker pools on their own, in tiny child processes, are
tested in tests/unit/test_stop_signals.py.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.data import make_reviews, write_aclimdb_archive
from tests.support.processes import describe, kill_all_under, processes_under, read_until, wait_until_none_under
from tests.support.project import (
    copy_pipeline,
    dvc_result,
    pipeline_environment,
    run_dvc,
    stages_changed,
    stages_run,
)
from tools.project import set_params

MODEL_STAGES = {"train@l1", "evaluate@l1", "plots"}
# Logged by the train stage once TensorFlow is up and the network built: training has begun.
TRAINING_STARTED = "training l1 ("
COMPARED_FILES = [
    "metrics/l1.json",
    "models/l1/history.json",
    "models/l1/test_predictions.npy",
    "models/l1/weights.npz",
    "models/l1/model.keras",
]
TIMEOUT_SECONDS = 300
# How long everything a stopped command started may take to end.
STOP_SECONDS = 10
# A training this long (about a minute on the tiny data) would still run long after STOP_SECONDS.
LONG_EPOCHS = 1000


def _temporaries(root: Path) -> list[Path]:
    """Temporary outputs (`.<name>.tmp<pid>...`) anywhere outside git's and DVC's own directories."""
    return [path for path in root.rglob(".*.tmp*") if not {".git", ".dvc"} & set(path.parts)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tiny_params(archive: Path) -> dict:
    return {
        "data.source": "aclimdb",
        "data.url": str(archive),
        "train.epochs": 3,
        "train.batch_size": 10,
        "train.hidden_units": [16, 16],
        # A held-out fraction, so the seeded split is part of what must reproduce.
        "train.validation": 0.25,
        # The l1 model of params.yaml alone.
        "models": {"l1": {"regularizer": "l1", "rate": 0.001}},
    }


def _start_dvc(repo: Path, *args: str, **options) -> subprocess.Popen:
    """Start `dvc` in its own process group, as a shell starts a job, so signals reach its stages too."""
    return subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo,
        env=pipeline_environment(repo),
        start_new_session=True,
        stderr=subprocess.STDOUT,
        **options,
    )


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return write_aclimdb_archive(tmp_path_factory.mktemp("data") / "tiny_aclImdb.tar.gz", make_reviews(20))


@pytest.fixture(scope="module")
def cold_run(tmp_path_factory, archive):
    """A second pipeline copy whose whole `dvc repro` runs in the background while the tests go on."""
    repo = copy_pipeline(tmp_path_factory.mktemp("cold") / "project", _tiny_params(archive))
    with (repo.parent / "repro.log").open("wb") as log:
        process = _start_dvc(repo, "repro", stdout=log)
    yield repo, process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def repo(tmp_path_factory, archive, cold_run) -> Path:
    """The pipeline copy the tests stop, resume and rerun; its data is fetched and encoded already."""
    repo = copy_pipeline(tmp_path_factory.mktemp("robust") / "project", _tiny_params(archive))
    run_dvc(repo, "repro", "encode")
    return repo


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_repro_stopped_during_training_leaves_no_output_that_looks_complete(repo, stop_signal):
    process = _start_dvc(repo, "repro", stdout=subprocess.PIPE)
    output = read_until(process, TRAINING_STARTED, TIMEOUT_SECONDS)
    os.killpg(process.pid, stop_signal)
    # The rest of the output ends when the last process of the group (the stage) has exited.
    output += process.communicate(timeout=TIMEOUT_SECONDS)[0].decode()
    assert process.returncode == -stop_signal
    if stop_signal == signal.SIGTERM:
        assert "stopped by SIGTERM; outputs not yet complete were deleted" in output
        assert "Traceback" not in output
        assert _temporaries(repo) == []
    assert not (repo / "models" / "l1").exists()
    assert not (repo / "metrics" / "l1.json").exists()
    assert set(yaml.safe_load((repo / "dvc.lock").read_text())["stages"]) == {"fetch", "encode"}
    assert stages_changed(repo) == MODEL_STAGES


def test_a_stage_whose_dvc_is_killed_ends_too(repo):
    original = (repo / "params.yaml").read_text()
    set_params(repo, {"train.epochs": LONG_EPOCHS})
    # The output goes to a file, as to a terminal: a pipe closed by the test would end the stage with EPIPE.
    log_path = repo.parent / "killed-repro.log"
    try:
        with log_path.open("wb") as log:
            process = _start_dvc(repo, "repro", stdout=log)
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while TRAINING_STARTED not in log_path.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        running = processes_under(repo)
        assert any("stages.train" in command for command in running.values()), describe(running)
        process.kill()  # DVC's own process only, as `kill -9 <pid>` or the out-of-memory killer does
        process.wait(timeout=TIMEOUT_SECONDS)
        # Before, the stage trained on as an orphan, and the next repro started a second one beside it.
        left = wait_until_none_under(repo, STOP_SECONDS)
        assert left == {}, f"still running {STOP_SECONDS} s after DVC was killed:\n{describe(left)}"
    finally:
        kill_all_under(repo)
        (repo / "params.yaml").write_text(original)
    assert not (repo / "models" / "l1").exists()
    assert _temporaries(repo) == []
    # DVC's lock on the stage's files names a process that is gone: the next repro (below) removes it.
    assert stages_changed(repo) == MODEL_STAGES


def test_the_next_repro_reruns_the_stopped_stages_and_finishes_cleanly(repo):
    assert stages_run(run_dvc(repo, "repro")) == MODEL_STAGES
    assert "Data and pipelines are up to date" in run_dvc(repo, "status")
    assert _temporaries(repo) == []
    assert set(json.loads((repo / "metrics" / "l1.json").read_text())) >= {"test_bce", "test_accuracy"}


def test_a_temporary_left_by_a_killed_stage_changes_no_hash(repo):
    """SIGKILL runs no cleanup: a stage's temporary may outlive it beside an output DVC then restores from its cache."""
    dead_pid = 2**22 + 1  # above Linux's largest pid: no process has it
    left = [repo / "models" / f".l1.tmp{dead_pid}", repo / "metrics" / f".l1.tmp{dead_pid}.json"]
    left[0].mkdir()
    (left[0] / "weights.npz").write_bytes(b"half written")
    left[1].write_text("{}")
    try:
        assert "Data and pipelines are up to date" in run_dvc(repo, "status")
        assert stages_run(run_dvc(repo, "repro")) == set()
    finally:
        shutil.rmtree(left[0])
        left[1].unlink()


def test_two_cold_runs_give_identical_bytes(repo, cold_run):
    cold_repo, process = cold_run
    assert process.wait(timeout=TIMEOUT_SECONDS) == 0, (cold_repo.parent / "repro.log").read_text()
    for name in COMPARED_FILES:
        assert _sha256(repo / name) == _sha256(cold_repo / name), name


def test_two_repros_at_once_do_not_corrupt_anything(repo):
    set_params(repo, {"models.l1.rate": 0.01})
    processes = [_start_dvc(repo, "repro", stdout=subprocess.PIPE) for _ in range(2)]
    outputs = [process.communicate(timeout=TIMEOUT_SECONDS)[0].decode() for process in processes]
    ran = [stages_run(output) for output in outputs]
    # One of them runs the changed stages; the other finds them locked, or up to date once it may go.
    assert sorted(ran, key=len) == [set(), MODEL_STAGES], outputs
    loser = outputs[ran.index(set())]
    assert any(message in loser for message in ("is busy", "Unable to acquire lock", "up to date")), loser
    assert yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["train@l1"]["params"]["params.yaml"][
        "models.l1"
    ] == {"regularizer": "l1", "rate": 0.01}
    assert "Data and pipelines are up to date" in run_dvc(repo, "status")


def test_returning_to_earlier_params_restores_from_the_run_cache(repo, cold_run):
    cold_repo, _ = cold_run
    # Back from the 0.01 of the test before to the 0.001 every copy started with.
    output = run_dvc(repo, "exp", "run", "-S", "models.l1.rate=0.001")
    assert "Stage 'train@l1' is cached - skipping run, checking out outputs" in output
    assert "train@l1" not in stages_run(output)
    assert _sha256(repo / "metrics" / "l1.json") == _sha256(cold_repo / "metrics" / "l1.json")


def test_a_different_seed_gives_different_numbers(repo, cold_run):
    cold_repo, _ = cold_run
    set_params(repo, {"train.seed": 7})
    assert "train@l1" in stages_run(run_dvc(repo, "repro"))
    seeded, cold = (json.loads((root / "metrics" / "l1.json").read_text()) for root in (repo, cold_repo))
    assert seeded["test_bce"] != cold["test_bce"]


def test_a_diverging_training_fails_and_writes_no_metrics(repo):
    metrics_before = (repo / "metrics" / "l1.json").read_bytes()
    original = (repo / "params.yaml").read_text()
    set_params(repo, {"train.learning_rate": 1e30})
    result = dvc_result(repo, "repro")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "the loss became NaN or infinite" in output
    assert "Traceback" not in output
    assert stages_run(output) == {"train@l1"}
    assert not (repo / "models" / "l1").exists()
    assert (repo / "metrics" / "l1.json").read_bytes() == metrics_before
    (repo / "params.yaml").write_text(original)
    assert "Stage 'train@l1' is cached" in run_dvc(repo, "repro")
    assert "Data and pipelines are up to date" in run_dvc(repo, "status")
