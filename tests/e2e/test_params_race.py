"""params.yaml edited while a stage trains: the stage publishes nothing, so DVC records nothing false.

A real `dvc repro` trains l1; as soon as the training has started, the test changes
`models.l1.rate` (as `dvc exp run -S models.l1.rate=...` would, before it fails on DVC's lock).
"""

import subprocess
from pathlib import Path

import pytest

from imdb_regularization.dvc_commands import dvc_command
from tests.support.project import copy_tiny_pipeline, pipeline_environment, run_dvc, stages_changed, stages_run
from tools.project import set_params

CHANGED = "params.yaml changed while train@l1 ran: models.l1.rate 0.001 → 0.005; run again"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = copy_tiny_pipeline(tmp_path_factory.mktemp("race"))
    # Long enough that the edit lands while the model trains, on any machine.
    set_params(repo, {"train.epochs": 100})
    run_dvc(repo, "repro", "encode")
    return repo


@pytest.fixture(scope="module")
def raced(repo) -> str:
    """The output of a `dvc repro train@l1` during which models.l1.rate changed from 0.001 to 0.005."""
    process = subprocess.Popen(
        dvc_command("repro", "train@l1"),
        cwd=repo,
        env=pipeline_environment(repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "training l1" in line:
            set_params(repo, {"models.l1.rate": 0.005})
            break
    lines += process.stdout.readlines()
    assert process.wait(timeout=120) != 0, "".join(lines)
    return "".join(lines)


def test_the_stage_fails_with_one_line_naming_the_key_and_both_values(raced):
    assert CHANGED in raced
    assert "Traceback" not in raced
    assert "Epoch 100/100" in raced  # the edit came during training, not before it


def test_nothing_is_recorded_for_the_stage(repo, raced):
    assert not (repo / "models" / "l1").exists()
    assert "train@l1" in stages_changed(repo)


def test_the_next_repro_trains_at_the_new_rate_instead_of_restoring_from_the_run_cache(repo, raced):
    output = run_dvc(repo, "repro", "train@l1")
    assert stages_run(output) == {"train@l1"}
    assert "is cached - skipping run" not in output
    assert "rate 0.005" in output
