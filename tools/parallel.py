"""`dvc repro` with the stages of one `foreach` group (the trainings) run at the same time.

DVC runs one stage at a time. This command keeps DVC doing all the bookkeeping and only
changes the order:
1. `dvc repro <the group's upstream>` brings everything the group reads up to date;
2. each stage of the group that `dvc status` reports as changed runs, followed by the stages
   that read only its outputs (`evaluate@<key>` after `train@<key>`), as
   `dvc repro --single-item <stage> <followers>`, up to `--jobs` of these at once (DVC
   releases its repository lock while a stage's command runs and locks only that stage's
   deps and outs, so they do not block each other; `--wait-for-lock` covers the short
   moments when two of them record their results at the same time);
3. a plain `dvc repro` does the rest (the plots) and finds everything else up to date.

Steps 1 and 3 and the status check run DVC inside this process, which saves a DVC start-up
each. dvc.lock and the outputs end up as a sequential `dvc repro` leaves them. Each run of
step 2 logs to `.dvc/tmp/parallel/<stage>.log`. When one fails, the others still finish and
are recorded; the failed ones are named with the end of their logs, step 3 is skipped, and
the command exits 1.

SIGINT or SIGTERM to this command stops the runs of step 2 as Ctrl-C stops a `dvc repro`: each
runs in a process group of its own, which gets SIGINT, so its stage deletes its unfinished
outputs and DVC records nothing for it; a group still running `STOP_GRACE_SECONDS` later is
killed. The command then ends with the shell's code for the signal. If this command dies
without that chance (`kill -9`, a closed terminal), the kernel sends each run SIGTERM.

Run from the project root: `python -m tools.parallel [-j JOBS] [--group train]`.
"""

import argparse
import logging
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from imdb_regularization import cli
from imdb_regularization.child_processes import ChildProcesses, ending_with_this_process
from imdb_regularization.dvc_commands import dvc_command, dvc_environment

log = logging.getLogger("tools.parallel")

JOBS_VARIABLE = "PARALLEL_JOBS"
# A training keeps about one core busy on average (TensorFlow's start-up is single-threaded and
# these small layers do not fill two threads), so one process more than there are cores keeps the
# cores busy; the benchmark's parallel run shows the effect of --jobs. Fewer when the trainings
# would not fit in memory (`default_jobs`).
DEFAULT_JOBS = (os.cpu_count() or 1) + 1
# The train stages' input, as dvc.yaml gives it to them: what the memory of one training follows.
ENCODED_DIR = Path("data/encoded")
# The share of the available memory the trainings may take: the rest is for DVC, the stages that
# follow them and whatever else the machine runs.
MEMORY_SHARE = 0.8
LOG_DIR = Path(".dvc/tmp/parallel")
LOG_TAIL_LINES = 15
LOCK_FILE = Path("dvc.lock")


class ParallelError(cli.StageError):
    """A stage failed, or the group cannot run in parallel."""


@dataclass(frozen=True)
class StageRun:
    stages: tuple[str, ...]
    exit_code: int
    seconds: float
    log_path: Path

    @property
    def name(self) -> str:
        return ", ".join(self.stages)


def load_stage_graph() -> dict[str, set[str]]:
    """Each stage of the repository, by name in dvc.yaml's order, with the names of the stages it reads."""
    from dvc.repo import Repo

    with Repo() as repo:
        graph = repo.index.graph
        return {
            stage.addressing: {upstream.addressing for upstream in graph.successors(stage)}
            for stage in repo.index.stages
        }


def _ancestors(graph: Mapping[str, set[str]], stage: str) -> set[str]:
    found, pending = set(), list(graph[stage])
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(graph[name])
    return found


def plan_group(graph: Mapping[str, set[str]], group: str) -> tuple[list[str], list[str]]:
    """The stages of `group` (`<group>@<key>`, in dvc.yaml's order) and the stages they read directly.

    Raises:
        ParallelError: the group has no stages, or one of them depends on another.
    """
    members = [name for name in graph if name.partition("@")[0] == group and "@" in name]
    if not members:
        raise ParallelError(f"dvc.yaml has no foreach stages named {group}@...")
    for member in members:
        inside = _ancestors(graph, member) & set(members)
        if inside:
            raise ParallelError(f"{member} depends on {', '.join(sorted(inside))}: they cannot run at the same time")
    upstream = sorted(set().union(*(graph[member] for member in members)) - set(members))
    return members, upstream


def followers(graph: Mapping[str, set[str]], members: list[str]) -> dict[str, list[str]]:
    """For each member, the stages that read its outputs and otherwise only what the member reads.

    They can run right after it, while the other members still run: `evaluate@<key>` after `train@<key>`.
    """
    after = {}
    for member in members:
        reachable = {member} | _ancestors(graph, member)
        after[member] = [
            name
            for name, upstream in graph.items()
            if name not in members and member in upstream and upstream <= reachable
        ]
    return after


def changed_stages(stages: list[str]) -> list[str]:
    """The given stages that `dvc status` reports as changed, in the given order."""
    from dvc.repo import Repo

    with Repo() as repo:
        changed = repo.status(targets=stages)
    return [stage for stage in stages if stage in changed]


_children = ChildProcesses()


def run_stages(stages: tuple[str, ...], log_dir: Path) -> StageRun:
    """`dvc repro --single-item <stages>`, its output going to `<log_dir>/<first stage>.log`."""
    log_path = log_dir / f"{stages[0]}.log"
    started = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as output:
        exit_code = _children.run(
            ending_with_this_process(dvc_command("--wait-for-lock", "repro", "--single-item", *stages)),
            env=dvc_environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return StageRun(stages, exit_code, time.perf_counter() - started, log_path)


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def run_concurrently(chains: list[tuple[str, ...]], jobs: int, log_dir: Path) -> list[StageRun]:
    """Run each chain of stages, up to `jobs` chains at a time; a failure is logged with the end of its log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log.info("running %s, %d at a time; logs in %s/", "; ".join(map(", ".join, chains)), jobs, log_dir)
    runs = []
    with ThreadPoolExecutor(max_workers=jobs) as pool, _stopping_children_on_exit():
        for future in as_completed([pool.submit(run_stages, chain, log_dir) for chain in chains]):
            run = future.result()
            runs.append(run)
            if run.exit_code == 0:
                log.info("%s done in %.1f s", run.name, run.seconds)
            else:
                log.error(
                    "%s failed (exit %d) after %.1f s; the end of %s:\n%s",
                    run.name,
                    run.exit_code,
                    run.seconds,
                    run.log_path,
                    _log_tail(run.log_path),
                )
    return runs


@contextmanager
def _stopping_children_on_exit() -> Iterator[None]:
    """Stop the running `dvc repro`s if the block is left by a stop or an error, before the pool waits for them."""
    try:
        yield
    except BaseException:
        _children.stop()
        raise


def locked_stages(lock_path: Path = LOCK_FILE) -> list[str]:
    """The stages dvc.lock has entries for, in its order."""
    if not lock_path.exists():
        return []
    return list((yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}).get("stages", {}))


@contextmanager
def _locked_repo() -> Iterator:
    """DVC's repository object, holding the lock every DVC command takes before writing."""
    from dvc.repo import Repo

    with Repo() as repo, repo.lock:
        yield repo


def ignore_outputs(stages: list[str]) -> None:
    """Add the .gitignore entries of `stages`' outputs now, in this order, as a sequential `dvc repro` does.

    DVC adds a new output's entry when its stage finishes; stages running at the same time would
    add theirs in the order they happened to finish. Entries already present are left alone.
    """
    with _locked_repo() as repo:
        by_name = {stage.addressing: stage for stage in repo.index.stages}
        for name in stages:
            # Git writes the entry into the output's parent directory, which the stage creates later.
            for output in by_name[name].outs:
                Path(output.fs_path).parent.mkdir(parents=True, exist_ok=True)
            by_name[name].ignore_outs()


def order_new_entries(new_stages: list[str], lock_path: Path = LOCK_FILE) -> None:
    """Put the dvc.lock entries of `new_stages` in that order, as a sequential `dvc repro` writes them.

    DVC appends a stage's first entry when the stage finishes, so concurrent stages land in the
    order they happened to finish. Only that order changes, through DVC's own YAML round trip.
    """
    from dvc.utils.serialize import modify_yaml

    with _locked_repo(), modify_yaml(lock_path) as lock:
        for stage in new_stages:
            lock["stages"][stage] = lock["stages"].pop(stage)


def _repro(*targets: str) -> None:
    """`dvc repro <targets>` inside this process."""
    from dvc.cli import main as dvc_main

    if dvc_main(["repro", *targets]) != 0:
        raise ParallelError(f"dvc repro {' '.join(targets)} failed (its output is above)")


def _run_group(chains: list[tuple[str, ...]], in_sequential_order: list[str], jobs: int) -> None:
    """Step 2: run the chains concurrently, leaving .gitignore files and dvc.lock as a sequential run does."""
    stages = [stage for stage in in_sequential_order if any(stage in chain for chain in chains)]
    recorded_before = set(locked_stages())
    ignore_outputs(stages)
    runs = run_concurrently(chains, min(jobs, len(chains)), LOG_DIR)
    recorded_now = set(locked_stages())
    new_entries = [stage for stage in stages if stage in recorded_now - recorded_before]
    if len(new_entries) > 1:
        order_new_entries(new_entries)
    failed = [run.name for run in runs if run.exit_code]
    if failed:
        raise ParallelError(
            f"{'; '.join(failed)} failed (see above); the stages that succeeded are recorded "
            "in dvc.lock. Fix the cause and run this again."
        )


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes of memory the kernel could give new processes (MemAvailable); None where there is no /proc/meminfo."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def jobs_that_fit(cpu_jobs: int, training_bytes: int, available_bytes: int | None) -> int:
    """`cpu_jobs`, or fewer when that many trainings of `training_bytes` each would not fit (at least one)."""
    if available_bytes is None:
        return cpu_jobs
    return max(1, min(cpu_jobs, int(MEMORY_SHARE * available_bytes // training_bytes)))


def default_jobs(group: str) -> int:
    """Cores + 1, fewer if the trainings would not fit in memory; logs the estimate behind the choice."""
    if group != "train" or not (ENCODED_DIR / "x_train.npy").exists():
        return DEFAULT_JOBS
    from imdb_regularization.model.encoded_arrays import estimate_training_memory
    from imdb_regularization.params import load_params

    train = load_params().train
    estimate = estimate_training_memory(ENCODED_DIR, train.input, train.hidden_units[0])
    available = available_memory()
    jobs = jobs_that_fit(DEFAULT_JOBS, estimate.bytes, available)
    log.info(
        "one training needs about %.1f GB (num_words=%d, %s rows, %.0f ones a row); %s available: %d at a time%s",
        estimate.bytes / 2**30,
        estimate.num_words,
        "sparse" if estimate.sparse else "dense",
        estimate.ones_per_row,
        "unknown memory" if available is None else f"{available / 2**30:.1f} GB",
        jobs,
        f" (cores + 1 = {DEFAULT_JOBS})" if jobs == DEFAULT_JOBS else f", not cores + 1 = {DEFAULT_JOBS}",
    )
    return jobs


def parse_jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--jobs and ${JOBS_VARIABLE} take a whole number >= 1, got {text!r}")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description="dvc repro, with the stages of one foreach group run concurrently.")
    parser.add_argument(
        "-j",
        "--jobs",
        type=parse_jobs,
        default=os.environ.get(JOBS_VARIABLE),
        help=f"stages run at once (default: ${JOBS_VARIABLE}, else cores + 1 = {DEFAULT_JOBS}, "
        "fewer if that many trainings would not fit in memory)",
    )
    parser.add_argument("--group", default="train", help="the foreach group to run concurrently (default: train)")
    args = parser.parse_args()

    # DVC, run in this process, prints through its own handlers; the stage log format would repeat each line.
    logging.getLogger("dvc").propagate = False
    graph = load_stage_graph()
    members, upstream = plan_group(graph, args.group)
    if upstream:
        _repro(*upstream)
    after = followers(graph, members)
    chains = [(member, *after[member]) for member in changed_stages(members)]
    if chains:
        # Chosen once the upstream stages ran: the memory of a training follows the data they wrote.
        _run_group(chains, list(graph), args.jobs or default_jobs(args.group))
    _repro()


def main_reporting_dvc_errors() -> None:
    """`main`, with DVC's own errors (no repository here, a lock another command holds) as one line each."""
    from dvc.exceptions import DvcException

    try:
        main()
    except DvcException as error:
        raise ParallelError(f"DVC: {cli.one_line(str(error))}") from None


if __name__ == "__main__":
    cli.run(main_reporting_dvc_errors)
