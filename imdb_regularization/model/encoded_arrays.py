"""The encoded arrays: the contract between `encode`, which writes them, and `train`/`evaluate`, which read them.

`<dir>/x_train.npy`, `y_train.npy`, `x_test.npy`, `y_test.npy`: uint8 multi-hot rows and 0/1 labels,
named as in `readers.sources.ARRAY_NAMES`; for the aclimdb source also `<dir>/vocabulary.tsv`.
"""

from pathlib import Path

import numpy as np

from imdb_regularization.atomic import save_array, write_text
from imdb_regularization.params import FIRST_WORD_INDEX

VOCABULARY = "vocabulary.tsv"

Arrays = tuple[np.ndarray, np.ndarray]


def write_encoded(directory: Path, arrays: dict[str, np.ndarray], vocabulary: list[tuple[str, int]] | None) -> None:
    """Write each array as `<name>.npy`, and the vocabulary (word, training-set count) if there is one."""
    for name, array in arrays.items():
        save_array(directory / f"{name}.npy", array)
    if vocabulary is not None:
        write_text(directory / VOCABULARY, vocabulary_tsv(vocabulary))


def vocabulary_tsv(vocabulary: list[tuple[str, int]]) -> str:
    """The indexed words as a table: Keras index, word, training-set count."""
    lines = [f"{rank + FIRST_WORD_INDEX - 1}\t{word}\t{count}" for rank, (word, count) in enumerate(vocabulary, 1)]
    return "index\tword\tcount\n" + "\n".join(lines) + "\n"


def read_array(directory: Path, name: str) -> np.ndarray:
    return np.load(directory / f"{name}.npy", allow_pickle=False)


def read_for_training(directory: Path) -> tuple[Arrays, Arrays]:
    """(x_train, y_train), (x_test, y_test) as Keras trains on them.

    Keras' losses want float inputs, and (N, 1) targets to match the model's (N, 1) output.
    """
    x_train, x_test = (read_array(directory, name).astype(np.float32) for name in ("x_train", "x_test"))
    y_train, y_test = (read_array(directory, name).astype(np.float32)[:, None] for name in ("y_train", "y_test"))
    return (x_train, y_train), (x_test, y_test)


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[Arrays, Arrays]:
    """Hold out a seeded random `fraction` of the training set for validation."""
    order = np.random.default_rng(seed).permutation(len(y))
    held_out = int(round(len(y) * fraction))
    validation, train = order[:held_out], order[held_out:]
    return (x[train], y[train]), (x[validation], y[validation])


def fit_and_validation_data(train: Arrays, test: Arrays, validation: str | float, seed: int) -> tuple[Arrays, Arrays]:
    """What to fit on and what to validate on: the test set, as the notebook does, or a held-out fraction."""
    if validation == "test":
        return train, test
    return split_validation(*train, fraction=float(validation), seed=seed)
