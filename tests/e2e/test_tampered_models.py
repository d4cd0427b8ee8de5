"""A tampered model file met by the real `dvc repro`: the stage fails with one line, and DVC records nothing.

The table of tamperings, stage by stage, is tests/unit/test_tampered_model_files.py; this test
shows the same check inside DVC, where a stage that published garbage metrics would have them
recorded in dvc.lock and the run-cache.
"""

from pathlib import Path

import numpy as np
import pytest

from tests.support.project import copy_tiny_pipeline, dvc_result, run_dvc, stages_changed
from tools.project import set_params


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline with one model, run once."""
    repo = copy_tiny_pipeline(tmp_path_factory.mktemp("tampered"))
    set_params(repo, {"models": {"l1": {"regularizer": "l1", "rate": 0.001}}})
    run_dvc(repo, "repro")
    return repo


def test_predictions_outside_zero_one_fail_evaluate_and_dvc_records_nothing(repo):
    lock_before = (repo / "dvc.lock").read_text()
    path = repo / "models" / "l1" / "test_predictions.npy"
    predictions = np.load(path)
    predictions[0] = 1.5
    # A new file, not the old one rewritten: DVC's cache may share the old one's bytes.
    path.unlink()
    np.save(path, predictions)

    result = dvc_result(repo, "repro", "--single-item", "evaluate@l1")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "models/l1/test_predictions.npy[0] is 1.5; predictions are probabilities in [0, 1]" in output
    assert "Traceback" not in output
    assert not (repo / "metrics" / "l1.json").exists()
    assert (repo / "dvc.lock").read_text() == lock_before
    assert "evaluate@l1" in stages_changed(repo)
