"""`imdb_regularization.readers.tar_stream`: the regular files `tarfile` would give, in every header format,
and clear errors.
"""

import io
import tarfile

import pytest

from imdb_regularization.readers.tar_stream import BLOCK, TarFormatError, TarLimitError, regular_files

LONG_NAME = "aclImdb/train/pos/" + "very_" * 30 + "long_1_10.txt"  # beyond the 100 bytes of a header name
FILES = {
    "aclImdb/train/pos/0_9.txt": b"A fine film.",
    "aclImdb/test/neg/1_2.txt": b"",
    LONG_NAME: b"x" * 1000,  # more than one block
    "aclImdb/train/neg/caf\u00e9_3.txt": "Caf\u00e9 au lait.".encode(),  # a non-ASCII name: pax or GNU encode it
}


def _tar(format_: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format_) as archive:
        directory = tarfile.TarInfo("aclImdb/train")
        directory.type = tarfile.DIRTYPE
        archive.addfile(directory)
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("aclImdb/train/pos/2_8.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
        hard = tarfile.TarInfo("aclImdb/train/pos/3_8.txt")
        hard.type, hard.linkname = tarfile.LNKTYPE, "aclImdb/train/pos/0_9.txt"
        archive.addfile(hard)
    return buffer.getvalue()


@pytest.mark.parametrize("format_", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu", "pax"])
def test_regular_files_match_tarfile_and_skip_everything_else(format_):
    data = _tar(format_)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        expected = [(member.name, archive.extractfile(member).read()) for member in archive if member.isfile()]
    assert list(regular_files(io.BytesIO(data))) == expected == list(FILES.items())


def test_a_posix_ustar_name_prefix_is_joined_to_the_name():
    name = "aclImdb/" + "d" * 90 + "/train/pos/0_9.txt"  # over 100 bytes, but splits at a slash
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.size = 4
        archive.addfile(info, io.BytesIO(b"good"))
    assert list(regular_files(io.BytesIO(buffer.getvalue()))) == [(name, b"good")]


def test_an_empty_stream_has_no_files():
    assert list(regular_files(io.BytesIO(b""))) == []


def test_a_damaged_header_is_named_with_its_position():
    data = bytearray(_tar(tarfile.GNU_FORMAT))
    # The directory's header, the first file's header and its one block of data, then the second file's header.
    second_file = BLOCK * 3
    data[second_file + 3] ^= 0x01
    with pytest.raises(TarFormatError, match=f"invalid tar header at byte {second_file} \\(checksum mismatch\\)"):
        list(regular_files(io.BytesIO(bytes(data))))


def test_a_stream_that_ends_inside_a_member_is_an_error():
    data = _tar(tarfile.GNU_FORMAT)
    with pytest.raises(TarFormatError, match="ends inside the member at byte 512"):
        list(regular_files(io.BytesIO(data[: BLOCK * 2 + 5])))


# Bounds, checked from the headers before any data is read.


def _header_only(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    """One tar header declaring `size` bytes, and none of them: a reader that trusts it reads past the end."""
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(format=tarfile.GNU_FORMAT)


def test_files_keep_refuses_are_skipped_and_not_bounded():
    kept = list(regular_files(io.BytesIO(_tar(tarfile.PAX_FORMAT)), lambda name: name.endswith("0_9.txt")))
    assert kept == [("aclImdb/train/pos/0_9.txt", b"A fine film.")]
    # The long name holds 1000 bytes, over the bound, but it is skipped, so the bound does not apply.
    kept = list(regular_files(io.BytesIO(_tar(tarfile.GNU_FORMAT)), lambda name: "0_9" in name, max_file_bytes=100))
    assert kept == [("aclImdb/train/pos/0_9.txt", b"A fine film.")]


def test_a_kept_file_over_its_bound_is_refused_from_its_header():
    with pytest.raises(TarLimitError) as failure:
        list(regular_files(io.BytesIO(_tar(tarfile.GNU_FORMAT)), max_file_bytes=999))
    assert str(failure.value) == f"{LONG_NAME} is 1,000 bytes, more than the 999 allowed for one file"


def test_a_header_declaring_terabytes_is_refused_before_reading():
    stream = io.BytesIO(_header_only("aclImdb/train/pos/0_9.txt", 5 << 40))
    with pytest.raises(TarLimitError) as failure:
        list(regular_files(stream, max_file_bytes=1 << 20))
    assert (
        str(failure.value)
        == "aclImdb/train/pos/0_9.txt is 5,497,558,138,880 bytes, more than the 1,048,576 allowed for one file"
    )
    assert stream.tell() == BLOCK  # the header, and nothing of the data it declares


def test_the_archive_bound_counts_every_member_kept_or_skipped():
    data = _tar(tarfile.GNU_FORMAT)
    assert len(list(regular_files(io.BytesIO(data), max_archive_bytes=len(data)))) == len(FILES)
    with pytest.raises(TarLimitError) as failure:
        list(regular_files(io.BytesIO(data), lambda name: False, max_archive_bytes=BLOCK * 5))
    # The directory (one block), the first file (two), the second (one); the long name's own member, at
    # byte 2,048, would end past the bound. GNU tar stores the name with a closing NUL.
    assert str(failure.value) == (
        "the archive declares more than the 2,560 bytes allowed: "
        f"the member at byte 2,048 (././@LongLink) declares {len(LONG_NAME) + 1} bytes"
    )


@pytest.mark.parametrize("kind", [b"L", b"x"], ids=["gnu-long-name", "pax"])
def test_an_extended_header_of_megabytes_is_refused(kind):
    with pytest.raises(TarFormatError, match=r"invalid tar header at byte 0: an extended header of 2,097,152 bytes"):
        list(regular_files(io.BytesIO(_header_only("././@LongLink", 2 << 20, kind))))


def test_a_pax_size_of_thousands_of_digits_is_a_format_error():
    record = b"size=" + b"9" * 5000 + b"\n"
    length = len(record) + 5
    pax = f"{length} ".encode() + record
    info = tarfile.TarInfo("././@PaxHeader")
    info.size, info.type = len(pax), tarfile.XHDTYPE
    data = info.tobuf(format=tarfile.USTAR_FORMAT) + pax + bytes(-len(pax) % BLOCK) + bytes(2 * BLOCK)
    with pytest.raises(TarFormatError, match="invalid pax header at byte 0: size b'9999"):
        list(regular_files(io.BytesIO(data)))
