"""How `network` imports Keras: without what training never uses, and without TensorFlow's start-up lines.

Two named contexts, so the special cases are visible where they apply:
- `hidden_module`: Keras imports matplotlib.pyplot on start-up for image helpers that training never
  calls, a noticeable part of every training process's start-up.
- `native_startup_lines_dropped`: TensorFlow's C++ code logs informational lines ("oneDNN custom
  operations are on ...") while it loads, before its logging honours `TF_CPP_MIN_LOG_LEVEL`, straight
  to file descriptor 2, so they would end up in every stage log and in `dvc repro`'s output.
"""

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

# The C++ log format is `<severity><mmdd> <time> <thread> <file>:<line>] message`; I and W are info and
# warnings, which TF_CPP_MIN_LOG_LEVEL=2 hides once TensorFlow's logging is set up. Errors are kept.
_NATIVE_INFO_OR_WARNING = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} [\d:.]+ +\d+ [^\]]+\] )"
)
# A user who sets TF_CPP_MIN_LOG_LEVEL to 0 or 1 asks for these lines; TensorFlow's default is 0.
LOG_LEVEL_VARIABLE, QUIET_LEVEL = "TF_CPP_MIN_LOG_LEVEL", "2"


@contextmanager
def hidden_module(name: str) -> Iterator[None]:
    """Make `import <name>` fail inside the block, unless it is already imported; afterwards it imports as usual."""
    if name in sys.modules:
        yield
        return
    sys.modules[name] = None  # type: ignore[assignment]  # None in sys.modules makes the import fail
    try:
        yield
    finally:
        del sys.modules[name]


@contextmanager
def native_startup_lines_dropped() -> Iterator[None]:
    """Drop the C++ info and warning lines written to stderr inside the block; pass every other line on."""
    os.environ.setdefault(LOG_LEVEL_VARIABLE, QUIET_LEVEL)
    if os.environ[LOG_LEVEL_VARIABLE] < QUIET_LEVEL:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().splitlines(keepends=True)
            os.write(2, b"".join(line for line in lines if not _NATIVE_INFO_OR_WARNING.match(line)))
