"""Stage `fetch`: get the IMDB source named by `data.source` into `data/raw/`.

Params: `data.source`, `data.url`, `data.sha256`.
Writes: `<out>/<source file>` (`imdb.npz` or `aclImdb_v1.tar.gz`) and `<out>/source.json`
(where it came from, its size and SHA-256).

Downloads go through a user-level cache (Keras' own, `~/.keras/datasets` or
`$KERAS_HOME/datasets`), so a machine that already has the file checks it instead
of fetching it again.
"""

import argparse
import hashlib
import http.client
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from stages import cli
from stages.atomic import atomic_path, write_json
from stages.params import load_params
from stages.sources import SOURCES, Source

log = logging.getLogger("stages.fetch")

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 30.0
ATTEMPTS = 3
BACKOFF_SECONDS = 2.0


class FetchError(cli.StageError):
    """The data could not be fetched or did not verify."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class _Progress:
    """Logs a download every tenth of the way (or every 10 MB when the size is unknown).

    Stage logs are files, not terminals: a line per step keeps them short.
    """

    def __init__(self, url: str, total: int | None):
        self.url, self.total, self.done = url, total, 0
        self.step = total // 10 if total else 10 * CHUNK_BYTES
        self.next_report = self.step
        self.started = time.monotonic()

    def update(self, size: int) -> None:
        self.done += size
        if self.done >= self.next_report:
            self.next_report += self.step
            self.report()

    def report(self) -> None:
        seconds = max(time.monotonic() - self.started, 1e-6)
        of_total = f" of {self.total / 1e6:.1f}" if self.total else ""
        log.info("%s: %.1f%s MB, %.1f MB/s", self.url, self.done / 1e6, of_total, self.done / 1e6 / seconds)


def _download_once(url: str, destination: Path, timeout: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response, destination.open("wb") as file:  # noqa: S310
        length = response.headers.get("Content-Length")
        progress = _Progress(url, int(length) if length else None)
        while chunk := response.read(CHUNK_BYTES):
            file.write(chunk)
            progress.update(len(chunk))
        if progress.total is not None and progress.done != progress.total:
            raise http.client.IncompleteRead(b"", progress.total - progress.done)


def download(
    url: str,
    destination: Path,
    *,
    timeout: float = TIMEOUT_SECONDS,
    attempts: int = ATTEMPTS,
    backoff_seconds: float = BACKOFF_SECONDS,
) -> None:
    """Stream `url` into `destination`, retrying network errors, HTTP 5xx and short bodies.

    Args:
        url: an http(s) or file URL.
        destination: the file to write; left incomplete on failure (callers write to a temp name).
        timeout: seconds to wait for the connection and for each read.
        attempts: tries in all; the wait between them doubles from `backoff_seconds`.
        backoff_seconds: the first wait between tries.

    Raises:
        FetchError: an HTTP 4xx, or every attempt failed; the message names the URL.
    """
    for attempt in range(1, attempts + 1):
        try:
            _download_once(url, destination, timeout)
            return
        except urllib.error.HTTPError as error:
            if error.code < 500:
                raise FetchError(f"cannot download {url}: HTTP {error.code} {error.reason}") from None
            problem = f"HTTP {error.code} {error.reason}"
        except http.client.IncompleteRead as error:
            problem = f"the body was cut short ({error.expected} bytes missing)"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            problem = str(getattr(error, "reason", error))
        log.warning("attempt %d of %d to download %s failed: %s", attempt, attempts, url, problem)
        if attempt < attempts:
            time.sleep(backoff_seconds * 2 ** (attempt - 1))
    raise FetchError(
        f"cannot download {url} after {attempts} attempts: {problem}. "
        "To use a copy you already have, set data.url to its path (and data.sha256 to pin it)."
    )


def keras_cache_dir() -> Path:
    """The directory Keras caches datasets in, so files it downloaded are found here too."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def _local_path(url: str) -> Path | None:
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        return None
    return Path(parsed.path if parsed.scheme == "file" else url)


def _check_digest(what: str, expected: str | None, actual: str) -> None:
    if expected is not None and actual != expected:
        raise FetchError(f"checksum mismatch for {what}: expected sha256 {expected}, got {actual}")


def fetch_file(*, url: str, sha256: str | None, cache_dir: Path) -> tuple[Path, str]:
    """Find or download the file at `url` and verify it.

    Args:
        url: an http(s) URL, a `file://` URL or a local path.
        sha256: the expected digest; None accepts a local file as it is (its digest is returned).
        cache_dir: where downloads are kept between runs.

    Returns:
        The verified file and its SHA-256.

    Raises:
        FetchError: the download failed, or the file does not match `sha256`.
    """
    local = _local_path(url)
    if local is not None:
        if not local.is_file():
            raise FetchError(f"data.url {url} is not a file")
        actual = sha256_of(local)
        _check_digest(str(local), sha256, actual)
        return local, actual
    cached = cache_dir / Path(urlparse(url).path).name
    if cached.is_file():
        actual = sha256_of(cached)
        if actual == sha256:
            log.info("using %s (cached, sha256 verified)", cached)
            return cached, actual
        log.warning("cached %s has sha256 %s, not %s: downloading again", cached, actual, sha256)
    with atomic_path(cached) as temporary:
        log.info("downloading %s", url)
        download(url, temporary)
        actual = sha256_of(temporary)
        _check_digest(f"{url} (the download was deleted)", sha256, actual)
    return cached, actual


def resolve_source(source: Source, url: str | None, sha256: str | None) -> tuple[str, str | None]:
    """The URL and pinned digest to fetch: `data.url`/`data.sha256`, or the official ones."""
    if url is None:
        return source.url, source.sha256
    return url, sha256


def main() -> None:
    parser = argparse.ArgumentParser(description="Fetch the IMDB data into a raw-data directory.")
    parser.add_argument("--out", type=Path, required=True, help="directory for the raw file")
    args = parser.parse_args()

    data = load_params().data
    source = SOURCES[data.source]
    url, sha256 = resolve_source(source, data.url, data.sha256)
    found, digest = fetch_file(url=url, sha256=sha256, cache_dir=keras_cache_dir())
    with atomic_path(args.out / source.filename) as temporary:
        shutil.copyfile(found, temporary)
    write_json(
        args.out / "source.json",
        {"source": source.name, "url": url, "sha256": digest, "bytes": found.stat().st_size},
    )
    log.info("wrote %s (sha256 %s)", args.out / source.filename, digest)


if __name__ == "__main__":
    cli.run(main)
