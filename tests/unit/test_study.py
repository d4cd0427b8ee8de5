"""The regularization study's runner: its grid and queue arguments (study.summarize: tests/unit/test_summarize.py).

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
