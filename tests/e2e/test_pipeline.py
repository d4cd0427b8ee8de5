"""End to end: the real `dvc repro` on a tiny archive, and exactly which stages a change reruns.

One repo is built per module (copying the project into a temporary git repo), because
each training stage pays TensorFlow's start-up; the tests then change params and read
from DVC's own output which stages ran or would run.
"""

import json
from pathlib import Path

import pytest

from tests.support.project import (
    ALL_STAGES,
    copy_tiny_pipeline,
    dvc_result,
    run_dvc,
    stages_changed,
    stages_run,
)
from tools.project import set_params


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = copy_tiny_pipeline(tmp_path_factory.mktemp("pipeline"))
    repo.joinpath("first_repro.log").write_text(run_dvc(repo, "repro"))
    return repo


def test_first_repro_runs_every_stage_and_writes_metrics(repo):
    assert stages_run((repo / "first_repro.log").read_text()) == ALL_STAGES
    for name in ("basic", "l1", "l2"):
        metrics = json.loads((repo / "metrics" / f"{name}.json").read_text())
        assert {"test_bce", "test_accuracy", "best_val_bce", "best_epoch", "words_kept"} <= set(metrics)
    assert (repo / "plots" / "validation_bce.png").stat().st_size > 10_000
    # Every model lists every word of the tiny vocabulary, named as encode named it.
    words = (repo / "plots" / "words.csv").read_text().splitlines()
    assert words[0] == "model,index,word,norm,effect,kept"
    assert {line.split(",")[2] for line in words[1:]} >= {"great", "awful"}
    assert "## The words each model keeps" in (repo / "plots" / "report.md").read_text()
    shown = run_dvc(repo, "metrics", "show")
    assert all(f"metrics/{name}.json" in shown for name in ("basic", "l1", "l2"))


def test_nothing_changed_nothing_runs(repo):
    output = run_dvc(repo, "repro")
    assert stages_run(output) == set()
    assert "Data and pipelines are up to date" in output


def test_changing_one_rate_reruns_that_model_and_the_plots_only(repo):
    set_params(repo, {"models.l1.rate": 0.01})
    output = run_dvc(repo, "repro")
    assert stages_run(output) == {"train@l1", "evaluate@l1", "plots"}
    assert "metrics/l1.json" in run_dvc(repo, "metrics", "diff")


def test_changing_num_words_reruns_encode_and_everything_after_it_but_not_fetch(repo):
    set_params(repo, {"data.num_words": 50})
    assert stages_run(run_dvc(repo, "repro")) == ALL_STAGES - {"fetch"}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"train.epochs": 3}, {"train@basic", "train@l1", "train@l2"}),
        ({"models.l2.rate": 0.5}, {"train@l2", "plots"}),
        ({"evaluate.zero_threshold": 0.01}, {"evaluate@basic", "evaluate@l1", "evaluate@l2"}),
        ({"evaluate.kept_norm": 0.5}, {"evaluate@basic", "evaluate@l1", "evaluate@l2", "plots"}),
        ({"data.word_index_url": __file__}, {"fetch"}),
        (
            {"models.l1_l2": {"regularizer": "l1_l2", "rate": 0.001}},
            {"train@l1_l2", "evaluate@l1_l2", "plots"},
        ),
    ],
    ids=[
        "train.epochs",
        "models.l2.rate",
        "evaluate.zero_threshold",
        "evaluate.kept_norm",
        "data.word_index_url",
        "a fourth model",
    ],
)
def test_each_param_invalidates_exactly_the_stages_that_read_it(repo, params, expected):
    original = (repo / "params.yaml").read_text()
    assert stages_changed(repo) == set()
    set_params(repo, params)
    try:
        assert stages_changed(repo) == expected
    finally:
        (repo / "params.yaml").write_text(original)


def test_a_model_name_never_reaches_a_shell(repo):
    original = (repo / "params.yaml").read_text()
    set_params(repo, {"models.x;touch PWNED;#": {"regularizer": "none", "rate": 0}})
    try:
        result = dvc_result(repo, "repro")
        assert result.returncode != 0
        assert "models must be keyed by names of up to 64 letters, digits, _ and -" in result.stdout + result.stderr
        assert not (repo / "PWNED").exists()
    finally:
        (repo / "params.yaml").write_text(original)
