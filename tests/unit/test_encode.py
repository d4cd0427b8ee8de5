"""Encoding: Keras' index rules, multi-hot rows, a train-only vocabulary, and both raw formats."""

import multiprocessing
import os
import signal

import numpy as np
import pytest

from imdb_regularization.cli import StageError
from imdb_regularization.features.multi_hot import encode_aclimdb, encode_keras, keras_indices, multi_hot
from imdb_regularization.features.ragged import Ragged, ragged_from_lists
from imdb_regularization.features.vocabulary import (
    TokenizingError,
    index_reviews,
    join_token_ids,
    rank_words,
    token_ids,
    tokenize,
)
from imdb_regularization.readers.aclimdb import iter_reviews, ordered_rows
from imdb_regularization.readers.keras_npz import read_keras_npz
from imdb_regularization.readers.sources import DataError
from tests.support.data import read_archive_texts, write_keras_npz


def keyed(split: str, *texts_by_label: list[str]) -> list[tuple[tuple[str, int, int], str]]:
    """(key, text) pairs as `iter_reviews` yields them: texts_by_label[label] are that label's reviews."""
    return [
        ((split, label, number), text)
        for label, texts in enumerate(texts_by_label)
        for number, text in enumerate(texts)
    ]


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


def test_token_ids_number_words_in_order_of_first_appearance():
    tokens = token_ids(["b a b", "", "c a"])
    assert tokens.words == ["b", "a", "c"]
    assert tokens.ids.values.tolist() == [0, 1, 0, 2, 1]
    assert tokens.ids.lengths.tolist() == [3, 0, 2]


def test_joined_token_ids_share_one_word_list():
    joined = join_token_ids([token_ids(["b a"]), token_ids(["c b", "a"])])
    assert joined.words == ["b", "a", "c"]
    assert [joined.words[i] for i in joined.ids.values] == ["b", "a", "c", "b", "a"]
    assert joined.ids.lengths.tolist() == [2, 2, 1]


def test_vocabulary_ranks_by_count_then_alphabetically():
    vocabulary, rank_of_id = rank_words(["a", "b", "c", "z"], np.array([1, 0, 2, 2, 1]))
    assert vocabulary == [("b", 2), ("c", 2), ("a", 1)]
    assert rank_of_id.tolist() == [3, 1, 2, 0]  # z never appears in training: rank 0


def test_vocabulary_comes_from_the_training_split_only():
    reviews = keyed("train", ["bad film"], ["good good film"]) + keyed("test", ["unseen"], ["unseen unseen words"])
    arrays, vocabulary = encode_aclimdb(index_reviews(reviews, "tiny", workers=1), num_words=10)
    assert [word for word, _ in vocabulary] == ["film", "good", "bad"]
    # Test-only words are out of vocabulary: the test rows have just start (1) and OOV (2).
    assert arrays["x_test"].tolist() == [[0, 1, 1, 0, 0, 0, 0, 0, 0, 0]] * 2
    assert arrays["x_train"][1].tolist() == [0, 1, 0, 0, 1, 1, 0, 0, 0, 0]
    assert arrays["y_train"].tolist() == [0, 1]


def test_reviews_stream_out_and_order_by_label_then_review_id(tiny_archive):
    reviews = list(iter_reviews(tiny_archive))
    rows = ordered_rows([key for key, _ in reviews], tiny_archive)
    expected = read_archive_texts(tiny_archive)
    for split in ("train", "test"):
        assert len(rows[split]) == 20
        assert [reviews[row][0][1] for row in rows[split]] == expected[split].labels == [0] * 10 + [1] * 10
        assert [reviews[row][1] for row in rows[split]] == expected[split].texts


def test_indexing_in_parallel_batches_gives_the_rows_of_one_process_in_label_then_id_order(tiny_archive, monkeypatch):
    reviews = read_archive_texts(tiny_archive)
    expected = {split: [tokenize(text) for text in reviews[split].texts] for split in reviews}
    monkeypatch.setattr("imdb_regularization.features.vocabulary.BATCH_REVIEWS", 7)  # several batches, the last short
    # Read in reverse archive order: the rows must still come out ordered by label, then review id.
    indexed = index_reviews(reversed(list(iter_reviews(tiny_archive))), tiny_archive, workers=2)
    starts = np.cumsum(indexed.ids.lengths) - indexed.ids.lengths
    for split in ("train", "test"):
        rows = [indexed.ids.values[starts[row] : starts[row] + indexed.ids.lengths[row]] for row in indexed.rows[split]]
        assert [[indexed.words[i] for i in row] for row in rows] == expected[split]
        assert indexed.labels[indexed.rows[split]].tolist() == reviews[split].labels


def test_encode_keras_matches_load_data_then_sequences_shaping(tmp_path):
    path = write_keras_npz(tmp_path / "imdb.npz", [[1, 2, 3], [200]], [1, 0], [[5, 5], [1]], [1, 0])
    arrays = encode_keras(read_keras_npz(path), num_words=6)
    # Rank 3 becomes index 6, not below num_words=6, so OOV (2) too.
    assert arrays["x_train"].tolist() == [[0, 1, 1, 0, 1, 1], [0, 1, 1, 0, 0, 0]]
    assert arrays["x_test"].tolist() == [[0, 1, 1, 0, 0, 0], [0, 1, 0, 0, 1, 0]]
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


def test_a_data_error_while_reading_ends_indexing_with_that_error(monkeypatch):
    # Batches already with the workers when it fails.
    monkeypatch.setattr("imdb_regularization.features.vocabulary.BATCH_REVIEWS", 2)

    def reviews():
        yield from keyed("train", ["a b", "c"], ["d", "e"])
        raise DataError("tiny.tar.gz: aclImdb/train/pos/9_9.txt is not UTF-8 text")

    with pytest.raises(DataError, match="is not UTF-8 text"):
        index_reviews(reviews(), "tiny.tar.gz", workers=2)


def test_a_tokenizing_worker_killed_mid_run_ends_indexing_with_one_line(monkeypatch):
    monkeypatch.setattr("imdb_regularization.features.vocabulary.BATCH_REVIEWS", 2)

    def reviews():
        yield from keyed("train", ["a b", "c"], ["d", "e"])
        # What the kernel's out-of-memory killer, or a user's `kill -9`, does to the workers.
        for worker in multiprocessing.active_children():
            os.kill(worker.pid, signal.SIGKILL)
        yield from keyed("test", ["f", "g"], ["h", "i"])

    with pytest.raises(TokenizingError) as failure:
        index_reviews(reviews(), "tiny.tar.gz", workers=2)
    assert str(failure.value) == (
        "a tokenizing worker process died (killed, or out of memory) while encoding tiny.tar.gz; run the stage again"
    )
    assert isinstance(failure.value, StageError)  # shown as one line, without a traceback


def test_indexing_no_reviews_at_all_names_every_missing_folder():
    with pytest.raises(
        DataError,
        match="empty.tar.gz has no reviews under aclImdb/train/neg/, aclImdb/train/pos/, "
        "aclImdb/test/neg/, aclImdb/test/pos/",
    ):
        index_reviews([], "empty.tar.gz", workers=1)
