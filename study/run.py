"""Run the regularization study as DVC experiments: widths x regularizers x rates x seeds.

From the repository root:

    python -m study.run --num-words 100,1000,10000 --rates 1e-5,1e-4,1e-3,1e-2,1e-1 --seeds 3 --jobs 2

trains, at every width (`data.num_words`, default: params.yaml's) and seed (`train.seed`,
`train.seed + 1`, ...), the basic model and L1 and L2 at every rate. The points of one width and
seed are one experiment, `study-w<width>-s<seed>` (see `study.grid`); `--jobs` experiments run at
once, each as `dvc exp run --temp` in a temporary workspace of its own, logging to
`.dvc/tmp/study/<experiment>.log`. An experiment starts only once its width's `encode` is done
(or none of that width is running), so each width is encoded once. Every point is a pair of
stages with its own run-cache entry: a point computed before, here or on a machine sharing the
run-cache through a DVC remote, is restored instead of trained, so adding a width, rate or seed
to a finished study trains only the new points. Rerunning replaces the experiments it runs, each
once its replacement has succeeded: until then it runs as `rerun-<experiment>`, and a rerun
with failed points replaces nothing. One study runs in a repository at a time (`STUDY_LOCK`).

Every point holds out the same validation split of the training set (`study.grid`); the
summary chooses each rate on it and reports the test set.

A point that fails (a diverging training, say) does not stop the others: its experiment runs
again without it, restoring the points finished before it, and the study ends with exit code 1
naming the failed points and their logs. Progress (points done of all, running, failed, time
left) is one updating line on a terminal and a line per finished point otherwise.

`-S key=value` (repeatable) goes to every experiment, e.g. `-S data.source=aclimdb -S
data.url=aclImdb_v1.tar.gz`. `--scheduler tcp://HOST:PORT` runs the experiments as tasks on a
Dask cluster instead (`study.cluster`, docs/cluster.md; `--remote`, `--jobs-per-worker`).
`--shard K/N`, the fallback without a cluster, runs every N-th experiment from the K-th, to
spread one study over N machines by hand.

Ctrl-C (SIGINT) or SIGTERM stops the study: each running experiment gets SIGINT, as Ctrl-C
stops a `dvc exp run`, so its stage deletes its unfinished outputs, DVC removes its temporary
workspace and nothing half-done is recorded; whatever still runs `STOP_GRACE_SECONDS` later is
killed. If the study itself is killed outright, each `dvc exp run` gets SIGTERM and ends the same
way (`child_processes.ending_with_this_process`).
"""

import argparse
import fcntl
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from imdb_regularization import cli
from imdb_regularization.child_processes import ChildProcesses, ending_with_this_process
from imdb_regularization.dvc_commands import dvc_command, dvc_environment, run_dvc
from imdb_regularization.params import PARAMS_FILE, ParamsError, load_params, local_path, parse_params
from study.grid import (
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

log = logging.getLogger("study.run")

DEFAULT_RATES = "1e-5,1e-4,1e-3,1e-2,1e-1"
DATA_URL = "data.url="
LOG_DIR = Path(".dvc/tmp/study")
POLL_SECONDS = 0.25
# What an experiment runs as while an earlier one of its name still exists.
RERUN_PREFIX = "rerun-"
# Where `dvc exp run --temp` makes its workspaces, `tmp*` each; and the lock one study holds.
TEMP_WORKSPACES = Path(".dvc/tmp/exps/standalone")
STUDY_LOCK = Path(".dvc/tmp/study.lock")


class StudyStopped(StudyError):
    """A runner was asked to stop (`StudyRunner.should_stop`): the study's driver was stopped."""


def call_dvc(*arguments: str, capture: bool = True) -> str:
    """Run this environment's DVC (`dvc_commands.run_dvc`) and return its output; a failure is a `StudyError`."""
    result = run_dvc(*arguments, capture=capture)
    if result.returncode != 0:
        details = f": {cli.one_line(result.stderr)}" if capture and result.stderr.strip() else ""
        raise StudyError(f"`dvc {' '.join(arguments)}` failed{details}")
    return result.stdout if capture else ""


def experiment_names() -> set[str]:
    """Names of the experiments of the current commit."""
    return set(call_dvc("exp", "list", "--name-only").split())


def unquoted_value(value: str) -> str:
    """A `-S` value as DVC reads it when it is one quoted string (`'a b.tar.gz'`), else as it is."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1].replace(f"\\{value[0]}", value[0])
    return value


def absolute_data_url(overrides: list[str], params_url: str | None, root: Path) -> list[str]:
    """`overrides` with `data.url`, where it names a local file, as an absolute path in quotes.

    Experiments run in copies under `.dvc/tmp/exps`, where a relative path points nowhere; and
    DVC reads a comma in an unquoted `-S` value as a list of values to sweep. A `~` is the home
    directory, as a shell would have read it.
    """
    given = [override for override in overrides if override.startswith(DATA_URL)]
    if given and given[-1].removeprefix(DATA_URL).strip().lower() == "null":
        return overrides  # the source's official URL, as in params.yaml
    url = unquoted_value(given[-1].removeprefix(DATA_URL)) if given else params_url
    local = None if url is None else local_path(url)
    if local is None or (not given and local.is_absolute()):
        return overrides
    others = [override for override in overrides if not override.startswith(DATA_URL)]
    quoted = str((root / local.expanduser()).resolve()).replace("'", "\\'")
    return [*others, f"{DATA_URL}'{quoted}'"]


# Keys the study sets for every point from its flags: an override of them would be overwritten.
SET_BY_THE_STUDY = {"data.num_words": "--num-words", "train.seed": "--seeds (from params.yaml's train.seed)"}


def check_overrides(
    experiments: list[StudyExperiment], overrides: list[str], params_file: Path, *, data_here: bool = True
) -> None:
    """Check, before anything runs, that every experiment's params are valid as DVC would write them.

    Each width's first experiment has its `-S` values applied, one by one as DVC applies them, to a
    copy of `params_file`, which is then read by the stages' own loader. Without `data_here` (a
    cluster's workers read the data, `study.cluster` checks that) a local `data.url` is not checked.

    Raises:
        StudyError: an override sets what the study sets itself, DVC cannot apply it, or the params
            it gives are invalid (named by key).
    """
    from dvc.exceptions import DvcException
    from dvc.utils.hydra import apply_overrides
    from dvc.utils.serialize import parse_yaml
    from omegaconf.errors import OmegaConfBaseException

    for override in overrides:
        key = override.lstrip("+~").partition("=")[0].strip()
        if key == "models" or key.startswith("models."):
            raise StudyError(f"-S {override}: the study sets models itself, from --rates")
        if key in SET_BY_THE_STUDY:
            raise StudyError(f"-S {override}: the study sets {key} itself, from {SET_BY_THE_STUDY[key]}")
    first_of_width = {experiment.width: experiment for experiment in reversed(experiments)}
    with tempfile.TemporaryDirectory() as directory:
        copy = Path(directory) / "params.yaml"
        for experiment in first_of_width.values():
            copy.write_bytes(params_file.read_bytes())
            settings = experiment_settings(experiment, overrides)
            if not data_here:
                settings.append("data.url=null")
            for setting in settings:
                try:
                    apply_overrides(copy, [setting])
                except (DvcException, OmegaConfBaseException) as error:
                    cause = error.__cause__ or (error if isinstance(error, OmegaConfBaseException) else None)
                    details = f": {cli.one_line(str(cause))}" if cause else ""
                    raise StudyError(f"-S {setting} cannot be applied to {params_file}{details}") from None
                if setting in overrides:
                    # Checked at once, or the study's own settings that follow would take the blame.
                    try:
                        sections = parse_yaml(copy.read_text(encoding="utf-8"), str(copy))
                    except DvcException:
                        raise StudyError(f"-S {setting} leaves {params_file} no longer YAML") from None
                    for section in ("data", "train"):
                        if not isinstance(sections, dict) or not isinstance(sections.get(section), dict):
                            raise StudyError(f"-S {setting} leaves {params_file} without its {section} section")
            try:
                parse_params(copy.read_text(encoding="utf-8"))
            except ParamsError as error:
                raise StudyError(f"with the study's -S values at width {experiment.width}: {error}") from None


@dataclass
class ExperimentLog:
    """What one `dvc exp run`'s output says so far: which stages finished, which runs, which failed.

    DVC runs one stage at a time and says `Running stage 'X':` before it; a stage that needs no
    run is `Stage 'X' didn't change` or `Stage 'X' is cached`; a finished run is followed by
    `Updating lock file`; a failure ends the run with `failed to reproduce 'X'`.
    """

    finished: list[str] = field(default_factory=list)
    running: str | None = None
    failed: list[str] = field(default_factory=list)

    def read(self, line: str) -> None:
        if line.startswith("Running stage '"):
            self.running = line.split("'")[1]
        elif line.startswith("Stage '") and ("didn't change" in line or "is cached" in line):
            self.finished.append(line.split("'")[1])
        elif line.startswith("Updating lock file") and self.running:
            self.finished.append(self.running)
            self.running = None
        elif "failed to reproduce" in line:
            self.failed += line.partition("failed to reproduce")[2].split("'")[1::2]
            self.running = None


@dataclass
class Run:
    """One attempt at one experiment: its process, its log file and what the log has said."""

    experiment: StudyExperiment
    process: subprocess.Popen
    log_path: Path
    log_file: TextIO
    attempt: int
    said: ExperimentLog = field(default_factory=ExperimentLog)
    _position: int = 0
    _unread: str = ""

    def read_log(self) -> None:
        with self.log_path.open(encoding="utf-8", errors="replace") as reader:
            reader.seek(self._position)
            text = self._unread + reader.read()
            self._position = reader.tell()
        *lines, self._unread = text.split("\n")
        for line in lines:
            self.said.read(line.strip())

    @property
    def width_prepared(self) -> bool:
        """Whether this experiment's `encode` has run or been restored: another of its width may start."""
        return any("@" in stage for stage in [*self.said.finished, self.said.running or ""])


class Progress:
    """Points done of all, running, failed, and the time left; one updating line on a terminal."""

    def __init__(self, points: list[Point], stream: TextIO = sys.stderr) -> None:
        self.points = points
        self.done: set[Point] = set()
        self.failed: set[Point] = set()
        self.running: set[Point] = set()
        self.started = time.monotonic()
        self.stream = stream
        self.on_terminal = stream.isatty()
        self._shown = ""

    def line(self) -> str:
        total = len(self.points)
        text = f"study: {len(self.done)}/{total} points done, {len(self.running)} running, {len(self.failed)} failed"
        return f"{text}, {self.time_left()}"

    def time_left(self) -> str:
        """From the cost of the points done in the time so far; each point costs by its width (`Point.cost`).

        A failed point took an unknown share of its cost, so it counts neither as done nor as left.
        """
        done_cost = sum(point.cost for point in self.done)
        if not done_cost:
            return "time left unknown"
        remaining = sum(point.cost for point in self.points if point not in self.done | self.failed)
        seconds = (time.monotonic() - self.started) * remaining / done_cost
        return f"about {seconds / 60:.0f} min left" if seconds >= 90 else f"about {seconds:.0f} s left"

    def show(self, event: str | None = None) -> None:
        """On a terminal, redraw the line when it changed; elsewhere, print it with each event."""
        line = self.line()
        if self.on_terminal:
            if event:
                self.stream.write(f"\r\x1b[K{event}\n")
            if line != self._shown or event:
                self.stream.write(f"\r\x1b[K{line}")
                self.stream.flush()
        elif event:
            self.stream.write(f"{event}; {line}\n")
            self.stream.flush()
        self._shown = line

    def finish(self) -> None:
        """End the updating line on a terminal; elsewhere, print the final counts."""
        self.stream.write("\n" if self.on_terminal else f"{self.line()}\n")
        self.stream.flush()


class StudyRunner:
    """Runs the study's experiments, up to `jobs` at once, and follows their points through their logs.

    The local study runs all its experiments with one runner in the current directory; a cluster
    worker (`study.cluster`) runs one experiment with one in its own checkout (`directory`), with a
    `progress` that reports to the study's driver and a `should_stop` that asks the driver.
    """

    def __init__(
        self,
        experiments: list[StudyExperiment],
        overrides: list[str],
        jobs: int,
        log_dir: Path,
        *,
        directory: Path | None = None,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
        replacing: frozenset[str] = frozenset(),
    ) -> None:
        # Each experiment to run with its attempt number.
        self.waiting = [(experiment, 1) for experiment in experiments]
        self.overrides = overrides
        self.jobs = jobs
        self.log_dir = log_dir
        self.directory = directory
        self.should_stop = should_stop
        # Names of earlier experiments, each replaced once the experiment of its name has succeeded.
        self.replacing = replacing
        self.children = ChildProcesses()
        self.runs: list[Run] = []
        self.progress = progress or Progress([point for experiment in experiments for point in experiment.points])
        self.failed_logs: dict[Point, Path] = {}
        self.succeeded: list[str] = []

    def run(self) -> None:
        """Run every experiment to its end.

        Raises:
            StudyStopped: `should_stop` said so; the experiments still running were stopped as by Ctrl-C.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            while self.waiting or self.runs:
                self._start_what_can_start()
                time.sleep(POLL_SECONDS)
                for run in list(self.runs):
                    self._follow(run)
                if self.should_stop is not None and self.should_stop():
                    raise StudyStopped("the study was stopped")
        except BaseException:
            self.children.stop()
            remove_stopped_workspaces(self.directory or Path.cwd())
            for run in self.runs:
                run.log_file.close()
            raise
        finally:
            self.progress.finish()

    def _start_what_can_start(self) -> None:
        while len(self.runs) < self.jobs:
            startable = [entry for entry in self.waiting if self._width_free(entry[0].width)]
            if not startable:
                return
            self.waiting.remove(startable[0])
            self._start(*startable[0])

    def _width_free(self, width: int) -> bool:
        """No experiment of this width runs, or one has its encoded data ready (it is in the run-cache)."""
        same = [run for run in self.runs if run.experiment.width == width]
        return not same or any(run.width_prepared for run in same)

    def _start(self, experiment: StudyExperiment, attempt: int) -> None:
        suffix = "" if attempt == 1 else f".attempt{attempt}"
        log_path = self.log_dir / f"{experiment.name}{suffix}.log"
        log_file = log_path.open("w", encoding="utf-8")
        name = f"{RERUN_PREFIX}{experiment.name}" if experiment.name in self.replacing else experiment.name
        process = self.children.start(
            ending_with_this_process(dvc_command("--wait-for-lock", *run_arguments(experiment, self.overrides, name))),
            cwd=self.directory,
            env=dvc_environment(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        self.runs.append(Run(experiment, process, log_path, log_file, attempt))
        self.progress.show(f"started {experiment.name}: {len(experiment.points)} points, log {log_path}")

    def _points_of(self, run: Run, stages: list[str]) -> set[Point]:
        keys = {stage.partition("@")[2] for stage in stages}
        return {point for point in run.experiment.points if point.model_key in keys}

    def _follow(self, run: Run) -> None:
        exit_code = run.process.poll()
        run.read_log()
        # DVC runs an experiment's trainings first and its (seconds-long) evaluations after them:
        # a point counts as done once trained, or restored, and fails later if its evaluation does.
        trained = self._points_of(run, run.said.finished)
        self.progress.running -= set(run.experiment.points)
        if exit_code is None:
            self.progress.running |= self._points_of(run, [run.said.running or ""]) - trained
        for point in sorted(trained - self.progress.done, key=lambda point: point.name):
            self.progress.done.add(point)
            self.progress.show(f"done {point.name}")
        if exit_code is None:
            self.progress.show()
            return
        self.children.forget(run.process)
        run.log_file.close()
        self.runs.remove(run)
        if exit_code == 0:
            if run.experiment.name in self.replacing and run.attempt > 1:
                # A rerun that left out failed points would replace their earlier results with nothing.
                call_dvc("--wait-for-lock", "exp", "remove", RERUN_PREFIX + run.experiment.name)
                log.warning("kept the earlier %s: its rerun has failed points", run.experiment.name)
            elif run.experiment.name in self.replacing:
                call_dvc(
                    "--wait-for-lock",
                    "exp",
                    "rename",
                    "--force",
                    RERUN_PREFIX + run.experiment.name,
                    run.experiment.name,
                )
            self.succeeded.append(run.experiment.name)
            return
        self._after_failure(run, exit_code)

    def _after_failure(self, run: Run, exit_code: int) -> None:
        """Leave out the points whose stages failed and run the rest again; else fail what is unfinished.

        Each attempt runs fewer points than the one before, so there are at most as many as points.
        """
        failed = self._points_of(run, run.said.failed)
        retry = run.experiment.without(failed)
        if failed and retry.points:
            for point in sorted(failed, key=lambda point: point.name):
                self._fail(point, run.log_path)
            self.waiting.insert(0, (retry, run.attempt + 1))
            return
        for point in sorted(run.experiment.points, key=lambda point: point.name):
            self._fail(point, run.log_path)
        log.error("%s failed (exit %d); the end of %s:\n%s", run.experiment.name, exit_code, run.log_path, _tail(run))

    def _fail(self, point: Point, log_path: Path) -> None:
        self.failed_logs[point] = log_path
        self.progress.done.discard(point)
        self.progress.failed.add(point)
        self.progress.show(f"FAILED {point.name}: see {log_path}")


def _tail(run: Run, lines: int = 15) -> str:
    return "\n".join(run.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def hold_study_lock(root: Path) -> int:
    """Take the repository's study lock for the rest of this process, which frees it however it ends.

    Two studies in one repository would train every point twice and overwrite each other's
    experiments and logs.

    Raises:
        StudyError: another study holds it.
    """
    path = root / STUDY_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise StudyError(f"another study runs in {root} (it holds {STUDY_LOCK}); wait for it or stop it") from None
    return descriptor


def _experiment_processes(root: Path) -> list[int]:
    """Live processes of `dvc exp` in this repository: those working in its experiments' workspaces, or DVC's own."""
    workspaces = (root / TEMP_WORKSPACES).resolve()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            working_directory = Path(os.readlink(entry / "cwd"))
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # ended meanwhile, or not ours to read
        # `dvc exp ...`, `python -m dvc exp ...`, or either behind `ending_with_this_process`.
        is_dvc = any(part == b"dvc" or part.endswith(b"/dvc") for part in command) and b"exp" in command
        if working_directory.is_relative_to(workspaces) or (is_dvc and working_directory.is_relative_to(root)):
            found.append(int(entry.name))
    return found


def remove_stopped_workspaces(root: Path) -> None:
    """Remove the temporary workspaces that stopped `dvc exp run --temp`s left, when no experiment runs here.

    DVC removes its workspace when an experiment ends, even by Ctrl-C, except when the stop comes
    while it is still setting the workspace up; `dvc exp show` then lists the experiment as
    running for as long as its workspace exists. Called with the study lock held, after the
    study's own experiments ended: a live `dvc exp` here is someone else's, and then nothing is removed.
    """
    leftovers = sorted((root / TEMP_WORKSPACES).glob("tmp*"))
    if not leftovers:
        return
    if _experiment_processes(root.resolve()):
        log.warning("left %d workspaces in %s as they are: a `dvc exp` runs here", len(leftovers), TEMP_WORKSPACES)
        return
    for workspace in leftovers:
        shutil.rmtree(workspace, ignore_errors=True)
    log.info("removed %d workspaces that stopped experiments left in %s", len(leftovers), TEMP_WORKSPACES)


def earlier_experiments(experiments: list[StudyExperiment]) -> frozenset[str]:
    """Names of the experiments of the current commit that the study is about to run again.

    A `rerun-` experiment left by a study stopped between its success and its rename is removed:
    its points are in the run-cache, and the rerun restores them.
    """
    names = {experiment.name for experiment in experiments}
    existing = experiment_names()
    leftovers = sorted(RERUN_PREFIX + name for name in names if RERUN_PREFIX + name in existing)
    if leftovers:
        call_dvc("exp", "remove", *leftovers)
    replaced = names & existing
    if replaced:
        log.info("%d experiments of an earlier run are replaced as their reruns succeed", len(replaced))
    return frozenset(replaced)


def check_study(experiments: list[StudyExperiment], succeeded: list[str], failed_logs: dict[Point, Path]) -> None:
    """Check that every experiment that succeeded is listed, and that no point failed.

    Raises:
        StudyError: a point failed (each is named with its log), or an experiment that ran is
            missing from `dvc exp list`.
    """
    missing = sorted(set(succeeded) - experiment_names())
    if missing:
        raise StudyError(f"experiments {', '.join(missing)} ran but `dvc exp list` does not show them")
    if failed_logs:
        failed = sorted(failed_logs.items(), key=lambda item: item[0].name)
        total = sum(len(experiment.points) for experiment in experiments)
        raise StudyError(
            f"{len(failed)} of {total} points failed: "
            + "; ".join(f"{point.name} (log {log_path})" for point, log_path in failed)
        )


def run_study(experiments: list[StudyExperiment], overrides: list[str], jobs: int) -> None:
    """Run the experiments here (replacing earlier ones of the same names) and check each one exists afterwards.

    Raises:
        StudyError: a point failed, or an experiment that ran is missing from `dvc exp list`.
    """
    remove_stopped_workspaces(Path.cwd())
    runner = StudyRunner(experiments, overrides, jobs, LOG_DIR, replacing=earlier_experiments(experiments))
    runner.run()
    check_study(experiments, runner.succeeded, runner.failed_logs)


def _check_flags(args: argparse.Namespace) -> None:
    if args.jobs < 1:
        raise StudyError(f"--jobs must be at least 1, got {args.jobs}")
    if args.jobs_per_worker is not None and args.jobs_per_worker < 1:
        raise StudyError(f"--jobs-per-worker must be at least 1, got {args.jobs_per_worker}")
    if not args.scheduler and (args.jobs_per_worker is not None or args.remote != "origin"):
        raise StudyError("--jobs-per-worker and --remote go with --scheduler")
    if args.scheduler and args.shard != "1/1":
        raise StudyError("--shard splits a study between machines by hand; with --scheduler the cluster does that")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the L1/L2 regularization study as DVC experiments.")
    parser.add_argument(
        "--num-words", help="comma-separated widths, data.num_words of each point (default: params.yaml's)"
    )
    parser.add_argument("--rates", default=DEFAULT_RATES, help="comma-separated rates for L1 and L2 (%(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per point, from train.seed up (%(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="experiments run at once (%(default)s)")
    parser.add_argument(
        "--shard", default="1/1", help="K/N: without --scheduler, run only machine K's share of N (%(default)s)"
    )
    parser.add_argument("--scheduler", help="tcp://HOST:PORT: run on this Dask cluster (docs/cluster.md)")
    parser.add_argument("--remote", default="origin", help="with --scheduler: git remote to clone (%(default)s)")
    parser.add_argument(
        "--jobs-per-worker",
        type=int,
        help="with --scheduler: experiments a worker runs at once (default: one per two of its cores)",
    )
    parser.add_argument(
        "-S",
        "--set-param",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params override for every experiment, as in `dvc exp run -S` (repeatable)",
    )
    args = parser.parse_args()

    _check_flags(args)
    params = load_params()
    widths = parse_widths(args.num_words) if args.num_words is not None else (params.data.num_words,)
    experiments = select_shard(plan(widths, parse_rates(args.rates), args.seeds, params.train.seed), args.shard)
    overrides = absolute_data_url(args.overrides, params.data.url, Path.cwd())
    check_overrides(experiments, overrides, PARAMS_FILE, data_here=not args.scheduler)
    hold_study_lock(Path.cwd())
    points = sum(len(experiment.points) for experiment in experiments)
    started = time.monotonic()
    if args.scheduler:
        from study.cluster import run_cluster_study

        log.info("%d points in %d experiments on %s; logs in %s/", points, len(experiments), args.scheduler, LOG_DIR)
        run_cluster_study(
            experiments,
            overrides,
            params.data.url,
            scheduler=args.scheduler,
            git_remote=args.remote,
            jobs_per_worker=args.jobs_per_worker,
        )
    else:
        log.info("%d points in %d experiments, %d at a time; logs in %s/", points, len(experiments), args.jobs, LOG_DIR)
        run_study(experiments, overrides, args.jobs)
    log.info("ran %d points in %.0f s; `python -m study.summarize` draws them", points, time.monotonic() - started)


if __name__ == "__main__":
    cli.run(main)
