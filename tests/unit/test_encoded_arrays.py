"""`imdb_regularization.model.encoded_arrays`: the contract between encode, which writes, and train/evaluate."""

import numpy as np

from imdb_regularization.model.encoded_arrays import (
    VOCABULARY,
    fit_and_validation_data,
    read_array,
    read_for_training,
    split_validation,
    vocabulary_tsv,
    write_encoded,
)

ARRAYS = {
    "x_train": np.array([[0, 1, 1, 0], [0, 1, 0, 1], [0, 1, 0, 0]], dtype=np.uint8),
    "y_train": np.array([1, 0, 1], dtype=np.uint8),
    "x_test": np.array([[0, 1, 0, 1], [0, 1, 1, 1]], dtype=np.uint8),
    "y_test": np.array([0, 1], dtype=np.uint8),
}


def test_what_encode_writes_train_reads_as_float32_rows_and_column_labels(tmp_path):
    write_encoded(tmp_path, ARRAYS, vocabulary=None)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(f"{name}.npy" for name in ARRAYS)
    (x_train, y_train), (x_test, y_test) = read_for_training(tmp_path)
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
