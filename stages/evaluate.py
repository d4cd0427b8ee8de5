"""Stage `evaluate@<model>`: score one trained model on the test set.

Params: `evaluate.zero_threshold`.
Reads: `<data>/y_test.npy` and, from `<models-dir>/<model>/`, the test predictions, history and
weights that `train` wrote (`imdb_regularization.model.files`), so no TensorFlow here.
Writes: `<metrics-dir>/<model>.json`, the metrics `dvc metrics show` lists
(`imdb_regularization.evaluation.metrics`).
"""

import argparse
import logging
from pathlib import Path

from imdb_regularization import cli
from imdb_regularization.atomic import write_json
from imdb_regularization.evaluation.metrics import evaluate_model
from imdb_regularization.model import encoded_arrays, files
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
    metrics = evaluate_model(
        y_true=encoded_arrays.read_array(args.data, "y_test"),
        y_prob=files.read_test_predictions(model_dir),
        history=files.read_history(model_dir),
        hidden_kernels=files.read_hidden_kernels(model_dir),
        zero_threshold=params.evaluate.zero_threshold,
    )
    write_json(out, metrics)
    log.info("%s: test_bce %.4f, test_accuracy %.4f", out, metrics["test_bce"], metrics["test_accuracy"])


if __name__ == "__main__":
    cli.run(main)
