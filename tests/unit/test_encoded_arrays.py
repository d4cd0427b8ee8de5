"""`imdb_regularization.model.encoded_arrays`: the contract between encode, which writes, and train/evaluate."""

import tracemalloc

import numpy as np
import pytest

from imdb_regularization.model.encoded_arrays import (
    VOCABULARY,
    ValidationSplitError,
    choose_sparse,
    estimate_training_memory,
    fit_and_validation_data,
    read_array,
    read_for_training,
    read_row_blocks,
    read_sparse_rows,
    save_row_blocks,
    split_validation,
    training_memory,
    vocabulary_tsv,
    write_encoded,
)
from imdb_regularization.readers.sources import DataError

ARRAYS = {
    "x_train": np.array([[0, 1, 1, 0], [0, 1, 0, 1], [0, 1, 0, 0]], dtype=np.uint8),
    "y_train": np.array([1, 0, 1], dtype=np.uint8),
    "x_test": np.array([[0, 1, 0, 1], [0, 1, 1, 1]], dtype=np.uint8),
    "y_test": np.array([0, 1], dtype=np.uint8),
}


def test_what_encode_writes_train_reads_as_float32_rows_and_column_labels(tmp_path):
    write_encoded(tmp_path, ARRAYS, vocabulary=None)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(f"{name}.npy" for name in ARRAYS)
    data = read_for_training(tmp_path, "dense")
    (x_train, y_train), (x_test, y_test) = data.train, data.test
    assert data.sparse is False and data.density == 5 / 12
    assert (x_train.dtype, x_train.shape, y_train.dtype, y_train.shape) == (np.float32, (3, 4), np.float32, (3, 1))
    assert (x_test.shape, y_test.shape) == ((2, 4), (2, 1))
    np.testing.assert_array_equal(x_train, ARRAYS["x_train"])
    assert y_train[:, 0].tolist() == [1.0, 0.0, 1.0] and y_test[:, 0].tolist() == [0.0, 1.0]
    # Evaluate reads the labels as they were written.
    y_as_written = read_array(tmp_path, "y_test")
    assert y_as_written.dtype == np.uint8 and y_as_written.tolist() == [0, 1]


def test_the_vocabulary_is_a_table_of_keras_index_word_and_count(tmp_path):
    vocabulary = [("film", 7), ("good", 3), ("bad", 2)]
    # The first word's index is 4: 0 padding, 1 start, 2 out of vocabulary, 3 unused (Keras' index_from=3).
    assert vocabulary_tsv(vocabulary) == "index\tword\tcount\n4\tfilm\t7\n5\tgood\t3\n6\tbad\t2\n"
    write_encoded(tmp_path, ARRAYS, vocabulary)
    assert (tmp_path / VOCABULARY).read_text() == vocabulary_tsv(vocabulary)


def test_validation_is_the_test_set_or_a_seeded_held_out_fraction():
    x, y = np.arange(20, dtype=np.float32).reshape(10, 2), np.arange(10, dtype=np.float32)[:, None]
    train, test = (x, y), (x[:3], y[:3])
    fit, validation = fit_and_validation_data(train, test, "test", seed=1)
    assert fit is train and validation is test
    (fit_x, fit_y), (held_x, held_y) = fit_and_validation_data(train, test, 0.3, seed=1)
    assert (len(fit_y), len(held_y)) == (7, 3)
    assert sorted(fit_y[:, 0].tolist() + held_y[:, 0].tolist()) == list(range(10))
    np.testing.assert_array_equal(fit_x[:, 0], fit_y[:, 0] * 2)  # rows stay with their labels
    again = split_validation(x, y, fraction=0.3, seed=1)
    np.testing.assert_array_equal(again[1][1], held_y)
    assert split_validation(x, y, fraction=0.3, seed=2)[1][1].tolist() != held_y.tolist()


def _wide_rows(rows: int, width: int, ones_per_row: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((rows, width), dtype=np.uint8)
    for row in x:
        row[rng.choice(width, size=ones_per_row, replace=False)] = 1
    x[3] = 0  # a review without any word of the vocabulary: an empty row
    return x


def test_sparse_rows_read_in_blocks_hold_exactly_the_ones(tmp_path):
    x = _wide_rows(50, 300, 7)
    np.save(tmp_path / "x.npy", x)
    # Blocks of 3 rows (1,000 bytes), the last one short: every block boundary must line up.
    rows = read_sparse_rows(tmp_path / "x.npy", max_bytes=1_000)
    assert rows.shape == (50, 300) and rows.nonzeros == 7 * 49
    assert rows.columns.dtype == np.int32 and rows.row_starts[-1] == rows.nonzeros
    np.testing.assert_array_equal(rows.to_dense(), x)
    blocks = list(read_row_blocks(tmp_path / "x.npy", max_bytes=1_000))
    assert [len(block) for block in blocks] == [3] * 16 + [2]
    picked = np.array([4, 3, 0, 4])
    np.testing.assert_array_equal(rows.take(picked).to_dense(), x[picked])


def test_reading_a_block_at_a_time_holds_one_block_not_the_array(tmp_path):
    x = _wide_rows(2_000, 5_000, 20)  # 10 MB of uint8 rows
    np.save(tmp_path / "x.npy", x)
    tracemalloc.start()
    try:
        rows = read_sparse_rows(tmp_path / "x.npy", max_bytes=500_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One 500 kB block and its nonzero positions, plus the result: far below the 10 MB array (or its float32 copy).
    assert peak < 2_000_000, peak
    assert rows.nonzeros == 20 * 1_999


@pytest.mark.parametrize(("setting", "density", "sparse"), [("auto", 0.44, False), ("auto", 0.013, True)])
def test_auto_input_is_dense_for_the_default_width_and_sparse_for_wide_rows(setting, density, sparse):
    # 0.44 and 0.013: the share of ones at num_words=100 and 10,000 on the IMDB reviews.
    assert choose_sparse(setting, density) is sparse
    assert choose_sparse("dense", density) is False and choose_sparse("sparse", density) is True


def test_wide_rows_read_for_training_as_sparse_rows(tmp_path):
    arrays = {"x_train": _wide_rows(40, 1_000, 9), "y_train": np.arange(40, dtype=np.uint8) % 2}
    arrays |= {"x_test": _wide_rows(20, 1_000, 9, seed=1), "y_test": np.arange(20, dtype=np.uint8) % 2}
    write_encoded(tmp_path, arrays, vocabulary=None)
    data = read_for_training(tmp_path, "auto")
    assert data.sparse is True and data.num_words == 1_000
    assert data.density == pytest.approx(9 * 39 / 40_000)
    np.testing.assert_array_equal(data.train[0].to_dense(), arrays["x_train"])
    np.testing.assert_array_equal(data.test[0].to_dense(), arrays["x_test"])
    assert data.train[1].shape == (40, 1)
    # The held-out split takes the same rows, with their labels, as the dense one does.
    dense = read_for_training(tmp_path, "dense")
    (sparse_fit, sparse_held), (dense_fit, dense_held) = (
        fit_and_validation_data(each.train, each.test, 0.25, seed=3) for each in (data, dense)
    )
    np.testing.assert_array_equal(sparse_fit[0].to_dense(), dense_fit[0])
    np.testing.assert_array_equal(sparse_held[0].to_dense(), dense_held[0])
    np.testing.assert_array_equal(sparse_held[1], dense_held[1])


class _Blocks:
    """Rows given in blocks, as `features.multi_hot.MultiHotRows` gives them."""

    def __init__(self, array: np.ndarray, block_rows: int):
        self.array, self.block_rows = array, block_rows
        self.shape, self.dtype = array.shape, array.dtype

    def blocks(self):
        for first in range(0, len(self.array), self.block_rows):
            yield self.array[first : first + self.block_rows]


def test_rows_written_block_by_block_are_the_bytes_np_save_writes(tmp_path):
    x = _wide_rows(23, 70, 5)
    save_row_blocks(tmp_path / "blocks.npy", _Blocks(x, block_rows=4))
    np.save(tmp_path / "whole.npy", x)
    assert (tmp_path / "blocks.npy").read_bytes() == (tmp_path / "whole.npy").read_bytes()


def test_blocks_that_do_not_add_up_leave_no_file(tmp_path):
    short = _Blocks(_wide_rows(10, 8, 2), block_rows=3)
    short.shape = (11, 8)
    with pytest.raises(ValueError, match="hold 10 rows, not 11"):
        save_row_blocks(tmp_path / "x.npy", short)
    assert list(tmp_path.iterdir()) == []


# Peak RSS (MB) of train stages on the IMDB archive (/usr/bin/time -v, 25,000 + 25,000 rows):
# (num_words, sparse, ones per row, measured peak).
MEASURED_TRAININGS = [
    (100, False, 43.6, 690),
    (1_000, False, 94.1, 1_093),
    (10_000, False, 131.2, 7_548),
    (10_000, True, 131.2, 940),
    (30_000, True, 139.6, 1_038),
    (100_000, True, 142.4, 1_449),
]


@pytest.mark.parametrize(("num_words", "sparse", "ones_per_row", "peak_mb"), MEASURED_TRAININGS)
def test_the_training_memory_estimate_covers_measured_trainings_without_wasting_much(
    num_words, sparse, ones_per_row, peak_mb
):
    estimate = training_memory(
        rows=49_992, num_words=num_words, ones=int(ones_per_row * 49_992), first_layer_units=128, sparse=sparse
    )
    assert peak_mb * 2**20 <= estimate <= 1.35 * peak_mb * 2**20


def test_the_estimate_reads_the_width_and_ones_of_the_encoded_rows(tmp_path):
    arrays = {"x_train": _wide_rows(40, 20_000, 30), "y_train": np.zeros(40, dtype=np.uint8)}
    arrays |= {"x_test": _wide_rows(20, 20_000, 30, seed=1), "y_test": np.zeros(20, dtype=np.uint8)}
    write_encoded(tmp_path, arrays, vocabulary=None)
    estimate = estimate_training_memory(tmp_path, "auto", first_layer_units=8)
    assert (estimate.sparse, estimate.num_words, estimate.ones_per_row) == (True, 20_000, 30 * 39 / 40)
    expected = training_memory(
        rows=60, num_words=20_000, ones=int(np.ceil(29.25 * 60)), first_layer_units=8, sparse=True
    )
    assert estimate.bytes == expected
    assert estimate_training_memory(tmp_path, "dense", first_layer_units=8).bytes > estimate.bytes


def test_sparse_rows_refuse_values_other_than_zero_and_one(tmp_path):
    x = _wide_rows(5, 30, 3)
    x[2, 7] = 2
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DataError, match="x.npy holds the value 2, not multi-hot 0/1 rows"):
        read_sparse_rows(tmp_path / "x.npy")


def test_a_file_of_no_rows_is_refused_as_such_not_as_a_width_mismatch(tmp_path):
    write_encoded(
        tmp_path,
        {"x_train": np.zeros((0, 1000), dtype=np.uint8), "y_train": np.zeros(0, dtype=np.uint8)}
        | {"x_test": _wide_rows(20, 1000, 30), "y_test": np.zeros(20, dtype=np.uint8)},
        vocabulary=None,
    )
    for read in (lambda: read_for_training(tmp_path, "auto"), lambda: estimate_training_memory(tmp_path, "auto", 8)):
        with pytest.raises(DataError, match=r"x_train.npy holds no rows \(an array of shape \(0, 1000\)\)"):
            read()


@pytest.mark.parametrize("fraction, held_out, kept", [(0.01, 0, 10), (0.99, 10, 0)])
def test_a_validation_fraction_that_holds_out_no_row_or_every_row_is_refused_with_the_counts(fraction, held_out, kept):
    # params.yaml accepts both against a full 25,000-review split; these 10 rows are what a small archive gives.
    x, y = np.zeros((10, 4), dtype=np.float32), np.zeros((10, 1), dtype=np.float32)
    with pytest.raises(ValidationSplitError) as caught:
        fit_and_validation_data((x, y), (x, y), fraction, seed=1)
    assert str(caught.value) == (
        f"train.validation: {fraction} of the 10 training rows holds out {held_out} and keeps {kept}; "
        "it must hold out at least one row and keep at least one"
    )


def _spoil(name: str, array: np.ndarray | bytes):
    def write(directory):
        if isinstance(array, bytes):
            (directory / f"{name}.npy").write_bytes(array)
        else:
            np.save(directory / f"{name}.npy", array)

    return write


SPOILED = {
    "a value of 2": (
        _spoil("x_train", np.where(ARRAYS["x_train"] == 1, 2, 0).astype(np.uint8)),
        "x_train.npy holds the value 2, not multi-hot 0/1 rows",
    ),
    "int64 rows": (
        _spoil("x_train", ARRAYS["x_train"].astype(np.int64)),
        "x_train.npy holds int64 values, not the uint8 multi-hot 0/1 rows encode writes",
    ),
    "Fortran order": (
        _spoil("x_train", np.asfortranarray(ARRAYS["x_train"])),
        "x_train.npy holds its array in Fortran (column by column) order, not row by row as encode writes",
    ),
    "not a .npy file": (_spoil("x_train", b"not an array"), "x_train.npy is not a .npy file: "),
    "1-D rows": (
        _spoil("x_train", ARRAYS["y_train"]),
        "x_train.npy holds a uint8 array of shape (3,), not 2-D rows",
    ),
    "a test value of 3": (
        _spoil("x_test", ARRAYS["x_test"] * 3),
        "x_test.npy holds the value 3, not multi-hot 0/1 rows",
    ),
    "narrower test rows": (
        _spoil("x_test", ARRAYS["x_test"][:, :3]),
        "x_test.npy has rows of 3 words, ",
    ),
    "a label per row missing": (
        _spoil("y_train", ARRAYS["y_train"][:2]),
        "y_train.npy holds a uint8 array of shape (2,), not 3 0/1 labels",
    ),
    "a label of 2": (
        _spoil("y_test", np.array([0, 2], dtype=np.uint8)),
        "y_test.npy holds a uint8 array of shape (2,), not 2 0/1 labels",
    ),
    "a pickled test array": (
        _spoil("x_test", np.array([None, 1], dtype=object)),
        "x_test.npy holds Python objects, not rows of numbers",  # its header, read without NumPy's loader
    ),
    "no test rows": (
        _spoil("x_test", ARRAYS["x_test"][:0]),
        "x_test.npy holds no rows (an array of shape (0, ",
    ),
}


@pytest.mark.parametrize("setting", ["dense", "sparse"])
@pytest.mark.parametrize("spoiled", SPOILED, ids=str)
def test_encoded_arrays_train_cannot_use_are_a_data_error_naming_the_file(tmp_path, spoiled, setting):
    write_encoded(tmp_path, ARRAYS, vocabulary=None)
    spoil, message = SPOILED[spoiled]
    spoil(tmp_path)
    with pytest.raises(DataError) as caught:
        read_for_training(tmp_path, setting)
    assert str(caught.value).startswith(f"{tmp_path}/") and message in str(caught.value)
    assert "\n" not in str(caught.value)
