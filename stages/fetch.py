"""Stage `fetch`: get the IMDB source named by `data.source` into `data/raw/`.

Params: `data.source`, `data.url`, `data.sha256`.
Writes: `<out>/<source file>` (`imdb.npz` or `aclImdb_v1.tar.gz`) and `<out>/source.json`
(where it came from, its size and SHA-256), which `encode` checks the file against.
Downloading, caching and verifying: `imdb_regularization.readers.download`.
"""

import argparse
import logging
import shutil
from pathlib import Path

from imdb_regularization import cli
from imdb_regularization.atomic import atomic_directory, write_json
from imdb_regularization.params import load_params
from imdb_regularization.readers.download import fetch_file, keras_cache_dir, resolve_source
from imdb_regularization.readers.sources import SOURCE_RECORD, SOURCES

log = logging.getLogger("stages.fetch")


def main() -> None:
    parser = argparse.ArgumentParser(description="Fetch the IMDB data into a raw-data directory.")
    parser.add_argument("--out", type=Path, required=True, help="directory for the raw file")
    args = parser.parse_args()

    data = load_params().data
    source = SOURCES[data.source]
    url, sha256 = resolve_source(source, data.url, data.sha256)
    found, digest = fetch_file(url=url, sha256=sha256, cache_dir=keras_cache_dir())
    # The file and its record appear together or not at all.
    with atomic_directory(args.out) as out:
        shutil.copyfile(found, out / source.filename)
        write_json(
            out / SOURCE_RECORD,
            {"source": source.name, "url": url, "sha256": digest, "bytes": found.stat().st_size},
        )
    log.info("wrote %s (sha256 %s)", args.out / source.filename, digest)


if __name__ == "__main__":
    cli.run(main)
