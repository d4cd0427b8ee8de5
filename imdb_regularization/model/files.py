"""The files `train@<model>` writes into `models/<model>/`, and how `evaluate` and `plots` read them.

They hold what evaluation and plotting need (history, weights, test predictions) as plain
JSON and NumPy files, so neither stage has to import TensorFlow to load the model.

The readers trust nothing they read: a file that is missing, truncated, of another format, of
the wrong shape or holding values that training cannot produce is a `ModelFilesError` naming
the file and its first bad value. Shapes are checked from the array headers before any data
is read, so a header that declares a huge array allocates nothing.
"""

import json
import math
import os
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from imdb_regularization.atomic import save_array, write_json
from imdb_regularization.cli import StageError
from imdb_regularization.params import FIRST_WORD_INDEX

MODEL = "model.keras"
HISTORY = "history.json"
WEIGHTS = "weights.npz"
TEST_PREDICTIONS = "test_predictions.npy"
# The first line of the vocabulary `encode` writes (`model.encoded_arrays.vocabulary_tsv`).
VOCABULARY_HEADER = "index\tword\tcount"

# What `train` records per epoch: the epoch number, the loss with and without the penalty
# (`loss`, `bce`) and the accuracy, on the training and on the validation rows.
HISTORY_KEYS = ("epoch", "loss", "bce", "accuracy", "val_loss", "val_bce", "val_accuracy")
# Accuracies are fractions of rows; the other values are losses, which are never negative.
FRACTION_KEYS = ("accuracy", "val_accuracy")
# A history or metrics file holds a few numbers per epoch or per layer. A file far larger than
# that is not one the pipeline wrote, and is refused before it is read into memory.
MAX_JSON_BYTES = 16 << 20
HIDDEN_KERNEL = re.compile(r"hidden_\d+_kernel\.npy")
# Array members of an .npz, and .npy files, carry their shape in a header of at most this size.
MAX_HEADER_BYTES = 10_000
# The longest excerpt of a bad value an error message shows, so that it stays one short line.
MAX_SHOWN = 40
READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError)


class WeightShapes(NamedTuple):
    """What the weights' shapes follow: `data.num_words` and `train.hidden_units`."""

    num_words: int
    hidden_units: Sequence[int]


class ModelFilesError(StageError):
    """A file that one stage wrote and a later stage reads is missing, damaged or not what the writer writes."""


def write_model_files(
    directory: Path, *, history: dict[str, list], weights: dict[str, np.ndarray], test_predictions: np.ndarray
) -> None:
    """Everything but the Keras model itself (which only Keras can write)."""
    write_json(directory / HISTORY, history)
    # The stubs fear a weight named `allow_pickle`; the names are `<layer>_<weight>`.
    np.savez(directory / WEIGHTS, **weights)  # type: ignore[arg-type]
    save_array(directory / TEST_PREDICTIONS, test_predictions)


def read_history(directory: Path) -> dict[str, list]:
    """The per-epoch history `train` wrote: every key of `HISTORY_KEYS`, as many values each as epochs.

    Raises:
        ModelFilesError: the file is missing or malformed, lacks a key, or holds a value that is
            not a finite number in its range (epochs numbered 1, 2, ...; accuracies in [0, 1];
            losses >= 0).
    """
    path = directory / HISTORY
    return check_history(read_json_object(path), str(path))


def check_history(history: dict[str, Any], where: str) -> dict[str, list]:
    """`history` reduced to `HISTORY_KEYS`, once each list is checked (see `read_history`).

    Args:
        history: the JSON object read from a history file.
        where: the file's name, for error messages.

    Returns:
        The values of `HISTORY_KEYS`, by key.

    Raises:
        ModelFilesError: naming the first missing key or bad value.
    """
    missing = [key for key in HISTORY_KEYS if key not in history]
    if missing:
        raise ModelFilesError(f"{where} lacks {', '.join(missing)} (a history holds {', '.join(HISTORY_KEYS)})")
    epochs = history["epoch"]
    if not isinstance(epochs, list) or not epochs:
        raise ModelFilesError(f"{where}: epoch must be a non-empty list of epoch numbers, got {excerpt(epochs)}")
    for index, epoch in enumerate(epochs):
        if type(epoch) is not int or epoch != index + 1:
            raise ModelFilesError(f"{where}: epoch[{index}] is {excerpt(epoch)}; epochs are numbered 1, 2, 3, ...")
    for key in HISTORY_KEYS[1:]:
        values = history[key]
        if not isinstance(values, list):
            raise ModelFilesError(f"{where}: {key} must be a list of numbers, got {excerpt(values)}")
        if len(values) != len(epochs):
            raise ModelFilesError(f"{where}: {key} has {len(values)} values but epoch has {len(epochs)}")
        high, expected = (1.0, "in [0, 1]") if key in FRACTION_KEYS else (math.inf, ">= 0")
        for index, value in enumerate(values):
            if not _is_number_between(value, 0.0, high):
                raise ModelFilesError(
                    f"{where}: {key}[{index}] is {excerpt(value)}; expected a finite number {expected}"
                )
    return {key: history[key] for key in HISTORY_KEYS}


def read_test_labels(path: Path) -> np.ndarray:
    """The test labels (`data/encoded/y_test.npy`): a 1-D integer array of 0s and 1s holding both.

    Raises:
        ModelFilesError: the file is missing or not such an array.
    """
    labels = _read_array_file(path, shape=(None,), kinds="iu", kind_name="integers")
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if bad.size:
        raise ModelFilesError(f"{path}[{bad[0]}] is {labels[bad[0]]!s}; labels are 0 or 1")
    if labels.all() or not labels.any():
        held = "no labels" if labels.size == 0 else f"only label {labels[0]!s}"
        raise ModelFilesError(f"{path} holds {held}; the test scores need both classes")
    return labels


def read_test_predictions(directory: Path, *, rows: int) -> np.ndarray:
    """The predicted probabilities of label 1 on the test set: `rows` finite floats in [0, 1].

    Args:
        directory: `models/<model>/`.
        rows: the number of test labels; there is one prediction per label.

    Raises:
        ModelFilesError: the file is missing, of another shape or type, or holds a value that
            is not a probability.
    """
    path = directory / TEST_PREDICTIONS
    predictions = _read_array_file(
        path, shape=(rows,), kinds="f", kind_name="floating-point numbers", why=" (one per test label)"
    )
    # NaN fails both comparisons, so it counts as out of range too.
    bad = np.flatnonzero(~((predictions >= 0) & (predictions <= 1)))
    if bad.size:
        raise ModelFilesError(f"{path}[{bad[0]}] is {predictions[bad[0]]!s}; predictions are probabilities in [0, 1]")
    return predictions


def read_hidden_kernels(directory: Path, *, num_words: int, hidden_units: Sequence[int]) -> dict[str, np.ndarray]:
    """The kernel of each hidden (regularized) layer, by layer name (`hidden_1`, ...).

    The kernels must chain as the network does: `hidden_1`'s has `num_words` rows, each next
    layer's as many rows as the previous one has columns, and layer i has `hidden_units[i - 1]`
    columns. The shapes are checked before any weight is read.

    Args:
        directory: `models/<model>/`.
        num_words: `data.num_words`, the width of the network's input.
        hidden_units: `train.hidden_units`, the width of each hidden layer.

    Raises:
        ModelFilesError: `weights.npz` is missing or not an .npz archive, lacks a hidden layer's
            kernel or holds one of another layer, a kernel's shape or type is not the one
            above, or a weight is not finite.
    """
    path = directory / WEIGHTS
    with _open_weights(path) as archive:
        members = archive.namelist()
        expected = [f"hidden_{number}_kernel.npy" for number in range(1, len(hidden_units) + 1)]
        found = [name for name in members if HIDDEN_KERNEL.fullmatch(name)]
        if sorted(found) != sorted(expected):
            unexpected = sorted(set(found) - set(expected))
            problem = f"holds {unexpected[0]}" if unexpected else f"lacks {sorted(set(expected) - set(found))[0]}"
            raise ModelFilesError(
                f"{path} {problem}; train.hidden_units {list(hidden_units)} gives {', '.join(expected)}"
            )
        kernels, rows = {}, num_words
        for number, units in enumerate(hidden_units, start=1):
            name = f"hidden_{number}_kernel"
            why = f" (rows: {'data.num_words' if number == 1 else 'the previous layer'}; columns: train.hidden_units)"
            kernels[f"hidden_{number}"], rows = _read_weight(archive, path, name, (rows, units), why), units
    return kernels


def read_network_layers(
    directory: Path, *, num_words: int, hidden_units: Sequence[int]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (kernel, bias) of every dense layer: the hidden layers in order, then the output layer.

    What the one-word effects of `imdb_regularization.evaluation.words` need to rerun the network
    in NumPy. Shapes chain as in `read_hidden_kernels`; each bias has one value per column of its
    kernel, and the output layer has one unit.

    Args:
        directory: `models/<model>/`.
        num_words: `data.num_words`, the width of the network's input.
        hidden_units: `train.hidden_units`, the width of each hidden layer.

    Raises:
        ModelFilesError: as `read_hidden_kernels`, and for a missing or misshapen bias or output weight.
    """
    kernels = read_hidden_kernels(directory, num_words=num_words, hidden_units=hidden_units)
    path = directory / WEIGHTS
    layers = []
    with _open_weights(path) as archive:
        for number, units in enumerate(hidden_units, start=1):
            bias = _read_weight(archive, path, f"hidden_{number}_bias", (units,), " (one per unit: train.hidden_units)")
            layers.append((kernels[f"hidden_{number}"], bias))
        rows = hidden_units[-1]
        output_kernel = _read_weight(archive, path, "output_kernel", (rows, 1), " (the last hidden layer's units, 1)")
        layers.append((output_kernel, _read_weight(archive, path, "output_bias", (1,), " (one output unit)")))
    return layers


def _open_weights(path: Path) -> zipfile.ZipFile:
    """`weights.npz` opened as a zip archive, once no member is stored twice."""
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ModelFilesError(f"{path} is missing") from None
    except (OSError, zipfile.BadZipFile) as error:
        raise ModelFilesError(f"{path} is not an .npz archive: {_one_line(error)}") from None
    twice = sorted(name for name, count in Counter(archive.namelist()).items() if count > 1)
    if twice:
        archive.close()
        raise ModelFilesError(f"{path} holds {twice[0]} more than once")
    return archive


def _read_weight(archive: zipfile.ZipFile, path: Path, name: str, shape: tuple[int, ...], why: str) -> np.ndarray:
    """The float array `<name>.npy` of a weights archive, of `shape` and finite, or a `ModelFilesError`."""
    where = f"{path}: {name}"
    try:
        info = archive.getinfo(f"{name}.npy")
    except KeyError:
        raise ModelFilesError(f"{path} lacks {name}.npy, which train writes for every layer") from None
    try:
        with archive.open(info) as stream:
            weight = _read_array(stream, info.file_size, where, shape=shape, kinds="f", kind_name="floats", why=why)
    except READ_ERRORS as error:
        raise ModelFilesError(f"{where} cannot be read: {_one_line(error)}") from None
    finite = np.isfinite(weight)
    if not finite.all():
        at = tuple(int(index) for index in np.argwhere(~finite)[0])
        raise ModelFilesError(f"{where}[{', '.join(map(str, at))}] is {weight[at]!s}; weights must be finite")
    return weight


def read_vocabulary(path: Path, *, num_words: int) -> dict[int, str]:
    """The words of `data/encoded/vocabulary.tsv` (a header, then index, word, training-set count per line), by index.

    Args:
        path: the vocabulary file `encode` writes.
        num_words: `data.num_words`; indices run from `FIRST_WORD_INDEX` (4) to at most `num_words - 1`.

    Raises:
        ModelFilesError: the file is missing, not UTF-8, lacks the header, or a line is not `index<TAB>word<TAB>count`
            with a new index in that range.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFilesError(f"{path} is missing: run the encode stage") from None
    except OSError as error:
        raise ModelFilesError(f"{path} cannot be read: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ModelFilesError(
            f"{path} is not UTF-8 text: byte {data[error.start]:#04x} at offset {error.start}"
        ) from None
    lines = text.splitlines()
    if not lines or lines[0] != VOCABULARY_HEADER:
        raise ModelFilesError(
            f"{path} starts with {excerpt(lines[0] if lines else '')}; expected {VOCABULARY_HEADER!r}"
        )
    vocabulary: dict[int, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        index = int(fields[0]) if len(fields) == 3 and fields[0].isdecimal() and len(fields[0]) < 10 else -1
        if (
            not FIRST_WORD_INDEX <= index < num_words
            or index in vocabulary
            or not fields[1]
            or not fields[2].isdecimal()
        ):
            raise ModelFilesError(
                f"{path} line {number} is {excerpt(line)}; expected index<TAB>word<TAB>count, "
                f"a new index in [{FIRST_WORD_INDEX}, {num_words - 1}] (data.num_words {num_words})"
            )
        vocabulary[index] = fields[1]
    return vocabulary


def hidden_kernels_of(layers: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """The hidden layers' kernels by name (`hidden_1`, ...) from `read_network_layers`' layers, output layer aside."""
    return {f"hidden_{number}": kernel for number, (kernel, _) in enumerate(layers[:-1], start=1)}


def flat_hidden_weights(layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The kernels of all hidden layers, flattened into one array (for the weight histogram)."""
    return np.concatenate([kernel.ravel() for kernel in hidden_kernels_of(layers).values()])


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object a history or metrics file holds, read only if it is one well-formed object.

    Raises:
        ModelFilesError: the file is missing, unreadable, larger than `MAX_JSON_BYTES`, not
            UTF-8, not JSON, nested without end, repeats a key in one object, or holds
            something other than an object.
    """
    try:
        with path.open("rb") as file:
            data = file.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise ModelFilesError(f"{path} is missing") from None
    except OSError as error:
        raise ModelFilesError(f"{path} cannot be read: {error.strerror or error}") from None
    if len(data) > MAX_JSON_BYTES:
        raise ModelFilesError(f"{path} is larger than {MAX_JSON_BYTES:,} bytes, far more than the pipeline writes")
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as error:
        raise ModelFilesError(
            f"{path} is not UTF-8 text: byte {data[error.start]:#04x} at offset {error.start}"
        ) from None
    except json.JSONDecodeError as error:
        raise ModelFilesError(
            f"{path} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:
        raise ModelFilesError(f"{path} is not valid JSON: nested too deeply") from None
    except ValueError as error:
        # A repeated key, or an integer with more digits than Python converts.
        raise ModelFilesError(f"{path} is not valid JSON: {_one_line(error)}") from None
    if not isinstance(value, dict):
        raise ModelFilesError(f"{path} holds {type(value).__name__} {excerpt(value)}; expected a JSON object")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict; a key given twice is refused, where `json` would keep only the last value."""
    value = dict(pairs)
    if len(value) < len(pairs):
        keys = [key for key, _ in pairs]
        raise ValueError(f"key {next(key for key in keys if keys.count(key) > 1)!r} appears twice in one object")
    return value


def _read_array_file(
    path: Path, *, shape: tuple[int | None, ...], kinds: str, kind_name: str, why: str = ""
) -> np.ndarray:
    """The array in the .npy file `path`, checked as in `_read_array`; a missing or unreadable file named."""
    try:
        with path.open("rb") as file:
            return _read_array(
                file, os.fstat(file.fileno()).st_size, str(path), shape=shape, kinds=kinds, kind_name=kind_name, why=why
            )
    except FileNotFoundError:
        raise ModelFilesError(f"{path} is missing") from None
    except READ_ERRORS as error:
        raise ModelFilesError(f"{path} cannot be read: {_one_line(error)}") from None


def _read_array(
    stream: IO[bytes],
    stored_bytes: int,
    where: str,
    *,
    shape: tuple[int | None, ...],
    kinds: str,
    kind_name: str,
    why: str,
) -> np.ndarray:
    """The array in an .npy stream of `stored_bytes` bytes, read only once its header is as expected.

    Args:
        stream: a seekable binary stream at the start of the .npy data.
        stored_bytes: the length of the stream, which must be the header's and the declared data's.
        where: the file (and archive member), for error messages.
        shape: the expected shape; None for a dimension of any length.
        kinds: the `dtype.kind` letters allowed (`f` floats, `i`/`u` integers).
        kind_name: those kinds in words, for error messages.
        why: where the expected shape comes from, appended to a shape error.

    Raises:
        ModelFilesError: the header is not an .npy header, declares another shape or type, or
            declares more or fewer bytes than the stream holds.
    """
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            declared, _, dtype = np.lib.format.read_array_header_1_0(stream, max_header_size=MAX_HEADER_BYTES)
        elif version == (2, 0):
            declared, _, dtype = np.lib.format.read_array_header_2_0(stream, max_header_size=MAX_HEADER_BYTES)
        else:
            raise ModelFilesError(f"{where} is in .npy format {version[0]}.{version[1]}, which NumPy never writes here")
    except ValueError as error:
        raise ModelFilesError(f"{where} is not a NumPy array: {_one_line(error)}") from None
    if dtype.hasobject:
        raise ModelFilesError(f"{where} holds Python objects, which are never unpickled; expected {kind_name}")
    if dtype.kind not in kinds:
        raise ModelFilesError(f"{where} holds {dtype}; expected {kind_name}")
    if len(declared) != len(shape) or any(
        length not in (None, actual) for length, actual in zip(shape, declared, strict=True)
    ):
        wanted = ", ".join("n" if length is None else str(length) for length in shape)
        raise ModelFilesError(f"{where} has shape {declared}; expected ({wanted}{',' if len(shape) == 1 else ''}){why}")
    data_bytes, declared_bytes = stored_bytes - stream.tell(), math.prod(declared) * dtype.itemsize
    if data_bytes != declared_bytes:
        raise ModelFilesError(
            f"{where} declares {declared_bytes:,} bytes of data ({declared} {dtype}) but holds {data_bytes:,}"
        )
    stream.seek(0)
    return np.lib.format.read_array(stream, allow_pickle=False, max_header_size=MAX_HEADER_BYTES)


def _is_number_between(value: Any, low: float, high: float) -> bool:
    """Whether `value` is a JSON number (not a boolean) that is finite and within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        number = float(value)
    except OverflowError:
        return False
    return math.isfinite(number) and low <= number <= high


def excerpt(value: Any) -> str:
    """`value` as a short one-line excerpt for an error message."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
