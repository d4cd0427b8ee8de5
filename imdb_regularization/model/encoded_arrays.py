"""The encoded arrays: the contract between `encode`, which writes them, and `train`/`evaluate`, which read them.

`<dir>/x_train.npy`, `y_train.npy`, `x_test.npy`, `y_test.npy`: uint8 multi-hot rows and 0/1 labels,
named as in `readers.sources.ARRAY_NAMES`; for the aclimdb source also `<dir>/vocabulary.tsv`.

The multi-hot rows take rows × num_words bytes, so both sides handle them a block of rows at a
time: encode writes them block by block (`save_row_blocks`), and train reads them either whole,
as float32 rows (narrow, dense data), or block by block into the columns of their ones
(`SparseRows`, wide data, where a row holds a few hundred ones among thousands of zeros).
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from imdb_regularization import cli
from imdb_regularization.atomic import atomic_path, save_array, write_text
from imdb_regularization.params import FIRST_WORD_INDEX
from imdb_regularization.readers.sources import DataError

VOCABULARY = "vocabulary.tsv"
# The most bytes of multi-hot rows read at once when they are turned into `SparseRows`.
READ_BLOCK_BYTES = 32 * 2**20
# `train.input: auto` trains on `SparseRows` when fewer than this fraction of x_train's values are
# ones. TensorFlow's sparse products cost several times more per multiply-add than its dense
# ones, so sparse input only pays off well below this; docs/speed.md measures both sides of it.
SPARSE_BELOW_DENSITY = 0.05
HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
# What one train stage holds in memory, for `estimate_training_memory`, from the peak RSS of train
# stages measured at num_words 100, 1,000, 10,000 and 30,000 (docs/speed.md), rounded up: the
# process with TensorFlow and Keras loaded; each one of sparse rows (its int64 index pair and
# float32 value, in NumPy, in TensorFlow, in the epoch's batches and in the first layer's CSR matrix);
# each value of dense rows (float32 in NumPy and in TensorFlow, and the uint8 rows read), and of
# wide dense rows also the bool mask and indices that turn the validation rows into a CSR matrix;
# each weight of the first layer (the weight, its gradient, Adam's two moments and the
# temporaries of the penalty).
TRAINING_BASE_BYTES = 700 * 2**20
BYTES_PER_SPARSE_ONE = 56
BYTES_PER_DENSE_VALUE = 12
BYTES_PER_WIDE_DENSE_VALUE = 16
BYTES_PER_FIRST_LAYER_WEIGHT = 56


class ValidationSplitError(cli.StageError):
    """`train.validation`'s fraction holds out none of the training rows, or all of them."""


class RowBlocks(Protocol):
    """A 2-D array given a block of rows at a time (`features.multi_hot.MultiHotRows` is one)."""

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def blocks(self) -> Iterator[np.ndarray]: ...


@dataclass(frozen=True)
class SparseRows:
    """Rows of zeros and ones, kept as the columns of their ones.

    Row i's ones are at `columns[row_starts[i]:row_starts[i + 1]]`: a compressed sparse row
    matrix without its values, which are all 1.
    """

    row_starts: np.ndarray
    columns: np.ndarray
    num_columns: int

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.row_starts) - 1, self.num_columns

    @property
    def nonzeros(self) -> int:
        return len(self.columns)

    def take(self, rows: np.ndarray) -> "SparseRows":
        """The rows numbered `rows`, in that order."""
        lengths = np.diff(self.row_starts)[rows]
        ends = np.cumsum(lengths)
        # Each kept value's position: its row's start, plus its place within that row.
        within = np.arange(ends[-1] if len(ends) else 0, dtype=np.int64) - np.repeat(ends - lengths, lengths)
        positions = np.repeat(self.row_starts[rows], lengths) + within
        return SparseRows(np.concatenate([[0], ends]).astype(np.int64), self.columns[positions], self.num_columns)

    def to_dense(self) -> np.ndarray:
        """The rows as a float32 array, as `read_for_training` gives dense data."""
        dense = np.zeros(self.shape, dtype=np.float32)
        dense[np.repeat(np.arange(self.shape[0]), np.diff(self.row_starts)), self.columns] = 1
        return dense


Arrays = tuple[np.ndarray | SparseRows, np.ndarray]


@dataclass(frozen=True)
class TrainingData:
    """What train fits and validates on, and in which form (`sparse`) the rows are."""

    train: Arrays
    test: Arrays
    sparse: bool
    density: float

    @property
    def num_words(self) -> int:
        return self.train[0].shape[1]

    @property
    def wide(self) -> bool:
        """Whether the rows are mostly zeros (`is_wide`): `train.input: auto` trains them as sparse rows."""
        return is_wide(self.density)


def save_row_blocks(path: Path, rows: RowBlocks) -> None:
    """Write `rows` as a .npy file, block by block: the bytes `np.save` writes for the whole array.

    Raises:
        ValueError: the blocks do not add up to `rows.shape`.
    """
    header = {"descr": np.lib.format.dtype_to_descr(rows.dtype), "fortran_order": False, "shape": rows.shape}
    written = 0
    with atomic_path(path) as temporary, temporary.open("wb") as file:
        np.lib.format.write_array_header_1_0(file, header)
        for block in rows.blocks():
            if block.dtype != rows.dtype or block.shape[1:] != rows.shape[1:]:
                raise ValueError(f"{path.name}: a block of {block.dtype} {block.shape} in {rows.dtype} {rows.shape}")
            file.write(np.ascontiguousarray(block).data)
            written += len(block)
            del block  # before the next block is built: one block in memory, not two
        if written != rows.shape[0]:
            raise ValueError(f"{path.name}: the blocks hold {written} rows, not {rows.shape[0]}")


def write_encoded(
    directory: Path, arrays: Mapping[str, np.ndarray | RowBlocks], vocabulary: list[tuple[str, int]] | None
) -> None:
    """Write each array as `<name>.npy` (`RowBlocks` block by block), and the vocabulary (word, training-set count)."""
    for name, array in arrays.items():
        if isinstance(array, np.ndarray):
            save_array(directory / f"{name}.npy", array)
        else:
            save_row_blocks(directory / f"{name}.npy", array)
    if vocabulary is not None:
        write_text(directory / VOCABULARY, vocabulary_tsv(vocabulary))


def vocabulary_tsv(vocabulary: list[tuple[str, int]]) -> str:
    """The indexed words as a table: Keras index, word, training-set count."""
    lines = [f"{rank + FIRST_WORD_INDEX - 1}\t{word}\t{count}" for rank, (word, count) in enumerate(vocabulary, 1)]
    return "index\tword\tcount\n" + "\n".join(lines) + "\n"


def read_array(directory: Path, name: str) -> np.ndarray:
    """The array of `<directory>/<name>.npy`.

    Raises:
        DataError: the file is not a .npy array that NumPy reads without unpickling.
    """
    path = directory / f"{name}.npy"
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as error:
        raise DataError(f"{path} is not a readable .npy array: {cli.one_line(str(error))}") from None


def read_row_blocks(path: Path, max_bytes: int = READ_BLOCK_BYTES) -> Iterator[np.ndarray]:
    """The rows of a 2-D .npy file in order, a block of at most `max_bytes` (and at least one row) at a time.

    Read from the file block by block rather than memory-mapped: the pages of a mapping count
    toward the process's memory until it is unmapped, a block read only while the block lives.

    Raises:
        DataError: the file is not a .npy file, or holds no 2-D, C-ordered (row by row) array with rows.
    """
    with path.open("rb") as file:
        try:
            version = np.lib.format.read_magic(file)
            if version not in HEADER_READERS:
                raise DataError(
                    f"{path} is a .npy file of format {version}, which np.save writes only for huge headers"
                )
            shape, fortran_order, dtype = HEADER_READERS[version](file)
        except (ValueError, EOFError) as error:
            raise DataError(f"{path} is not a .npy file: {cli.one_line(str(error))}") from None
        if dtype.hasobject:
            raise DataError(f"{path} holds Python objects, not rows of numbers")
        if len(shape) != 2:
            raise DataError(f"{path} holds a {dtype} array of shape {shape}, not 2-D rows")
        if fortran_order:
            # Read a block of rows at a time, the file must hold the array row by row.
            raise DataError(
                f"{path} holds its array in Fortran (column by column) order, not row by row as encode writes"
            )
        if shape[0] == 0:
            raise DataError(f"{path} holds no rows (an array of shape {shape})")
        block_rows = max(1, max_bytes // max(1, shape[1] * dtype.itemsize))
        for first in range(0, shape[0], block_rows):
            count = min(block_rows, shape[0] - first)
            block = np.fromfile(file, dtype=dtype, count=count * shape[1])
            if block.size != count * shape[1]:
                raise DataError(f"{path} ends before its {shape[0]} rows")
            yield block.reshape(count, shape[1])


def read_multi_hot_blocks(path: Path, max_bytes: int = READ_BLOCK_BYTES) -> Iterator[np.ndarray]:
    """`read_row_blocks`, each block checked to hold uint8 zeros and ones as encode writes them.

    Raises:
        DataError: the file is not a 2-D .npy array of uint8 zeros and ones with rows.
    """
    for block in read_row_blocks(path, max_bytes):
        _check_multi_hot(path, block)
        yield block


def read_sparse_rows(path: Path, max_bytes: int = READ_BLOCK_BYTES) -> SparseRows:
    """The multi-hot rows of a .npy file as `SparseRows`, reading one block of rows at a time.

    Raises:
        DataError: the file is not a 2-D .npy array of uint8 zeros and ones (`read_multi_hot_blocks`).
    """
    starts, columns, num_columns, total = [np.zeros(1, dtype=np.int64)], [], 0, 0
    for block in read_multi_hot_blocks(path, max_bytes):
        # NumPy finds the ones of a bool array several times faster than those of a uint8 one, and
        # 0/1 bytes are valid bools; one flat search then splits into rows and columns.
        flat = np.flatnonzero(block.view(np.bool_))
        rows = flat // block.shape[1]
        starts.append(total + np.cumsum(np.bincount(rows, minlength=len(block))))
        columns.append((flat - rows * block.shape[1]).astype(np.int32))
        total += len(flat)
        num_columns = block.shape[1]
    return SparseRows(np.concatenate(starts), np.concatenate(columns or [np.zeros(0, np.int32)]), num_columns)


def _check_multi_hot(path: Path, rows: np.ndarray) -> None:
    """Raise a `DataError` naming `path` unless `rows` are uint8 zeros and ones, as encode writes them."""
    if rows.dtype != np.uint8:
        raise DataError(f"{path} holds {rows.dtype} values, not the uint8 multi-hot 0/1 rows encode writes")
    if rows.max(initial=0) > 1:
        raise DataError(f"{path} holds the value {rows.max()}, not multi-hot 0/1 rows")


def is_wide(density: float) -> bool:
    """Whether rows with this fraction of ones are wide: mostly zeros, so sparse rows and a sparse first layer pay."""
    return bool(density < SPARSE_BELOW_DENSITY)


def choose_sparse(setting: str, density: float) -> bool:
    """Whether to train on `SparseRows`: `train.input` (auto | dense | sparse), auto by the rows' density."""
    if setting == "auto":
        return is_wide(density)
    return setting == "sparse"


def _labels(directory: Path, name: str, rows: int) -> np.ndarray:
    """Labels as Keras' losses want them: float, and (N, 1) to match the model's (N, 1) output.

    Raises:
        DataError: the file holds no labels, one 0 or 1 per row of the `rows` rows they label.
    """
    labels = read_array(directory, name)
    if labels.shape != (rows,) or not np.isin(labels, (0, 1)).all():
        raise DataError(
            f"{directory / name}.npy holds a {labels.dtype} array of shape {labels.shape}, not {rows} 0/1 labels"
        )
    return labels.astype(np.float32)[:, None]


def read_for_training(directory: Path, setting: str = "dense") -> TrainingData:
    """(x_train, y_train), (x_test, y_test) as Keras trains on them, dense or sparse as `setting` (`train.input`) says.

    Dense: float32 rows, as Keras' losses want float inputs. Sparse: `SparseRows`, read a block at
    a time, so memory follows the ones the rows hold, not their width. x_train is read as
    `SparseRows` first, which gives its density, so a wide array is never held whole.
    """
    x_train_path, x_test_path = directory / "x_train.npy", directory / "x_test.npy"
    train_rows = read_sparse_rows(x_train_path)
    density = train_rows.nonzeros / max(1, train_rows.shape[0] * train_rows.shape[1])
    sparse = choose_sparse(setting, density)
    x_train: np.ndarray | SparseRows
    x_test: np.ndarray | SparseRows
    if sparse:
        x_train, x_test = train_rows, read_sparse_rows(x_test_path)
    else:
        x_train = read_array(directory, "x_train").astype(np.float32)
        # x_train was checked as it was read for its density; x_test by the same reader, block by block.
        x_test = np.concatenate(list(read_multi_hot_blocks(x_test_path))).astype(np.float32)
    if x_test.shape[1] != train_rows.shape[1]:
        raise DataError(f"{x_test_path} has rows of {x_test.shape[1]} words, {x_train_path} of {train_rows.shape[1]}")
    train = (x_train, _labels(directory, "y_train", x_train.shape[0]))
    test = (x_test, _labels(directory, "y_test", x_test.shape[0]))
    return TrainingData(train=train, test=test, sparse=sparse, density=density)


@dataclass(frozen=True)
class MemoryEstimate:
    """What one train stage needs at the encoded arrays' width, and why."""

    bytes: int
    sparse: bool
    num_words: int
    ones_per_row: float


def training_memory(*, rows: int, num_words: int, ones: int, first_layer_units: int, sparse: bool) -> int:
    """Peak bytes of one train stage on `rows` multi-hot rows (train and test) holding `ones` ones."""
    if sparse:
        data = BYTES_PER_SPARSE_ONE * ones
    else:
        wide = is_wide(ones / max(1, rows * num_words))
        data = (BYTES_PER_WIDE_DENSE_VALUE if wide else BYTES_PER_DENSE_VALUE) * rows * num_words
    return TRAINING_BASE_BYTES + data + BYTES_PER_FIRST_LAYER_WEIGHT * num_words * first_layer_units


def estimate_training_memory(directory: Path, setting: str, first_layer_units: int) -> MemoryEstimate:
    """`training_memory` for the encoded arrays in `directory`, trained as `setting` (`train.input`) says.

    The ones are counted in the first block of x_train and scaled to all rows, so the estimate
    reads a block, not the arrays: the rows are ordered by label and review id, and one block
    holds thousands of them.
    """
    x_train_path, x_test_path = directory / "x_train.npy", directory / "x_test.npy"
    first_block = next(read_row_blocks(x_train_path))
    rows = sum(np.load(path, mmap_mode="r").shape[0] for path in (x_train_path, x_test_path))
    num_words = first_block.shape[1]
    ones_per_row = float(np.count_nonzero(first_block) / max(1, len(first_block)))
    sparse = choose_sparse(setting, ones_per_row / num_words)
    estimate = training_memory(
        rows=rows,
        num_words=num_words,
        ones=int(np.ceil(ones_per_row * rows)),
        first_layer_units=first_layer_units,
        sparse=sparse,
    )
    return MemoryEstimate(bytes=estimate, sparse=sparse, num_words=num_words, ones_per_row=ones_per_row)


def take_rows(x: np.ndarray | SparseRows, rows: np.ndarray) -> np.ndarray | SparseRows:
    """The rows numbered `rows` of dense or sparse rows."""
    return x.take(rows) if isinstance(x, SparseRows) else x[rows]


def split_validation(x: np.ndarray | SparseRows, y: np.ndarray, fraction: float, seed: int) -> tuple[Arrays, Arrays]:
    """Hold out a seeded random `fraction` of the training set for validation.

    Raises:
        ValidationSplitError: `fraction` of these rows, rounded, is no row or every row. params.yaml
            is checked against a full 25,000-review training split; a smaller archive gets here.
    """
    order = np.random.default_rng(seed).permutation(len(y))
    held_out = int(round(len(y) * fraction))
    if not 0 < held_out < len(y):
        raise ValidationSplitError(
            f"train.validation: {fraction:g} of the {len(y):,} training rows holds out {held_out:,} and keeps "
            f"{len(y) - held_out:,}; it must hold out at least one row and keep at least one"
        )
    validation, train = order[:held_out], order[held_out:]
    return (take_rows(x, train), y[train]), (take_rows(x, validation), y[validation])


def fit_and_validation_data(train: Arrays, test: Arrays, validation: str | float, seed: int) -> tuple[Arrays, Arrays]:
    """What to fit on and what to validate on: the test set, as the notebook does, or a held-out fraction."""
    if validation == "test":
        return train, test
    return split_validation(*train, fraction=float(validation), seed=seed)
