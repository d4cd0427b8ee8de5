"""`imdb_regularization.cli.run`, every command's `__main__`: how a command ends, in a child process each.

The child is a module written into the test's directory and run as `python -m fake_stage`, as
DVC runs the stages; `main` does what the test names.
"""

import errno
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imdb_regularization import cli
from tests.support.project import PROJECT_ROOT

TIMEOUT_SECONDS = 60

# An atexit handler writes the marker file; `main` prints (block-buffered into a pipe), then does
# what argv[1] names.
FAKE_STAGE = textwrap.dedent("""
    import atexit, errno, os, signal, sys
    from pathlib import Path
    from imdb_regularization import cli

    def _kill_own_worker():
        os.kill(os.getpid(), signal.SIGKILL)

    def main():
        print("main ran")
        outcome = sys.argv[1]
        if outcome == "stage-error":
            raise cli.StageError("params.yaml: train.epochs must be an integer >= 1, got 0")
        if outcome == "value-error":
            raise ValueError("a bug\\nspread over two lines")
        if outcome == "memory-error":
            raise MemoryError()
        if outcome == "no-space":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "data/encoded/x_train.npy")
        if outcome == "undecodable":
            b"\\xff\\xfeparams".decode("utf-8")
        if outcome == "exit-text":
            sys.exit("the reason, said by sys.exit")
        if outcome == "stop-inside-native-code":
            # What TensorFlow's pybind11 does when a stop arrives while it raises an error of its own.
            try:
                os.kill(os.getpid(), signal.SIGINT)
                signal.pause()  # not reached: the handler raises as soon as os.kill returns
            except BaseException as error:
                raise RuntimeError("MISMATCH of original and normalized active exception types") from error
        if outcome == "killed-worker":
            with cli.worker_pool(1) as pool:
                pool.submit(_kill_own_worker).result()

    atexit.register(Path("marker").write_text, "atexit ran")
    cli.run(main)
""")


@pytest.fixture
def stage_dir(tmp_path) -> Path:
    (tmp_path / "fake_stage.py").write_text(FAKE_STAGE)
    (tmp_path / "tmp").mkdir()  # the child's temp directory
    return tmp_path


def _run_stage(directory: Path, outcome: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fake_stage", outcome],
        cwd=directory,
        env={**os.environ, "PYTHONPATH": f"{directory}{os.pathsep}{PROJECT_ROOT}", "TMPDIR": str(directory / "tmp")},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The child's only line on stderr, without its time stamp; fails if there are more, or a traceback."""
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    return line.split(" ", 1)[1]


def _saved_traceback(message: str) -> str:
    """The traceback file named at the end of `message`, read."""
    path = message.rpartition("(traceback in ")[2].partition(")")[0]
    return Path(path).read_text()


def test_a_successful_stage_exits_0_with_its_output_flushed_and_atexit_handlers_run(stage_dir):
    result = _run_stage(stage_dir, "success")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "main ran\n"
    assert result.stderr == ""
    assert (stage_dir / "marker").read_text() == "atexit ran"


def test_a_stage_error_exits_1_with_one_line_named_for_the_command_and_no_log_file(stage_dir):
    result = _run_stage(stage_dir, "stage-error")
    assert result.returncode == 1
    assert result.stdout == "main ran\n"
    assert _one_line(result) == "fake_stage: params.yaml: train.epochs must be an integer >= 1, got 0"
    assert (stage_dir / "marker").read_text() == "atexit ran"
    assert list((stage_dir / "tmp").iterdir()) == []


def test_an_unexpected_error_is_one_line_with_its_traceback_in_the_temp_dir_outside_a_dvc_repo(stage_dir):
    result = _run_stage(stage_dir, "value-error")
    assert result.returncode == 1
    message = _one_line(result)
    assert message.startswith("fake_stage: unexpected error: ValueError: a bug / spread over two lines (traceback in ")
    [log_file] = (stage_dir / "tmp" / "imdb_regularization-tracebacks").iterdir()
    assert message.endswith(f"(traceback in {log_file})")
    assert log_file.name.startswith("fake_stage-") and log_file.suffix == ".log"
    saved = _saved_traceback(message)
    assert "Traceback (most recent call last)" in saved and 'raise ValueError("a bug' in saved
    assert (stage_dir / "marker").read_text() == "atexit ran"


def test_inside_a_dvc_repo_the_traceback_goes_under_dvc_tmp(stage_dir):
    (stage_dir / ".dvc").mkdir()
    message = _one_line(_run_stage(stage_dir, "value-error"))
    path = message.rpartition("(traceback in ")[2].rstrip(")")
    assert path.startswith(".dvc/tmp/tracebacks/fake_stage-") and path.endswith(".log")
    assert "ValueError: a bug" in (stage_dir / path).read_text()


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("memory-error", r"fake_stage: out of memory \(traceback in .*\); smaller params \(data.num_words"),
        ("no-space", r"fake_stage: cannot write data/encoded/x_train.npy: No space left on device; free some space"),
        ("undecodable", r"fake_stage: unexpected error: UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff"),
        ("exit-text", r"fake_stage: the reason, said by sys.exit"),
        ("killed-worker", r"fake_stage: a worker process ended abruptly \(killed, or out of memory\?\); run again"),
    ],
)
def test_every_other_ending_is_one_line_and_exit_code_1(stage_dir, outcome, expected):
    result = _run_stage(stage_dir, outcome)
    assert result.returncode == 1
    assert result.stdout == "main ran\n"
    assert re.match(expected, _one_line(result)), _one_line(result)


def test_a_stop_that_native_code_turned_into_another_error_is_still_a_stop(stage_dir):
    result = _run_stage(stage_dir, "stop-inside-native-code")
    assert result.returncode == 128 + signal.SIGINT
    assert _one_line(result) == "fake_stage: stopped by SIGINT; outputs not yet complete were deleted"


def test_a_usage_error_keeps_argparse_s_message_and_exit_code(tmp_path):
    (tmp_path / "fake_cli.py").write_text(
        "import argparse\nfrom imdb_regularization import cli\n"
        "def main():\n    argparse.ArgumentParser().parse_args()\ncli.run(main)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "fake_cli", "--no-such-flag"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{PROJECT_ROOT}"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in result.stderr and "Traceback" not in result.stderr


def test_no_space_message_names_the_file_or_says_what_failed():
    full = OSError(errno.ENOSPC, "No space left on device", "models/l1/weights.npz")
    assert cli.no_space_message(full) == (
        "cannot write models/l1/weights.npz: No space left on device; free some space and run again"
    )
    assert cli.no_space_message(OSError(errno.EDQUOT, "Disk quota exceeded")) == (
        "a write failed: Disk quota exceeded; free some space and run again"
    )
    assert cli.no_space_message(OSError(errno.ENOENT, "No such file or directory", "x")) is None


def test_one_line_joins_lines_and_cuts_long_text():
    assert cli.one_line("first\n\n  second  \n") == "first / second"
    assert cli.one_line("x" * 500, limit=10) == "xxxxxxx..."


def test_resolve_model_takes_the_flag_else_dvc_stage(monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "train@l2")
    assert cli.resolve_model(None, ["basic", "l2"]) == "l2"
    assert cli.resolve_model("basic", ["basic", "l2"]) == "basic"
    monkeypatch.setenv("DVC_STAGE", "train@x;rm -rf ~")
    with pytest.raises(cli.StageError, match=r"params.yaml has no model 'x;rm -rf ~' \(it has basic, l2\)"):
        cli.resolve_model(None, ["basic", "l2"])
