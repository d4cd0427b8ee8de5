"""study.summarize on made-up `dvc exp show --json` output: points, means over seeds, rates chosen on
validation against test, paired differences, the verdict per width and the files main() writes.

The real `python -m study.run` and `study.summarize`, on a tiny archive, are in tests/e2e/test_study.py.
"""

import csv
import json
import math
import sys
from collections.abc import Callable

import pytest

import study.summarize
from imdb_regularization.cli import StageError
from imdb_regularization.readme_blocks import markers
from study.grid import StudyError
from study.summarize import (
    PairedDifference,
    aggregate,
    check_distinct,
    choose_rates,
    committed_only,
    common_settings,
    experiment_points,
    figure_study,
    figure_widths,
    grid_gaps,
    paired_difference,
    plot_rows,
    selection_metric,
    summary_markdown,
    verdict_lines,
    width_rows,
)

RATES = (0.001, 0.01)
SEEDS = (1, 2, 3)


def _metrics(
    test_bce: float, val_bce: float | None = None, zero_fractions: tuple[float, ...] = (0.5, 0.7), **extra
) -> dict:
    """One model's metrics file as `dvc exp show --json` holds it."""
    weights = {f"hidden_{index}": {"zero_fraction": value} for index, value in enumerate(zero_fractions, 1)}
    data = {"test_bce": test_bce, "test_accuracy": 0.7, "test_auc": 0.8, "weights": weights, **extra}
    if val_bce is not None:
        data |= {"last_val_bce": val_bce, "best_val_bce": val_bce}
    return {"data": data}


def _experiment(
    name: str,
    models: dict[str, tuple[str, float, dict | None]],
    *,
    width: int = 100,
    seed: int = 1,
    validation: float | str = 0.2,
    epochs: int = 20,
) -> dict:
    """One experiment as `dvc exp show --json` lists it: `models` maps a key to (regularizer, rate, metrics or None)."""
    params = {
        "data": {"source": "aclimdb", "num_words": width},
        "train": {
            "epochs": epochs,
            "batch_size": 500,
            "hidden_units": [128, 128],
            "optimizer": "adam",
            "learning_rate": 0.001,
            "validation": validation,
            "validation_seed": 7,
            "seed": seed,
        },
        "models": {key: {"regularizer": regularizer, "rate": rate} for key, (regularizer, rate, _) in models.items()},
        "evaluate": {"zero_threshold": 0.001, "kept_norm": 0.1},
    }
    metrics: dict[str, dict] = {
        f"metrics/{key}.json": scores or {"error": {"type": "FileNotFoundError", "msg": "no such file"}}
        for key, (_, _, scores) in models.items()
    }
    data = {"params": {"params.yaml": {"data": params}}, "metrics": metrics}
    return {"name": name, "revs": [{"rev": "0" * 40, "data": data}]}


def _show(*experiments: dict) -> list[dict]:
    return [
        {"rev": "workspace", "experiments": None},
        {"rev": "1" * 40, "name": "main", "experiments": list(experiments)},
    ]


Scores = Callable[[int, str, float, int], tuple[float, float]]


def _study(scores: Scores, widths: tuple[int, ...] = (100,), seeds: tuple[int, ...] = SEEDS) -> list[dict]:
    """A study in the new format: one experiment per (width, seed), every model in it.

    `scores(width, regularizer, rate, seed)` gives each point's (test BCE, validation BCE).
    """
    experiments = []
    for width in widths:
        for seed in seeds:
            models = {"basic": ("none", 0.0, _metrics(*scores(width, "none", 0.0, seed), words_kept=width - 4))}
            for regularizer in ("l1", "l2"):
                for rate in RATES:
                    key = f"{regularizer}_{rate:g}".replace(".", "p")
                    models[key] = (regularizer, rate, _metrics(*scores(width, regularizer, rate, seed), words_kept=10))
            experiments.append(_experiment(f"study-w{width}-s{seed}", models, width=width, seed=seed))
    return _show(*experiments)


def _noise(seed: int) -> float:
    """Seed-to-seed noise every model of a seed shares, so it cancels in paired differences."""
    return {1: -0.01, 2: 0.0, 3: 0.01}[seed]


def _l1_wins(width: int, regularizer: str, rate: float, seed: int) -> tuple[float, float]:
    """L1 at 0.001 lowest on validation and on test; the plain network far behind."""
    test = {"none": 0.65, "l1": 0.55 if rate == 0.001 else 0.6, "l2": 0.58}[regularizer] + _noise(seed)
    return test, test - 0.05


def _chosen(chosen: list[dict], width: int, model: str) -> dict:
    return next(row for row in chosen if (row["width"], row["model"]) == (width, model))


def _analysed(show: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    points, _ = experiment_points(show)
    summary = aggregate(points)
    return points, summary, choose_rates(summary, selection_metric(points, common_settings(points)))


# Points.


def test_points_come_from_every_evaluated_model_of_an_experiment():
    show = _show(
        _experiment(
            "study-w10000-s42",
            {
                "basic": ("none", 0.0, _metrics(0.6, 0.58, zero_fractions=(0.1, 0.3))),
                "l1_0p001": ("l1", 0.001, _metrics(0.55, 0.52, words_kept=40)),
                # Left in params.yaml from the commit, never evaluated in this experiment: not a point.
                "l2": ("l2", 0.001, None),
            },
            width=10000,
            seed=42,
        ),
        _experiment("study-w10000-s43", {"basic": ("none", 0.0, None)}, width=10000, seed=43),
        _experiment("tried-by-hand", {"l1": ("l1", 0.3, _metrics(0.4, 0.4))}),
    )
    points, unfinished = experiment_points(show)
    assert unfinished == ["study-w10000-s43"]
    assert [
        (point["experiment"], point["width"], point["model"], point["rate"], point["seed"]) for point in points
    ] == [
        ("study-w10000-s42", 10000, "basic", 0.0, 42),
        ("study-w10000-s42", 10000, "l1", 0.001, 42),
    ]
    basic, l1 = points
    assert (basic["test_bce"], basic["val_bce"], basic["zero_fraction"], basic["words_kept"]) == (0.6, 0.58, 0.2, None)
    assert (l1["val_bce"], l1["words_kept"], l1["key"]) == (0.52, 40, "l1_0p001")
    assert "data.num_words" not in l1["settings"] and "train.seed" not in l1["settings"]
    assert l1["settings"]["train.validation"] == 0.2


def test_old_single_model_experiments_are_points_with_their_width_and_no_validation_bce():
    show = _show(
        _experiment("study-l1-0.001-s42", {"l1": ("l1", 0.001, _metrics(0.56, 0.56))}, seed=42, validation="test"),
        _experiment("study-basic-s42", {"basic": ("none", 0.0, _metrics(0.64, 0.64))}, seed=42, validation="test"),
    )
    points, unfinished = experiment_points(show)
    assert unfinished == []
    assert [(point["experiment"], point["width"], point["model"], point["rate"]) for point in points] == [
        ("study-basic-s42", 100, "basic", 0.0),
        ("study-l1-0.001-s42", 100, "l1", 0.001),
    ]
    # With `train.validation: test` the "validation" BCE is the test set's: no held-out score.
    assert [point["val_bce"] for point in points] == [None, None]


def test_two_points_of_the_same_width_model_rate_and_seed_are_refused_naming_both():
    points, _ = experiment_points(
        _show(
            _experiment("study-l1-0.001-s1", {"l1": ("l1", 0.001, _metrics(0.5, 0.5))}),
            _experiment("study-w100-s1", {"l1_0p001": ("l1", 0.001, _metrics(0.5, 0.5))}),
        )
    )
    with pytest.raises(StudyError, match=r"study-l1-0.001-s1 \(l1\) and study-w100-s1 \(l1_0p001\) both hold l1"):
        check_distinct(points)


def test_points_run_with_other_settings_are_refused_naming_the_key_but_widths_may_differ():
    points, _ = experiment_points(
        _show(
            _experiment("study-w100-s1", {"basic": ("none", 0.0, _metrics(0.5, 0.5))}),
            _experiment("study-w1000-s1", {"basic": ("none", 0.0, _metrics(0.5, 0.5))}, width=1000),
            _experiment("study-w100-s2", {"basic": ("none", 0.0, _metrics(0.5, 0.5))}, seed=2, epochs=5),
        )
    )
    assert common_settings([point for point in points if point["seed"] == 1])["train.epochs"] == 20
    with pytest.raises(StudyError, match=r"study-w100-s1 and study-w100-s2 differ in train.epochs \(20 vs 5\)"):
        common_settings(points)


def test_a_study_with_and_without_a_held_out_split_is_not_mixed():
    points, _ = experiment_points(
        _show(
            _experiment("study-w100-s1", {"l1_0p001": ("l1", 0.001, _metrics(0.5, 0.45))}),
            _experiment("study-l1-0.001-s2", {"l1": ("l1", 0.001, _metrics(0.5, 0.5))}, seed=2, validation="test"),
        )
    )
    with pytest.raises(StudyError, match=r"differ in train.validation \(0.2 vs 'test'\)"):
        common_settings(points)


def test_a_point_with_a_split_but_no_validation_bce_is_refused_by_name():
    points, _ = experiment_points(_show(_experiment("study-w100-s1", {"l1_0p001": ("l1", 0.001, _metrics(0.5))})))
    with pytest.raises(StudyError, match=r"study-w100-s1 \(l1_0p001\) has no last_val_bce"):
        selection_metric(points, common_settings(points))


# Means and choices.


def test_aggregate_takes_mean_and_sample_deviation_over_seeds_per_width_model_and_rate():
    points, summary, _ = _analysed(_study(_l1_wins, widths=(100, 1000)))
    assert len(points) == 2 * 3 * 5
    assert [(row["width"], row["model"], row["rate"], row["seeds"]) for row in summary[:5]] == [
        (100, "basic", 0.0, 3),
        (100, "l1", 0.001, 3),
        (100, "l1", 0.01, 3),
        (100, "l2", 0.001, 3),
        (100, "l2", 0.01, 3),
    ]
    l1 = summary[1]
    assert (l1["test_bce_mean"], l1["test_bce_std"]) == (pytest.approx(0.55), pytest.approx(0.01))
    assert l1["val_bce_mean"] == pytest.approx(0.5)
    assert summary[0]["words_kept_mean"] == 96 and summary[5]["words_kept_mean"] == 996


def test_the_rate_chosen_on_validation_is_reported_beside_the_one_a_test_choice_would_make():
    def validation_disagrees(width: int, regularizer: str, rate: float, seed: int) -> tuple[float, float]:
        # L1 at 0.001 looks best on validation, but 0.01 is better on test.
        if regularizer == "l1":
            return (0.57, 0.50) if rate == 0.001 else (0.55, 0.52)
        return 0.6, 0.6

    points, summary, chosen = _analysed(_study(validation_disagrees))
    l1 = _chosen(chosen, 100, "l1")
    assert (l1["chosen_on"], l1["rate"], l1["test_bce_mean"]) == ("validation", 0.001, pytest.approx(0.57))
    assert (l1["test_chosen_rate"], l1["test_chosen_test_bce_mean"]) == (0.01, pytest.approx(0.55))
    assert (l1["same_rate"], l1["test_bce_difference"]) == (False, pytest.approx(0.02))
    basic = _chosen(chosen, 100, "basic")
    assert (basic["rate"], basic["test_chosen_rate"], basic["same_rate"]) == (None, None, True)
    # On equal validation scores (L2 here), the lower rate is chosen.
    assert _chosen(chosen, 100, "l2")["rate"] == 0.001
    markdown = summary_markdown(points, summary, chosen, common_settings(points))
    assert "A choice on the test set would pick another rate in 1 of 2 cases." in markdown
    assert "| 100 | l1 | 0.001 | 0.5700 ± 0.0000 | 0.01 (differs) | 0.5500 ± 0.0000 | 0.0200 |" in markdown
    assert "| l1 | 0.001 | validation | 3 |" in markdown and "| l1 | 0.01 | test | 3 |" in markdown


def test_a_rate_with_a_diverged_seed_is_never_chosen():
    def diverged_at_the_lowest_rate(width: int, regularizer: str, rate: float, seed: int) -> tuple[float, float]:
        if regularizer == "l1" and rate == 0.001 and seed == 2:
            return math.nan, math.nan
        return (0.55, 0.5) if rate == 0.001 else (0.6, 0.6)

    _, _, chosen = _analysed(_study(diverged_at_the_lowest_rate))
    assert _chosen(chosen, 100, "l1")["rate"] == 0.01
    assert _chosen(chosen, 100, "l2")["rate"] == 0.001


def test_grid_gaps_name_missing_rates_and_seeds():
    show = _study(_l1_wins, widths=(100, 1000))
    for entry in show[1]["experiments"]:
        if entry["name"] == "study-w1000-s3":
            models = entry["revs"][0]["data"]["params"]["params.yaml"]["data"]["models"]
            del models["l2_0p01"]
    show[1]["experiments"] = [entry for entry in show[1]["experiments"] if entry["name"] != "study-w100-s2"]
    _, summary, _ = _analysed(show)
    assert grid_gaps(summary) == [
        "the plain network, 100 words, has 2 of 3 seeds",
        "L1 at rate 0.001, 100 words, has 2 of 3 seeds",
        "L1 at rate 0.01, 100 words, has 2 of 3 seeds",
        "L2 at rate 0.001, 100 words, has 2 of 3 seeds",
        "L2 at rate 0.01, 100 words, has 2 of 3 seeds",
        "L2 at rate 0.01, 1,000 words, has 2 of 3 seeds",
    ]
    assert grid_gaps(aggregate(experiment_points(_study(_l1_wins))[0])) == []


def test_a_study_without_a_held_out_split_chooses_on_test_and_says_so():
    show = _show(
        *[
            _experiment(f"study-{key}-s{seed}", {key: (regularizer, rate, _metrics(bce))}, seed=seed, validation="test")
            for seed in SEEDS
            for key, regularizer, rate, bce in (
                ("basic", "none", 0.0, 0.64),
                ("l1", "l1", 0.001, 0.55),
                ("l2", "l2", 0.001, 0.57),
            )
        ]
    )
    points, summary, chosen = _analysed(show)
    assert {row["chosen_on"] for row in chosen} == {"test"}
    assert all(row["same_rate"] for row in chosen)
    markdown = summary_markdown(points, summary, chosen, common_settings(points))
    assert "**Rates are chosen on the test set**" in markdown
    assert "no held-out validation split" in markdown


# Paired differences and the verdict.


def test_paired_differences_are_beyond_noise_only_when_large_against_their_spread_and_every_seed_agrees():
    clear = PairedDifference((0.01, 0.012, 0.011))
    assert (clear.seeds, clear.agreeing, clear.beyond_noise) == (3, 3, True)
    assert clear.mean == pytest.approx(0.011) and clear.std == pytest.approx(0.001)
    # Same sign on every seed but a spread as large as the mean: within 2 standard errors.
    assert not PairedDifference((0.001, 0.02, 0.0005)).beyond_noise
    # A large mean with one seed of the other sign.
    assert not PairedDifference((0.05, 0.06, -0.001)).beyond_noise
    assert not PairedDifference((0.05,)).beyond_noise
    assert not PairedDifference(()).beyond_noise


def test_paired_difference_matches_the_two_rows_seed_by_seed():
    points, _, chosen = _analysed(_study(_l1_wins))
    paired = paired_difference(points, _chosen(chosen, 100, "l2"), _chosen(chosen, 100, "l1"))
    assert paired.differences == pytest.approx((0.03, 0.03, 0.03))
    assert paired.beyond_noise
    plain = paired_difference(points, _chosen(chosen, 100, "basic"), _chosen(chosen, 100, "l1"))
    assert plain.mean == pytest.approx(0.1)


def test_the_verdict_names_the_winner_per_width_and_calls_a_tie_a_tie():
    def l1_at_100_tie_at_1000(width: int, regularizer: str, rate: float, seed: int) -> tuple[float, float]:
        if width == 100:
            return _l1_wins(width, regularizer, rate, seed)
        # L2 is lower in the mean, but L1 is ahead on seed 3.
        test = {"none": 0.7, "l1": 0.6 + (-0.01 if seed == 3 else 0.02), "l2": 0.6}[regularizer] + _noise(seed)
        return test, test

    points, summary, chosen = _analysed(_study(l1_at_100_tie_at_1000, widths=(100, 1000)))
    assert verdict_lines(100, chosen, points) == [
        "- **L1 wins**: L1 at its validation-chosen rate 0.001, test BCE 0.5500 ± 0.0100, against L2 at 0.001, "
        "0.5800 ± 0.0100 (0.0300 lower in the mean).",
        "- Paired per seed, L1 − L2 test BCE = -0.0300 ± 0.0000 over 3 seeds, L1 ahead for 3 of 3: beyond noise.",
        "- The plain network (test BCE 0.6500 ± 0.0100) trails L1: plain − L1 = +0.1000 ± 0.0000 over 3 seeds, "
        "L1 ahead for 3 of 3: beyond noise.",
    ]
    tie = verdict_lines(1000, chosen, points)
    assert tie[0].startswith("- **No clear winner**: L2 at its validation-chosen rate 0.001")
    assert tie[1].endswith("L2 ahead for 2 of 3: within noise.")
    markdown = summary_markdown(points, summary, chosen, common_settings(points))
    width_100, width_1000 = markdown.split("## 100 words")[1].split("## 1,000 words")
    assert "**L1 wins**" in width_100 and "**No clear winner**" in width_1000
    assert "Generated by `python -m study.summarize`; do not edit." in markdown
    assert "widths (`data.num_words`) 100, 1,000" in markdown
    assert "held-out 20% of the training set, split with seed 7" in markdown
    assert "](study.png)" in markdown and "](widths.png)" in markdown


def test_a_width_without_l1_or_l2_has_no_verdict():
    points, _, chosen = _analysed(
        _show(_experiment("study-w100-s1", {"basic": ("none", 0.0, _metrics(0.6, 0.6))}, width=100))
    )
    assert verdict_lines(100, chosen, points) == ["- L1 or L2 has no finished points at this width: no verdict."]


# Plot data and charts.


def test_plot_data_repeats_the_basic_model_at_every_rate_of_its_width():
    points, summary, chosen = _analysed(_study(_l1_wins, widths=(100, 1000)))
    rows = plot_rows(summary)
    assert [(row["width"], row["model"], row["log10_rate"]) for row in rows[:6]] == [
        (100, "basic", -3.0),
        (100, "basic", -2.0),
        (100, "l1", -3.0),
        (100, "l1", -2.0),
        (100, "l2", -3.0),
        (100, "l2", -2.0),
    ]
    assert rows[0]["test_bce"] == rows[1]["test_bce"] == pytest.approx(0.65)
    widths = width_rows(chosen)
    assert [(row["model"], row["log10_width"], row["rate"]) for row in widths if row["width"] == 1000] == [
        ("basic", 3.0, None),
        ("l1", 3.0, 0.001),
        ("l2", 3.0, 0.001),
    ]


def test_charts_have_a_column_per_width_on_log_axes():
    points, summary, chosen = _analysed(_study(_l1_wins, widths=(100, 1000)))
    figure = figure_study(summary, points, chosen, "title")
    # Test BCE, sparsity and words kept, for each of the two widths.
    assert len(figure.axes) == 6
    assert {axes.get_xscale() for axes in figure.axes} == {"log"}
    assert [axes.get_title() for axes in figure.axes[:2]] == ["100 words", "1,000 words"]
    assert figure.axes[0].get_legend_handles_labels()[1] == [
        "basic (no regularizer), mean ± std",
        "l1, mean ± std",
        "l1, one seed",
        "l2, mean ± std",
        "l2, one seed",
        "chosen on validation",
    ]
    assert figure.axes[5].get_ylabel().endswith("of 996")
    widths = figure_widths(chosen, "title")
    assert [axes.get_xscale() for axes in widths.axes] == ["log", "log"]
    handles, labels = widths.axes[0].get_legend_handles_labels()
    assert labels == ["basic (no regularizer)", "l1 at its validation-chosen rate", "l2 at its validation-chosen rate"]
    assert list(handles[1].lines[0].get_xdata()) == [100, 1000]


def test_main_writes_every_output(monkeypatch, tmp_path):
    show = json.dumps(_study(_l1_wins, widths=(100, 1000)))
    monkeypatch.setattr(study.summarize, "call_dvc", _dvc_answering(show))
    monkeypatch.setattr(sys, "argv", ["study.summarize", "--out", str(tmp_path / "results")])
    study.summarize.main()
    results = tmp_path / "results"
    headers = {}
    for name in ("points.csv", "summary.csv", "chosen.csv", "plot.csv", "widths.csv"):
        with (results / name).open(encoding="utf-8") as file:
            headers[name] = next(csv.reader(file))
    assert headers["points.csv"] == [
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
    ]
    assert headers["summary.csv"][:6] == ["width", "model", "rate", "seeds", "test_bce_mean", "test_bce_std"]
    assert {"rate", "test_bce_mean", "test_chosen_rate", "test_bce_difference"} <= set(headers["chosen.csv"])
    assert {"width", "model", "log10_rate", "test_bce", "zero_fraction"} <= set(headers["plot.csv"])
    assert {"model", "log10_width", "test_bce"} <= set(headers["widths.csv"])
    for chart in ("study.png", "widths.png"):
        assert (results / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "**L1 wins**" in (results / "summary.md").read_text(encoding="utf-8")
    # Nothing but the outputs: no temporary left beside them.
    assert sorted(path.name for path in results.iterdir()) == sorted(
        [*headers, "study.png", "widths.png", "summary.md"]
    )


def test_main_without_study_experiments_says_to_run_the_study(monkeypatch, tmp_path):
    monkeypatch.setattr(study.summarize, "call_dvc", _dvc_answering(json.dumps(_show())))
    monkeypatch.setattr(sys, "argv", ["study.summarize", "--out", str(tmp_path)])
    with pytest.raises(StudyError, match="run `python -m study.run` first"):
        study.summarize.main()


def test_main_with_readme_rewrites_only_the_study_block_with_links_relative_to_the_readme(monkeypatch, tmp_path):
    show = json.dumps(_study(_l1_wins, widths=(100, 1000)))
    monkeypatch.setattr(study.summarize, "call_dvc", _dvc_answering(show))
    readme = tmp_path / "README.md"
    start, end = markers("study")
    readme.write_text(f"# Project\n\n{start}\nold verdict\n{end}\n\nthe rest\n", encoding="utf-8")
    out = tmp_path / "study" / "results"
    monkeypatch.setattr(sys, "argv", ["study.summarize", "--out", str(out), "--readme", str(readme)])
    study.summarize.main()
    text = readme.read_text(encoding="utf-8")
    assert text.startswith(f"# Project\n\n{start}\n") and text.endswith(f"\n{end}\n\nthe rest\n")
    assert "old verdict" not in text
    assert "**100 words**" in text and "**1,000 words**" in text and "**L1 wins**" in text
    assert "](study/results/widths.png)" in text and "](study/results/summary.md)" in text


def test_main_with_a_readme_without_the_markers_writes_nothing(monkeypatch, tmp_path):
    show = json.dumps(_study(_l1_wins, widths=(100,)))
    monkeypatch.setattr(study.summarize, "call_dvc", _dvc_answering(show))
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n", encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["study.summarize", "--out", str(tmp_path / "out"), "--readme", str(readme)])
    with pytest.raises(StageError, match="study:start"):
        study.summarize.main()
    assert not (tmp_path / "out").exists()


def _dvc_answering(show: str) -> Callable[..., str]:
    """A stand-in for `call_dvc`: `show` for `dvc exp show`, and for `dvc exp list` every experiment in it."""
    names = [experiment["name"] for baseline in json.loads(show) for experiment in baseline.get("experiments") or []]
    return lambda *arguments: show if "show" in arguments else "\n".join(names)


def test_experiments_without_a_git_ref_are_left_out():
    show = _study(_l1_wins, widths=(100,))
    names = [experiment["name"] for experiment in show[1]["experiments"]]
    kept = committed_only(show, set(names[1:]))
    assert [experiment["name"] for experiment in kept[1]["experiments"]] == names[1:]
    points, _ = experiment_points(kept)
    assert {point["experiment"] for point in points} == set(names[1:])
