"""`imdb_regularization.dvc_commands`: this environment's `dvc`, and what its output says ran."""

import os
import subprocess
import sys
from pathlib import Path

from imdb_regularization import dvc_commands

REPRO_OUTPUT = """\
Running stage 'fetch':
> python -m stages.fetch --out data/raw
Stage 'encode' didn't change, skipping
Running stage 'train@l1':
> python -m stages.train --data data/encoded --models-dir models
  Running stage 'not at the start of a line':
Running stage 'evaluate@l1':
Updating lock file 'dvc.lock'
"""


def test_stages_run_are_read_from_the_running_stage_lines_in_order():
    assert dvc_commands.stages_run(REPRO_OUTPUT) == ["fetch", "train@l1", "evaluate@l1"]
    assert dvc_commands.stages_run("Data and pipelines are up to date.\n") == []


def test_the_environment_puts_this_interpreters_directory_first_on_path(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin")
    monkeypatch.setenv("SOME_SETTING", "kept")
    env = dvc_commands.dvc_environment(KERAS_HOME="/tmp/keras")
    assert env["PATH"].split(os.pathsep) == [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin"]
    assert env["SOME_SETTING"] == "kept" and env["KERAS_HOME"] == "/tmp/keras"
    assert "KERAS_HOME" not in os.environ  # a copy: this process's environment is untouched


def test_dvc_runs_as_a_module_of_this_interpreter():
    assert dvc_commands.dvc_command("repro", "encode") == [sys.executable, "-m", "dvc", "repro", "encode"]


def test_run_dvc_captures_text_and_leaves_the_exit_code_to_the_caller(monkeypatch, tmp_path):
    calls = []

    def fake_run(command, **options):
        calls.append((command, options))
        return subprocess.CompletedProcess(command, 2, stdout="out", stderr="err")

    monkeypatch.setattr(dvc_commands.subprocess, "run", fake_run)
    result = dvc_commands.run_dvc("status", "--json", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (2, "out", "err")
    [(command, options)] = calls
    assert command == [sys.executable, "-m", "dvc", "status", "--json"]
    assert options["cwd"] == tmp_path and options["capture_output"] and options["text"] and not options["check"]
    assert options["env"]["PATH"].startswith(str(Path(sys.executable).parent) + os.pathsep)
    dvc_commands.run_dvc("push", env={"ONLY": "this"}, capture=False)
    assert calls[1][1]["env"] == {"ONLY": "this"} and not calls[1][1]["capture_output"]
