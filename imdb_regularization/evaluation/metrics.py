"""The metrics of one trained model: test scores, the validation curve's shape, and weight statistics.

`dvc metrics show` lists them per model: test BCE, accuracy and AUC; where the validation BCE bottoms
out and how far it rises after; and, for each regularized (hidden) layer, the statistics that test
the notebook's claims (L1 zeroes weights, L2 shrinks them).
"""

import json
from pathlib import Path
from typing import Any

import numpy as np

# Keras clips probabilities to [EPSILON, 1 - EPSILON] before taking logs; so do we.
EPSILON = 1e-7
DIGITS = 4


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
) -> dict:
    """All metrics of one model, rounded to `DIGITS` decimals so reruns diff cleanly.

    Args:
        y_true: test labels, 0 or 1.
        y_prob: predicted probabilities of label 1.
        history: the per-epoch history written by `train`.
        hidden_kernels: the kernel of each regularized layer, by layer name.
        zero_threshold: weights with a smaller magnitude count as zero.

    Returns:
        Flat test and curve metrics, and a `weights` mapping of layer name to its statistics.
    """
    predicted = (y_prob >= 0.5).astype(y_true.dtype)
    metrics = {
        "test_bce": binary_cross_entropy(y_true, y_prob),
        "test_accuracy": float(np.mean(predicted == y_true)),
        "test_auc": roc_auc(y_true, y_prob),
        **curve_metrics(history),
        "weights": {name: weight_statistics(kernel, zero_threshold) for name, kernel in hidden_kernels.items()},
    }
    return _rounded(metrics)


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return round(value, DIGITS) if isinstance(value, float) else value


def read_metrics(metrics_dir: Path, names: list[str]) -> dict[str, dict]:
    """The metrics `evaluate@<model>` wrote to `<metrics_dir>/<model>.json`, by model name."""
    return {name: json.loads((metrics_dir / f"{name}.json").read_text(encoding="utf-8")) for name in names}
