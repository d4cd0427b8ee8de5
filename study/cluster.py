"""Run the study's experiments as tasks on a Dask distributed cluster: `python -m study.run --scheduler tcp://HOST:PORT`.

The driver (`study.run` with `--scheduler`) plans the study as on one machine (`study.grid`) and
submits each experiment (the points of one width and seed) as one task. A worker runs it in a
checkout of its own, never in the driver's workspace: a clone of the study's commit from the git
remote the driver names (`--remote`, default `origin`), kept in the worker's local directory and
reused by the worker's later tasks. There it runs the experiment exactly as the local study does
(`study.run.StudyRunner`: `dvc exp run --temp`, a failed point left out and the
experiment run once more without it), then pushes it with its run-cache (`dvc exp push --force
--run-cache`) to the git remote and to the driver's default DVC remote. Only an experiment whose
`dvc exp run` succeeded is pushed. The driver saves each experiment's logs where a local study
would (`.dvc/tmp/study/`), pulls the experiments back (`dvc exp pull --run-cache`), and
`python -m study.summarize` reads them as it reads a local study's.

Before any task is submitted, the driver checks what every worker needs: the commit is on the
git remote and the workspace has no uncommitted changes to the pipeline's files (params.yaml,
dvc.yaml, Python; workers see only the commit), and a `data.url` or DVC remote that is a local
path is readable on every worker.

Faults: a worker that dies mid-experiment has pushed nothing for it; Dask runs the task again on
another worker (up to `distributed.scheduler.allowed-failures` times), which replaces whatever
ref of the same name its clone or the git remote holds. A point that fails on its own fails once,
named with its log, as in the local study. Ctrl-C stops the driver: it tells running tasks to stop
(their `dvc exp run` gets SIGINT, as from Ctrl-C, and pushes nothing) and cancels the others.

Scheduling: the driver submits an experiment only when a worker has a free slot (`--jobs-per-worker`,
default one per two of the worker's cores, at most its threads), and to a worker that already
holds the experiment's width (has encoded it in its clone) where one has a slot. The progress line
is the local study's, with each worker's points done and running.
"""

import logging
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from imdb_regularization import cli
from imdb_regularization.dvc_commands import dvc_command, dvc_environment
from imdb_regularization.params import local_path
from study.grid import Point, StudyError, StudyExperiment
from study.run import (
    DATA_URL,
    LOG_DIR,
    POLL_SECONDS,
    Progress,
    StudyRunner,
    call_dvc,
    check_study,
    unquoted_value,
)

log = logging.getLogger("study.cluster")

# How long the driver waits for the first worker, and for the scheduler to answer.
WORKER_WAIT_SECONDS = 60
CONNECT_TIMEOUT = "20s"
# How often the driver asks the scheduler which workers there are, and a task asks whether to stop.
WORKERS_POLL_SECONDS = 1.0
STOP_POLL_SECONDS = 1.0
CHECKOUTS = "study-checkouts"
PROBE_NAME = ".study-probe-"
# Uncommitted changes to these, or to any Python file, would make a worker's points differ from the driver's.
PIPELINE_FILES = ("dvc.yaml", "params.yaml", ".dvc/config")
GIT_IDENTITY = {"user.name": "imdb-regularization study", "user.email": "study@imdb-regularization.invalid"}


@dataclass(frozen=True)
class Checkout:
    """What a worker needs to run the study's experiments: where the code is and where results go."""

    git_url: str
    commit: str
    dvc_remote: str
    dvc_url: str


@dataclass
class Outcome:
    """What a task returns: where it ran, whether its experiment was pushed, and its logs (file name to text)."""

    experiment: str
    worker: str
    directory: str
    pushed: bool
    failed: dict[str, str] = field(default_factory=dict)  # model key -> its log's file name
    logs: dict[str, str] = field(default_factory=dict)
    error: str | None = None


# The worker's side.


def _run(command: list[str], directory: Path) -> str:
    """Run `command` in `directory`; return its stdout, or raise `StudyError` with its stderr."""
    result = subprocess.run(command, cwd=directory, env=dvc_environment(), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shown = " ".join(command[2:] if command[1:2] == ["-m"] else command)
        raise StudyError(f"`{shown}` failed in {directory}: {cli.one_line(result.stderr or result.stdout)}")
    return result.stdout


_CHECKOUT_LOCK = threading.Lock()


def prepare_checkout(root: Path, checkout: Checkout) -> Path:
    """The worker's clone of the study's commit under `root`, made on first use and reused after.

    A new clone gets the driver's DVC remote as its default and fetches the run-cache from it, so
    points computed before, anywhere, are restored instead of trained.
    """
    clone = root / CHECKOUTS / checkout.commit[:12]
    with _CHECKOUT_LOCK:
        if clone.is_dir():
            return clone
        partial = clone.with_name(f"{clone.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        _run(["git", "clone", "--quiet", "--no-checkout", checkout.git_url, str(partial)], root)
        _run(["git", "checkout", "--quiet", "--detach", checkout.commit], partial)
        for key, value in GIT_IDENTITY.items():
            # `dvc exp run` commits each experiment; a worker without a git identity could not.
            if not subprocess.run(["git", "config", key], cwd=partial, capture_output=True, check=False).stdout:
                _run(["git", "config", key, value], partial)
        remote = ["remote", "add", "--local", "--force", "--default", checkout.dvc_remote, checkout.dvc_url]
        _run(dvc_command(*remote), partial)
        fetched = subprocess.run(dvc_command("fetch", "--run-cache"), cwd=partial, capture_output=True, check=False)
        if fetched.returncode != 0:
            # A new remote has nothing yet; the points are then trained, not restored.
            log.info("no run-cache fetched from %s", checkout.dvc_url)
        partial.rename(clone)
    return clone


class WorkerProgress(Progress):
    """A task's progress, sent to the driver as an event on `topic` whenever it changes; prints nothing."""

    def __init__(self, experiment: StudyExperiment, worker: Any, topic: str) -> None:
        super().__init__(list(experiment.points), stream=open(os.devnull, "w"))  # noqa: SIM115
        self.experiment = experiment
        self.worker = worker
        self.topic = topic
        self._sent: tuple | None = None

    def show(self, event: str | None = None) -> None:
        state = tuple(sorted(point.model_key for point in points) for points in (self.done, self.running, self.failed))
        if state == self._sent and not event:
            return
        self._sent = state
        message = {"experiment": self.experiment.name, "worker": self.worker.address, "event": event}
        self.worker.log_event(self.topic, {**message, **dict(zip(("done", "running", "failed"), state, strict=True))})

    def finish(self) -> None:
        self.stream.close()


def _stop_asked(event_name: str) -> Any:
    """A `should_stop` for the runner: whether the driver set the Dask event `event_name` (asked once a second)."""
    from distributed import Event

    stop, asked = Event(event_name), [0.0]

    def should_stop() -> bool:
        if time.monotonic() - asked[0] < STOP_POLL_SECONDS:
            return False
        asked[0] = time.monotonic()
        return stop.is_set()

    return should_stop


def run_experiment_task(
    experiment: StudyExperiment, overrides: list[str], checkout: Checkout, topic: str, stop_event: str
) -> Outcome:
    """The task: run one experiment in this worker's checkout, push it if it succeeded, return its outcome."""
    from distributed import get_worker

    worker = get_worker()
    clone = prepare_checkout(Path(worker.local_directory), checkout)
    if experiment.name in _run(dvc_command("exp", "list", "--name-only"), clone).split():
        # Left by an earlier run on this worker: the pushed result must be this run's.
        _run(dvc_command("--wait-for-lock", "exp", "remove", experiment.name), clone)
    log_dir = clone / LOG_DIR
    runner = StudyRunner(
        [experiment],
        overrides,
        jobs=1,
        log_dir=log_dir,
        directory=clone,
        progress=WorkerProgress(experiment, worker, topic),
        should_stop=_stop_asked(stop_event),
    )
    runner.run()
    outcome = Outcome(experiment.name, worker.address, str(clone), pushed=False)
    outcome.failed = {point.model_key: path.name for point, path in runner.failed_logs.items()}
    outcome.logs = {path.name: path.read_text(errors="replace") for path in log_dir.glob(f"{experiment.name}*.log")}
    if runner.succeeded:
        push = ["--wait-for-lock", "exp", "push", "--force", "--run-cache", "-r", checkout.dvc_remote, "origin"]
        try:
            _run(dvc_command(*push, experiment.name), clone)
            outcome.pushed = True
        except StudyError as error:
            outcome.error = str(error)
    return outcome


# The driver's side: checks before anything is submitted.


def _git(*arguments: str) -> str:
    """The output of `git <arguments>`, its last newline removed (`git status --porcelain` lines begin with a space)."""
    result = subprocess.run(["git", *arguments], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StudyError(f"`git {' '.join(arguments)}` failed: {cli.one_line(result.stderr)}")
    return result.stdout.rstrip("\n")


def _absolute_url(url: str, base: Path) -> str:
    """A remote's URL as a worker elsewhere must see it: a local path made absolute (`~` is the driver's home)."""
    if "://" in url or ":" in url.split("/")[0]:
        return url  # a URL, or git's host:path
    path = Path(url).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def describe_checkout(git_remote: str, root: Path) -> Checkout:
    """The commit, git remote and DVC remote of the study, checked as far as the driver can.

    Raises:
        StudyError: the pipeline's files (params, dvc.yaml, Python) have uncommitted changes, the git
            remote is unknown or lacks the commit, or there is no default DVC remote.
    """
    changed = [line[3:] for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()]
    read = [path for path in changed if path in PIPELINE_FILES or path.endswith(".py")]
    if read:
        raise StudyError(f"uncommitted changes to {', '.join(read)}: workers run the commit; commit and push it first")
    if changed:
        log.info("workers do not see the uncommitted changes to %s", ", ".join(changed))
    try:
        git_url = _git("remote", "get-url", git_remote)
    except StudyError:
        raise StudyError(f"no git remote {git_remote!r}: name one every worker can clone with --remote") from None
    commit = _git("rev-parse", "HEAD")
    _git("fetch", "--quiet", git_remote)
    if not _git("branch", "--remotes", "--contains", commit, "--list", f"{git_remote}/*"):
        raise StudyError(f"commit {commit[:12]} is not on the git remote {git_remote}: `git push {git_remote}` first")
    dvc_remote = call_dvc("remote", "default").strip()
    if not dvc_remote:
        raise StudyError("no default DVC remote: workers push their results to it (`dvc remote default NAME`)")
    dvc_url = _absolute_url(call_dvc("config", f"remote.{dvc_remote}.url").strip(), root / ".dvc")
    return Checkout(_absolute_url(git_url, root), commit, dvc_remote, dvc_url)


def data_path(overrides: list[str], params_url: str | None) -> Path | None:
    """The local file `data.url` names for the study (its last `-S data.url=` or params.yaml's), or None for a URL."""
    given = [override.removeprefix(DATA_URL) for override in overrides if override.startswith(DATA_URL)]
    url = unquoted_value(given[-1]) if given else params_url
    return None if url is None else local_path(url)


def _missing(paths: list[str]) -> list[str]:
    """Run on each worker: which of `paths` it cannot read."""
    return [path for path in paths if not os.access(path, os.R_OK)]


def check_workers_reach(client: Any, data: Path | None, checkout: Checkout) -> None:
    """Fail unless every worker can read the data file and the DVC remote, when these are local paths.

    A directory remote is probed with a file the driver writes into it, so a directory of the same
    name on a worker's own disk (such as each machine's `~/dvc-storage`) does not pass for it.

    Raises:
        StudyError: naming the path, the workers that cannot read it, and what to share.
    """
    remote = None if "://" in checkout.dvc_url else Path(checkout.dvc_url)
    probe = None
    if remote is not None:
        remote.mkdir(parents=True, exist_ok=True)
        probe = remote / f"{PROBE_NAME}{uuid.uuid4().hex}"
        probe.write_text("study.cluster checks that workers see this directory\n")
    try:
        paths = [str(path) for path in (data, probe) if path is not None]
        missing = client.run(_missing, paths) if paths else {}
    finally:
        if probe is not None:
            probe.unlink()
    for path, advice in (
        (data, "put it on a mount every worker shares at the same path, or serve it over http(s) and pin data.sha256"),
        (probe, f"make {remote} a mount every worker shares at the same path, or make an S3 or SSH remote the default"),
    ):
        unable = sorted(worker for worker, paths in missing.items() if str(path) in paths)
        if path is not None and unable:
            what = f"data.url {path}" if path == data else f"the DVC remote {checkout.dvc_remote} ({remote})"
            raise StudyError(f"{what} cannot be read on workers {', '.join(unable)}: {advice}")


# The driver's side: scheduling, progress, outcomes.


def choose_experiment(waiting: list[StudyExperiment], held: set[int], preparing: set[int]) -> StudyExperiment | None:
    """The experiment a worker with a free slot should run next, or None to leave the slot free for now.

    Args:
        waiting: the experiments not yet submitted, in the plan's order.
        held: the widths the worker has encoded (its clone's cache holds them).
        preparing: the widths the worker is encoding now; another experiment of one of these
            waits until it is done, as in the local study, rather than encode it again.
    """
    for experiment in waiting:
        if experiment.width in held:
            return experiment
    for experiment in waiting:
        if experiment.width not in preparing:
            return experiment
    return None


def _short(worker: str) -> str:
    return worker.removeprefix("tcp://")


class ClusterProgress(Progress):
    """The local study's progress line, followed by each worker's points done and running."""

    def __init__(self, points: list[Point], stream: TextIO | None = None) -> None:
        super().__init__(points, *([stream] if stream else []))
        self.done_on: dict[Point, str] = {}
        self.running_on: dict[Point, str] = {}

    def line(self) -> str:
        workers = sorted(set(self.done_on.values()) | set(self.running_on.values()))
        counts = [
            f"{_short(worker)} {list(self.done_on.values()).count(worker)} done, "
            f"{list(self.running_on.values()).count(worker)} running"
            for worker in workers
        ]
        return "; ".join([super().line(), *counts])

    def update(self, experiment: StudyExperiment, worker: str, state: dict[str, list[str]]) -> list[Point]:
        """Take a worker's report on `experiment` (model keys done, running, failed); return the points newly done."""
        by_key = {point.model_key: point for point in experiment.points}
        newly_done = [by_key[key] for key in state["done"] if by_key[key] not in self.done]
        self.forget(experiment)
        for point in (by_key[key] for key in state["running"]):
            self.running.add(point)
            self.running_on[point] = worker
        for point in (by_key[key] for key in state["done"]):
            self.done.add(point)
            self.done_on[point] = worker
        self.failed |= {by_key[key] for key in state["failed"]}
        return newly_done

    def forget(self, experiment: StudyExperiment) -> None:
        """Count none of the experiment's points as done, running or failed: it runs again from the start."""
        for point in experiment.points:
            for states in (self.done, self.running, self.failed):
                states.discard(point)
            self.done_on.pop(point, None)
            self.running_on.pop(point, None)


class ClusterStudy:
    """Submits the study's experiments to a Dask cluster as slots free up, and follows them to their outcomes."""

    def __init__(
        self,
        client: Any,
        experiments: list[StudyExperiment],
        overrides: list[str],
        checkout: Checkout,
        jobs_per_worker: int | None,
        log_dir: Path,
    ) -> None:
        self.client = client
        self.waiting = list(experiments)
        self.by_name = {experiment.name: experiment for experiment in experiments}
        self.task_arguments = (overrides, checkout)
        self.jobs_per_worker = jobs_per_worker
        self.log_dir = log_dir
        self.topic = f"study-{uuid.uuid4().hex}"
        self.events: queue.Queue = queue.Queue()
        self.tasks: dict[Any, StudyExperiment] = {}
        self.placed: dict[str, str | None] = {}  # experiment name -> the worker running it, if known
        self.slots: dict[str, int] = {}
        self.held: dict[str, set[int]] = {}
        self.progress = ClusterProgress([point for experiment in experiments for point in experiment.points])
        self.failed_logs: dict[Point, Path] = {}
        self.succeeded: list[str] = []
        self._workers_read = 0.0

    def run(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.client.subscribe_topic(self.topic, self.events.put)
        try:
            while self.waiting or self.tasks:
                self._refresh_workers()
                self._submit_what_fits()
                time.sleep(POLL_SECONDS)
                self._read_events()
                self._collect()
                self.progress.show()
        except BaseException:
            self._stop()
            raise
        finally:
            self.progress.finish()
            self.client.unsubscribe_topic(self.topic)

    def _stop(self) -> None:
        """Tell running tasks to stop their experiments (they push nothing) and cancel the others."""
        from distributed import Event

        Event(f"{self.topic}-stop", client=self.client).set()
        self.client.cancel(list(self.tasks))
        log.info("stopped: told %d running or waiting experiments to stop", len(self.tasks))

    def _refresh_workers(self) -> None:
        if time.monotonic() - self._workers_read < WORKERS_POLL_SECONDS:
            return
        self._workers_read = time.monotonic()
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        for gone in sorted(set(self.slots) - set(workers)):
            self._lost(gone)
        for worker in sorted(set(workers) - set(self.slots)):
            self.slots[worker] = self._slots_of(worker, workers[worker]["nthreads"])
            self.progress.show(f"worker {_short(worker)} joined: {self.slots[worker]} experiments at a time")

    def _slots_of(self, worker: str, threads: int) -> int:
        """`--jobs-per-worker`, or one per two of the worker's cores; never more than its threads."""
        if self.jobs_per_worker:
            return min(threads, self.jobs_per_worker)
        try:
            cores = self.client.run(os.cpu_count, workers=[worker])[worker]
        except Exception:  # noqa: BLE001 - gone meanwhile: the next refresh drops it
            cores = 2
        return max(1, min(threads, cores // 2))

    def _lost(self, worker: str) -> None:
        del self.slots[worker]
        self.held.pop(worker, None)
        lost = [name for name, placed in self.placed.items() if placed == worker]
        for name in lost:
            # Nothing of it was pushed; Dask runs the task again on another worker, from the start.
            self.placed[name] = None
            self.progress.forget(self.by_name[name])
        self.progress.show(f"worker {_short(worker)} left")
        for name in lost:
            self.progress.show(f"{name} was running on {_short(worker)}: it runs again on another worker")

    def _running_on(self, worker: str) -> list[StudyExperiment]:
        return [self.by_name[name] for name, placed in self.placed.items() if placed == worker]

    def _submit_what_fits(self) -> None:
        for worker, slots in sorted(self.slots.items()):
            while self.waiting and len(self._running_on(worker)) < slots:
                held = self.held.get(worker, set())
                preparing = {experiment.width for experiment in self._running_on(worker)} - held
                experiment = choose_experiment(self.waiting, held, preparing)
                if experiment is None:
                    break
                self._submit(experiment, worker)

    def _submit(self, experiment: StudyExperiment, worker: str) -> None:
        self.waiting.remove(experiment)
        # The worker is a preference: if it dies, Dask runs the task on another one.
        future = self.client.submit(
            run_experiment_task,
            experiment,
            *self.task_arguments,
            self.topic,
            f"{self.topic}-stop",
            key=f"{experiment.name}-{uuid.uuid4().hex[:8]}",
            workers=[worker],
            allow_other_workers=True,
            pure=False,
        )
        self.tasks[future] = experiment
        self.placed[experiment.name] = worker
        self.progress.show(f"started {experiment.name} on {_short(worker)}: {len(experiment.points)} points")

    def _read_events(self) -> None:
        while True:
            try:
                _, message = self.events.get_nowait()
            except queue.Empty:
                return
            name, worker = message["experiment"], message["worker"]
            if name not in self.placed or worker not in self.slots:
                continue  # finished already, or from a worker since lost
            self.placed[name] = worker
            experiment = self.by_name[name]
            for point in self.progress.update(experiment, worker, message):
                self.progress.show(f"done {point.name} on {_short(worker)}")
            if message["done"] or message["running"]:
                # A point trains or is done only after the width's encode: the worker's cache holds it.
                self.held.setdefault(worker, set()).add(experiment.width)

    def _collect(self) -> None:
        for future, experiment in list(self.tasks.items()):
            if future.status == "pending":
                continue
            del self.tasks[future]
            self.placed.pop(experiment.name, None)
            if future.status == "finished":
                self._record(experiment, future.result())
            else:
                self._record_error(experiment, future)

    def _record(self, experiment: StudyExperiment, outcome: Outcome) -> None:
        for name, text in outcome.logs.items():
            (self.log_dir / name).write_text(text, encoding="utf-8")
        by_key = {point.model_key: point for point in experiment.points}
        self.progress.forget(experiment)
        for key, name in sorted(outcome.failed.items()):
            self._fail(by_key[key], self.log_dir / name)
        if outcome.error:
            path = self.log_dir / f"{experiment.name}.push.log"
            path.write_text(outcome.error + "\n", encoding="utf-8")
            for point in experiment.points:
                if point.model_key not in outcome.failed:
                    self._fail(point, path)
        elif outcome.pushed:
            self.succeeded.append(experiment.name)
            for point in experiment.points:
                if point.model_key not in outcome.failed:
                    self.progress.done.add(point)
                    self.progress.done_on[point] = outcome.worker
            self.progress.show(f"pushed {experiment.name} from {_short(outcome.worker)}")

    def _record_error(self, experiment: StudyExperiment, future: Any) -> None:
        """A task that raised, or whose workers all died under it: every point of its experiment failed."""
        path = self.log_dir / f"{experiment.name}.error.log"
        error = future.exception() if future.status == "error" else f"task {future.status}"
        path.write_text(f"{type(error).__name__}: {error}\n", encoding="utf-8")
        self.progress.forget(experiment)
        log.error("%s failed on the cluster: %s", experiment.name, cli.one_line(str(error)))
        for point in experiment.points:
            self._fail(point, path)

    def _fail(self, point: Point, log_path: Path) -> None:
        self.failed_logs[point] = log_path
        self.progress.done.discard(point)
        self.progress.failed.add(point)
        self.progress.show(f"FAILED {point.name}: see {log_path}")


def _connect(scheduler: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise StudyError("--scheduler needs Dask: pip install -e '.[cluster]'") from None
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as error:
        raise StudyError(f"cannot reach the Dask scheduler {scheduler}: {cli.one_line(str(error))}") from None


def run_cluster_study(
    experiments: list[StudyExperiment],
    overrides: list[str],
    params_url: str | None,
    *,
    scheduler: str,
    git_remote: str,
    jobs_per_worker: int | None,
) -> None:
    """Run the study on the cluster behind `scheduler`, pull its experiments back, and check them as `run_study` does.

    Raises:
        StudyError: a check before submitting failed, a point failed (named with its log), or an
            experiment is missing afterwards.
    """
    checkout = describe_checkout(git_remote, Path.cwd())
    with _connect(scheduler) as client:
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
        except TimeoutError:
            raise StudyError(
                f"no worker joined {scheduler} in {WORKER_WAIT_SECONDS} s: start `dask worker {scheduler}`"
            ) from None
        check_workers_reach(client, data_path(overrides, params_url), checkout)
        study = ClusterStudy(client, experiments, overrides, checkout, jobs_per_worker, LOG_DIR)
        study.run()
    if study.succeeded:
        log.info("pulling %d experiments from %s", len(study.succeeded), git_remote)
        # --force: an experiment of an earlier run of the same name is replaced only now, by one that succeeded.
        call_dvc("exp", "pull", "--force", "--run-cache", git_remote, *study.succeeded)
    check_study(experiments, study.succeeded, study.failed_logs)
