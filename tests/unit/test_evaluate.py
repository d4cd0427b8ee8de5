"""Metrics computed from predictions, history and weights."""

import numpy as np
import pytest

from imdb_regularization.atomic import write_json
from imdb_regularization.evaluation.metrics import (
    binary_cross_entropy,
    curve_metrics,
    evaluate_model,
    read_metrics,
    roc_auc,
    weight_statistics,
)
from imdb_regularization.evaluation.words import analyse_words

# Six words (indices 4-9) of which the first three have large rows: three kept, half the vocabulary.
WORDS = analyse_words(
    [
        (np.vstack([np.zeros((4, 2)), np.ones((3, 2)), np.full((3, 2), 0.01)]), np.zeros(2)),
        (np.ones((2, 1)), np.zeros(1)),
    ],
    kept_norm=0.1,
)


def test_bce_matches_the_formula_and_clips_like_keras():
    y, p = np.array([1, 0]), np.array([0.8, 0.4])
    assert binary_cross_entropy(y, p) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert binary_cross_entropy(np.array([1]), np.array([0.0])) == pytest.approx(-np.log(1e-7))


def test_auc_counts_ties_as_half():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)


def test_curve_metrics_find_the_best_epoch_and_the_rise_after_it():
    history = {"bce": [0.6, 0.5, 0.4], "val_bce": [0.7, 0.55, 0.65]}
    metrics = curve_metrics(history)
    assert metrics["best_epoch"] == 2
    assert metrics["best_val_bce"] == 0.55
    assert metrics["overfit_gap"] == pytest.approx(0.1)
    assert metrics["generalization_gap"] == pytest.approx(0.25)


def test_weight_statistics_measure_sparsity_and_size():
    stats = weight_statistics(np.array([[0.0, 0.0005], [-3.0, 4.0]]), zero_threshold=0.001)
    assert stats == {"zero_fraction": 0.5, "mean_abs": pytest.approx(1.750125), "l2_norm": pytest.approx(5.0, 1e-6)}


def test_evaluate_model_rounds_and_nests_weights():
    metrics = evaluate_model(
        y_true=np.array([0, 1, 1, 0], dtype=np.uint8),
        y_prob=np.array([0.2, 0.9, 0.6, 0.7], dtype=np.float32),
        history={"bce": [0.5], "val_bce": [0.6]},
        hidden_kernels={"hidden_1": np.ones((2, 2))},
        zero_threshold=0.001,
        words=WORDS,
    )
    assert metrics["test_accuracy"] == 0.75
    assert metrics["test_auc"] == 0.75
    assert metrics["weights"] == {"hidden_1": {"zero_fraction": 0.0, "mean_abs": 1.0, "l2_norm": 2.0}}
    assert metrics["test_bce"] == round(metrics["test_bce"], 4)
    assert (metrics["words_kept"], metrics["words_kept_fraction"]) == (3, 0.5)


def test_read_metrics_returns_exactly_what_evaluate_model_wrote(tmp_path):
    # The checks of read_metrics keep only the keys they know: a metric added to evaluate_model
    # without a bound would silently disappear from the report.
    metrics = evaluate_model(
        y_true=np.array([0, 1, 1, 0], dtype=np.uint8),
        y_prob=np.array([0.2, 0.9, 0.6, 0.7], dtype=np.float32),
        history={"bce": [0.5, 0.4], "val_bce": [0.6, 0.7]},
        hidden_kernels={"hidden_1": np.ones((2, 2)), "hidden_2": np.zeros((2, 1))},
        zero_threshold=0.001,
        words=WORDS,
    )
    write_json(tmp_path / "basic.json", metrics)
    assert read_metrics(tmp_path, ["basic"]) == {"basic": metrics}
