"""The raw Stanford archive (`aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`), streamed review by review.

Nothing is extracted or written: the archive is read as a gzip'd tar stream (`tar_stream`), and
only members whose names match the layout exactly are kept.
"""

import gzip
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from imdb_regularization.readers.sources import CHUNK_BYTES, SPLITS, DataError
from imdb_regularization.readers.tar_stream import TarFormatError, regular_files

LABELS = ("neg", "pos")
REVIEW_MEMBER = re.compile(r"(?:\./)?aclImdb/(train|test)/(pos|neg)/(\d+)_\d+\.txt")

ReviewKey = tuple[str, int, int]  # split, label (0 negative, 1 positive), review id


def _review_key(name: str) -> ReviewKey | None:
    """(split, label, review id) for the name of a labelled review file, None for every other name.

    The name must match the layout exactly, so `..`, absolute paths, `unsup/` and the extra
    files of the full Stanford archive are all skipped.
    """
    match = REVIEW_MEMBER.fullmatch(name)
    if match is None:
        return None
    return match.group(1), LABELS.index(match.group(2)), int(match.group(3))


def _decode(path: Path, name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: {name} is not UTF-8 text (byte {error.start} is 0x{raw[error.start]:02x})") from None


def iter_reviews(path: Path) -> Iterator[tuple[ReviewKey, str]]:
    """Stream the labelled reviews out of an aclImdb .tar.gz, in archive order.

    Other members (`train/unsup`, `imdb.vocab`, `*.feat`, links, `..` or absolute names) are skipped.
    The tar format is read by `tar_stream`, several times faster than `tarfile` here.

    Raises:
        DataError: not a gzip'd tar, corrupted, or a review that is not UTF-8.
    """
    try:
        with gzip.open(path) as stream:
            for name, data in regular_files(stream):
                key = _review_key(name)
                if key is not None:
                    yield key, _decode(path, name, data)
            # Reading stops at the end-of-archive block. Reading on to the end of the gzip stream makes
            # it check its CRC, so damage that still parsed as tar headers fails here, not silently.
            while stream.read(CHUNK_BYTES):
                pass
    except (TarFormatError, OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path} is not a readable .tar.gz archive: {error}") from None


def ordered_rows(keys: list[ReviewKey], source: object) -> dict[str, np.ndarray]:
    """Per split, the positions in `keys` ordered by label then review id.

    Raises:
        DataError: a split has no reviews of one of the labels; `source` names where they were read.
    """
    present = {key[:2] for key in keys}
    missing = [
        f"aclImdb/{split}/{label_name}/"
        for split in SPLITS
        for label, label_name in enumerate(LABELS)
        if (split, label) not in present
    ]
    if missing:
        raise DataError(
            f"{source} has no reviews under {', '.join(missing)} "
            "(expected files named aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt)"
        )
    return {
        split: np.array(
            sorted((row for row, key in enumerate(keys) if key[0] == split), key=keys.__getitem__), dtype=np.int64
        )
        for split in SPLITS
    }
