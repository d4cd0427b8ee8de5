"""The metrics of one trained model: test scores, the validation curve's shape, and weight statistics.

`dvc metrics show` lists them per model: test BCE, accuracy and AUC; where the validation BCE bottoms
out and how far it rises after; and, for each regularized (hidden) layer, the statistics that test
the notebook's claims (L1 zeroes weights, L2 shrinks them).
"""

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from imdb_regularization.evaluation.words import WordAnalysis
from imdb_regularization.model.files import ModelFilesError, excerpt, read_json_object

# Keras clips probabilities to [EPSILON, 1 - EPSILON] before taking logs; so do we.
EPSILON = 1e-7
DIGITS = 4
# What `evaluate_model` writes, with the range each value can take: (lowest, highest, type).
# Losses are never negative, scores are fractions, and the validation loss can only rise after its minimum.
METRIC_BOUNDS: dict[str, tuple[float, float, type]] = {
    "test_bce": (0.0, math.inf, float),
    "test_accuracy": (0.0, 1.0, float),
    "test_auc": (0.0, 1.0, float),
    "best_val_bce": (0.0, math.inf, float),
    "best_epoch": (1, math.inf, int),
    "last_val_bce": (0.0, math.inf, float),
    "overfit_gap": (0.0, math.inf, float),
    "generalization_gap": (-math.inf, math.inf, float),
    # Words whose first-layer row norm reaches evaluate.kept_norm (see evaluation.words), and their share.
    "words_kept": (0, math.inf, int),
    "words_kept_fraction": (0.0, 1.0, float),
}
HIDDEN_LAYER = re.compile(r"hidden_[1-9][0-9]*")
WEIGHT_STATISTIC_BOUNDS: dict[str, tuple[float, float, type]] = {
    "zero_fraction": (0.0, 1.0, float),
    "mean_abs": (0.0, math.inf, float),
    "l2_norm": (0.0, math.inf, float),
}


def binary_cross_entropy(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Mean binary cross-entropy of predicted probabilities, without any regularization penalty."""
    p = np.clip(y_prob.astype(np.float64), EPSILON, 1 - EPSILON)
    y = y_true.astype(np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def roc_auc(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive outscores a random negative."""
    values, inverse, counts = np.unique(y_prob, return_inverse=True, return_counts=True)
    # Tied scores share the mean of the ranks they span (1-based).
    mean_ranks = np.cumsum(counts) - (counts - 1) / 2
    positive = y_true.astype(bool)
    n_positive, n_negative = positive.sum(), (~positive).sum()
    if n_positive == 0 or n_negative == 0:
        raise ValueError("AUC needs both positive and negative examples")
    rank_sum = mean_ranks[inverse][positive].sum()
    return float((rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def curve_metrics(history: dict[str, list[float]]) -> dict[str, float]:
    """Where the validation BCE bottoms out, where it ends, and how far the model overfits."""
    validation, training = np.array(history["val_bce"]), np.array(history["bce"])
    best = int(np.argmin(validation))
    return {
        "best_val_bce": float(validation[best]),
        "best_epoch": best + 1,
        "last_val_bce": float(validation[-1]),
        # Rise of the validation loss after its minimum: 0 when it never turned up.
        "overfit_gap": float(validation[-1] - validation[best]),
        # Validation minus training loss at the end: how much better the model fits what it saw.
        "generalization_gap": float(validation[-1] - training[-1]),
    }


def weight_statistics(kernel: np.ndarray, zero_threshold: float) -> dict[str, float]:
    """Sparsity and size of one layer's kernel."""
    magnitudes = np.abs(kernel.astype(np.float64))
    return {
        "zero_fraction": float(np.mean(magnitudes < zero_threshold)),
        "mean_abs": float(magnitudes.mean()),
        "l2_norm": float(np.sqrt(np.sum(magnitudes**2))),
    }


def evaluate_model(
    *,
    y_true: np.ndarray,
    y_prob: np.ndarray,
    history: dict[str, list[float]],
    hidden_kernels: dict[str, np.ndarray],
    zero_threshold: float,
    words: WordAnalysis,
) -> dict:
    """All metrics of one model, rounded to `DIGITS` decimals so reruns diff cleanly.

    Args:
        y_true: test labels, 0 or 1.
        y_prob: predicted probabilities of label 1.
        history: the per-epoch history written by `train`.
        hidden_kernels: the kernel of each regularized layer, by layer name.
        zero_threshold: weights with a smaller magnitude count as zero.
        words: the model's words (`imdb_regularization.evaluation.words.analyse_words`).

    Returns:
        Flat test and curve metrics, and a `weights` mapping of layer name to its statistics.
    """
    predicted = (y_prob >= 0.5).astype(y_true.dtype)
    metrics = {
        "test_bce": binary_cross_entropy(y_true, y_prob),
        "test_accuracy": float(np.mean(predicted == y_true)),
        "test_auc": roc_auc(y_true, y_prob),
        **curve_metrics(history),
        "words_kept": words.words_kept,
        "words_kept_fraction": words.words_kept_fraction,
        "weights": {name: weight_statistics(kernel, zero_threshold) for name, kernel in hidden_kernels.items()},
    }
    return _rounded(metrics)


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return round(value, DIGITS) if isinstance(value, float) else value


def read_metrics(metrics_dir: Path, names: list[str]) -> dict[str, dict]:
    """The metrics `evaluate@<model>` wrote to `<metrics_dir>/<model>.json`, by model name.

    Raises:
        ModelFilesError: a file is missing or malformed (see `check_metrics`), or the models'
            files name different hidden layers.
    """
    metrics = {
        name: check_metrics(read_json_object(metrics_dir / f"{name}.json"), metrics_dir / f"{name}.json")
        for name in names
    }
    if metrics:
        first, layers = names[0], list(metrics[names[0]]["weights"])
        for name in names[1:]:
            if list(metrics[name]["weights"]) != layers:
                raise ModelFilesError(
                    f"{metrics_dir / f'{name}.json'} has weights of {', '.join(metrics[name]['weights'])}; "
                    f"{metrics_dir / f'{first}.json'} of {', '.join(layers)}"
                )
    return metrics


def check_metrics(metrics: dict[str, Any], path: Path) -> dict[str, Any]:
    """`metrics` reduced to what `evaluate_model` writes, once every value is checked against its bounds.

    Args:
        metrics: the JSON object read from a metrics file.
        path: that file, for error messages.

    Returns:
        The keys of `METRIC_BOUNDS`, and `weights`: each hidden layer's `WEIGHT_STATISTIC_BOUNDS`.

    Raises:
        ModelFilesError: naming the first missing key or bad value.
    """
    checked = {key: _checked_number(metrics, key, bounds, path) for key, bounds in METRIC_BOUNDS.items()}
    layers = metrics.get("weights")
    if not isinstance(layers, dict) or not layers:
        raise ModelFilesError(f"{path}: weights must map each hidden layer to its statistics, got {excerpt(layers)}")
    checked["weights"] = {}
    for layer, statistics in layers.items():
        if not HIDDEN_LAYER.fullmatch(layer):
            raise ModelFilesError(
                f"{path}: weights has a layer named {excerpt(layer)}; the layers are hidden_1, hidden_2, ..."
            )
        if not isinstance(statistics, dict):
            raise ModelFilesError(f"{path}: weights.{layer} must map statistics to values, got {excerpt(statistics)}")
        checked["weights"][layer] = {
            key: _checked_number(statistics, key, bounds, path, f"weights.{layer}.")
            for key, bounds in WEIGHT_STATISTIC_BOUNDS.items()
        }
    return checked


def _checked_number(
    values: dict[str, Any], key: str, bounds: tuple[float, float, type], path: Path, prefix: str = ""
) -> Any:
    low, high, kind = bounds
    if key not in values:
        raise ModelFilesError(f"{path} lacks {prefix}{key}")
    value = values[key]
    number_types = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, number_types) or not _finite_between(value, low, high):
        expected = "an integer" if kind is int else "a finite number"
        raise ModelFilesError(f"{path}: {prefix}{key} is {excerpt(value)}; expected {expected} in [{low:g}, {high:g}]")
    return value


def _finite_between(value: float, low: float, high: float) -> bool:
    try:
        number = float(value)
    except OverflowError:
        return False
    return math.isfinite(number) and low <= number <= high
