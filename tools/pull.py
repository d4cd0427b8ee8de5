"""`dvc pull` that also refuses a tampered directory manifest: `python -m tools.pull [--remote NAME] [--run-cache]`.

Every output of this pipeline is a directory. DVC stores one as a manifest, an object named
`files/md5/<2>/<30>.dir` after the md5 of its own bytes, listing the md5 of each file in it.
With `verify = true` DVC 3 re-hashes every object it downloads, but a manifest that fails the
check is only dropped from the local cache, silently, and the fetch exits 0; the checkout then
reads that manifest from the remote instead. So a manifest rewritten on the remote (pointing
`models/l1` at `models/basic`'s weights, or with an entry removed) is delivered by `dvc pull`.

This command runs `dvc fetch` with the same flags, then checks the manifest of every directory
output `dvc.lock` records: the local cache's copy, or the remote's where the cache has none, must
hash to its name. If one does not, a bad local copy is deleted (so the next pull downloads it
again), nothing is checked out, and the command ends with one line naming the output and where
the bad manifest is. Otherwise it runs `dvc checkout` and exits with its code (or the fetch's, if
only the fetch failed, as `dvc pull` does); a file whose object did not arrive intact (a
corrupted object, which DVC's verify drops) is named in one line, where `dvc pull` names only
its output.

Run from the project root.
"""

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from imdb_regularization import cli
from imdb_regularization.dvc_commands import run_dvc

log = logging.getLogger("tools.pull")

LOCK_FILE = Path("dvc.lock")
# Where DVC 3 keeps objects hashed with plain md5, below the cache directory `dvc cache dir` prints.
OBJECTS = Path("files") / "md5"
MANIFEST_SUFFIX = ".dir"


class TamperedManifestError(cli.StageError):
    """A directory manifest does not hash to its name."""


def manifest_md5(data: bytes) -> str:
    """The name DVC gives a manifest with these bytes: their md5 and `.dir`."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest() + MANIFEST_SUFFIX


def manifest_path(objects: Path, md5: str) -> Path:
    """Where the object `md5` (`<32 hex digits>.dir`) lies below `objects`."""
    return objects / md5[:2] / md5[2:]


def directory_outputs(lock: Mapping[str, Any]) -> dict[str, str]:
    """The directory outputs of a parsed `dvc.lock`: output path by its manifest's md5."""
    return {
        out["md5"]: out["path"]
        for stage in (lock.get("stages") or {}).values()
        for out in stage.get("outs", [])
        if str(out.get("md5", "")).endswith(MANIFEST_SUFFIX)
    }


def _read_lock() -> dict[str, Any]:
    if not LOCK_FILE.is_file():
        return {}
    lock = yaml.safe_load(LOCK_FILE.read_text(encoding="utf-8"))
    return lock if isinstance(lock, dict) else {}


def _cache_objects() -> Path:
    result = run_dvc("cache", "dir")
    if result.returncode != 0:
        raise cli.StageError(f"dvc cache dir failed: {cli.one_line(result.stderr or result.stdout)}")
    return Path(result.stdout.strip()) / OBJECTS


def _remote_manifests(remote: str | None, md5s: Iterable[str]) -> tuple[str, dict[str, bytes]]:
    """The remote's name and its copies of the manifests `md5s` (those it has), read through DVC."""
    from dvc.repo import Repo

    # The S3 client logs where it found credentials at INFO, the level `cli.run` shows.
    for name in ("botocore", "aiobotocore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with Repo() as repo:
        remote_name = remote or repo.config["core"].get("remote") or "(no default remote)"
        copies = {}
        try:
            odb = repo.cloud.get_remote_odb(remote, "pull")
            for md5 in md5s:
                try:
                    copies[md5] = odb.fs.cat_file(odb.oid_to_path(md5))
                except FileNotFoundError:
                    # Missing on the remote too: `dvc checkout` fails that output by itself.
                    continue
        except Exception as error:  # DVC's and the storage clients' errors share no base class
            raise cli.StageError(
                f"cannot read directory manifests missing from the local cache from remote '{remote_name}',"
                f" so nothing was checked out: {cli.one_line(str(error)) or type(error).__name__}"
            ) from error
    return remote_name, copies


def check_manifests(objects: Path, outputs: Mapping[str, str], remote: str | None) -> None:
    """Check every directory output's manifest, in the local cache or else on the remote.

    Args:
        objects: the local cache's `files/md5` directory.
        outputs: output path by manifest md5, from `directory_outputs`.
        remote: the remote the fetch used (None: the default one).

    Raises:
        TamperedManifestError: a manifest does not hash to its name; a bad local copy is deleted first.
    """
    bad: list[str] = []
    not_cached: list[str] = []
    for md5, output in sorted(outputs.items(), key=lambda item: item[1]):
        path = manifest_path(objects, md5)
        if not path.is_file():
            not_cached.append(md5)
        elif manifest_md5(path.read_bytes()) != md5:
            path.unlink()
            bad.append(f"{output} (manifest {md5} in the local cache, now deleted)")
    if not_cached:
        remote_name, copies = _remote_manifests(remote, not_cached)
        bad += [
            f"{outputs[md5]} (manifest {md5} on remote '{remote_name}')"
            for md5, data in copies.items()
            if manifest_md5(data) != md5
        ]
    if bad:
        raise TamperedManifestError(
            f"directory manifest does not hash to its name, so nothing was checked out: {'; '.join(bad)};"
            " delete it on the remote and `dvc push` from a good clone, or pull from another remote (--remote)"
        )


def files_not_fetched(objects: Path, outputs: Mapping[str, str]) -> list[str]:
    """The files of directory outputs whose objects are not in the local cache after a fetch.

    With `verify = true`, DVC drops an object that does not hash to its name, silently, and its
    checkout then fails naming only the output: here the file is named. Outputs whose manifest
    is not in the cache are left to `check_manifests` and to `dvc checkout`.
    """
    missing = []
    for md5, output in sorted(outputs.items(), key=lambda item: item[1]):
        path = manifest_path(objects, md5)
        if not path.is_file():
            continue
        for entry in json.loads(path.read_bytes()):
            if not manifest_path(objects, entry["md5"]).is_file():
                missing.append(f"{output}/{entry['relpath']}")
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(description="dvc pull, refusing directory manifests that do not match their hash.")
    parser.add_argument("-r", "--remote", help="the remote to pull from (default: the repository's default remote)")
    parser.add_argument("--run-cache", action="store_true", help="also fetch the run-cache (as `dvc pull --run-cache`)")
    args = parser.parse_args()

    flags = [*(["--remote", args.remote] if args.remote else []), *(["--run-cache"] if args.run_cache else [])]
    fetch = run_dvc("fetch", *flags, capture=False)
    outputs = directory_outputs(_read_lock())
    objects = _cache_objects()
    check_manifests(objects, outputs, args.remote)
    log.info("the manifests of %d directory outputs match their hashes", len(outputs))
    missing = files_not_fetched(objects, outputs)
    checkout = run_dvc("checkout", capture=False)
    if missing:
        raise cli.StageError(
            f"{', '.join(missing)}: not fetched intact (corrupted or missing on the remote), so not checked out;"
            " pull from another remote (--remote) or `dvc push` from a good clone"
        )
    sys.exit(checkout.returncode or fetch.returncode)


if __name__ == "__main__":
    cli.run(main)
