"""The processes a test started in a project copy, found by their working directory (Linux's /proc).

DVC runs every stage, queue worker and experiment with its working directory inside the
repository (experiments in `.dvc/tmp/exps/...`), so "nothing left running" is "no process whose
working directory is inside the copy". Processes of other tests and other users live elsewhere.
"""

import os
import selectors
import signal
import subprocess
import time
from pathlib import Path

POLL_SECONDS = 0.1


def processes_under(root: Path) -> dict[int, str]:
    """Live processes (zombies aside) whose working directory is `root` or inside it: pid to command line."""
    root = root.resolve()
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            # A directory deleted meanwhile reads as "<path> (deleted)", still inside `root`.
            working_directory = Path(os.readlink(entry / "cwd"))
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError):
            continue  # ended meanwhile, or not ours to read
        if state != "Z" and working_directory.is_relative_to(root):
            found[int(entry.name)] = command
    return found


def wait_until_none_under(root: Path, timeout: float) -> dict[int, str]:
    """Poll until no process runs inside `root` or `timeout` seconds pass; return those still running."""
    deadline = time.monotonic() + timeout
    while (left := processes_under(root)) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    return left


def kill_all_under(root: Path) -> None:
    """SIGKILL every process still running inside `root`: a failed test's clean-up, so none outlives it."""
    for pid in processes_under(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def describe(processes: dict[int, str]) -> str:
    """`pid command` lines, as `pgrep -a` prints them."""
    return "\n".join(f"{pid} {command}" for pid, command in sorted(processes.items())) or "(none)"


def read_until(process: subprocess.Popen, marker: str, timeout: float) -> str:
    """Read the process's output (a binary pipe) until it contains `marker`; fail if it ends or times out first."""
    assert process.stdout is not None
    output, deadline = b"", time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while marker.encode() not in output:
            assert selector.select(deadline - time.monotonic()), f"no {marker!r} in time:\n{output.decode()}"
            chunk = os.read(process.stdout.fileno(), 1 << 16)
            assert chunk, f"the process ended before {marker!r}:\n{output.decode()}"
            output += chunk
    return output.decode()
