"""Where each IMDB source comes from, what its file is called in `data/raw/`, and how files are checked."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from imdb_regularization.cli import StageError

CHUNK_BYTES = 1 << 20
# What `fetch` writes beside the raw file: where it came from and its SHA-256, which `encode` checks.
SOURCE_RECORD = "source.json"
# Both sources have these splits. Their arrays are named as Keras' imdb.npz names them, and so are the
# encoded arrays: reviews `x_<split>`, labels `y_<split>`.
SPLITS = ("train", "test")
ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")


class DataError(StageError):
    """The raw file is not what its source should look like."""


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    sha256: str
    filename: str


SOURCES = {
    # Word-index sequences, exactly what `tf.keras.datasets.imdb.load_data` reads.
    "keras": Source(
        name="keras",
        url="https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz",
        sha256="69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f",
        filename="imdb.npz",
    ),
    # The raw Large Movie Review Dataset v1.0 (Maas et al., 2011).
    "aclimdb": Source(
        name="aclimdb",
        url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
        sha256="c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
        filename="aclImdb_v1.tar.gz",
    ),
}


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks so a large archive never sits in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verified_raw_file(raw_dir: Path, filename: str) -> Path:
    """The raw file the fetch stage wrote, checked against the SHA-256 it recorded beside it.

    Raises:
        DataError: the file or its record is missing, or the file changed since it was fetched.
    """
    raw_file, record = raw_dir / filename, raw_dir / SOURCE_RECORD
    for required in (raw_file, record):
        if not required.is_file():
            raise DataError(f"{required} is missing: run the fetch stage")
    try:
        expected = json.loads(record.read_text(encoding="utf-8"))["sha256"]
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{record} does not record a sha256: run the fetch stage") from None
    actual = sha256_of(raw_file)
    if actual != expected:
        raise DataError(f"{raw_file} changed since it was fetched: sha256 {actual}, {record} says {expected}")
    return raw_file
