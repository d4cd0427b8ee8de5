"""Commands that run other commands (`tools.parallel`, `study.run`): their children stop with them.

Each child runs in a process group of its own, which holds whatever it starts (DVC's stages).
A stop (Ctrl-C, SIGTERM) reaches the groups as Ctrl-C reaches a `dvc repro`: its stage deletes its
unfinished outputs and DVC records nothing for it; a group still running `STOP_GRACE_SECONDS`
later is killed. If the parent dies without that chance (`kill -9`, a closed terminal), the
kernel sends each child SIGTERM (`ending_with_this_process`), which a child running a Python
module (`python -m dvc ...`) passes on to its group as Ctrl-C: DVC then ends as after Ctrl-C,
removing its temporary experiment workspace, instead of dying with it still on disk.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

# How long a stopped `dvc repro` may take to let its stage delete its unfinished outputs before
# its process group is killed; well within the time a user or CI runner waits after a stop.
STOP_GRACE_SECONDS = 5.0

# Runs the command in argv[2:] once the kernel is set to send it SIGTERM when its parent, the
# runner whose pid is argv[1], dies; if that happened already, it exits. A `python -m <module>`
# of this interpreter runs in this process, with SIGTERM sent on to the whole group as SIGINT;
# any other command replaces this process (exec), keeping its pid.
_END_WITH_PARENT = """
import ctypes, os, runpy, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(128 + signal.SIGTERM)
command = sys.argv[2:]
if command[:2] != [sys.executable, "-m"]:
    os.execv(command[0], command)
signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGINT))
sys.argv = command[2:]
runpy.run_module(command[2], run_name="__main__", alter_sys=True)
"""


def ending_with_this_process(command: list[str]) -> list[str]:
    """`command`, started so that it gets SIGTERM if this process dies (Linux; elsewhere as it is).

    Start it in a process group of its own (`ChildProcesses.start`): a Python module passes that
    SIGTERM on to its group.
    """
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-c", _END_WITH_PARENT, str(os.getpid()), *command]


class Stopped(Exception):
    """A child was about to start after the parent was told to stop."""


def signal_group(process: subprocess.Popen, signal_number: int) -> None:
    """Send `signal_number` to the process group `process` leads; a group already gone is fine."""
    try:
        os.killpg(process.pid, signal_number)
    except ProcessLookupError:
        pass


class ChildProcesses:
    """The running children, each the leader of a process group that holds what it started too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._stopping = False

    def start(self, command: list[str], **options: Any) -> subprocess.Popen:
        """Start `command` in a new process group; `forget` it once it has ended.

        Raises:
            Stopped: `stop` was called before it could start.
        """
        with self._lock:
            if self._stopping:
                raise Stopped(command)
            process = subprocess.Popen(command, start_new_session=True, **options)
            self._running.add(process)
        return process

    def forget(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._running.discard(process)

    def run(self, command: list[str], **options: Any) -> int:
        """Run `command` in a new process group and wait for it; return its exit code.

        Raises:
            Stopped: `stop` was called before it could start.
        """
        process = self.start(command, **options)
        try:
            return process.wait()
        finally:
            self.forget(process)

    def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Send SIGINT to every running group, as Ctrl-C would; kill the groups still running after `grace_seconds`.

        Returns once every leader has ended; no child starts afterwards.
        """
        with self._lock:
            self._stopping = True
            running = list(self._running)
        for process in running:
            signal_group(process, signal.SIGINT)
        deadline = time.monotonic() + grace_seconds
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(process, signal.SIGKILL)
                process.wait()
            # DVC waits for its stage, so normally nothing is left; anything that is would run unwatched.
            signal_group(process, signal.SIGKILL)
