"""Stage `plots`: the comparison as pictures, plot data for `dvc plots`, and a short report.

Params: `models` (which models to compare).
Reads: `<models-dir>/<model>/` (history and weights, `imdb_regularization.model.files`) and
`<metrics-dir>/<model>.json`, each checked before use (as in `evaluate`, `data.num_words` and
`train.hidden_units` give the weights' shapes without being params of this stage).
Writes to `<out>/`: `curves.csv`, `weights.csv` and `test.csv` for the top-level `plots:` of
dvc.yaml, the same five figures as PNGs, and `report.md` (`imdb_regularization.evaluation.report`).
"""

import argparse
import logging
import os
from pathlib import Path

from imdb_regularization import cli
from imdb_regularization.atomic import write_csv, write_text
from imdb_regularization.evaluation import report
from imdb_regularization.evaluation.metrics import read_metrics
from imdb_regularization.model import files
from imdb_regularization.params import load_params

log = logging.getLogger("stages.plots")


def main() -> None:
    parser = argparse.ArgumentParser(description="Plot and report the regularization comparison.")
    parser.add_argument("--models-dir", type=Path, required=True, help="directory of train@<model> outputs")
    parser.add_argument("--metrics-dir", type=Path, required=True, help="directory of evaluate@<model> metrics")
    parser.add_argument("--out", type=Path, required=True, help="directory for plot data, figures and report")
    args = parser.parse_args()

    params = load_params()
    names = list(params.models)
    # Everything is read and checked before the first output is written: a damaged file fails the
    # stage with one line naming it, and none of its outputs are written.
    histories = {name: files.read_history(args.models_dir / name) for name in names}
    weights = {
        name: files.read_hidden_weights(
            args.models_dir / name, num_words=params.data.num_words, hidden_units=params.train.hidden_units
        )
        for name in names
    }
    metrics = read_metrics(args.metrics_dir, names)

    curves, histogram = report.curve_rows(histories), report.weight_histogram_rows(weights)
    tests = report.score_rows(metrics)
    write_csv(args.out / "curves.csv", curves)
    write_csv(args.out / "weights.csv", histogram)
    write_csv(args.out / "test.csv", tests)
    figures = report.figures_to_draw(curves, histogram, tests)
    # Drawing the PNGs is most of this stage's work, and the stage ends every run with the other
    # cores idle: one process per core draws them.
    with cli.worker_pool(min(len(figures), os.cpu_count() or 1)) as pool:
        drawn = [pool.submit(report.save_figure, args.out / f"{name}.png", *figure) for name, figure in figures.items()]
        for future in drawn:
            future.result()
    write_text(args.out / "report.md", report.report_markdown(metrics))
    log.info("wrote %d figures, plot data and report.md to %s", len(figures), args.out)


if __name__ == "__main__":
    cli.run(main)
