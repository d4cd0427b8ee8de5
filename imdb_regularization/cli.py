"""What every command's `__main__` shares: logging, clean failures and stops, worker processes.

Every command of the project (the stages, the parallel runner, the study, the benchmark,
`tools.publish_results`) ends through `run`: a user-fixable `StageError` is one line; any other
exception is one line naming the command and the file holding its full traceback; SIGINT and
SIGTERM delete unfinished outputs and end the command with the shell's code for the signal.
"""

import atexit
import errno
import logging
import multiprocessing
import multiprocessing.connection
import os
import select
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import FrameType, TracebackType
from typing import NoReturn

# Ctrl-C, and what `kill`, DVC's parent shell or a CI runner sends to stop a job.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Write errors that mean the disk (or the user's quota, or the process's file size limit) is full.
NO_SPACE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# Where a command run inside a DVC repository keeps the tracebacks of its unexpected errors;
# elsewhere they go to the system's temporary directory.
TRACEBACK_DIR = Path(".dvc") / "tmp" / "tracebacks"
MESSAGE_LIMIT = 300
# Set by DVC for every stage command it runs: the process is a stage, started by DVC.
DVC_STAGE_VARIABLE = "DVC_STAGE"


class StageError(Exception):
    """A failure the user can fix (bad params, bad data, no network); shown without a traceback."""


class Interrupted(BaseException):
    """A stop signal arrived. A BaseException, so only `run` catches it, after every `finally` ran."""

    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal_number = signal_number


def _ignore_repeated_stop(_signal_number: int, _frame: FrameType | None) -> None:
    """A second stop signal while the first one unwinds: ignored, so the clean-up in `finally` blocks completes."""


# The stop signal `_raise_interrupted` turned into `Interrupted`, if one did.
_stopped_by: int | None = None


def _raise_interrupted(signal_number: int, _frame: FrameType | None) -> None:
    global _stopped_by
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, _ignore_repeated_stop)
    _stopped_by = signal_number
    raise Interrupted(signal_number)


def _exit_with(parent_sentinel: int) -> None:
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(1)


def _start_worker() -> None:
    # Forked workers inherit `run`'s handlers, which turn a stop signal into an exception: inside
    # a worker that breaks the pool's protocol and hangs the stage. With the defaults, a signal to
    # the process group ends the workers at once and the stage's own process cleans up.
    for signal_number in STOP_SIGNALS:
        signal.signal(signal_number, signal.SIG_DFL)
    # A worker whose stage was killed outright (`kill -9`) would otherwise wait for work forever.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


class _StagePool(ProcessPoolExecutor):
    """A process pool that, left by an exception or a stop, ends its workers instead of finishing the queued work."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback_: TracebackType | None,
    ) -> bool | None:
        if exc_type is None:
            return super().__exit__(exc_type, exc_value, traceback_)
        # Only this process was stopped (its DVC died, see `_end_with_dvc`), or a task failed:
        # the remaining work is worthless, and waiting for it would keep the stage running.
        for process in list((self._processes or {}).values()):
            process.terminate()
        self.shutdown(wait=True, cancel_futures=True)
        return None


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for a stage: they stop when the stage is stopped or fails, and end when it dies."""
    return _StagePool(max_workers=workers, initializer=_start_worker)


def resolve_model(given: str | None, known: Iterable[str]) -> str:
    """The model a `train@`/`evaluate@` stage works on: `--model`, else DVC's `DVC_STAGE` after the `@`.

    dvc.yaml uses the second way, so no model name from params.yaml is ever pasted into a
    shell command (a key like `x;rm -rf ~` would otherwise run before any validation).
    """
    name = given or os.environ.get(DVC_STAGE_VARIABLE, "").rpartition("@")[2]
    if name not in known:
        raise StageError(f"params.yaml has no model {name!r} (it has {', '.join(known)}); pass --model")
    return name


def exit_without_teardown(code: int = 0) -> NoReturn:
    """End the process once its outputs are written and closed: flush, run `atexit` handlers, skip the rest.

    The interpreter's own teardown (destroying every module, TensorFlow's included) takes noticeable
    time in a training process and does nothing a stage needs. `atexit` handlers still run, so a
    process pool's or a profiler's clean-up happens as usual.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            # A reader that went away (its DVC was killed) cannot be told anything more.
            pass
    atexit._run_exitfuncs()
    os._exit(code)


def command_name() -> str:
    """The name of the running command: its module for `python -m stages.train`, else its script's name."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name)
    return Path(sys.argv[0]).stem if sys.argv and sys.argv[0] not in ("", "-c") else "python"


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` as one line (its lines joined by ` / `), cut at `limit` characters."""
    joined = " / ".join(line.strip() for line in text.splitlines() if line.strip())
    return joined if len(joined) <= limit else joined[: limit - 3] + "..."


def no_space_message(error: OSError, path: Path | str | None = None) -> str | None:
    """One line for a write that failed for lack of space, naming the file; None for any other error."""
    if error.errno not in NO_SPACE_ERRORS:
        return None
    target = path if path is not None else error.filename
    reason = error.strerror or os.strerror(error.errno)
    if target is None:
        return f"a write failed: {reason}; free some space and run again"
    return f"cannot write {os.fsdecode(target)}: {reason}; free some space and run again"


def traceback_path(command: str, directory: Path | None = None) -> Path:
    """Where `command`'s traceback goes: `.dvc/tmp/tracebacks/` in a DVC repository, else the temp directory."""
    if directory is None:
        directory = (
            TRACEBACK_DIR
            if TRACEBACK_DIR.parent.parent.is_dir()
            else Path(tempfile.gettempdir()) / "imdb_regularization-tracebacks"
        )
    return directory / f"{command}-{os.getpid()}.log"


def _save_traceback(error: BaseException, command: str) -> str:
    """Write `error`'s traceback to its file; return where, or why it could not be written."""
    path = traceback_path(command)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as log_file:
            log_file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {command}: {' '.join(sys.argv)}\n")
            log_file.write("".join(traceback.format_exception(error)))
    except OSError as write_error:
        return f"traceback not saved: {write_error.strerror or write_error}"
    return f"traceback in {path}"


def unexpected_error_message(error: BaseException, command: str) -> str:
    """The one line that reports an exception the code did not expect; its traceback is saved to a file.

    The line is logged under the command's name, so it does not repeat it.
    """
    if isinstance(error, OSError) and (no_space := no_space_message(error)):
        return no_space
    where = _save_traceback(error, command)
    if isinstance(error, MemoryError):
        return f"out of memory ({where}); smaller params (data.num_words, train.batch_size) need less"
    if isinstance(error, BrokenProcessPool):
        return f"a worker process ended abruptly (killed, or out of memory?); run again ({where})"
    detail = one_line(str(error))
    return f"unexpected error: {type(error).__name__}{': ' + detail if detail else ''} ({where})"


def _parent_of(pid: int) -> int | None:
    """The parent of process `pid`, from /proc; None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # `pid (command name) state ppid ...`; the name may itself hold spaces and parentheses.
    return int(status.rsplit(")", 1)[1].split()[1])


def _dvc_process() -> int | None:
    """The DVC process running this stage: the parent, or the parent's parent if DVC's shell did not exec.

    DVC runs a stage's command as `$SHELL [options] -c <cmd>`. Bash replaces itself with a lone
    command; dash (`/bin/sh` on Debian, used when `SHELL` is unset, as under CI runners) forks it
    and waits, so the stage's parent is the shell and DVC is one step further up.
    """
    if not sys.platform.startswith("linux") or DVC_STAGE_VARIABLE not in os.environ:
        return None
    parent = os.getppid()
    try:
        arguments = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return parent
    # `cmdline` ends with a NUL, so the split ends with an empty item after the command.
    if len(arguments) >= 4 and arguments[-3] == b"-c":
        return _parent_of(parent)
    return parent


# Read as early as possible: a different answer later means DVC (or its shell) died in between.
_DVC_AT_START = _dvc_process()


def _stop_when_ended(process_handle: int) -> None:
    select.select([process_handle], [], [])
    os.kill(os.getpid(), signal.SIGTERM)


def _end_with_dvc() -> None:
    """Send this process SIGTERM when the DVC running it dies, so it unwinds like any stop.

    A `dvc repro` killed outright (`kill -9`, an out-of-memory kill) cannot stop the stage it runs;
    without this the stage trains on as an orphan, beside the one the next `dvc repro` starts.
    Only under DVC: a command started by hand may outlive its shell on purpose (`nohup`).
    """
    if _DVC_AT_START is None:
        return
    try:
        # Readable once the process has ended; unlike the kernel's parent-death signal, this watches
        # any process, so it holds when a shell sits between DVC and the stage.
        handle = os.pidfd_open(_DVC_AT_START)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGTERM)
        return
    except OSError:  # a kernel before 5.3: no watch, as on other systems
        return
    if _dvc_process() != _DVC_AT_START:
        os.kill(os.getpid(), signal.SIGTERM)
        return
    threading.Thread(target=_stop_when_ended, args=(handle,), daemon=True).start()


def run(main: Callable[[], None]) -> NoReturn:
    """Run a command's `main()`; every stage's and tool's `__main__` is `cli.run(main)`.

    A `StageError` ends the command with its message and exit code 1. SIGINT and SIGTERM unwind the
    stack like an exception, so temporary outputs are deleted (see `atomic`), and end the command
    with one log line and the shell's code 128 + signal. Any other exception is one line naming the
    command and the file with its traceback, exit code 1. A stage run by DVC also gets SIGTERM when
    DVC dies. Every ending leaves through `exit_without_teardown`.
    """
    command = command_name()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    log = logging.getLogger(command)
    for signal_number in STOP_SIGNALS:
        signal.signal(signal_number, _raise_interrupted)
    try:
        try:
            _end_with_dvc()
            main()
        finally:
            # The command is ending either way: a stop arriving now must not interrupt the report below.
            for signal_number in STOP_SIGNALS:
                signal.signal(signal_number, _ignore_repeated_stop)
    except (Interrupted, KeyboardInterrupt) as interruption:
        _exit_stopped(log, interruption.signal_number if isinstance(interruption, Interrupted) else signal.SIGINT)
    except Exception as error:
        if _stopped_by is not None:
            # `Interrupted` raised while native code (TensorFlow's pybind11) was handling an error of its
            # own comes out as another error: the stop is still what ended the command.
            _exit_stopped(log, _stopped_by)
        if isinstance(error, StageError):
            log.error("%s", error)
        else:  # the last resort: one line instead of a traceback
            log.error("%s", unexpected_error_message(error, command))
        exit_without_teardown(1)
    except SystemExit as exit_request:
        # argparse's usage errors and `--help` have printed their message; `sys.exit(text)` prints its text.
        if exit_request.code is None or isinstance(exit_request.code, int):
            exit_without_teardown(exit_request.code or 0)
        log.error("%s", exit_request.code)
        exit_without_teardown(1)
    exit_without_teardown(0)


def _exit_stopped(log: logging.Logger, signal_number: int) -> NoReturn:
    log.error("stopped by %s; outputs not yet complete were deleted", signal.Signals(signal_number).name)
    exit_without_teardown(128 + signal_number)
