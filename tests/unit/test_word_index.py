"""The keras source's words: a small word index the tests build, mapped with Keras' offset (index = rank + 3)."""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from imdb_regularization.model.encoded_arrays import VOCABULARY
from imdb_regularization.model.files import read_vocabulary
from imdb_regularization.readers.sources import DataError
from imdb_regularization.readers.word_index import keras_vocabulary, read_word_index
from stages import encode
from tests.support.data import write_keras_npz
from tests.support.project import project_params_text
from tools.project import set_params

# Ranks as Keras' imdb_word_index.json gives them: 1 is the most frequent word.
WORD_INDEX = {"the": 1, "movie": 2, "great": 3, "awful": 4, "plot": 5}


def _write_index(path: Path, index: object) -> Path:
    path.write_text(json.dumps(index))
    return path


def test_the_word_of_rank_r_is_column_r_plus_3_with_its_training_count(tmp_path):
    words = read_word_index(_write_index(tmp_path / "index.json", WORD_INDEX))
    # imdb.npz holds ranks: "the" twice and "great" once in training; rank 0 is an unknown word.
    x_train = np.array([[1, 3, 1], [0, 5]], dtype=object)
    vocabulary = keras_vocabulary(words, x_train, num_words=7)
    # Columns 4, 5, 6 of a 7-wide row are ranks 1, 2, 3.
    assert vocabulary == [("the", 2), ("movie", 0), ("great", 1)]


def test_a_vocabulary_wider_than_the_index_stops_at_its_last_word(tmp_path):
    words = read_word_index(_write_index(tmp_path / "index.json", WORD_INDEX))
    assert [word for word, _ in keras_vocabulary(words, np.array([[1]], dtype=object), num_words=100)] == list(
        WORD_INDEX
    )


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ([1, 2], "holds list; a word index is an object of words to ranks"),
        ({"the": 1, "a": 1}, "'the' and 'a' both have rank 1"),
        ({"the": 0}, "'the' has rank 0; ranks are integers from 1"),
        ({"the": "1"}, "'the' has rank '1'"),
        ({"the": True}, "'the' has rank True"),
        ({"two words": 1}, "the word 'two words' is empty or holds whitespace"),
        ({"tab\there": 1}, "holds whitespace"),
    ],
)
def test_a_malformed_word_index_is_a_data_error_naming_the_entry(tmp_path, index, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        read_word_index(_write_index(tmp_path / "index.json", index))


def test_a_missing_rank_among_the_columns_is_a_data_error(tmp_path):
    words = read_word_index(_write_index(tmp_path / "index.json", {"the": 1, "great": 3}))
    with pytest.raises(DataError, match=r"no word of rank 2 \(column 5\)"):
        keras_vocabulary(words, np.array([[1]], dtype=object), num_words=7)


def test_encode_writes_the_keras_vocabulary_and_its_columns_hold_those_words(tmp_path, monkeypatch):
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    # Review 0 holds only "great" (rank 3), review 1 only "awful" (rank 4).
    write_keras_npz(raw / "imdb.npz", [[3, 3], [4]], [1, 0], [[3], [4]], [1, 0])
    _write_index(raw / "imdb_word_index.json", WORD_INDEX)
    digests = {
        name: hashlib.sha256((raw / name).read_bytes()).hexdigest() for name in ("imdb.npz", "imdb_word_index.json")
    }
    record = {
        "source": "keras",
        "sha256": digests["imdb.npz"],
        "word_index": {"sha256": digests["imdb_word_index.json"]},
    }
    (raw / "source.json").write_text(json.dumps(record))
    (tmp_path / "params.yaml").write_text(project_params_text())
    set_params(tmp_path, {"data.source": "keras", "data.num_words": 9})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["stages.encode", "--raw", "data/raw", "--out", "data/encoded"])
    encode.main()

    vocabulary = read_vocabulary(tmp_path / "data/encoded" / VOCABULARY, num_words=9)
    assert vocabulary == {4: "the", 5: "movie", 6: "great", 7: "awful", 8: "plot"}
    x_train = np.load(tmp_path / "data/encoded/x_train.npy")
    assert [vocabulary[int(column)] for column in np.flatnonzero(x_train[0][4:]) + 4] == ["great"]
    assert [vocabulary[int(column)] for column in np.flatnonzero(x_train[1][4:]) + 4] == ["awful"]


def test_encode_refuses_a_word_index_changed_since_it_was_fetched(tmp_path, monkeypatch):
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    write_keras_npz(raw / "imdb.npz", [[3], [4]], [1, 0], [[4], [3]], [0, 1])
    _write_index(raw / "imdb_word_index.json", WORD_INDEX)
    npz_sha256 = hashlib.sha256((raw / "imdb.npz").read_bytes()).hexdigest()
    (raw / "source.json").write_text(json.dumps({"sha256": npz_sha256, "word_index": {"sha256": "0" * 64}}))
    (tmp_path / "params.yaml").write_text(project_params_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["stages.encode", "--raw", "data/raw", "--out", "data/encoded"])
    with pytest.raises(DataError, match="imdb_word_index.json changed since it was fetched"):
        encode.main()
    assert not (tmp_path / "data/encoded").exists()
