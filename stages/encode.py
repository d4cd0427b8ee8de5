"""Stage `encode`: turn the raw IMDB source into the notebook's multi-hot arrays.

Params: `data.source`, `data.num_words`.
Reads: `<raw>/imdb.npz` (keras) or `<raw>/aclImdb_v1.tar.gz` (aclimdb).
Writes: `<out>/x_train.npy`, `y_train.npy`, `x_test.npy`, `y_test.npy` (uint8), and for
aclimdb `<out>/vocabulary.tsv` (index, word, training-set count of each indexed word).

Indices follow `tf.keras.datasets.imdb.load_data`: 0 padding, 1 start, 2 out of
vocabulary, 3 unused, and the word of frequency rank r (1 = most frequent) is r + 3;
indices at or beyond `num_words` become 2. A review's multi-hot row has a 1 at each
index it contains, as in the notebook's `sequences_shaping`.
"""

import argparse
import io
import logging
import pickle
import re
import tarfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from stages import cli
from stages.atomic import save_array, write_text
from stages.params import FIRST_WORD_INDEX, load_params
from stages.sources import SOURCES

log = logging.getLogger("stages.encode")

START_INDEX, OOV_INDEX = 1, 2
SPLITS, LABELS = ("train", "test"), ("neg", "pos")
ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
TOKEN = re.compile(r"[a-z0-9']+")
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


def ragged_from_lists(sequences: list) -> Ragged:
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    values = np.fromiter(chain.from_iterable(sequences), dtype=np.int64, count=int(lengths.sum()))
    return Ragged(values=values, lengths=lengths)


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
    """Lower-case words of letters, digits and apostrophes, with the reviews' `<br />` tags dropped."""
    return TOKEN.findall(text.lower().replace("<br />", " "))


def build_vocabulary(token_lists: list[list[str]]) -> list[tuple[str, int]]:
    """Words with their counts, most frequent first; ties go alphabetically so the order is stable."""
    counts = Counter(chain.from_iterable(token_lists))
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def rank_tokens(token_lists: list[list[str]], ranks: dict[str, int]) -> Ragged:
    """Replace each token by its frequency rank, 0 for words not in `ranks`."""
    return ragged_from_lists([[ranks.get(token, 0) for token in tokens] for tokens in token_lists])


def encode_aclimdb(
    train: Reviews, test: Reviews, num_words: int
) -> tuple[dict[str, np.ndarray], list[tuple[str, int]]]:
    """Multi-hot arrays for raw reviews, with the vocabulary ranked on the training split only.

    Returns:
        The arrays named as in `ARRAY_NAMES`, and the indexed words with their counts.
    """
    train_tokens = [tokenize(text) for text in train.texts]
    vocabulary = build_vocabulary(train_tokens)
    ranks = {word: rank for rank, (word, _) in enumerate(vocabulary, start=1)}
    arrays = {}
    for split, reviews, tokens in (("train", train, train_tokens), ("test", test, None)):
        tokens = tokens if tokens is not None else [tokenize(text) for text in reviews.texts]
        indices = keras_indices(rank_tokens(tokens, ranks), num_words)
        arrays[f"x_{split}"] = multi_hot(indices, num_words)
        arrays[f"y_{split}"] = reviews.labels
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
        DataError: not a zip, a member missing, or a pickle that is not a plain array.
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
    for split in SPLITS:
        if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise DataError(f"{path}: x_{split} and y_{split} differ in length")
    return arrays


def read_aclimdb(path: Path) -> dict[str, Reviews]:
    """Stream the labelled reviews out of an aclImdb .tar.gz without extracting it.

    Other members (`train/unsup`, `imdb.vocab`, links, anything outside `aclImdb/`) are skipped.

    Returns:
        The `train` and `test` reviews, each ordered by label then review id.

    Raises:
        DataError: not a gzip'd tar, a review that is not UTF-8, or a split/label with no reviews.
    """
    found: dict[str, list[tuple[int, int, str]]] = {split: [] for split in SPLITS}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                match = REVIEW_MEMBER.fullmatch(member.name)
                if match is None or not member.isfile():
                    continue
                split, label, review_id = match.group(1), LABELS.index(match.group(2)), int(match.group(3))
                raw = archive.extractfile(member).read()
                try:
                    found[split].append((label, review_id, raw.decode("utf-8")))
                except UnicodeDecodeError:
                    raise DataError(f"{path}: {member.name} is not UTF-8 text") from None
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"{path} is not a readable .tar.gz archive: {error}") from None
    reviews = {}
    for split in SPLITS:
        for label, label_name in enumerate(LABELS):
            if not any(item[0] == label for item in found[split]):
                raise DataError(f"{path} has no reviews under aclImdb/{split}/{label_name}/")
        ordered = sorted(found[split])
        reviews[split] = Reviews(
            texts=[text for _, _, text in ordered],
            labels=np.array([label for label, _, _ in ordered], dtype=np.uint8),
        )
    return reviews


def main() -> None:
    parser = argparse.ArgumentParser(description="Encode raw IMDB data as multi-hot arrays.")
    parser.add_argument("--raw", type=Path, required=True, help="directory written by the fetch stage")
    parser.add_argument("--out", type=Path, required=True, help="directory for the .npy arrays")
    args = parser.parse_args()

    data = load_params().data
    raw_file = args.raw / SOURCES[data.source].filename
    if not raw_file.is_file():
        raise DataError(f"{raw_file} is missing: run the fetch stage for data.source={data.source}")
    if data.source == "keras":
        arrays = encode_keras(read_keras_npz(raw_file), data.num_words)
    else:
        reviews = read_aclimdb(raw_file)
        arrays, vocabulary = encode_aclimdb(reviews["train"], reviews["test"], data.num_words)
        lines = [f"{rank + FIRST_WORD_INDEX - 1}\t{word}\t{count}" for rank, (word, count) in enumerate(vocabulary, 1)]
        write_text(args.out / "vocabulary.tsv", "index\tword\tcount\n" + "\n".join(lines) + "\n")
    for name, array in arrays.items():
        save_array(args.out / f"{name}.npy", array)
    log.info(
        "encoded %d training and %d test reviews as %d-wide multi-hot rows in %s",
        len(arrays["y_train"]), len(arrays["y_test"]), data.num_words, args.out,
    )


if __name__ == "__main__":
    cli.run(main)
