"""dvc.yaml lists, for every stage, each module of `stages/` its command runs, so editing one reruns the stage."""

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

# Logging and the exit code only: a change there changes no output.
NOT_DEPS = {"stages/cli.py"}


def _imported_modules(path: Path) -> set[Path]:
    """The `stages/*.py` files `path` imports, directly or through one another."""
    found, pending = set(), [path]
    while pending:
        tree = ast.parse(pending.pop().read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                candidate = PROJECT_ROOT / (name.replace(".", "/") + ".py")
                if name.startswith("stages.") and candidate.exists() and candidate not in found:
                    found.add(candidate)
                    pending.append(candidate)
    return found


STAGES = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", list(STAGES))
def test_every_module_a_stage_runs_is_one_of_its_deps(name):
    stage = STAGES[name].get("do", STAGES[name])
    module = stage["cmd"].split("python -m ", 1)[1].split()[0]
    entry = PROJECT_ROOT / (module.replace(".", "/") + ".py")
    needed = {str(path.relative_to(PROJECT_ROOT)) for path in _imported_modules(entry) | {entry}} - NOT_DEPS
    assert needed <= set(stage["deps"]), f"{name} lacks {sorted(needed - set(stage['deps']))}"
