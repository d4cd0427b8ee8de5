"""End to end: the real `dvc repro` on a tiny archive, and exactly which stages a change reruns.

One repo is built per module (copying the project into a temporary git repo), because
each training stage pays TensorFlow's start-up; the tests then change params and read
from DVC's own output which stages ran or would run.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, make_reviews, write_aclimdb_archive

PROJECT_FILES = ["stages", "dvc.yaml", "params.yaml", ".dvcignore", ".dvc/config", ".dvc/plots", ".dvc/.gitignore"]
ALL_STAGES = {"fetch", "encode", "train@basic", "train@l1", "train@l2", "evaluate@basic", "evaluate@l1",
              "evaluate@l2", "plots"}


def _run(repo: Path, *args: str) -> str:
    # Stage commands call `python`: make it this interpreter, whatever PATH says.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "KERAS_HOME": str(repo / ".keras-home")}
    result = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _dvc(repo: Path, *args: str) -> str:
    return _run(repo, sys.executable, "-m", "dvc", *args)


def _stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def _edit_params(repo: Path, edit) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    repo = root / "project"
    for name in PROJECT_FILES:
        source, target = PROJECT_ROOT / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    archive = write_aclimdb_archive(root / "tiny_aclImdb.tar.gz", make_reviews(20))

    def tiny(params):
        params["data"].update(source="aclimdb", url=str(archive))
        params["train"].update(epochs=2, batch_size=10, hidden_units=[16, 16])

    _edit_params(repo, tiny)
    _run(repo, "git", "init", "-q")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", "tiny")
    repo.joinpath("first_repro.log").write_text(_dvc(repo, "repro"))
    return repo


def test_first_repro_runs_every_stage_and_writes_metrics(repo):
    assert _stages_run((repo / "first_repro.log").read_text()) == ALL_STAGES
    for name in ("basic", "l1", "l2"):
        metrics = json.loads((repo / "metrics" / f"{name}.json").read_text())
        assert {"test_bce", "test_accuracy", "best_val_bce", "best_epoch"} <= set(metrics)
    assert (repo / "plots" / "validation_bce.png").stat().st_size > 10_000
    shown = _dvc(repo, "metrics", "show")
    assert all(f"metrics/{name}.json" in shown for name in ("basic", "l1", "l2"))


def test_nothing_changed_nothing_runs(repo):
    output = _dvc(repo, "repro")
    assert _stages_run(output) == set()
    assert "Data and pipelines are up to date" in output


def test_changing_one_rate_reruns_that_model_and_the_plots_only(repo):
    _edit_params(repo, lambda params: params["models"]["l1"].update(rate=0.01))
    output = _dvc(repo, "repro")
    assert _stages_run(output) == {"train@l1", "evaluate@l1", "plots"}
    assert "metrics/l1.json" in _dvc(repo, "metrics", "diff")


def test_changing_num_words_reruns_encode_and_everything_after_it_but_not_fetch(repo):
    _edit_params(repo, lambda params: params["data"].update(num_words=50))
    assert _stages_run(_dvc(repo, "repro")) == ALL_STAGES - {"fetch"}


def _stages_changed(repo: Path) -> set[str]:
    """Stages `dvc status` reports as changed themselves (not through their upstream)."""
    return set(json.loads(_dvc(repo, "status", "--json")))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda params: params["train"].update(epochs=3), {"train@basic", "train@l1", "train@l2"}),
        (lambda params: params["models"]["l2"].update(rate=0.5), {"train@l2", "plots"}),
        (lambda params: params["evaluate"].update(zero_threshold=0.01),
         {"evaluate@basic", "evaluate@l1", "evaluate@l2"}),
        (lambda params: params["models"].update(l1_l2={"regularizer": "l1_l2", "rate": 0.001}),
         {"train@l1_l2", "evaluate@l1_l2", "plots"}),
    ],
    ids=["train.epochs", "models.l2.rate", "evaluate.zero_threshold", "a fourth model"],
)
def test_each_param_invalidates_exactly_the_stages_that_read_it(repo, edit, expected):
    original = (repo / "params.yaml").read_text()
    assert _stages_changed(repo) == set()
    _edit_params(repo, edit)
    try:
        assert _stages_changed(repo) == expected
    finally:
        (repo / "params.yaml").write_text(original)
