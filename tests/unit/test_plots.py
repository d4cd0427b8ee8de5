"""Plot data and the report from histories and metrics the test makes up."""

import numpy as np
import pytest

from imdb_regularization.evaluation.report import (
    FIGURES,
    curve_rows,
    figure_curves,
    figure_words_kept,
    report_markdown,
    score_rows,
    weight_histogram_rows,
    words_kept_rows,
)


def _metrics(test_bce):
    return {
        "test_bce": test_bce,
        "test_accuracy": 0.7,
        "test_auc": 0.8,
        "best_val_bce": 0.5,
        "best_epoch": 3,
        "overfit_gap": 0.01,
        "words_kept": 12,
        "words_kept_fraction": 0.125,
        "weights": {"hidden_1": {"zero_fraction": 0.9}},
    }


TOP = {
    "positive": [("great", 0.31), ("a|b", 0.02)],
    "negative": [("worst", -0.4)],
}


def test_curve_rows_hold_one_row_per_model_and_epoch():
    history = {
        "epoch": [1, 2],
        "bce": [0.6, 0.5],
        "val_bce": [0.65, 0.6],
        "accuracy": [0.6, 0.7],
        "val_accuracy": [0.55, 0.6],
    }
    rows = curve_rows({"basic": history, "l1": history})
    assert len(rows) == 4
    assert rows[1] == {
        "model": "basic",
        "epoch": 2,
        "train_bce": 0.5,
        "val_bce": 0.6,
        "train_accuracy": 0.7,
        "val_accuracy": 0.6,
    }


def test_weight_histogram_shares_bins_and_sums_to_one_per_model():
    rows = weight_histogram_rows({"basic": np.linspace(-1, 1, 50), "l1": np.zeros(50)}, bins=9)
    for name in ("basic", "l1"):
        assert sum(row["fraction"] for row in rows if row["model"] == name) == pytest.approx(1.0)
    assert [row["weight"] for row in rows if row["model"] == "l1"] == [
        row["weight"] for row in rows if row["model"] == "basic"
    ]
    assert max(rows, key=lambda row: row["fraction"] if row["model"] == "l1" else 0)["weight"] == 0.0


def test_report_names_the_best_model_and_links_every_figure():
    report = report_markdown({"basic": _metrics(0.63), "l1": _metrics(0.57)}, {"basic": TOP, "l1": TOP})
    assert "Best test BCE: **l1** (0.57)" in report
    assert "| **l1** | 0.57 |" in report
    assert report.count("](") == len(FIGURES) == 6


def test_report_lists_each_models_strongest_words_side_by_side():
    report = report_markdown({"basic": _metrics(0.63), "l1": _metrics(0.57)}, {"basic": TOP, "l1": TOP})
    assert "### l1: 12 words kept (12.5%)" in report
    assert "| 1 | great | +0.310 | worst | -0.400 |" in report
    # A pipe in a word would split its cell; the second row has no negative word left.
    assert "| 2 | a\\|b | +0.020 |  |  |" in report


def test_words_kept_chart_labels_each_bar_with_its_count_and_share():
    rows = words_kept_rows(
        {
            "basic": {**_metrics(0.6), "words_kept": 96, "words_kept_fraction": 1.0},
            "l1": _metrics(0.5),
            "l1_strong": {**_metrics(0.5), "words_kept": 52, "words_kept_fraction": 0.0052},
        }
    )
    assert rows[1] == {"model": "l1", "words_kept": 12, "words_kept_fraction": 0.125}
    figure = figure_words_kept(rows, num_words=100)
    labels = [text.get_text() for text in figure.axes[0].texts]
    assert labels == ["96 (100%)", "12 (12%)", "52 (0.5%)"]


def test_figures_draw_every_model():
    rows = curve_rows(
        {"basic": {"epoch": [1], "bce": [0.6], "val_bce": [0.6], "accuracy": [0.6], "val_accuracy": [0.6]}}
    )
    figure = figure_curves(rows, {"val_bce": "-"}, "bce", "title")
    assert [line.get_label() for line in figure.axes[0].lines] == ["basic"]
    assert score_rows({"basic": _metrics(0.6)})[0]["test_bce"] == 0.6
