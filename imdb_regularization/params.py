"""The one loader for `params.yaml`: validates the whole file and returns frozen dataclasses.

Every stage calls `load_params()` before doing any work, so a typo or an
out-of-range value fails in a second, names its key, and touches no output.
The file is parsed exactly as DVC parses it (ruamel.yaml's safe loader, YAML 1.2,
duplicate keys refused), so a stage trains on the values `dvc.lock` records. Every
size has an upper bound here, checked before anything is allocated.

`load_params` also remembers what it read, so a stage can refuse to publish outputs
made from params that `params.yaml` no longer holds (`check_params_unchanged`).
"""

import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from imdb_regularization.atomic import register_publish_check
from imdb_regularization.cli import StageError

PARAMS_FILE = Path("params.yaml")
DATA_SOURCES = ("keras", "aclimdb")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
# How train feeds the multi-hot rows: by their density, as float32 rows, or as sparse rows.
TRAIN_INPUTS = ("auto", "dense", "sparse")
REGULARIZERS = ("none", "l1", "l2", "l1_l2")
# Indices 0-3 are padding, start, out-of-vocabulary and unused, so 4 is the first word.
FIRST_WORD_INDEX = 4
# A model name becomes part of a DVC stage name (train@<name>) and of file paths.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
SHA256 = re.compile(r"[0-9a-f]{64}")
DVC_FILE = Path("dvc.yaml")

# Upper bounds, so that no value can ask for more than a machine has before anything is allocated.
# Both sources hold 25,000 reviews per split; their vocabularies are under 90,000 words, so a
# wider vector only adds columns of zeros.
REVIEWS_PER_SPLIT = 25_000
MAX_NUM_WORDS = 100_000
MAX_HIDDEN_UNITS = 4_096
# The first layer's kernel has num_words x units weights; training keeps four copies of it
# (weights, gradients and Adam's two moments) in float32.
MAX_FIRST_LAYER_WEIGHTS = 50_000_000
MAX_WEIGHTS = 60_000_000
# Dense training converts both splits' rows to float32.
MAX_DENSE_ROW_BYTES = 4_000_000_000
MAX_EPOCHS = 1_000
MAX_BATCH_SIZE = REVIEWS_PER_SPLIT
MAX_STEPS_PER_EXECUTION = 1_000
MAX_SEED = 2**32 - 1  # NumPy's and Keras' seeds are unsigned 32-bit integers
# Penalties this strong zero every weight in the first steps; larger ones only overflow.
MAX_RATE = 10.0
MAX_MODELS = 100


class ParamsError(StageError, ValueError):
    """params.yaml holds a value the pipeline cannot use."""


@dataclass(frozen=True)
class DataParams:
    source: str
    url: str | None
    sha256: str | None
    num_words: int
    word_index_url: str | None
    word_index_sha256: str | None


@dataclass(frozen=True)
class TrainParams:
    epochs: int
    batch_size: int
    hidden_units: tuple[int, ...]
    optimizer: str
    learning_rate: float
    validation: str | float  # "test", or the fraction of the training set held out
    validation_seed: int | None  # the held-out split's seed; None: `seed`
    seed: int
    steps_per_execution: int
    input: str  # one of TRAIN_INPUTS

    @property
    def split_seed(self) -> int:
        """The seed of the held-out validation split."""
        return self.seed if self.validation_seed is None else self.validation_seed


@dataclass(frozen=True)
class RegularizerSpec:
    regularizer: str
    rate: float


@dataclass(frozen=True)
class EvaluateParams:
    zero_threshold: float
    kept_norm: float


@dataclass(frozen=True)
class Params:
    data: DataParams
    train: TrainParams
    models: dict[str, RegularizerSpec]
    evaluate: EvaluateParams


class ParamsChangedError(ParamsError):
    """params.yaml changed while a stage ran, so its outputs would be recorded with params they were not made from."""


def _fail(key: str, requirement: str, value: Any) -> ParamsError:
    return ParamsError(f"{PARAMS_FILE}: {key} must be {requirement}, got {_shown(value)}")


def _shown(value: Any) -> str:
    """`repr(value)`, shortened so that a huge value still makes a one-line message."""
    try:
        text = repr(value)
    except ValueError:  # an integer with more digits than Python converts to text
        return "an integer of thousands of digits"
    except RecursionError:  # lists nested thousands deep
        return f"a {type(value).__name__} nested too deep to show"
    return text if len(text) <= 80 else f"{text[:60]}… ({len(text):,} characters)"


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


def _integer(value: Any, key: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise _fail(key, f"an integer from {minimum} to {maximum:,}", value)
    return value


def _number(value: Any, key: str, minimum: float, maximum: float = math.inf, *, above: bool = False) -> float:
    valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not valid or not minimum <= value <= maximum or (above and value == minimum):
        limit = "" if maximum == math.inf else f" and <= {maximum:g}"
        raise _fail(key, f"a finite number {'>' if above else '>='} {minimum}{limit}", value)
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


def _url(value: Any, key: str = "data.url") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(key, "null, a URL or a file path", value)
    local = local_path(value)
    try:
        exists = local is None or local.is_file()
    except (OSError, ValueError):  # a name too long for the file system, or holding a NUL
        exists = False
    if not exists:
        raise _fail(key, "an http(s) URL or an existing file", value)
    return value


def _pinned_url(section: dict, url_key: str, sha256_key: str) -> tuple[str | None, str | None]:
    """A `data.url`-style override and the SHA-256 pinning it, checked together."""
    sha256 = section[sha256_key]
    if sha256 is not None and not (isinstance(sha256, str) and SHA256.fullmatch(sha256)):
        raise _fail(f"data.{sha256_key}", "null or 64 lower-case hex digits", sha256)
    url = _url(section[url_key], f"data.{url_key}")
    if url is not None and sha256 is None and urlparse(url).scheme in ("http", "https"):
        raise _fail(f"data.{sha256_key}", f"set (64 hex digits) when data.{url_key} is an http(s) URL", sha256)
    return url, sha256


def _data(raw: Any) -> DataParams:
    section = _mapping(raw, "data", _names(DataParams))
    url, sha256 = _pinned_url(section, "url", "sha256")
    word_index_url, word_index_sha256 = _pinned_url(section, "word_index_url", "word_index_sha256")
    return DataParams(
        source=_choice(section["source"], "data.source", DATA_SOURCES),
        url=url,
        sha256=sha256,
        num_words=_num_words(section["num_words"]),
        word_index_url=word_index_url,
        word_index_sha256=word_index_sha256,
    )


def _num_words(value: Any) -> int:
    """`data.num_words`, refused with the size of the arrays it would need when it is too wide."""
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_NUM_WORDS:
        gigabytes = 2 * REVIEWS_PER_SPLIT * value // 10**9  # integers: any number of digits
        raise _fail(
            "data.num_words",
            f"at most {MAX_NUM_WORDS:,} (more than either source's vocabulary; the encoded arrays of "
            f"{2 * REVIEWS_PER_SPLIT:,} reviews would take {_shown(gigabytes)} GB)",
            value,
        )
    return _integer(value, "data.num_words", FIRST_WORD_INDEX + 1, MAX_NUM_WORDS)


def _validation(value: Any) -> str | float:
    if value == "test":
        return value
    # Rounded as `split_validation` rounds it, on a full training split: it must hold out a row and keep one.
    if isinstance(value, float) and 1 <= round(REVIEWS_PER_SPLIT * value) < REVIEWS_PER_SPLIT:
        return value
    raise _fail("train.validation", f"'test' or a fraction that holds out 1 to {REVIEWS_PER_SPLIT - 1:,} rows", value)


def _train(raw: Any) -> TrainParams:
    section = _mapping(raw, "train", _names(TrainParams))
    units = section["hidden_units"]
    if not isinstance(units, list) or not 1 <= len(units) <= 10:
        raise _fail("train.hidden_units", "a list of 1 to 10 integers", units)
    return TrainParams(
        epochs=_integer(section["epochs"], "train.epochs", 1, MAX_EPOCHS),
        batch_size=_integer(section["batch_size"], "train.batch_size", 1, MAX_BATCH_SIZE),
        hidden_units=tuple(_integer(unit, "train.hidden_units[]", 1, MAX_HIDDEN_UNITS) for unit in units),
        optimizer=_choice(section["optimizer"], "train.optimizer", OPTIMIZERS),
        learning_rate=_number(section["learning_rate"], "train.learning_rate", 0, above=True),
        validation=_validation(section["validation"]),
        validation_seed=None
        if section["validation_seed"] is None
        else _integer(section["validation_seed"], "train.validation_seed", 0, MAX_SEED),
        seed=_integer(section["seed"], "train.seed", 0, MAX_SEED),
        steps_per_execution=_integer(
            section["steps_per_execution"], "train.steps_per_execution", 1, MAX_STEPS_PER_EXECUTION
        ),
        input=_choice(section["input"], "train.input", TRAIN_INPUTS),
    )


def _check_network_size(data: DataParams, train: TrainParams) -> None:
    """The network must fit: training holds four float32 copies of every weight, and dense rows as float32."""
    weights = data.num_words * train.hidden_units[0]
    if weights > MAX_FIRST_LAYER_WEIGHTS:
        raise ParamsError(
            f"{PARAMS_FILE}: data.num_words x train.hidden_units[0] = {data.num_words:,} x {train.hidden_units[0]:,} = "
            f"{weights:,} first-layer weights ({4 * 4 * weights / 1e9:.1f} GB to train) is more than "
            f"{MAX_FIRST_LAYER_WEIGHTS:,}: lower one of them"
        )
    layers = [data.num_words, *train.hidden_units, 1]
    total = sum(rows * columns for rows, columns in zip(layers, layers[1:], strict=False))
    if total > MAX_WEIGHTS:
        raise ParamsError(
            f"{PARAMS_FILE}: train.hidden_units {list(train.hidden_units)} at data.num_words {data.num_words:,} make "
            f"{total:,} weights ({4 * 4 * total / 1e9:.1f} GB to train), more than {MAX_WEIGHTS:,}: use fewer or "
            "narrower layers"
        )
    dense_bytes = 4 * 2 * REVIEWS_PER_SPLIT * data.num_words
    if train.input == "dense" and dense_bytes > MAX_DENSE_ROW_BYTES:
        raise ParamsError(
            f"{PARAMS_FILE}: train.input dense at data.num_words {data.num_words:,} needs "
            f"{dense_bytes / 1e9:.1f} GB of float32 rows, more than {MAX_DENSE_ROW_BYTES / 1e9:.0f} GB: "
            "use train.input auto or sparse"
        )


def _models(raw: Any) -> dict[str, RegularizerSpec]:
    if not isinstance(raw, dict) or not 1 <= len(raw) <= MAX_MODELS:
        raise _fail("models", f"a mapping of 1 to {MAX_MODELS} model names", raw)
    models = {}
    for name, entry in raw.items():
        if not isinstance(name, str) or not MODEL_NAME.fullmatch(name) or len(name) > 64:
            raise _fail("models", "keyed by names of up to 64 letters, digits, _ and -", name)
        section = _mapping(entry, f"models.{name}", _names(RegularizerSpec))
        models[name] = RegularizerSpec(
            regularizer=_choice(section["regularizer"], f"models.{name}.regularizer", REGULARIZERS),
            rate=_number(section["rate"], f"models.{name}.rate", 0, MAX_RATE),
        )
    return models


def _evaluate(raw: Any) -> EvaluateParams:
    section = _mapping(raw, "evaluate", _names(EvaluateParams))
    return EvaluateParams(
        zero_threshold=_number(section["zero_threshold"], "evaluate.zero_threshold", 0, 1, above=True),
        kept_norm=_number(section["kept_norm"], "evaluate.kept_norm", 0, 100, above=True),
    )


def parse_yaml(text: str, path: Path = PARAMS_FILE) -> Any:
    """The data in a YAML text, exactly as DVC reads params.yaml and dvc.yaml (ruamel.yaml, safe, YAML 1.2).

    Raises:
        ParamsError: the text is not valid YAML, or repeats a key (which DVC refuses too).
    """
    try:
        return YAML(typ="safe").load(text)
    # ruamel raises ValueError for an integer of more digits than Python converts, RecursionError for
    # nesting deeper than Python's stack: both are YAML this loader cannot read.
    except (YAMLError, ValueError, OverflowError, RecursionError) as error:
        problem = " ".join(str(error).split())
        raise ParamsError(f"{path} is not valid YAML (as DVC reads it): {problem}") from None


def parse_params(text: str) -> Params:
    """Parse and validate the text of a params file.

    Args:
        text: YAML, as in `params.yaml`.

    Returns:
        The validated parameters.

    Raises:
        ParamsError: the first problem found, naming its key and value.
    """
    root = _mapping(parse_yaml(text), "", _names(Params))
    params = Params(
        data=_data(root["data"]),
        train=_train(root["train"]),
        models=_models(root["models"]),
        evaluate=_evaluate(root["evaluate"]),
    )
    _check_network_size(params.data, params.train)
    return params


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ParamsError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ParamsError(
            f"{path} is not UTF-8 text (byte {error.start} is 0x{error.object[error.start]:02x})"
        ) from None


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate `params.yaml` (see `parse_params`).

    What was read is kept, and every atomic output written afterwards first checks that the
    params this stage depends on still hold those values (`check_params_unchanged`).
    """
    global _params_read
    text = _read_text(path)
    params = parse_params(text)
    if _params_read is None:
        register_publish_check(_check_params_read)
    _params_read = (path, text)
    return params


# What the last `load_params` read: the file and its text.
_params_read: tuple[Path, str] | None = None


def _check_params_read() -> None:
    if _params_read is not None and os.environ.get("DVC_STAGE"):
        path, text = _params_read
        check_params_unchanged(parse_yaml(text, path), path)


def _value_at(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            return "(missing)"
        data = data[key]
    return data


def stage_params_keys(stage: str, dvc_file: Path = DVC_FILE) -> list[str]:
    """The params keys dvc.yaml lists for `stage` (`train@l1` resolves `${key}` to `l1`): what dvc.lock records."""
    group, _, key = stage.partition("@")
    definition = (parse_yaml(_read_text(dvc_file), dvc_file) or {}).get("stages", {}).get(group, {})
    entry = definition.get("do", definition) if key else definition
    keys = []
    for item in entry.get("params", []):
        names = list(item.values())[0] if isinstance(item, dict) else [item]  # `- other.yaml: [a, b]` form
        keys += [str(name).replace("${key}", key) for name in names]
    return keys


def check_params_unchanged(used: Any, path: Path = PARAMS_FILE) -> None:
    """Refuse to publish a DVC stage's outputs if a params key it depends on changed since the stage read it.

    DVC records the params it finds in params.yaml when the stage ends, so outputs made from
    the old values would be recorded, and cached, under the new ones. Outside DVC (no
    `DVC_STAGE`) there is no record to protect and nothing is checked.

    Raises:
        ParamsChangedError: naming the first changed key with its old and new value.
    """
    stage = os.environ.get("DVC_STAGE")
    if not stage:
        return
    try:
        now = parse_yaml(_read_text(path), path)
    except ParamsError as error:
        raise ParamsChangedError(f"{path} changed while {stage} ran and no longer reads: {error}; run again") from None
    for key in stage_params_keys(stage):
        change = _first_change(key, _value_at(used, key), _value_at(now, key))
        if change:
            raise ParamsChangedError(f"{path} changed while {stage} ran: {change}; run again")


def _first_change(key: str, before: Any, after: Any) -> str | None:
    """`key old → new` for the first leaf that differs (a section is searched key by key), None if none does."""
    if isinstance(before, dict) and isinstance(after, dict):
        for name in [*before, *(name for name in after if name not in before)]:
            change = _first_change(f"{key}.{name}", before.get(name, "(missing)"), after.get(name, "(missing)"))
            if change:
                return change
        return None
    return None if before == after else f"{key} {before!r} → {after!r}"
