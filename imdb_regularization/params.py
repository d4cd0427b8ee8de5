"""The one loader for `params.yaml`: validates the whole file and returns frozen dataclasses.

Every stage calls `load_params()` before doing any work, so a typo or an
out-of-range value fails in a second, names its key, and touches no output.
"""

import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import yaml

from imdb_regularization.cli import StageError

PARAMS_FILE = Path("params.yaml")
DATA_SOURCES = ("keras", "aclimdb")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
REGULARIZERS = ("none", "l1", "l2", "l1_l2")
# Indices 0-3 are padding, start, out-of-vocabulary and unused, so 4 is the first word.
FIRST_WORD_INDEX = 4
# A model name becomes part of a DVC stage name (train@<name>) and of file paths.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
SHA256 = re.compile(r"[0-9a-f]{64}")


class ParamsError(StageError, ValueError):
    """params.yaml holds a value the pipeline cannot use."""


@dataclass(frozen=True)
class DataParams:
    source: str
    url: str | None
    sha256: str | None
    num_words: int


@dataclass(frozen=True)
class TrainParams:
    epochs: int
    batch_size: int
    hidden_units: tuple[int, ...]
    optimizer: str
    learning_rate: float
    validation: str | float  # "test", or the fraction of the training set held out
    seed: int
    steps_per_execution: int


@dataclass(frozen=True)
class RegularizerSpec:
    regularizer: str
    rate: float


@dataclass(frozen=True)
class EvaluateParams:
    zero_threshold: float


@dataclass(frozen=True)
class Params:
    data: DataParams
    train: TrainParams
    models: dict[str, RegularizerSpec]
    evaluate: EvaluateParams


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML reads `1e-4` as a string (YAML 1.1); DVC and users mean a float (YAML 1.2)."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def _fail(key: str, requirement: str, value: Any) -> ParamsError:
    return ParamsError(f"{PARAMS_FILE}: {key} must be {requirement}, got {value!r}")


def _mapping(value: Any, key: str, names: tuple[str, ...]) -> dict:
    """Check that `value` is a mapping with exactly the keys `names`."""
    if not isinstance(value, dict):
        raise _fail(key or "the top level", "a mapping", value)
    prefix = f"{key}." if key else ""
    unknown = sorted(set(value) - set(names), key=str)
    if unknown:
        raise ParamsError(f"{PARAMS_FILE}: unknown key {prefix}{unknown[0]} (allowed: {', '.join(names)})")
    missing = [name for name in names if name not in value]
    if missing:
        raise ParamsError(f"{PARAMS_FILE}: missing key {prefix}{missing[0]}")
    return value


def _names(cls: type) -> tuple[str, ...]:
    return tuple(field.name for field in fields(cls))


def _integer(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(key, f"an integer >= {minimum}", value)
    return value


def _number(value: Any, key: str, minimum: float, *, above: bool = False) -> float:
    valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not valid or value < minimum or (above and value == minimum):
        raise _fail(key, f"a finite number {'>' if above else '>='} {minimum}", value)
    return float(value)


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(key, f"one of {', '.join(choices)}", value)
    return value


def local_path(url: str) -> Path | None:
    """The file a `data.url` names: a plain path or a (percent-encoded) file:// URL; None for http(s)."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        return None
    return Path(url2pathname(parsed.path) if parsed.scheme == "file" else url)


def _url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _fail("data.url", "null, a URL or a file path", value)
    local = local_path(value)
    if local is not None and not local.is_file():
        raise _fail("data.url", "an http(s) URL or an existing file", value)
    return value


def _data(raw: Any) -> DataParams:
    section = _mapping(raw, "data", _names(DataParams))
    sha256 = section["sha256"]
    if sha256 is not None and not (isinstance(sha256, str) and SHA256.fullmatch(sha256)):
        raise _fail("data.sha256", "null or 64 lower-case hex digits", sha256)
    url = _url(section["url"])
    if url is not None and sha256 is None and urlparse(url).scheme in ("http", "https"):
        raise _fail("data.sha256", "set (64 hex digits) when data.url is an http(s) URL", sha256)
    return DataParams(
        source=_choice(section["source"], "data.source", DATA_SOURCES),
        url=url,
        sha256=sha256,
        num_words=_integer(section["num_words"], "data.num_words", FIRST_WORD_INDEX + 1),
    )


def _validation(value: Any) -> str | float:
    if value == "test":
        return value
    if isinstance(value, float) and 0 < value < 1:
        return value
    raise _fail("train.validation", "'test' or a fraction between 0 and 1", value)


def _train(raw: Any) -> TrainParams:
    section = _mapping(raw, "train", _names(TrainParams))
    units = section["hidden_units"]
    if not isinstance(units, list) or not units:
        raise _fail("train.hidden_units", "a non-empty list of integers >= 1", units)
    return TrainParams(
        epochs=_integer(section["epochs"], "train.epochs", 1),
        batch_size=_integer(section["batch_size"], "train.batch_size", 1),
        hidden_units=tuple(_integer(unit, "train.hidden_units[]", 1) for unit in units),
        optimizer=_choice(section["optimizer"], "train.optimizer", OPTIMIZERS),
        learning_rate=_number(section["learning_rate"], "train.learning_rate", 0, above=True),
        validation=_validation(section["validation"]),
        seed=_integer(section["seed"], "train.seed", 0),
        steps_per_execution=_integer(section["steps_per_execution"], "train.steps_per_execution", 1),
    )


def _models(raw: Any) -> dict[str, RegularizerSpec]:
    if not isinstance(raw, dict) or not raw:
        raise _fail("models", "a non-empty mapping of model names", raw)
    models = {}
    for name, entry in raw.items():
        if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
            raise _fail("models", "keyed by names of letters, digits, _ and -", name)
        section = _mapping(entry, f"models.{name}", _names(RegularizerSpec))
        models[name] = RegularizerSpec(
            regularizer=_choice(section["regularizer"], f"models.{name}.regularizer", REGULARIZERS),
            rate=_number(section["rate"], f"models.{name}.rate", 0),
        )
    return models


def _evaluate(raw: Any) -> EvaluateParams:
    section = _mapping(raw, "evaluate", _names(EvaluateParams))
    return EvaluateParams(zero_threshold=_number(section["zero_threshold"], "evaluate.zero_threshold", 0, above=True))


def parse_params(text: str) -> Params:
    """Parse and validate the text of a params file.

    Args:
        text: YAML, as in `params.yaml`.

    Returns:
        The validated parameters.

    Raises:
        ParamsError: the first problem found, naming its key and value.
    """
    try:
        raw = yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ParamsError(f"{PARAMS_FILE} is not valid YAML: {error}") from None
    root = _mapping(raw, "", _names(Params))
    return Params(
        data=_data(root["data"]),
        train=_train(root["train"]),
        models=_models(root["models"]),
        evaluate=_evaluate(root["evaluate"]),
    )


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate `params.yaml` (see `parse_params`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ParamsError(f"cannot read {path}: {error.strerror}") from None
    return parse_params(text)
