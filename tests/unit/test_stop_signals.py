"""A stage stopped by a signal or killed: atomic writes and worker processes, in tiny stage-like children.

A child process that a signal stops mid-write is exact and cheap; the same on real `dvc repro`
runs is in tests/e2e/test_robustness.py.
"""

import os
import selectors
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imdb_regularization.atomic import atomic_directory
from tests.support.project import PROJECT_ROOT

TIMEOUT_SECONDS = 60

# A stage-like child: it writes half an output directory, says so, and waits for a signal.
HALF_WRITER = textwrap.dedent("""
    import signal, sys
    from pathlib import Path
    from imdb_regularization import cli
    from imdb_regularization.atomic import atomic_directory

    def main():
        with atomic_directory(Path(sys.argv[1])) as out:
            (out / "model.keras").write_text("half of a model")
            print("writing", flush=True)
            signal.pause()

    cli.run(main)
""")


def _temporaries(root: Path) -> list[Path]:
    """Temporary outputs (`.<name>.tmp<pid>...`) anywhere under `root`."""
    return list(root.rglob(".*.tmp*"))


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
    from imdb_regularization import cli

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


# A launcher standing in for DVC: it starts HALF_WRITER with the given environment, prints the
# stage's pid, and waits. Killing it with SIGKILL is `kill -9` on a `dvc repro`. With "shell" the
# stage runs under `/bin/sh -c <cmd>` that forks it and waits, as dash does when DVC runs a stage
# with `SHELL` unset (the `&` makes any shell fork).
LAUNCHER = textwrap.dedent("""
    import shlex, subprocess, sys
    stage = [sys.executable, "-c", sys.argv[2], sys.argv[3]]
    if sys.argv[1] == "shell":
        subprocess.run(["/bin/sh", "-c", shlex.join(stage) + " & echo $!; wait $!"])
    else:
        child = subprocess.Popen(stage)
        print(child.pid, flush=True)
        child.wait()
""")


def _start_launched_half_writer(
    target: Path, environment: dict[str, str], launch: str = "direct"
) -> tuple[subprocess.Popen, int]:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, launch, HALF_WRITER, str(target)],
        env={**environment, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child = int(launcher.stdout.readline())
    assert launcher.stdout.readline() == "writing\n", launcher.communicate()
    return launcher, child


@pytest.mark.parametrize("launch", ["direct", "shell"], ids=["child of DVC", "child of DVC's shell"])
def test_a_stage_whose_dvc_is_killed_stops_and_deletes_its_temporary(tmp_path, launch):
    target = tmp_path / "models" / "l1"
    target.mkdir(parents=True)
    (target / "history.json").write_text("the old, complete output")
    launcher, child = _start_launched_half_writer(target, {**os.environ, "DVC_STAGE": "train@l1"}, launch)
    launcher.kill()  # only DVC's own process, as `kill -9 <pid of dvc repro>` or the OOM killer does
    launcher.wait(timeout=TIMEOUT_SECONDS)
    try:
        assert _has_ended(child, 10), "the stage runs on as an orphan"
    finally:
        if not _has_ended(child, 0):
            os.kill(child, signal.SIGKILL)
    # The stage's stderr is the launcher's, still open here: it said why it ended.
    assert "stopped by SIGTERM; outputs not yet complete were deleted" in launcher.stderr.read()
    assert [path.name for path in target.iterdir()] == ["history.json"]
    assert _temporaries(tmp_path) == []


def test_a_command_started_by_hand_outlives_its_parent(tmp_path):
    environment = {name: value for name, value in os.environ.items() if name != "DVC_STAGE"}
    launcher, child = _start_launched_half_writer(tmp_path / "out", environment)
    launcher.kill()
    launcher.wait(timeout=TIMEOUT_SECONDS)
    try:
        # As under `nohup`: ending with DVC is for stages run by DVC only.
        assert not _has_ended(child, 1)
    finally:
        os.kill(child, signal.SIGTERM)
    assert _has_ended(child, TIMEOUT_SECONDS)


# A stage-like child whose pool has far more queued work than it could do before the test's timeout.
BUSY_POOL = textwrap.dedent("""
    import time
    from imdb_regularization import cli

    def main():
        with cli.worker_pool(1) as pool:
            futures = [pool.submit(time.sleep, 1) for _ in range(600)]
            print(pool._processes and next(iter(pool._processes)), flush=True)
            for future in futures:
                future.result()

    cli.run(main)
""")


def test_a_stop_to_the_stage_alone_cancels_its_queued_work_and_ends_its_workers():
    process = subprocess.Popen(
        [sys.executable, "-c", BUSY_POOL],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker = process.stdout.readline()
    assert worker.strip().isdigit(), process.communicate()
    process.send_signal(signal.SIGTERM)  # the stage only, as the parent-death signal sends it
    try:
        _, stderr = process.communicate(timeout=10)
    finally:
        process.kill()  # only if it is still running: after a failed wait
    assert process.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert _has_ended(int(worker), TIMEOUT_SECONDS)


# A parallel runner reduced to its start of a `dvc repro`: the child, started as the runner starts
# each run, prints its pid and waits for a signal; the runner waits for it.
RUNNER = textwrap.dedent("""
    import subprocess, sys
    from imdb_regularization.child_processes import ending_with_this_process

    child = [sys.executable, "-c", "import os, signal; print(os.getpid(), flush=True); signal.pause()"]
    subprocess.run(ending_with_this_process(child), start_new_session=True)
""")


def test_the_runs_of_a_parallel_runner_killed_outright_end_with_it():
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    child = runner.stdout.readline()
    assert child.strip().isdigit(), runner.communicate()
    runner.kill()  # no chance to stop its runs, which are in sessions of their own
    runner.wait(timeout=TIMEOUT_SECONDS)
    assert _has_ended(int(child), 10)
