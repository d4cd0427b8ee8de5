"""Running this environment's `dvc` as a subprocess: one way for the study, the tools and the tests.

DVC runs a stage's `cmd` (`python -m stages.train ...`) through the shell, and spawns its queue
workers as `dvc`; with this interpreter's directory first on PATH, both are this environment's
whether or not it is activated.
"""

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def dvc_environment(**extra: str) -> dict[str, str]:
    """This process's environment, with this interpreter's directory first on PATH and `extra` added."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, **extra}


def dvc_command(*arguments: str) -> list[str]:
    """The command line of `dvc <arguments>` with this interpreter."""
    return [sys.executable, "-m", "dvc", *arguments]


def run_dvc(
    *arguments: str, cwd: Path | None = None, env: Mapping[str, str] | None = None, capture: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `dvc <arguments>` and wait; the caller checks `returncode`.

    Args:
        arguments: what follows `dvc` on its command line.
        cwd: the repository (default: the current directory).
        env: the environment (default: `dvc_environment()`).
        capture: keep stdout and stderr as text in the result, instead of passing them through.
    """
    return subprocess.run(
        dvc_command(*arguments),
        cwd=cwd,
        env=dict(env) if env is not None else dvc_environment(),
        capture_output=capture,
        text=True,
        check=False,
    )


def stages_run(output: str) -> list[str]:
    """The stages a `dvc repro` or `dvc exp run` ran, in order, read from its output."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]
