"""Run the regularization study as DVC experiments, one per (regularizer, rate, seed).

From the repository root:

    python -m study.run --rates 1e-5,1e-4,1e-3,1e-2,1e-1 --seeds 3 --jobs 2

queues one experiment per point, named `study-l1-0.0001-s42` (`study-basic-s42` for the
model without a regularizer), then runs the queue with `--jobs` workers and waits
(`dvc exp run --run-all`, the waiting form of `dvc queue start`). Each experiment trains
one model only: its params keep the one entry of `models` with the point's regularizer,
with the point's rate and `train.seed`, and it targets `evaluate@<model>`, so a point
costs one TensorFlow start-up and one fit. `fetch`, `encode` and every point computed
before, here or on a machine sharing the run-cache through a DVC remote, are restored
from the run-cache instead of run.

Seeds are `train.seed`, `train.seed + 1`, ..., so the point at the pipeline's own rate and
seed is the pipeline's own training. `-S key=value` (repeatable) goes to every experiment,
e.g. `-S data.source=aclimdb -S data.url=aclImdb_v1.tar.gz`. Rerunning replaces the
experiments of the points it runs. `--shard K/N` runs every N-th point from the K-th, to
spread one study over N machines.

Ctrl-C (SIGINT) or SIGTERM stops the whole study: the experiments running are killed, DVC's
queue workers are stopped, this study's tasks still queued are removed from the queue, and any
process the queue run started that is left after `STOP_GRACE_SECONDS` is killed; a rerun can
start at once. The queue is the repository's, so experiments queued by hand and running in it
are stopped too.
"""

import argparse
import logging
import math
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from imdb_regularization import cli
from imdb_regularization.dvc_commands import dvc_command, dvc_environment, run_dvc
from imdb_regularization.params import MAX_SEED, RegularizerSpec, load_params, local_path

log = logging.getLogger("study.run")

EXPERIMENT_PREFIX = "study-"
BASELINE = "none"  # the basic model's regularizer; it has no rate to vary
STUDIED = ("l1", "l2")
DEFAULT_RATES = "1e-5,1e-4,1e-3,1e-2,1e-1"
DATA_URL = "data.url="
# How long the processes of a stopped queue run may take to end by themselves before they are killed.
STOP_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.1
# Each point is a DVC experiment (a git ref and a queue entry); beyond this many, the bookkeeping
# alone would take hours, which is a sign of a mistyped grid.
MAX_POINTS = 2_000


class StudyError(cli.StageError):
    """The study cannot run or be summarized as asked."""


def model_label(regularizer: str) -> str:
    """What the study calls a model: its regularizer, or `basic` for none."""
    return "basic" if regularizer == BASELINE else regularizer


@dataclass(frozen=True)
class Point:
    """One experiment of the study: a regularizer at a rate, trained from a seed."""

    regularizer: str
    rate: float
    seed: int

    @property
    def name(self) -> str:
        rate = "" if self.regularizer == BASELINE else f"-{rate_label(self.rate)}"
        return f"{EXPERIMENT_PREFIX}{model_label(self.regularizer)}{rate}-s{self.seed}"


def rate_label(rate: float) -> str:
    """How a rate appears in an experiment's name: short (`0.0001`, `1e-05`), so close rates can share it."""
    return f"{rate:g}"


def parse_rates(text: str) -> tuple[float, ...]:
    """Rates from a comma-separated list such as `1e-5,1e-4`: distinct, finite, above 0; in increasing order.

    Raises:
        StudyError: an item is not such a rate, or two rates would give their experiments the same name.
    """
    try:
        rates = [float(item) for item in text.split(",")]
    except ValueError:
        raise StudyError(f"--rates must be comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(rate) and rate > 0 for rate in rates) or len(set(rates)) != len(rates):
        raise StudyError(f"--rates must be distinct finite numbers above 0, got {text!r}")
    labelled: dict[str, float] = {}
    for rate in sorted(rates):
        other = labelled.setdefault(rate_label(rate), rate)
        if other != rate:
            # Experiments are told apart by name: the second point would replace the first.
            raise StudyError(
                f"--rates {other!r} and {rate!r} would both be named {rate_label(rate)} in experiment names; "
                "pick rates that differ in their first 6 significant digits"
            )
    return tuple(sorted(rates))


def grid_points(rates: tuple[float, ...], seeds: int, first_seed: int) -> list[Point]:
    """Every point of the study, seed by seed, so a study cut short still has whole curves for its first seeds."""
    if seeds < 1:
        raise StudyError(f"--seeds must be at least 1, got {seeds}")
    size = seeds * (1 + len(STUDIED) * len(rates))
    if size > MAX_POINTS or first_seed + seeds - 1 > MAX_SEED:
        raise StudyError(
            f"--rates and --seeds ask for {size:,} experiments with seeds up to {first_seed + seeds - 1:,}: "
            f"at most {MAX_POINTS:,} experiments and seeds up to {MAX_SEED:,}"
        )
    points = []
    for seed in range(first_seed, first_seed + seeds):
        points.append(Point(regularizer=BASELINE, rate=0.0, seed=seed))
        points += [Point(regularizer=regularizer, rate=rate, seed=seed) for regularizer in STUDIED for rate in rates]
    return points


def select_shard(points: list[Point], shard: str) -> list[Point]:
    """The points machine K of N runs (`shard` is "K/N", K from 1): every N-th point from the K-th."""
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise StudyError(f"--shard must be K/N, e.g. 2/3, got {shard!r}") from None
    if not 1 <= index <= count:
        raise StudyError(f"--shard K/N needs 1 <= K <= N, got {shard!r}")
    return points[index - 1 :: count]


def model_keys(models: dict[str, RegularizerSpec]) -> dict[str, str]:
    """The `models` entry that trains each regularizer of the study: the first one with that regularizer."""
    keys: dict[str, str] = {}
    for name, spec in models.items():
        keys.setdefault(spec.regularizer, name)
    for regularizer in (BASELINE, *STUDIED):
        if regularizer not in keys:
            raise StudyError(f"params.yaml: the study needs a model with regularizer {regularizer} under models")
    return keys


def absolute_data_url(overrides: list[str], params_url: str | None, root: Path) -> list[str]:
    """`overrides` with `data.url` made absolute if it names a file by a relative path.

    Queued experiments run in copies under `.dvc/tmp/exps`, where a relative path points nowhere.
    The new value is quoted, so a comma in the path is not read as a list of values to sweep.
    """
    given = [override for override in overrides if override.startswith(DATA_URL)]
    url = given[-1].removeprefix(DATA_URL) if given else params_url
    local = None if url is None else local_path(url)
    if local is None or local.is_absolute():
        return overrides
    others = [override for override in overrides if not override.startswith(DATA_URL)]
    quoted = str((root / local).resolve()).replace("'", "\\'")
    return [*others, f"{DATA_URL}'{quoted}'"]


def queue_arguments(point: Point, *, keys: dict[str, str], models: list[str], overrides: list[str]) -> list[str]:
    """The `dvc exp run --queue` arguments of one point: train and evaluate its one model, at its rate and seed."""
    key = keys[point.regularizer]
    settings = [*overrides, *(f"~models.{other}" for other in models if other != key), f"train.seed={point.seed}"]
    if point.regularizer != BASELINE:
        settings.append(f"models.{key}.rate={point.rate!r}")
    arguments = ["exp", "run", "--queue", f"evaluate@{key}", "--name", point.name]
    return arguments + [argument for setting in settings for argument in ("--set-param", setting)]


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


def session_processes(session_id: int) -> list[int]:
    """The processes (zombies aside) of session `session_id`, read from Linux's /proc; none elsewhere."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            # The fields after the command's closing parenthesis: state, parent, group, session, ...
            state, _, _, session = (entry / "stat").read_text().rpartition(")")[2].split()[:4]
        except (OSError, ValueError):
            continue  # ended meanwhile
        if int(session) == session_id and state != "Z":
            members.append(int(entry.name))
    return members


def end_session(session_id: int, grace_seconds: float) -> None:
    """Wait up to `grace_seconds` for session `session_id`'s processes to end, then kill those left."""
    deadline = time.monotonic() + grace_seconds
    while (left := session_processes(session_id)) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        log.warning("killed %d processes of the queue run that did not stop in time", len(left))


def stop_queue(names: set[str]) -> list[str]:
    """Kill the queue's running experiments, stop its workers, and remove the tasks of `names` still queued or killed.

    A stop must go on whatever DVC says, so a failure here is logged, not raised.

    Returns:
        The names of the tasks removed.
    """
    from dvc.repo import Repo

    # Celery's connection warns that it assumes localhost, which is what DVC's local queue uses.
    logging.getLogger("kombu").setLevel(logging.ERROR)
    removed: list[str] = []
    try:
        with Repo() as repo:
            queue = repo.experiments.celery_queue
            queue.shutdown(kill=True)
            removed = [entry.name for entry in queue.iter_queued() if entry.name in names]
            removed += [done.entry.name for done in queue.iter_failed() if done.entry.name in names]
            if removed:
                queue.remove(revs=removed)
    except Exception as error:  # DVC's, celery's or the file system's: the processes are killed below anyway
        log.warning("could not stop DVC's experiment queue: %s", cli.one_line(str(error) or type(error).__name__))
    return removed


def run_queue(jobs: int, names: set[str]) -> None:
    """`dvc exp run --run-all --jobs <jobs>`, waiting; stopped by a signal, it leaves no worker or experiment running.

    The run gets a session of its own, which every queue worker and experiment it starts
    inherits, so whatever outlives the queue's own shutdown can be found and killed.

    Raises:
        StudyError: the queue run failed.
    """
    process = subprocess.Popen(
        dvc_command("exp", "run", "--run-all", "--jobs", str(jobs)), env=dvc_environment(), start_new_session=True
    )
    try:
        exit_code = process.wait()
    except (cli.Interrupted, KeyboardInterrupt):
        log.warning("stopping: killing the running experiments and the queue's workers")
        os.kill(process.pid, signal.SIGINT)
        removed = stop_queue(names)
        end_session(process.pid, STOP_GRACE_SECONDS)
        log.warning("removed %d of this study's tasks from the queue", len(removed))
        raise
    if exit_code != 0:
        raise StudyError(f"`dvc exp run --run-all --jobs {jobs}` failed (exit {exit_code}); its output is above")


@contextmanager
def stops_deferred() -> Iterator[None]:
    """Note SIGINT and SIGTERM during the block, and deliver the first one again when the block ends.

    A `dvc exp run --queue` killed halfway could leave a half-made entry in DVC's git stash; it
    takes a moment, so a stop that arrives meanwhile takes effect right after it.
    """
    noted: list[int] = []

    def note(signal_number: int, _frame: FrameType | None) -> None:
        noted.append(signal_number)

    handlers = {signal_number: signal.signal(signal_number, note) for signal_number in cli.STOP_SIGNALS}
    try:
        yield
    finally:
        for signal_number, handler in handlers.items():
            signal.signal(signal_number, handler)
    if noted:
        signal.raise_signal(noted[0])


def run_points(points: list[Point], queue: list[list[str]], jobs: int) -> None:
    """Queue one experiment per point (replacing earlier ones of the same name), run them all, check each finished."""
    names = [point.name for point in points]
    replaced = sorted(set(names) & experiment_names())
    if replaced:
        # Their results come straight back from the run-cache; removing them keeps one experiment per point.
        log.info("replacing %d experiments of an earlier run", len(replaced))
        call_dvc("exp", "remove", *replaced)
    try:
        for arguments in queue:
            with stops_deferred():
                call_dvc(*arguments)
    except (cli.Interrupted, KeyboardInterrupt):
        # The points queued so far would otherwise run with the next `dvc exp run --run-all`.
        stop_queue(set(names))
        raise
    log.info("queued %d experiments; running them with %d jobs", len(queue), jobs)
    run_queue(jobs, set(names))
    finished = set(names) & experiment_names()
    failed = sorted(set(names) - finished)
    if failed:
        raise StudyError(
            f"{len(failed)} of {len(names)} experiments failed: {', '.join(failed)}. `dvc queue logs <name>` shows why."
        )
    # Counted, not only compared as sets: points sharing a name pass a set comparison with one experiment for all.
    if len(finished) != len(names):
        shared = sorted({name for name in names if names.count(name) > 1})
        raise StudyError(
            f"{len(names)} points left {len(finished)} experiments: points share the names {', '.join(shared)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the L1/L2 regularization study as DVC experiments.")
    parser.add_argument("--rates", default=DEFAULT_RATES, help="comma-separated rates for L1 and L2 (%(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per point, from train.seed up (%(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="experiments run at once (%(default)s)")
    parser.add_argument("--shard", default="1/1", help="K/N: run only machine K's share of N (%(default)s)")
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

    if args.jobs < 1:
        raise StudyError(f"--jobs must be at least 1, got {args.jobs}")
    params = load_params()
    keys = model_keys(params.models)
    points = select_shard(grid_points(parse_rates(args.rates), args.seeds, params.train.seed), args.shard)
    overrides = absolute_data_url(args.overrides, params.data.url, Path.cwd())
    queue = [queue_arguments(point, keys=keys, models=list(params.models), overrides=overrides) for point in points]
    started = time.monotonic()
    run_points(points, queue, args.jobs)
    log.info(
        "ran %d experiments in %.0f s; `python -m study.summarize` draws them", len(points), time.monotonic() - started
    )


if __name__ == "__main__":
    cli.run(main)
