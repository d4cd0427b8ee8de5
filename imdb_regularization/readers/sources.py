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
    sha256: str | None
    filename: str
    # Only for a file whose publisher gives no SHA-256: the MD5 it publishes.
    md5: str | None = None


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

# The keras source's words: Keras' published word index (word -> frequency rank; the word of rank r is
# column r + 3 of the multi-hot rows). Keras' own `imdb.get_word_index` checks it by this MD5, the only
# checksum published for it, so the official file is verified by MD5; `fetch` records its SHA-256,
# which `encode` checks like the data's.
WORD_INDEX = Source(
    name="keras word index",
    url="https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb_word_index.json",
    sha256=None,
    filename="imdb_word_index.json",
    md5="bfafd718b763782e994055a2d397834f",
)
# Where source.json records the word index fetched beside the keras source's data.
WORD_INDEX_RECORD_KEY = "word_index"


def digest_of(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file by `algorithm` (a `hashlib` name), read in chunks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks so a large archive never sits in memory."""
    return digest_of(path, "sha256")


def verified_raw_file(raw_dir: Path, filename: str) -> Path:
    """The raw file the fetch stage wrote, checked against the SHA-256 it recorded beside it.

    Raises:
        DataError: the file or its record is missing, or the file changed since it was fetched.
    """
    return _verified(raw_dir / filename, raw_dir / SOURCE_RECORD, ())


def verified_word_index(raw_dir: Path) -> Path:
    """The word index the fetch stage wrote beside the keras source's data, checked like `verified_raw_file`.

    Raises:
        DataError: the file or its record is missing, or the file changed since it was fetched.
    """
    return _verified(raw_dir / WORD_INDEX.filename, raw_dir / SOURCE_RECORD, (WORD_INDEX_RECORD_KEY,))


def _verified(raw_file: Path, record: Path, keys: tuple[str, ...]) -> Path:
    """`raw_file`, once its SHA-256 is the one `record` holds under `keys` + `sha256`."""
    for required in (raw_file, record):
        if not required.is_file():
            raise DataError(f"{required} is missing: run the fetch stage")
    try:
        entry = json.loads(record.read_text(encoding="utf-8"))
        for key in keys:
            entry = entry[key]
        expected = entry["sha256"]
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{record} does not record a {'.'.join((*keys, 'sha256'))}: run the fetch stage") from None
    actual = sha256_of(raw_file)
    if actual != expected:
        raise DataError(f"{raw_file} changed since it was fetched: sha256 {actual}, {record} says {expected}")
    return raw_file
