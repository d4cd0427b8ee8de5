"""Summarize the regularization study across feature counts: rates chosen on validation, reported on test.

Run after `python -m study.run`, from the repository root:

    python -m study.summarize [--out study/results] [--readme README.md]

Reads `dvc exp show --json`: every experiment of the current commit named `study-...` (see
`study.run`). An experiment holds one point per entry of its `models` that has a metrics file
(`metrics/<key>.json`): the model (its regularizer, `basic` for none), its rate, the experiment's
`train.seed` and its width, `data.num_words`. So both the experiments of one (width, seed) with
every model (`study-w10000-s42`) and older ones with a single model (`study-l1-0.001-s42`) are read.

Every point's test BCE, penalty-free BCE on the held-out validation split after the last epoch
(`last_val_bce`), accuracy, sparsity and words kept are gathered; per (width, model, rate) they are
averaged over seeds, and per (width, model) the rate of lowest mean validation BCE is chosen. The test
set only reports the chosen rates: choosing on it too would flatter the winner, and `chosen.csv` and
the summary say by how much. A study run with `train.validation: test` has no held-out split; its
rates are chosen on test, and the summary says so. Studies with and without a split are not mixed:
every param but `models`, `train.seed` and `data.num_words` must agree between the points.

Writes to `<out>/`, each file atomically:
- `points.csv`: one row per point;
- `summary.csv`: per (width, model, rate), mean and sample standard deviation over seeds;
- `chosen.csv`: per (width, model), the validation-chosen rate and the rate a test-set choice picks;
- `plot.csv` (against log10(rate), per width) and `widths.csv` (chosen rates against log10(width))
  for `dvc plots`;
- `study.png` (test BCE, sparsity and words kept against rate, one column per width) and
  `widths.png` (test BCE at the chosen rate, and the chosen rate, against width);
- `summary.md`: the settings, one table and verdict per width, and the two choices compared.
With `--readme`, the verdict per width and the charts also replace the text between the README's
`<!-- study:start -->` and `<!-- study:end -->` markers.

Sparsity is the fraction of hidden-layer weights below `evaluate.zero_threshold` in magnitude,
averaged over the hidden layers; words kept are the words whose first-layer row norm reaches
`evaluate.kept_norm`. Experiments evaluated before that metric existed have none and are left out
of its means.
"""

import argparse
import io
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from imdb_regularization import cli
from imdb_regularization.atomic import atomic_path, write_csv, write_text
from imdb_regularization.params import FIRST_WORD_INDEX
from imdb_regularization.readme_blocks import replace_block
from study.grid import BASELINE, EXPERIMENT_PREFIX, StudyError, model_label
from study.run import call_dvc

log = logging.getLogger("study.summarize")

SUMMARIZED = ("test_bce", "val_bce", "test_accuracy", "zero_fraction", "words_kept")
POINT_COLUMNS = (
    "experiment",
    "width",
    "model",
    "rate",
    "seed",
    "test_bce",
    "val_bce",
    "test_accuracy",
    "zero_fraction",
    "words_kept",
)
DIGITS = 4
# The keys that make points of one study differ; every other param must agree between them.
POINT_KEYS = ("models", "train.seed", "data.num_words")
# A paired difference is beyond noise when its mean exceeds this many standard errors and every seed agrees in sign.
NOISE_STANDARD_ERRORS = 2.0
SPARSITY_LABEL = "zero fraction of hidden weights"
# The README block `--readme` rewrites.
README_BLOCK = "study"
SELECTION_NAMES = {"val_bce": "validation", "test_bce": "test"}


# Points: one per model an experiment evaluated.


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


def _point_order(point: dict) -> tuple:
    return point["width"], *_order(point["model"], point["rate"]), point["seed"]


def _shared_settings(params: dict) -> dict[str, Any]:
    return {
        key: value
        for key, value in _flatten(params).items()
        if not any(key == point_key or key.startswith(f"{point_key}.") for point_key in POINT_KEYS)
    }


def _experiment_points(name: str, data: dict) -> list[dict]:
    """The points of one experiment: its models that have metrics (none while queued, running or failed)."""
    params = data.get("params", {}).get("params.yaml", {}).get("data")
    # A model's metrics file is named after its key; files that failed to load hold an `error`, not `data`.
    scores = {
        Path(path).stem: entry["data"]
        for path, entry in (data.get("metrics") or {}).items()
        if "test_bce" in (entry.get("data") or {})
    }
    if not params:
        return []
    held_out = params["train"].get("validation") != "test"
    points = []
    for key, spec in params.get("models", {}).items():
        if key not in scores:
            continue
        metrics = scores[key]
        points.append(
            {
                "experiment": name,
                "width": params["data"]["num_words"],
                "model": model_label(spec["regularizer"]),
                "rate": 0.0 if spec["regularizer"] == BASELINE else float(spec["rate"]),
                "seed": params["train"]["seed"],
                "test_bce": metrics["test_bce"],
                "val_bce": metrics.get("last_val_bce") if held_out else None,
                "test_accuracy": metrics["test_accuracy"],
                "zero_fraction": round(
                    float(np.mean([layer["zero_fraction"] for layer in metrics["weights"].values()])), DIGITS
                ),
                "words_kept": metrics.get("words_kept"),
                "key": key,
                "settings": _shared_settings(params),
            }
        )
    return points


def experiment_points(show: list[dict]) -> tuple[list[dict], list[str]]:
    """The study's points in `dvc exp show --json` output.

    Args:
        show: the decoded output: one entry per baseline commit, each with its `experiments`.

    Returns:
        One dict per point (the `POINT_COLUMNS`, the `key` of its `models` entry and the `settings`:
        its experiment's other params, flattened), ordered by width, model, rate and seed; and the
        names of study experiments without any point.
    """
    points, unfinished = [], []
    for baseline in show:
        for experiment in baseline.get("experiments") or []:
            name = experiment.get("name") or ""
            if not name.startswith(EXPERIMENT_PREFIX):
                continue
            found = _experiment_points(name, experiment["revs"][0].get("data") or {})
            points += found
            if not found:
                unfinished.append(name)
    return sorted(points, key=_point_order), unfinished


def committed_only(show: list[dict], committed: set[str]) -> list[dict]:
    """`dvc exp show` output without the experiments that have no git ref (not in `dvc exp list`).

    A study run stopped mid-experiment can leave its temporary workspace behind, which `dvc exp
    show` lists as a running experiment with whatever metrics it had written: not a result.
    """
    return [
        {**baseline, "experiments": [e for e in baseline.get("experiments") or [] if e.get("name") in committed]}
        for baseline in show
    ]


def check_distinct(points: list[dict]) -> None:
    """Refuse two points of the same width, model, rate and seed: one would count twice in the means.

    Raises:
        StudyError: naming both points' experiments and model keys.
    """
    seen: dict[tuple, dict] = {}
    for point in points:
        other = seen.setdefault((point["width"], point["model"], point["rate"], point["seed"]), point)
        if other is not point:
            raise StudyError(
                f"{other['experiment']} ({other['key']}) and {point['experiment']} ({point['key']}) both hold "
                f"{point['model']} at rate {point['rate']:g}, seed {point['seed']}, {point['width']} words: "
                "remove one with `dvc exp remove <name>`"
            )


def common_settings(points: list[dict]) -> dict[str, Any]:
    """The params all points share; points run with other epochs, data or validation do not belong together.

    Raises:
        StudyError: two points differ in a param other than `POINT_KEYS`, named with both values.
    """
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


def selection_metric(points: list[dict], settings: dict[str, Any]) -> str:
    """The metric rates are chosen on: `val_bce`, or `test_bce` for a study without a held-out split.

    Raises:
        StudyError: the study has a split but a point lacks `last_val_bce` (evaluated before it existed).
    """
    if settings.get("train.validation") == "test":
        return "test_bce"
    missing = next((point for point in points if point["val_bce"] is None), None)
    if missing:
        raise StudyError(
            f"{missing['experiment']} ({missing['key']}) has no last_val_bce to choose its rate on: "
            "it was evaluated before the metric existed; rerun it with `python -m study.run`"
        )
    return "val_bce"


# Aggregates and choices: rows in, rows out.


def aggregate(points: list[dict]) -> list[dict]:
    """Mean and sample standard deviation over seeds of each summarized metric, per width, model and rate.

    Rows come by width, then basic first, then each regularizer by increasing rate. With one seed the
    deviation is 0; a metric no seed has (no validation split, no words kept) is None.
    """
    groups: dict[tuple[int, str, float], list[dict]] = {}
    for point in points:
        groups.setdefault((point["width"], point["model"], point["rate"]), []).append(point)
    rows = []
    for width, model, rate in sorted(groups, key=lambda group: (group[0], *_order(*group[1:]))):
        members = groups[width, model, rate]
        row = {"width": width, "model": model, "rate": rate, "seeds": len(members)}
        for metric in SUMMARIZED:
            values = np.array([member[metric] for member in members if member[metric] is not None], dtype=np.float64)
            if not values.size:
                row[f"{metric}_mean"] = row[f"{metric}_std"] = None
                continue
            row[f"{metric}_mean"] = round(float(values.mean()), DIGITS)
            row[f"{metric}_std"] = round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, DIGITS)
        rows.append(row)
    return rows


def grid_gaps(summary: list[dict]) -> list[str]:
    """What the summarized grid lacks: a rate that one width has and another not, a row with fewer seeds."""

    def what(model: str, rate: float) -> str:
        return _name(model) + (f" at rate {rate:g}" if rate else "")

    most_seeds = max(row["seeds"] for row in summary)
    gaps = [
        f"{what(row['model'], row['rate'])}, {row['width']:,} words, has {row['seeds']} of {most_seeds} seeds"
        for row in summary
        if row["seeds"] < most_seeds
    ]
    rates = {(row["model"], row["rate"]) for row in summary}
    for width in sorted({row["width"] for row in summary}):
        present = {(row["model"], row["rate"]) for row in summary if row["width"] == width}
        gaps += [f"{what(model, rate)} is missing at {width:,} words" for model, rate in sorted(rates - present)]
    return gaps


def _lowest(rows: list[dict], metric: str) -> dict:
    """The row of lowest mean `metric`: never one without a finite mean (a diverged seed), unless all are so."""
    scored = [row for row in rows if row[f"{metric}_mean"] is not None and math.isfinite(row[f"{metric}_mean"])]
    # `min` keeps the first of equal rows: on a tie, the lowest rate.
    return min(scored or rows[:1], key=lambda row: row[f"{metric}_mean"] if scored else 0)


def choose_rates(summary: list[dict], metric: str) -> list[dict]:
    """Per width and model, the rate of lowest mean `metric`, beside the rate of lowest mean test BCE.

    Returns:
        The rows of `chosen.csv`: the chosen rate (None for basic, which has none), its seeds and
        scores, the rate a choice on test would have made, its test BCE, whether the two agree and how
        much higher the chosen rate's test BCE is (0 or more: the test-set choice's optimism).
    """
    groups: dict[tuple[int, str], list[dict]] = {}
    for row in summary:
        groups.setdefault((row["width"], row["model"]), []).append(row)
    chosen = []
    for (width, model), rows in groups.items():
        picked, on_test = _lowest(rows, metric), _lowest(rows, "test_bce")
        has_rate = model != "basic"
        chosen.append(
            {
                "width": width,
                "model": model,
                "chosen_on": SELECTION_NAMES[metric],
                "rate": picked["rate"] if has_rate else None,
                "seeds": picked["seeds"],
                "val_bce_mean": picked["val_bce_mean"],
                "test_bce_mean": picked["test_bce_mean"],
                "test_bce_std": picked["test_bce_std"],
                "test_chosen_rate": on_test["rate"] if has_rate else None,
                "test_chosen_test_bce_mean": on_test["test_bce_mean"],
                "test_chosen_test_bce_std": on_test["test_bce_std"],
                "same_rate": picked is on_test,
                "test_bce_difference": round(picked["test_bce_mean"] - on_test["test_bce_mean"], DIGITS),
            }
        )
    return chosen


@dataclass(frozen=True)
class PairedDifference:
    """Per seed two rows share, the test BCE of the first minus that of the second.

    A seed gives every model the same initial weights and batch order, so much of the seed-to-seed
    noise is shared and cancels in these differences.
    """

    differences: tuple[float, ...]

    @property
    def seeds(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return float(np.mean(self.differences)) if self.differences else 0.0

    @property
    def std(self) -> float:
        return float(np.std(self.differences, ddof=1)) if self.seeds > 1 else 0.0

    @property
    def agreeing(self) -> int:
        """The seeds whose difference has the sign of the mean (a zero difference agrees with neither)."""
        return sum(1 for difference in self.differences if difference * self.mean > 0)

    @property
    def beyond_noise(self) -> bool:
        """At least 2 seeds, |mean| above `NOISE_STANDARD_ERRORS` standard errors, and every seed agreeing."""
        standard_error = self.std / math.sqrt(self.seeds) if self.seeds else 0.0
        return (
            self.seeds >= 2 and abs(self.mean) > NOISE_STANDARD_ERRORS * standard_error and self.agreeing == self.seeds
        )


def _scores_by_seed(points: list[dict], row: dict) -> dict[int, float]:
    group = (row["width"], row["model"], row["rate"] or 0.0)
    return {
        point["seed"]: point["test_bce"] for point in points if (point["width"], point["model"], point["rate"]) == group
    }


def paired_difference(points: list[dict], first: dict, second: dict) -> PairedDifference:
    """Test BCE of `first` minus `second` (rows of `aggregate` or `choose_rates`), per seed both have."""
    first_scores, second_scores = _scores_by_seed(points, first), _scores_by_seed(points, second)
    seeds = sorted(first_scores.keys() & second_scores.keys())
    return PairedDifference(tuple(first_scores[seed] - second_scores[seed] for seed in seeds))


# Plot data for `dvc plots`, whose templates have no log axis.


def plot_rows(summary: list[dict]) -> list[dict]:
    """Means against log10(rate) per width; the basic model, which has no rate, repeated at each rate of its width."""
    rows = []
    for row in summary:
        rates = sorted(
            {other["rate"] for other in summary if other["width"] == row["width"] and other["model"] != "basic"}
        )
        for rate in rates if row["model"] == "basic" else [row["rate"]]:
            rows.append(
                {
                    "width": row["width"],
                    "model": row["model"],
                    "rate": rate,
                    "log10_rate": round(math.log10(rate), DIGITS),
                    "test_bce": row["test_bce_mean"],
                    "test_bce_std": row["test_bce_std"],
                    "val_bce": row["val_bce_mean"],
                    "zero_fraction": row["zero_fraction_mean"],
                    "words_kept": row["words_kept_mean"],
                }
            )
    return rows


def width_rows(chosen: list[dict]) -> list[dict]:
    """Each model's test BCE at its chosen rate against log10(width)."""
    return [
        {
            "width": row["width"],
            "log10_width": round(math.log10(row["width"]), DIGITS),
            "model": row["model"],
            "rate": row["rate"],
            "test_bce": row["test_bce_mean"],
            "test_bce_std": row["test_bce_std"],
        }
        for row in chosen
    ]


# The summary in words.


def _name(model: str) -> str:
    return "the plain network" if model == "basic" else model.upper()


def _rate(rate: float | None) -> str:
    return "–" if not rate else f"{rate:g}"


def _score(row: dict, metric: str = "test_bce") -> str:
    if row.get(f"{metric}_mean") is None:
        return "–"
    if metric == "words_kept":
        return f"{row[f'{metric}_mean']:,.0f} ± {row[f'{metric}_std']:,.0f}"
    return f"{row[f'{metric}_mean']:.4f} ± {row[f'{metric}_std']:.4f}"


def _paired_text(paired: PairedDifference, ahead: str) -> str:
    if paired.seeds < 2:
        return f"{paired.seeds} seed(s) in common: no noise estimate, so within noise by the rule"
    verdict = "beyond noise" if paired.beyond_noise else "within noise"
    return (
        f"{paired.mean:+.4f} ± {paired.std:.4f} over {paired.seeds} seeds, {ahead} ahead for "
        f"{paired.agreeing} of {paired.seeds}: {verdict}"
    )


def _regularizer_lines(rows: dict[str, dict], points: list[dict], selection: str) -> tuple[list[str], dict]:
    """The L1-vs-L2 bullets of one width, and the row of the regularizer lower in the mean."""
    l1, l2 = rows["l1"], rows["l2"]
    winner, loser = (l2, l1) if l2["test_bce_mean"] < l1["test_bce_mean"] else (l1, l2)
    paired = paired_difference(points, l1, l2)
    margin = loser["test_bce_mean"] - winner["test_bce_mean"]
    at = f"its {selection}-chosen rate"
    both = (
        f"{_name(winner['model'])} at {at} {_rate(winner['rate'])}, test BCE {_score(winner)}, against "
        f"{_name(loser['model'])} at {_rate(loser['rate'])}, {_score(loser)} ({margin:.4f} lower in the mean)"
    )
    headline = f"**{_name(winner['model'])} wins**: {both}." if paired.beyond_noise else f"**No clear winner**: {both}."
    ahead = _name("l2" if paired.mean > 0 else "l1")
    return [f"- {headline}", f"- Paired per seed, L1 − L2 test BCE = {_paired_text(paired, ahead)}."], winner


def verdict_lines(width: int, chosen: list[dict], points: list[dict]) -> list[str]:
    """Markdown bullets for one width: L1 against L2 at their chosen rates, paired per seed, and the plain network."""
    rows = {row["model"]: row for row in chosen if row["width"] == width}
    if "l1" not in rows or "l2" not in rows:
        return ["- L1 or L2 has no finished points at this width: no verdict."]
    lines, winner = _regularizer_lines(rows, points, rows["l1"]["chosen_on"])
    if "basic" not in rows:
        return [*lines, "- The plain network has no finished points at this width."]
    paired = paired_difference(points, rows["basic"], winner)
    where = "trails" if paired.mean > 0 else "is ahead of"
    lines.append(
        f"- The plain network (test BCE {_score(rows['basic'])}) {where} {_name(winner['model'])}: "
        f"plain − {_name(winner['model'])} = "
        f"{_paired_text(paired, _name(winner['model']) if paired.mean > 0 else 'the plain network')}."
    )
    return lines


def _chosen_mark(row: dict, chosen: list[dict]) -> str:
    picked = next(item for item in chosen if (item["width"], item["model"]) == (row["width"], row["model"]))
    if row["model"] == "basic":
        return ""
    marks = [picked["chosen_on"]] if picked["rate"] == row["rate"] else []
    marks += ["test"] if picked["test_chosen_rate"] == row["rate"] and picked["chosen_on"] != "test" else []
    return " + ".join(marks)


def width_table(width: int, summary: list[dict], chosen: list[dict]) -> list[str]:
    """The markdown table of one width: every model and rate, and which rates each choice picks."""
    lines = [
        "| model | rate | chosen on | seeds | test BCE | validation BCE | test accuracy | sparsity | words kept |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    return lines + [
        f"| {row['model']} | {_rate(row['rate'])} | {_chosen_mark(row, chosen)} | {row['seeds']} | {_score(row)} | "
        f"{_score(row, 'val_bce')} | {_score(row, 'test_accuracy')} | {_score(row, 'zero_fraction')} | "
        f"{_score(row, 'words_kept')} |"
        for row in summary
        if row["width"] == width
    ]


def selection_lines(chosen: list[dict]) -> list[str]:
    """How the rates chosen on validation compare with those a choice on the test set would make."""
    rows = [row for row in chosen if row["model"] != "basic"]
    if rows and rows[0]["chosen_on"] == "test":
        return [
            "This study has no held-out validation split (`train.validation: test`), so its rates were "
            "chosen on the test set itself: the two choices coincide by construction, and the chosen "
            "rates' test BCE is optimistic. Run the study with a validation fraction for an honest choice."
        ]
    differing = [row for row in rows if not row["same_rate"]]
    lines = [
        f"A choice on the test set would pick another rate in {len(differing)} of {len(rows)} cases. "
        "Its test BCE is never higher, by construction: the difference is how much reporting the test-chosen rate "
        "would flatter the result.",
        "",
        "| words | model | validation-chosen rate | its test BCE | test-chosen rate | its test BCE | difference |",
        "|---|---|---|---|---|---|---|",
    ]
    return lines + [
        f"| {row['width']:,} | {row['model']} | {_rate(row['rate'])} | {row['test_bce_mean']:.4f} ± "
        f"{row['test_bce_std']:.4f} | {_rate(row['test_chosen_rate'])}{'' if row['same_rate'] else ' (differs)'} | "
        f"{row['test_chosen_test_bce_mean']:.4f} ± {row['test_chosen_test_bce_std']:.4f} | "
        f"{row['test_bce_difference']:.4f} |"
        for row in rows
    ]


def describe_settings(settings: dict[str, Any]) -> str:
    """The training setup all points share, in one line."""
    return (
        f"data {settings['data.source']}, epochs {settings['train.epochs']}, batch {settings['train.batch_size']}, "
        f"hidden units {settings['train.hidden_units']}, {settings['train.optimizer']} at learning rate "
        f"{settings['train.learning_rate']}, validation {settings['train.validation']} "
        f"(split seed {settings.get('train.validation_seed')})"
    )


def _fraction(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, float) else str(value)


def _selection_text(settings: dict[str, Any], chosen_on: str) -> str:
    if chosen_on == "test":
        return (
            "**Rates are chosen on the test set**: this study has no held-out split (`train.validation: test`), "
            "so its chosen rates' test BCE is optimistic."
        )
    return (
        "Each regularizer's rate is chosen, per width, on the lowest mean validation BCE over seeds: the "
        "penalty-free BCE after the last epoch on a held-out "
        f"{_fraction(settings['train.validation'])} of the training set, split with seed "
        f"{settings.get('train.validation_seed')}, the same for every point."
        " The test set only reports the chosen rates."
    )


def _header_lines(points: list[dict], settings: dict[str, Any], chosen_on: str) -> list[str]:
    widths = sorted({point["width"] for point in points})
    rates = sorted({point["rate"] for point in points if point["model"] != "basic"})
    seeds = sorted({point["seed"] for point in points})
    experiments = len({point["experiment"] for point in points})
    return [
        "# Regularization study across feature counts",
        "",
        "Generated by `python -m study.summarize`; do not edit.",
        "",
        f"{len(points)} points in {experiments} experiments: widths (`data.num_words`) "
        f"{', '.join(f'{width:,}' for width in widths)}; the plain network, and L1 and L2 at rates "
        f"{', '.join(f'{rate:g}' for rate in rates)}; seeds {', '.join(map(str, seeds))}. "
        f"Settings: {describe_settings(settings)}.",
        "",
        _selection_text(settings, chosen_on),
        "",
        "Test BCE is the penalty-free binary cross-entropy on the test set after the last epoch; sparsity is "
        f"the fraction of hidden-layer weights with |w| < {settings.get('evaluate.zero_threshold')}, averaged "
        "over the hidden layers; words kept are the words whose first-layer row norm is at least "
        f"{settings.get('evaluate.kept_norm', '–')}. ± is the sample standard deviation over seeds.",
        "",
        f"Beyond noise: the per-seed paired difference's mean exceeds {NOISE_STANDARD_ERRORS:g} standard "
        "errors (sample standard deviation / √seeds) and every seed's difference has its sign; with fewer "
        "than 2 seeds nothing is beyond noise.",
    ]


def summary_markdown(points: list[dict], summary: list[dict], chosen: list[dict], settings: dict[str, Any]) -> str:
    """The settings, one table and verdict per width, the two choices compared, and the charts linked."""
    lines = _header_lines(points, settings, chosen[0]["chosen_on"])
    for width in sorted({row["width"] for row in summary}):
        lines += ["", f"## {width:,} words", "", *width_table(width, summary, chosen), ""]
        lines += ["### Verdict", "", *verdict_lines(width, chosen, points)]
    lines += ["", "## Rates chosen on validation against rates chosen on test", "", *selection_lines(chosen), ""]
    lines += [
        "![Test BCE, sparsity and words kept against rate, one column per width](study.png)",
        "",
        "![Test BCE at the chosen rate, and the chosen rate, against width](widths.png)",
    ]
    return "\n".join(lines) + "\n"


def readme_block(points: list[dict], chosen: list[dict], settings: dict[str, Any], results: str) -> str:
    """The README's study results: the verdict per width, the choices compared, the charts.

    Args:
        results: the summary's directory as the README links it (relative to the README).
    """
    widths = sorted({point["width"] for point in points})
    lines = [
        f"{len(points)} trainings; settings: {describe_settings(settings)}. Written by "
        f"`python -m study.summarize --readme README.md`; tables in [{results}/summary.md]({results}/summary.md).",
    ]
    for width in widths:
        lines += ["", f"**{width:,} words**", "", *verdict_lines(width, chosen, points)]
    lines += ["", selection_lines(chosen)[0], ""]
    lines += [
        f"![Test BCE at the chosen rate, and the chosen rate, against width]({results}/widths.png)",
        "",
        f"![Test BCE, sparsity and words kept against rate, one column per width]({results}/study.png)",
    ]
    return "\n".join(lines)


# Charts.


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


def _mark_chosen(axes: Axes, chosen: list[dict]) -> None:
    rows = [row for row in chosen if row["model"] != "basic"]
    axes.plot(
        [row["rate"] for row in rows],
        [row["test_bce_mean"] for row in rows],
        "*",
        color="black",
        markersize=11,
        label=f"chosen on {rows[0]['chosen_on']}" if rows else None,
    )


def _panels(summary: list[dict]) -> list[tuple[str, str]]:
    panels = [("test_bce", "test BCE (lower is better)"), ("zero_fraction", SPARSITY_LABEL)]
    if any(row["words_kept_mean"] is not None for row in summary):
        panels.append(("words_kept", "words kept (row norm >= kept_norm)"))
    return panels


def figure_study(summary: list[dict], points: list[dict], chosen: list[dict], title: str) -> Figure:
    """One column per width: test BCE, sparsity and (when the experiments have it) words kept against rate, log x."""
    widths = sorted({row["width"] for row in summary})
    panels = _panels(summary)
    figure = Figure(figsize=(4.8 * len(widths), 3.8 * len(panels)), layout="constrained")
    grid = figure.subplots(len(panels), len(widths), squeeze=False)
    for column, width in enumerate(widths):
        rows = [row for row in summary if row["width"] == width]
        width_points = [point for point in points if point["width"] == width]
        for line, (metric, label) in enumerate(panels):
            axes = grid[line][column]
            _draw(axes, rows, width_points, metric)
            if metric == "test_bce":
                _mark_chosen(axes, [row for row in chosen if row["width"] == width])
            if metric == "words_kept":
                label = f"{label}, of {width - FIRST_WORD_INDEX:,}"
            axes.set(xscale="log", xlabel="regularization rate (log scale)", ylabel=label)
            axes.set_title(f"{width:,} words")
            axes.grid(alpha=0.3)
    grid[0][0].legend(fontsize="small")
    figure.suptitle(title)
    return figure


def figure_widths(chosen: list[dict], title: str) -> Figure:
    """Test BCE at each model's chosen rate against width (mean ± std), and the rates both choices pick."""
    figure = Figure(figsize=(12, 5), layout="constrained")
    scores, rates = figure.subplots(1, 2)
    for index, model in enumerate(dict.fromkeys(row["model"] for row in chosen)):
        rows = sorted((row for row in chosen if row["model"] == model), key=lambda row: row["width"])
        widths = [row["width"] for row in rows]
        colour = f"C{index}"
        scores.errorbar(
            widths,
            [row["test_bce_mean"] for row in rows],
            yerr=[row["test_bce_std"] for row in rows],
            fmt="o-",
            color=colour,
            capsize=4,
            label="basic (no regularizer)"
            if model == "basic"
            else f"{model} at its {rows[0]['chosen_on']}-chosen rate",
        )
        if model != "basic":
            rates.plot(
                widths,
                [row["rate"] for row in rows],
                "o-",
                color=colour,
                label=f"{model}, chosen on {rows[0]['chosen_on']}",
            )
            rates.plot(
                widths,
                [row["test_chosen_rate"] for row in rows],
                "x",
                color=colour,
                markersize=10,
                label=f"{model}, best on test",
            )
    scores.set(xscale="log", xlabel="words (data.num_words, log scale)", ylabel="test BCE, mean ± std over seeds")
    scores.set_title("Test BCE at the chosen rate against width")
    rates.set(xscale="log", yscale="log", xlabel="words (data.num_words, log scale)", ylabel="rate (log scale)")
    rates.set_title("Chosen rate against width")
    for axes in (scores, rates):
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle(title)
    return figure


def png_bytes(figure: Figure) -> bytes:
    """The figure drawn as PNG, so a drawing failure leaves no file half-written."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _write_bytes(path: Path, content: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(content)


def main() -> None:
    parser = argparse.ArgumentParser(description="Chart and tabulate the regularization study's experiments.")
    parser.add_argument("--out", type=Path, default=Path("study/results"), help="output directory (%(default)s)")
    parser.add_argument(
        "--readme", type=Path, help=f"also write the verdict between the {README_BLOCK} markers of this README"
    )
    args = parser.parse_args()

    show = json.loads(call_dvc("exp", "show", "--json"))
    points, unfinished = experiment_points(committed_only(show, set(call_dvc("exp", "list", "--name-only").split())))
    if unfinished:
        log.warning("left out %d study experiments without metrics: %s", len(unfinished), ", ".join(unfinished))
    if not points:
        raise StudyError("no study experiments on this commit: run `python -m study.run` first")
    check_distinct(points)
    settings = common_settings(points)
    summary = aggregate(points)
    for gap in grid_gaps(summary):
        log.warning("incomplete grid: %s; its means compare unequal sets of seeds", gap)
    chosen = choose_rates(summary, selection_metric(points, settings))
    title = f"Regularization study: epochs {settings['train.epochs']}, data {settings['data.source']}"
    # Everything is computed before the first write, so a failure leaves the old results whole.
    tables = {
        "points.csv": [{column: point[column] for column in POINT_COLUMNS} for point in points],
        "summary.csv": summary,
        "chosen.csv": chosen,
        "plot.csv": plot_rows(summary),
        "widths.csv": width_rows(chosen),
    }
    charts = {
        "study.png": png_bytes(figure_study(summary, points, chosen, title)),
        "widths.png": png_bytes(figure_widths(chosen, title)),
    }
    markdown = summary_markdown(points, summary, chosen, settings)
    readme = None
    if args.readme:
        link = os.path.relpath(args.out, args.readme.parent)
        readme = replace_block(
            args.readme.read_text(encoding="utf-8"), README_BLOCK, readme_block(points, chosen, settings, link)
        )
    for name, rows in tables.items():
        write_csv(args.out / name, rows)
    for name, content in charts.items():
        _write_bytes(args.out / name, content)
    write_text(args.out / "summary.md", markdown)
    if readme is not None:
        write_text(args.readme, readme)
    log.info("summarized %d points in %s", len(points), args.out)


if __name__ == "__main__":
    cli.run(main)
