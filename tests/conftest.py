"""Shared fixtures: tiny datasets built by the tests themselves (no network, no real archive)."""

import io
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

import bench.project
from bench.project import commit_all, copy_files, project_env
from stages.params import Params, parse_params

PROJECT_ROOT = Path(__file__).resolve().parents[1]

POSITIVE_WORDS = ["great", "wonderful", "loved", "superb", "fun"]
NEGATIVE_WORDS = ["awful", "boring", "hated", "worst", "dull"]


def make_reviews(count: int, seed: int = 0) -> dict[tuple[str, str], list[str]]:
    """`count` short reviews per split and label, whose sentiment words give the label away."""
    rng = np.random.default_rng(seed)
    filler = ["the", "movie", "a", "film", "was", "and", "plot", "acting", "it", "this"]
    reviews = {}
    for split in ("train", "test"):
        for label, words in (("pos", POSITIVE_WORDS), ("neg", NEGATIVE_WORDS)):
            reviews[split, label] = [
                " ".join(rng.choice(filler + words, size=12)) + "<br /><br />The End." for _ in range(count)
            ]
    return reviews


def add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_aclimdb_archive(path: Path, reviews: dict[tuple[str, str], list[str]]) -> Path:
    """A .tar.gz laid out like the Stanford archive: aclImdb/<split>/<label>/<id>_<rating>.txt."""
    with tarfile.open(path, "w:gz") as archive:
        for (split, label), texts in reviews.items():
            for review_id, text in enumerate(texts):
                rating = 8 if label == "pos" else 2
                add_member(archive, f"aclImdb/{split}/{label}/{review_id}_{rating}.txt", text.encode())
    return path


def write_keras_npz(path: Path, x_train: list, y_train: list, x_test: list, y_test: list) -> Path:
    """An .npz shaped like Keras' imdb.npz: object arrays of rank lists, integer labels."""

    def ragged(sequences):
        array = np.empty(len(sequences), dtype=object)
        array[:] = [list(sequence) for sequence in sequences]
        return array

    np.savez(path, x_train=ragged(x_train), y_train=np.array(y_train), x_test=ragged(x_test), y_test=np.array(y_test))
    return path


def extend_archive(source: Path, target: Path, files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    """A copy of the .tar.gz `source` with more members: regular `files` and `symlinks` (name -> link target).

    Names are stored exactly as given, so tests can add unsafe ones such as `../evil.txt`.
    """
    with tarfile.open(source) as original, tarfile.open(target, "w:gz") as archive:
        for member in original:
            archive.addfile(member, original.extractfile(member))
        for name, data in files.items():
            add_member(archive, name, data)
        for name, link in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, link
            archive.addfile(info)
    return target


@pytest.fixture
def default_params() -> Params:
    return parse_params((PROJECT_ROOT / "params.yaml").read_text())


@pytest.fixture
def tiny_archive(tmp_path: Path) -> Path:
    return write_aclimdb_archive(tmp_path / "tiny_aclImdb.tar.gz", make_reviews(10))


def pipeline_environment(repo: Path) -> dict[str, str]:
    """The environment for `dvc` in a pipeline copy, with a download cache of its own."""
    return project_env(KERAS_HOME=str(repo / ".keras-home"))


def run_in(repo: Path, *args: str) -> str:
    """Run a command in `repo`, fail the test if it fails, and return its stdout and stderr."""
    result = subprocess.run(args, cwd=repo, env=pipeline_environment(repo), capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def run_dvc(repo: Path, *args: str) -> str:
    return run_in(repo, sys.executable, "-m", "dvc", *args)


def edit_params(repo: Path, edit: Callable[[dict], None]) -> None:
    """Apply `edit` to the parsed params.yaml of `repo` and write it back."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def copy_pipeline(repo: Path, edit: Callable[[dict], None]) -> Path:
    """Copy the pipeline into a new git repo at `repo`, with params changed by `edit`, all committed."""
    copy_files(repo)
    edit_params(repo, edit)
    commit_all(repo, "pipeline")
    return repo


def stages_run(dvc_output: str) -> set[str]:
    """The stages a `dvc repro` or `dvc exp run` output says it ran."""
    return set(bench.project.stages_run(dvc_output))


def copy_tiny_pipeline(root: Path, name: str = "project") -> Path:
    """The pipeline copied to `root/name`, on a 160-review archive in `root`, trained for 2 epochs on small layers."""
    archive = write_aclimdb_archive(root / "tiny_aclImdb.tar.gz", make_reviews(20))

    def tiny(params):
        params["data"].update(source="aclimdb", url=str(archive))
        params["train"].update(epochs=2, batch_size=10, hidden_units=[16, 16])

    return copy_pipeline(root / name, tiny)
