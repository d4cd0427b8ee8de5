"""Fetching: downloads from a server on 127.0.0.1 that the tests run, the cache, local files, every failure.

After each failure the cache and `data/raw/` must hold nothing a later run could take for a good
file, temporaries included. Nothing here sleeps: retries use no backoff and timeouts are short.
"""

import email.message
import hashlib
import io
import json
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from imdb_regularization.readers import download
from imdb_regularization.readers.download import DownloadPolicy, FetchError, fetch_file
from imdb_regularization.readers.sources import WORD_INDEX, verified_word_index
from stages import fetch
from tests.support.data import make_reviews, write_aclimdb_archive
from tests.support.project import PROJECT_ROOT
from tools.project import set_params

FAST = DownloadPolicy(timeout_seconds=2.0, attempts=3, backoff_seconds=0.0)
ARCHIVE_PATH = "/mirror/aclImdb_v1.tar.gz"


@dataclass(frozen=True)
class Reply:
    """One answer of the test server; `declared_length` above `len(body)` cuts the body short.

    `content_lengths` replaces the Content-Length header with these raw values (one header each).
    With `chunk_bytes`, the body goes out in pieces of that size, `pause_seconds` apart; `endless`
    repeats it until the client hangs up.
    """

    status: int = 200
    body: bytes = b""
    declared_length: int | None = None
    send_length: bool = True
    content_lengths: tuple[str, ...] | None = None
    chunk_bytes: int | None = None
    pause_seconds: float = 0.0
    endless: bool = False


class _Handler(BaseHTTPRequestHandler):
    server: "LocalServer"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        reply = self.server.next_reply(self.path)
        self.send_response(reply.status)
        if reply.content_lengths is not None:
            for value in reply.content_lengths:
                self.send_header("Content-Length", value)
        elif reply.send_length:
            self.send_header("Content-Length", str(reply.declared_length or len(reply.body)))
        self.end_headers()
        if reply.chunk_bytes is None:
            self.wfile.write(reply.body)
            return
        try:
            self._send_in_pieces(reply, reply.chunk_bytes)
        except OSError:
            pass  # The client hung up, as the tests of slow and endless bodies expect it to.

    def _send_in_pieces(self, reply: Reply, chunk_bytes: int) -> None:
        while True:
            for start in range(0, len(reply.body), chunk_bytes):
                self.wfile.write(reply.body[start : start + chunk_bytes])
                self.wfile.flush()
                # The server's pace is what these tests are about; the tests themselves never sleep.
                self.server.stopped.wait(reply.pause_seconds)
            if not reply.endless or self.server.stopped.is_set():
                return

    def log_message(self, *args) -> None:
        """Keep the test output free of access logs."""


class LocalServer(ThreadingHTTPServer):
    """Serves scripted replies per path (the last one repeats) and counts the requests."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies: dict[str, list[Reply]] = {}
        self.requests: list[str] = []
        self.stopped = threading.Event()

    def serve(self, path: str, *replies: Reply) -> str:
        self.replies[path] = list(replies)
        return f"http://127.0.0.1:{self.server_port}{path}"

    def next_reply(self, path: str) -> Reply:
        self.requests.append(path)
        replies = self.replies.get(path, [Reply(status=404)])
        return replies.pop(0) if len(replies) > 1 else replies[0]


@pytest.fixture
def server() -> Iterator[LocalServer]:
    local_server = LocalServer()
    # A short poll interval lets shutdown() return at once instead of after half a second.
    thread = threading.Thread(target=local_server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield local_server
    local_server.stopped.set()
    local_server.shutdown()
    local_server.server_close()
    thread.join()


@pytest.fixture
def archive(tmp_path) -> bytes:
    return write_aclimdb_archive(tmp_path / "served.tar.gz", make_reviews(5)).read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(directory: Path) -> list[str]:
    """Every file below `directory`, hidden temporaries included; [] if it does not exist."""
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file())


# Good downloads and the cache.


def test_download_is_verified_and_cached_then_reused_without_a_request(server, archive, tmp_path):
    url = server.serve(ARCHIVE_PATH, Reply(body=archive))
    cache = tmp_path / "cache"
    first = fetch_file(url=url, sha256=sha256(archive), cache_dir=cache, policy=FAST)
    second = fetch_file(url=url, sha256=sha256(archive), cache_dir=cache, policy=FAST)
    assert first == second == (cache / "aclImdb_v1.tar.gz", sha256(archive))
    assert (cache / "aclImdb_v1.tar.gz").read_bytes() == archive
    assert server.requests == [ARCHIVE_PATH]
    assert files_under(cache) == ["aclImdb_v1.tar.gz"]


def test_a_cached_file_with_the_wrong_checksum_is_deleted_and_downloaded_again(server, archive, tmp_path, caplog):
    url = server.serve(ARCHIVE_PATH, Reply(body=archive))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "aclImdb_v1.tar.gz").write_bytes(archive[:100])
    found, _ = fetch_file(url=url, sha256=sha256(archive), cache_dir=cache, policy=FAST)
    assert found.read_bytes() == archive
    assert server.requests == [ARCHIVE_PATH]
    assert f"has sha256 {sha256(archive[:100])}, not {sha256(archive)}: deleting it" in caplog.text


def _run_fetch_main(monkeypatch, project: Path, url: str, sha256_pin: str | None) -> Path:
    """Run `python -m stages.fetch --out data/raw` in `project` with data.url set; returns data/raw."""
    project.mkdir(exist_ok=True)
    (project / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    set_params(project, {"data.source": "aclimdb", "data.url": url, "data.sha256": sha256_pin})
    monkeypatch.chdir(project)
    monkeypatch.setenv("KERAS_HOME", str(project / "keras-home"))
    monkeypatch.setattr(sys, "argv", ["stages.fetch", "--out", "data/raw"])
    fetch.main()
    return project / "data" / "raw"


def test_main_writes_the_raw_file_and_source_json(server, archive, tmp_path, monkeypatch):
    url = server.serve(ARCHIVE_PATH, Reply(body=archive))
    raw = _run_fetch_main(monkeypatch, tmp_path, url, sha256(archive))
    assert files_under(raw) == ["aclImdb_v1.tar.gz", "source.json"]
    assert (raw / "aclImdb_v1.tar.gz").read_bytes() == archive
    record = json.loads((raw / "source.json").read_text())
    assert record == {"source": "aclimdb", "url": url, "sha256": sha256(archive), "bytes": len(archive)}
    assert files_under(tmp_path / "keras-home" / "datasets") == ["aclImdb_v1.tar.gz"]


# HTTP failures: each one named, retried only where another try can help, and nothing left behind.


def test_http_404_fails_at_once_naming_the_url_and_data_url(server, tmp_path):
    url = server.serve("/gone/aclImdb_v1.tar.gz", Reply(status=404))
    with pytest.raises(FetchError) as failure:
        fetch_file(url=url, sha256="0" * 64, cache_dir=tmp_path / "cache", policy=FAST)
    assert str(failure.value) == (
        f"cannot download {url}: HTTP 404 Not Found. "
        "To use a copy you already have, set data.url to its path (and data.sha256 to pin it)."
    )
    assert server.requests == ["/gone/aclImdb_v1.tar.gz"]
    assert files_under(tmp_path / "cache") == []


def test_main_leaves_data_raw_empty_after_a_failed_download(server, tmp_path, monkeypatch):
    url = server.serve("/gone/aclImdb_v1.tar.gz", Reply(status=404))
    with pytest.raises(FetchError, match="HTTP 404"):
        _run_fetch_main(monkeypatch, tmp_path, url, "0" * 64)
    assert files_under(tmp_path / "data") == []
    assert files_under(tmp_path / "keras-home") == []


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_server_error_is_retried_then_the_download_succeeds(server, archive, tmp_path, caplog, status):
    url = server.serve(ARCHIVE_PATH, Reply(status=status), Reply(body=archive))
    found, _ = fetch_file(url=url, sha256=sha256(archive), cache_dir=tmp_path / "cache", policy=FAST)
    assert found.read_bytes() == archive
    assert server.requests == [ARCHIVE_PATH] * 2
    assert f"attempt 1 of 3 to download {url} failed: HTTP {status}" in caplog.text


def test_retries_back_off_exponentially_then_give_up_naming_the_url(server, tmp_path, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(download.time, "sleep", waits.append)
    url = server.serve(ARCHIVE_PATH, Reply(status=500))
    policy = DownloadPolicy(timeout_seconds=2.0, attempts=4, backoff_seconds=1.5)
    with pytest.raises(FetchError) as failure:
        fetch_file(url=url, sha256="0" * 64, cache_dir=tmp_path / "cache", policy=policy)
    assert waits == [1.5, 3.0, 6.0]
    assert server.requests == [ARCHIVE_PATH] * 4
    assert str(failure.value) == (
        f"cannot download {url} after 4 attempts: HTTP 500 Internal Server Error. "
        "To use a copy you already have, set data.url to its path (and data.sha256 to pin it)."
    )
    assert files_under(tmp_path / "cache") == []


def test_a_body_cut_short_is_retried_then_fails_with_a_clear_error(server, archive, tmp_path):
    short = Reply(body=archive[: len(archive) // 2], declared_length=len(archive))
    url = server.serve(ARCHIVE_PATH, short)
    with pytest.raises(FetchError) as failure:
        fetch_file(url=url, sha256=sha256(archive), cache_dir=tmp_path / "cache", policy=FAST)
    missing = len(archive) - len(archive) // 2
    assert str(failure.value).startswith(
        f"cannot download {url} after 3 attempts: the body was cut short ({missing} bytes missing). "
    )
    assert server.requests == [ARCHIVE_PATH] * 3
    assert files_under(tmp_path / "cache") == []


def test_a_body_cut_short_once_is_fetched_again(server, archive, tmp_path):
    short = Reply(body=archive[:100], declared_length=len(archive))
    url = server.serve(ARCHIVE_PATH, short, Reply(body=archive))
    found, _ = fetch_file(url=url, sha256=sha256(archive), cache_dir=tmp_path / "cache", policy=FAST)
    assert found.read_bytes() == archive
    assert files_under(tmp_path / "cache") == ["aclImdb_v1.tar.gz"]


def test_a_checksum_mismatch_names_both_hashes_and_deletes_the_download(server, archive, tmp_path, monkeypatch):
    url = server.serve(ARCHIVE_PATH, Reply(body=b"<html>a proxy's login page</html>"))
    with pytest.raises(FetchError) as failure:
        _run_fetch_main(monkeypatch, tmp_path, url, sha256(archive))
    actual = sha256(b"<html>a proxy's login page</html>")
    assert str(failure.value) == (
        f"checksum mismatch for {url}: expected sha256 {sha256(archive)}, got {actual}. The download was deleted."
    )
    assert files_under(tmp_path / "data") == []
    assert files_under(tmp_path / "keras-home") == []


# No server at all: a bounded time, one message that says what to do.


def test_a_refused_connection_fails_quickly_and_says_to_set_data_url(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/aclImdb_v1.tar.gz"
    started = time.monotonic()
    with pytest.raises(FetchError) as failure:
        fetch_file(url=url, sha256="0" * 64, cache_dir=tmp_path / "cache", policy=FAST)
    assert time.monotonic() - started < 5
    assert str(failure.value) == (
        f"cannot download {url} after 3 attempts: [Errno 111] Connection refused. "
        "To use a copy you already have, set data.url to its path (and data.sha256 to pin it)."
    )
    assert files_under(tmp_path / "cache") == []


def test_a_server_that_never_answers_times_out(tmp_path):
    # The kernel completes connections to a listening socket that never accepts: only the read timeout ends it.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/aclImdb_v1.tar.gz"
        started = time.monotonic()
        with pytest.raises(FetchError, match=r"after 2 attempts: timed out\. .*set data\.url"):
            policy = DownloadPolicy(timeout_seconds=0.2, attempts=2, backoff_seconds=0.0)
            fetch_file(url=url, sha256="0" * 64, cache_dir=tmp_path / "cache", policy=policy)
    assert 0.4 <= time.monotonic() - started < 3
    assert files_under(tmp_path / "cache") == []


def test_a_cache_that_cannot_be_created_says_to_set_keras_home(server, archive, tmp_path):
    url = server.serve(ARCHIVE_PATH, Reply(body=archive))
    (tmp_path / "home").write_text("a file where the cache directory should go")
    with pytest.raises(FetchError) as failure:
        fetch_file(url=url, sha256=sha256(archive), cache_dir=tmp_path / "home" / "datasets", policy=FAST)
    assert str(failure.value) == (
        f"cannot create the download cache {tmp_path}/home/datasets: Not a directory. "
        "Set KERAS_HOME to a writable directory."
    )
    assert server.requests == []


def test_a_url_without_a_file_name_is_refused(tmp_path):
    with pytest.raises(FetchError, match=r"data.url http://127.0.0.1:9/ does not end in a file name"):
        fetch_file(url="http://127.0.0.1:9/", sha256="0" * 64, cache_dir=tmp_path / "cache", policy=FAST)


# Local copies: a path or a file:// URL, pinned or not; nothing is copied into the cache.


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-url"])
@pytest.mark.parametrize("pinned", [False, True], ids=["unpinned", "pinned"])
def test_a_local_copy_is_used_in_place_and_its_hash_returned(archive, tmp_path, as_uri, pinned):
    local = tmp_path / "my copy.tar.gz"
    local.write_bytes(archive)
    url = local.as_uri() if as_uri else str(local)
    found = fetch_file(url=url, sha256=sha256(archive) if pinned else None, cache_dir=tmp_path / "cache")
    assert found == (local, sha256(archive))
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-url"])
def test_a_local_copy_with_the_wrong_pin_is_refused_and_kept(archive, tmp_path, as_uri):
    local = tmp_path / "copy.tar.gz"
    local.write_bytes(archive)
    with pytest.raises(FetchError) as failure:
        fetch_file(url=local.as_uri() if as_uri else str(local), sha256="0" * 64, cache_dir=tmp_path / "cache")
    assert str(failure.value) == (
        f"checksum mismatch for {local}: expected sha256 {'0' * 64}, got {sha256(archive)}. "
        "Point data.url at the right file, or correct data.sha256."
    )
    assert local.read_bytes() == archive


def test_main_copies_a_local_file_and_records_its_own_hash(archive, tmp_path, monkeypatch):
    local = tmp_path / "aclImdb_labeled.tar.gz"
    local.write_bytes(archive)
    raw = _run_fetch_main(monkeypatch, tmp_path / "project", str(local), None)
    assert (raw / "aclImdb_v1.tar.gz").read_bytes() == archive
    assert json.loads((raw / "source.json").read_text())["sha256"] == sha256(archive)


# Progress: about ten lines per download, whatever the chunk size.


def _progress_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if "MB/s" in record.getMessage()]


def test_a_multi_megabyte_download_logs_ten_progress_lines(server, tmp_path, monkeypatch, caplog):
    body = bytes(12_000_000)
    monkeypatch.setattr(download, "CHUNK_BYTES", 4096)  # 2,930 reads, still one line per tenth
    url = server.serve("/big/imdb.npz", Reply(body=body))
    caplog.set_level(logging.INFO, logger="imdb_regularization.readers.download")
    fetch_file(url=url, sha256=sha256(body), cache_dir=tmp_path / "cache", policy=FAST)
    lines = _progress_lines(caplog)
    assert len(lines) == 10
    assert lines[0].startswith(f"{url}: 1.2 of 12.0 MB (10%), ")
    assert lines[-1].startswith(f"{url}: 12.0 of 12.0 MB (100%), ")


def test_a_small_download_logs_no_progress_lines(server, archive, tmp_path, caplog):
    url = server.serve(ARCHIVE_PATH, Reply(body=archive))
    caplog.set_level(logging.INFO, logger="imdb_regularization.readers.download")
    fetch_file(url=url, sha256=sha256(archive), cache_dir=tmp_path / "cache", policy=FAST)
    assert _progress_lines(caplog) == []


def test_a_download_of_unknown_size_logs_every_step_of_bytes(server, tmp_path, monkeypatch, caplog):
    body = bytes(3_500_000)
    monkeypatch.setattr(download, "UNKNOWN_SIZE_STEP_BYTES", 1_000_000)
    monkeypatch.setattr(download, "CHUNK_BYTES", 4096)
    url = server.serve("/big/imdb.npz", Reply(body=body, send_length=False))
    caplog.set_level(logging.INFO, logger="imdb_regularization.readers.download")
    fetch_file(url=url, sha256=sha256(body), cache_dir=tmp_path / "cache", policy=FAST)
    lines = _progress_lines(caplog)
    assert [line.split(" MB")[0] for line in lines] == [f"{url}: {megabytes}.0" for megabytes in (1, 2, 3)]


# Bounds: a body too large, or too slow, fails naming the URL; nothing half-written stays behind.

LOCAL_COPY_HINT = "To use a copy you already have, set data.url to its path (and data.sha256 to pin it)."


@pytest.mark.parametrize(
    "values",
    [("abc",), ("-5",), ("+5",), ("1_000",), ("1e3",), ("12, 13",), ("5", "6"), ("1" * 25,)],
    ids=["letters", "negative", "plus-sign", "underscore", "exponent", "list", "two-headers", "25-digits"],
)
def test_a_malformed_content_length_fails_at_once_naming_it(server, archive, tmp_path, values):
    url = server.serve(ARCHIVE_PATH, Reply(body=archive, content_lengths=values))
    with pytest.raises(FetchError) as failure:
        fetch_file(url=url, sha256=sha256(archive), cache_dir=tmp_path / "cache", policy=FAST)
    shown = ", ".join(repr(value) for value in values)
    assert str(failure.value) == f"cannot download {url}: the server sent a malformed Content-Length ({shown})"
    assert server.requests == [ARCHIVE_PATH]
    assert files_under(tmp_path / "cache") == []


def test_a_content_length_with_leading_zeros_and_spaces_is_a_byte_count(server, archive, tmp_path):
    url = server.serve(ARCHIVE_PATH, Reply(body=archive, content_lengths=(f" 000{len(archive)} ",)))
    found, _ = fetch_file(url=url, sha256=sha256(archive), cache_dir=tmp_path / "cache", policy=FAST)
    assert found.read_bytes() == archive


def test_a_content_length_over_the_limit_is_refused_before_the_body(server, archive, tmp_path):
    url = server.serve(ARCHIVE_PATH, Reply(body=archive))
    policy = DownloadPolicy(timeout_seconds=2.0, attempts=3, backoff_seconds=0.0, max_bytes=len(archive) - 1)
    with pytest.raises(FetchError) as failure:
        fetch_file(url=url, sha256=sha256(archive), cache_dir=tmp_path / "cache", policy=policy)
    assert str(failure.value) == (
        f"cannot download {url}: its Content-Length announces {len(archive):,} bytes, "
        f"more than the {len(archive) - 1:,} a download may have. {LOCAL_COPY_HINT}"
    )
    assert server.requests == [ARCHIVE_PATH]  # not retried: the next answer would be as large
    assert files_under(tmp_path / "cache") == []


@pytest.mark.parametrize("endless", [False, True], ids=["too-long", "endless"])
def test_a_body_without_length_stops_at_the_limit(server, tmp_path, endless):
    # An endless body is what fills a disk; the download stops once the limit is passed.
    body = bytes(64 * 1024)
    url = server.serve("/big/imdb.npz", Reply(body=body, send_length=False, chunk_bytes=len(body), endless=endless))
    policy = DownloadPolicy(timeout_seconds=2.0, attempts=3, backoff_seconds=0.0, max_bytes=50_000)
    with pytest.raises(FetchError) as failure:
        fetch_file(url=url, sha256=sha256(body), cache_dir=tmp_path / "cache", policy=policy)
    assert str(failure.value) == (
        f"cannot download {url}: the body exceeds the 50,000 bytes a download may have. {LOCAL_COPY_HINT}"
    )
    assert server.requests == ["/big/imdb.npz"]
    assert files_under(tmp_path / "cache") == []


def test_a_body_longer_than_its_content_length_is_refused(tmp_path, monkeypatch):
    # http.client never reads past a Content-Length; a response object that does is refused all the same.
    class Overlong(io.BytesIO):
        headers = email.message.Message()

    Overlong.headers["Content-Length"] = "10"
    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Overlong(bytes(30)))
    with pytest.raises(FetchError) as failure:
        download.download("http://127.0.0.1:9/imdb.npz", tmp_path / "imdb.npz", FAST)
    assert str(failure.value) == (
        "cannot download http://127.0.0.1:9/imdb.npz: the body is longer than its Content-Length (10 bytes)"
    )


def test_a_trickling_download_fails_at_the_progress_deadline_naming_the_url(server, tmp_path):
    # One byte every 0.1 s never trips the 2 s read timeout; only the progress deadline ends it.
    url = server.serve(ARCHIVE_PATH, Reply(body=bytes(1000), chunk_bytes=1, pause_seconds=0.1))
    policy = DownloadPolicy(
        timeout_seconds=2.0, attempts=2, backoff_seconds=0.0, progress_window_seconds=0.6, progress_min_bytes=1024
    )
    started = time.monotonic()
    with pytest.raises(FetchError) as failure:
        fetch_file(url=url, sha256="0" * 64, cache_dir=tmp_path / "cache", policy=policy)
    assert time.monotonic() - started < 3
    assert re.fullmatch(
        re.escape(f"cannot download {url} after 2 attempts: fewer than 1,024 bytes arrived in 0.6 s (")
        + r"\d+ bytes in the last 0\.\d s\)\. "
        + re.escape(LOCAL_COPY_HINT),
        str(failure.value),
    ), str(failure.value)
    assert server.requests == [ARCHIVE_PATH] * 2
    assert files_under(tmp_path / "cache") == []


def test_a_slow_but_steady_download_meets_the_progress_deadline(server, archive, tmp_path):
    body = archive * (4096 // len(archive) + 1)  # a few kilobytes, at 1 KiB per 0.1 s
    url = server.serve(ARCHIVE_PATH, Reply(body=body, chunk_bytes=1024, pause_seconds=0.1))
    policy = DownloadPolicy(
        timeout_seconds=2.0, attempts=1, backoff_seconds=0.0, progress_window_seconds=1.0, progress_min_bytes=1024
    )
    found, _ = fetch_file(url=url, sha256=sha256(body), cache_dir=tmp_path / "cache", policy=policy)
    assert found.read_bytes() == body


def test_a_full_disk_fails_at_once_naming_the_file(server, archive):
    url = server.serve(ARCHIVE_PATH, Reply(body=archive))
    with pytest.raises(FetchError) as failure:
        download.download(url, Path("/dev/full"), FAST)
    assert str(failure.value) == "cannot write /dev/full: No space left on device"
    assert server.requests == [ARCHIVE_PATH]  # a full disk is not retried like a network error


# The keras source's word index: fetched beside the data, verified, with its own keys in every message.

WORD_INDEX_PATH = "/mirror/imdb_word_index.json"
WORD_INDEX_BODY = json.dumps({"the": 1, "movie": 2, "great": 3}).encode()


def _run_keras_fetch_main(monkeypatch, project: Path, word_index_url: str | None, pin: str | None) -> Path:
    """`python -m stages.fetch` for the keras source, its data a local file and its word index at `word_index_url`."""
    project.mkdir(exist_ok=True)
    (project / "imdb.npz").write_bytes(b"the data, which fetch only copies")
    (project / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    set_params(
        project,
        {
            "data.source": "keras",
            "data.url": str(project / "imdb.npz"),
            "data.word_index_url": word_index_url,
            "data.word_index_sha256": pin,
        },
    )
    monkeypatch.chdir(project)
    monkeypatch.setenv("KERAS_HOME", str(project / "keras-home"))
    monkeypatch.setattr(sys, "argv", ["stages.fetch", "--out", "data/raw"])
    fetch.main()
    return project / "data" / "raw"


def test_main_fetches_the_keras_word_index_beside_the_data_and_records_it(server, tmp_path, monkeypatch):
    url = server.serve(WORD_INDEX_PATH, Reply(body=WORD_INDEX_BODY))
    raw = _run_keras_fetch_main(monkeypatch, tmp_path, url, sha256(WORD_INDEX_BODY))
    assert files_under(raw) == ["imdb.npz", "imdb_word_index.json", "source.json"]
    assert (raw / "imdb_word_index.json").read_bytes() == WORD_INDEX_BODY
    record = json.loads((raw / "source.json").read_text())
    assert record["word_index"] == {"url": url, "sha256": sha256(WORD_INDEX_BODY), "bytes": len(WORD_INDEX_BODY)}
    assert verified_word_index(raw) == raw / "imdb_word_index.json"


def test_the_official_word_index_is_verified_by_the_md5_keras_publishes(server, tmp_path, monkeypatch):
    url = server.serve(WORD_INDEX_PATH, Reply(body=WORD_INDEX_BODY), Reply(body=WORD_INDEX_BODY))
    official = replace(WORD_INDEX, url=url, md5=hashlib.md5(WORD_INDEX_BODY).hexdigest())
    monkeypatch.setattr(fetch, "WORD_INDEX", official)
    raw = _run_keras_fetch_main(monkeypatch, tmp_path / "good", None, None)
    assert json.loads((raw / "source.json").read_text())["word_index"]["sha256"] == sha256(WORD_INDEX_BODY)

    monkeypatch.setattr(fetch, "WORD_INDEX", replace(official, md5="0" * 32))
    with pytest.raises(FetchError, match=f"expected md5 {'0' * 32}, got {official.md5}. The download was deleted."):
        _run_keras_fetch_main(monkeypatch, tmp_path / "bad", None, None)
    assert files_under(tmp_path / "bad" / "data") == []
    assert files_under(tmp_path / "bad" / "keras-home") == []


def test_a_word_index_cached_with_the_right_md5_is_not_downloaded_again(server, tmp_path):
    url = server.serve(WORD_INDEX_PATH, Reply(body=WORD_INDEX_BODY))
    md5 = hashlib.md5(WORD_INDEX_BODY).hexdigest()
    first = fetch_file(url=url, sha256=None, md5=md5, cache_dir=tmp_path / "cache", policy=FAST)
    second = fetch_file(url=url, sha256=None, md5=md5, cache_dir=tmp_path / "cache", policy=FAST)
    assert first == second == (tmp_path / "cache" / "imdb_word_index.json", sha256(WORD_INDEX_BODY))
    assert server.requests == [WORD_INDEX_PATH]


def test_an_unreachable_word_index_names_its_own_keys(server, tmp_path, monkeypatch):
    url = server.serve(WORD_INDEX_PATH, Reply(status=404))
    with pytest.raises(FetchError) as failure:
        _run_keras_fetch_main(monkeypatch, tmp_path, url, "0" * 64)
    assert str(failure.value) == (
        f"cannot download {url}: HTTP 404 Not Found. "
        "To use a copy you already have, set data.word_index_url to its path (and data.word_index_sha256 to pin it)."
    )
    assert files_under(tmp_path / "data") == []
