"""Malformed and hostile raw data: each gives one clear DataError naming what is wrong, never a traceback
from deep inside tarfile or numpy; unsafe archive members are never written anywhere.
"""

import gzip
import json
import os
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest

from imdb_regularization.features.multi_hot import encode_aclimdb
from imdb_regularization.features.vocabulary import index_reviews, tokenize
from imdb_regularization.readers.aclimdb import MAX_ARCHIVE_BYTES, MAX_REVIEW_BYTES, iter_reviews, ordered_rows
from imdb_regularization.readers.keras_npz import read_keras_npz
from imdb_regularization.readers.sources import DataError, sha256_of, verified_raw_file
from tests.support.data import extend_archive, make_reviews, read_archive_texts, write_aclimdb_archive

LAYOUT_HINT = "(expected files named aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt)"


@pytest.fixture
def archive(tmp_path) -> Path:
    return write_aclimdb_archive(tmp_path / "base.tar.gz", make_reviews(3))


def _everything_under(directory: Path) -> set[str]:
    return {str(path.relative_to(directory)) for path in directory.rglob("*")}


def _read_reviews(path: Path) -> dict[str, list[tuple[int, str]]]:
    """Each split's (label, text) pairs as the library reads them: streamed, then ordered by label and review id."""
    reviews = list(iter_reviews(path))
    rows = ordered_rows([key for key, _ in reviews], path)
    return {split: [(reviews[row][0][1], reviews[row][1]) for row in rows[split]] for split in rows}


def _as_pairs(path: Path) -> dict[str, list[tuple[int, str]]]:
    """The same, read with plain `tarfile` (`read_archive_texts`)."""
    by_split = read_archive_texts(path)
    return {split: list(zip(reviews.labels, reviews.texts, strict=True)) for split, reviews in by_split.items()}


# The .tar.gz of raw reviews.


def test_a_file_that_is_not_gzip_is_named_as_such(tmp_path):
    path = tmp_path / "aclImdb_v1.tar.gz"
    path.write_text("<html>Sign in to continue</html>")
    with pytest.raises(DataError) as failure:
        _read_reviews(path)
    assert str(failure.value) == f"{path} is not a readable .tar.gz archive: Not a gzipped file (b'<h')"


def test_a_gzip_that_holds_no_tar_is_named_as_such(tmp_path):
    path = tmp_path / "aclImdb_v1.tar.gz"
    path.write_bytes(gzip.compress(b"plain text, not a tar archive " * 40))
    with pytest.raises(DataError) as failure:
        _read_reviews(path)
    assert str(failure.value) == (
        f"{path} is not a readable .tar.gz archive: invalid tar header at byte 0: b'e plain' is not an octal number"
    )


def test_a_truncated_archive_is_named_as_such(archive, tmp_path):
    path = tmp_path / "aclImdb_v1.tar.gz"
    path.write_bytes(archive.read_bytes()[: archive.stat().st_size * 6 // 10])
    with pytest.raises(DataError) as failure:
        _read_reviews(path)
    assert str(failure.value) == (
        f"{path} is not a readable .tar.gz archive: Compressed file ended before the end-of-stream marker was reached"
    )


def test_damage_after_the_last_review_is_still_caught(archive, tmp_path):
    # The last 8 bytes are gzip's CRC and length, past the end-of-archive block where tarfile stops.
    data = archive.read_bytes()
    path = tmp_path / "aclImdb_v1.tar.gz"
    path.write_bytes(data[:-8] + bytes(byte ^ 0xFF for byte in data[-8:-4]) + data[-4:])
    with pytest.raises(DataError) as failure:
        _read_reviews(path)
    assert str(failure.value).startswith(f"{path} is not a readable .tar.gz archive: CRC check failed")


def _index_as_the_stage_does(path: Path):
    return index_reviews(iter_reviews(path), path, workers=2)


READERS = pytest.mark.parametrize("read", [_read_reviews, _index_as_the_stage_does], ids=["ordered_rows", "stage"])


@READERS
def test_a_tar_without_the_test_folders_names_each_missing_one(tmp_path, read):
    train_only = {key: texts for key, texts in make_reviews(2).items() if key[0] == "train"}
    path = write_aclimdb_archive(tmp_path / "aclImdb_v1.tar.gz", train_only)
    with pytest.raises(DataError) as failure:
        read(path)
    assert str(failure.value) == f"{path} has no reviews under aclImdb/test/neg/, aclImdb/test/pos/ {LAYOUT_HINT}"


@READERS
def test_an_archive_of_another_layout_says_which_layout_is_expected(tmp_path, read):
    empty = write_aclimdb_archive(tmp_path / "empty.tar.gz", {})
    path = extend_archive(empty, tmp_path / "other.tar.gz", files={"reviews/train/pos/0_9.txt": b"good"})
    with pytest.raises(
        DataError,
        match=re.escape(
            f"has no reviews under aclImdb/train/neg/, aclImdb/train/pos/, "
            f"aclImdb/test/neg/, aclImdb/test/pos/ {LAYOUT_HINT}"
        ),
    ):
        read(path)


def test_a_review_that_is_not_utf8_is_named_with_the_bad_byte(archive, tmp_path):
    latin1 = {"aclImdb/train/pos/99_10.txt": "Café".encode("latin-1")}
    path = extend_archive(archive, tmp_path / "latin1.tar.gz", files=latin1)
    with pytest.raises(DataError) as failure:
        _read_reviews(path)
    assert str(failure.value) == f"{path}: aclImdb/train/pos/99_10.txt is not UTF-8 text (byte 3 is 0xe9)"


# The same review twice, and sizes bounded from the tar headers before anything is read.


@READERS
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("aclImdb/train/pos/0_8.txt", "aclImdb/train/pos/0_8.txt occurs twice"),
        ("./aclImdb/train/pos/0_8.txt", "./aclImdb/train/pos/0_8.txt is review 0 of aclImdb/train/pos/ again"),
        ("aclImdb/train/pos/0_3.txt", "aclImdb/train/pos/0_3.txt is review 0 of aclImdb/train/pos/ again"),
    ],
    ids=["same-name", "dot-slash", "other-rating"],
)
def test_a_review_stored_twice_is_named(archive, tmp_path, read, name, message):
    path = extend_archive(archive, tmp_path / "twice.tar.gz", files={name: b"A second, different text."})
    with pytest.raises(DataError) as failure:
        read(path)
    first = " (first read as aclImdb/train/pos/0_8.txt)" if "again" in message else ""
    assert str(failure.value) == f"{path}: {message}{first}"


def _archive_declaring(path: Path, name: str, size: int) -> Path:
    """A .tar.gz whose one header declares `size` bytes for `name`, followed by none of them."""
    info = tarfile.TarInfo(name)
    info.size = size
    path.write_bytes(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
    return path


def test_a_review_over_a_mebibyte_is_refused_from_its_header(archive, tmp_path):
    huge = extend_archive(
        archive, tmp_path / "huge.tar.gz", files={"aclImdb/train/pos/99_10.txt": bytes(MAX_REVIEW_BYTES + 1)}
    )
    with pytest.raises(DataError) as failure:
        _read_reviews(huge)
    assert str(failure.value) == (
        f"{huge}: aclImdb/train/pos/99_10.txt is 1,048,577 bytes, more than the 1,048,576 allowed for one file"
    )
    # A header alone can declare terabytes; it is refused before any of them is read.
    declared = _archive_declaring(tmp_path / "declared.tar.gz", "aclImdb/test/neg/7_1.txt", 1 << 40)
    with pytest.raises(DataError, match=r"aclImdb/test/neg/7_1.txt is 1,099,511,627,776 bytes, more than the"):
        _read_reviews(declared)


def test_large_members_that_are_not_reviews_are_skipped_not_bounded(archive, tmp_path):
    extras = {"aclImdb/train/unsupBow.feat": bytes(3000), "aclImdb/train/unsup/0_0.txt": bytes(3000)}
    path = extend_archive(archive, tmp_path / "full.tar.gz", files=extras)
    reviews = list(iter_reviews(path, max_review_bytes=2000))
    assert [text for _, text in reviews] == [text for _, text in iter_reviews(archive)]


def test_an_archive_declaring_more_than_the_archive_bound_is_refused(archive, tmp_path):
    declared = _archive_declaring(tmp_path / "declared.tar.gz", "aclImdb/train/unsup/0_0.txt", 3 << 30)
    with pytest.raises(DataError) as failure:
        _read_reviews(declared)
    assert str(failure.value) == (
        f"{declared}: the archive declares more than the {MAX_ARCHIVE_BYTES:,} bytes allowed: "
        "the member at byte 0 (aclImdb/train/unsup/0_0.txt) declares 3,221,225,472 bytes"
    )


def test_data_after_the_end_of_the_tar_counts_toward_the_archive_bound(archive, tmp_path):
    # Zeros after the end-of-archive blocks decompress from almost nothing: the bound stops them too.
    tar = gzip.decompress(archive.read_bytes())
    path = tmp_path / "padded.tar.gz"
    path.write_bytes(gzip.compress(tar + bytes(4 << 20)))
    assert len(list(iter_reviews(path))) == 12
    with pytest.raises(DataError) as failure:
        list(iter_reviews(path, max_archive_bytes=len(tar) + 1000))
    assert str(failure.value) == f"{path} decompresses to more than the {len(tar) + 1000:,} bytes allowed"


# Members that are not labelled reviews: unsafe names and links are never written; extra files are ignored.

UNSAFE_FILES = {
    "../evil.txt": b"escaped one level",
    "/abs/evil": b"absolute path",
    "aclImdb/../../x": b"escaped through the top folder",
    "aclImdb/train/pos/../../../../evil/1_1.txt": b"escaped from a review folder",
}
UNSAFE_LINKS = {
    "aclImdb/train/pos/900_10.txt": "/etc/passwd",  # named like a review
    "aclImdb/test/neg/901_1.txt": "../../../../outside.txt",
}


def test_unsafe_members_are_never_written_and_reading_ignores_them(archive, tmp_path, monkeypatch):
    hostile = extend_archive(archive, tmp_path / "hostile.tar.gz", files=UNSAFE_FILES, symlinks=UNSAFE_LINKS)
    with tarfile.open(hostile) as stored:
        assert set(UNSAFE_FILES) | set(UNSAFE_LINKS) <= set(stored.getnames())  # stored as given, not cleaned
    workdir = tmp_path / "deep" / "work"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)  # where relative `..` names would land if anything were extracted
    before = _everything_under(tmp_path)

    reviews = _read_reviews(hostile)

    assert reviews == _read_reviews(archive) == _as_pairs(archive)
    assert _everything_under(tmp_path) == before
    assert not Path("/abs/evil").exists()


def test_the_full_stanford_layout_reads_like_the_labelled_one(archive, tmp_path):
    extras = {
        "aclImdb/README": b"Large Movie Review Dataset v1.0",
        "aclImdb/imdb.vocab": b"the\nand\na\n",
        "aclImdb/imdbEr.txt": b"0.0490972013402\n",
        "aclImdb/train/labeledBow.feat": b"9 0:9 1:1\n",
        "aclImdb/train/unsupBow.feat": b"0 0:8\n",
        "aclImdb/train/urls_pos.txt": b"http://www.imdb.com/title/tt0453418/usercomments\n",
        "aclImdb/test/urls_neg.txt": b"http://www.imdb.com/title/tt0064354/usercomments\n",
        "aclImdb/train/unsup/0_0.txt": b"An unlabelled review that must not be read.",
        "aclImdb/train/unsup/1_0.txt": "Not even UTF-8: caf\xe9".encode("latin-1"),
    }
    full = extend_archive(archive, tmp_path / "aclImdb_v1.tar.gz", files=extras)
    reviews = _read_reviews(full)
    assert reviews == _read_reviews(archive) == _as_pairs(archive)
    for split in ("train", "test"):
        assert [label for label, _ in reviews[split]] == [0, 0, 0, 1, 1, 1]


# Keras' imdb.npz.


def test_an_npz_without_x_train_lists_what_it_holds(tmp_path):
    path = tmp_path / "imdb.npz"
    np.savez(path, y_train=np.array([1]), x_test=np.array([[1]]), y_test=np.array([1]))
    with pytest.raises(DataError) as failure:
        read_keras_npz(path)
    assert str(failure.value) == f"{path} has no x_train array (it holds x_test.npy, y_test.npy, y_train.npy)"


def test_an_npz_that_is_not_a_zip_is_named_as_such(tmp_path):
    path = tmp_path / "imdb.npz"
    path.write_bytes(b"\x89HDF\r\n\x1a\n not a zip")
    with pytest.raises(DataError) as failure:
        read_keras_npz(path)
    assert str(failure.value) == f"{path} is not an .npz (zip) file"


def test_an_npz_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "the-pickle-ran"

    class Exploit:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    evil = np.empty(1, dtype=object)
    evil[0] = Exploit()
    path = tmp_path / "imdb.npz"
    np.savez(path, x_train=evil, y_train=np.array([1]), x_test=evil, y_test=np.array([1]))
    with pytest.raises(DataError) as failure:
        read_keras_npz(path)
    assert str(failure.value) == f"{path}: cannot read x_train: refusing to load {os.mkdir.__module__}.mkdir"
    assert not marker.exists()


def test_an_npz_whose_x_train_is_not_sequences_is_refused(tmp_path):
    path = tmp_path / "imdb.npz"
    np.savez(path, x_train=np.array([0.5, 1.5]), y_train=np.array([1, 0]), x_test=np.array([[3]]), y_test=[0])
    with pytest.raises(DataError) as failure:
        read_keras_npz(path)
    assert str(failure.value) == (
        f"{path}: x_train should be a 1-D object array of word-rank sequences or a 2-D integer array, "
        "got a 1-D float64 array of shape (2,)"
    )


# The raw file encode reads is the one fetch verified.


def test_encode_refuses_a_raw_file_changed_since_it_was_fetched(archive, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "aclImdb_v1.tar.gz").write_bytes(archive.read_bytes())
    (raw / "source.json").write_text(json.dumps({"sha256": sha256_of(archive)}))
    assert verified_raw_file(raw, "aclImdb_v1.tar.gz") == raw / "aclImdb_v1.tar.gz"
    (raw / "aclImdb_v1.tar.gz").write_bytes(archive.read_bytes()[:-1])
    with pytest.raises(DataError) as failure:
        verified_raw_file(raw, "aclImdb_v1.tar.gz")
    changed = sha256_of(raw / "aclImdb_v1.tar.gz")
    assert str(failure.value) == (
        f"{raw}/aclImdb_v1.tar.gz changed since it was fetched: sha256 {changed}, "
        f"{raw}/source.json says {sha256_of(archive)}"
    )


def test_encode_without_the_fetch_record_says_to_run_fetch(archive, tmp_path):
    with pytest.raises(DataError) as failure:
        verified_raw_file(archive.parent, archive.name)
    assert str(failure.value) == f"{archive.parent}/source.json is missing: run the fetch stage"


# Text and widths at the edges.


def test_unusual_characters_tokenize_like_the_reference_regex():
    text = "K\u212aelvin İstanbul CAFÉ naïve\x00tab\there<BR />x don't 12'3\u00a0ﬁne ünïcödé 日本語"
    assert tokenize(text) == re.findall(r"[a-z0-9']+", text.lower().replace("<br />", " "))


def test_num_words_beyond_the_vocabulary_gives_zero_columns_past_it():
    reviews = [
        (("train", 1, 0), "good film"),
        (("train", 0, 1), "bad film"),
        (("test", 1, 0), "good bad"),
        (("test", 0, 1), "film"),
    ]
    arrays, vocabulary = encode_aclimdb(index_reviews(reviews, "tiny", workers=1), num_words=50)
    assert [word for word, _ in vocabulary] == ["film", "bad", "good"]
    assert arrays["x_train"].shape == (2, 50)
    assert arrays["x_train"][:, 7:].sum() == arrays["x_test"][:, 7:].sum() == 0
    assert arrays["x_test"].tolist()[1][:7] == [0, 1, 0, 0, 0, 1, 1]  # "good bad", the positive review
