"""Summarize the regularization study: test BCE and sparsity against rate, mean and spread over seeds.

Run after `python -m study.run`, from the repository root:

    python -m study.summarize [--out study/results]

Reads `dvc exp show --json`: every experiment of the current commit named `study-...`
(see `study.run`), with its params (the one model it trained, its rate, `train.seed`) and
that model's metrics. Writes to `<out>/`:
- `points.csv`: one row per experiment;
- `summary.csv` and `summary.md`: per model and rate, the mean and sample standard deviation
  over seeds of test BCE, test accuracy and sparsity, and the markdown names the best;
- `study.png`: test BCE, sparsity and words kept against rate on a log axis, mean ± std, each seed
  a dot, the basic model as a horizontal band;
- `plot.csv`: the means against log10(rate) for `dvc plots`, the basic model repeated at every rate.

Sparsity is the fraction of hidden-layer weights below `evaluate.zero_threshold` in magnitude,
averaged over the hidden layers. Words kept are the words whose first-layer row norm reaches
`evaluate.kept_norm` (`imdb_regularization.evaluation.words`); experiments evaluated before that
metric existed have none, and are left out of its means and its panel (the panel is drawn only
when some experiment has it).
"""

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from imdb_regularization import cli
from imdb_regularization.atomic import atomic_path, write_csv, write_text
from imdb_regularization.params import FIRST_WORD_INDEX
from study.run import BASELINE, EXPERIMENT_PREFIX, StudyError, call_dvc, model_label

log = logging.getLogger("study.summarize")

SUMMARIZED = ("test_bce", "test_accuracy", "zero_fraction", "words_kept")
# Metrics that experiments evaluated before they existed lack; their means skip those experiments.
OPTIONAL_METRICS = ("words_kept",)
DIGITS = 4
# The keys that make points of one study differ; every other param must agree between them.
POINT_KEYS = ("models", "train.seed")
SPARSITY_LABEL = "zero fraction of hidden weights"


def _flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _order(model: str, rate: float) -> tuple:
    return model != "basic", model, rate


def _point(name: str, data: dict) -> dict | None:
    """One experiment's point, or None if it has no metrics yet (queued, running or failed)."""
    params = data.get("params", {}).get("params.yaml", {}).get("data")
    scores = [entry["data"] for entry in data.get("metrics", {}).values() if "test_bce" in entry.get("data", {})]
    if not params or len(params.get("models", {})) != 1 or len(scores) != 1:
        return None
    (spec,), metrics = params["models"].values(), scores[0]
    layers = metrics["weights"].values()
    return {
        "experiment": name,
        "model": model_label(spec["regularizer"]),
        "rate": 0.0 if spec["regularizer"] == BASELINE else float(spec["rate"]),
        "seed": params["train"]["seed"],
        "test_bce": metrics["test_bce"],
        "test_accuracy": metrics["test_accuracy"],
        "test_auc": metrics["test_auc"],
        "zero_fraction": round(float(np.mean([layer["zero_fraction"] for layer in layers])), DIGITS),
        "words_kept": metrics.get("words_kept"),
        "settings": {
            key: value
            for key, value in _flatten(params).items()
            if not any(key == point_key or key.startswith(f"{point_key}.") for point_key in POINT_KEYS)
        },
    }


def experiment_points(show: list[dict]) -> tuple[list[dict], list[str]]:
    """The study's points in `dvc exp show --json` output.

    Args:
        show: the decoded output: one entry per baseline commit, each with its `experiments`.

    Returns:
        One dict per finished study experiment (name, model, rate, seed, scores, and the
        `settings`: its other params, flattened), and the names of study experiments without metrics.
    """
    points, unfinished = [], []
    for baseline in show:
        for experiment in baseline.get("experiments") or []:
            name = experiment.get("name") or ""
            if name.startswith(EXPERIMENT_PREFIX):
                point = _point(name, experiment["revs"][0].get("data") or {})
                if point:
                    points.append(point)
                else:
                    unfinished.append(name)
    return sorted(points, key=lambda point: (*_order(point["model"], point["rate"]), point["seed"])), unfinished


def common_settings(points: list[dict]) -> dict[str, Any]:
    """The params all points share; points run with other epochs, data or the like do not belong in one chart."""
    first = points[0]
    for point in points[1:]:
        keys = sorted(first["settings"].keys() | point["settings"].keys())
        differing = [key for key in keys if first["settings"].get(key) != point["settings"].get(key)]
        if differing:
            raise StudyError(
                f"experiments {first['experiment']} and {point['experiment']} differ in {differing[0]} "
                f"({first['settings'].get(differing[0])!r} vs {point['settings'].get(differing[0])!r}): "
                "remove the stale ones with `dvc exp remove <name>...` or rerun them with `python -m study.run`"
            )
    return first["settings"]


def aggregate(points: list[dict]) -> list[dict]:
    """Mean and sample standard deviation over seeds of each summarized metric, per model and rate.

    Rows come basic first, then each regularizer by increasing rate. With one seed the deviation is 0.
    """
    groups: dict[tuple[str, float], list[dict]] = {}
    for point in points:
        groups.setdefault((point["model"], point["rate"]), []).append(point)
    rows = []
    for model, rate in sorted(groups, key=lambda group: _order(*group)):
        members = groups[model, rate]
        row = {"model": model, "rate": rate, "seeds": len(members)}
        for metric in SUMMARIZED:
            values = np.array([member[metric] for member in members if member[metric] is not None], dtype=np.float64)
            if not values.size:
                row[f"{metric}_mean"] = row[f"{metric}_std"] = None
                continue
            row[f"{metric}_mean"] = round(float(values.mean()), DIGITS)
            row[f"{metric}_std"] = round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, DIGITS)
        rows.append(row)
    return rows


def plot_rows(summary: list[dict]) -> list[dict]:
    """Means against log10(rate) for `dvc plots`, whose templates have no log axis.

    The basic model has no rate, so it is repeated at every rate and draws as a flat line.
    """
    rates = sorted({row["rate"] for row in summary if row["model"] != "basic"})
    return [
        {
            "model": row["model"],
            "rate": rate,
            "log10_rate": round(math.log10(rate), DIGITS),
            "test_bce": row["test_bce_mean"],
            "test_bce_std": row["test_bce_std"],
            "zero_fraction": row["zero_fraction_mean"],
            "words_kept": row["words_kept_mean"],
        }
        for row in summary
        for rate in (rates if row["model"] == "basic" else [row["rate"]])
    ]


def _describe(row: dict) -> str:
    return "basic (no regularizer)" if row["model"] == "basic" else f"{row['model']} at rate {row['rate']:g}"


def _rate(row: dict) -> str:
    return "–" if row["model"] == "basic" else f"{row['rate']:g}"


def _score(row: dict, metric: str = "test_bce") -> str:
    if row[f"{metric}_mean"] is None:
        return "–"
    if metric == "words_kept":
        return f"{row[f'{metric}_mean']:,.0f} ± {row[f'{metric}_std']:,.0f}"
    return f"{row[f'{metric}_mean']:.4f} ± {row[f'{metric}_std']:.4f}"


def best_per_model(summary: list[dict]) -> list[dict]:
    """The row of lowest mean test BCE of each model, best first."""
    best: dict[str, dict] = {}
    for row in summary:
        if row["model"] not in best or row["test_bce_mean"] < best[row["model"]]["test_bce_mean"]:
            best[row["model"]] = row
    return sorted(best.values(), key=lambda row: row["test_bce_mean"])


def paired_differences(points: list[dict], better: dict, worse: dict) -> np.ndarray:
    """Per seed both rows have, the test BCE of `worse` minus that of `better`.

    A seed gives every model the same initial weights and batch order, so much of the
    seed-to-seed noise is shared and cancels in these differences.
    """

    def by_seed(row: dict) -> dict[int, float]:
        return {
            point["seed"]: point["test_bce"]
            for point in points
            if (point["model"], point["rate"]) == (row["model"], row["rate"])
        }

    better_scores, worse_scores = by_seed(better), by_seed(worse)
    return np.array([worse_scores[seed] - better_scores[seed] for seed in sorted(better_scores.keys() & worse_scores)])


def _comparison_line(points: list[dict], winner: dict, row: dict) -> str:
    """How far one model's best trails the winner: in the mean, against the spread, and seed by seed."""
    margin = row["test_bce_mean"] - winner["test_bce_mean"]
    spread = max(winner["test_bce_std"], row["test_bce_std"])
    line = f"- Best of {row['model']}: {_describe(row)}, {_score(row)}; {margin:.4f} higher in the mean"
    line += f" ({margin / spread:.1f} times the larger seed-to-seed standard deviation)" if spread else ""
    differences = paired_differences(points, winner, row)
    if len(differences) > 1:
        line += (
            f"; seed by seed, higher by {differences.mean():.4f} ± {differences.std(ddof=1):.4f}, "
            f"for {int(np.sum(differences > 0))} of {len(differences)} seeds"
        )
    return line + "."


def verdict_lines(summary: list[dict], points: list[dict]) -> list[str]:
    """Markdown bullets: the best model and rate with its spread, then how far each other model's best trails it."""
    winner, *others = best_per_model(summary)
    lines = [f"- Lowest mean test BCE: **{_describe(winner)}**, {_score(winner)} over {winner['seeds']} seeds."]
    return lines + [_comparison_line(points, winner, row) for row in others]


def _draw(axes: Axes, summary: list[dict], points: list[dict], metric: str) -> None:
    """Each regularizer's mean ± std against rate with its seeds as dots; the basic model as a band."""
    for index, model in enumerate(dict.fromkeys(row["model"] for row in summary)):
        rows = [row for row in summary if row["model"] == model and row[f"{metric}_mean"] is not None]
        if not rows:
            continue
        mean = np.array([row[f"{metric}_mean"] for row in rows])
        std = np.array([row[f"{metric}_std"] for row in rows])
        colour = f"C{index}"
        if model == "basic":
            axes.axhspan(mean[0] - std[0], mean[0] + std[0], color=colour, alpha=0.2)
            axes.axhline(mean[0], color=colour, linestyle="--", label="basic (no regularizer), mean ± std")
            continue
        rates = [row["rate"] for row in rows]
        axes.fill_between(rates, mean - std, mean + std, color=colour, alpha=0.2)
        axes.plot(rates, mean, "o-", color=colour, label=f"{model}, mean ± std")
        seeds = [point for point in points if point["model"] == model and point[metric] is not None]
        axes.plot(
            [point["rate"] for point in seeds],
            [point[metric] for point in seeds],
            ".",
            color=colour,
            alpha=0.5,
            label=f"{model}, one seed",
        )


def figure_study(summary: list[dict], points: list[dict], title: str, num_words: int | None = None) -> Figure:
    """Test BCE, sparsity and (when the experiments have it) words kept against rate, on a log axis.

    Args:
        summary: the rows of `aggregate`.
        points: the experiments' points.
        title: the figure's title.
        num_words: `data.num_words` of the experiments, for the words-kept axis label.
    """
    panels = [
        ("test_bce", "test binary cross-entropy (lower is better)", "Test BCE against rate"),
        ("zero_fraction", SPARSITY_LABEL, "Sparsity against rate"),
    ]
    if any(row["words_kept_mean"] is not None for row in summary):
        words = "" if num_words is None else f" (of {num_words - FIRST_WORD_INDEX:,})"
        panels.append(
            ("words_kept", f"words kept{words}, first-layer row norm >= kept_norm", "Words kept against rate")
        )
    figure = Figure(figsize=(6 * len(panels), 5), layout="constrained")
    all_axes = figure.subplots(1, len(panels))
    for axes, (metric, label, panel_title) in zip(all_axes, panels, strict=True):
        _draw(axes, summary, points, metric)
        axes.set(xscale="log", xlabel="regularization rate (log scale)", ylabel=label, title=panel_title)
        axes.grid(alpha=0.3)
    all_axes[0].legend(fontsize="small")
    figure.suptitle(title)
    return figure


def describe_settings(settings: dict[str, Any]) -> str:
    """The training setup all points share, in one line."""
    return (
        f"data {settings['data.source']} ({settings['data.num_words']} words), epochs {settings['train.epochs']}, "
        f"batch {settings['train.batch_size']}, hidden units {settings['train.hidden_units']}, "
        f"{settings['train.optimizer']} at learning rate {settings['train.learning_rate']}, "
        f"validation {settings['train.validation']}"
    )


def summary_markdown(summary: list[dict], points: list[dict], settings: dict[str, Any]) -> str:
    """The study's table and verdict, and the chart linked."""
    seeds = sorted({point["seed"] for point in points})
    rates = sorted({row["rate"] for row in summary if row["model"] != "basic"})
    lines = [
        "# Regularization study",
        "",
        "Generated by `python -m study.summarize`; do not edit.",
        f"{len(points)} experiments: the basic model, and L1 and L2 at rates {', '.join(f'{r:g}' for r in rates)}; "
        f"seeds {', '.join(map(str, seeds))}. Settings: {describe_settings(settings)}.",
        "Test BCE is the penalty-free binary cross-entropy on the test set after the last epoch; sparsity is the",
        f"fraction of hidden-layer weights with |w| < {settings['evaluate.zero_threshold']}, averaged over the hidden "
        "layers. ± is the sample standard deviation over seeds.",
        "",
        f"Words kept: words whose first-layer row norm is at least {settings.get('evaluate.kept_norm', '–')} "
        "(– for experiments evaluated before this metric).",
        "",
        "| model | rate | seeds | test BCE | test accuracy | sparsity (zero fraction) | words kept |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {row['model']} | {_rate(row)} | {row['seeds']} | {_score(row)} | {_score(row, 'test_accuracy')} | "
        f"{_score(row, 'zero_fraction')} | {_score(row, 'words_kept')} |"
        for row in summary
    ]
    lines += ["", "## Verdict", "", *verdict_lines(summary, points), ""]
    lines.append("![Test BCE, sparsity and words kept against rate](study.png)")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Chart and tabulate the regularization study's experiments.")
    parser.add_argument("--out", type=Path, default=Path("study/results"), help="output directory (%(default)s)")
    args = parser.parse_args()

    points, unfinished = experiment_points(json.loads(call_dvc("exp", "show", "--json")))
    if unfinished:
        log.warning("left out %d study experiments without metrics: %s", len(unfinished), ", ".join(unfinished))
    if not points:
        raise StudyError("no study experiments on this commit: run `python -m study.run` first")
    settings, summary = common_settings(points), aggregate(points)
    write_csv(
        args.out / "points.csv", [{key: value for key, value in point.items() if key != "settings"} for point in points]
    )
    write_csv(args.out / "summary.csv", summary)
    write_csv(args.out / "plot.csv", plot_rows(summary))
    seeds = max(row["seeds"] for row in summary)
    title = (
        f"Regularization study: {seeds} seeds per point, epochs {settings['train.epochs']}, "
        f"data {settings['data.source']}"
    )
    with atomic_path(args.out / "study.png") as temporary:
        figure_study(summary, points, title, settings.get("data.num_words")).savefig(temporary, dpi=110)
    write_text(args.out / "summary.md", summary_markdown(summary, points, settings))
    winner = best_per_model(summary)[0]
    log.info("lowest mean test BCE: %s, %s; wrote %s", _describe(winner), _score(winner), args.out)


if __name__ == "__main__":
    cli.run(main)
