"""What every stage's `__main__` shares: logging to the stage log, clean failures, worker processes."""

import atexit
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from types import FrameType
from typing import NoReturn

# Ctrl-C, and what `kill`, DVC's parent shell or a CI runner sends to stop a job.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StageError(Exception):
    """A failure the user can fix (bad params, bad data, no network); shown without a traceback."""


class Interrupted(BaseException):
    """A stop signal arrived. A BaseException, so only `run` catches it, after every `finally` ran."""

    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal_number = signal_number


def _raise_interrupted(signal_number: int, _frame: FrameType | None) -> None:
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


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for a stage: they stop when the stage is stopped, and end when it dies."""
    return ProcessPoolExecutor(max_workers=workers, initializer=_start_worker)


def resolve_model(given: str | None, known: Iterable[str]) -> str:
    """The model a `train@`/`evaluate@` stage works on: `--model`, else DVC's `DVC_STAGE` after the `@`.

    dvc.yaml uses the second way, so no model name from params.yaml is ever pasted into a
    shell command (a key like `x;rm -rf ~` would otherwise run before any validation).
    """
    name = given or os.environ.get("DVC_STAGE", "").rpartition("@")[2]
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
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


def run(main: Callable[[], None]) -> NoReturn:
    """Run a stage's `main()`; every stage's `__main__` is `cli.run(main)`.

    A `StageError` ends the stage with its message and exit code 1. SIGINT and SIGTERM unwind the
    stack like an exception, so temporary outputs are deleted (see `atomic`), and end the stage with
    one log line and the shell's code 128 + signal. Success leaves through `exit_without_teardown`.
    """
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    log = logging.getLogger("stages")
    for signal_number in STOP_SIGNALS:
        signal.signal(signal_number, _raise_interrupted)
    try:
        main()
    except StageError as error:
        log.error("%s", error)
        sys.exit(1)
    except Interrupted as interruption:
        name = signal.Signals(interruption.signal_number).name
        log.error("stopped by %s; outputs not yet complete were deleted", name)
        sys.exit(128 + interruption.signal_number)
    exit_without_teardown(0)
