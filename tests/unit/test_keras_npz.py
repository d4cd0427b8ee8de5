"""Keras' imdb.npz: every value checked, never cast; sizes bounded before anything is decompressed; pickles
that NumPy would not write refused, whether they would run code or crash NumPy.
"""

import io
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from imdb_regularization.features.multi_hot import encode_keras
from imdb_regularization.readers.keras_npz import MAX_MEMBER_BYTES, MAX_WORD_RANK, read_keras_npz
from imdb_regularization.readers.sources import DataError

RANKS = f"word ranks must be integers in [0, {MAX_WORD_RANK:,})"


def sequences(*reviews: list) -> np.ndarray:
    """An object array of lists, as Keras' imdb.npz stores its reviews."""
    array = np.empty(len(reviews), dtype=object)
    for row, review in enumerate(reviews):
        array[row] = review
    return array


def good_arrays() -> dict[str, np.ndarray]:
    return {
        "x_train": sequences([1, 2, 3], [200, 7]),
        "y_train": np.array([1, 0]),
        "x_test": sequences([5, 5], [9]),
        "y_test": np.array([0, 1]),
    }


def write_npz(path: Path, **changes: object) -> Path:
    np.savez(path, **{**good_arrays(), **changes})
    return path


# Values: each bad one named with its array and position.

BAD_VALUES = {
    "label-2": ({"y_train": np.array([1, 2])}, "y_train[1] is 2; labels must be 0 or 1"),
    "label-negative": ({"y_train": np.array([-1, 0])}, "y_train[0] is -1; labels must be 0 or 1"),
    "label-256-in-uint16": ({"y_test": np.array([0, 256], np.uint16)}, "y_test[1] is 256; labels must be 0 or 1"),
    "labels-float": (
        {"y_train": np.array([1.0, 0.0])},
        "y_train should be a 1-D integer array of labels 0 and 1, got a 1-D float64 array of shape (2,)",
    ),
    "labels-text": (
        {"y_train": np.array(["1", "0"])},
        "y_train should be a 1-D integer array of labels 0 and 1, got a 1-D <U1 array of shape (2,)",
    ),
    "labels-2d": (
        {"y_train": np.array([[1], [0]])},
        "y_train should be a 1-D integer array of labels 0 and 1, got a 2-D int64 array of shape (2, 1)",
    ),
    "labels-one-class": (
        {"y_test": np.array([1, 1])},
        "y_test holds no label 0: each split needs reviews of both labels",
    ),
    "lengths-differ": ({"y_train": np.array([1, 0, 1])}, "x_train holds 2 reviews but y_train 3 labels"),
    "empty-split": (
        {"x_test": sequences(), "y_test": np.array([], dtype=np.int64)},
        "the test split is empty (x_test and y_test hold no reviews)",
    ),
    "rank-negative": ({"x_train": sequences([1, -2, 3], [4])}, f"x_train[0][1] is -2; {RANKS}"),
    "rank-float": ({"x_train": sequences([1, 2.5], [4])}, f"x_train[0][1] is 2.5 (float); {RANKS}"),
    "rank-huge": ({"x_train": sequences([1], [4, 2**40])}, f"x_train[1][1] is 1099511627776; {RANKS}"),
    "rank-beyond-int64": ({"x_test": sequences([2**70], [4])}, f"x_test[0][0] is {2**70}; {RANKS}"),
    "rank-uint64-max": (
        {"x_test": sequences([np.uint64(2**64 - 1)], [4])},
        f"x_test[0][0] is {2**64 - 1}; {RANKS}",
    ),
    "rank-at-the-bound": ({"x_test": sequences([MAX_WORD_RANK], [4])}, f"x_test[0][0] is {MAX_WORD_RANK}; {RANKS}"),
    "rank-bool": ({"x_train": sequences([True], [4])}, f"x_train[0][0] is True (bool); {RANKS}"),
    "rank-text": ({"x_train": sequences(["7"], [4])}, f"x_train[0][0] is '7' (str); {RANKS}"),
    "review-not-a-sequence": ({"x_train": sequences(5, [4])}, "x_train[0] is 5, not a sequence of word ranks"),
    "review-a-dict": ({"x_train": sequences({1: 2}, [4])}, "x_train[0] is {1: 2} (dict), not a sequence of word ranks"),
    "padded-rank-negative": ({"x_test": np.array([[1, -3], [2, 2]])}, f"x_test[0][1] is -3; {RANKS}"),
    "reviews-1d-integers": (
        {"x_train": np.array([1, 2])},
        "x_train should be a 1-D object array of word-rank sequences or a 2-D integer array, "
        "got a 1-D int64 array of shape (2,)",
    ),
    "reviews-2d-floats": (
        {"x_train": np.array([[0.5], [1.5]])},
        "x_train should be a 1-D object array of word-rank sequences or a 2-D integer array, "
        "got a 2-D float64 array of shape (2, 1)",
    ),
}


@pytest.mark.parametrize(("changes", "message"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_value_is_named_with_its_array_and_position(tmp_path, changes, message):
    path = write_npz(tmp_path / "imdb.npz", **changes)
    with pytest.raises(DataError) as failure:
        read_keras_npz(path)
    assert str(failure.value) == f"{path}: {message}"


GOOD_FORMS = {
    "lists": {},
    "numpy-integer-scalars": {"x_train": sequences([np.int64(1), np.int32(2), np.uint16(3)], [np.int64(200), 7])},
    "tuples-and-arrays": {"x_train": sequences((1, 2, 3), np.array([200, 7], np.int32))},
    "padded-2d": {"x_test": np.array([[5, 5], [9, 0]], np.int32)},
    "bool-and-uint8-labels": {"y_train": np.array([True, False]), "y_test": np.array([0, 1], np.uint8)},
    "empty-review": {"x_test": sequences([], [9])},
}


@pytest.mark.parametrize("changes", GOOD_FORMS.values(), ids=GOOD_FORMS.keys())
def test_npz_files_numpy_writes_load_as_numpy_loads_them(tmp_path, changes):
    path = write_npz(tmp_path / "imdb.npz", **changes)
    arrays = read_keras_npz(path)
    with np.load(path, allow_pickle=True) as expected:
        for name in expected.files:
            assert arrays[name].dtype == expected[name].dtype
            assert arrays[name].shape == expected[name].shape
            assert [np.asarray(row).tolist() for row in arrays[name]] == [
                np.asarray(row).tolist() for row in expected[name]
            ]
    encode_keras(arrays, num_words=10)  # and the encoding takes them as they are


def test_numpy_integer_scalars_encode_like_plain_integers(tmp_path):
    plain = encode_keras(read_keras_npz(write_npz(tmp_path / "plain.npz")), num_words=300)
    scalars = sequences([np.int64(1), np.int64(2), np.int64(3)], [np.int64(200), np.int64(7)])
    numpy_written = encode_keras(read_keras_npz(write_npz(tmp_path / "scalars.npz", x_train=scalars)), num_words=300)
    for name, array in plain.items():
        assert np.array_equal(numpy_written[name], array)


# Sizes: refused from the zip's central directory or the .npy header, before anything is decompressed.


def _deflated(data_parts: list[bytes], repeat_last: int = 1) -> tuple[bytes, int, int]:
    """Raw deflate data of the parts, the last one `repeat_last` times, with its CRC-32 and size.

    Each part is compressed once after a full flush, which resets the compressor, so a part repeated
    a thousand times costs one compression: this is how a zip bomb is made cheaply.
    """
    compressed, crc, size = [], 0, 0
    for index, part in enumerate(data_parts):
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        block = compressor.compress(part) + compressor.flush(zlib.Z_FULL_FLUSH)
        times = repeat_last if index == len(data_parts) - 1 else 1
        compressed.append(block * times)
        for _ in range(times):
            crc = zlib.crc32(part, crc)
        size += len(part) * times
    compressed.append(zlib.compressobj(9, zlib.DEFLATED, -15).flush())  # the final, empty block
    return b"".join(compressed), crc, size


def _write_zip(path: Path, members: dict[str, tuple[bytes, int, int]]) -> Path:
    """A zip of already-deflated members (name -> data, CRC-32, size), written field by field."""
    local, central = bytearray(), bytearray()
    for name, (data, crc, size) in members.items():
        encoded = name.encode()
        fields = struct.pack("<HHHHHIIIHH", 20, 0, 8, 0, 0, crc, len(data), size, len(encoded), 0)
        central += b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHII", 0, 0, 0, 0, len(local))
        central += encoded
        local += b"PK\x03\x04" + fields + encoded + data
    end = struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(central), len(local), 0)
    path.write_bytes(bytes(local + central) + b"PK\x05\x06" + end)
    return path


def _npy_header(shape: tuple[int, ...], descr: str = "|i1") -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
    return header.getvalue()


def _npy_members() -> dict[str, bytes]:
    """The .npy bytes of each good array, named as in an .npz."""
    members = {}
    for name, array in good_arrays().items():
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=True)
        members[f"{name}.npy"] = buffer.getvalue()
    return members


def _small_members() -> dict[str, tuple[bytes, int, int]]:
    return {name: _deflated([data]) for name, data in _npy_members().items()}


def test_a_zip_bomb_is_refused_from_its_central_directory_before_decompressing(tmp_path):
    # A valid 2-D int8 array of zeros, 1 MiB past the bound, in a file of well under a megabyte.
    rows = MAX_MEMBER_BYTES // (1 << 20) + 1
    bomb = _deflated([_npy_header((rows, 1 << 20)), bytes(1 << 20)], repeat_last=rows)
    path = _write_zip(tmp_path / "imdb.npz", {**_small_members(), "x_train.npy": bomb})
    assert path.stat().st_size < 1 << 20
    with pytest.raises(DataError) as failure:
        read_keras_npz(path)
    assert str(failure.value) == (
        f"{path}: x_train.npy decompresses to {bomb[2]:,} bytes, "
        f"more than the {MAX_MEMBER_BYTES:,} allowed for one array"
    )


def test_the_member_bound_is_a_parameter(tmp_path):
    path = write_npz(tmp_path / "imdb.npz", x_test=np.zeros((2, 1000), np.int16))
    assert read_keras_npz(path, max_member_bytes=4200)["x_test"].shape == (2, 1000)
    with pytest.raises(DataError, match=r"x_test.npy decompresses to 4,128 bytes, more than the 4,000 allowed"):
        read_keras_npz(path, max_member_bytes=4000)


def test_an_npy_header_declaring_more_than_its_data_is_refused_before_allocating(tmp_path):
    # NumPy would first allocate the terabyte the header declares, then find the data missing.
    header = _npy_header((10**6, 10**6))
    path = _write_zip(tmp_path / "imdb.npz", {**_small_members(), "x_test.npy": _deflated([header + bytes(16)])})
    with pytest.raises(DataError) as failure:
        read_keras_npz(path)
    assert str(failure.value) == (
        f"{path}: cannot read x_test: x_test.npy declares shape (1000000, 1000000) of int8 "
        "(1,000,000,000,000 bytes) but holds 16 bytes"
    )


def test_a_member_stored_twice_is_refused(tmp_path):
    members = _small_members()
    path = _write_zip(tmp_path / "imdb.npz", members)
    with zipfile.ZipFile(path, "a") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("y_test.npy", b"another")
    with pytest.raises(DataError) as failure:
        read_keras_npz(path)
    assert str(failure.value) == f"{path} holds y_test.npy 2 times"


# Pickles: only what NumPy writes for a plain array is rebuilt.


class _Dtype:
    """Pickles as `numpy.dtype` with the given constructor arguments and state."""

    def __init__(self, arguments: tuple, state: tuple):
        self.arguments, self.state = arguments, state

    def __reduce__(self):
        return np.dtype, self.arguments, self.state


class _Array:
    """Pickles as NumPy pickles an array, but with any dtype, state and constructor arguments."""

    def __init__(self, dtype: object, data: object, shape: tuple = (2,), constructor_arguments: tuple = ((0,), b"b")):
        self.dtype, self.data, self.shape, self.constructor_arguments = dtype, data, shape, constructor_arguments

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return _reconstruct, (np.ndarray, *self.constructor_arguments), (1, self.shape, self.dtype, False, self.data)


OBJECT_DTYPE = _Dtype(("O8", False, True), (3, "|", None, None, None, -1, -1, 63))
REVIEWS = [[1, 2, 3], [200, 7]]
HOSTILE_PICKLES = {
    # A dtype state NumPy never writes: NumPy itself crashes the interpreter on it (a segfault).
    "dtype-state-that-crashes-numpy": (
        _Array(_Dtype(("O8", False, True), (3, "|", None, -1, -1, 63)), REVIEWS),
        "refusing the state (3, '|', None, -1, -1, 63) of dtype O8",
    ),
    "dtype-of-records": (_Array(_Dtype(("V8", False, True), ()), REVIEWS), "refusing dtype 'V8'"),
    "shape-not-sizes": (_Array(OBJECT_DTYPE, REVIEWS, shape=(-2,)), "the array shape (-2,) is not a tuple of sizes"),
    "data-too-short": (
        _Array(OBJECT_DTYPE, REVIEWS, shape=(3,)),
        "the data does not fit an array of object and shape (3,)",
    ),
    "other-constructor": (
        _Array(OBJECT_DTYPE, REVIEWS, constructor_arguments=((5,), b"b")),
        "refusing an array constructor that NumPy does not write",
    ),
    "no-dtype": (_Array("O8", REVIEWS), "expected a dtype, got str"),
}


@pytest.mark.parametrize(("hostile", "message"), HOSTILE_PICKLES.values(), ids=HOSTILE_PICKLES.keys())
def test_a_pickle_numpy_would_not_write_is_refused(tmp_path, hostile, message):
    npy = _npy_header((2,), "|O") + pickle.dumps(hostile, protocol=3)
    path = _write_zip(tmp_path / "imdb.npz", {**_small_members(), "x_train.npy": _deflated([npy])})
    with pytest.raises(DataError) as failure:
        read_keras_npz(path)
    assert str(failure.value) == f"{path}: cannot read x_train: {message}"


def test_the_same_pickle_with_numpys_own_dtype_state_loads(tmp_path):
    npy = _npy_header((2,), "|O") + pickle.dumps(_Array(OBJECT_DTYPE, REVIEWS), protocol=3)
    path = _write_zip(tmp_path / "imdb.npz", {**_small_members(), "x_train.npy": _deflated([npy])})
    assert read_keras_npz(path)["x_train"].tolist() == REVIEWS


def test_random_damage_to_a_member_gives_a_data_error_or_a_valid_load(tmp_path):
    # Bytes changed inside the members (with valid CRCs, so the pickle and header parsers see them).
    rng = np.random.default_rng(12)
    members = _npy_members()
    outcomes = {"refused": 0, "loaded": 0}
    for trial in range(300):
        name = list(members)[trial % len(members)]
        damaged = bytearray(members[name])
        for position in rng.integers(0, len(damaged), size=rng.integers(1, 4)):
            damaged[position] = rng.integers(0, 256)
        path = tmp_path / "imdb.npz"
        with zipfile.ZipFile(path, "w") as archive:
            for other, data in members.items():
                archive.writestr(other, bytes(damaged) if other == name else data)
        try:
            read_keras_npz(path)
            outcomes["loaded"] += 1
        except DataError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 200
