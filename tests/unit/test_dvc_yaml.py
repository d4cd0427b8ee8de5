"""dvc.yaml lists, for every stage, each module its command runs (its own in `stages/`, the library's in
`imdb_regularization/`), so editing one reruns the stage; and every module it lists exists and is run.
"""

import ast
from pathlib import Path

import pytest
import yaml

from tests.support.project import PROJECT_ROOT, plot_titles

# Project packages whose modules a stage can run.
PACKAGES = ("stages", "imdb_regularization")
# Logging and the exit code only: a change there changes no output.
NOT_DEPS = {"imdb_regularization/cli.py"}


def _module_file(name: str) -> Path | None:
    """The file of module or package `name` in the project, if it is one of the project packages'."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = PROJECT_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> set[Path]:
    """The project files `path` imports, directly or through one another (package `__init__.py` files too)."""
    found, pending = set(), [path]
    while pending:
        current = pending.pop()
        tree = ast.parse(current.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0 and node.module, f"{current}: a relative import, which this test does not follow"
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                # `import a.b.c` also runs a/__init__.py and a/b/__init__.py.
                parts = name.split(".")
                for depth in range(1, len(parts) + 1):
                    candidate = _module_file(".".join(parts[:depth]))
                    if candidate is not None and candidate not in found:
                        found.add(candidate)
                        pending.append(candidate)
    return found


def _needed(entry: Path) -> set[str]:
    """What `entry` runs, as dvc.yaml names deps: package `__init__.py` files and NOT_DEPS left out."""
    paths = {str(path.relative_to(PROJECT_ROOT)) for path in _imported_modules(entry) | {entry}}
    return {path for path in paths if not path.endswith("__init__.py")} - NOT_DEPS


STAGES = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]


def _stage(name: str) -> dict:
    return STAGES[name].get("do", STAGES[name])


def _runs(name: str) -> set[str]:
    """The modules stage `name`'s command runs, as dvc.yaml would list them."""
    module = _stage(name)["cmd"].split("python -m ", 1)[1].split()[0]
    return _needed(PROJECT_ROOT / (module.replace(".", "/") + ".py"))


@pytest.mark.parametrize("name", list(STAGES))
def test_every_module_a_stage_runs_is_one_of_its_deps(name):
    stage, needed = _stage(name), _runs(name)
    assert any(path.startswith("imdb_regularization/") for path in needed), needed  # the imports were followed
    assert needed <= set(stage["deps"]), f"{name} lacks {sorted(needed - set(stage['deps']))}"


@pytest.mark.parametrize("name", list(STAGES))
def test_every_module_a_stage_lists_exists(name):
    missing = [dep for dep in _stage(name)["deps"] if dep.endswith(".py") and not (PROJECT_ROOT / dep).is_file()]
    assert missing == [], f"{name} lists modules that do not exist: {missing}"


@pytest.mark.parametrize("name", list(STAGES))
def test_every_module_a_stage_lists_is_one_it_runs(name):
    # dvc.yaml's promise: a change reruns only what it affects.
    listed = {dep for dep in _stage(name)["deps"] if dep.endswith(".py")}
    unused = listed - _runs(name)
    assert unused == set(), f"{name} lists modules its command never imports: {sorted(unused)}"


def test_following_imports_reaches_the_network_the_train_stage_imports_inside_main():
    needed = _runs("train")
    assert {"imdb_regularization/model/network.py", "imdb_regularization/model/keras_import.py"} <= needed
    assert "imdb_regularization/cli.py" not in needed


def test_plot_titles_fit_in_the_page_script():
    # dvc-render puts each title, as the chart's id, into `vegaEmbed('#<id>', spec)` and `<div id="<id>">`:
    # a quote in a title is a syntax error that leaves that chart blank.
    assert [title for title in plot_titles() if "'" in title or '"' in title] == []
