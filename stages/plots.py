"""Stage `plots`: the comparison as pictures, plot data for `dvc plots`, and a short report.

Params: `models` (which models to compare), `evaluate.kept_norm` (which words count as kept).
Reads: `<models-dir>/<model>/` (history and weights, `imdb_regularization.model.files`),
`<metrics-dir>/<model>.json` and the vocabulary `encode` wrote, each checked before use (as in
`evaluate`, `data.num_words` and `train.hidden_units` give the weights' shapes without being
params of this stage).
Writes to `<out>/`: `curves.csv`, `weights.csv`, `test.csv` and `words_kept.csv` for the top-level
`plots:` of dvc.yaml, the same six figures as PNGs, `words.csv` (every word's norm, effect and kept
flag per model) and `report.md` (`imdb_regularization.evaluation.report`).
"""

import argparse
import logging
import os
from pathlib import Path

from imdb_regularization import cli
from imdb_regularization.atomic import atomic_files, write_csv, write_text
from imdb_regularization.evaluation import report, words
from imdb_regularization.evaluation.metrics import read_metrics
from imdb_regularization.model import files
from imdb_regularization.params import load_params

log = logging.getLogger("stages.plots")


def main() -> None:
    parser = argparse.ArgumentParser(description="Plot and report the regularization comparison.")
    parser.add_argument("--models-dir", type=Path, required=True, help="directory of train@<model> outputs")
    parser.add_argument("--metrics-dir", type=Path, required=True, help="directory of evaluate@<model> metrics")
    parser.add_argument("--vocabulary", type=Path, required=True, help="the vocabulary.tsv encode wrote")
    parser.add_argument("--out", type=Path, required=True, help="directory for plot data, figures and report")
    args = parser.parse_args()

    params = load_params()
    names = list(params.models)
    # Everything is read and checked before the first output is written: a damaged file fails the
    # stage with one line naming it, and none of its outputs are written.
    histories = {name: files.read_history(args.models_dir / name) for name in names}
    shapes = files.WeightShapes(num_words=params.data.num_words, hidden_units=params.train.hidden_units)
    layers = {name: files.read_network_layers(args.models_dir / name, **shapes._asdict()) for name in names}
    weights = {name: files.flat_hidden_weights(layers[name]) for name in names}
    analyses = {name: words.analyse_words(layers[name], params.evaluate.kept_norm) for name in names}
    vocabulary = files.read_vocabulary(args.vocabulary, num_words=params.data.num_words)
    metrics = read_metrics(args.metrics_dir, names)

    curves, histogram = report.curve_rows(histories), report.weight_histogram_rows(weights)
    tests, kept = report.score_rows(metrics), report.words_kept_rows(metrics)
    figures = report.figures_to_draw(curves, histogram, tests, kept, params.data.num_words)
    top = {name: words.top_words(analyses[name], vocabulary) for name in names}
    # All outputs or none: they move into <out>/ together once every one is written.
    with atomic_files(args.out) as out:
        write_csv(out / "curves.csv", curves)
        write_csv(out / "weights.csv", histogram)
        write_csv(out / "test.csv", tests)
        write_csv(out / "words_kept.csv", kept)
        write_csv(
            out / "words.csv", [row for name in names for row in words.word_rows(name, analyses[name], vocabulary)]
        )
        # Drawing the PNGs is most of this stage's work, and the stage ends every run with the other
        # cores idle: one process per core draws them.
        with cli.worker_pool(min(len(figures), os.cpu_count() or 1)) as pool:
            drawn = [pool.submit(report.save_figure, out / f"{name}.png", *figure) for name, figure in figures.items()]
            for future in drawn:
                future.result()
        write_text(out / "report.md", report.report_markdown(metrics, top))
    log.info("wrote %d figures, plot data and report.md to %s", len(figures), args.out)


if __name__ == "__main__":
    cli.run(main)
