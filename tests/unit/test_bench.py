"""The benchmark's harness on tiny data, without `dvc`: its measurements, its reference encoding, its report.

The benchmark itself (`python -m tools.bench.run`) takes minutes and is not part of the test suite; its
end-to-end pieces, on a copy of the project, are in tests/e2e/test_bench.py.
"""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from imdb_regularization.features.multi_hot import encode_aclimdb, keras_indices, multi_hot
from imdb_regularization.features.vocabulary import index_reviews
from imdb_regularization.readers.aclimdb import iter_reviews
from tests.support.data import extend_archive, make_reviews, write_aclimdb_archive
from tests.support.project import PROJECT_ROOT
from tools.bench.chart import draw_scale_chart
from tools.bench.encoding import compare_encoders
from tools.bench.floor import free_product
from tools.bench.notebook import as_lists, read_ranked, sequences_shaping
from tools.bench.report import markdown, study_overhead, summarize
from tools.bench.run import BenchError, StudyGrid, keep_log, measure, study_result, use_study_revision


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return write_aclimdb_archive(tmp_path_factory.mktemp("archive") / "tiny_aclImdb.tar.gz", make_reviews(10))


def test_a_process_that_imports_tensorflow_is_flagged(tmp_path):
    # Registering a module under that name is all the check looks at, and costs no start-up.
    run = measure(
        ["python", "-c", "import sys; sys.modules['tensorflow'] = sys"], name="fake", cwd=tmp_path, logs=tmp_path
    )
    assert run.processes["fake"]["tensorflow"] is True


def test_a_stage_that_leaves_through_cli_run_is_recorded_too(tmp_path):
    # As every stage does on success: `exit_without_teardown` skips the interpreter's teardown but runs
    # atexit handlers, the hook's among them. The project root as cwd, so `-c` finds the library.
    run = measure(
        ["python", "-c", "from imdb_regularization import cli; cli.run(lambda: None)"],
        name="stage",
        cwd=PROJECT_ROOT,
        logs=tmp_path,
    )
    assert run.processes["stage"]["peak_rss_mb"] > 0
    assert run.processes["stage"]["tensorflow"] is False


def test_a_failing_command_is_reported_in_one_line_by_its_last_line_and_its_log(tmp_path):
    # The earlier lines are printed upper-cased, so the command itself does not hold them.
    script = "print('an earlier line'.upper()); print('the reason'); print(); raise SystemExit(3)"
    with pytest.raises(BenchError) as caught:
        measure(["python", "-c", script], name="fail", cwd=tmp_path, logs=tmp_path)
    message = str(caught.value)
    assert message.endswith(f"failed in {tmp_path} (exit 3): the reason; full output in {tmp_path / 'fail.log'}")
    assert "\n" not in message and "AN EARLIER LINE" not in message
    assert "AN EARLIER LINE" in (tmp_path / "fail.log").read_text()


def test_the_log_of_a_failed_command_is_kept_when_its_work_directory_goes(tmp_path):
    log = tmp_path / "work" / "logs" / "cold.log"
    log.parent.mkdir(parents=True)
    log.write_text("all of it\n")
    error = BenchError("dvc repro failed", log)
    keep_log(error, tmp_path / "results")
    assert str(error) == f"dvc repro failed; full output in {tmp_path / 'results' / 'cold.log'}"
    assert (tmp_path / "results" / "cold.log").read_text() == "all of it\n"


def test_a_notebook_run_that_fails_ends_with_one_line_naming_the_bad_file(archive, tmp_path):
    latin1 = {"aclImdb/train/pos/99_10.txt": "Café".encode("latin-1")}
    path = extend_archive(archive, tmp_path / "latin1.tar.gz", files=latin1)
    command = ["python", "-m", "tools.bench.notebook", str(path), "--timings", str(tmp_path / "notebook.json")]
    with pytest.raises(BenchError) as caught:
        measure(command, name="notebook", cwd=PROJECT_ROOT, logs=tmp_path)
    assert str(caught.value).endswith(
        f"tools.bench.notebook: {path}: aclImdb/train/pos/99_10.txt is not UTF-8 text (byte 3 is 0xe9); "
        f"full output in {tmp_path / 'notebook.log'}"
    )
    assert "Traceback" not in (tmp_path / "notebook.log").read_text()


def test_the_notebook_loop_and_the_encode_stage_give_the_same_rows(archive):
    for ranks, _ in read_ranked(archive).values():
        indices = keras_indices(ranks, 30)
        np.testing.assert_array_equal(sequences_shaping(as_lists(indices), 30), multi_hot(indices, 30))
    # The reference ranks words with its own plain code: it must train on exactly the encode stage's arrays.
    stage_arrays, _ = encode_aclimdb(index_reviews(iter_reviews(archive), archive, workers=1), num_words=30)
    for split, (ranks, labels) in read_ranked(archive).items():
        reference_rows = sequences_shaping(as_lists(keras_indices(ranks, 30)), 30)
        np.testing.assert_array_equal(reference_rows, stage_arrays[f"x_{split}"])
        np.testing.assert_array_equal(labels, stage_arrays[f"y_{split}"])
    timings = compare_encoders(archive, (30, 300))
    assert set(timings[30]) == {"pipeline_seconds", "notebook_seconds"} and set(timings[300]) == {"pipeline_seconds"}


def _results(notebook_seconds: float) -> dict:
    """Results shaped like `tools.bench.run.run_benchmark`'s, with round numbers."""
    stage = {"seconds": 1.0, "peak_rss_mb": 100.0, "tensorflow": False}
    fit = {"seconds": 1.0, "samples_per_second": 1000, "max_val_loss_difference": 0.0, "val_loss": [0.5]}
    return {
        "notebook": {"seconds": notebook_seconds, "seconds_by_phase": {"import tensorflow": 7.0}},
        "cold": {
            "seconds": 60.0,
            "stage_seconds": 50.0,
            "stages": {"encode": stage, "train@l1": {**stage, "tensorflow": True}},
        },
        "parallel_cold": {
            "seconds": 40.0,
            "jobs": 2,
            "stages": {"train@l1": stage},
            "lock_differences": [],
            "metrics_identical": True,
        },
        "noop": {"repeats": 5, "repro_seconds": 1.5, "status_seconds": 1.2},
        "one_change": {
            "model": "l1",
            "rate": 0.002,
            "seconds": 20.0,
            "stages_run": ["train@l1", "evaluate@l1", "plots"],
        },
        "encode": {
            100: {"seconds": 10.0, "peak_rss_mb": 300.0, "pipeline_seconds": 0.01, "notebook_seconds": 1.0},
            1000: {"seconds": 11.0, "peak_rss_mb": 350.0, "pipeline_seconds": 0.05},
            10000: {"seconds": 20.0, "peak_rss_mb": 900.0, "pipeline_seconds": 0.5},
        },
        "training": [
            {**fit, "variant": "bare model.fit"},
            {**fit, "variant": "train stage", "samples_per_second": 2000},
        ],
        "load_average": {"before": (1.0, 1.0, 1.0), "after": (2.0, 1.0, 1.0)},
    }


def test_the_report_marks_each_target_met_or_not():
    met = {target["target"]: target["met"] for target in summarize(_results(notebook_seconds=70.0))["targets"]}
    assert met == {
        "cold `dvc repro` ÷ notebook ≤ 1.0": True,
        "cold, parallel trainings ÷ notebook ≤ 0.6": True,
        "parallel run leaves dvc.lock and metrics as the sequential one": True,
        "one change ÷ notebook ≤ 0.3": True,
        "one change reruns only train@l1, evaluate@l1, plots": True,
        "no-op `dvc repro` ≤ 1.5 × `dvc status`": True,
        "encode's multi-hot ≥ 20 × the notebook's loop at num_words=100": True,
        "encode time and peak RSS grow no faster than num_words (× [10.0, 10.0])": True,
        "no stage but train imports TensorFlow": True,
        "train stage's fit ≥ bare `model.fit` (samples/s, same val losses)": True,
    }
    slower_notebook = summarize(_results(notebook_seconds=50.0))["targets"]
    assert [target["met"] for target in slower_notebook][:4] == [False, False, True, False]


def test_the_markdown_report_shows_targets_and_ratios():
    results = _results(notebook_seconds=50.0)
    table = markdown(summarize(results), results)
    assert "| cold `dvc repro` ÷ notebook ≤ 1.0 | 1.20 | **not met** |" in table
    assert "| cold `python -m tools.parallel -j 2` (trainings at once) | 40.0 | 0.80 |" in table
    assert "| `train@l1` | 1.0 | 100 | yes | 1.0 |" in table
    assert "1-minute load average 1.0 before the run, 2.0 after" in table


# A child that takes 50 MB more at a time, up to 2 GB, then ends: only a working watch stops it early.
GROWING = "blocks = []\nfor _ in range(40):\n    blocks.append(b'x' * (50 * 2**20))"


def test_a_command_above_its_memory_ceiling_is_stopped_and_reported_out_of_memory(tmp_path):
    run = measure(["python", "-c", GROWING], name="grow", cwd=tmp_path, logs=tmp_path, memory_ceiling_mb=300)
    assert run.out_of_memory is True
    assert 300 < run.peak_pss_mb < 1_000 and run.peak_rss_mb >= run.peak_pss_mb


def test_the_memory_of_a_command_counts_its_child_processes(tmp_path):
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {GROWING!r}])"
    run = measure(["python", "-c", parent], name="parent", cwd=tmp_path, logs=tmp_path, memory_ceiling_mb=300)
    # The parent alone holds a few MB: only the child's memory can take the tree above the ceiling.
    assert run.out_of_memory is True and run.peak_pss_mb > 300


def test_a_command_within_its_ceiling_reports_its_peak_and_no_stop(tmp_path):
    run = measure(["python", "-c", "x = b'x' * (120 * 2**20)"], name="fits", cwd=tmp_path, logs=tmp_path)
    assert run.out_of_memory is False
    assert run.processes["fits"]["peak_rss_mb"] > 120


def _scale_row(width: int, train_seconds: float, parallel_pss: float, notebook: dict | None) -> dict:
    row = {
        "num_words": width,
        "parallel": {"seconds": 30.0, "peak_rss_mb": 2 * parallel_pss, "peak_pss_mb": parallel_pss, "jobs": 3},
        "train": {
            "seconds": train_seconds,
            "runs_seconds": [train_seconds + 2, train_seconds, train_seconds - 1],
            "peak_rss_mb": 900.0,
            "input": "sparse" if width > 1000 else "dense",
        },
        "encode": {"seconds": 5.0, "peak_rss_mb": 350.0},
    }
    if notebook is not None:
        row["notebook"] = notebook
    return row


SCALE = [
    _scale_row(100, 6.0, 2_000.0, {"seconds": 60.0, "peak_rss_mb": 1_500.0, "out_of_memory": False}),
    _scale_row(10_000, 8.0, 2_900.0, {"seconds": 200.0, "peak_rss_mb": 10_000.0, "out_of_memory": False}),
    _scale_row(
        30_000, 12.0, 3_100.0, {"seconds": 20.0, "peak_rss_mb": 14_100.0, "out_of_memory": True, "ceiling_mb": 14_000}
    ),
    _scale_row(100_000, 40.0, 8_100.0, None),
]
FLOOR = {
    "num_words": 10_000,
    "ones_per_row": 131.2,
    "start_up_seconds": 4.0,
    "fit_seconds": 3.5,
    "fit_one_batch_seconds": 3.0,
    "fit_keras_adam_seconds": 5.0,
    "fit_one_batch_keras_adam_seconds": 4.5,
    "fit_free_products_seconds": 2.2,
    "fit_without_penalty_seconds": 3.0,
    "fit_descent_seconds": 3.2,
    "fit_without_first_layer_costs_seconds": 1.5,
    "fit_rounds": 2,
    "fit_runs_seconds": {"fit": [3.5, 4.1], "fit_descent": [3.2, 3.3]},
    "products_seconds": 0.8,
    "kernel_update_seconds": 2.0,
    "batching_seconds": 0.4,
    "products_rate_gmacs": 18.2,
    "dense_rate_gmacs": 90.0,
    "memory_rate_gbs": 24.0,
    "floor_multiply_adds": 25_000_000_000,
    "kernel_update_passes": 7,
    "floor_kernel_update_bytes": 36_000_000_000,
    "floor_kernel_update_seconds": 1.5,
    "floor_seconds": 5.8,
}


def test_the_scale_targets_of_the_issue_are_checked():
    met = {
        target["target"]: (target["measured"], target["met"])
        for target in summarize({**_results(notebook_seconds=70.0), "scale": SCALE})["targets"]
    }
    assert met["10,000 words: cold parallel run ÷ notebook ≤ 0.25"] == ("0.15", True)
    assert met["10,000 words: one train stage's peak RSS ≤ 1 GB"] == ("900 MB", True)
    assert met["10,000 words: the whole parallel run's memory (its processes' summed PSS) ≤ 3 GB"] == ("2900 MB", True)
    assert met["10,000 words: train stage time ≤ 1.5 × at 100"] == ("1.33 × (8.0 s ÷ 6.0 s, medians)", True)
    assert met["30,000 words: the whole pipeline, 3 trainings at once, in < 8 GB"] == ("3 at once, 3100 MB", True)
    assert met["100,000 words: the whole pipeline, 3 trainings at once, in < 8 GB"] == ("3 at once, 8100 MB", False)


def test_the_scale_table_says_where_the_notebook_ran_out_of_memory(tmp_path):
    results = {**_results(notebook_seconds=70.0), "scale": SCALE}
    table = markdown(summarize(results), results)
    assert "| 30,000 | out of memory after 20 s | > 14,000 (stopped) | 30.0 | – |" in table
    assert "| 100,000 | not run | – | 30.0 | – | 8,100 / 16,200 | 3 | sparse |" in table
    draw_scale_chart(SCALE, tmp_path / "scale.png")
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_floor_table_takes_the_median_stage_apart_against_its_multiply_adds_and_kernel_traffic():
    scale = [*SCALE[:1], {**SCALE[1], "floor": FLOOR}, *SCALE[2:]]
    results = {**_results(notebook_seconds=70.0), "scale": scale}
    table = markdown(summarize(results), results)
    assert "one train stage, s (median of 3 runs)" in table
    assert "| one train stage, measured (the median of 3 runs) | 8.0 | 1.00 |" in table
    assert "| saving, and what else lies outside `fit` | 0.5 | 0.06 |" in table
    assert "Adam's 7 passes over num_words × units arrays (weights, gradient, moments) every step (36 GB" in table
    assert "at 24.0 GB/s, the rate an in-place TensorFlow update streams memory here | 1.5 | 0.19 |" in table
    assert "+ the kernel update's floor | 5.8 | 0.72 |" in table
    assert "| as the stage runs it | 3.5 | – |" in table
    assert (
        "| the first layer's products (training and validation) replaced by zeros of their shapes | 2.2 | 1.3 |"
        in table
    )
    assert "| without the L1/L2 penalty (of both hidden layers) | 3.0 | 0.5 |" in table
    assert "fused gradient descent: 3 passes over the first kernel's arrays, not 7 | 3.2 | 0.3 |" in table
    assert "the best of 2 trainings each, the variants taking turns" in table
    assert "one variant's own trainings came out up to 0.6 s apart" in table
    assert "| all three at once | 1.5 | 2.0 |" in table


def _stage_records(model_keys: list[str], experiments: int, train_seconds: float) -> list[dict]:
    """What the stage hook writes for a study: every point's train and evaluate, and DVC's own processes."""
    records = [{"name": "study", "seconds": 90.0, "peak_rss_mb": 80.0, "tensorflow": False}]
    for _ in range(experiments):
        for key in model_keys:
            records.append({"name": f"train@{key}", "seconds": train_seconds, "peak_rss_mb": 600.0, "tensorflow": True})
            records.append({"name": f"evaluate@{key}", "seconds": 0.5, "peak_rss_mb": 40.0, "tensorflow": False})
    return records


def test_the_study_row_sums_its_points_stages_across_experiments_of_the_same_stage_names():
    # Four seeds of five points: each seed's experiment has stages of the same names, all counted.
    grid = StudyGrid(rates="1e-4,1e-3", seeds=4, jobs=2)
    records = _stage_records(["basic", "l1_0p0001", "l1_0p001", "l2_0p0001", "l2_0p001"], 4, train_seconds=5.5)
    row = study_result(66.0, records, grid, num_words=100)
    assert grid.points == 20
    assert row["train_runs"] == row["evaluate_runs"] == 20
    assert row["train_seconds"] == 110.0 and row["evaluate_seconds"] == 10.0
    assert study_overhead(row) == {"stage_seconds": 120.0, "per_job_seconds": 60.0, "ratio": 1.1}


def _study_rows() -> list[dict]:
    grid = StudyGrid(rates="1e-3", seeds=4, jobs=2)
    after = study_result(66.0, _stage_records(["basic", "l1_0p001", "l2_0p001"], 4, 4.5), grid, 100)
    before = study_result(150.0, _stage_records(["basic", "l1", "l2"], 4, 4.5), grid, 100)
    return [{"revision": None, **after}, {"revision": "a68afe2", **before}]


def test_the_study_target_is_the_current_studys_and_is_reported_with_the_earlier_one():
    results = {**_results(notebook_seconds=70.0), "study": _study_rows()}
    targets = {target["target"]: target for target in summarize(results)["targets"]}
    target = targets["study of 12 new points: wall ≤ 1.5 × (Σ train + evaluate ÷ 2 jobs)"]
    # 12 × (4.5 + 0.5) = 60 s of stages, 30 s a job: 66 s is 2.2 times that.
    assert target["measured"] == "2.20 ×, 12 of 12 points trained" and target["met"] is False
    table = markdown(summarize(results), results)
    assert "`python -m study.run --rates 1e-3 --seeds 4 --jobs 2` at num_words=100" in table
    assert "| current `study/` | 12 | 12 / 12 | 66.0 | 60.0 | 30.0 | 2.20 | ≤ 1.5 |" in table
    assert "| `study/` of a68afe2 | 12 | 12 / 12 | 150.0 | 60.0 | 30.0 | 5.00 | ≤ 1.5 |" in table
    assert "An earlier `study/` runs the same grid its own way" in table


def test_a_study_whose_points_came_from_the_run_cache_misses_its_target():
    row = {**_study_rows()[0], "seconds": 30.0, "train_runs": 6}
    (target,) = [
        target for target in summarize({**_results(70.0), "study": [row]})["targets"] if "study" in target["target"]
    ]
    assert target["measured"] == "1.00 ×, 6 of 12 points trained" and target["met"] is False


def test_the_study_of_a_revision_replaces_the_copys_study_and_an_unknown_one_is_one_line(tmp_path):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "stale.py").write_text("")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    use_study_revision(tmp_path, "HEAD")
    assert not (tmp_path / "study" / "stale.py").exists()
    head_run = subprocess.run(["git", "show", "HEAD:study/run.py"], cwd=PROJECT_ROOT, capture_output=True, check=True)
    assert (tmp_path / "study" / "run.py").read_bytes() == head_run.stdout
    with pytest.raises(BenchError, match=r"^no study/ at git revision 'no-such-revision': fatal: "):
        use_study_revision(tmp_path, "no-such-revision")


def test_the_floor_s_free_product_multiplies_nothing_and_gives_the_product_s_shapes():
    import tensorflow as tf

    from imdb_regularization.model.network import sparse_product

    rows = tf.sparse.from_dense(tf.constant([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]))
    kernel = tf.random.normal((3, 4))

    def product_and_gradient(product):
        """`product`'s result and kernel gradient from a TensorFlow function, which folds and prunes as a training's."""

        def traced():
            with tf.GradientTape() as tape:
                tape.watch(kernel)
                result = product(rows.indices, rows.values, rows.dense_shape, kernel)
            return result, tape.gradient(result, kernel, output_gradients=tf.ones((2, 4)))

        return tf.function(traced, autograph=False)()

    result, gradient = product_and_gradient(free_product)
    real_result, real_gradient = product_and_gradient(sparse_product)
    assert result.shape == real_result.shape == (2, 4) and result.dtype == real_result.dtype
    assert gradient.shape == real_gradient.shape == (3, 4) and gradient.dtype == real_gradient.dtype
    assert not result.numpy().any() and not gradient.numpy().any()
