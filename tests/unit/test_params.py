"""The params loader: defaults parse, YAML 1.2 floats, and every bad value named by its key."""

import os
import re
import subprocess
import sys

import pytest

from imdb_regularization.params import ParamsError, load_params, parse_params
from tests.support.project import PROJECT_ROOT

DEFAULT_TEXT = (PROJECT_ROOT / "params.yaml").read_text()


def test_defaults_reproduce_the_notebook(default_params):
    assert default_params.data.source == "keras"
    assert default_params.data.num_words == 100
    assert default_params.train.epochs == 20
    assert default_params.train.batch_size == 500
    assert default_params.train.hidden_units == (128, 128)
    assert default_params.train.validation == "test"
    assert {name: (spec.regularizer, spec.rate) for name, spec in default_params.models.items()} == {
        "basic": ("none", 0.0),
        "l1": ("l1", 0.001),
        "l2": ("l2", 0.001),
    }


def test_exponent_floats_are_numbers_as_dvc_reads_them():
    # `dvc exp run -S models.l1.rate=1e-4` writes 1e-4, which YAML 1.1 would read as a string.
    params = parse_params(
        DEFAULT_TEXT.replace("l1: {regularizer: l1, rate: 0.001}", "l1: {regularizer: l1, rate: 1e-4}")
    )
    assert params.models["l1"].rate == pytest.approx(1e-4)


def test_a_fourth_model_is_one_entry():
    text = DEFAULT_TEXT.replace("evaluate:", "  l1_l2: {regularizer: l1_l2, rate: 0.0005}\n\nevaluate:")
    assert list(parse_params(text).models) == ["basic", "l1", "l2", "l1_l2"]


def _replace(old: str, new: str) -> str:
    assert old in DEFAULT_TEXT, old
    return DEFAULT_TEXT.replace(old, new, 1)


BAD_PARAMS = {
    "yaml that does not parse": ("data: [", "is not valid YAML"),
    "missing section": (_replace("evaluate:\n  zero_threshold: 0.001", ""), "missing key evaluate"),
    "missing key": (_replace("  seed: 42\n", ""), "missing key train.seed"),
    "unknown key (typo)": (_replace("  epochs: 20", "  epoch: 20"), "unknown key train.epoch"),
    "string batch size": (
        _replace("batch_size: 500", 'batch_size: "500"'),
        "train.batch_size must be an integer >= 1, got '500'",
    ),
    "fractional epochs": (_replace("epochs: 20", "epochs: 2.5"), "train.epochs must be an integer >= 1, got 2.5"),
    "zero epochs": (_replace("epochs: 20", "epochs: 0"), "train.epochs must be an integer >= 1, got 0"),
    "zero steps per execution": (
        _replace("steps_per_execution: 50", "steps_per_execution: 0"),
        "train.steps_per_execution must be an integer >= 1, got 0",
    ),
    "zero batch size": (
        _replace("batch_size: 500", "batch_size: 0"),
        "train.batch_size must be an integer >= 1, got 0",
    ),
    "boolean epochs": (_replace("epochs: 20", "epochs: true"), "train.epochs must be an integer >= 1, got True"),
    "num_words in the reserved range": (
        _replace("num_words: 100", "num_words: 3"),
        "data.num_words must be an integer >= 5, got 3",
    ),
    "negative rate": (_replace("rate: 0.001}", "rate: -0.1}"), "models.l1.rate must be a finite number >= 0, got -0.1"),
    "infinite rate": (_replace("rate: 0.001}", "rate: .inf}"), "models.l1.rate must be a finite number >= 0, got inf"),
    "nan rate": (_replace("rate: 0.001}", "rate: .nan}"), "models.l1.rate must be a finite number >= 0, got nan"),
    "zero learning rate": (
        _replace("learning_rate: 0.001", "learning_rate: 0"),
        "train.learning_rate must be a finite number > 0, got 0",
    ),
    "empty models": (
        _replace(
            "models:\n  basic: {regularizer: none, rate: 0.0}\n  l1: {regularizer: l1, rate: 0.001}\n"
            "  l2: {regularizer: l2, rate: 0.001}",
            "models: {}",
        ),
        "models must be a non-empty mapping of model names, got {}",
    ),
    "model name that is no stage name": (
        _replace("  l2: {", "  l2 strong: {"),
        "models must be keyed by names of letters, digits, _ and -, got 'l2 strong'",
    ),
    "unknown regularizer": (
        _replace("regularizer: l2,", "regularizer: l3,"),
        "models.l2.regularizer must be one of none, l1, l2, l1_l2, got 'l3'",
    ),
    "unknown data source": (
        _replace("source: keras", "source: kaggle"),
        "data.source must be one of keras, aclimdb, got 'kaggle'",
    ),
    "unknown optimizer": (
        _replace("optimizer: adam", "optimizer: adamw"),
        "train.optimizer must be one of adam, rmsprop, sgd, got 'adamw'",
    ),
    "validation neither test nor a fraction": (
        _replace("validation: test", "validation: 1.5"),
        "train.validation must be 'test' or a fraction between 0 and 1, got 1.5",
    ),
    "empty hidden units": (
        _replace("hidden_units: [128, 128]", "hidden_units: []"),
        "train.hidden_units must be a non-empty list of integers >= 1, got []",
    ),
    "data.url that does not exist": (
        _replace("url: null", "url: /no/such/archive.tar.gz"),
        "data.url must be an http(s) URL or an existing file, got '/no/such/archive.tar.gz'",
    ),
    "http data.url without a checksum": (
        _replace("url: null", "url: https://example.org/imdb.npz"),
        "data.sha256 must be set (64 hex digits) when data.url is an http(s) URL",
    ),
    "malformed checksum": (
        _replace("sha256: null", "sha256: abc"),
        "data.sha256 must be null or 64 lower-case hex digits, got 'abc'",
    ),
    "a section that is not a mapping": (
        _replace("evaluate:\n  zero_threshold: 0.001", "evaluate: 3"),
        "evaluate must be a mapping, got 3",
    ),
}


@pytest.mark.parametrize(("text", "message"), BAD_PARAMS.values(), ids=BAD_PARAMS.keys())
def test_bad_params_fail_with_key_and_value(text, message):
    with pytest.raises(ParamsError) as caught:
        parse_params(text)
    assert message in str(caught.value)
    assert str(caught.value).startswith("params.yaml")


def test_missing_file_is_a_params_error(tmp_path):
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "params.yaml")


# Each stage's command, as dvc.yaml runs it, and the outputs it would write.
STAGE_COMMANDS = {
    "fetch": ["stages.fetch", "--out", "data/raw"],
    "encode": ["stages.encode", "--raw", "data/raw", "--out", "data/encoded"],
    "train": ["stages.train", "--model", "l1", "--data", "data/encoded", "--models-dir", "models"],
    "evaluate": [
        "stages.evaluate",
        "--model",
        "l1",
        "--models-dir",
        "models",
        "--data",
        "data/encoded",
        "--metrics-dir",
        "metrics",
    ],
    "plots": ["stages.plots", "--models-dir", "models", "--metrics-dir", "metrics", "--out", "plots"],
}
EARLIER_OUTPUTS = [
    "data/raw/source.json",
    "data/encoded/x_train.npy",
    "models/l1/history.json",
    "metrics/l1.json",
    "plots/report.md",
]
# `python -X importtime` logs every module imported, one per line ending in `| <module name>`.
HEAVY_IMPORT = re.compile(r"\|\s*(tensorflow|keras)$", re.MULTILINE)


@pytest.mark.parametrize("stage", STAGE_COMMANDS)
def test_a_stage_with_bad_params_exits_before_importing_tensorflow_and_touches_nothing(tmp_path, stage):
    (tmp_path / "params.yaml").write_text(_replace("rate: 0.001}", "rate: -0.1}"))
    for name in EARLIER_OUTPUTS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"an earlier run's {name}")
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", *STAGE_COMMANDS[stage]],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "params.yaml: models.l1.rate must be a finite number >= 0, got -0.1" in result.stderr
    assert "Traceback" not in result.stderr
    assert HEAVY_IMPORT.search(result.stderr) is None
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


def test_a_percent_encoded_file_url_names_an_existing_file(tmp_path):
    archive = tmp_path / "my copy.tar.gz"
    archive.write_bytes(b"")
    params = parse_params(DEFAULT_TEXT.replace("url: null", f"url: {archive.as_uri()}"))
    assert params.data.url == archive.as_uri()
