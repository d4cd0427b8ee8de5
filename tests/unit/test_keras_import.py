"""`imdb_regularization.model.keras_import`: a module hidden while Keras imports; TensorFlow's start-up lines
dropped from stderr.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from imdb_regularization.model.keras_import import hidden_module
from tests.support.project import PROJECT_ROOT

PROBE_MODULE = "keras_import_probe_module"


@pytest.fixture
def probe_module(tmp_path, monkeypatch) -> str:
    """A module no one has imported yet, importable from tmp_path; forgotten again afterwards."""
    (tmp_path / f"{PROBE_MODULE}.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(tmp_path)
    assert PROBE_MODULE not in sys.modules
    yield PROBE_MODULE
    sys.modules.pop(PROBE_MODULE, None)


def test_a_hidden_module_cannot_be_imported_inside_the_block_and_can_after_it(probe_module):
    with hidden_module(probe_module):
        with pytest.raises(ImportError):
            __import__(probe_module)
    assert __import__(probe_module).VALUE == 42


def test_a_module_imported_already_stays_importable(probe_module):
    imported = __import__(probe_module)
    with hidden_module(probe_module):
        assert __import__(probe_module) is imported
    assert sys.modules[probe_module] is imported


# Lines as TensorFlow's C++ code writes them to file descriptor 2 while it loads.
NATIVE_INFO = b"I0000 00:00:1796099737.717152    5880 port.cc:153] oneDNN custom operations are on. You may see...\n"
NATIVE_WARNING = b"W0000 00:00:1796099738.102345    5880 cpu_feature_guard.cc:210] This binary is optimized...\n"
ABSL_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
NATIVE_ERROR = b"E0000 00:00:1796099738.200000    5880 cuda_executor.cc:1] failed call to cuInit: UNKNOWN ERROR\n"
PLAIN = b"plain text, as a library prints it\n"
WRITTEN = [NATIVE_INFO, ABSL_PREAMBLE, NATIVE_ERROR, NATIVE_WARNING, PLAIN]

# Writes WRITTEN to file descriptor 2 inside the block, then a line after it.
WRITER = textwrap.dedent("""
    import os, sys
    from imdb_regularization.model.keras_import import native_startup_lines_dropped

    with native_startup_lines_dropped():
        for line in {written!r}:
            os.write(2, line)
    os.write(2, b"after the block\\n")
""").format(written=WRITTEN)


def _stderr_of_writer(**environment: str) -> bytes:
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-c", WRITER],
        env={**env, "PYTHONPATH": str(PROJECT_ROOT), **environment},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stderr


@pytest.mark.parametrize("level", [None, "2", "3"], ids=["unset", "2", "3"])
def test_native_info_and_warning_lines_are_dropped_and_others_kept(level):
    stderr = _stderr_of_writer(**({} if level is None else {"TF_CPP_MIN_LOG_LEVEL": level}))
    assert stderr == NATIVE_ERROR + PLAIN + b"after the block\n"


@pytest.mark.parametrize("level", ["0", "1"])
def test_a_user_who_asks_for_tensorflow_logs_gets_every_line(level):
    assert _stderr_of_writer(TF_CPP_MIN_LOG_LEVEL=level) == b"".join(WRITTEN) + b"after the block\n"
