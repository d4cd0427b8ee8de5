"""Encoding: Keras' index rules, multi-hot rows, a train-only vocabulary, and both raw formats."""

import numpy as np
import pytest

from stages.encode import (
    DataError,
    Ragged,
    Reviews,
    build_vocabulary,
    encode_aclimdb,
    encode_keras,
    keras_indices,
    multi_hot,
    ragged_from_lists,
    read_aclimdb,
    read_keras_npz,
    tokenize,
)
from tests.conftest import write_keras_npz


def test_keras_indices_shift_ranks_add_start_and_map_rare_words_to_oov():
    ranks = ragged_from_lists([[1, 2, 97], [96, 0], []])
    indices = keras_indices(ranks, num_words=100)
    # Rank r becomes r + 3; 97 + 3 = 100 is not below num_words, so it becomes 2, as does unknown (0).
    assert indices.values.tolist() == [1, 4, 5, 2, 1, 99, 2, 1]
    assert indices.lengths.tolist() == [4, 3, 1]


def test_multi_hot_marks_each_index_once_in_a_compact_dtype():
    rows = multi_hot(Ragged(values=np.array([1, 4, 4, 7, 1]), lengths=np.array([4, 1])), num_words=8)
    assert rows.dtype == np.uint8
    assert rows.tolist() == [[0, 1, 0, 0, 1, 0, 0, 1], [0, 1, 0, 0, 0, 0, 0, 0]]


def test_multi_hot_rejects_an_index_beyond_the_width():
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        multi_hot(Ragged(values=np.array([5]), lengths=np.array([1])), num_words=5)


def test_tokenize_lowercases_and_drops_line_breaks_and_punctuation():
    assert tokenize("Great film!<br /><br />It's GOOD, isn't it?") == ["great", "film", "it's", "good", "isn't", "it"]


def test_vocabulary_ranks_by_count_then_alphabetically():
    assert build_vocabulary([["b", "a", "c"], ["c", "b"]]) == [("b", 2), ("c", 2), ("a", 1)]


def test_vocabulary_comes_from_the_training_split_only():
    train = Reviews(texts=["good good film", "bad film"], labels=np.array([1, 0], dtype=np.uint8))
    test = Reviews(texts=["unseen unseen unseen words"], labels=np.array([1], dtype=np.uint8))
    arrays, vocabulary = encode_aclimdb(train, test, num_words=10)
    assert [word for word, _ in vocabulary] == ["film", "good", "bad"]
    # Test-only words are out of vocabulary: the test row has just start (1) and OOV (2).
    assert arrays["x_test"].tolist() == [[0, 1, 1, 0, 0, 0, 0, 0, 0, 0]]
    assert arrays["x_train"][0].tolist() == [0, 1, 0, 0, 1, 1, 0, 0, 0, 0]
    assert arrays["y_train"].tolist() == [1, 0]


def test_read_aclimdb_streams_labelled_reviews_in_a_fixed_order(tiny_archive):
    reviews = read_aclimdb(tiny_archive)
    assert len(reviews["train"].texts) == len(reviews["test"].texts) == 20
    assert reviews["train"].labels.tolist() == [0] * 10 + [1] * 10


def test_encode_keras_matches_load_data_then_sequences_shaping(tmp_path):
    path = write_keras_npz(tmp_path / "imdb.npz", [[1, 2, 3], [200]], [1, 0], [[5, 5]], [1])
    arrays = encode_keras(read_keras_npz(path), num_words=6)
    # Rank 3 becomes index 6, not below num_words=6, so OOV (2) too.
    assert arrays["x_train"].tolist() == [[0, 1, 1, 0, 1, 1], [0, 1, 1, 0, 0, 0]]
    assert arrays["x_test"].tolist() == [[0, 1, 1, 0, 0, 0]]
    assert arrays["y_train"].dtype == np.uint8


def test_read_keras_npz_refuses_a_pickle_that_runs_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = np.empty(1, dtype=object)
    evil[0] = Exploit()
    path = tmp_path / "imdb.npz"
    np.savez(path, x_train=evil, y_train=np.array([1]), x_test=evil, y_test=np.array([1]))
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        read_keras_npz(path)
