"""Publish a finished run's results: `docs/results/` and the README's results table, from the run's own files.

    dvc repro && python -m tools.publish_results

Copies the `plots` stage's report and figures and every model's metrics into `docs/results/`, and
rewrites the table between the README's `<!-- results:start -->` and `<!-- results:end -->` markers
from those metrics, with the run's params and the SHA-256 of the data it read. It refuses a
workspace whose outputs `dvc status` reports as out of date, so what it publishes is what the
current params and data produce.
"""

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from imdb_regularization import cli
from imdb_regularization.atomic import atomic_files, write_text
from imdb_regularization.dvc_commands import run_dvc
from imdb_regularization.evaluation.metrics import read_metrics
from imdb_regularization.evaluation.report import FIGURES
from imdb_regularization.params import Params, load_params
from imdb_regularization.readers.sources import SOURCE_RECORD
from imdb_regularization.readme_blocks import replace_block

log = logging.getLogger("tools.publish_results")

README_BLOCK = "results"
COLUMNS = {
    "test BCE": "test_bce",
    "test accuracy": "test_accuracy",
    "test AUC": "test_auc",
    "best val BCE": "best_val_bce",
    "best epoch": "best_epoch",
    "overfit gap": "overfit_gap",
    "words kept": "words_kept",
}


class PublishError(cli.StageError):
    """The workspace holds no finished, up-to-date run to publish."""


def _model_label(name: str, params: Params) -> str:
    spec = params.models[name]
    return name if spec.regularizer == "none" else f"{name} ({spec.rate:g})"


def results_table(metrics: dict[str, dict[str, Any]], params: Params) -> str:
    """The README's table: one row per model, the best test BCE in bold, each hidden layer's zero fraction."""
    layers = list(next(iter(metrics.values()))["weights"])
    best = min(metrics, key=lambda name: metrics[name]["test_bce"])
    header = ["model", *COLUMNS, *(f"{layer} zero" for layer in layers)]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, values in metrics.items():
        cells = [
            f"{values[key]:.4f}" if isinstance(values[key], float) else str(values[key]) for key in COLUMNS.values()
        ]
        cells += [f"{values['weights'][layer]['zero_fraction']:.4f}" for layer in layers]
        if name == best:
            cells[0] = f"**{cells[0]}**"
        lines.append(f"| {_model_label(name, params)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def provenance(params: Params, source_record: dict[str, Any]) -> str:
    """One sentence on what produced the table: the data (by checksum) and the training settings."""
    train = params.train
    return (
        f"Data: `{params.data.source}`, {params.data.num_words} words (sha256 `{source_record['sha256'][:12]}…`); "
        f"{train.epochs} epochs, batch {train.batch_size}, hidden {list(train.hidden_units)}, seed {train.seed}, "
        f"validation on {train.validation}. Written by `python -m tools.publish_results`; do not edit by hand."
    )


def _check_up_to_date() -> None:
    result = run_dvc("status", "--json")
    if result.returncode != 0:
        raise PublishError(f"dvc status failed: {cli.one_line(result.stderr)}")
    if json.loads(result.stdout or "{}"):
        raise PublishError("the pipeline's outputs are out of date (dvc status lists changes): run dvc repro first")


def main() -> None:
    parser = argparse.ArgumentParser(description="Publish a finished run's results to docs/results and the README.")
    parser.add_argument("--docs", type=Path, default=Path("docs/results"), help="where the copies go")
    parser.add_argument("--readme", type=Path, default=Path("README.md"), help="the README with the results markers")
    args = parser.parse_args()

    _check_up_to_date()
    params = load_params()
    names = list(params.models)
    metrics = read_metrics(Path("metrics"), names)
    record = json.loads((Path("data/raw") / SOURCE_RECORD).read_text(encoding="utf-8"))
    readme = replace_block(
        args.readme.read_text(encoding="utf-8"),
        README_BLOCK,
        results_table(metrics, params) + "\n\n" + provenance(params, record),
    )
    # Into the directory, beside whatever else it holds: `--docs docs` must not replace the whole of docs/.
    with atomic_files(args.docs) as docs:
        for name in names:
            shutil.copy2(Path("metrics") / f"{name}.json", docs / f"{name}.json")
        for file_name in [*(f"{figure}.png" for figure in FIGURES), "report.md"]:
            shutil.copy2(Path("plots") / file_name, docs / file_name)
    write_text(args.readme, readme)
    log.info("published %d models' results to %s and %s", len(names), args.docs, args.readme)


if __name__ == "__main__":
    cli.run(main)
