"""The regularization study: its grid and queue arguments, and the aggregation over seeds on made-up metrics.

The real `python -m study.run` and `study.summarize`, on a tiny archive, are in tests/e2e/test_study.py.
"""

import pytest

from imdb_regularization.params import RegularizerSpec
from study.run import (
    Point,
    StudyError,
    absolute_data_url,
    grid_points,
    model_keys,
    parse_rates,
    queue_arguments,
    run_points,
    select_shard,
)
from study.summarize import (
    aggregate,
    common_settings,
    experiment_points,
    figure_study,
    paired_differences,
    plot_rows,
    summary_markdown,
    verdict_lines,
)

RATES = (0.001, 0.1)


# The grid and the experiments' arguments.


def test_parse_rates_sorts_and_rejects_what_is_not_a_rate():
    assert parse_rates("1e-3,1e-5,0.01") == (1e-5, 1e-3, 0.01)
    for text in ("1e-3,x", "0", "-1e-3", "nan", "1e-3,0.001"):
        with pytest.raises(StudyError, match="--rates"):
            parse_rates(text)


def test_rates_that_would_share_an_experiment_name_are_refused_naming_both():
    with pytest.raises(StudyError) as caught:
        parse_rates("0.0010000001,1e-4,0.001")
    assert str(caught.value) == (
        "--rates 0.001 and 0.0010000001 would both be named 0.001 in experiment names; "
        "pick rates that differ in their first 6 significant digits"
    )
    assert parse_rates("0.001,0.00100001") == (0.001, 0.00100001)


def _stand_in_for_dvc(monkeypatch) -> list[tuple[str, ...]]:
    """Every DVC command `run_points` gives, recorded; each name queued becomes one experiment, as a run leaves."""
    import study.run

    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(study.run, "call_dvc", lambda *arguments: calls.append(arguments))
    monkeypatch.setattr(study.run, "run_queue", lambda jobs, names: None)
    monkeypatch.setattr(
        study.run,
        "experiment_names",
        lambda: {call[call.index("--name") + 1] for call in calls if "--name" in call},
    )
    return calls


def test_points_that_share_a_name_are_a_failure_even_when_every_name_finished(monkeypatch):
    _stand_in_for_dvc(monkeypatch)
    points = [Point("l1", 0.001, 42), Point("l1", 0.0010000001, 42), Point("l2", 0.001, 42)]
    queue = [["exp", "run", "--queue", "--name", point.name] for point in points]
    with pytest.raises(StudyError) as caught:
        run_points(points, queue, jobs=1)
    assert str(caught.value) == "3 points left 2 experiments: points share the names study-l1-0.001-s42"


def test_grid_has_every_regularizer_at_every_rate_and_the_basic_model_once_per_seed():
    points = grid_points(RATES, seeds=2, first_seed=42)
    assert len(points) == 2 * (1 + 2 * len(RATES))
    assert {point.seed for point in points[:5]} == {42}
    assert [point for point in points if point.regularizer == "none"] == [
        Point("none", 0.0, 42),
        Point("none", 0.0, 43),
    ]
    assert len({point.name for point in points}) == len(points)
    with pytest.raises(StudyError, match="--seeds must be at least 1"):
        grid_points(RATES, seeds=0, first_seed=42)


def test_a_grid_too_large_to_run_is_refused_before_anything_is_queued():
    with pytest.raises(StudyError) as caught:
        grid_points(RATES, seeds=1_000_000, first_seed=42)
    assert str(caught.value) == (
        "--rates and --seeds ask for 5,000,000 experiments with seeds up to 1,000,041: "
        "at most 2,000 experiments and seeds up to 4,294,967,295"
    )
    with pytest.raises(StudyError, match="seeds up to 4,294,967,296"):
        grid_points(RATES, seeds=2, first_seed=2**32 - 1)


def test_experiment_names_say_model_rate_and_seed():
    assert Point("l1", 1e-4, 42).name == "study-l1-0.0001-s42"
    assert Point("l2", 1e-5, 7).name == "study-l2-1e-05-s7"
    assert Point("none", 0.0, 42).name == "study-basic-s42"


def test_shards_split_the_grid_between_machines_without_overlap():
    points = grid_points(RATES, seeds=3, first_seed=0)
    shards = [select_shard(points, f"{index}/3") for index in (1, 2, 3)]
    assert sorted(map(len, shards)) == [5, 5, 5]
    assert {point for shard in shards for point in shard} == set(points)
    for shard in ("0/2", "3/2", "1", "a/b"):
        with pytest.raises(StudyError, match="--shard"):
            select_shard(points, shard)


def test_model_keys_are_the_first_model_of_each_regularizer(default_params):
    assert model_keys(default_params.models) == {"none": "basic", "l1": "l1", "l2": "l2"}
    with pytest.raises(StudyError, match="regularizer l2"):
        model_keys({"basic": RegularizerSpec("none", 0.0), "l1": RegularizerSpec("l1", 0.001)})


def test_a_relative_data_url_becomes_absolute_and_quoted_and_others_stay(tmp_path):
    assert absolute_data_url(["data.url=a.tar.gz", "train.epochs=1"], None, tmp_path) == [
        "train.epochs=1",
        f"data.url='{tmp_path / 'a.tar.gz'}'",
    ]
    assert absolute_data_url([], "data/a,b.tar.gz", tmp_path) == [f"data.url='{tmp_path / 'data/a,b.tar.gz'}'"]
    assert absolute_data_url(["data.url=file:it's.tar.gz"], None, tmp_path) == [f"data.url='{tmp_path}/it\\'s.tar.gz'"]
    for url in ("/srv/a.tar.gz", "https://example.org/a.tar.gz", "file:///srv/a.tar.gz"):
        assert absolute_data_url([f"data.url={url}"], "relative.tar.gz", tmp_path) == [f"data.url={url}"]
    assert absolute_data_url(["train.seed=1"], None, tmp_path) == ["train.seed=1"]


def _settings(arguments: list[str]) -> list[str]:
    return [arguments[index + 1] for index, argument in enumerate(arguments) if argument == "--set-param"]


def test_each_experiment_trains_only_its_own_model_at_its_rate_and_seed():
    keys, models = {"none": "basic", "l1": "l1", "l2": "l2"}, ["basic", "l1", "l2", "l1_l2"]
    arguments = queue_arguments(Point("l1", 1e-5, 43), keys=keys, models=models, overrides=["train.epochs=1"])
    assert arguments[:6] == ["exp", "run", "--queue", "evaluate@l1", "--name", "study-l1-1e-05-s43"]
    assert _settings(arguments) == [
        "train.epochs=1",
        "~models.basic",
        "~models.l2",
        "~models.l1_l2",
        "train.seed=43",
        "models.l1.rate=1e-05",
    ]
    basic = queue_arguments(Point("none", 0.0, 42), keys=keys, models=models, overrides=[])
    assert basic[3] == "evaluate@basic"
    assert not any(setting.startswith("models.basic.rate") for setting in _settings(basic))


# The summary, on metrics the tests make up.


def _experiment(
    name: str,
    regularizer: str,
    rate: float,
    seed: int,
    test_bce: float | None,
    zero_fractions: tuple[float, ...] = (0.5, 0.7),
    epochs: int = 20,
    words_kept: int | None = None,
) -> dict:
    """One experiment as `dvc exp show --json` lists it; `test_bce=None` is one that failed."""
    params = {
        "data": {"source": "aclimdb", "num_words": 100},
        "train": {
            "epochs": epochs,
            "batch_size": 500,
            "hidden_units": [128, 128],
            "optimizer": "adam",
            "learning_rate": 0.001,
            "validation": "test",
            "seed": seed,
        },
        "models": {regularizer: {"regularizer": regularizer, "rate": rate}},
        "evaluate": {"zero_threshold": 0.001},
    }
    weights = {f"hidden_{index}": {"zero_fraction": value} for index, value in enumerate(zero_fractions, 1)}
    metrics = (
        {}
        if test_bce is None
        else {
            f"metrics/{regularizer}.json": {
                "data": {
                    "test_bce": test_bce,
                    "test_accuracy": 0.7,
                    "test_auc": 0.8,
                    "weights": weights,
                    # Experiments evaluated before words_kept existed lack it.
                    **({} if words_kept is None else {"words_kept": words_kept}),
                }
            }
        }
    )
    return {
        "name": name,
        "revs": [{"rev": "0" * 40, "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics}}],
    }


def _show(*experiments: dict) -> list[dict]:
    return [
        {"rev": "workspace", "experiments": None},
        {"rev": "1" * 40, "name": "main", "experiments": list(experiments)},
    ]


def _seeds(name: str, regularizer: str, rate: float, scores: list[float]) -> list[dict]:
    """The experiments of one point with seeds 1, 2, ... and these test BCEs."""
    return [_experiment(f"{name}-s{seed}", regularizer, rate, seed, bce) for seed, bce in enumerate(scores, 1)]


STUDY = _show(
    *_seeds("study-l1-0.001", "l1", 0.001, [0.5, 0.52, 0.54]),
    *_seeds("study-l2-0.001", "l2", 0.001, [0.51, 0.53, 0.55]),
    *_seeds("study-basic", "none", 0.0, [0.6, 0.64, 0.62]),
    _experiment("study-l1-0.1-s1", "l1", 0.1, 1, 0.69, zero_fractions=(1.0, 1.0)),
    _experiment("study-l2-0.1-s1", "l2", 0.1, 1, None),
    _experiment("tried-by-hand", "l1", 0.3, 1, 0.4),
)


def test_points_come_from_the_study_experiments_that_finished():
    points, unfinished = experiment_points(STUDY)
    assert unfinished == ["study-l2-0.1-s1"]
    assert "tried-by-hand" not in {point["experiment"] for point in points}
    assert [(point["model"], point["rate"], point["seed"]) for point in points[:4]] == [
        ("basic", 0.0, 1),
        ("basic", 0.0, 2),
        ("basic", 0.0, 3),
        ("l1", 0.001, 1),
    ]
    assert points[3]["zero_fraction"] == 0.6
    assert points[3]["settings"]["train.epochs"] == 20 and "train.seed" not in points[3]["settings"]


def test_aggregate_takes_mean_and_sample_deviation_over_seeds_per_model_and_rate():
    summary = aggregate(experiment_points(STUDY)[0])
    assert [(row["model"], row["rate"], row["seeds"]) for row in summary] == [
        ("basic", 0.0, 3),
        ("l1", 0.001, 3),
        ("l1", 0.1, 1),
        ("l2", 0.001, 3),
    ]
    l1 = summary[1]
    assert (l1["test_bce_mean"], l1["test_bce_std"]) == (pytest.approx(0.52), pytest.approx(0.02))
    assert (summary[0]["test_bce_mean"], summary[0]["test_bce_std"]) == (pytest.approx(0.62), pytest.approx(0.02))
    assert summary[2]["test_bce_std"] == 0.0 and summary[2]["zero_fraction_mean"] == 1.0


def test_points_run_with_other_settings_are_refused_by_name():
    points, _ = experiment_points(
        _show(
            _experiment("study-l1-0.001-s1", "l1", 0.001, 1, 0.5),
            _experiment("study-l1-0.001-s2", "l1", 0.001, 2, 0.5, epochs=5),
        )
    )
    with pytest.raises(StudyError, match=r"study-l1-0.001-s1 and study-l1-0.001-s2 differ in train.epochs \(20 vs 5\)"):
        common_settings(points)


def test_verdict_names_the_best_rate_and_its_margin_seed_by_seed():
    points, _ = experiment_points(STUDY)
    summary = aggregate(points)
    lines = verdict_lines(summary, points)
    assert lines[0] == "- Lowest mean test BCE: **l1 at rate 0.001**, 0.5200 ± 0.0200 over 3 seeds."
    assert list(paired_differences(points, summary[1], summary[3])) == pytest.approx([0.01, 0.01, 0.01])
    assert lines[1] == (
        "- Best of l2: l2 at rate 0.001, 0.5300 ± 0.0200; 0.0100 higher in the mean (0.5 times the "
        "larger seed-to-seed standard deviation); seed by seed, higher by 0.0100 ± 0.0000, "
        "for 3 of 3 seeds."
    )
    assert lines[2].startswith("- Best of basic: basic (no regularizer), 0.6200 ± 0.0200; 0.1000 higher")
    assert lines[2].endswith("higher by 0.1000 ± 0.0200, for 3 of 3 seeds.")


def test_plot_data_repeats_the_basic_model_at_every_rate():
    rows = plot_rows(aggregate(experiment_points(STUDY)[0]))
    assert [(row["model"], row["log10_rate"]) for row in rows] == [
        ("basic", -3.0),
        ("basic", -1.0),
        ("l1", -3.0),
        ("l1", -1.0),
        ("l2", -3.0),
    ]
    assert rows[0]["test_bce"] == rows[1]["test_bce"] == pytest.approx(0.62)


def test_chart_and_table_show_every_model_on_a_log_rate_axis():
    points, _ = experiment_points(STUDY)
    summary = aggregate(points)
    figure = figure_study(summary, points, "title")
    assert [axes.get_xscale() for axes in figure.axes] == ["log", "log"]
    assert figure.axes[0].get_legend_handles_labels()[1] == [
        "basic (no regularizer), mean ± std",
        "l1, mean ± std",
        "l1, one seed",
        "l2, mean ± std",
        "l2, one seed",
    ]
    table = summary_markdown(summary, points, common_settings(points))
    assert "| basic | – | 3 | 0.6200 ± 0.0200 |" in table
    assert "| l1 | 0.1 | 1 | 0.6900 ± 0.0000 |" in table
    assert "rates 0.001, 0.1; seeds 1, 2, 3" in table


def test_words_kept_against_rate_skips_experiments_evaluated_before_the_metric():
    kept = {("none", 0.0): 96, ("l1", 0.001): 30, ("l1", 0.01): 5, ("l2", 0.001): 96}
    study = _show(
        *[
            _experiment(f"study-{reg}-{rate}-s{seed}", reg, rate, seed, 0.5, words_kept=words + seed)
            for (reg, rate), words in kept.items()
            for seed in (1, 2)
        ],
        # An old experiment of the same point, without the metric: its BCE counts, its words do not.
        _experiment("study-l1-0.001-s3", "l1", 0.001, 3, 0.5),
    )
    points, _ = experiment_points(study)
    summary = aggregate(points)
    l1 = next(row for row in summary if (row["model"], row["rate"]) == ("l1", 0.001))
    assert (l1["seeds"], l1["words_kept_mean"]) == (3, 31.5)
    assert [row["words_kept"] for row in plot_rows(summary) if row["model"] == "l1"] == [31.5, 6.5]
    figure = figure_study(summary, points, "title", num_words=100)
    assert [axes.get_title() for axes in figure.axes] == [
        "Test BCE against rate",
        "Sparsity against rate",
        "Words kept against rate",
    ]
    assert figure.axes[2].get_ylabel().startswith("words kept (of 96)")
    l1_means = [line for line in figure.axes[2].lines if line.get_label() == "l1, mean ± std"][0]
    assert list(l1_means.get_ydata()) == [31.5, 6.5]
    assert "| l1 | 0.001 | 3 | 0.5000 ± 0.0000 | 0.7000 ± 0.0000 | 0.6000 ± 0.0000 | 32 ± 1 |" in summary_markdown(
        summary, points, common_settings(points)
    )


def test_a_study_without_words_kept_has_no_words_panel_and_dashes_in_its_table():
    points, _ = experiment_points(STUDY)
    summary = aggregate(points)
    assert [axes.get_title() for axes in figure_study(summary, points, "title").axes] == [
        "Test BCE against rate",
        "Sparsity against rate",
    ]
    assert "| basic | – | 3 | 0.6200 ± 0.0200 | 0.7000 ± 0.0000 | 0.6000 ± 0.0000 | – |" in summary_markdown(
        summary, points, common_settings(points)
    )
