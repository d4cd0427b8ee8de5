"""Stage `evaluate@<model>`: score one trained model on the test set.

Params: `evaluate.zero_threshold`.
Reads: `<data>/y_test.npy` and, from `<model-dir>/`, `test_predictions.npy`,
`history.json` and `weights.npz` (all written by `train`, so no TensorFlow here).
Writes: `<out>`, a JSON of the metrics `dvc metrics show` lists: test scores,
the validation curve's best and last points, and the weight statistics of each
regularized (hidden) layer that test the notebook's claims (L1 zeroes weights,
L2 shrinks them).
"""

import argparse
import logging
from pathlib import Path

import numpy as np

from stages import cli, model_files
from stages.atomic import write_json
from stages.params import load_params

log = logging.getLogger("stages.evaluate")

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


def _rounded(value):
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return round(value, DIGITS) if isinstance(value, float) else value


def main() -> None:
    parser = argparse.ArgumentParser(description="Evaluate one trained model.")
    parser.add_argument("--model", help="a key of the models section of params.yaml (default: from DVC_STAGE)")
    parser.add_argument("--models-dir", type=Path, required=True, help="reads <models-dir>/<model>/")
    parser.add_argument("--data", type=Path, required=True, help="directory of the encoded arrays")
    parser.add_argument("--metrics-dir", type=Path, required=True, help="writes <metrics-dir>/<model>.json")
    args = parser.parse_args()

    params = load_params()
    name = cli.resolve_model(args.model, params.models)
    model_dir, out = args.models_dir / name, args.metrics_dir / f"{name}.json"
    metrics = evaluate_model(
        y_true=np.load(args.data / "y_test.npy"),
        y_prob=model_files.read_test_predictions(model_dir),
        history=model_files.read_history(model_dir),
        hidden_kernels=model_files.read_hidden_kernels(model_dir),
        zero_threshold=params.evaluate.zero_threshold,
    )
    write_json(out, metrics)
    log.info("%s: test_bce %.4f, test_accuracy %.4f", out, metrics["test_bce"], metrics["test_accuracy"])


if __name__ == "__main__":
    cli.run(main)
