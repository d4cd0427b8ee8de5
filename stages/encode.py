"""Stage `encode`: turn the raw IMDB source into the notebook's multi-hot arrays.

Params: `data.source`, `data.num_words`.
Reads: `<raw>/imdb.npz` (keras) or `<raw>/aclImdb_v1.tar.gz` (aclimdb), after checking it
against the SHA-256 in `<raw>/source.json`.
Writes: the encoded arrays in `<out>/` (`imdb_regularization.model.encoded_arrays`): uint8
multi-hot rows and labels, and `vocabulary.tsv` (index, word, training-set count): for aclimdb
the words it ranked, for keras the words of Keras' word index (`readers.word_index`).

Reading: `imdb_regularization.readers`; tokens, vocabulary and multi-hot rows, with Keras'
index convention: `imdb_regularization.features`.
"""

import argparse
import logging
import os
from pathlib import Path

from imdb_regularization import cli
from imdb_regularization.atomic import atomic_directory
from imdb_regularization.features.multi_hot import index_aclimdb, index_keras
from imdb_regularization.features.vocabulary import index_reviews
from imdb_regularization.model.encoded_arrays import write_encoded
from imdb_regularization.params import FIRST_WORD_INDEX, load_params
from imdb_regularization.readers.aclimdb import iter_reviews
from imdb_regularization.readers.keras_npz import read_keras_npz
from imdb_regularization.readers.sources import SOURCES, verified_raw_file, verified_word_index
from imdb_regularization.readers.word_index import keras_vocabulary, read_word_index

log = logging.getLogger("stages.encode")

# This process reads the archive while the others tokenize what it has read so far. Reading takes
# a fraction of the tokenizing time, so one tokenizing process per core keeps every core busy.
TOKENIZING_PROCESSES = os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(description="Encode raw IMDB data as multi-hot arrays.")
    parser.add_argument("--raw", type=Path, required=True, help="directory written by the fetch stage")
    parser.add_argument("--out", type=Path, required=True, help="directory for the .npy arrays")
    args = parser.parse_args()

    data = load_params().data
    raw_file = verified_raw_file(args.raw, SOURCES[data.source].filename)
    vocabulary = None
    if data.source == "keras":
        keras_arrays = read_keras_npz(raw_file)
        arrays = index_keras(keras_arrays, data.num_words)
        words = read_word_index(verified_word_index(args.raw))
        vocabulary = keras_vocabulary(words, keras_arrays["x_train"], data.num_words)
    else:
        reviews = index_reviews(iter_reviews(raw_file), raw_file, TOKENIZING_PROCESSES)
        arrays, vocabulary = index_aclimdb(reviews, data.num_words)
        if len(vocabulary) < data.num_words - FIRST_WORD_INDEX:
            log.info(
                "data.num_words=%d is more than the %d training words + %d reserved indices: "
                "the last columns are all zero",
                data.num_words,
                len(vocabulary),
                FIRST_WORD_INDEX,
            )
    # The multi-hot rows are built and written a block at a time: memory does not grow with num_words.
    with atomic_directory(args.out) as out:
        write_encoded(out, arrays, vocabulary)
    log.info(
        "encoded %d training and %d test reviews as %d-wide multi-hot rows in %s",
        len(arrays["y_train"]),
        len(arrays["y_test"]),
        data.num_words,
        args.out,
    )


if __name__ == "__main__":
    cli.run(main)
