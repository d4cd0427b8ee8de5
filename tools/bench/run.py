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
- training throughput of the train stage's fit against a bare `model.fit` (`tools.bench.training`).
Absolute seconds depend on the machine and its load; the ratios, all from the same run, are the
result. Writes `<out>/bench.json`, `<out>/bench.md` and the `docs/speed.md` page, and prints the table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imdb_regularization import cli
from imdb_regularization.dvc_commands import dvc_environment, stages_run
from tools.bench.encoding import compare_encoders
from tools.project import PROJECT_ROOT, copy_project, lock_differences, set_params

DEFAULT_ARCHIVE = PROJECT_ROOT.parent / "shared" / "data" / "aclImdb_labeled.tar.gz"
HOOK_DIR = Path(__file__).resolve().parent / "stage_hook"
ENCODE_WIDTHS = (100, 1_000, 10_000)
NOOP_REPEATS = 5
SPEED_PAGE_HEADING = """# Speed: the pipeline against the notebook's recipe

Written by `python -m tools.bench.run` from its last run on the raw IMDB archive; do not edit by hand.
What each row measures: the docstring of `tools/bench/run.py`. Machines are shared and noisy, so
compare the ratios, all taken in one run, rather than the seconds.

"""


class BenchError(Exception):
    """A measured command failed."""


@dataclass(frozen=True)
class Measured:
    """A finished command: its wall time, its output, and what each Python process of it recorded."""

    seconds: float
    output: str
    processes: dict[str, dict[str, Any]]


def process_records(log_path: Path) -> dict[str, dict[str, Any]]:
    """What each named process recorded about itself (see `tools/bench/stage_hook`), by name; the last one wins."""
    if not log_path.exists():
        return {}
    return {record.pop("name"): record for record in map(json.loads, log_path.read_text().splitlines())}


def measure(command: list[str], *, name: str, cwd: Path, logs: Path) -> Measured:
    """Run `command` (`python` meaning this interpreter) in `cwd`, its output going to `<logs>/<name>.log`.

    Its Python processes record themselves in `<logs>/<name>.jsonl`: DVC's stages under their
    stage names, anything else under `name`.

    Raises:
        BenchError: the command failed; the message ends with its last lines of output.
    """
    log_path, record_path = logs / f"{name}.log", logs / f"{name}.jsonl"
    env = dvc_environment(
        PYTHONPATH=str(HOOK_DIR), BENCH_PROCESS=name, BENCH_STAGE_LOG=str(record_path), TF_CPP_MIN_LOG_LEVEL="2"
    )
    command = [sys.executable if part == "python" else part for part in command]
    with log_path.open("w", encoding="utf-8") as output:
        started = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, check=False)
        seconds = time.perf_counter() - started
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if result.returncode != 0:
        tail = "\n".join(text.splitlines()[-20:])
        raise BenchError(f"{' '.join(command)} failed in {cwd} (exit {result.returncode}):\n{tail}")
    return Measured(round(seconds, 3), text, process_records(record_path))


class Benchmark:
    """The phases of one benchmark run, sharing a work directory and the archive."""

    def __init__(self, archive: Path, work: Path, params: dict[str, Any]):
        self.archive, self.work = archive, work
        self.params = {"data.source": "aclimdb", "data.url": str(archive), **params}
        (work / "logs").mkdir(parents=True, exist_ok=True)

    def measure(self, name: str, command: list[str], cwd: Path) -> Measured:
        return measure(command, name=name, cwd=cwd, logs=self.work / "logs")

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

    def training(self, repo: Path, model: str) -> list[dict[str, Any]]:
        out = self.work / "training.json"
        self.measure(
            "training",
            ["python", "-m", "tools.bench.training", "--data", "data/encoded", "--model", model, "--out", str(out)],
            repo,
        )
        return json.loads(out.read_text())


def _same_results(first: Path, second: Path) -> dict[str, Any]:
    metrics = sorted(path.name for path in (first / "metrics").glob("*.json"))
    return {
        "lock_differences": lock_differences(first, second),
        "metrics_identical": all(
            (first / "metrics" / name).read_bytes() == (second / "metrics" / name).read_bytes() for name in metrics
        ),
    }


def run_benchmark(archive: Path, work: Path, *, jobs: int | None, model: str, params: dict[str, Any]) -> dict[str, Any]:
    """Every phase, in an order where none disturbs the next; returns the raw results."""
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
    args = parser.parse_args()

    from tools.bench.report import markdown, summarize

    if not args.archive.is_file():
        raise cli.StageError(f"no archive at {args.archive}: pass the path of an aclImdb .tar.gz")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as temporary:
            work = args.work or Path(temporary)
            results = run_benchmark(
                args.archive.resolve(), work, jobs=args.jobs, model=args.model, params=dict(args.set)
            )
    except BenchError as error:
        # A measured command failed: its message ends with the end of that command's output.
        raise cli.StageError(f"benchmark stopped: {error}") from None
    summary = summarize(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps({"summary": summary, "results": results}, indent=2) + "\n")
    table = markdown(summary, results)
    (args.out / "bench.md").write_text(table)
    args.docs.write_text(SPEED_PAGE_HEADING + table + "\n")
    print(table)


if __name__ == "__main__":
    cli.run(main)
