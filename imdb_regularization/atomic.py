"""Atomic output writes: a stage killed mid-write never leaves a file that looks finished.

Each output is written under a temporary name beside its target (`.<stem>.tmp<pid><suffix>`)
and renamed into place only once complete. SIGINT and SIGTERM unwind through `cli.run`, so
the temporary is deleted; SIGKILL runs no cleanup, so the next write of the same target deletes
temporaries whose process is gone.

Just before a rename publishes an output, the checks registered with `register_publish_check`
run; one that raises keeps the output unpublished (`params.load_params` registers one that
refuses outputs made from params that have changed since).
"""

import csv
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

_publish_checks: list[Callable[[], None]] = []


def register_publish_check(check: Callable[[], None]) -> None:
    """Run `check` before every later rename of an output into place; it raises to keep the output unpublished."""
    _publish_checks.append(check)


def _check_before_publishing() -> None:
    for check in _publish_checks:
        check()


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


def _process_is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Someone else's process: running, and not ours to clean up after.
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries of `path` left behind by writers that no longer run (killed with SIGKILL)."""
    pattern = re.compile(rf"\.{re.escape(path.stem)}\.tmp(\d+){re.escape(path.suffix)}")
    for candidate in path.parent.iterdir():
        match = pattern.fullmatch(candidate.name)
        if match and not _process_is_running(int(match.group(1))):
            _remove(candidate)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`, renamed onto `path` only if the block succeeds.

    The temporary name keeps the suffix, so writers that check it (Keras' `.keras`) accept it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    temporary = _temporary_name(path)
    try:
        yield temporary
        _check_before_publishing()
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces the directory `path` only if the block succeeds.

    Readers see the old directory, none, or the complete new one: never some files of a new
    output beside others missing or left from an old one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    temporary = _temporary_name(path)
    temporary.mkdir()
    try:
        yield temporary
        _check_before_publishing()
        # A directory cannot be renamed onto a non-empty one. DVC deletes a stage's outputs
        # before running it, so this only matters when a stage is run by hand.
        if path.exists():
            _remove(path)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            _remove(temporary)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as temporary, temporary.open("wb") as file:
        np.save(file, array, allow_pickle=False)


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write rows that share their keys as CSV with a header line."""
    with atomic_path(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
