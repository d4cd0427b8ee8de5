"""Fetching a source's file: from a local copy, or downloaded into the user's cache, always verified.

Downloads go through a user-level cache (Keras' own, `~/.keras/datasets` or
`$KERAS_HOME/datasets`), so a machine that already has the file checks it instead
of fetching it again. A download is written under a temporary name and renamed only
once its checksum matches, so a failed or cut-short one never looks finished.

A download is bounded in size (`DownloadPolicy.max_bytes`: from the Content-Length before the body,
and as the body arrives) and in pace: the wait for each read is bounded by `timeout_seconds`, and a
server that keeps sending but too slowly to ever finish is caught by the progress deadline
(fewer than `progress_min_bytes` in some `progress_window_seconds`).
"""

import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from imdb_regularization.atomic import atomic_path
from imdb_regularization.cli import StageError
from imdb_regularization.params import local_path
from imdb_regularization.readers.sources import CHUNK_BYTES, Source, digest_of, sha256_of

log = logging.getLogger(__name__)

# Progress is logged every tenth of a download, but not more often than every megabyte (a small file
# gets no progress lines), and every 10 MB when the server does not say how big the body is.
MIN_PROGRESS_STEP_BYTES = 1_000_000
UNKNOWN_SIZE_STEP_BYTES = 10_000_000
# Request Timeout and Too Many Requests are worth another try; other 4xx answers will not change.
RETRIED_CLIENT_ERRORS = frozenset({408, 429})
# A cache file name taken from a URL: no separators, no leading dot, so it stays inside the cache.
CACHE_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
USE_A_LOCAL_COPY = "To use a copy you already have, set data.url to its path (and data.sha256 to pin it)."
# A Content-Length is a byte count: decimal digits, at most 20 of them once leading zeros are dropped.
CONTENT_LENGTH = re.compile(r"0*[0-9]{1,20}")


class FetchError(StageError):
    """The data could not be fetched or did not verify."""


@dataclass(frozen=True)
class DownloadPolicy:
    """How patient a download is; a dead network fails in at most about attempts × timeout + the waits.

    Attributes:
        timeout_seconds: the wait for the connection and for each read.
        attempts: tries in all.
        backoff_seconds: the wait before the second try; it doubles before each further one.
        max_bytes: the largest body accepted, refused from its Content-Length or as it arrives. Both
            official sources are far smaller; a larger file can still be used as a local copy.
        progress_window_seconds, progress_min_bytes: an attempt fails once fewer than
            `progress_min_bytes` arrive in some `progress_window_seconds` (checked as reads return,
            so at most `timeout_seconds` late), because a server that trickles bytes never trips the
            per-read timeout.
    """

    timeout_seconds: float = 30.0
    attempts: int = 3
    backoff_seconds: float = 2.0
    max_bytes: int = 1 << 30
    progress_window_seconds: float = 60.0
    progress_min_bytes: int = 1024


DEFAULT_POLICY = DownloadPolicy()


class _Progress:
    """Logs a download's bytes and rate every tenth of the way (see the step constants above).

    Stage logs are files, not terminals: at most ten lines per download keep them readable.
    """

    def __init__(self, url: str, total: int | None):
        self.url, self.total, self.done = url, total, 0
        self.step = max(total // 10, MIN_PROGRESS_STEP_BYTES) if total else UNKNOWN_SIZE_STEP_BYTES
        self.started = time.monotonic()

    def update(self, size: int) -> None:
        before, self.done = self.done, self.done + size
        # One line per step boundary crossed, however the body arrives in chunks.
        if self.done // self.step > before // self.step:
            self.report()

    def report(self) -> None:
        seconds = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / 1e6 / seconds
        if self.total:
            share = 100 * self.done // self.total
            log.info("%s: %.1f of %.1f MB (%d%%), %.1f MB/s", self.url, self.done / 1e6, self.total / 1e6, share, rate)
        else:
            log.info("%s: %.1f MB, %.1f MB/s", self.url, self.done / 1e6, rate)


class _Stalled(Exception):
    """An attempt delivered too few bytes for too long; another attempt may find a faster path."""


class _ProgressDeadline:
    """Fails once fewer than `min_bytes` arrived in some `window_seconds`, measured from any moment.

    `pending` holds the moments (time, bytes done) not yet followed by `min_bytes` more: their bytes
    differ by less than `min_bytes`, and each read adds at least one byte, so it never holds more
    than `min_bytes` entries.
    """

    def __init__(self, window_seconds: float, min_bytes: int):
        self.window_seconds, self.min_bytes = window_seconds, min_bytes
        self.pending = deque([(time.monotonic(), 0)])

    def update(self, done: int) -> None:
        now = time.monotonic()
        while self.pending and done - self.pending[0][1] >= self.min_bytes:
            self.pending.popleft()
        if self.pending and now - self.pending[0][0] > self.window_seconds:
            raise _Stalled(
                f"fewer than {self.min_bytes:,} bytes arrived in {self.window_seconds:g} s "
                f"({done - self.pending[0][1]:,} bytes in the last {now - self.pending[0][0]:.1f} s)"
            )
        self.pending.append((now, done))


def _declared_length(url: str, response: http.client.HTTPResponse, policy: DownloadPolicy) -> int | None:
    """The body's size from its Content-Length, None without one.

    Raises:
        FetchError: the Content-Length is not one byte count, or above `policy.max_bytes`.
    """
    values = response.headers.get_all("Content-Length") or []
    if not values:
        return None
    counts = {value.strip() for value in values}
    if len(counts) != 1 or not CONTENT_LENGTH.fullmatch(next(iter(counts))):
        shown = ", ".join(repr(value[:40]) for value in values[:3])
        raise FetchError(f"cannot download {url}: the server sent a malformed Content-Length ({shown})")
    length = int(counts.pop())
    if length > policy.max_bytes:
        raise FetchError(
            f"cannot download {url}: its Content-Length announces {length:,} bytes, "
            f"more than the {policy.max_bytes:,} a download may have. {USE_A_LOCAL_COPY}"
        )
    return length


def _download_once(url: str, destination: Path, policy: DownloadPolicy) -> None:
    with (
        urllib.request.urlopen(url, timeout=policy.timeout_seconds) as response,  # noqa: S310
        # Unbuffered, so a failed write leaves nothing for `close` to fail on again.
        destination.open("wb", buffering=0) as file,
    ):
        total = _declared_length(url, response, policy)
        progress = _Progress(url, total)
        deadline = _ProgressDeadline(policy.progress_window_seconds, policy.progress_min_bytes)
        # `read1` returns what one read of the socket gives: a trickling server cannot keep the loop,
        # and so the deadline, waiting for a whole chunk.
        while chunk := response.read1(CHUNK_BYTES):
            progress.update(len(chunk))
            if total is None and progress.done > policy.max_bytes:
                raise FetchError(
                    f"cannot download {url}: the body exceeds the {policy.max_bytes:,} bytes a download may have. "
                    f"{USE_A_LOCAL_COPY}"
                )
            if total is not None and progress.done > total:
                raise FetchError(f"cannot download {url}: the body is longer than its Content-Length ({total:,} bytes)")
            deadline.update(progress.done)
            _write(destination, file, chunk)
        if total is not None and progress.done != total:
            raise http.client.IncompleteRead(b"", total - progress.done)


def _write(destination: Path, file: BinaryIO, data: bytes) -> None:
    """Write all of `data`; a full disk is not the network's fault, so it is not retried.

    Raises:
        FetchError: the write failed, naming the file.
    """
    remaining = memoryview(data)
    try:
        while remaining:
            remaining = remaining[file.write(remaining) :]
    except OSError as error:
        raise FetchError(f"cannot write {destination}: {error.strerror or error}") from None


def _problem(error: Exception) -> str:
    """What went wrong with one attempt, in a few words for the log and the final message."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, http.client.IncompleteRead):
        return f"the body was cut short ({error.expected} bytes missing)"
    return str(getattr(error, "reason", error))


def download(url: str, destination: Path, policy: DownloadPolicy = DEFAULT_POLICY) -> None:
    """Stream `url` into `destination`, retrying network errors, HTTP 5xx, 408, 429, short bodies and stalls.

    Args:
        url: an http(s) or file URL.
        destination: the file to write; left incomplete on failure (callers write to a temp name).
        policy: timeout, number of attempts and backoff.

    Raises:
        FetchError: another HTTP 4xx, a malformed or too large Content-Length, a body over the limit, a
            destination that cannot be written, or every attempt failed; the message names the URL
            (or the destination).
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            _download_once(url, destination, policy)
            return
        except urllib.error.HTTPError as error:
            if error.code < 500 and error.code not in RETRIED_CLIENT_ERRORS:
                raise FetchError(f"cannot download {url}: {_problem(error)}. {USE_A_LOCAL_COPY}") from None
            problem = _problem(error)
        except (urllib.error.URLError, OSError, http.client.HTTPException, _Stalled) as error:
            problem = _problem(error)
        log.warning("attempt %d of %d to download %s failed: %s", attempt, policy.attempts, url, problem)
        if attempt < policy.attempts:
            time.sleep(policy.backoff_seconds * 2 ** (attempt - 1))
    raise FetchError(f"cannot download {url} after {policy.attempts} attempts: {problem}. {USE_A_LOCAL_COPY}")


def keras_cache_dir() -> Path:
    """The directory Keras caches datasets in, so files it downloaded are found here too."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def _verify_local(path: Path, sha256: str | None) -> str:
    if not path.is_file():
        raise FetchError(f"data.url {path} is not a file")
    actual = sha256_of(path)
    if sha256 is not None and actual != sha256:
        raise FetchError(
            f"checksum mismatch for {path}: expected sha256 {sha256}, got {actual}. "
            "Point data.url at the right file, or correct data.sha256."
        )
    return actual


def _cache_file(url: str, cache_dir: Path) -> Path:
    """Where the download of `url` is cached, once `cache_dir` exists."""
    name = Path(urlparse(url).path).name
    if not CACHE_FILE_NAME.fullmatch(name):
        raise FetchError(f"data.url {url} does not end in a file name to cache the download under")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FetchError(
            f"cannot create the download cache {cache_dir}: {error.strerror}. Set KERAS_HOME to a writable directory."
        ) from None
    return cache_dir / name


def _cached(cached: Path, digest: str, algorithm: str = "sha256") -> bool:
    """Whether `cached` is already the wanted file (its `algorithm` digest is `digest`); another one is deleted."""
    if not cached.is_file():
        return False
    actual = digest_of(cached, algorithm)
    if actual == digest:
        log.info("using %s (cached, %s verified)", cached, algorithm)
        return True
    log.warning("cached %s has %s %s, not %s: deleting it and downloading again", cached, algorithm, actual, digest)
    cached.unlink()
    return False


def fetch_file(
    *,
    url: str,
    sha256: str | None,
    cache_dir: Path,
    policy: DownloadPolicy = DEFAULT_POLICY,
    md5: str | None = None,
) -> tuple[Path, str]:
    """Find or download the file at `url` and verify it.

    Args:
        url: an http(s) URL, a `file://` URL or a local path.
        sha256: the expected digest; required for http(s) unless `md5` is given, while None
            accepts a local file as it is.
        cache_dir: where downloads are kept between runs.
        policy: how patiently to download.
        md5: the expected MD5, for a file whose publisher gives no SHA-256 (checked as well as
            `sha256` when both are given).

    Returns:
        The verified file and its SHA-256.

    Raises:
        FetchError: the download failed, or the file does not match `sha256` or `md5`.
        ValueError: an http(s) URL without `sha256` or `md5`.
    """
    local = local_path(url)
    if local is not None:
        actual = _verify_local(local, sha256)
        _check_md5(local, md5, "Point data.url at the right file.")
        return local, actual
    if sha256 is None and md5 is None:
        raise ValueError(f"an http(s) URL needs a sha256 to verify the download against: {url}")
    cached = _cache_file(url, cache_dir)
    if sha256 is not None and _cached(cached, sha256):
        return cached, sha256
    if sha256 is None and md5 is not None and _cached(cached, md5, "md5"):
        return cached, sha256_of(cached)
    with atomic_path(cached) as temporary:
        log.info("downloading %s to %s", url, cached)
        download(url, temporary, policy)
        actual = sha256_of(temporary)
        if sha256 is not None and actual != sha256:
            raise FetchError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}. The download was deleted."
            )
        _check_md5(temporary, md5, "The download was deleted.", url)
    return cached, actual


def _check_md5(path: Path, md5: str | None, advice: str, name: str | None = None) -> None:
    """Refuse `path` when `md5` is given and is not its MD5."""
    if md5 is None:
        return
    actual = digest_of(path, "md5")
    if actual != md5:
        raise FetchError(f"checksum mismatch for {name or path}: expected md5 {md5}, got {actual}. {advice}")


def resolve_source(source: Source, url: str | None, sha256: str | None) -> tuple[str, str | None]:
    """The URL and pinned digest to fetch: `data.url`/`data.sha256`, or the official ones."""
    if url is None:
        return source.url, source.sha256
    return url, sha256
