"""The comparison as pictures and words: plot data for `dvc plots`, the same figures as PNGs, and a report.

- `curves.csv` (model, epoch, train/validation BCE and accuracy), `weights.csv` (a histogram of each
  model's hidden-layer weights), `test.csv` (test metrics per model) and `words_kept.csv` (words
  kept per model), which the top-level `plots:` of dvc.yaml draw;
- `words.csv`: every word of every model, with its first-layer row norm, one-word effect and
  whether it is kept (`imdb_regularization.evaluation.words`);
- the same six figures as PNGs, for the README and for people without a browser;
- `report.md`: a table of the models' metrics, the best model named, each model's strongest
  positive and negative words, the figures linked.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from imdb_regularization.atomic import atomic_path
from imdb_regularization.params import FIRST_WORD_INDEX

HISTOGRAM_BINS = 81
FIGURES = {
    "validation_bce": "Validation BCE per epoch (the notebook's comparison)",
    "train_vs_validation": "Training vs validation BCE: the gap is overfitting",
    "accuracy": "Accuracy per epoch",
    "weights": "Hidden-layer weights: L1 piles them at zero, L2 narrows them",
    "test_bce": "Test BCE per model (lower is better)",
    "words_kept": "Words kept per model (first-layer row norm >= evaluate.kept_norm)",
}


def curve_rows(histories: dict[str, dict[str, list[float]]]) -> list[dict]:
    """One row per model and epoch with its penalty-free BCE and accuracy on both splits."""
    return [
        {
            "model": name,
            "epoch": epoch,
            "train_bce": round(history["bce"][index], 5),
            "val_bce": round(history["val_bce"][index], 5),
            "train_accuracy": round(history["accuracy"][index], 5),
            "val_accuracy": round(history["val_accuracy"][index], 5),
        }
        for name, history in histories.items()
        for index, epoch in enumerate(history["epoch"])
    ]


def weight_histogram_rows(weights: dict[str, np.ndarray], bins: int = HISTOGRAM_BINS) -> list[dict]:
    """The fraction of each model's hidden-layer weights per bin, on bins shared by all models."""
    largest = max(float(np.abs(values).max()) for values in weights.values())
    edges = np.linspace(-largest, largest, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    rows = []
    for name, values in weights.items():
        counts, _ = np.histogram(values, bins=edges)
        fractions = counts / values.size
        rows += [
            {"model": name, "weight": round(float(c), 5), "fraction": round(float(f), 6)}
            for c, f in zip(centres, fractions, strict=True)
        ]
    return rows


def score_rows(metrics: dict[str, dict]) -> list[dict]:
    """The test scores of each model, for the bar chart and the report."""
    return [
        {
            "model": name,
            "test_bce": values["test_bce"],
            "test_accuracy": values["test_accuracy"],
            "test_auc": values["test_auc"],
        }
        for name, values in metrics.items()
    ]


def words_kept_rows(metrics: dict[str, dict]) -> list[dict]:
    """How many words each model keeps, and what fraction of the vocabulary that is."""
    return [
        {"model": name, "words_kept": values["words_kept"], "words_kept_fraction": values["words_kept_fraction"]}
        for name, values in metrics.items()
    ]


def _by_model(rows: list[dict], name: str, field: str) -> list:
    return [row[field] for row in rows if row["model"] == name]


def figure_curves(rows: list[dict], fields: dict[str, str], ylabel: str, title: str) -> Figure:
    """Curves of every model on one axes; `fields` maps a column to its line style."""
    figure = Figure(figsize=(8, 5), layout="constrained")
    axes = figure.subplots()
    for index, name in enumerate(dict.fromkeys(row["model"] for row in rows)):
        for field, style in fields.items():
            axes.plot(
                _by_model(rows, name, "epoch"),
                _by_model(rows, name, field),
                style,
                color=f"C{index}",
                label=f"{name} ({field})" if len(fields) > 1 else name,
            )
    axes.set(xlabel="epoch", ylabel=ylabel, title=title)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def figure_train_vs_validation(rows: list[dict]) -> Figure:
    names = list(dict.fromkeys(row["model"] for row in rows))
    figure = Figure(figsize=(4 * len(names), 4), layout="constrained")
    all_axes = np.atleast_1d(figure.subplots(1, len(names), sharey=True))
    for axes, name in zip(all_axes, names, strict=True):
        epochs = _by_model(rows, name, "epoch")
        axes.plot(epochs, _by_model(rows, name, "train_bce"), label="training")
        axes.plot(epochs, _by_model(rows, name, "val_bce"), label="validation")
        axes.set(title=name, xlabel="epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    all_axes[0].set_ylabel("binary cross-entropy")
    all_axes[0].legend()
    figure.suptitle(FIGURES["train_vs_validation"])
    return figure


def figure_weights(rows: list[dict]) -> Figure:
    figure = Figure(figsize=(8, 5), layout="constrained")
    axes = figure.subplots()
    for name in dict.fromkeys(row["model"] for row in rows):
        axes.plot(_by_model(rows, name, "weight"), _by_model(rows, name, "fraction"), label=name)
    axes.set(xlabel="weight value", ylabel="fraction of weights (log scale)", yscale="log", title=FIGURES["weights"])
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def figure_test_bce(rows: list[dict]) -> Figure:
    figure = Figure(figsize=(8, 1 + 0.6 * len(rows)), layout="constrained")
    axes = figure.subplots()
    names, values = [row["model"] for row in rows], [row["test_bce"] for row in rows]
    bars = axes.barh(names, values, color=[f"C{index}" for index in range(len(rows))])
    axes.bar_label(bars, fmt="%.4f", padding=3)
    axes.invert_yaxis()
    axes.set(xlabel="test binary cross-entropy", title=FIGURES["test_bce"], xlim=(0, max(values) * 1.15))
    return figure


def figure_words_kept(rows: list[dict], num_words: int) -> Figure:
    figure = Figure(figsize=(8, 1 + 0.6 * len(rows)), layout="constrained")
    axes = figure.subplots()
    names, values = [row["model"] for row in rows], [row["words_kept"] for row in rows]
    bars = axes.barh(names, values, color=[f"C{index}" for index in range(len(rows))])
    # A model that keeps under a tenth of its words gets a decimal, so 0.5% does not read as 1%.
    labels = [
        f"{row['words_kept']:,} ({row['words_kept_fraction']:{'.1%' if row['words_kept_fraction'] < 0.1 else '.0%'}})"
        for row in rows
    ]
    axes.bar_label(bars, labels=labels, padding=3)
    axes.invert_yaxis()
    words = num_words - FIRST_WORD_INDEX
    axes.set(
        xlabel=f"words kept, of {words:,} (first-layer row norm >= evaluate.kept_norm)",
        title=FIGURES["words_kept"],
        xlim=(0, words * 1.2),
    )
    return figure


def save_figure(path: Path, draw: Callable[..., Figure], *args: Any) -> None:
    """Draw one figure and write it to `path` as a PNG."""
    with atomic_path(path) as temporary:
        draw(*args).savefig(temporary, dpi=110)


def report_markdown(metrics: dict[str, dict], top: dict[str, dict[str, list]]) -> str:
    """A table of every model's metrics, the best one named, each model's strongest words, and the figures linked.

    Args:
        metrics: each model's metrics, as `evaluate` wrote them.
        top: each model's `positive` and `negative` (word, effect) pairs (`words.top_words`).
    """
    best = min(metrics, key=lambda name: metrics[name]["test_bce"])
    columns = ["test_bce", "test_accuracy", "test_auc", "best_val_bce", "best_epoch", "overfit_gap", "words_kept"]
    layers = list(next(iter(metrics.values()))["weights"])
    lines = [
        "# Regularization comparison",
        "",
        "Generated by the `plots` stage; do not edit. Lower BCE is better; `overfit_gap` is how far the",
        "validation BCE rose after its best epoch; `zero` is the fraction of weights with |w| below the threshold.",
        "",
        "| model | " + " | ".join(columns) + " | " + " | ".join(f"{layer} zero" for layer in layers) + " |",
        "|---" * (1 + len(columns) + len(layers)) + "|",
    ]
    for name, values in metrics.items():
        cells = [str(values[column]) for column in columns]
        cells += [str(values["weights"][layer]["zero_fraction"]) for layer in layers]
        lines.append(f"| {'**' + name + '**' if name == best else name} | " + " | ".join(cells) + " |")
    lines += ["", f"Best test BCE: **{best}** ({metrics[best]['test_bce']}).", ""]
    lines += _top_words_markdown(metrics, top)
    lines += [f"![{title}]({name}.png)" for name, title in FIGURES.items()]
    return "\n".join(lines) + "\n"


def _top_words_markdown(metrics: dict[str, dict], top: dict[str, dict[str, list]]) -> list[str]:
    lines = [
        "## The words each model keeps",
        "",
        "A word is kept when its row of the first layer's kernel has an L2 norm of at least `evaluate.kept_norm`.",
        "Its effect is the model's output for a review holding only that word (the start index and the word)",
        "minus its output for an empty review (the start index alone). The strongest kept words by effect:",
        "",
    ]
    for name, sides in top.items():
        lines += [
            f"### {name}: {metrics[name]['words_kept']:,} words kept ({metrics[name]['words_kept_fraction']:.1%})",
            "",
            "| rank | positive word | effect | negative word | effect |",
            "|---|---|---|---|---|",
        ]
        positive, negative = sides["positive"], sides["negative"]
        for rank in range(max(len(positive), len(negative))):
            cells = [_word_cells(side, rank) for side in (positive, negative)]
            lines.append(f"| {rank + 1} | {cells[0]} | {cells[1]} |")
        if not positive and not negative:
            lines.append("| - | (no word kept) | | | |")
        lines.append("")
    return lines


def _word_cells(side: list, rank: int) -> str:
    if rank >= len(side):
        return " | "
    word, effect = side[rank]
    # A word is text from the reviews: a pipe or backslash in it would break the table.
    return f"{word.replace(chr(92), chr(92) * 2).replace('|', chr(92) + '|')} | {effect:+.3f}"


def figures_to_draw(
    curves: list[dict], histogram: list[dict], tests: list[dict], kept: list[dict], num_words: int
) -> dict[str, tuple]:
    """Each figure's name, and the function that draws it followed by its arguments (see `save_figure`)."""
    return {
        "validation_bce": (figure_curves, curves, {"val_bce": "-"}, "binary cross-entropy", FIGURES["validation_bce"]),
        "train_vs_validation": (figure_train_vs_validation, curves),
        "accuracy": (
            figure_curves,
            curves,
            {"train_accuracy": ":", "val_accuracy": "-"},
            "accuracy",
            FIGURES["accuracy"],
        ),
        "weights": (figure_weights, histogram),
        "test_bce": (figure_test_bce, tests),
        "words_kept": (figure_words_kept, kept, num_words),
    }
