"""The teaching notebook's recipe as one plain script in one process: the benchmark's reference.

The notebook loads Keras' imdb.npz; here the same reviews come from the raw archive, read,
tokenized and indexed with the pipeline's own functions (`imdb_regularization.readers` and `features`), so both train on
the same words. The rest is the notebook's: its per-row multi-hot loop (`sequences_shaping`,
float64), one `keras.Sequential` per model compiled with Keras' defaults (one step per call),
`fit` with the test set as validation, one model after another, then `evaluate`. Models,
epochs, batch size and vocabulary size come from params.yaml, as the pipeline's do.

Run from a project copy (it reads ./params.yaml):
    python -m tools.bench.notebook ARCHIVE --timings notebook.json
"""

import argparse
import json
import os
import time
from collections import Counter
from itertools import chain, repeat
from pathlib import Path

import numpy as np

from imdb_regularization import cli
from imdb_regularization.features.multi_hot import keras_indices
from imdb_regularization.features.ragged import Ragged
from imdb_regularization.features.vocabulary import tokenize
from imdb_regularization.params import Params, RegularizerSpec, load_params
from imdb_regularization.readers.aclimdb import iter_reviews, ordered_rows
from imdb_regularization.readers.sources import SPLITS


def sequences_shaping(sequences: list[list[int]], dimension: int) -> np.ndarray:
    """The notebook's multi-hot encoding, one row at a time."""
    results = np.zeros((len(sequences), dimension))
    for i, word_indices in enumerate(sequences):
        results[i, word_indices] = 1.0
    return results


def read_aclimdb(path: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """Each split's review texts and labels (0 negative, 1 positive), ordered by label then review id.

    All texts in memory at once, as a notebook would hold them; the encode stage streams them instead.
    """
    reviews = list(iter_reviews(path))
    rows = ordered_rows([key for key, _ in reviews], path)
    return {
        split: (
            [reviews[row][1] for row in rows[split]],
            np.array([reviews[row][0][1] for row in rows[split]], dtype=np.uint8),
        )
        for split in SPLITS
    }


def read_ranked(archive: Path) -> dict[str, tuple[Ragged, np.ndarray]]:
    """Each split's reviews as word frequency ranks (vocabulary from the training split), with labels.

    One process, as a notebook would do it, giving the ranks the encode stage gives: by
    training-set count, ties alphabetically; 0 for a word the training split lacks.
    """
    reviews = read_aclimdb(archive)
    tokens = {split: [tokenize(text) for text in texts] for split, (texts, _) in reviews.items()}
    counts = Counter(chain.from_iterable(tokens["train"]))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ranks = {word: rank for rank, (word, _) in enumerate(ranked, start=1)}
    ranked_reviews = {}
    for split, reviews_tokens in tokens.items():
        lengths = np.array([len(review) for review in reviews_tokens], dtype=np.int64)
        # int32, as the encode stage's ranks are, so tools.bench.encoding times multi_hot on what encode gives it.
        values = np.fromiter(
            map(ranks.get, chain.from_iterable(reviews_tokens), repeat(0)), dtype=np.int32, count=int(lengths.sum())
        )
        ranked_reviews[split] = (Ragged(values=values, lengths=lengths), reviews[split][1])
    return ranked_reviews


def as_lists(sequences: Ragged) -> list[list[int]]:
    """Ragged sequences as the lists of Python ints that `imdb.load_data` returns."""
    return [row.tolist() for row in np.split(sequences.values, np.cumsum(sequences.lengths)[:-1])]


def notebook_model(num_words: int, hidden_units: tuple[int, ...], spec: RegularizerSpec):
    """The notebook's `Basic`/`L1`/`L2`: a Sequential stack with the regularizer on the hidden layers."""
    import keras

    from imdb_regularization.model.network import make_regularizer

    hidden = [
        keras.layers.Dense(units, activation="relu", kernel_regularizer=make_regularizer(spec))
        for units in hidden_units
    ]
    return keras.Sequential([keras.Input(shape=(num_words,)), *hidden, keras.layers.Dense(1, activation="sigmoid")])


def train_models(
    params: Params, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], timings: dict[str, float]
) -> dict[str, dict[str, float]]:
    """Compile, fit and evaluate each model in turn, as the notebook does; times each into `timings`."""
    import keras

    keras.utils.set_random_seed(params.train.seed)
    scores = {}
    for name, spec in params.models.items():
        started = time.perf_counter()
        model = notebook_model(train[0].shape[1], params.train.hidden_units, spec)
        model.compile(
            loss="binary_crossentropy",
            optimizer=keras.optimizers.get(
                {"class_name": params.train.optimizer, "config": {"learning_rate": params.train.learning_rate}}
            ),
            metrics=["accuracy", keras.metrics.BinaryCrossentropy(name="bce")],
        )
        history = model.fit(
            *train, epochs=params.train.epochs, batch_size=params.train.batch_size, validation_data=test, verbose=0
        )
        test_loss, test_accuracy, test_bce = model.evaluate(*test, verbose=0)
        timings[f"train {name}"] = time.perf_counter() - started
        scores[name] = {
            "test_bce": test_bce,
            "test_accuracy": test_accuracy,
            "last_val_loss": history.history["val_loss"][-1],
        }
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the notebook's recipe in one process and time its parts.")
    parser.add_argument("archive", type=Path, help="an aclImdb .tar.gz")
    parser.add_argument("--timings", type=Path, required=True, help="JSON file for the timings and scores")
    args = parser.parse_args()

    params = load_params()
    timings = {}
    started = time.perf_counter()
    # What `imdb.load_data(num_words=...)` gives the notebook: per split, index lists and labels.
    loaded = {
        split: (as_lists(keras_indices(ranks, params.data.num_words)), labels)
        for split, (ranks, labels) in read_ranked(args.archive).items()
    }
    timings["read and tokenize"] = time.perf_counter() - started

    started = time.perf_counter()
    # The notebook passes its float64 rows and integer labels; (N, 1) targets keep Keras 3's metrics happy.
    arrays = {
        split: (sequences_shaping(sequences, params.data.num_words), labels[:, None])
        for split, (sequences, labels) in loaded.items()
    }
    timings["encode (per-row loop)"] = time.perf_counter() - started

    started = time.perf_counter()
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # as the notebook does
    import tensorflow  # noqa: F401 - timed on its own: the cost every training process pays

    timings["import tensorflow"] = time.perf_counter() - started
    scores = train_models(params, arrays["train"], arrays["test"], timings)
    seconds_by_phase = {phase: round(seconds, 3) for phase, seconds in timings.items()}
    args.timings.write_text(json.dumps({"seconds_by_phase": seconds_by_phase, "scores": scores}, indent=2) + "\n")


if __name__ == "__main__":
    cli.run(main)
