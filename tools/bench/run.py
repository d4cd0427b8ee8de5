"""The speed benchmark: the pipeline against the notebook's recipe, in one run, as JSON and a markdown table.

    python -m tools.bench.run [ARCHIVE] [--out DIR] [--jobs N]

On an aclImdb archive, in fresh copies of the project (empty DVC cache and workspace), it times
- notebook: the notebook's recipe as one script in one process (`tools.bench.notebook`), the reference;
- cold: `dvc repro` to the plots; parallel cold: `python -m tools.parallel` in a second copy,
  whose dvc.lock and metrics are also compared with the first's;
- no-op: `dvc repro` again against `dvc status`, on the same repo;
- one change: one model's rate doubled, `dvc repro`, and which stages ran;
- per stage: wall time, peak memory and whether it imported TensorFlow (`tools/bench/stage_hook`);
- encode at num_words 100, 1,000 and 10,000, and its multi-hot step against the notebook's loop;
- training throughput of the train stage's fit against a bare `model.fit` (`tools.bench.training`);
- scale: at each of SCALE_WIDTHS, in a fresh copy with that `data.num_words`, the notebook's recipe
  (stopped above a memory ceiling: "out of memory"), a cold `python -m tools.parallel` (wall time,
  the peak of all its processes' memory together, each stage), and one train stage on its own
  (the median of TRAIN_REPEATS runs, its peak RSS the highest);
  at FLOOR_WIDTH also where a train stage's time goes, against its floor (`tools.bench.floor`).
  It draws the log-log chart `docs/scale.png`;
- study: `python -m study.run` on a small grid (`StudyGrid`: one width, rates, seeds, jobs) in a fresh
  copy whose `fetch` and `encode` have run, so every point is new: the study's wall time against the
  sum of its points' own train and evaluate stage times ÷ jobs; with `--study-before REV`, the same
  grid again with the `study/` of git revision REV, in a copy of its own.
Absolute seconds depend on the machine and its load; the ratios, all from the same run, are the
result. Writes `<out>/bench.json`, `<out>/bench.md` and the `docs/speed.md` page, and prints the table.
"""

import argparse
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imdb_regularization import cli
from imdb_regularization.dvc_commands import dvc_environment, stages_run
from tools.bench.encoding import compare_encoders
from tools.bench.memory import MemoryWatch
from tools.parallel import available_memory
from tools.project import PROJECT_ROOT, copy_project, lock_differences, set_params

DEFAULT_ARCHIVE = PROJECT_ROOT.parent / "shared" / "data" / "aclImdb_labeled.tar.gz"
HOOK_DIR = Path(__file__).resolve().parent / "stage_hook"
ENCODE_WIDTHS = (100, 1_000, 10_000)
# The widths of the scale table: the default, ten times more up to the usual textbook width, three
# times that, and one above the archive's 87,172 training words (its last columns are all zero).
SCALE_WIDTHS = (100, 1_000, 10_000, 30_000, 100_000)
FLOOR_WIDTH = 10_000
# The notebook's recipe is stopped when its memory passes this (or 80% of the memory available
# when the scale phase starts, if less): wide float64 arrays would exhaust the machine.
NOTEBOOK_CEILING_MB = 14_000
# One train stage is timed this many times at each width and its median reported: a single run
# swings by a third on these shared machines, more than the ratio between two widths it enters.
TRAIN_REPEATS = 3
SCALE_CHART = PROJECT_ROOT / "docs" / "scale.png"
# The study's grid (issue 14): at least 12 new points, balanced across 2 jobs. Each seed is one
# experiment of the current study holding the basic model and L1 and L2 at each rate: 4 × 5 points.
STUDY_RATES = "1e-4,1e-3"
STUDY_SEEDS = 4
STUDY_JOBS = 2
STUDY_STAGES = ("train", "evaluate")
NOOP_REPEATS = 5
SPEED_PAGE_HEADING = """# Speed: the pipeline against the notebook's recipe

Written by `python -m tools.bench.run` from its last run on the raw IMDB archive; do not edit by hand.
What each row measures: the docstring of `tools/bench/run.py`. Machines are shared and noisy, so
compare the ratios, all taken in one run, rather than the seconds.

"""


class BenchError(Exception):
    """A measured command failed; `log_path`, when known, is the file holding its full output."""

    def __init__(self, summary: str, log_path: Path | None = None):
        super().__init__(summary)
        self.summary, self.log_path = summary, log_path

    def __str__(self) -> str:
        return self.summary if self.log_path is None else f"{self.summary}; full output in {self.log_path}"


def keep_log(error: BenchError, directory: Path) -> None:
    """Copy the failed command's log into `directory` and point `error` at the copy.

    The benchmark's default work directory is temporary: without the copy, the log its error names
    would be deleted with it.
    """
    if error.log_path is not None and error.log_path.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        error.log_path = Path(shutil.copy(error.log_path, directory / error.log_path.name))


@dataclass(frozen=True)
class Measured:
    """A finished command: its wall time, its output, what each Python process of it recorded, and its memory.

    `peak_rss_mb` and `peak_pss_mb`: the peaks of its processes' summed RSS and PSS (`tools.bench.memory`);
    `out_of_memory`: it was stopped for going above the memory ceiling it was given.
    """

    seconds: float
    output: str
    processes: dict[str, dict[str, Any]]
    peak_rss_mb: float = 0.0
    peak_pss_mb: float = 0.0
    out_of_memory: bool = False


def read_records(log_path: Path) -> list[dict[str, Any]]:
    """Every record the processes of a command wrote about themselves (see `tools/bench/stage_hook`), in order."""
    if not log_path.exists():
        return []
    return [json.loads(line) for line in log_path.read_text().splitlines()]


def process_records(log_path: Path) -> dict[str, dict[str, Any]]:
    """What each named process recorded about itself, by name; the last one wins."""
    return {record.pop("name"): record for record in read_records(log_path)}


@dataclass(frozen=True)
class StudyGrid:
    """The benchmark's study: `study.run`'s --rates, --seeds and --jobs; `num_words` None keeps params.yaml's."""

    rates: str = STUDY_RATES
    seeds: int = STUDY_SEEDS
    jobs: int = STUDY_JOBS
    num_words: int | None = None

    @property
    def points(self) -> int:
        """The basic model and L1 and L2 at each rate, for each seed (at one width)."""
        return self.seeds * (1 + 2 * len(self.rates.split(",")))

    def arguments(self, archive: Path) -> list[str]:
        """`study.run`'s arguments; both the current study and the one before issue 14 take these."""
        grid = ["--rates", self.rates, "--seeds", str(self.seeds), "--jobs", str(self.jobs)]
        return [*grid, "-S", "data.source=aclimdb", "-S", f"data.url={archive}"]


def study_result(seconds: float, records: list[dict[str, Any]], grid: StudyGrid, num_words: int) -> dict[str, Any]:
    """A study run's row: its wall time, and how many of its points' stages ran and for how long.

    Args:
        seconds: the study's wall time.
        records: every record its processes wrote (`read_records`); those of `train@…` and
            `evaluate@…` stages are its points' own work, whatever experiment ran them.
        grid: the grid it ran.
        num_words: the width its points had.
    """
    result: dict[str, Any] = {"num_words": num_words, "rates": grid.rates, "seeds": grid.seeds, "jobs": grid.jobs}
    result |= {"points": grid.points, "seconds": seconds}
    for stage in STUDY_STAGES:
        ran = [record["seconds"] for record in records if record["name"].partition("@")[0] == stage]
        result[f"{stage}_runs"], result[f"{stage}_seconds"] = len(ran), round(sum(ran), 3)
    return result


def use_study_revision(repo: Path, revision: str) -> None:
    """Replace `repo`'s study/ with the study/ of `revision` in this project's git history, and commit it.

    Raises:
        BenchError: the revision, or its study/, is not in this project's history.
    """
    archived = subprocess.run(["git", "archive", revision, "study"], cwd=PROJECT_ROOT, capture_output=True)
    if archived.returncode != 0:
        reason = cli.one_line(archived.stderr.decode(errors="replace"))
        raise BenchError(f"no study/ at git revision {revision!r}: {reason}")
    shutil.rmtree(repo / "study")
    with tarfile.open(fileobj=io.BytesIO(archived.stdout)) as archive:
        archive.extractall(repo, filter="data")
    identity = ["-c", "user.name=imdb-regularization", "-c", "user.email=imdb-regularization@example.org"]
    for command in (
        ["add", "-A", "study"],
        [*identity, "commit", "-q", "--allow-empty", "-m", f"study/ of {revision}"],
    ):
        subprocess.run(["git", *command], cwd=repo, check=True, capture_output=True)


def measure(
    command: list[str], *, name: str, cwd: Path, logs: Path, memory_ceiling_mb: float | None = None
) -> Measured:
    """Run `command` (`python` meaning this interpreter) in `cwd`, its output going to `<logs>/<name>.log`.

    Its Python processes record themselves in `<logs>/<name>.jsonl`: DVC's stages under their
    stage names, anything else under `name`; the memory of all of them together is sampled while
    it runs, and above `memory_ceiling_mb` (summed PSS) the command is stopped and reported as
    out of memory rather than as failed.

    Raises:
        BenchError: the command failed; the message is one line ending with its last line of output
            and the log file that holds all of it.
    """
    log_path, record_path = logs / f"{name}.log", logs / f"{name}.jsonl"
    env = dvc_environment(
        PYTHONPATH=str(HOOK_DIR), BENCH_PROCESS=name, BENCH_STAGE_LOG=str(record_path), TF_CPP_MIN_LOG_LEVEL="2"
    )
    command = [sys.executable if part == "python" else part for part in command]
    ceiling = None if memory_ceiling_mb is None else int(memory_ceiling_mb * 2**20)
    with log_path.open("w", encoding="utf-8") as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        watch = MemoryWatch(process.pid, ceiling)
        returncode = process.wait()
        seconds = time.perf_counter() - started
        peak = watch.stop()
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if returncode != 0 and not peak.out_of_memory:
        # Every command of the project ends with a one-line reason (`cli.run`); the log has the rest.
        last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no output")
        raise BenchError(f"{' '.join(command)} failed in {cwd} (exit {returncode}): {cli.one_line(last)}", log_path)
    return Measured(
        round(seconds, 3),
        text,
        process_records(record_path),
        peak_rss_mb=round(peak.rss_bytes / 2**20, 1),
        peak_pss_mb=round(peak.pss_bytes / 2**20, 1),
        out_of_memory=peak.out_of_memory,
    )


class Benchmark:
    """The phases of one benchmark run, sharing a work directory and the archive."""

    def __init__(self, archive: Path, work: Path, params: dict[str, Any]):
        self.archive, self.work = archive, work
        self.params = {"data.source": "aclimdb", "data.url": str(archive), **params}
        (work / "logs").mkdir(parents=True, exist_ok=True)

    def measure(self, name: str, command: list[str], cwd: Path, memory_ceiling_mb: float | None = None) -> Measured:
        return measure(command, name=name, cwd=cwd, logs=self.work / "logs", memory_ceiling_mb=memory_ceiling_mb)

    def measure_process(self, name: str, command: list[str], cwd: Path) -> dict[str, float]:
        """Wall time and peak RSS of a command that is one Python process."""
        run = self.measure(name, command, cwd)
        return {"seconds": run.seconds, "peak_rss_mb": run.processes[name]["peak_rss_mb"]}

    def copy(self, name: str) -> Path:
        return copy_project(self.work / name, self.params)

    def warm_up(self, repo: Path) -> None:
        """Read the archive and import TensorFlow once, so the first measured run pays no cold disk cache."""
        self.archive.read_bytes()
        self.measure("warm-up", ["python", "-c", "import tensorflow"], repo)

    def notebook(self, repo: Path) -> dict[str, Any]:
        timings = self.work / "notebook.json"
        run = self.measure_process(
            "notebook", ["python", "-m", "tools.bench.notebook", str(self.archive), "--timings", str(timings)], repo
        )
        return {**run, **json.loads(timings.read_text())}

    def pipeline(self, name: str, repo: Path, command: list[str]) -> dict[str, Any]:
        run = self.measure(name, command, repo)
        stages = {stage: record for stage, record in run.processes.items() if stage != name}
        return {
            "seconds": run.seconds,
            "stages": stages,
            "stage_seconds": round(sum(record["seconds"] for record in stages.values()), 3),
        }

    def noop(self, repo: Path) -> dict[str, Any]:
        """Median seconds of `dvc repro` and `dvc status` with nothing changed, alternating."""
        times: dict[str, list[float]] = {"repro": [], "status": []}
        for attempt in range(NOOP_REPEATS):
            for command in times:
                run = self.measure(f"noop-{command}-{attempt}", ["python", "-m", "dvc", command], repo)
                if command == "repro" and stages_run(run.output):
                    raise BenchError(f"a no-op dvc repro ran {stages_run(run.output)}")
                times[command].append(run.seconds)
        return {
            "repeats": NOOP_REPEATS,
            **{f"{command}_seconds": statistics.median(values) for command, values in times.items()},
        }

    def one_change(self, repo: Path, model: str) -> dict[str, Any]:
        params = yaml.safe_load((repo / "params.yaml").read_text())
        rate = params["models"][model]["rate"] * 2 or 0.001
        set_params(repo, {f"models.{model}.rate": rate})
        run = self.measure("one-change", ["python", "-m", "dvc", "repro"], repo)
        return {"model": model, "rate": rate, "seconds": run.seconds, "stages_run": stages_run(run.output)}

    def encode_widths(self, repo: Path) -> dict[int, dict[str, float]]:
        """The encode stage (its module, outside DVC) at each width; then the multi-hot step alone."""
        original = yaml.safe_load((repo / "params.yaml").read_text())["data"]["num_words"]
        results = {}
        for width in ENCODE_WIDTHS:
            set_params(repo, {"data.num_words": width})
            out = self.work / f"encoded-{width}"
            command = ["python", "-m", "stages.encode", "--raw", "data/raw", "--out", str(out)]
            results[width] = self.measure_process(f"encode-{width}", command, repo)
        set_params(repo, {"data.num_words": original})
        for width, timings in compare_encoders(self.archive, ENCODE_WIDTHS).items():
            results[width].update(timings)
        return results

    def scale_width(self, width: int, model: str, *, notebook_ceiling_mb: float | None) -> dict[str, Any]:
        """The scale table's row for `width`; the notebook is skipped when `notebook_ceiling_mb` is None."""
        repo = copy_project(self.work / f"scale-{width}", {**self.params, "data.num_words": width})
        row: dict[str, Any] = {"num_words": width}
        if notebook_ceiling_mb is not None:
            row["notebook"] = self._notebook_at(width, repo, notebook_ceiling_mb)
        parallel = self.measure(f"parallel-{width}", ["python", "-m", "tools.parallel"], repo)
        stages = {stage: record for stage, record in parallel.processes.items() if stage != f"parallel-{width}"}
        row["parallel"] = {
            "seconds": parallel.seconds,
            "peak_rss_mb": parallel.peak_rss_mb,
            "peak_pss_mb": parallel.peak_pss_mb,
            "jobs": _logged_number(parallel.output, r"(\d+) at a time"),
            "stages": stages,
        }
        row["encode"] = {key: stages["encode"][key] for key in ("seconds", "peak_rss_mb")}
        command = ["python", "-m", "stages.train", "--model", model, "--data", "data/encoded"]
        seconds, peaks = [], []
        for number in range(1, TRAIN_REPEATS + 1):
            name = f"train-{width}-{number}"
            train = self.measure(name, [*command, "--models-dir", str(self.work / name)], repo)
            seconds.append(train.seconds)
            peaks.append(train.processes[name]["peak_rss_mb"])
        row["train"] = {
            "seconds": round(statistics.median(seconds), 3),
            "runs_seconds": seconds,
            "peak_rss_mb": max(peaks),
            "input": "sparse" if " on sparse rows " in train.output else "dense",
        }
        if width == FLOOR_WIDTH:
            out = self.work / "floor.json"
            command = ["python", "-m", "tools.bench.floor", "--data", "data/encoded", "--model", model]
            self.measure("floor", [*command, "--out", str(out)], repo)
            row["floor"] = json.loads(out.read_text())
        shutil.rmtree(repo)  # a 100,000-word copy holds 10 GB of arrays and their DVC cache
        return row

    def _notebook_at(self, width: int, repo: Path, ceiling_mb: float) -> dict[str, Any]:
        timings = self.work / f"notebook-{width}.json"
        command = ["python", "-m", "tools.bench.notebook", str(self.archive), "--timings", str(timings)]
        run = self.measure(f"notebook-{width}", command, repo, memory_ceiling_mb=ceiling_mb)
        # Stopped for its memory, it recorded nothing itself: its peak is the sampled one.
        peak = run.peak_pss_mb if run.out_of_memory else run.processes[f"notebook-{width}"]["peak_rss_mb"]
        return {
            "seconds": run.seconds,
            "peak_rss_mb": peak,
            "out_of_memory": run.out_of_memory,
            "ceiling_mb": round(ceiling_mb),
        }

    def scale(self, model: str, widths: tuple[int, ...] = SCALE_WIDTHS) -> list[dict[str, Any]]:
        """A scale row per width; the notebook's column stops at the first width where it runs out of memory."""
        available = available_memory()
        ceiling: float | None = NOTEBOOK_CEILING_MB
        if available is not None:
            ceiling = min(NOTEBOOK_CEILING_MB, 0.8 * available / 2**20)
        rows = []
        for width in widths:
            rows.append(self.scale_width(width, model, notebook_ceiling_mb=ceiling))
            if rows[-1].get("notebook", {}).get("out_of_memory"):
                ceiling = None
        return rows

    def study(self, grid: StudyGrid, revision: str | None = None) -> dict[str, Any]:
        """`python -m study.run` on `grid` in a fresh copy, with the study/ of git `revision` if given.

        The copy's `fetch` and `encode` run first, unmeasured: the data are what a study starts
        from, while none of its points is in the run-cache, so every one of them trains.
        """
        name = "study" if revision is None else f"study-{revision}"
        params = self.params if grid.num_words is None else {**self.params, "data.num_words": grid.num_words}
        repo = copy_project(self.work / name, params)
        if revision is not None:
            use_study_revision(repo, revision)
        self.measure(f"{name}-prepare", ["python", "-m", "dvc", "repro", "encode"], repo)
        run = self.measure(name, ["python", "-m", "study.run", *grid.arguments(self.archive)], repo)
        num_words = yaml.safe_load((repo / "params.yaml").read_text())["data"]["num_words"]
        result = study_result(run.seconds, read_records(self.work / "logs" / f"{name}.jsonl"), grid, num_words)
        return {"revision": revision, **result}

    def training(self, repo: Path, model: str) -> list[dict[str, Any]]:
        out = self.work / "training.json"
        self.measure(
            "training",
            ["python", "-m", "tools.bench.training", "--data", "data/encoded", "--model", model, "--out", str(out)],
            repo,
        )
        return json.loads(out.read_text())


def _logged_number(output: str, pattern: str) -> int | None:
    """The number the first match of `pattern` (one group) in a command's output captures."""
    found = re.search(pattern, output)
    return int(found.group(1)) if found else None


def _same_results(first: Path, second: Path) -> dict[str, Any]:
    metrics = sorted(path.name for path in (first / "metrics").glob("*.json"))
    return {
        "lock_differences": lock_differences(first, second),
        "metrics_identical": all(
            (first / "metrics" / name).read_bytes() == (second / "metrics" / name).read_bytes() for name in metrics
        ),
    }


def run_benchmark(
    archive: Path,
    work: Path,
    *,
    jobs: int | None,
    model: str,
    params: dict[str, Any],
    scale_widths: tuple[int, ...] = SCALE_WIDTHS,
    study: StudyGrid | None = StudyGrid(),
    study_before: str | None = None,
) -> dict[str, Any]:
    """Every phase, in an order where none disturbs the next; returns the raw results.

    `study` None skips the study phase; `study_before`, a git revision, adds the same grid run by
    that revision's study/.
    """
    bench = Benchmark(archive, work, params)
    sequential, parallel = bench.copy("sequential"), bench.copy("parallel")
    load_before = os.getloadavg()
    bench.warm_up(sequential)
    results: dict[str, Any] = {
        "notebook": bench.notebook(sequential),
        "cold": bench.pipeline("cold", sequential, ["python", "-m", "dvc", "repro"]),
    }
    parallel_command = ["python", "-m", "tools.parallel"] + (["--jobs", str(jobs)] if jobs else [])
    results["parallel_cold"] = {
        **bench.pipeline("parallel-cold", parallel, parallel_command),
        "jobs": jobs,
        **_same_results(sequential, parallel),
    }
    results["noop"] = bench.noop(sequential)
    results["one_change"] = bench.one_change(sequential, model)
    results["encode"] = bench.encode_widths(sequential)
    results["training"] = bench.training(sequential, model)
    if study is not None:
        results["study"] = [bench.study(study)]
        if study_before is not None:
            results["study"].append(bench.study(study, study_before))
    if scale_widths:
        results["scale"] = bench.scale(model, scale_widths)
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    return results


def _parse_setting(text: str) -> tuple[str, Any]:
    key, separator, value = text.partition("=")
    if not separator:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, yaml.safe_load(value)


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the pipeline against the notebook's recipe.")
    parser.add_argument(
        "archive",
        type=Path,
        nargs="?",
        default=DEFAULT_ARCHIVE,
        help=f"an aclImdb .tar.gz (default: {DEFAULT_ARCHIVE})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=PROJECT_ROOT / "tools" / "bench" / "results",
        help="directory for bench.json and bench.md",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=PROJECT_ROOT / "docs" / "speed.md",
        help="the documentation page of the measurements, linked from the README (%(default)s)",
    )
    parser.add_argument("--jobs", type=int, default=None, help="concurrent trainings (default: tools.parallel's)")
    parser.add_argument("--model", default="l1", help="the model whose rate the one-change run doubles")
    parser.add_argument(
        "--set",
        type=_parse_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params.yaml value for every run, e.g. train.epochs=2 (repeatable)",
    )
    parser.add_argument("--work", type=Path, default=None, help="keep the project copies here (default: a temp dir)")
    parser.add_argument(
        "--scale-widths",
        type=int,
        nargs="*",
        default=list(SCALE_WIDTHS),
        metavar="NUM_WORDS",
        help="the scale table's num_words (default: %(default)s; none: skip the scale phase)",
    )
    parser.add_argument("--chart", type=Path, default=SCALE_CHART, help="the scale phase's chart (%(default)s)")
    parser.add_argument("--study-rates", default=STUDY_RATES, help="the study's --rates (%(default)s)")
    parser.add_argument(
        "--study-seeds", type=int, default=STUDY_SEEDS, help="the study's --seeds (%(default)s; 0: skip the study)"
    )
    parser.add_argument("--study-jobs", type=int, default=STUDY_JOBS, help="the study's --jobs (%(default)s)")
    parser.add_argument("--study-num-words", type=int, default=None, help="the study's width (default: params')")
    parser.add_argument(
        "--study-before",
        metavar="REVISION",
        default=None,
        help="also run the grid with the study/ of this git revision, e.g. a68afe2 (the queue-based study)",
    )
    args = parser.parse_args()

    from tools.bench.report import markdown, summarize

    if not args.archive.is_file():
        raise cli.StageError(f"no archive at {args.archive}: pass the path of an aclImdb .tar.gz")
    with tempfile.TemporaryDirectory(prefix="bench-") as temporary:
        try:
            results = run_benchmark(
                args.archive.resolve(),
                args.work or Path(temporary),
                jobs=args.jobs,
                model=args.model,
                params=dict(args.set),
                scale_widths=tuple(args.scale_widths),
                study=StudyGrid(args.study_rates, args.study_seeds, args.study_jobs, args.study_num_words)
                if args.study_seeds
                else None,
                study_before=args.study_before,
            )
        except BenchError as error:
            if args.work is None:
                keep_log(error, args.out)
            # A measured command failed: its message ends with that command's last line and its log.
            raise cli.StageError(f"benchmark stopped: {error}") from None
    summary = summarize(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps({"summary": summary, "results": results}, indent=2) + "\n")
    table = markdown(summary, results)
    (args.out / "bench.md").write_text(table)
    if results.get("scale"):
        from tools.bench.chart import draw_scale_chart

        draw_scale_chart(results["scale"], args.chart)
    args.docs.write_text(SPEED_PAGE_HEADING + table + "\n")
    print(table)


if __name__ == "__main__":
    cli.run(main)
