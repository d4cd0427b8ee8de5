"""Fresh copies of the project to run the real `dvc` in, and what to compare between two runs.

A copy holds what a clone of the working tree holds (no data, models, dvc.lock or DVC cache),
benchmark included, as a new git repository, so every run starts from an empty cache and
workspace. (tests/conftest.py's `copy_pipeline` does the same for the tests, without `bench/`.)
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = [
    "stages",
    "bench",
    "dvc.yaml",
    "params.yaml",
    ".dvcignore",
    ".dvc/config",
    ".dvc/plots",
    ".dvc/.gitignore",
]
# Keras writes the time of saving into model.keras (its metadata and zip entry dates), so two
# otherwise identical trainings differ in that file alone, and so do the hashes of its directory.


def project_env(**extra: str) -> dict[str, str]:
    """The environment to run `dvc` in: stage commands call `python`, so make it this interpreter."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra}


def stages_run(output: str) -> list[str]:
    """The stages a `dvc repro` ran, in order, read from its output."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]


def set_params(repo: Path, values: Mapping[str, Any]) -> None:
    """Set dotted keys of `repo`'s params.yaml, e.g. {"models.l1.rate": 0.002}."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in values.items():
        *parents, key = dotted.split(".")
        section = params
        for parent in parents:
            section = section[parent]
        section[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def copy_files(destination: Path) -> None:
    """Copy what a clone of the project holds (no data, models, dvc.lock or DVC cache) to `destination`."""
    for name in PROJECT_FILES:
        source, target = PROJECT_ROOT / name, destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            # bench/results holds earlier reports, not part of the project.
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "results"))
        else:
            shutil.copy2(source, target)


def commit_all(repo: Path, message: str = "copy") -> None:
    """Make `repo` a git repository (if it is not one yet) and commit everything in it."""
    for command in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=bench", "-c", "user.email=bench@example.org", "commit", "-qm", message],
    ):
        subprocess.run(["git", *command], cwd=repo, check=True, capture_output=True)


def copy_project(destination: Path, params: Mapping[str, Any] = ()) -> Path:
    """Copy the project's files into a new git repository at `destination`, with `params` set and committed."""
    copy_files(destination)
    set_params(destination, dict(params))
    commit_all(destination)
    return destination


def lock_differences(first: Path, second: Path) -> list[str]:
    """How the dvc.lock of two repos differ.

    Returns:
        One line per difference (stage order, a stage's entry); empty when the locks match.
    """
    stages_first = yaml.safe_load((first / "dvc.lock").read_text())["stages"]
    stages_second = yaml.safe_load((second / "dvc.lock").read_text())["stages"]
    if list(stages_first) != list(stages_second):
        return [f"stage order: {list(stages_first)} != {list(stages_second)}"]
    return [
        f"{name}: {entry} != {stages_second[name]}"
        for name, entry in stages_first.items()
        if entry != stages_second[name]
    ]
