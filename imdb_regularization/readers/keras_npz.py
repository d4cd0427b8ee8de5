"""Keras' `imdb.npz`: word-rank sequences and labels, loaded without letting its pickles run code, and checked.

Every value is checked, never cast, so nothing reaches the encoding that it would silently wrap or truncate:

- sizes, before anything is decompressed: each member's decompressed size (the zip's central directory)
  against `MAX_MEMBER_BYTES`, and a plain array's shape × item size (its .npy header) against the bytes
  the member holds, so a zip bomb or a lying header fails at once instead of exhausting memory;
- `x_<split>`: a 1-D object array of sequences (lists, as Keras writes them; tuples and 1-D integer arrays
  too; NumPy integer scalars inside them are fine), or a 2-D integer array; every rank an integer in
  [0, `MAX_WORD_RANK`);
- `y_<split>`: a 1-D integer or boolean array of 0s and 1s. Float labels are refused even when they are
  exactly 0.0 and 1.0: Keras writes integers, and refusing floats spares deciding which float is close
  enough to a label;
- each split: as many labels as reviews, at least one review, and both labels present.

Every problem is one `DataError` naming the file, the array and the first bad value with its position.
"""

import io
import math
import pickle
import zipfile
import zlib
from collections import Counter
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from imdb_regularization.readers.sources import ARRAY_NAMES, SPLITS, DataError

# The largest decompressed member read. Keras' own members are a small fraction of this; the bound
# keeps the unpickled lists, several times the size of their pickle, well inside a machine's memory.
MAX_MEMBER_BYTES = 256 << 20
# Word ranks must lie below this. Keras' imdb.npz ranks fewer than a hundred thousand words; the
# encoding builds a table as long as the largest rank, so the bound keeps that table small.
MAX_WORD_RANK = 1 << 22
SEQUENCE_TYPES = (list, tuple, np.ndarray)
# What reading a damaged member raises besides `_Unreadable`: RuntimeError for an encrypted member,
# NotImplementedError for a compression zipfile cannot read, OSError for an entry whose recorded
# offset lies outside the file, the rest for damaged compressed data or headers.
MEMBER_READ_ERRORS = (ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, OSError)


class _PickledDtype:
    """A dtype the pickle names, made real only once its whole state proves to be that of a plain dtype.

    Handing the pickle `numpy.dtype` itself would let it set any state, and some states crash NumPy.
    """

    def __init__(self, name: object, align: object = False, copy: object = True):
        if not isinstance(name, str) or name not in PICKLED_DTYPE_NAMES:
            raise pickle.UnpicklingError(f"refusing dtype {name!r:.40}")
        self.name = name
        self.dtype: np.dtype | None = None

    def __setstate__(self, state: object) -> None:
        for dtype in (np.dtype(self.name), np.dtype(self.name).newbyteorder()):
            if state == dtype.__reduce__()[2]:
                self.dtype = dtype
                return
        raise pickle.UnpicklingError(f"refusing the state {state!r:.60} of dtype {self.name}")


def _real_dtype(dtype: object) -> np.dtype:
    if not isinstance(dtype, _PickledDtype) or dtype.dtype is None:
        raise pickle.UnpicklingError(f"expected a dtype, got {type(dtype).__name__}")
    return dtype.dtype


class _PickledArray:
    """An array the pickle rebuilds, built by NumPy's own constructors once its state is checked."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5) or (len(state) == 5 and state[0] != 1):
            raise pickle.UnpicklingError("an array state that NumPy does not write")
        shape, dtype, fortran_order, data = state[-4:]
        if not isinstance(shape, tuple) or not all(type(size) is int and size >= 0 for size in shape):
            raise pickle.UnpicklingError(f"the array shape {shape!r:.40} is not a tuple of sizes")
        dtype, count = _real_dtype(dtype), math.prod(shape)
        if dtype.hasobject and isinstance(data, list) and len(data) == count:
            items = (item.array if isinstance(item, _PickledArray) else item for item in data)
            flat = np.fromiter(items, dtype=object, count=count)
        elif not dtype.hasobject and isinstance(data, bytes) and len(data) == count * dtype.itemsize:
            flat = np.frombuffer(data, dtype=dtype, count=count).copy()
        else:
            raise pickle.UnpicklingError(f"the data does not fit an array of {dtype} and shape {shape}")
        self.array = flat.reshape(shape, order="F" if fortran_order else "C")


class _NdarrayType:
    """What the pickle gets for `numpy.ndarray`: only a name to pass to `_reconstruct`."""


def _reconstruct(subtype: object, shape: object, tag: object) -> _PickledArray:
    if subtype is not _NdarrayType or shape != (0,) or tag not in (b"b", "b"):
        raise pickle.UnpicklingError("refusing an array constructor that NumPy does not write")
    return _PickledArray()


def _scalar(dtype: object, data: object) -> Any:
    real = _real_dtype(dtype)
    if real.hasobject:
        return data
    if not isinstance(data, bytes) or len(data) != real.itemsize:
        raise pickle.UnpicklingError(f"the bytes of a {real} scalar do not fit it")
    return np.frombuffer(data, dtype=real)[0]


# Rebuilding the object arrays inside imdb.npz takes these globals and no others, each replaced by a
# stand-in that accepts only what NumPy writes: refusing everything else keeps a tampered file from
# running code through pickle, or from crashing NumPy with a state it never wrote. `scalar` rebuilds
# the NumPy integer scalars an array holds when NumPy wrote it from lists of NumPy integers.
NUMPY_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NdarrayType,
    ("numpy", "dtype"): _PickledDtype,
    **{(module, "_reconstruct"): _reconstruct for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): _scalar for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
}
PICKLED_DTYPE_NAMES = frozenset({"O8", "b1", *(f"{kind}{size}" for kind in "iu" for size in (1, 2, 4, 8))})


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in NUMPY_PICKLE_GLOBALS:
            return NUMPY_PICKLE_GLOBALS[module, name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


class _Unreadable(ValueError):
    """A member's bytes do not make an array."""


def _read_npy(data: bytes, member: str) -> Any:
    """The array stored in the .npy bytes `data`, refusing a header that declares more data than there is."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version[0] == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(stream)
    except Exception as error:  # noqa: BLE001 - NumPy's header parser fails on damaged bytes in many ways
        raise _Unreadable(f"{member} has no valid .npy header: {error}") from None
    if dtype.hasobject:
        try:
            loaded = _NumpyOnlyUnpickler(stream).load()
        except MemoryError:
            raise _Unreadable(f"{member} declares an object too large for memory") from None
        except Exception as error:  # noqa: BLE001 - any failure to rebuild untrusted bytes means they are damaged
            raise _Unreadable(str(error) or type(error).__name__) from None
        if isinstance(loaded, _PickledArray):
            if loaded.array is None:
                raise _Unreadable(f"{member} holds an array without its data")
            return loaded.array
        return loaded
    declared, held = math.prod(shape) * dtype.itemsize, len(data) - stream.tell()
    if declared != held:
        raise _Unreadable(f"{member} declares shape {shape} of {dtype} ({declared:,} bytes) but holds {held:,} bytes")
    stream.seek(0)
    return np.lib.format.read_array(stream, allow_pickle=False)


def _member(path: Path, archive: zipfile.ZipFile, name: str, max_member_bytes: int) -> zipfile.ZipInfo:
    """The zip entry of array `name`, checked from the central directory before anything is decompressed."""
    member = f"{name}.npy"
    counts = Counter(archive.namelist())
    if member not in counts:
        raise DataError(f"{path} has no {name} array (it holds {', '.join(sorted(counts)) or 'nothing'})")
    if counts[member] > 1:
        raise DataError(f"{path} holds {member} {counts[member]} times")
    info = archive.getinfo(member)
    if info.file_size > max_member_bytes:
        raise DataError(
            f"{path}: {member} decompresses to {info.file_size:,} bytes, "
            f"more than the {max_member_bytes:,} allowed for one array"
        )
    return info


def read_keras_npz(path: Path, *, max_member_bytes: int = MAX_MEMBER_BYTES) -> dict[str, np.ndarray]:
    """Load Keras' imdb.npz without letting its pickles run code, and check every array (see the module).

    Args:
        path: the .npz file.
        max_member_bytes: the largest decompressed size of one array's member.

    Returns:
        The arrays named in `ARRAY_NAMES`, as stored.

    Raises:
        DataError: not a zip, a member missing, repeated, too large or unreadable, or an array that is
            not IMDB data; the message names the array and its first bad value.
    """
    arrays = {}
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        raise DataError(f"{path} is not an .npz (zip) file") from None
    with archive:
        for name in ARRAY_NAMES:
            info = _member(path, archive, name, max_member_bytes)
            try:
                arrays[name] = _read_npy(archive.read(info), info.filename)
            except MEMBER_READ_ERRORS as error:
                raise DataError(f"{path}: cannot read {name}: {error}") from None
    for split in SPLITS:
        _check_split(path, split, arrays[f"x_{split}"], arrays[f"y_{split}"])
    return arrays


def _check_split(path: Path, split: str, sequences: Any, labels: Any) -> None:
    _check_labels(path, f"y_{split}", labels)
    _check_sequences(path, f"x_{split}", sequences)
    if len(sequences) != len(labels):
        raise DataError(f"{path}: x_{split} holds {len(sequences)} reviews but y_{split} {len(labels)} labels")
    if not len(labels):
        raise DataError(f"{path}: the {split} split is empty (x_{split} and y_{split} hold no reviews)")
    for label in (0, 1):
        if not np.any(labels == label):
            raise DataError(f"{path}: y_{split} holds no label {label}: each split needs reviews of both labels")


def _found(array: Any) -> str:
    if isinstance(array, np.ndarray):
        return f"a {array.ndim}-D {array.dtype} array of shape {array.shape}"
    return type(array).__name__


def _check_labels(path: Path, name: str, labels: Any) -> None:
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or labels.dtype.kind not in "iub":
        raise DataError(f"{path}: {name} should be a 1-D integer array of labels 0 and 1, got {_found(labels)}")
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if bad.size:
        raise DataError(f"{path}: {name}[{bad[0]}] is {labels[bad[0]]}; labels must be 0 or 1")


def _describe(value: Any) -> str:
    if _is_integer(type(value)):
        number = int(value)
        # Python refuses to print integers of thousands of digits; the size says enough.
        return str(number) if number.bit_length() <= 128 else f"an integer of {number.bit_length():,} bits"
    text = repr(value)
    return f"{text[:40]}... ({type(value).__name__})" if len(text) > 40 else f"{text} ({type(value).__name__})"


def _is_integer(kind: type) -> bool:
    return issubclass(kind, (int, np.integer)) and not issubclass(kind, bool)


def _bad_rank(path: Path, position: str, value: Any) -> DataError:
    return DataError(f"{path}: {position} is {_describe(value)}; word ranks must be integers in [0, {MAX_WORD_RANK:,})")


def _check_sequences(path: Path, name: str, sequences: Any) -> None:
    if isinstance(sequences, np.ndarray) and sequences.ndim == 2 and sequences.dtype.kind in "iu":
        bad = np.flatnonzero((sequences < 0) | (sequences >= MAX_WORD_RANK))
        if bad.size:
            row, column = np.unravel_index(bad[0], sequences.shape)
            raise _bad_rank(path, f"{name}[{row}][{column}]", sequences[row, column])
    elif isinstance(sequences, np.ndarray) and sequences.ndim == 1 and sequences.dtype == object:
        if not _all_ranks(sequences):
            _raise_first_bad_rank(path, name, sequences)
    else:
        raise DataError(
            f"{path}: {name} should be a 1-D object array of word-rank sequences or a 2-D integer array, "
            f"got {_found(sequences)}"
        )


def _all_ranks(sequences: np.ndarray) -> bool:
    """Whether every review is a sequence of integer ranks in range: a fast check, in C, of the common case."""
    if not set(map(type, sequences)) <= {list, tuple}:
        return False
    if not all(map(_is_integer, set(map(type, chain.from_iterable(sequences))))):
        return False
    try:
        ranks = np.fromiter(chain.from_iterable(sequences), dtype=np.int64, count=sum(map(len, sequences)))
    except OverflowError:
        return False
    return not ranks.size or (ranks.min() >= 0 and ranks.max() < MAX_WORD_RANK)


def _raise_first_bad_rank(path: Path, name: str, sequences: np.ndarray) -> None:
    """Raise a DataError naming the first value that is not a rank; return if there is none."""
    for row, sequence in enumerate(sequences):
        if not isinstance(sequence, SEQUENCE_TYPES) or (isinstance(sequence, np.ndarray) and sequence.ndim != 1):
            raise DataError(f"{path}: {name}[{row}] is {_describe(sequence)}, not a sequence of word ranks")
        for column, value in enumerate(sequence):
            if not _is_integer(type(value)) or not 0 <= value < MAX_WORD_RANK:
                raise _bad_rank(path, f"{name}[{row}][{column}]", value)
