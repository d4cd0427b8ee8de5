"""`imdb_regularization.cli.run`, every stage's `__main__`: how a stage ends, in a child process each."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imdb_regularization import cli
from tests.support.project import PROJECT_ROOT

# A stage-like child: an atexit handler writes argv[1]; `main` prints (block-buffered into a pipe), then
# succeeds or raises what argv[2] names.
STAGE = textwrap.dedent("""
    import atexit, sys
    from pathlib import Path
    from imdb_regularization import cli

    def main():
        print("main ran")
        if sys.argv[2] == "stage-error":
            raise cli.StageError("params.yaml: train.epochs must be an integer >= 1, got 0")

    atexit.register(Path(sys.argv[1]).write_text, "atexit ran")
    cli.run(main)
""")


def _run_stage(marker: Path, outcome: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", STAGE, str(marker), outcome],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_successful_stage_exits_0_with_its_output_flushed_and_atexit_handlers_run(tmp_path):
    result = _run_stage(tmp_path / "marker", "success")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "main ran\n"
    assert result.stderr == ""
    assert (tmp_path / "marker").read_text() == "atexit ran"


def test_a_stage_error_exits_1_with_one_line_and_no_traceback(tmp_path):
    result = _run_stage(tmp_path / "marker", "stage-error")
    assert result.returncode == 1
    assert result.stdout == "main ran\n"
    [line] = result.stderr.splitlines()
    assert line.endswith(" stages: params.yaml: train.epochs must be an integer >= 1, got 0")
    assert (tmp_path / "marker").read_text() == "atexit ran"


def test_resolve_model_takes_the_flag_else_dvc_stage(monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "train@l2")
    assert cli.resolve_model(None, ["basic", "l2"]) == "l2"
    assert cli.resolve_model("basic", ["basic", "l2"]) == "basic"
    monkeypatch.setenv("DVC_STAGE", "train@x;rm -rf ~")
    with pytest.raises(cli.StageError, match=r"params.yaml has no model 'x;rm -rf ~' \(it has basic, l2\)"):
        cli.resolve_model(None, ["basic", "l2"])
