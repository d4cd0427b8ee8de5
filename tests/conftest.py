"""Shared fixtures: tiny datasets built by the tests themselves (no network, no real archive)."""

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

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
                " ".join(rng.choice(filler + words, size=12)) + "<br /><br />The End."
                for _ in range(count)
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


@pytest.fixture
def default_params() -> Params:
    return parse_params((PROJECT_ROOT / "params.yaml").read_text())


@pytest.fixture
def tiny_archive(tmp_path: Path) -> Path:
    return write_aclimdb_archive(tmp_path / "tiny_aclImdb.tar.gz", make_reviews(10))
