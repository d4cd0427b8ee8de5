"""The study's grid and runner: the experiments it plans, their arguments, and how it follows and retries them.

The runner is driven here by a stand-in for DVC that prints what `dvc exp run` prints; the real
`python -m study.run` on a tiny archive is in tests/e2e/test_study.py.
"""

import io
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dvc.utils.hydra import apply_overrides

import study.run
from imdb_regularization.params import parse_params
from study.grid import (
    BASELINE,
    Point,
    StudyError,
    StudyExperiment,
    experiment_settings,
    parse_rates,
    parse_widths,
    plan,
    run_arguments,
    select_shard,
)
from study.run import ExperimentLog, Progress, Run, StudyRunner, absolute_data_url, check_overrides
from tests.support.project import project_params_text

RATES = (0.001, 0.1)


def test_parse_rates_sorts_and_rejects_what_is_not_a_rate():
    assert parse_rates("1e-3,1e-5,0.01") == (1e-5, 1e-3, 0.01)
    for text in ("1e-3,x", "0", "-1e-3", "nan", "1e-3,0.001", "11"):
        with pytest.raises(StudyError, match="--rates"):
            parse_rates(text)


def test_rates_that_would_share_a_model_key_are_refused_naming_both():
    with pytest.raises(StudyError) as caught:
        parse_rates("0.0010000001,1e-4,0.001")
    assert str(caught.value) == (
        "--rates 0.001 and 0.0010000001 would both be named 0p001 in model keys; "
        "pick rates that differ in their first 6 significant digits"
    )


def test_parse_widths_sorts_and_rejects_what_the_pipeline_would_refuse():
    assert parse_widths("10000,100,1000") == (100, 1000, 10000)
    for text in ("100,x", "4", "100,100", "100001", "1e3"):
        with pytest.raises(StudyError, match="--num-words"):
            parse_widths(text)


def test_the_plan_has_one_experiment_per_width_and_seed_with_every_point():
    experiments = plan((100, 10000), RATES, seeds=2, first_seed=42)
    # Seed by seed, the widest first within a seed.
    assert [experiment.name for experiment in experiments] == [
        "study-w10000-s42",
        "study-w100-s42",
        "study-w10000-s43",
        "study-w100-s43",
    ]
    first = experiments[0]
    assert [point.model_key for point in first.points] == ["basic", "l1_0p001", "l1_0p1", "l2_0p001", "l2_0p1"]
    assert all((point.width, point.seed) == (10000, 42) for point in first.points)
    assert first.points[0] == Point(10000, BASELINE, 0.0, 42)
    names = [point.name for experiment in experiments for point in experiment.points]
    assert len(set(names)) == len(names) == 2 * 2 * 5


def test_a_grid_too_large_is_refused_before_anything_runs():
    with pytest.raises(StudyError) as caught:
        plan((100, 1000), RATES, seeds=1_000, first_seed=42)
    assert str(caught.value) == (
        "--num-words, --rates and --seeds ask for 10,000 trainings with seeds up to 1,041: "
        "at most 2,000 trainings and seeds up to 4,294,967,295"
    )
    with pytest.raises(StudyError, match="--seeds must be at least 1"):
        plan((100,), RATES, seeds=0, first_seed=42)


def test_shards_split_the_experiments_between_machines_without_overlap():
    experiments = plan((100, 1000), RATES, seeds=3, first_seed=0)
    shards = [select_shard(experiments, f"{index}/4") for index in (1, 2, 3, 4)]
    assert sorted(name for shard in shards for name in (e.name for e in shard)) == sorted(e.name for e in experiments)
    for text in ("0/2", "3/2", "x", f"{len(experiments) + 1}/{len(experiments) + 1}"):
        with pytest.raises(StudyError, match="--shard"):
            select_shard(experiments, text)


def test_the_settings_give_exactly_the_points_models_and_width_as_dvc_writes_them(tmp_path):
    (experiment,) = plan((1000,), (1e-5, 0.001), seeds=1, first_seed=7)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(project_params_text())
    # What `dvc exp run -S` does to the experiment's params.yaml, read back as the stages read it.
    apply_overrides(params_file, experiment_settings(experiment, []))
    params = parse_params(params_file.read_text())
    assert {key: (spec.regularizer, spec.rate) for key, spec in params.models.items()} == {
        "basic": ("none", 0.0),
        "l1_1e-05": ("l1", 1e-05),
        "l1_0p001": ("l1", 0.001),
        "l2_1e-05": ("l2", 1e-05),
        "l2_0p001": ("l2", 0.001),
    }
    assert (params.data.num_words, params.train.seed) == (1000, 7)
    assert (params.train.validation, params.train.validation_seed) == (0.2, 0)


def test_user_overrides_change_the_split_but_not_what_defines_the_points():
    (experiment,) = plan((1000,), RATES, seeds=1, first_seed=42)
    settings = experiment_settings(experiment, ["train.validation=0.1", "data.num_words=5", "train.epochs=2"])
    # DVC applies -S values in order: the last value of a key wins.
    last = {setting.split("=", 1)[0]: setting.split("=", 1)[1] for setting in settings if "=" in setting}
    assert last["train.validation"] == "0.1"
    assert last["train.validation_seed"] == "0"
    assert last["data.num_words"] == "1000"
    assert last["train.seed"] == "42"
    assert last["train.epochs"] == "2"
    arguments = run_arguments(experiment, [])
    # Not --keep-going: DVC would run the next stage after one stopped by Ctrl-C.
    assert arguments[:5] == ["exp", "run", "--temp", "--name", "study-w1000-s42"]
    assert run_arguments(experiment, [], "rerun-study-w1000-s42")[:5] == arguments[:3] + [
        "--name",
        "rerun-study-w1000-s42",
    ]
    assert [argument for argument in arguments if argument.startswith("evaluate@")] == [
        f"evaluate@{point.model_key}" for point in experiment.points
    ]


def test_a_local_data_url_becomes_absolute_and_quoted_and_others_stay(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = {
        "data.url=tiny.tar.gz": tmp_path / "tiny.tar.gz",
        "data.url='my data.tar.gz'": tmp_path / "my data.tar.gz",  # quoted: DVC reads the path inside
        'data.url="d/x.tar.gz"': tmp_path / "d" / "x.tar.gz",
        "data.url=/srv/a,b.tar.gz": Path("/srv/a,b.tar.gz"),  # unquoted, DVC would sweep over a and b.tar.gz
        "data.url=~/x.tar.gz": tmp_path / "home" / "x.tar.gz",
    }
    for override, path in expected.items():
        assert absolute_data_url(["train.epochs=1", override], None, tmp_path) == [
            "train.epochs=1",
            f"data.url='{path}'",
        ]
    assert absolute_data_url(["train.epochs=1"], "https://example.org/a.tar.gz", tmp_path) == ["train.epochs=1"]
    assert absolute_data_url([], "a,b.tar.gz", tmp_path) == [f"data.url='{tmp_path / 'a,b.tar.gz'}'"]
    assert absolute_data_url([], "/srv/a.tar.gz", tmp_path) == []  # params.yaml's own absolute path works as it is
    # null is the source's official URL, as in params.yaml, not a file named null.
    assert absolute_data_url(["data.url=null"], "/srv/a.tar.gz", tmp_path) == ["data.url=null"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.seed=3", "the study sets train.seed itself, from --seeds"),
        ("data.num_words=5", "the study sets data.num_words itself, from --num-words"),
        ("+models.extra={regularizer: l1, rate: 0.1}", "the study sets models itself, from --rates"),
        ("~models", "the study sets models itself"),
        ("train.epochs", "-S train.epochs cannot be applied to"),
        ("no.such.key=1", "-S no.such.key=1 cannot be applied to"),
        ("train.epochs=many", "train.epochs"),
        ("train.hidden_units=[0]", "train.hidden_units"),
        ("train.validation=0.99999", "train.validation"),
        # Each named itself, not the study's settings that follow and can no longer apply.
        ("train=5", "-S train=5 leaves"),
        ("~train", "-S ~train leaves"),
        ("train.hidden_units=[]", "train.hidden_units"),
        ("train.optimizer=${oc.env:NO_SUCH_VARIABLE}", "-S train.optimizer=${oc.env:NO_SUCH_VARIABLE} cannot be"),
    ],
)
def test_overrides_are_checked_before_anything_runs_and_named(tmp_path, override, message):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(project_params_text())
    with pytest.raises(StudyError, match=re.escape(message)):
        check_overrides(plan((100, 1000), RATES, seeds=2, first_seed=0), [override], params_file)


def test_valid_overrides_pass_the_check(tmp_path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(project_params_text())
    check_overrides(plan((100,), RATES, seeds=1, first_seed=0), ["train.epochs=2", "train.validation=0.1"], params_file)
    # On a cluster the data may be on the workers only: study.cluster checks it there.
    workers_only = [f"data.url='{tmp_path / 'on-the-workers.tar.gz'}'"]
    with pytest.raises(StudyError, match="data.url must be an http"):
        check_overrides(plan((100,), RATES, seeds=1, first_seed=0), workers_only, params_file)
    check_overrides(plan((100,), RATES, seeds=1, first_seed=0), workers_only, params_file, data_here=False)


# What `dvc exp run` prints, as the runner reads it.
DVC_OUTPUT = """\
Stage 'fetch' didn't change, skipping
Stage 'encode' is cached - skipping run, checking out outputs
Running stage 'train@basic':
> python -m stages.train --data data/encoded --models-dir models
Updating lock file 'dvc.lock'
Stage 'evaluate@basic' is cached - skipping run, checking out outputs
Running stage 'train@l1_0p1':
ERROR: failed to reproduce 'train@l1_0p1': failed to run: python -m stages.train l1_0p1, exited with 1
Updating lock file 'dvc.lock'
"""


def test_the_log_reader_follows_finished_running_and_failed_stages():
    said = ExperimentLog()
    lines = DVC_OUTPUT.splitlines()
    for line in lines[:-2]:
        said.read(line)
    assert said.finished == ["fetch", "encode", "train@basic", "evaluate@basic"]
    assert said.running == "train@l1_0p1"
    said.read(lines[-2])
    assert said.failed == ["train@l1_0p1"] and said.running is None
    # DVC updates the lock file for the stages that ran before the failure: not for the failed one.
    said.read(lines[-1])
    assert said.finished == ["fetch", "encode", "train@basic", "evaluate@basic"]


def _run_with_log(tmp_path: Path, experiment: StudyExperiment, text: str) -> Run:
    log_path = tmp_path / f"{experiment.name}.log"
    log_path.write_text(text)
    run = Run(experiment, process=None, log_path=log_path, log_file=io.StringIO(), attempt=1)  # type: ignore[arg-type]
    run.read_log()
    return run


def test_a_second_experiment_of_a_width_waits_until_the_first_has_its_encoded_data(tmp_path):
    first, second = plan((100,), RATES, seeds=2, first_seed=0)
    runner = StudyRunner([second], [], jobs=2, log_dir=tmp_path)
    runner.runs = [_run_with_log(tmp_path, first, "Running stage 'encode':\n")]
    assert not runner._width_free(100)
    assert runner._width_free(1000)
    runner.runs = [_run_with_log(tmp_path, first, "Running stage 'encode':\nUpdating lock file 'dvc.lock'\nRunning")]
    # A half-written last line is kept for the next read, not taken for a stage.
    assert runner.runs[0].said.finished == ["encode"] and not runner._width_free(100)
    runner.runs = [_run_with_log(tmp_path, first, DVC_OUTPUT)]
    assert runner._width_free(100)


# A stand-in for `python -m dvc --wait-for-lock exp run ...`: it prints what DVC prints for each
# target and ends at the first point named in $FAIL_POINTS (comma-separated keys, or point names), as DVC does.
FAKE_DVC = textwrap.dedent("""
    import os, sys
    targets = [argument for argument in sys.argv if argument.startswith("evaluate@")]
    name = sys.argv[sys.argv.index("--name") + 1]
    print("experiment", name, flush=True)
    print("Stage 'encode' didn't change, skipping", flush=True)
    for target in targets:
        key = target.partition("@")[2]
        print(f"Running stage 'train@{key}':", flush=True)
        failing = os.environ.get("FAIL_POINTS", "").split(",")
        if key in failing or f"{name.removeprefix('rerun-')}/{key}" in failing:
            print(f"ERROR: failed to reproduce 'train@{key}': failed to run: train, exited with 1", flush=True)
            sys.exit(1)
        print("Updating lock file 'dvc.lock'", flush=True)
        print(f"Running stage 'evaluate@{key}':", flush=True)
        print("Updating lock file 'dvc.lock'", flush=True)
""")


@pytest.fixture
def fake_dvc(tmp_path, monkeypatch):
    script = tmp_path / "fake_dvc.py"
    script.write_text(FAKE_DVC)
    monkeypatch.setattr(study.run, "dvc_command", lambda *arguments: [sys.executable, str(script), *arguments])
    monkeypatch.setattr(study.run, "POLL_SECONDS", 0.01)
    return script


def test_every_point_of_every_experiment_is_followed_to_done(tmp_path, fake_dvc):
    experiments = plan((100, 1000), RATES, seeds=2, first_seed=0)
    runner = StudyRunner(experiments, [], jobs=2, log_dir=tmp_path / "logs")
    runner.progress.stream = io.StringIO()
    runner.run()
    assert sorted(runner.succeeded) == sorted(experiment.name for experiment in experiments)
    assert runner.progress.done == {point for experiment in experiments for point in experiment.points}
    assert not runner.failed_logs and not runner.runs
    printed = runner.progress.stream.getvalue()
    assert "study: 20/20 points done, 0 running, 0 failed" in printed
    assert printed.count("done study-") == 20


def test_a_failed_point_is_named_with_its_log_and_its_experiment_reruns_without_it(tmp_path, fake_dvc, monkeypatch):
    monkeypatch.setenv("FAIL_POINTS", "l2_0p1")
    (experiment,) = plan((100,), RATES, seeds=1, first_seed=0)
    runner = StudyRunner([experiment], [], jobs=2, log_dir=tmp_path / "logs")
    runner.progress.stream = io.StringIO()
    runner.run()
    failed = Point(100, "l2", 0.1, 0)
    assert runner.failed_logs == {failed: tmp_path / "logs" / "study-w100-s0.log"}
    # The second attempt ran the four others alone, and they are done.
    assert (tmp_path / "logs" / "study-w100-s0.attempt2.log").exists()
    assert runner.succeeded == ["study-w100-s0"]
    assert runner.progress.done == set(experiment.points) - {failed}
    printed = runner.progress.stream.getvalue()
    assert "FAILED study-w100-s0/l2_0p1: see " in printed
    # The points done before the failure are restored by the second attempt, not done twice.
    assert printed.count("done study-w100-s0/basic;") == 1


def test_an_experiment_reruns_until_all_its_failed_points_are_left_out(tmp_path, fake_dvc, monkeypatch):
    monkeypatch.setenv("FAIL_POINTS", "l1_0p001,l2_0p1")
    (experiment,) = plan((100,), RATES, seeds=1, first_seed=0)
    runner = StudyRunner([experiment], [], jobs=1, log_dir=tmp_path / "logs")
    runner.progress.stream = io.StringIO()
    runner.run()
    failed = {Point(100, "l1", 0.001, 0), Point(100, "l2", 0.1, 0)}
    assert set(runner.failed_logs) == failed
    assert runner.failed_logs[Point(100, "l2", 0.1, 0)] == tmp_path / "logs" / "study-w100-s0.attempt2.log"
    assert runner.succeeded == ["study-w100-s0"]
    assert runner.progress.done == set(experiment.points) - failed


def test_an_earlier_experiment_is_replaced_only_once_its_rerun_has_succeeded(tmp_path, fake_dvc, monkeypatch):
    first, second = plan((100,), RATES, seeds=2, first_seed=0)
    monkeypatch.setenv("FAIL_POINTS", ",".join(point.name for point in second.points))
    calls = []
    monkeypatch.setattr(study.run, "call_dvc", lambda *arguments: calls.append(arguments) or "")
    replacing = frozenset({first.name, second.name})
    runner = StudyRunner([first, second], [], jobs=1, log_dir=tmp_path / "logs", replacing=replacing)
    runner.progress.stream = io.StringIO()
    runner.run()
    assert f"experiment rerun-{first.name}\n" in (tmp_path / "logs" / f"{first.name}.log").read_text()
    # The second failed: the earlier experiment of its name stays.
    assert calls == [("--wait-for-lock", "exp", "rename", "--force", f"rerun-{first.name}", first.name)]
    assert runner.succeeded == [first.name]


def test_an_experiment_that_fails_again_fails_all_its_unfinished_points(tmp_path, fake_dvc, monkeypatch):
    monkeypatch.setenv("FAIL_POINTS", "basic")
    # One point only: nothing is left to rerun without it.
    experiment = StudyExperiment(100, 0, (Point(100, BASELINE, 0.0, 0),))
    runner = StudyRunner([experiment], [], jobs=1, log_dir=tmp_path / "logs")
    runner.progress.stream = io.StringIO()
    runner.run()
    assert list(runner.failed_logs) == [experiment.points[0]]
    assert runner.succeeded == []


def test_run_study_fails_naming_each_failed_point_and_its_log(tmp_path, fake_dvc, monkeypatch):
    monkeypatch.setenv("FAIL_POINTS", "l1_0p001")
    monkeypatch.chdir(tmp_path)
    # An earlier run's experiment, and the rerun of it that a stopped run left unrenamed.
    monkeypatch.setattr(study.run, "experiment_names", lambda: {"study-w100-s0", "rerun-study-w100-s0"})
    calls = []
    monkeypatch.setattr(study.run, "call_dvc", lambda *arguments: calls.append(arguments) or "")
    with pytest.raises(StudyError) as caught:
        study.run.run_study(plan((100,), RATES, seeds=1, first_seed=0), [], jobs=1)
    assert str(caught.value) == "1 of 5 points failed: study-w100-s0/l1_0p001 (log .dvc/tmp/study/study-w100-s0.log)"
    # The rerun without the failed point replaces nothing: the earlier result of that point stays.
    assert calls == [
        ("exp", "remove", "rerun-study-w100-s0"),
        ("--wait-for-lock", "exp", "remove", "rerun-study-w100-s0"),
    ]


def test_a_second_study_in_the_same_repository_is_refused(tmp_path):
    descriptor = study.run.hold_study_lock(tmp_path)
    try:
        with pytest.raises(StudyError, match="another study runs in"):
            study.run.hold_study_lock(tmp_path)
    finally:
        os.close(descriptor)
    os.close(study.run.hold_study_lock(tmp_path))  # free again once the first one ends


def test_workspaces_of_stopped_experiments_are_removed_unless_an_experiment_runs(tmp_path):
    workspaces = tmp_path / study.run.TEMP_WORKSPACES
    (workspaces / "run").mkdir(parents=True)  # DVC's records of its runs: not a workspace
    for name in ("tmpa1", "tmpb2"):
        (workspaces / name / ".git").mkdir(parents=True)
    # A process working in one of them: an experiment that runs.
    working = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], cwd=workspaces / "tmpa1", stdin=subprocess.PIPE
    )
    try:
        study.run.remove_stopped_workspaces(tmp_path)
        assert sorted(path.name for path in workspaces.iterdir()) == ["run", "tmpa1", "tmpb2"]
    finally:
        working.communicate(b"")
    study.run.remove_stopped_workspaces(tmp_path)
    assert [path.name for path in workspaces.iterdir()] == ["run"]


def test_progress_counts_points_and_estimates_the_time_left_by_their_cost():
    points = [Point(100, BASELINE, 0.0, 0), Point(10000, BASELINE, 0.0, 0)]
    stream = io.StringIO()
    progress = Progress(points, stream)
    assert progress.line() == "study: 0/2 points done, 0 running, 0 failed, time left unknown"
    progress.started -= 10
    progress.done.add(points[0])
    # The wide point costs 3.6 times the narrow one, which took 10 s.
    assert points[1].cost / points[0].cost == pytest.approx(3.6, abs=0.01)
    assert progress.time_left() == "about 36 s left"
    progress.show("done one")
    assert stream.getvalue() == "done one; study: 1/2 points done, 0 running, 0 failed, about 36 s left\n"
    progress.show()  # no event: nothing new off a terminal
    assert stream.getvalue().count("\n") == 1


def test_a_failed_point_counts_neither_as_done_nor_as_left_in_the_time_left():
    points = [Point(100, BASELINE, 0.0, 0), Point(100, BASELINE, 0.0, 1), Point(100, BASELINE, 0.0, 2)]
    progress = Progress(points, io.StringIO())
    progress.started -= 10
    progress.done.add(points[0])
    progress.failed.add(points[1])  # it may have failed at once: its cost says nothing of the time taken
    assert progress.time_left() == "about 10 s left"
