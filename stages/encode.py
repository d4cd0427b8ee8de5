"""Stage `encode`: turn the raw IMDB source into the notebook's multi-hot arrays.

Params: `data.source`, `data.num_words`.
Reads: `<raw>/imdb.npz` (keras) or `<raw>/aclImdb_v1.tar.gz` (aclimdb), after checking it
against the SHA-256 in `<raw>/source.json`; the archive is streamed, never extracted, and
other processes tokenize the reviews already read while this one reads on.
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
import os
import pickle
import re
import string
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import numpy as np

from stages import cli
from stages.atomic import atomic_directory, save_array, write_text
from stages.params import FIRST_WORD_INDEX, load_params
from stages.sources import CHUNK_BYTES, SOURCE_RECORD, SOURCES, sha256_of
from stages.tar_stream import TarFormatError, regular_files

log = logging.getLogger("stages.encode")

START_INDEX, OOV_INDEX = 1, 2
SPLITS, LABELS = ("train", "test"), ("neg", "pos")
ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
WORD_CHARACTERS = string.ascii_lowercase + string.digits + "'"
# For `bytes.translate`: keeps the bytes of word characters and turns every other byte into a space.
WORD_BYTES_ONLY = bytes(byte if chr(byte) in WORD_CHARACTERS else ord(" ") for byte in range(256))
REVIEW_MEMBER = re.compile(r"(?:\./)?aclImdb/(train|test)/(pos|neg)/(\d+)_\d+\.txt")
# Reviews go to the tokenizing processes in batches of this many: big enough that sending them
# costs little, small enough that the last batch, tokenized after reading ends, is short.
BATCH_REVIEWS = 2_000
# This process reads the archive while the others tokenize what it has read so far. Reading
# takes under a third of the tokenizing time (0.9 s vs 3 s of CPU on the full archive), so one
# tokenizing process per core keeps every core busy.
TOKENIZING_PROCESSES = os.cpu_count() or 1
# Rebuilding the object arrays inside imdb.npz takes these globals and no others;
# refusing the rest keeps a tampered file from running code through pickle.
NUMPY_PICKLE_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }
)


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


@dataclass(frozen=True)
class TokenIds:
    """Tokenized texts, each token an id: the position of its word in `words`, which lists each word once."""

    words: list[str]
    ids: Ragged


@dataclass(frozen=True)
class IndexedReviews:
    """Reviews as ids into one word list, one row each in the order they were read.

    `rows[split]` lists the rows of a split ordered by label, then review id.
    """

    words: list[str]
    ids: Ragged
    labels: np.ndarray
    rows: dict[str, np.ndarray]


ReviewKey = tuple[str, int, int]  # split, label, review id


def _ragged(sequences: list, flat_values: Iterable[int], dtype: type = np.int64) -> Ragged:
    """A Ragged with the row lengths of `sequences` and the values `flat_values` yields, in order."""
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    values = np.fromiter(flat_values, dtype=dtype, count=int(lengths.sum()))
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
    # One lookup per token in a table of every rank's index costs less than computing them.
    index_of_rank = np.arange(ranks.values.max(initial=0) + 1, dtype=ranks.values.dtype) + (FIRST_WORD_INDEX - 1)
    index_of_rank[(index_of_rank == FIRST_WORD_INDEX - 1) | (index_of_rank >= num_words)] = OOV_INDEX
    indices = index_of_rank[ranks.values]
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
    # One flat scatter (row * width + index) costs about half of a two-dimensional one, and
    # 32-bit positions, when they fit, move half the bytes of 64-bit ones.
    size = len(sequences.lengths) * num_words
    position_type = np.int32 if size < 2**31 else np.int64
    flat = np.repeat(np.arange(0, size, num_words, dtype=position_type), sequences.lengths)
    flat += values.astype(position_type, copy=False)
    matrix = np.zeros(size, dtype=np.uint8)
    matrix[flat] = 1
    return matrix.reshape(len(sequences.lengths), num_words)


def tokenize(text: str) -> list[str]:
    """Lower-case words of letters, digits and apostrophes, with the reviews' `<br />` tags dropped.

    The tokens of `re.findall(r"[a-z0-9']+", ...)`, twice as fast: they are ASCII, so once `lower()`
    has run on the text (it maps a few non-ASCII letters, such as the Kelvin sign, to ASCII), one
    byte-level translate can blank everything else, UTF-8's multi-byte characters included.
    """
    kept = text.lower().replace("<br />", " ").encode("utf-8").translate(WORD_BYTES_ONLY)
    return kept.decode("ascii").split()


class _FirstSeenIds(dict):
    """word -> id, numbering words in the order they are first looked up."""

    def __missing__(self, word: str) -> int:
        self[word] = len(self)
        return self[word]


def token_ids(texts: list[str]) -> TokenIds:
    """Tokenize `texts`, numbering their words in order of first appearance."""
    numbering = _FirstSeenIds()
    token_lists = list(map(tokenize, texts))
    # `map` over a bound method does the millions of lookups in C, not in a Python loop.
    ids = _ragged(token_lists, map(numbering.__getitem__, chain.from_iterable(token_lists)), np.int32)
    return TokenIds(words=list(numbering), ids=ids)


def join_token_ids(parts: Iterable[TokenIds]) -> TokenIds:
    """The texts of all `parts`, in order, with ids into one word list."""
    numbering, values, lengths = _FirstSeenIds(), [], []
    for part in parts:
        global_ids = np.fromiter(map(numbering.__getitem__, part.words), dtype=np.int32, count=len(part.words))
        values.append(global_ids[part.ids.values])
        lengths.append(part.ids.lengths)
    return TokenIds(words=list(numbering), ids=Ragged(values=np.concatenate(values), lengths=np.concatenate(lengths)))


def rank_words(words: list[str], train_ids: np.ndarray) -> tuple[list[tuple[str, int]], np.ndarray]:
    """The training split's words by count, ties alphabetically, and each word id's rank (1 = most frequent).

    Returns:
        The ranked words with their training-set counts, and for each id in `words` its rank,
        0 for a word that appears only outside the training split.
    """
    counts = np.bincount(train_ids, minlength=len(words))
    alphabetical = np.array(sorted(np.flatnonzero(counts).tolist(), key=words.__getitem__), dtype=np.int64)
    # A stable sort by descending count keeps equal counts in alphabetical order.
    ranked = alphabetical[np.argsort(-counts[alphabetical], kind="stable")]
    rank_of_id = np.zeros(len(words), dtype=np.int32)
    rank_of_id[ranked] = np.arange(1, len(ranked) + 1)
    return [(words[i], int(counts[i])) for i in ranked.tolist()], rank_of_id


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


def _batches(reviews: Iterable[tuple[ReviewKey, str]], keys: list[ReviewKey]) -> Iterator[list[str]]:
    """The texts of `reviews` in lists of BATCH_REVIEWS, appending their keys to `keys` as it goes."""
    reviews = iter(reviews)
    while batch := list(islice(reviews, BATCH_REVIEWS)):
        keys.extend(key for key, _ in batch)
        yield [text for _, text in batch]


def index_reviews(reviews: Iterable[tuple[ReviewKey, str]], source: object, workers: int) -> IndexedReviews:
    """Tokenize keyed reviews in `workers` processes while they are still being read, and order each split.

    `reviews` is consumed here, in this process (reading the archive), while the worker
    processes tokenize the batches already read.

    Raises:
        DataError: see `ordered_rows`.
    """
    keys: list[ReviewKey] = []
    pool = cli.worker_pool(workers)
    try:
        # `map` hands out every batch before it returns: `keys` is complete from here on.
        parts = pool.map(token_ids, _batches(reviews, keys))
        rows = ordered_rows(keys, source)
        tokens = join_token_ids(parts)
    finally:
        pool.shutdown(cancel_futures=True)
    labels = np.array([label for _, label, _ in keys], dtype=np.uint8)
    return IndexedReviews(words=tokens.words, ids=tokens.ids, labels=labels, rows=rows)


def encode_aclimdb(reviews: IndexedReviews, num_words: int) -> tuple[dict[str, np.ndarray], list[tuple[str, int]]]:
    """Multi-hot arrays for indexed reviews, with the vocabulary ranked on the training split only.

    Returns:
        The arrays named as in `ARRAY_NAMES`, and the indexed words with their counts.
    """
    ids = reviews.ids
    in_train = np.zeros(len(ids.lengths), dtype=bool)
    in_train[reviews.rows["train"]] = True
    vocabulary, rank_of_id = rank_words(reviews.words, ids.values[np.repeat(in_train, ids.lengths)])
    # All reviews in one pass, in the order read; each split then takes its rows in order.
    ranks = Ragged(values=rank_of_id[ids.values], lengths=ids.lengths)
    rows_multi_hot = multi_hot(keras_indices(ranks, num_words), num_words)
    arrays = {}
    for split in SPLITS:
        arrays[f"x_{split}"] = rows_multi_hot[reviews.rows[split]]
        arrays[f"y_{split}"] = reviews.labels[reviews.rows[split]]
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
    """Stream the labelled reviews out of an aclImdb .tar.gz, in archive order: nothing is extracted or written.

    Other members (`train/unsup`, `imdb.vocab`, `*.feat`, links, `..` or absolute names) are skipped.
    The tar format is read by `stages.tar_stream`, several times faster than `tarfile` here.

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


def read_aclimdb(path: Path) -> dict[str, Reviews]:
    """The `train` and `test` reviews of an aclImdb .tar.gz, each ordered by label then review id.

    Raises:
        DataError: see `iter_reviews` and `ordered_rows`.
    """
    reviews = list(iter_reviews(path))
    rows = ordered_rows([key for key, _ in reviews], path)
    return {
        split: Reviews(
            texts=[reviews[row][1] for row in rows[split]],
            labels=np.array([reviews[row][0][1] for row in rows[split]], dtype=np.uint8),
        )
        for split in SPLITS
    }


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
        reviews = index_reviews(iter_reviews(raw_file), raw_file, TOKENIZING_PROCESSES)
        arrays, vocabulary = encode_aclimdb(reviews, data.num_words)
        if len(vocabulary) < data.num_words - FIRST_WORD_INDEX:
            log.info(
                "data.num_words=%d is more than the %d training words + %d reserved indices: "
                "the last columns are all zero",
                data.num_words,
                len(vocabulary),
                FIRST_WORD_INDEX,
            )
    with atomic_directory(args.out) as out:
        for name, array in arrays.items():
            save_array(out / f"{name}.npy", array)
        if vocabulary is not None:
            write_text(out / "vocabulary.tsv", vocabulary_tsv(vocabulary))
    log.info(
        "encoded %d training and %d test reviews as %d-wide multi-hot rows in %s",
        len(arrays["y_train"]),
        len(arrays["y_test"]),
        data.num_words,
        args.out,
    )


if __name__ == "__main__":
    cli.run(main)
