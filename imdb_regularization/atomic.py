"""Atomic output writes: a stage killed mid-write never leaves a file that looks finished.

Each output is written under a temporary name beside its target (`.<stem>.tmp<pid><suffix>`)
and renamed into place only once complete. SIGINT and SIGTERM unwind through `cli.run`, so
the temporary is deleted; SIGKILL runs no cleanup, so the next write of the same target deletes
temporaries whose process is gone, and `.dvcignore` keeps them out of DVC's hashes meanwhile.

Just before a rename publishes an output, the checks registered with `register_publish_check`
run; one that raises keeps the output unpublished (`params.load_params` registers one that
refuses outputs made from params that have changed since).

A write that fails for lack of space (a full disk, a quota, the process's file size limit) is a
`NoSpaceError`: one line naming the output, its temporary deleted and the old output left alone.
"""

import csv
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from imdb_regularization.cli import NO_SPACE_ERRORS, STOP_SIGNALS, StageError

_publish_checks: list[Callable[[], None]] = []
# NumPy's `tofile` (which `np.save` uses for a real file) reports a short write without an errno.
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def register_publish_check(check: Callable[[], None]) -> None:
    """Run `check` before every later rename of an output into place; it raises to keep the output unpublished."""
    _publish_checks.append(check)


def _check_before_publishing() -> None:
    for check in _publish_checks:
        check()


class NoSpaceError(StageError):
    """An output could not be written for lack of space; nothing of it was published."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"cannot write {path}: {reason}; nothing was written, free some space and run again")
        self.path = path
        self.reason = reason


def _written_path(output: Path, temporary: Path, failed: Path) -> Path:
    """What to name for a failed write: `failed` inside `temporary` becomes the same file inside `output`."""
    try:
        return output / failed.relative_to(temporary)
    except ValueError:
        return failed


@contextmanager
def _reporting_no_space(output: Path, temporary: Path) -> Iterator[None]:
    """Turn a write that failed for lack of space into a `NoSpaceError` naming the output, not its temporary."""
    try:
        yield
    except NoSpaceError as error:
        # From a nested atomic write into this temporary directory.
        raise NoSpaceError(_written_path(output, temporary, error.path), error.reason) from error.__cause__
    except OSError as error:
        if error.errno in NO_SPACE_ERRORS:
            reason = error.strerror or os.strerror(error.errno)
        elif error.errno is None and _SHORT_WRITE.fullmatch(str(error)):
            reason = f"the disk is full or a file size limit was reached ({error})"
        else:
            raise
        failed = Path(os.fsdecode(error.filename)) if error.filename else temporary
        raise NoSpaceError(_written_path(output, temporary, failed), reason) from error


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
    temporary = _temporary_name(path)
    with _reporting_no_space(path, temporary):
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
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
    temporary = _temporary_name(path)
    with _reporting_no_space(path, temporary):
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
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


@contextmanager
def atomic_files(directory: Path) -> Iterator[Path]:
    """Yield an empty temporary directory whose files all move into `directory` only if the block succeeds.

    For a stage whose outputs are several files in a directory that holds other files too
    (`plots/`): a failure, a full disk or a stop leaves every old output, a success every new one,
    never some of each.
    """
    staging = _temporary_name(directory)
    with _reporting_no_space(directory, staging):
        directory.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(directory)
        staging.mkdir()
        try:
            yield staging
            _check_before_publishing()
            # Renames need no space; a stop arriving during them takes effect once all are done.
            previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                for file in sorted(staging.iterdir()):
                    os.replace(file, directory / file.name)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        finally:
            if staging.exists():
                _remove(staging)


def check_writable(directory: Path) -> None:
    """Create `directory` if missing and write a nameless file in it: a stage checks where it writes before its work.

    Raises:
        StageError: `directory`, or a parent of it, is a file, or the directory cannot be created or written in.
    """
    try:
        blocking = next((path for path in (directory, *directory.parents) if path.exists() and not path.is_dir()), None)
        if blocking is not None:
            what = "it" if blocking == directory else str(blocking)
            raise StageError(f"cannot write into {directory}: {what} is a file, not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise StageError(f"cannot write into {directory}: {error.strerror or error}") from None


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
