"""The params loader: defaults parse, YAML 1.2 floats, and every bad value named by its key."""

import os
import re
import subprocess
import sys

import pytest

from imdb_regularization.params import ParamsError, load_params, parse_params
from tests.support.project import PROJECT_ROOT, project_params_text

DEFAULT_TEXT = project_params_text()


def test_defaults_reproduce_the_notebook(default_params):
    assert default_params.data.source == "keras"
    assert default_params.data.num_words == 100
    assert default_params.train.epochs == 20
    assert default_params.train.batch_size == 500
    assert default_params.train.hidden_units == (128, 128)
    assert default_params.train.validation == "test"
    # A held-out split, when asked for, follows the training seed unless a fixed one is given.
    assert default_params.train.validation_seed is None
    assert default_params.train.split_seed == default_params.train.seed
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


# The evaluate section, the last of params.yaml, with its keys and their comments.
EVALUATE_SECTION = DEFAULT_TEXT[DEFAULT_TEXT.index("\nevaluate:\n") + 1 :]


def _replace(old: str, new: str) -> str:
    assert old in DEFAULT_TEXT, old
    return DEFAULT_TEXT.replace(old, new, 1)


BAD_PARAMS = {
    "yaml that does not parse": ("data: [", "is not valid YAML"),
    "missing section": (_replace(EVALUATE_SECTION, ""), "missing key evaluate"),
    "missing key": (_replace("  seed: 42\n", ""), "missing key train.seed"),
    "unknown key (typo)": (_replace("  epochs: 20", "  epoch: 20"), "unknown key train.epoch"),
    "string batch size": (
        _replace("batch_size: 500", 'batch_size: "500"'),
        "train.batch_size must be an integer from 1 to 25,000, got '500'",
    ),
    "fractional epochs": (
        _replace("epochs: 20", "epochs: 2.5"),
        "train.epochs must be an integer from 1 to 1,000, got 2.5",
    ),
    "zero epochs": (_replace("epochs: 20", "epochs: 0"), "train.epochs must be an integer from 1 to 1,000, got 0"),
    "zero steps per execution": (
        _replace("steps_per_execution: 50", "steps_per_execution: 0"),
        "train.steps_per_execution must be an integer from 1 to 1,000, got 0",
    ),
    "unknown train input": (
        _replace("input: auto", "input: csr"),
        "train.input must be one of auto, dense, sparse, got 'csr'",
    ),
    "zero batch size": (
        _replace("batch_size: 500", "batch_size: 0"),
        "train.batch_size must be an integer from 1 to 25,000, got 0",
    ),
    "boolean epochs": (
        _replace("epochs: 20", "epochs: true"),
        "train.epochs must be an integer from 1 to 1,000, got True",
    ),
    "num_words in the reserved range": (
        _replace("num_words: 100", "num_words: 3"),
        "data.num_words must be an integer from 5 to 100,000, got 3",
    ),
    "negative rate": (
        _replace("rate: 0.001}", "rate: -0.1}"),
        "models.l1.rate must be a finite number >= 0 and <= 10, got -0.1",
    ),
    "infinite rate": (
        _replace("rate: 0.001}", "rate: .inf}"),
        "models.l1.rate must be a finite number >= 0 and <= 10, got inf",
    ),
    "nan rate": (
        _replace("rate: 0.001}", "rate: .nan}"),
        "models.l1.rate must be a finite number >= 0 and <= 10, got nan",
    ),
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
        "models must be a mapping of 1 to 100 model names, got {}",
    ),
    "model name that is no stage name": (
        _replace("  l2: {", "  l2 strong: {"),
        "models must be keyed by names of up to 64 letters, digits, _ and -, got 'l2 strong'",
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
        "train.validation must be 'test' or a fraction that holds out 1 to 24,999 rows, got 1.5",
    ),
    "negative validation seed": (
        _replace("validation_seed: null", "validation_seed: -1"),
        "train.validation_seed must be an integer from 0 to 4,294,967,295, got -1",
    ),
    "empty hidden units": (
        _replace("hidden_units: [128, 128]", "hidden_units: []"),
        "train.hidden_units must be a list of 1 to 10 integers, got []",
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
        _replace(EVALUATE_SECTION, "evaluate: 3\n"),
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
    "plots": [
        "stages.plots",
        "--models-dir",
        "models",
        "--metrics-dir",
        "metrics",
        "--vocabulary",
        "data/encoded/vocabulary.tsv",
        "--out",
        "plots",
    ],
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
    assert "params.yaml: models.l1.rate must be a finite number >= 0 and <= 10, got -0.1" in result.stderr
    assert "Traceback" not in result.stderr
    assert HEAVY_IMPORT.search(result.stderr) is None
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


def test_a_percent_encoded_file_url_names_an_existing_file(tmp_path):
    archive = tmp_path / "my copy.tar.gz"
    archive.write_bytes(b"")
    params = parse_params(DEFAULT_TEXT.replace("url: null", f"url: {archive.as_uri()}"))
    assert params.data.url == archive.as_uri()


# Scalars that YAML 1.1 (PyYAML's default) and YAML 1.2 (DVC's ruamel.yaml) read differently, and a few
# they agree on. Each goes where an integer belongs (train.epochs) and where a number belongs
# (models.l1.rate): the loader must hold exactly what DVC's own parser reads, or refuse it by name.
SCALARS = [
    "017",  # 1.1: octal 15; 1.2: 17
    "0o17",  # 1.2 octal: 15; 1.1: a string
    "09",  # 1.1: a string (not octal); 1.2: 9
    "1:30",  # 1.1: sexagesimal 90; 1.2: a string
    "yes",
    "no",
    "on",
    "off",  # 1.1: booleans; 1.2: strings
    "1e-4",
    "1e3",  # exponent floats without a dot: 1.1 strings, 1.2 floats
    "0x1F",
    "0b11",
    "+1",
    ".5",
    "1_000",
    "1.0e+3",
    "True",
    "~",
]


def _dvc_reads(text: str):
    from dvc.utils.serialize import parse_yaml

    return parse_yaml(text, "params.yaml")


@pytest.mark.parametrize("scalar", SCALARS)
@pytest.mark.parametrize(("key", "old"), [("train.epochs", "epochs: 20"), ("models.l1.rate", "rate: 0.001}")])
def test_the_loader_holds_what_dvc_reads_or_refuses_it_by_name(key, old, scalar):
    text = _replace(old, old.replace(old.split(": ")[1].rstrip("}"), scalar))
    *section, name = key.split(".")
    try:
        dvc_value = _dvc_reads(text)
    except Exception:  # DVC refuses the file (`1:30` inside a flow mapping is a syntax error): so does the loader.
        with pytest.raises(ParamsError, match="is not valid YAML"):
            parse_params(text)
        return
    for part in [*section, name]:
        dvc_value = dvc_value[part]
    try:
        params = parse_params(text)
    except ParamsError as error:
        assert f"{key} must be" in str(error) and str(error).endswith(f"got {dvc_value!r}")
        return
    loaded = params.train.epochs if key == "train.epochs" else params.models["l1"].rate
    assert loaded == dvc_value and not isinstance(dvc_value, (str, bool))


def test_the_table_holds_scalars_that_yaml_1_1_reads_otherwise():
    import yaml

    differ = [scalar for scalar in SCALARS if yaml.safe_load(f"a: {scalar}") != _dvc_reads(f"a: {scalar}")]
    assert len(differ) >= 10


def test_a_duplicate_key_is_refused_as_dvc_refuses_it():
    text = _replace("  epochs: 20\n", "  epochs: 20\n  epochs: 3\n")
    with pytest.raises(ParamsError, match=r"params.yaml is not valid YAML \(as DVC reads it\): .*duplicate key"):
        parse_params(text)
    with pytest.raises(Exception, match="corrupted"):
        _dvc_reads(text)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (DEFAULT_TEXT.encode("utf-16"), "params.yaml is not UTF-8 text (byte 0 is 0xff)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "params.yaml is not UTF-8 text (byte 0 is 0x89)"),
    ],
    ids=["utf-16", "binary"],
)
def test_a_params_file_that_is_not_utf8_is_one_line_naming_it(tmp_path, content, message):
    (tmp_path / "params.yaml").write_bytes(content)
    with pytest.raises(ParamsError) as caught:
        load_params(tmp_path / "params.yaml")
    assert str(caught.value) == str(tmp_path / message)


SIZES = {
    "num_words beyond any vocabulary": (
        _replace("num_words: 100", "num_words: 10000000"),
        "data.num_words must be at most 100,000 (more than either source's vocabulary; the encoded arrays of "
        "50,000 reviews would take 500 GB), got 10000000",
    ),
    "a hidden layer too wide": (
        _replace("hidden_units: [128, 128]", "hidden_units: [128, 1000000]"),
        "train.hidden_units[] must be an integer from 1 to 4,096, got 1000000",
    ),
    "too many hidden layers": (
        _replace("hidden_units: [128, 128]", f"hidden_units: {[8] * 11}"),
        "train.hidden_units must be a list of 1 to 10 integers",
    ),
    "a first layer too large for its width": (
        _replace("num_words: 100", "num_words: 30000").replace("hidden_units: [128, 128]", "hidden_units: [4096, 8]"),
        "data.num_words x train.hidden_units[0] = 30,000 x 4,096 = 122,880,000 first-layer weights (2.0 GB to train)",
    ),
    "a batch larger than a split": (
        _replace("batch_size: 500", "batch_size: 1000000000"),
        "train.batch_size must be an integer from 1 to 25,000, got 1000000000",
    ),
    "a seed beyond 32 bits": (
        _replace("seed: 42", "seed: 4294967296"),
        "train.seed must be an integer from 0 to 4,294,967,295, got 4294967296",
    ),
    "a negative seed": (_replace("seed: 42", "seed: -1"), "train.seed must be an integer from 0 to 4,294,967,295"),
    "too many epochs": (
        _replace("epochs: 20", "epochs: 1000000000"),
        "train.epochs must be an integer from 1 to 1,000, got 1000000000",
    ),
    "a rate that only overflows": (
        _replace("rate: 0.001}", "rate: 1e300}"),
        "models.l1.rate must be a finite number >= 0 and <= 10, got 1e+300",
    ),
    "a validation fraction that holds out no row": (
        _replace("validation: test", "validation: 0.00001"),
        "train.validation must be 'test' or a fraction that holds out 1 to 24,999 rows, got 1e-05",
    ),
    "a validation fraction that leaves no training row": (
        _replace("validation: test", "validation: 0.99999"),
        "train.validation must be 'test' or a fraction that holds out 1 to 24,999 rows, got 0.99999",
    ),
    "a zero threshold above every weight": (
        _replace("zero_threshold: 0.001", "zero_threshold: 1000.0"),
        "evaluate.zero_threshold must be a finite number > 0 and <= 1, got 1000.0",
    ),
    "num_words of hundreds of digits": (
        _replace("num_words: 100", "num_words: " + "9" * 340),
        "would take 499999999999999999999999999999999999999999999999999999999999… (336 characters) GB",
    ),
    "an integer too long to convert": (_replace("epochs: 20", "epochs: " + "9" * 5000), "is not valid YAML"),
    "a list nested too deep to show": (
        _replace("epochs: 20", "epochs: " + "[" * 5000 + "]" * 5000),
        "train.epochs must be an integer from 1 to 1,000, got a list nested too deep to show",
    ),
    "a data.url too long for a file name": (
        _replace("url: null", "url: /" + "a" * 5000),
        "data.url must be an http(s) URL or an existing file, got '/aaaaaaaa",
    ),
    "hidden layers too large together": (
        _replace("hidden_units: [128, 128]", "hidden_units: [4096, 4096, 4096, 4096, 4096]"),
        "make 67,522,560 weights (1.1 GB to train), more than 60,000,000",
    ),
    "dense rows too wide": (
        _replace("num_words: 100", "num_words: 100000")
        .replace("input: auto", "input: dense")
        .replace("hidden_units: [128, 128]", "hidden_units: [64, 64]"),
        "train.input dense at data.num_words 100,000 needs 20.0 GB of float32 rows",
    ),
    "a model name too long for a stage name": (
        _replace("  l2: {", f"  {'m' * 65}: {{"),
        "models must be keyed by names of up to 64 letters",
    ),
}


@pytest.mark.parametrize(("text", "message"), SIZES.values(), ids=SIZES.keys())
def test_every_size_has_a_bound_named_in_one_line(text, message):
    with pytest.raises(ParamsError) as caught:
        parse_params(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
