"""Where each IMDB source comes from, what its file is called in `data/raw/`, and how files are checked."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 1 << 20
# What `fetch` writes beside the raw file: where it came from and its SHA-256, which `encode` checks.
SOURCE_RECORD = "source.json"


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
