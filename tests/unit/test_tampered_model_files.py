"""`evaluate` and `plots` trust nothing they read.

Each kind of damaged or hostile input (a missing, truncated, foreign or pickled file; a history,
prediction, label, weight or metric that training cannot produce; a header declaring a huge
array) fails the stage that reads it with one `ModelFilesError` line naming the file and the
first bad value, and the stage writes none of its outputs. Each case runs the stage's `main()`
in this process on a small project of made-up model files; two cases run the real commands.
"""

import json
import os
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from imdb_regularization.evaluation.metrics import evaluate_model
from imdb_regularization.evaluation.words import analyse_words
from imdb_regularization.model import files
from imdb_regularization.model.files import ModelFilesError
from stages import evaluate, plots
from tests.support.project import PROJECT_ROOT, project_params_text
from tools.project import set_params

NUM_WORDS, HIDDEN_UNITS, EPOCHS = 8, (4, 3), 2
LABELS = np.array([0, 1, 1, 0, 1, 0], dtype=np.uint8)
MODELS = ("basic", "l1", "l2")
EVALUATE_ARGS = ["--model", "l1", "--models-dir", "models", "--data", "data/encoded", "--metrics-dir", "new_metrics"]
VOCABULARY = "data/encoded/vocabulary.tsv"
PLOTS_ARGS = ["--models-dir", "models", "--metrics-dir", "metrics", "--vocabulary", VOCABULARY, "--out", "plots"]
STAGE_OUTPUTS = {"evaluate": "new_metrics", "plots": "plots"}
HISTORY = "models/l1/history.json"
PREDICTIONS = "models/l1/test_predictions.npy"
WEIGHTS = "models/l1/weights.npz"
Y_TEST = "data/encoded/y_test.npy"
METRICS = "metrics/l1.json"


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {"hidden_1": (NUM_WORDS, HIDDEN_UNITS[0]), "hidden_2": HIDDEN_UNITS, "output": (HIDDEN_UNITS[1], 1)}
    weights = {}
    for layer, shape in shapes.items():
        weights[f"{layer}_kernel"] = rng.normal(size=shape).astype(np.float32)
        weights[f"{layer}_bias"] = np.zeros(shape[1], np.float32)
    return weights


def _history() -> dict[str, list]:
    return {
        "epoch": [1, 2],
        "loss": [0.7, 0.6],
        "accuracy": [0.5, 0.75],
        "bce": [0.69, 0.58],
        "val_loss": [0.71, 0.65],
        "val_bce": [0.7, 0.64],
        "val_accuracy": [0.5, 0.6],
    }


def build_project(root: Path) -> Path:
    """A project with params.yaml, y_test.npy, and valid files of every model in models/ and metrics/."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(project_params_text())
    set_params(root, {"data.num_words": NUM_WORDS, "train.hidden_units": list(HIDDEN_UNITS), "train.epochs": EPOCHS})
    (root / "data/encoded").mkdir(parents=True)
    np.save(root / Y_TEST, LABELS)
    (root / VOCABULARY).write_text(
        "index\tword\tcount\n" + "".join(f"{index}\tword{index}\t{10 - index}\n" for index in range(4, NUM_WORDS))
    )
    for seed, name in enumerate(MODELS):
        weights = _weights(seed)
        predictions = np.linspace(0.1, 0.9, len(LABELS)).astype(np.float32)
        directory = root / "models" / name
        directory.mkdir(parents=True)
        # The files `files.write_model_files` writes, written directly: the atomic writers run every
        # publish check that the stages run in this process have registered.
        (directory / files.HISTORY).write_text(json.dumps(_history()))
        np.savez(directory / files.WEIGHTS, **weights)  # type: ignore[arg-type]
        np.save(directory / files.TEST_PREDICTIONS, predictions)
        metrics = evaluate_model(
            y_true=LABELS,
            y_prob=predictions,
            history=_history(),
            hidden_kernels={"hidden_1": weights["hidden_1_kernel"], "hidden_2": weights["hidden_2_kernel"]},
            zero_threshold=0.001,
            words=analyse_words(
                [
                    (weights[f"{layer}_kernel"], weights[f"{layer}_bias"])
                    for layer in ("hidden_1", "hidden_2", "output")
                ],
                kept_norm=0.1,
            ),
        )
        (root / "metrics").mkdir(exist_ok=True)
        (root / "metrics" / f"{name}.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return root


# How each case damages the project. Each helper returns a function of the project root.


def _replace_bytes(relative: str, data: bytes) -> Callable[[Path], None]:
    return lambda root: (root / relative).write_bytes(data)


def _delete(relative: str) -> Callable[[Path], None]:
    return lambda root: (root / relative).unlink()


def _truncate(relative: str, keep: float) -> Callable[[Path], None]:
    def tamper(root: Path) -> None:
        data = (root / relative).read_bytes()
        (root / relative).write_bytes(data[: int(len(data) * keep)])

    return tamper


def _edit_json(relative: str, edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def tamper(root: Path) -> None:
        value = json.loads((root / relative).read_text())
        edit(value)
        (root / relative).write_text(json.dumps(value))

    return tamper


def _set(key: str, value: object) -> Callable[[dict], None]:
    """An edit setting `key` (dotted for nested objects, `key[index]` for a list item) to `value`."""

    def edit(document: dict) -> None:
        *parents, last = key.split(".")
        for parent in parents:
            document = document[parent]
        name, _, index = last.partition("[")
        if index:
            document[name][int(index.rstrip("]"))] = value
        else:
            document[name] = value

    return edit


def _drop(key: str) -> Callable[[dict], None]:
    def edit(document: dict) -> None:
        *parents, last = key.split(".")
        for parent in parents:
            document = document[parent]
        del document[last]

    return edit


def _save_array(relative: str, array: np.ndarray) -> Callable[[Path], None]:
    return lambda root: np.save(root / relative, array, allow_pickle=True)


def _huge_header(relative: str, descr: str, shape: tuple[int, ...]) -> Callable[[Path], None]:
    """A valid .npy header declaring `shape`, followed by a few bytes: loading it would allocate the whole shape."""

    def tamper(root: Path) -> None:
        with (root / relative).open("wb") as file:
            np.lib.format.write_array_header_1_0(file, {"descr": descr, "fortran_order": False, "shape": shape})
            file.write(b"\x01" * 16)

    return tamper


def _edit_weights(edit: Callable[[dict[str, np.ndarray]], None]) -> Callable[[Path], None]:
    def tamper(root: Path) -> None:
        with np.load(root / WEIGHTS, allow_pickle=False) as archive:
            weights = {name: archive[name] for name in archive.files}
        edit(weights)
        np.savez(root / WEIGHTS, **weights)  # type: ignore[arg-type]

    return tamper


def _set_weight(name: str, value: object) -> Callable[[dict[str, np.ndarray]], None]:
    def edit(weights: dict[str, np.ndarray]) -> None:
        if callable(value):
            weights[name] = value(weights[name])
        elif value is None:
            del weights[name]
        else:
            weights[name] = value  # type: ignore[assignment]

    return edit


def _with_nan(kernel: np.ndarray) -> np.ndarray:
    kernel = kernel.copy()
    kernel[1, 2] = np.nan
    return kernel


def _with_inf(kernel: np.ndarray) -> np.ndarray:
    kernel = kernel.copy()
    kernel[0, 0] = -np.inf
    return kernel


def _flip_weight_byte(root: Path) -> None:
    """One byte of hidden_2's kernel changed inside the archive, as a bad disk or a careless edit would."""
    kernel = _weights(1)["hidden_2_kernel"]
    data = bytearray((root / WEIGHTS).read_bytes())
    start = bytes(data).find(kernel.tobytes())
    assert start > 0
    data[start + 5] ^= 0x10
    (root / WEIGHTS).write_bytes(bytes(data))


def _duplicate_member(root: Path) -> None:
    with warnings.catch_warnings(), zipfile.ZipFile(root / WEIGHTS, "a") as archive:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name this case wants
        archive.writestr("hidden_1_kernel.npy", archive.read("hidden_1_kernel.npy"))


def _huge_member_header(root: Path) -> None:
    """hidden_1's member replaced by a header declaring (8, 2**40) floats (4 TiB) and a few bytes."""
    with np.load(root / WEIGHTS, allow_pickle=False) as archive:
        weights = {name: archive[name] for name in archive.files}
    with zipfile.ZipFile(root / WEIGHTS, "w") as output:
        for name, array in weights.items():
            with output.open(f"{name}.npy", "w") as member:
                if name == "hidden_1_kernel":
                    header = {"descr": "<f4", "fortran_order": False, "shape": (NUM_WORDS, 2**40)}
                    np.lib.format.write_array_header_1_0(member, header)
                    member.write(b"\x00" * 64)
                else:
                    np.lib.format.write_array(member, array)


def _other_layers(root: Path) -> None:
    metrics = json.loads((root / METRICS).read_text())
    metrics["weights"] = {"hidden_1": metrics["weights"]["hidden_1"]}
    (root / METRICS).write_text(json.dumps(metrics))


# kind -> case -> (tamper, the stages that read the file, the file named, what the message says)
CASES: dict[str, dict[str, tuple[Callable[[Path], None], tuple[str, ...], str, str]]] = {
    "history": {
        "missing": (_delete(HISTORY), ("evaluate", "plots"), HISTORY, "is missing"),
        "truncated": (_truncate(HISTORY, 0.5), ("evaluate", "plots"), HISTORY, "is not valid JSON: "),
        "empty": (_replace_bytes(HISTORY, b""), ("evaluate", "plots"), HISTORY, "Expecting value at line 1 column 1"),
        "binary": (_replace_bytes(HISTORY, b"\x93NUMPY\xff\x00"), ("evaluate",), HISTORY, "is not UTF-8 text"),
        "not an object": (_replace_bytes(HISTORY, b"[1, 2]"), ("evaluate",), HISTORY, "holds list [1, 2]"),
        "repeated key": (
            _replace_bytes(HISTORY, json.dumps(_history())[:-1].encode() + b', "val_bce": [0.1, 0.1]}'),
            ("evaluate", "plots"),
            HISTORY,
            "key 'val_bce' appears twice",
        ),
        "nested without end": (
            _replace_bytes(HISTORY, b'{"epoch": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
            ("evaluate",),
            HISTORY,
            "nested too deeply",
        ),
        "huge integer": (
            _replace_bytes(HISTORY, b'{"epoch": ' + b"7" * 5000 + b"}"),
            ("evaluate",),
            HISTORY,
            "is not valid JSON: Exceeds the limit",
        ),
        "larger than the bound": (
            _replace_bytes(HISTORY, b" " * (files.MAX_JSON_BYTES + 1)),
            ("evaluate",),
            HISTORY,
            "is larger than 16,777,216 bytes",
        ),
        "key missing": (_edit_json(HISTORY, _drop("val_bce")), ("evaluate", "plots"), HISTORY, "lacks val_bce"),
        "accuracy missing": (_edit_json(HISTORY, _drop("accuracy")), ("plots",), HISTORY, "lacks accuracy"),
        "lengths differ": (
            _edit_json(HISTORY, _set("val_bce", [0.5])),
            ("evaluate", "plots"),
            HISTORY,
            "val_bce has 1 values but epoch has 2",
        ),
        "no epochs": (
            _edit_json(HISTORY, lambda history: history.update({key: [] for key in history})),
            ("evaluate", "plots"),
            HISTORY,
            "epoch must be a non-empty list of epoch numbers, got []",
        ),
        "epochs misnumbered": (
            _edit_json(HISTORY, _set("epoch[1]", 3)),
            ("evaluate", "plots"),
            HISTORY,
            "epoch[1] is 3; epochs are numbered 1, 2, 3, ...",
        ),
        "not a list": (_edit_json(HISTORY, _set("bce", 0.5)), ("evaluate",), HISTORY, "bce must be a list of numbers"),
        "NaN": (
            _replace_bytes(HISTORY, json.dumps(_history()).replace("0.64", "NaN").encode()),
            ("evaluate", "plots"),
            HISTORY,
            "val_bce[1] is nan; expected a finite number >= 0",
        ),
        "infinite": (
            _replace_bytes(HISTORY, json.dumps(_history()).replace("0.69", "-Infinity").encode()),
            ("evaluate",),
            HISTORY,
            "bce[0] is -inf",
        ),
        "string": (
            _edit_json(HISTORY, _set("loss[0]", "0.7")),
            ("evaluate",),
            HISTORY,
            "loss[0] is '0.7'; expected a finite number >= 0",
        ),
        "boolean": (_edit_json(HISTORY, _set("val_bce[0]", True)), ("evaluate",), HISTORY, "val_bce[0] is True"),
        "accuracy above 1": (
            _edit_json(HISTORY, _set("val_accuracy[1]", 1.5)),
            ("evaluate", "plots"),
            HISTORY,
            "val_accuracy[1] is 1.5; expected a finite number in [0, 1]",
        ),
        "negative loss": (
            _edit_json(HISTORY, _set("val_bce[0]", -0.2)),
            ("evaluate", "plots"),
            HISTORY,
            "val_bce[0] is -0.2; expected a finite number >= 0",
        ),
    },
    "test predictions": {
        "missing": (_delete(PREDICTIONS), ("evaluate",), PREDICTIONS, "is missing"),
        "truncated": (_truncate(PREDICTIONS, 0.9), ("evaluate",), PREDICTIONS, "declares 24 bytes of data"),
        "not NumPy": (_replace_bytes(PREDICTIONS, b"0.5,0.5\n"), ("evaluate",), PREDICTIONS, "is not a NumPy array"),
        "pickled": (
            _save_array(PREDICTIONS, np.array([0.5] * 6, dtype=object)),
            ("evaluate",),
            PREDICTIONS,
            "holds Python objects, which are never unpickled",
        ),
        "one short": (
            _save_array(PREDICTIONS, np.full(5, 0.5, np.float32)),
            ("evaluate",),
            PREDICTIONS,
            "has shape (5,); expected (6,) (one per test label)",
        ),
        "2-D": (
            _save_array(PREDICTIONS, np.full((6, 1), 0.5, np.float32)),
            ("evaluate",),
            PREDICTIONS,
            "has shape (6, 1); expected (6,)",
        ),
        "integers": (
            _save_array(PREDICTIONS, np.ones(6, np.int64)),
            ("evaluate",),
            PREDICTIONS,
            "holds int64; expected floating-point numbers",
        ),
        "above 1": (
            _save_array(PREDICTIONS, np.array([0.1, 0.2, 1.5, 0.3, 0.9, 0.2], np.float32)),
            ("evaluate",),
            PREDICTIONS,
            "[2] is 1.5; predictions are probabilities in [0, 1]",
        ),
        "negative": (
            _save_array(PREDICTIONS, np.array([-0.1, 0.2, 0.5, 0.3, 0.9, 0.2], np.float32)),
            ("evaluate",),
            PREDICTIONS,
            "[0] is -0.1;",
        ),
        "NaN": (
            _save_array(PREDICTIONS, np.array([0.1, 0.2, 0.5, np.nan, 0.9, 0.2], np.float32)),
            ("evaluate",),
            PREDICTIONS,
            "[3] is nan",
        ),
        "huge declared shape": (
            _huge_header(PREDICTIONS, "<f4", (6 * 2**40,)),
            ("evaluate",),
            PREDICTIONS,
            "has shape (6597069766656,); expected (6,)",
        ),
    },
    "test labels": {
        "missing": (_delete(Y_TEST), ("evaluate",), Y_TEST, "is missing"),
        "not 0 or 1": (
            _save_array(Y_TEST, np.array([0, 2, 1, 0, 1, 0], np.uint8)),
            ("evaluate",),
            Y_TEST,
            "y_test.npy[1] is 2; labels are 0 or 1",
        ),
        "negative": (_save_array(Y_TEST, np.array([0, -1, 1, 0, 1, 0], np.int8)), ("evaluate",), Y_TEST, "[1] is -1"),
        "one class": (
            _save_array(Y_TEST, np.ones(6, np.uint8)),
            ("evaluate",),
            Y_TEST,
            "holds only label 1; the test scores need both classes",
        ),
        "empty": (_save_array(Y_TEST, np.zeros(0, np.uint8)), ("evaluate",), Y_TEST, "holds no labels"),
        "floats": (
            _save_array(Y_TEST, LABELS.astype(np.float32)),
            ("evaluate",),
            Y_TEST,
            "holds float32; expected integers",
        ),
        "2-D": (_save_array(Y_TEST, LABELS[:, None]), ("evaluate",), Y_TEST, "has shape (6, 1); expected (n,)"),
        "pickled": (_save_array(Y_TEST, LABELS.astype(object)), ("evaluate",), Y_TEST, "holds Python objects"),
        "huge declared shape": (
            _huge_header(Y_TEST, "|u1", (2**40,)),
            ("evaluate",),
            Y_TEST,
            "declares 1,099,511,627,776 bytes of data ((1099511627776,) uint8) but holds 16",
        ),
    },
    "weights": {
        "missing": (_delete(WEIGHTS), ("evaluate", "plots"), WEIGHTS, "is missing"),
        "not an archive": (
            _replace_bytes(WEIGHTS, b"weights"),
            ("evaluate", "plots"),
            WEIGHTS,
            "is not an .npz archive: File is not a zip file",
        ),
        "truncated": (_truncate(WEIGHTS, 0.5), ("evaluate",), WEIGHTS, "is not an .npz archive"),
        "kernel missing": (
            _edit_weights(_set_weight("hidden_2_kernel", None)),
            ("evaluate", "plots"),
            WEIGHTS,
            "lacks hidden_2_kernel.npy; train.hidden_units [4, 3] gives hidden_1_kernel.npy, hidden_2_kernel.npy",
        ),
        "output bias missing": (
            _edit_weights(_set_weight("output_bias", None)),
            ("evaluate", "plots"),
            WEIGHTS,
            "lacks output_bias.npy, which train writes for every layer",
        ),
        "bias of another width": (
            _edit_weights(_set_weight("hidden_1_bias", np.zeros(5, np.float32))),
            ("evaluate", "plots"),
            WEIGHTS,
            "hidden_1_bias has shape (5,); expected (4,)",
        ),
        "a layer too many": (
            _edit_weights(_set_weight("hidden_3_kernel", np.ones((3, 3), np.float32))),
            ("evaluate", "plots"),
            WEIGHTS,
            "holds hidden_3_kernel.npy",
        ),
        "rows are not num_words": (
            _edit_weights(_set_weight("hidden_1_kernel", np.ones((7, 4), np.float32))),
            ("evaluate", "plots"),
            WEIGHTS,
            "hidden_1_kernel has shape (7, 4); expected (8, 4) (rows: data.num_words",
        ),
        "chain broken": (
            _edit_weights(_set_weight("hidden_2_kernel", np.ones((5, 3), np.float32))),
            ("evaluate", "plots"),
            WEIGHTS,
            "hidden_2_kernel has shape (5, 3); expected (4, 3) (rows: the previous layer",
        ),
        "1-D kernel": (
            _edit_weights(_set_weight("hidden_2_kernel", np.ones(12, np.float32))),
            ("evaluate",),
            WEIGHTS,
            "has shape (12,); expected (4, 3)",
        ),
        "NaN": (
            _edit_weights(_set_weight("hidden_2_kernel", _with_nan)),
            ("evaluate", "plots"),
            WEIGHTS,
            "hidden_2_kernel[1, 2] is nan; weights must be finite",
        ),
        "infinite": (
            _edit_weights(_set_weight("hidden_1_kernel", _with_inf)),
            ("evaluate",),
            WEIGHTS,
            "hidden_1_kernel[0, 0] is -inf",
        ),
        "integers": (
            _edit_weights(_set_weight("hidden_1_kernel", np.ones((8, 4), np.int32))),
            ("evaluate",),
            WEIGHTS,
            "hidden_1_kernel holds int32; expected floats",
        ),
        "pickled": (
            _edit_weights(_set_weight("hidden_1_kernel", np.ones((8, 4)).astype(object))),
            ("evaluate", "plots"),
            WEIGHTS,
            "hidden_1_kernel holds Python objects, which are never unpickled",
        ),
        "a byte changed": (
            _flip_weight_byte,
            ("evaluate", "plots"),
            WEIGHTS,
            "hidden_2_kernel cannot be read: Bad CRC-32 for file 'hidden_2_kernel.npy'",
        ),
        "a member twice": (_duplicate_member, ("evaluate",), WEIGHTS, "holds hidden_1_kernel.npy more than once"),
        "huge declared shape": (
            _huge_member_header,
            ("evaluate", "plots"),
            WEIGHTS,
            "hidden_1_kernel has shape (8, 1099511627776); expected (8, 4)",
        ),
    },
    "metrics": {
        "missing": (_delete(METRICS), ("plots",), METRICS, "is missing"),
        "truncated": (_truncate(METRICS, 0.5), ("plots",), METRICS, "is not valid JSON"),
        "not an object": (
            _replace_bytes(METRICS, b'"0.5"'),
            ("plots",),
            METRICS,
            "holds str '0.5'; expected a JSON object",
        ),
        "key missing": (_edit_json(METRICS, _drop("test_auc")), ("plots",), METRICS, "lacks test_auc"),
        "score above 1": (
            _edit_json(METRICS, _set("test_auc", 1.5)),
            ("plots",),
            METRICS,
            "test_auc is 1.5; expected a finite number in [0, 1]",
        ),
        "NaN": (
            _replace_bytes(METRICS, b'{"test_bce": NaN}'),
            ("plots",),
            METRICS,
            "test_bce is nan; expected a finite number in [0, inf]",
        ),
        "string": (_edit_json(METRICS, _set("test_bce", "low")), ("plots",), METRICS, "test_bce is 'low'"),
        "epoch not an integer": (
            _edit_json(METRICS, _set("best_epoch", 1.5)),
            ("plots",),
            METRICS,
            "best_epoch is 1.5; expected an integer in [1, inf]",
        ),
        "no weights": (
            _edit_json(METRICS, _set("weights", {})),
            ("plots",),
            METRICS,
            "weights must map each hidden layer",
        ),
        "statistic missing": (
            _edit_json(METRICS, _drop("weights.hidden_2.zero_fraction")),
            ("plots",),
            METRICS,
            "lacks weights.hidden_2.zero_fraction",
        ),
        "fraction above 1": (
            _edit_json(METRICS, _set("weights.hidden_1.zero_fraction", 2.0)),
            ("plots",),
            METRICS,
            "weights.hidden_1.zero_fraction is 2.0",
        ),
        "layer oddly named": (
            _edit_json(METRICS, _set("weights.hidden_1\nEVIL", {})),
            ("plots",),
            METRICS,
            "weights has a layer named 'hidden_1\\nEVIL'",
        ),
        "layers unlike the others": (
            _other_layers,
            ("plots",),
            METRICS,
            "metrics/l1.json has weights of hidden_1; metrics/basic.json of hidden_1, hidden_2",
        ),
    },
}
CASES["vocabulary"] = {
    "missing": (_delete(VOCABULARY), ("plots",), VOCABULARY, "is missing: run the encode stage"),
    "an index beyond num_words": (
        lambda root: (root / VOCABULARY).write_text("index\tword\tcount\n4\tthe\t3\n8\tbeyond\t1\n"),
        ("plots",),
        VOCABULARY,
        "line 3 is '8\\tbeyond\\t1'; expected index<TAB>word<TAB>count, a new index in [4, 7]",
    ),
}
TABLE = [
    pytest.param(kind, case, stage, id=f"{kind}: {case} ({stage})")
    for kind, cases in CASES.items()
    for case, (_, stages, _, _) in cases.items()
    for stage in stages
]


def _run_main(monkeypatch: pytest.MonkeyPatch, root: Path, stage: str) -> None:
    """Run a stage's `main()` in `root`, as its command would."""
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "argv", [stage, *(EVALUATE_ARGS if stage == "evaluate" else PLOTS_ARGS)])
    (evaluate if stage == "evaluate" else plots).main()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return build_project(tmp_path / "project")


def test_the_untampered_project_evaluates_and_plots(project, monkeypatch):
    _run_main(monkeypatch, project, "evaluate")
    written = json.loads((project / "new_metrics/l1.json").read_text())
    assert written == json.loads((project / METRICS).read_text())
    _run_main(monkeypatch, project, "plots")
    assert (project / "plots/report.md").is_file()


@pytest.mark.parametrize(("kind", "case", "stage"), TABLE)
def test_a_tampered_file_fails_the_stage_naming_it_and_writes_nothing(project, monkeypatch, kind, case, stage):
    tamper, _, named, message = CASES[kind][case]
    tamper(project)
    with pytest.raises(ModelFilesError) as failure:
        _run_main(monkeypatch, project, stage)
    text = str(failure.value)
    assert message in text
    assert text.startswith(named)
    assert "\n" not in text and len(text) < 300
    assert not (project / STAGE_OUTPUTS[stage]).exists()


@pytest.mark.parametrize(
    ("stage", "kind", "case"),
    [("evaluate", "test predictions", "above 1"), ("plots", "weights", "a byte changed")],
)
def test_the_command_prints_one_line_and_no_traceback(project, stage, kind, case):
    CASES[kind][case][0](project)
    result = subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", *(EVALUATE_ARGS if stage == "evaluate" else PLOTS_ARGS)],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and CASES[kind][case][3] in lines[0], result.stderr
    assert not (project / STAGE_OUTPUTS[stage]).exists()
