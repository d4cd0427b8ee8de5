"""`python -m tools.publish_results`: the README's results table comes from a run's metrics, between markers."""

import json
import sys

import pytest

import tools.publish_results as publish
from imdb_regularization.cli import StageError
from imdb_regularization.evaluation.report import FIGURES
from imdb_regularization.readers.sources import SOURCE_RECORD
from imdb_regularization.readme_blocks import markers, replace_block
from tools.publish_results import provenance, results_table


def _metrics(test_bce: float, zero: float) -> dict:
    return {
        "test_bce": test_bce,
        "test_accuracy": 0.7,
        "test_auc": 0.77,
        "best_val_bce": 0.56,
        "best_epoch": 11,
        "overfit_gap": 0.0,
        "words_kept": 96 if zero < 0.5 else 36,
        "weights": {"hidden_1": {"zero_fraction": zero}, "hidden_2": {"zero_fraction": zero}},
    }


def test_the_table_has_a_row_per_model_with_its_rate_and_the_best_test_bce_in_bold(default_params):
    table = results_table({"basic": _metrics(0.65, 0.01), "l1": _metrics(0.5668, 0.966)}, default_params)
    lines = table.splitlines()
    assert lines[0].startswith("| model | test BCE | test accuracy |")
    assert lines[0].endswith("| hidden_1 zero | hidden_2 zero |")
    assert lines[2] == "| basic | 0.6500 | 0.7000 | 0.7700 | 0.5600 | 11 | 0.0000 | 96 | 0.0100 | 0.0100 |"
    assert lines[3].startswith("| l1 (0.001) | **0.5668** |")


def test_only_the_text_between_the_markers_is_replaced():
    start, end = markers("results")
    assert (start, end) == ("<!-- results:start -->", "<!-- results:end -->")
    readme = f"intro\n{start}\nold table\n{end}\noutro\n"
    assert replace_block(readme, "results", "new table") == f"intro\n{start}\nnew table\n{end}\noutro\n"
    # Another block's markers are not this one's.
    with pytest.raises(StageError, match="study:start"):
        replace_block(readme, "study", "verdict")


def test_a_readme_without_the_markers_is_refused_by_naming_them():
    with pytest.raises(StageError, match="results:start"):
        replace_block("no markers here", "results", "table")


def test_provenance_names_the_data_by_checksum_not_by_path(default_params):
    line = provenance(default_params, {"sha256": "ab" * 32, "url": "/home/someone/aclImdb.tar.gz"})
    assert "abababababab" in line and "/home/someone" not in line
    assert "20 epochs, batch 500" in line


def test_publishing_into_a_directory_keeps_its_other_files(tmp_path, monkeypatch, default_params):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(publish, "_check_up_to_date", lambda: None)
    monkeypatch.setattr(publish, "load_params", lambda: default_params)
    metrics = {name: _metrics(0.6, 0.5) for name in default_params.models}
    monkeypatch.setattr(publish, "read_metrics", lambda directory, names: metrics)
    for name in default_params.models:
        (tmp_path / "metrics").mkdir(exist_ok=True)
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps(metrics[name]))
    (tmp_path / "plots").mkdir()
    for file_name in [*(f"{figure}.png" for figure in FIGURES), "report.md"]:
        (tmp_path / "plots" / file_name).write_text(file_name)
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "raw" / SOURCE_RECORD).write_text(json.dumps({"sha256": "ab" * 32}))
    start, end = markers("results")
    (tmp_path / "README.md").write_text(f"{start}\n{end}\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "team-remote.md").write_text("a page of its own")
    # `--docs docs` instead of docs/results: before, the whole of docs/ was replaced.
    monkeypatch.setattr(sys, "argv", ["tools.publish_results", "--docs", "docs"])
    publish.main()
    assert (docs / "team-remote.md").read_text() == "a page of its own"
    assert (docs / "report.md").read_text() == "report.md"
    assert (docs / "l1.json").exists()
    assert "| l1 (0.001) |" in (tmp_path / "README.md").read_text()
