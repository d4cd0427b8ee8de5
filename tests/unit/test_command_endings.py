"""Every command of the project, run the way a user runs it, ends a failure with one line and no traceback.

Each runs in a directory that is not a DVC repository, or with a params.yaml it cannot read:
failures that reach the end of each command's error handling without any real work.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.project import PROJECT_ROOT

NOT_A_REPOSITORY = r"you are not inside of a DVC repository"


def _run(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=directory,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TMPDIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["tools.parallel"], rf"tools\.parallel: DVC: {NOT_A_REPOSITORY}"),
        (["study.summarize"], rf"study\.summarize: `dvc exp show --json` failed: ERROR: {NOT_A_REPOSITORY}"),
        (["tools.publish_results"], rf"tools\.publish_results: dvc status failed: ERROR: {NOT_A_REPOSITORY}"),
        (["tools.bench.run", "no-such-archive.tar.gz"], r"tools\.bench\.run: no archive at no-such-archive\.tar\.gz"),
    ],
    ids=["parallel", "summarize", "publish", "bench"],
)
def test_a_command_outside_a_repository_ends_with_one_line(tmp_path, args, expected):
    result = _run(tmp_path, *args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert re.match(rf"\d\d:\d\d:\d\d {expected}", line), line


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe" + "train:\n  epochs: 2\n".encode("utf-16-le"), bytes(range(256))],
    ids=["utf-16", "binary"],
)
@pytest.mark.parametrize("command", ["stages.train", "study.run"])
def test_an_unreadable_params_file_is_one_line_naming_it(tmp_path, content, command):
    (tmp_path / "params.yaml").write_bytes(content)
    result = _run(tmp_path, command, *(["--data", "d", "--models-dir", "m"] if command == "stages.train" else []))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert f" {command}: " in line and "params.yaml" in line, line
