"""The raw Stanford archive (`aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`), streamed review by review.

Nothing is extracted or written: the archive is read as a gzip'd tar stream (`tar_stream`), and
only members whose names match the layout exactly are kept. Sizes are bounded from the tar headers
before any data is read: one review by `MAX_REVIEW_BYTES`, the whole decompressed archive by
`MAX_ARCHIVE_BYTES`.
"""

import gzip
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from imdb_regularization.readers.sources import CHUNK_BYTES, SPLITS, DataError
from imdb_regularization.readers.tar_stream import TarFormatError, TarLimitError, regular_files

# Real reviews are a few kilobytes; a member hundreds of times larger is not a review, and reading it
# whole would only risk memory.
MAX_REVIEW_BYTES = 1 << 20
# Several times the full Stanford archive (unlabelled reviews and feature files included), decompressed.
MAX_ARCHIVE_BYTES = 2 << 30
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


def _repeated(path: Path, key: ReviewKey, name: str, first: str) -> DataError:
    """The error for a second member, `name`, holding review `key`, first read from member `first`."""
    if first == name:
        return DataError(f"{path}: {name} occurs twice")
    split, label, review_id = key
    return DataError(
        f"{path}: {name} is review {review_id} of aclImdb/{split}/{LABELS[label]}/ again (first read as {first})"
    )


def iter_reviews(
    path: Path, *, max_review_bytes: int = MAX_REVIEW_BYTES, max_archive_bytes: int = MAX_ARCHIVE_BYTES
) -> Iterator[tuple[ReviewKey, str]]:
    """Stream the labelled reviews out of an aclImdb .tar.gz, in archive order.

    Other members (`train/unsup`, `imdb.vocab`, `*.feat`, links, `..` or absolute names) are skipped.
    The tar format is read by `tar_stream`, several times faster than `tarfile` here.

    Args:
        path: the .tar.gz archive.
        max_review_bytes: the largest review read, checked from its tar header.
        max_archive_bytes: the most bytes the archive may decompress to.

    Raises:
        DataError: not a gzip'd tar, corrupted, a review that is not UTF-8, two members for the same
            review, or a review or the archive over its bound.
    """
    seen: dict[ReviewKey, str] = {}  # the member each review was read from
    try:
        with gzip.open(path) as stream:
            reviews = regular_files(
                stream, REVIEW_MEMBER.fullmatch, max_file_bytes=max_review_bytes, max_archive_bytes=max_archive_bytes
            )
            for name, data in reviews:
                key = _review_key(name)
                if key is not None:
                    if key in seen:
                        raise _repeated(path, key, name, seen[key])
                    seen[key] = name
                    yield key, _decode(path, name, data)
            # Reading stops at the end-of-archive block. Reading on to the end of the gzip stream makes
            # it check its CRC, so damage that still parsed as tar headers fails here, not silently.
            while stream.read(CHUNK_BYTES):
                if stream.tell() > max_archive_bytes:
                    raise DataError(f"{path} decompresses to more than the {max_archive_bytes:,} bytes allowed")
    except TarLimitError as error:
        raise DataError(f"{path}: {error}") from None
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
