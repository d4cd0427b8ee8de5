"""Robustness: stopped stages, two `dvc repro` at once, a diverging training, byte-identical reruns.

The atomic writers are tested in a tiny child process that a signal stops mid-write (exact and
cheap). The rest runs the real `dvc` on one tiny pipeline copy per module (one model, three
epochs): killed during training and resumed, run twice at once, sent back to earlier params
(the run-cache) and to a diverging learning rate. A second copy runs cold in the background
meanwhile, for the byte-for-byte comparison.
"""

import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from stages.atomic import atomic_directory
from tests.conftest import (
    PROJECT_ROOT,
    copy_pipeline,
    edit_params,
    make_reviews,
    pipeline_environment,
    run_dvc,
    stages_run,
    write_aclimdb_archive,
)

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

# A stage-like child: it writes half an output directory, says so, and waits for a signal.
HALF_WRITER = textwrap.dedent("""
    import signal, sys
    from pathlib import Path
    from stages import cli
    from stages.atomic import atomic_directory

    def main():
        with atomic_directory(Path(sys.argv[1])) as out:
            (out / "model.keras").write_text("half of a model")
            print("writing", flush=True)
            signal.pause()

    cli.run(main)
""")


def _temporaries(root: Path) -> list[Path]:
    """Temporary outputs (`.<name>.tmp<pid>...`) anywhere outside git's and DVC's own directories."""
    return [path for path in root.rglob(".*.tmp*") if not {".git", ".dvc"} & set(path.parts)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _start_half_writer(target: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HALF_WRITER, str(target)],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The child prints only when it is inside the write; readline returns "" if it died first.
    assert process.stdout.readline() == "writing\n", process.communicate()
    return process


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_write_deletes_its_temporary_and_keeps_the_old_output(tmp_path, stop_signal):
    target = tmp_path / "models" / "l1"
    target.mkdir(parents=True)
    (target / "history.json").write_text("the old, complete output")
    process = _start_half_writer(target)
    process.send_signal(stop_signal)
    _, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
    assert process.returncode == 128 + stop_signal
    assert f"stopped by {stop_signal.name}" in stderr
    assert "Traceback" not in stderr
    assert [path.name for path in target.iterdir()] == ["history.json"]
    assert (target / "history.json").read_text() == "the old, complete output"
    assert _temporaries(tmp_path) == []


def test_a_killed_write_leaves_only_a_temporary_which_the_next_write_removes(tmp_path):
    target = tmp_path / "models" / "l1"
    process = _start_half_writer(target)
    process.kill()
    process.communicate(timeout=TIMEOUT_SECONDS)
    assert not target.exists()
    assert [path.name for path in _temporaries(tmp_path)] == [f".l1.tmp{process.pid}"]
    with atomic_directory(target) as out:
        (out / "model.keras").write_text("a whole model")
    assert [path.name for path in target.iterdir()] == ["model.keras"]
    assert _temporaries(tmp_path) == []


# A stage-like child with a pool of one worker: it prints the worker's pid and waits for a signal.
POOL_HOLDER = textwrap.dedent("""
    import os, signal
    from stages import cli

    def main():
        with cli.worker_pool(1) as pool:
            print(pool.submit(os.getpid).result(), flush=True)
            signal.pause()

    cli.run(main)
""")


def _start_pool_holder() -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, "-c", POOL_HOLDER],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    worker = process.stdout.readline()
    assert worker.strip().isdigit(), process.communicate()
    return process, int(worker)


def _has_ended(pid: int, timeout: float) -> bool:
    """Whether process `pid` (not a child of this one) ends within `timeout` seconds."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(descriptor, selectors.EVENT_READ)  # readable once the process has ended
            return bool(selector.select(timeout))
    finally:
        os.close(descriptor)


def test_a_stop_signal_to_the_stage_ends_its_workers_and_then_the_stage_cleanly():
    process, worker = _start_pool_holder()
    os.killpg(process.pid, signal.SIGTERM)  # as a shell or CI runner stops a job: the whole group
    _, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
    assert process.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert _has_ended(worker, TIMEOUT_SECONDS)


def test_the_workers_of_a_killed_stage_end_with_it():
    process, worker = _start_pool_holder()
    process.kill()  # only the stage's own process: nothing can run in it any more
    process.communicate(timeout=TIMEOUT_SECONDS)
    assert _has_ended(worker, TIMEOUT_SECONDS)


def _tiny_params(archive: Path):
    def edit(params: dict) -> None:
        params["data"].update(source="aclimdb", url=str(archive))
        # A held-out fraction, so the seeded split is part of what must reproduce.
        params["train"].update(epochs=3, batch_size=10, hidden_units=[16, 16], validation=0.25)
        params["models"] = {"l1": params["models"]["l1"]}

    return edit


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


def _stages_changed(repo: Path) -> set[str]:
    """The stages `dvc status` lists (its JSON is on stdout; warnings go to stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"],
        cwd=repo,
        env=pipeline_environment(repo),
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(result.stdout))


def _read_until(process: subprocess.Popen, marker: str) -> str:
    """Read the process's output until it contains `marker`; fail if it ends or times out first."""
    output, deadline = b"", time.monotonic() + TIMEOUT_SECONDS
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while marker.encode() not in output:
            assert selector.select(deadline - time.monotonic()), f"no {marker!r} in time:\n{output.decode()}"
            chunk = os.read(process.stdout.fileno(), 1 << 16)
            assert chunk, f"the process ended before {marker!r}:\n{output.decode()}"
            output += chunk
    return output.decode()


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
    output = _read_until(process, TRAINING_STARTED)
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
    assert _stages_changed(repo) == MODEL_STAGES


def test_the_next_repro_reruns_the_stopped_stages_and_finishes_cleanly(repo):
    assert stages_run(run_dvc(repo, "repro")) == MODEL_STAGES
    assert "Data and pipelines are up to date" in run_dvc(repo, "status")
    assert _temporaries(repo) == []
    assert set(json.loads((repo / "metrics" / "l1.json").read_text())) >= {"test_bce", "test_accuracy"}


def test_two_cold_runs_give_identical_bytes(repo, cold_run):
    cold_repo, process = cold_run
    assert process.wait(timeout=TIMEOUT_SECONDS) == 0, (cold_repo.parent / "repro.log").read_text()
    for name in COMPARED_FILES:
        assert _sha256(repo / name) == _sha256(cold_repo / name), name


def test_two_repros_at_once_do_not_corrupt_anything(repo):
    edit_params(repo, lambda params: params["models"]["l1"].update(rate=0.01))
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
    edit_params(repo, lambda params: params["train"].update(seed=7))
    assert "train@l1" in stages_run(run_dvc(repo, "repro"))
    seeded, cold = (json.loads((root / "metrics" / "l1.json").read_text()) for root in (repo, cold_repo))
    assert seeded["test_bce"] != cold["test_bce"]


def test_a_diverging_training_fails_and_writes_no_metrics(repo):
    metrics_before = (repo / "metrics" / "l1.json").read_bytes()
    original = (repo / "params.yaml").read_text()
    edit_params(repo, lambda params: params["train"].update(learning_rate=1e30))
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=repo,
        env=pipeline_environment(repo),
        capture_output=True,
        text=True,
        check=False,
    )
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
