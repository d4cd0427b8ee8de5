"""Stage `evaluate@<model>`: score one trained model on the test set.

Params: `evaluate.zero_threshold`, `evaluate.kept_norm`.
Reads: `<data>/y_test.npy` and, from `<models-dir>/<model>/`, the test predictions, history and
weights that `train` wrote (`imdb_regularization.model.files`), so no TensorFlow here. Each is
checked before use; `data.num_words` and `train.hidden_units` give the shapes the weights must
have. They only check what the models, which depend on them, already hold, and change no metric,
so they are not params of this stage. The words kept and their one-word effects come from all the
layers' weights, rerun in NumPy (`imdb_regularization.evaluation.words`).
Writes: `<metrics-dir>/<model>.json`, the metrics `dvc metrics show` lists
(`imdb_regularization.evaluation.metrics`).
"""

import argparse
import logging
from pathlib import Path

from imdb_regularization import cli
from imdb_regularization.atomic import write_json
from imdb_regularization.evaluation.metrics import evaluate_model
from imdb_regularization.evaluation.words import analyse_words
from imdb_regularization.model import files
from imdb_regularization.params import load_params

log = logging.getLogger("stages.evaluate")


def main() -> None:
    parser = argparse.ArgumentParser(description="Evaluate one trained model.")
    parser.add_argument("--model", help="a key of the models section of params.yaml (default: from DVC_STAGE)")
    parser.add_argument("--models-dir", type=Path, required=True, help="reads <models-dir>/<model>/")
    parser.add_argument("--data", type=Path, required=True, help="directory of the encoded arrays")
    parser.add_argument("--metrics-dir", type=Path, required=True, help="writes <metrics-dir>/<model>.json")
    args = parser.parse_args()

    params = load_params()
    name = cli.resolve_model(args.model, params.models)
    model_dir, out = args.models_dir / name, args.metrics_dir / f"{name}.json"
    # Every file is read and checked before anything is computed: a damaged one fails the stage with
    # one line naming it, and no metrics are written.
    y_true = files.read_test_labels(args.data / "y_test.npy")
    shapes = files.WeightShapes(num_words=params.data.num_words, hidden_units=params.train.hidden_units)
    layers = files.read_network_layers(model_dir, **shapes._asdict())
    metrics = evaluate_model(
        y_true=y_true,
        y_prob=files.read_test_predictions(model_dir, rows=len(y_true)),
        history=files.read_history(model_dir),
        hidden_kernels=files.hidden_kernels_of(layers),
        zero_threshold=params.evaluate.zero_threshold,
        words=analyse_words(layers, params.evaluate.kept_norm),
    )
    write_json(out, metrics)
    log.info(
        "%s: test_bce %.4f, test_accuracy %.4f, %d words kept",
        out,
        metrics["test_bce"],
        metrics["test_accuracy"],
        metrics["words_kept"],
    )


if __name__ == "__main__":
    cli.run(main)
