"""Copies of the project in temporary git repositories, and the real `dvc` run in them.

Built on what the tools use (`tools.project`, `imdb_regularization.dvc_commands`), so the tests
run DVC the way the study, the benchmark and `tools.parallel` do.
"""

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from imdb_regularization import dvc_commands
from tests.support.data import make_reviews, write_aclimdb_archive
from tools.project import PROJECT_ROOT, commit_all, copy_files, set_params

__all__ = [
    "ALL_STAGES",
    "PROJECT_ROOT",
    "copy_pipeline",
    "copy_tiny_pipeline",
    "dvc_result",
    "module_result",
    "pipeline_environment",
    "plot_titles",
    "project_params_text",
    "run_dvc",
    "run_in",
    "stages_changed",
    "stages_run",
]

# The stages of the project's own params.yaml (three models).
ALL_STAGES = {
    "fetch",
    "encode",
    "train@basic",
    "train@l1",
    "train@l2",
    "evaluate@basic",
    "evaluate@l1",
    "evaluate@l2",
    "plots",
}


def project_params_text() -> str:
    """The project's params.yaml with its data location reset to the default (Keras' file at its official URL).

    The README has users point `data.url` at a local copy of the data; the tests must see the
    same defaults whether or not they did.
    """
    text = (PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8")
    for key, default in (("source", "keras"), ("url", "null"), ("sha256", "null")):
        # The value runs to the line's comment; a quoted path may hold spaces but no " #".
        text = re.sub(
            rf"(?m)^(  {key}:) +(?:'[^']*'|\"[^\"]*\"|[^#\n]*?)( +#|$)", rf"\g<1> {default}\g<2>", text, count=1
        )
    return text


def pipeline_environment(repo: Path) -> dict[str, str]:
    """The environment for `dvc` in a pipeline copy, with a download cache of its own."""
    return dvc_commands.dvc_environment(KERAS_HOME=str(repo / ".keras-home"))


def run_in(repo: Path, *args: str) -> str:
    """Run a command in `repo`, fail the test if it fails, and return its stdout and stderr."""
    result = subprocess.run(args, cwd=repo, env=pipeline_environment(repo), capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def module_result(repo: Path, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m <module> <args>` in `repo`, as a user runs the project's commands, whether it succeeds or not."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=repo,
        env=pipeline_environment(repo),
        capture_output=True,
        text=True,
        check=False,
    )


def dvc_result(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`dvc <args>` in `repo`, whether it succeeds or not."""
    return dvc_commands.run_dvc(*args, cwd=repo, env=pipeline_environment(repo))


def run_dvc(repo: Path, *args: str) -> str:
    """`dvc <args>` in `repo`; fail the test if it fails, else return its stdout and stderr."""
    result = dvc_result(repo, *args)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def copy_pipeline(repo: Path, params: Mapping[str, Any] | None = None) -> Path:
    """Copy the pipeline into a new git repo at `repo`, with `params` ({"dotted.key": value}) set, all committed."""
    copy_files(repo)
    set_params(repo, params or {})
    commit_all(repo, "pipeline")
    return repo


def copy_tiny_pipeline(root: Path, name: str = "project") -> Path:
    """The pipeline copied to `root/name`, on an 80-review archive in `root`, trained for 2 epochs on small layers."""
    archive = write_aclimdb_archive(root / "tiny_aclImdb.tar.gz", make_reviews(20))
    return copy_pipeline(
        root / name,
        {
            "data.source": "aclimdb",
            "data.url": str(archive),
            "train.epochs": 2,
            "train.batch_size": 10,
            "train.hidden_units": [16, 16],
        },
    )


def stages_run(dvc_output: str) -> set[str]:
    """The stages a `dvc repro` or `dvc exp run` output says it ran."""
    return set(dvc_commands.stages_run(dvc_output))


def stages_changed(repo: Path) -> set[str]:
    """The stages `dvc status` lists as changed (its JSON is on stdout; warnings go to stderr)."""
    result = dvc_result(repo, "status", "--json")
    assert result.returncode == 0, f"dvc status failed:\n{result.stdout}\n{result.stderr}"
    return set(json.loads(result.stdout))


def plot_titles() -> list[str]:
    """The titles of the top-level `plots:` of dvc.yaml, in order."""
    plots = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["plots"]
    return [next(iter(plot)) for plot in plots]
