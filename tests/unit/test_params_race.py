"""A stage refuses to publish outputs made from params that params.yaml no longer holds."""

import shutil
from pathlib import Path

import pytest

from imdb_regularization import atomic, params
from imdb_regularization.atomic import write_json
from imdb_regularization.params import (
    ParamsChangedError,
    check_params_unchanged,
    load_params,
    parse_yaml,
    stage_params_keys,
)
from tests.support.project import PROJECT_ROOT, project_params_text


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    shutil.copy2(PROJECT_ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "params.yaml").write_text(project_params_text())
    monkeypatch.chdir(tmp_path)
    # load_params registers a check with `atomic`; keep this test's checks out of the others.
    monkeypatch.setattr(atomic, "_publish_checks", [])
    monkeypatch.setattr(params, "_params_read", None)
    return tmp_path


def _edit(project: Path, old: str, new: str) -> None:
    text = (project / "params.yaml").read_text()
    assert old in text
    (project / "params.yaml").write_text(text.replace(old, new, 1))


def test_a_stage_depends_on_the_params_keys_dvc_yaml_lists_for_it(project):
    assert stage_params_keys("train@l1") == ["train", "models.l1"]
    assert stage_params_keys("encode") == ["data.source", "data.num_words"]
    assert stage_params_keys("evaluate@basic") == ["evaluate"]


def test_a_changed_rate_stops_the_stage_that_trained_with_the_old_one(project, monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "train@l1")
    used = parse_yaml((project / "params.yaml").read_text())
    _edit(project, "l1: {regularizer: l1, rate: 0.001}", "l1: {regularizer: l1, rate: 0.005}")
    with pytest.raises(ParamsChangedError) as caught:
        check_params_unchanged(used)
    assert str(caught.value) == "params.yaml changed while train@l1 ran: models.l1.rate 0.001 → 0.005; run again"


def test_a_change_in_a_section_names_the_key_inside_it(project, monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "train@basic")
    used = parse_yaml((project / "params.yaml").read_text())
    _edit(project, "epochs: 20", "epochs: 3")
    with pytest.raises(ParamsChangedError, match=r"while train@basic ran: train.epochs 20 → 3; run again"):
        check_params_unchanged(used)


def test_a_change_the_stage_does_not_depend_on_lets_it_publish(project, monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "train@l1")
    used = parse_yaml((project / "params.yaml").read_text())
    _edit(project, "l2: {regularizer: l2, rate: 0.001}", "l2: {regularizer: l2, rate: 0.005}")
    check_params_unchanged(used)


def test_outside_dvc_nothing_is_checked(project, monkeypatch):
    monkeypatch.delenv("DVC_STAGE", raising=False)
    used = parse_yaml((project / "params.yaml").read_text())
    _edit(project, "epochs: 20", "epochs: 3")
    check_params_unchanged(used)


def test_after_load_params_an_atomic_write_of_stale_outputs_publishes_nothing(project, monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "evaluate@l1")
    load_params()
    write_json(project / "metrics" / "first.json", {"written": "before the change"})
    _edit(project, "zero_threshold: 0.001", "zero_threshold: 0.01")
    with pytest.raises(ParamsChangedError, match="evaluate.zero_threshold 0.001 → 0.01"):
        write_json(project / "metrics" / "l1.json", {"written": "after the change"})
    assert sorted(path.name for path in (project / "metrics").iterdir()) == ["first.json"]


def test_a_params_file_that_no_longer_parses_counts_as_changed(project, monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "plots")
    used = parse_yaml((project / "params.yaml").read_text())
    (project / "params.yaml").write_text("models: [")
    with pytest.raises(ParamsChangedError, match="params.yaml changed while plots ran and no longer reads"):
        check_params_unchanged(used)
