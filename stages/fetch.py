"""Stage `fetch`: get the IMDB source named by `data.source` into `data/raw/`.

Params: `data.source`, `data.url`, `data.sha256`, `data.word_index_url`, `data.word_index_sha256`.
Writes: `<out>/<source file>` (`imdb.npz` or `aclImdb_v1.tar.gz`) and `<out>/source.json`
(where it came from, its size and SHA-256), which `encode` checks the file against. For the keras
source also Keras' word index, `<out>/imdb_word_index.json` (the words of its indices), recorded
under `word_index` in source.json.
Downloading, caching and verifying: `imdb_regularization.readers.download`.
"""

import argparse
import logging
import shutil
from pathlib import Path

from imdb_regularization import cli
from imdb_regularization.atomic import atomic_directory, write_json
from imdb_regularization.params import DataParams, load_params
from imdb_regularization.readers.download import FetchError, fetch_file, keras_cache_dir, resolve_source
from imdb_regularization.readers.sources import SOURCE_RECORD, SOURCES, WORD_INDEX, WORD_INDEX_RECORD_KEY

log = logging.getLogger("stages.fetch")


def main() -> None:
    parser = argparse.ArgumentParser(description="Fetch the IMDB data into a raw-data directory.")
    parser.add_argument("--out", type=Path, required=True, help="directory for the raw file")
    args = parser.parse_args()

    data = load_params().data
    source = SOURCES[data.source]
    url, sha256 = resolve_source(source, data.url, data.sha256)
    found, digest = fetch_file(url=url, sha256=sha256, cache_dir=keras_cache_dir())
    record = {"source": source.name, "url": url, "sha256": digest, "bytes": found.stat().st_size}
    fetched = {source.filename: found}
    if data.source == "keras":
        fetched[WORD_INDEX.filename], record[WORD_INDEX_RECORD_KEY] = _fetch_word_index(data)
    # The files and their record appear together or not at all.
    with atomic_directory(args.out) as out:
        for filename, path in fetched.items():
            shutil.copyfile(path, out / filename)
        write_json(out / SOURCE_RECORD, record)
    log.info("wrote %s (sha256 %s)", ", ".join(str(args.out / name) for name in fetched), digest)


def _fetch_word_index(data: DataParams) -> tuple[Path, dict]:
    """Keras' word index (or `data.word_index_url`'s), verified, and its record for source.json."""
    url, sha256 = resolve_source(WORD_INDEX, data.word_index_url, data.word_index_sha256)
    md5 = WORD_INDEX.md5 if data.word_index_url is None else None
    try:
        found, digest = fetch_file(url=url, sha256=sha256, cache_dir=keras_cache_dir(), md5=md5)
    except FetchError as error:
        # The download's messages name the data's keys; these are the word index's.
        message = str(error).replace("data.url", "data.word_index_url").replace("data.sha256", "data.word_index_sha256")
        raise FetchError(message) from None
    return found, {"url": url, "sha256": digest, "bytes": found.stat().st_size}


if __name__ == "__main__":
    cli.run(main)
