"""`imdb_regularization.readers.tar_stream`: the regular files `tarfile` would give, in every header format,
and clear errors.
"""

import io
import tarfile

import pytest

from imdb_regularization.readers.tar_stream import BLOCK, TarFormatError, regular_files

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
