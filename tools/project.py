"""Fresh copies of the project to run the real `dvc` in (the benchmark and the tests), and what to compare.

A copy holds what a clone of the working tree holds (no data, models, dvc.lock or DVC cache) as a
new git repository, so every run starts from an empty cache and workspace.
"""

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = [
    "stages",
    "imdb_regularization",
    "study",
    "tools",
    "dvc.yaml",
    "params.yaml",
    ".dvcignore",
    ".dvc/config",
    ".dvc/plots",
    ".dvc/.gitignore",
]
BENCH_RESULTS = PROJECT_ROOT / "tools" / "bench" / "results"


def _not_copied(directory: str, names: list[str]) -> set[str]:
    """Python's caches and the benchmark's earlier reports, which a clone does not hold either."""
    return {name for name in names if name == "__pycache__" or Path(directory, name) == BENCH_RESULTS}


def set_params(repo: Path, values: Mapping[str, Any]) -> None:
    """Set dotted keys of `repo`'s params.yaml, e.g. {"models.l1.rate": 0.002}; a new key is added.

    ruamel.yaml's round trip keeps the file's comments and layout, and writes YAML as DVC reads it.
    """
    path = repo / "params.yaml"
    document = YAML()
    params = document.load(path.read_text(encoding="utf-8"))
    for dotted, value in values.items():
        *parents, key = dotted.split(".")
        section = params
        for parent in parents:
            section = section[parent]
        section[key] = value
    with path.open("w", encoding="utf-8") as file:
        document.dump(params, file)


def copy_files(destination: Path) -> None:
    """Copy what a clone of the project holds (no data, models, dvc.lock or DVC cache) to `destination`."""
    for name in PROJECT_FILES:
        source, target = PROJECT_ROOT / name, destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=_not_copied)
        else:
            shutil.copy2(source, target)


def commit_all(repo: Path, message: str = "copy") -> None:
    """Make `repo` a git repository (if it is not one yet) and commit everything in it."""
    identity = ["-c", "user.name=imdb-regularization", "-c", "user.email=imdb-regularization@example.org"]
    for command in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-qm", message]):
        subprocess.run(["git", *command], cwd=repo, check=True, capture_output=True)


def copy_project(destination: Path, params: Mapping[str, Any] = {}) -> Path:
    """Copy the project's files into a new git repository at `destination`, with `params` set and committed."""
    copy_files(destination)
    set_params(destination, params)
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
