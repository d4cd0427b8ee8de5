"""Per-process accounting for the benchmark, loaded by every Python process it starts.

The benchmark puts this directory on PYTHONPATH, so Python imports this module at start-up.
A process that has a name, DVC_STAGE (which DVC sets for a stage's command) or else
BENCH_PROCESS (which the benchmark sets for what it runs), appends one JSON line to
$BENCH_STAGE_LOG at exit: that name, its wall time, its peak resident memory and whether
it imported TensorFlow. Without BENCH_STAGE_LOG it does nothing.
"""

import atexit
import json
import os
import sys
import time
from pathlib import Path

_STARTED = time.perf_counter()


def peak_rss_mb() -> float:
    """This program's peak resident memory (Linux's VmHWM).

    Not `ru_maxrss`: that survives fork and exec, so a small stage would report the size of
    the process that started it.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("/proc/self/status has no VmHWM line")


def _record(name: str, log_path: str) -> None:
    record = {
        "name": name,
        "seconds": round(time.perf_counter() - _STARTED, 3),
        "peak_rss_mb": peak_rss_mb(),
        "tensorflow": "tensorflow" in sys.modules,
    }
    # One short append per process, so concurrent stages do not interleave their lines.
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


_NAME = os.environ.get("DVC_STAGE") or os.environ.get("BENCH_PROCESS")
if _NAME and "BENCH_STAGE_LOG" in os.environ:
    # Stages leave through `cli.exit_without_teardown`, which runs atexit handlers too.
    atexit.register(_record, _NAME, os.environ["BENCH_STAGE_LOG"])
