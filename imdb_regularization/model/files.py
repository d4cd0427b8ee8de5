"""The files `train@<model>` writes into `models/<model>/`, and how `evaluate` and `plots` read them.

They hold what evaluation and plotting need (history, weights, test predictions) as plain
JSON and NumPy files, so neither stage has to import TensorFlow to load the model.
"""

import json
from pathlib import Path

import numpy as np

from imdb_regularization.atomic import save_array, write_json

MODEL = "model.keras"
HISTORY = "history.json"
WEIGHTS = "weights.npz"
TEST_PREDICTIONS = "test_predictions.npy"


def write_model_files(
    directory: Path, *, history: dict[str, list], weights: dict[str, np.ndarray], test_predictions: np.ndarray
) -> None:
    """Everything but the Keras model itself (which only Keras can write)."""
    write_json(directory / HISTORY, history)
    # The stubs fear a weight named `allow_pickle`; the names are `<layer>_<weight>`.
    np.savez(directory / WEIGHTS, **weights)  # type: ignore[arg-type]
    save_array(directory / TEST_PREDICTIONS, test_predictions)


def read_history(directory: Path) -> dict[str, list]:
    return json.loads((directory / HISTORY).read_text(encoding="utf-8"))


def read_test_predictions(directory: Path) -> np.ndarray:
    return np.load(directory / TEST_PREDICTIONS, allow_pickle=False)


def read_hidden_kernels(directory: Path) -> dict[str, np.ndarray]:
    """The kernel of each hidden (regularized) layer, by layer name (`hidden_1`, ...)."""
    with np.load(directory / WEIGHTS, allow_pickle=False) as weights:
        return {
            name.removesuffix("_kernel"): weights[name]
            for name in weights.files
            if name.startswith("hidden_") and name.endswith("_kernel")
        }


def read_hidden_weights(directory: Path) -> np.ndarray:
    """The kernels of all hidden layers, flattened into one array (for the weight histogram)."""
    return np.concatenate([kernel.ravel() for kernel in read_hidden_kernels(directory).values()])
