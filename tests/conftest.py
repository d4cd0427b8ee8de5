"""Fixtures shared by unit and end-to-end tests; their helpers live in `tests.support`."""

from pathlib import Path

import pytest

from imdb_regularization.params import Params, parse_params
from tests.support.data import make_reviews, write_aclimdb_archive
from tests.support.project import project_params_text


@pytest.fixture
def default_params() -> Params:
    return parse_params(project_params_text())


@pytest.fixture
def tiny_archive(tmp_path: Path) -> Path:
    return write_aclimdb_archive(tmp_path / "tiny_aclImdb.tar.gz", make_reviews(10))
