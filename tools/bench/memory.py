"""The memory of a running command and all its processes, sampled from /proc, with a ceiling.

A command of the benchmark (a cold parallel run: DVC, three trainings, their evaluations) is a
tree of processes. `MemoryWatch` samples the tree while it runs and keeps the peak of its summed
RSS (every process's resident pages, shared libraries counted once per process) and of its summed
PSS (shared pages split between the processes sharing them: what the run adds to an idle
machine). Above a ceiling it kills the tree, so a reference run that would need more memory than
the machine has (the notebook's float64 arrays at a wide num_words) ends as "out of memory" instead
of taking the machine down.
"""

import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
SAMPLE_SECONDS = 0.1


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process now running."""
    parents = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended between the listing and the read
            continue
        # The command name, in parentheses, may hold spaces: the fields after it are fixed.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def process_tree(root: int) -> list[int]:
    """`root` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def _kilobytes(path: Path, field: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory(root: int) -> tuple[int, int]:
    """(summed RSS, summed PSS) of `root`'s process tree, in bytes."""
    pids = process_tree(root)
    rss = sum(_kilobytes(PROC / str(pid) / "status", "VmRSS:") for pid in pids)
    pss = sum(_kilobytes(PROC / str(pid) / "smaps_rollup", "Pss:") for pid in pids)
    return rss * 1024, pss * 1024


@dataclass
class MemoryPeak:
    rss_bytes: int = 0
    pss_bytes: int = 0
    out_of_memory: bool = False


class MemoryWatch:
    """Samples a process tree's memory in a thread until `stop`; kills the tree above `ceiling_bytes` of PSS."""

    def __init__(self, root: int, ceiling_bytes: int | None = None, interval: float = SAMPLE_SECONDS):
        self.root, self.ceiling, self.interval = root, ceiling_bytes, interval
        self.peak = MemoryPeak()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stopped.is_set():
            rss, pss = tree_memory(self.root)
            self.peak.rss_bytes, self.peak.pss_bytes = max(self.peak.rss_bytes, rss), max(self.peak.pss_bytes, pss)
            if self.ceiling is not None and pss > self.ceiling:
                self.peak.out_of_memory = True
                for pid in process_tree(self.root):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return
            self._stopped.wait(self.interval)

    def stop(self) -> MemoryPeak:
        self._stopped.set()
        self._thread.join()
        return self.peak
