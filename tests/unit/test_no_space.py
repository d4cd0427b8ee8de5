"""A write that fails for lack of space: one line naming the output, nothing half-written.

A full disk is simulated where a writer gets its data out (monkeypatched to raise ENOSPC after
writing part of it), and met for real in a child process whose file size limit (RLIMIT_FSIZE)
is smaller than its output: Python ignores SIGXFSZ, so the write fails with EFBIG.
"""

import errno
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from imdb_regularization import atomic
from imdb_regularization.atomic import (
    NoSpaceError,
    atomic_directory,
    atomic_files,
    atomic_path,
    save_array,
    write_json,
)
from tests.support.project import PROJECT_ROOT


def _temporaries(root: Path) -> list[Path]:
    return list(root.rglob(".*.tmp*"))


@pytest.fixture
def full_disk(monkeypatch):
    """`np.save` writes a few bytes, then finds the disk full."""

    def save_part(file, array, allow_pickle=True):
        file.write(b"\x93NUMPY")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.np, "save", save_part)


def test_a_full_disk_while_saving_an_array_names_it_and_keeps_the_old_file(tmp_path, full_disk):
    target = tmp_path / "data" / "encoded" / "x_train.npy"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"the old, complete array")
    with pytest.raises(NoSpaceError) as caught:
        save_array(target, np.zeros(3))
    assert str(caught.value) == (
        f"cannot write {target}: No space left on device; nothing was written, free some space and run again"
    )
    assert target.read_bytes() == b"the old, complete array"
    assert _temporaries(tmp_path) == []


def test_a_full_disk_inside_an_output_directory_names_the_file_in_the_output_not_the_temporary(tmp_path, full_disk):
    output = tmp_path / "models" / "l1"
    with pytest.raises(NoSpaceError, match=r"^cannot write \S+/models/l1/weights\.npy: No space left on device;"):
        with atomic_directory(output) as temporary:
            write_json(temporary / "history.json", {"epoch": [1]})
            save_array(temporary / "weights.npy", np.zeros(3))
    assert not output.exists()
    assert _temporaries(tmp_path) == []


def test_a_full_disk_among_files_published_together_keeps_every_old_file_and_names_the_new_one(tmp_path, full_disk):
    plots = tmp_path / "plots"
    plots.mkdir()
    for name in ("curves.csv", "weights.npy", "offline.html"):
        (plots / name).write_text(f"old {name}")
    with pytest.raises(NoSpaceError, match=r"^cannot write \S+/plots/weights\.npy: No space left on device;"):
        with atomic_files(plots) as staging:
            write_json(staging / "curves.csv", {"written": "first"})
            save_array(staging / "weights.npy", np.zeros(3))
    # Not the new curves beside the old weights: every old file, and nothing else.
    assert {path.name: path.read_text() for path in plots.iterdir()} == {
        name: f"old {name}" for name in ("curves.csv", "weights.npy", "offline.html")
    }
    assert _temporaries(tmp_path) == []


def test_files_published_together_replace_theirs_and_leave_the_directory_s_other_files(tmp_path):
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "curves.csv").write_text("old")
    (plots / "offline.html").write_text("a file of the project's, not of the stage")
    with atomic_files(plots) as staging:
        write_json(staging / "curves.csv", {"new": 1})
        write_json(staging / "test.csv", {"new": 2})
        assert not (plots / "test.csv").exists()  # nothing moves before the block ends
    assert sorted(path.name for path in plots.iterdir()) == ["curves.csv", "offline.html", "test.csv"]
    assert (plots / "curves.csv").read_text() == '{\n  "new": 1\n}\n'
    assert _temporaries(tmp_path) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_each_kind_of_full_is_a_no_space_error_and_other_errors_pass_through(tmp_path, code):
    with pytest.raises(NoSpaceError, match=os.strerror(code)), atomic_path(tmp_path / "out.csv") as temporary:
        raise OSError(code, os.strerror(code), str(temporary))
    with pytest.raises(PermissionError), atomic_path(tmp_path / "out.csv"):
        raise PermissionError(errno.EACCES, "Permission denied")
    assert list(tmp_path.iterdir()) == []


# Writes one output under a file size limit far below its size (and above anything Python itself writes here).
LIMITED_WRITER = textwrap.dedent("""
    import resource, sys
    from pathlib import Path
    import numpy as np
    from imdb_regularization import cli
    from imdb_regularization.atomic import atomic_directory, save_array, write_text

    def main():
        limit = 64 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        with atomic_directory(Path(sys.argv[1])) as out:
            if sys.argv[2] == "array":
                save_array(out / "test_predictions.npy", np.zeros(100_000))
            else:
                write_text(out / "history.json", "[" + "0.5, " * 100_000 + "0.5]")

    cli.run(main)
""")


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        # np.save writes a whole array with one `fwrite`, whose short write NumPy reports without an errno.
        (
            "array",
            r"test_predictions\.npy: the disk is full or a file size limit was reached "
            r"\(\d+ requested and \d+ written\)",
        ),
        ("text", r"history\.json: File too large"),
    ],
)
def test_a_file_size_limit_met_for_real_is_one_line_and_leaves_nothing(tmp_path, kind, reason):
    output = tmp_path / "models" / "l1"
    result = subprocess.run(
        [sys.executable, "-c", LIMITED_WRITER, str(output), kind],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    expected = rf"cannot write {re.escape(str(output))}/{reason}; nothing was written, free some space and run again"
    assert re.search(expected, line), line
    assert not output.exists()
    assert _temporaries(tmp_path) == []
