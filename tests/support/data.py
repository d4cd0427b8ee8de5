"""Tiny datasets the tests build themselves (no network, no real archive), and a plain reader to check them by."""

import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

POSITIVE_WORDS = ["great", "wonderful", "loved", "superb", "fun"]
NEGATIVE_WORDS = ["awful", "boring", "hated", "worst", "dull"]
FILLER_WORDS = ["the", "movie", "a", "film", "was", "and", "plot", "acting", "it", "this"]

# The layout of the Stanford archive's labelled reviews, written out again here rather than
# taken from the library, so `read_archive_texts` checks the library instead of repeating it.
_REVIEW_NAME = re.compile(r"(?:\./)?aclImdb/(train|test)/(neg|pos)/(\d+)_\d+\.txt")


def make_reviews(count: int, seed: int = 0) -> dict[tuple[str, str], list[str]]:
    """`count` short reviews per split and label, whose sentiment words give the label away."""
    rng = np.random.default_rng(seed)
    reviews = {}
    for split in ("train", "test"):
        for label, words in (("pos", POSITIVE_WORDS), ("neg", NEGATIVE_WORDS)):
            reviews[split, label] = [
                " ".join(rng.choice(FILLER_WORDS + words, size=12)) + "<br /><br />The End." for _ in range(count)
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


@dataclass(frozen=True)
class ArchiveReviews:
    """One split of an archive: its review texts and labels (0 negative, 1 positive), in the same order."""

    texts: list[str]
    labels: list[int]


def read_archive_texts(path: Path) -> dict[str, ArchiveReviews]:
    """Each split's labelled reviews, ordered by label then review id, read with plain `tarfile`.

    Independent of the library's streaming reader, to check what it gives: only regular files named
    exactly like a labelled review count; links, other files and unsafe names are skipped.
    """
    found: dict[str, list[tuple[int, int, str]]] = {"train": [], "test": []}
    with tarfile.open(path) as archive:
        for member in archive:
            match = _REVIEW_NAME.fullmatch(member.name)
            if member.isfile() and match:
                split, label, review_id = match.group(1), int(match.group(2) == "pos"), int(match.group(3))
                found[split].append((label, review_id, archive.extractfile(member).read().decode("utf-8")))
    return {
        split: ArchiveReviews(texts=[text for *_, text in sorted(rows)], labels=[label for label, *_ in sorted(rows)])
        for split, rows in found.items()
    }
