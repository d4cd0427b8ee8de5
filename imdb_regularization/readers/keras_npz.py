"""Keras' `imdb.npz`: word-rank sequences and labels, loaded without letting its pickles run code."""

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from imdb_regularization.readers.sources import ARRAY_NAMES, SPLITS, DataError

# Rebuilding the object arrays inside imdb.npz takes these globals and no others;
# refusing the rest keeps a tampered file from running code through pickle.
NUMPY_PICKLE_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }
)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in NUMPY_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_npy(stream: io.BytesIO) -> np.ndarray:
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version[0] == 1 else np.lib.format.read_array_header_2_0
    _, _, dtype = read_header(stream)
    if not dtype.hasobject:
        stream.seek(0)
        return np.lib.format.read_array(stream, allow_pickle=False)
    return _NumpyOnlyUnpickler(stream).load()


def read_keras_npz(path: Path) -> dict[str, np.ndarray]:
    """Load Keras' imdb.npz without letting its pickles run code.

    Raises:
        DataError: not a zip, a member missing, or a member that is not a plain array of the right kind.
    """
    arrays = {}
    name = ""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            for name in ARRAY_NAMES:
                if f"{name}.npy" not in names:
                    raise DataError(f"{path} has no {name} array (it holds {', '.join(sorted(names)) or 'nothing'})")
                arrays[name] = _read_npy(io.BytesIO(archive.read(f"{name}.npy")))
    except zipfile.BadZipFile:
        raise DataError(f"{path} is not an .npz (zip) file") from None
    except (pickle.UnpicklingError, ValueError, EOFError) as error:
        raise DataError(f"{path}: cannot read {name}: {error}") from None
    _check_keras_arrays(path, arrays)
    return arrays


def _check_keras_arrays(path: Path, arrays: dict[str, Any]) -> None:
    """Reject what the allowed pickle globals can still build but is not IMDB data, such as a bare dtype."""
    for name, array in arrays.items():
        sequences = name.startswith("x_")
        if not isinstance(array, np.ndarray) or array.dtype.kind not in ("iubO" if sequences else "iub"):
            found = f"{array.dtype} array" if isinstance(array, np.ndarray) else type(array).__name__
            raise DataError(f"{path}: {name} should hold {'sequences' if sequences else 'integer labels'}, got {found}")
    for split in SPLITS:
        if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise DataError(f"{path}: x_{split} and y_{split} differ in length")
