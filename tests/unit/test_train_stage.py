"""`python -m stages.train`: what it refuses before TensorFlow's start-up and before any training.

Training itself, on tiny data, is in tests/unit/test_model.py and tests/unit/test_sparse_training.py.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imdb_regularization.model.encoded_arrays import write_encoded
from tests.support.project import PROJECT_ROOT
from tools.project import set_params

# Runs the stage's `main()` and reports how it ended and whether TensorFlow had been imported by then.
PROBE = """
import sys
from stages import train
try:
    train.main()
except Exception as error:
    print(type(error).__name__, error)
print("tensorflow imported:", "tensorflow" in sys.modules)
"""


def _stage_directory(tmp_path: Path, values: dict) -> Path:
    """A params.yaml with `values` set, and 10 rows of encoded arrays under `encoded/`."""
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path, values)
    x = (np.arange(40).reshape(10, 4) % 3 == 0).astype(np.uint8)
    y = (np.arange(10) % 2).astype(np.uint8)
    write_encoded(tmp_path / "encoded", {"x_train": x, "y_train": y, "x_test": x, "y_test": y}, vocabulary=None)
    return tmp_path


def _run_train(directory: Path, models_dir: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "--model", "l1", "--data", "encoded", "--models-dir", models_dir],
        cwd=directory,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.splitlines()


def test_a_validation_fraction_the_rows_cannot_meet_fails_before_tensorflow_starts(tmp_path):
    directory = _stage_directory(tmp_path, {"train.validation": 0.01})
    assert _run_train(directory, "models") == [
        "ValidationSplitError train.validation: 0.01 of the 10 training rows holds out 0 and keeps 10; "
        "it must hold out at least one row and keep at least one",
        "tensorflow imported: False",
    ]


@pytest.mark.parametrize(
    "models_dir, reason", [("taken", "it is a file"), ("taken/models", "taken is a file")], ids=["file", "under-a-file"]
)
def test_a_models_dir_that_cannot_be_written_fails_before_training(tmp_path, models_dir, reason):
    directory = _stage_directory(tmp_path, {})
    (directory / "taken").write_text("a file where the models would go\n")
    assert _run_train(directory, models_dir) == [
        f"StageError cannot write into {models_dir}: {reason}, not a directory",
        "tensorflow imported: False",
    ]


def test_a_writable_models_dir_is_created_and_left_empty_by_the_check(tmp_path):
    from imdb_regularization.atomic import check_writable

    check_writable(tmp_path / "new" / "models")
    assert list((tmp_path / "new" / "models").iterdir()) == []
