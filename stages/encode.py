"""Stage `encode`: turn the raw IMDB source into the notebook's multi-hot arrays.

Params: `data.source`, `data.num_words`.
Reads: `<raw>/imdb.npz` (keras) or `<raw>/aclImdb_v1.tar.gz` (aclimdb), after checking it
against the SHA-256 in `<raw>/source.json`; the archive is streamed, never extracted.
Writes: `<out>/x_train.npy`, `y_train.npy`, `x_test.npy`, `y_test.npy` (uint8), and for
aclimdb `<out>/vocabulary.tsv` (index, word, training-set count of each indexed word).

Indices follow `tf.keras.datasets.imdb.load_data`: 0 padding, 1 start, 2 out of
vocabulary, 3 unused, and the word of frequency rank r (1 = most frequent) is r + 3;
indices at or beyond `num_words` become 2. A review's multi-hot row has a 1 at each
index it contains, as in the notebook's `sequences_shaping`.
"""

import argparse
import gzip
import io
import json
import logging
import pickle
import re
import string
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path

import numpy as np

from stages import cli
from stages.atomic import atomic_directory, save_array, write_text
from stages.params import FIRST_WORD_INDEX, load_params
from stages.sources import CHUNK_BYTES, SOURCE_RECORD, SOURCES, sha256_of

log = logging.getLogger("stages.encode")

START_INDEX, OOV_INDEX = 1, 2
SPLITS, LABELS = ("train", "test"), ("neg", "pos")
ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
WORD_CHARACTERS = string.ascii_lowercase + string.digits + "'"
# For `bytes.translate`: keeps the bytes of word characters and turns every other byte into a space.
WORD_BYTES_ONLY = bytes(byte if chr(byte) in WORD_CHARACTERS else ord(" ") for byte in range(256))
REVIEW_MEMBER = re.compile(r"(?:\./)?aclImdb/(train|test)/(pos|neg)/(\d+)_\d+\.txt")
# Rebuilding the object arrays inside imdb.npz takes these globals and no others;
# refusing the rest keeps a tampered file from running code through pickle.
NUMPY_PICKLE_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
})


class DataError(cli.StageError):
    """The raw file is not what its source should look like."""


@dataclass(frozen=True)
class Ragged:
    """Integer sequences of different lengths, stored flat: row i is the i-th run of `lengths[i]` values."""

    values: np.ndarray
    lengths: np.ndarray


@dataclass(frozen=True)
class Reviews:
    """Review texts with labels (0 negative, 1 positive), in a fixed order."""

    texts: list[str]
    labels: np.ndarray


def _ragged(sequences: list, flat_values: Iterable[int]) -> Ragged:
    """A Ragged with the row lengths of `sequences` and the values `flat_values` yields, in order."""
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    values = np.fromiter(flat_values, dtype=np.int64, count=int(lengths.sum()))
    return Ragged(values=values, lengths=lengths)


def ragged_from_lists(sequences: list) -> Ragged:
    return _ragged(sequences, chain.from_iterable(sequences))


def keras_indices(ranks: Ragged, num_words: int) -> Ragged:
    """Map frequency ranks (1 = most frequent, 0 = unknown word) to Keras indices.

    Args:
        ranks: one sequence of ranks per review.
        num_words: indices at or beyond this become the out-of-vocabulary index 2.

    Returns:
        The index sequences, each starting with the start index 1.
    """
    indices = ranks.values + (FIRST_WORD_INDEX - 1)
    indices = np.where((ranks.values > 0) & (indices < num_words), indices, OOV_INDEX)
    row_starts = np.cumsum(ranks.lengths) - ranks.lengths
    return Ragged(values=np.insert(indices, row_starts, START_INDEX), lengths=ranks.lengths + 1)


def multi_hot(sequences: Ragged, num_words: int) -> np.ndarray:
    """One uint8 row per sequence with a 1 at every index it contains.

    Raises:
        ValueError: an index is negative or not below `num_words`.
    """
    values = sequences.values
    if values.size and not 0 <= values.min() <= values.max() < num_words:
        raise ValueError(f"indices must lie in [0, {num_words}), got {values.min()}..{values.max()}")
    rows = np.repeat(np.arange(len(sequences.lengths)), sequences.lengths)
    matrix = np.zeros((len(sequences.lengths), num_words), dtype=np.uint8)
    matrix[rows, values] = 1
    return matrix


def tokenize(text: str) -> list[str]:
    """Lower-case words of letters, digits and apostrophes, with the reviews' `<br />` tags dropped.

    The tokens of `re.findall(r"[a-z0-9']+", ...)`, twice as fast: they are ASCII, so once `lower()`
    has run on the text (it maps a few non-ASCII letters, such as the Kelvin sign, to ASCII), one
    byte-level translate can blank everything else, UTF-8's multi-byte characters included.
    """
    kept = text.lower().replace("<br />", " ").encode("utf-8").translate(WORD_BYTES_ONLY)
    return kept.decode("ascii").split()


def build_vocabulary(token_lists: list[list[str]]) -> list[tuple[str, int]]:
    """Words with their counts, most frequent first; ties go alphabetically so the order is stable."""
    counts = Counter(chain.from_iterable(token_lists))
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def rank_tokens(token_lists: list[list[str]], ranks: dict[str, int]) -> Ragged:
    """Replace each token by its frequency rank, 0 for words not in `ranks`."""
    # One `map` over all tokens does the lookups in C, rather than a comprehension per review.
    return _ragged(token_lists, map(ranks.get, chain.from_iterable(token_lists), repeat(0)))


def encode_aclimdb(
    train: Reviews, test: Reviews, num_words: int
) -> tuple[dict[str, np.ndarray], list[tuple[str, int]]]:
    """Multi-hot arrays for raw reviews, with the vocabulary ranked on the training split only.

    Returns:
        The arrays named as in `ARRAY_NAMES`, and the indexed words with their counts.
    """
    train_tokens = list(map(tokenize, train.texts))
    vocabulary = build_vocabulary(train_tokens)
    ranks = {word: rank for rank, (word, _) in enumerate(vocabulary, start=1)}
    train_ranks = rank_tokens(train_tokens, ranks)
    # Millions of token strings are the biggest thing held here: let them go before the test split's.
    del train_tokens
    test_ranks = rank_tokens(list(map(tokenize, test.texts)), ranks)
    arrays = {}
    for split, split_ranks, labels in (("train", train_ranks, train.labels), ("test", test_ranks, test.labels)):
        arrays[f"x_{split}"] = multi_hot(keras_indices(split_ranks, num_words), num_words)
        arrays[f"y_{split}"] = labels
    return arrays, vocabulary[: num_words - FIRST_WORD_INDEX]


def encode_keras(raw: dict[str, np.ndarray], num_words: int) -> dict[str, np.ndarray]:
    """Multi-hot arrays from the sequences of Keras' imdb.npz (ranks, 1 = most frequent)."""
    arrays = {}
    for split in SPLITS:
        indices = keras_indices(ragged_from_lists(raw[f"x_{split}"]), num_words)
        arrays[f"x_{split}"] = multi_hot(indices, num_words)
        arrays[f"y_{split}"] = raw[f"y_{split}"].astype(np.uint8)
    return arrays


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in NUMPY_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_npy(stream: io.BytesIO) -> np.ndarray:
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version[0] == 1 else np.lib.format.read_array_header_2_0
    _, _, dtype = read_header(stream)
    if not dtype.hasobject:
        stream.seek(0)
        return np.lib.format.read_array(stream, allow_pickle=False)
    return _NumpyOnlyUnpickler(stream).load()


def read_keras_npz(path: Path) -> dict[str, np.ndarray]:
    """Load Keras' imdb.npz without letting its pickles run code.

    Raises:
        DataError: not a zip, a member missing, or a member that is not a plain array of the right kind.
    """
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            for name in ARRAY_NAMES:
                if f"{name}.npy" not in names:
                    raise DataError(f"{path} has no {name} array (it holds {', '.join(sorted(names)) or 'nothing'})")
                arrays[name] = _read_npy(io.BytesIO(archive.read(f"{name}.npy")))
    except zipfile.BadZipFile:
        raise DataError(f"{path} is not an .npz (zip) file") from None
    except (pickle.UnpicklingError, ValueError, EOFError) as error:
        raise DataError(f"{path}: cannot read {name}: {error}") from None
    _check_keras_arrays(path, arrays)
    return arrays


def _check_keras_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Reject what the allowed pickle globals can still build but is not IMDB data, such as a bare dtype."""
    for name, array in arrays.items():
        sequences = name.startswith("x_")
        if not isinstance(array, np.ndarray) or array.dtype.kind not in ("iubO" if sequences else "iub"):
            found = f"{array.dtype} array" if isinstance(array, np.ndarray) else type(array).__name__
            raise DataError(f"{path}: {name} should hold {'sequences' if sequences else 'integer labels'}, got {found}")
    for split in SPLITS:
        if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise DataError(f"{path}: x_{split} and y_{split} differ in length")


def _review_key(member: tarfile.TarInfo) -> tuple[str, int, int] | None:
    """(split, label, review id) for a labelled review file, None for every other member.

    The name must match the layout exactly, so `..`, absolute paths, links, `unsup/` and the
    extra files of the full Stanford archive are all skipped.
    """
    match = REVIEW_MEMBER.fullmatch(member.name)
    if match is None or not member.isfile():
        return None
    return match.group(1), LABELS.index(match.group(2)), int(match.group(3))


def _decode(path: Path, member: tarfile.TarInfo, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path}: {member.name} is not UTF-8 text (byte {error.start} is 0x{raw[error.start]:02x})"
        ) from None


def _reviews_in_order(path: Path, found: dict[str, list[tuple[int, int, str]]]) -> dict[str, Reviews]:
    missing = [
        f"aclImdb/{split}/{label_name}/"
        for split in SPLITS
        for label, label_name in enumerate(LABELS)
        if not any(item[0] == label for item in found[split])
    ]
    if missing:
        raise DataError(
            f"{path} has no reviews under {', '.join(missing)} "
            "(expected files named aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt)"
        )
    reviews = {}
    for split in SPLITS:
        ordered = sorted(found[split])
        reviews[split] = Reviews(
            texts=[text for _, _, text in ordered],
            labels=np.array([label for label, _, _ in ordered], dtype=np.uint8),
        )
    return reviews


def read_aclimdb(path: Path) -> dict[str, Reviews]:
    """Stream the labelled reviews out of an aclImdb .tar.gz: nothing is extracted or written.

    Other members (`train/unsup`, `imdb.vocab`, `*.feat`, links, `..` or absolute names) are skipped.

    Returns:
        The `train` and `test` reviews, each ordered by label then review id.

    Raises:
        DataError: not a gzip'd tar, corrupted, a review that is not UTF-8, or a split/label with no reviews.
    """
    found: dict[str, list[tuple[int, int, str]]] = {split: [] for split in SPLITS}
    try:
        with gzip.open(path) as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                key = _review_key(member)
                if key is not None:
                    split, label, review_id = key
                    found[split].append((label, review_id, _decode(path, member, archive.extractfile(member).read())))
            # tarfile stops at the end-of-archive block. Reading on to the end of the gzip stream makes
            # it check its CRC, so damage that still parsed as tar headers fails here, not silently.
            while stream.read(CHUNK_BYTES):
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path} is not a readable .tar.gz archive: {error}") from None
    return _reviews_in_order(path, found)


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


def vocabulary_tsv(vocabulary: list[tuple[str, int]]) -> str:
    """The indexed words as a table: Keras index, word, training-set count."""
    lines = [f"{rank + FIRST_WORD_INDEX - 1}\t{word}\t{count}" for rank, (word, count) in enumerate(vocabulary, 1)]
    return "index\tword\tcount\n" + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Encode raw IMDB data as multi-hot arrays.")
    parser.add_argument("--raw", type=Path, required=True, help="directory written by the fetch stage")
    parser.add_argument("--out", type=Path, required=True, help="directory for the .npy arrays")
    args = parser.parse_args()

    data = load_params().data
    raw_file = verified_raw_file(args.raw, SOURCES[data.source].filename)
    vocabulary = None
    if data.source == "keras":
        arrays = encode_keras(read_keras_npz(raw_file), data.num_words)
    else:
        reviews = read_aclimdb(raw_file)
        arrays, vocabulary = encode_aclimdb(reviews["train"], reviews["test"], data.num_words)
        if len(vocabulary) < data.num_words - FIRST_WORD_INDEX:
            log.info("data.num_words=%d is more than the %d training words + %d reserved indices: "
                     "the last columns are all zero", data.num_words, len(vocabulary), FIRST_WORD_INDEX)
    with atomic_directory(args.out) as out:
        for name, array in arrays.items():
            save_array(out / f"{name}.npy", array)
        if vocabulary is not None:
            write_text(out / "vocabulary.tsv", vocabulary_tsv(vocabulary))
    log.info(
        "encoded %d training and %d test reviews as %d-wide multi-hot rows in %s",
        len(arrays["y_train"]), len(arrays["y_test"]), data.num_words, args.out,
    )


if __name__ == "__main__":
    cli.run(main)
