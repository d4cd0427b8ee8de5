"""Stage `train@<model>`: fit one model of the comparison.

Params: the `train` section and `models.<model>`.
Reads: `<data>/x_train.npy`, `y_train.npy`, `x_test.npy`, `y_test.npy`.
Writes to `<out>/`: `model.keras`; `history.json` (per epoch: `loss` with the penalty,
`bce` without it, `accuracy`, and the same on the validation data as `val_*`);
`weights.npz` (each layer's kernel and bias); `test_predictions.npy` (P(positive)
per test review), so evaluation and plots need no TensorFlow.

The network and its training live in `stages.model`, imported only once params and
data have loaded, so a bad params.yaml fails before TensorFlow's seconds-long start-up.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

from stages import cli, model_files
from stages.atomic import atomic_directory
from stages.params import load_params

log = logging.getLogger("stages.train")


def split_validation(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out a seeded random `fraction` of the training set for validation."""
    order = np.random.default_rng(seed).permutation(len(y))
    held_out = int(round(len(y) * fraction))
    validation, train = order[:held_out], order[held_out:]
    return (x[train], y[train]), (x[validation], y[validation])


def main() -> None:
    parser = argparse.ArgumentParser(description="Train one model of the regularization comparison.")
    parser.add_argument("--model", help="a key of the models section of params.yaml (default: from DVC_STAGE)")
    parser.add_argument("--data", type=Path, required=True, help="directory of the encoded arrays")
    parser.add_argument("--models-dir", type=Path, required=True, help="writes <models-dir>/<model>/")
    args = parser.parse_args()

    params = load_params()
    name = cli.resolve_model(args.model, params.models)
    spec, train = params.models[name], params.train
    # Keras' losses want float inputs and (N, 1) targets to match the (N, 1) output.
    x_train, x_test = (np.load(args.data / f"{name}.npy").astype(np.float32) for name in ("x_train", "x_test"))
    y_train, y_test = (np.load(args.data / f"{name}.npy").astype(np.float32)[:, None] for name in ("y_train", "y_test"))
    if train.validation == "test":
        train_data, validation_data = (x_train, y_train), (x_test, y_test)
    else:
        train_data, validation_data = split_validation(x_train, y_train, train.validation, train.seed)

    from stages.model import build_model, predict_probabilities, save_model, seed_everything, train_model

    seed_everything(train.seed)
    model = build_model(num_words=x_train.shape[1], hidden_units=train.hidden_units, spec=spec)
    log.info("training %s (%s, rate %g) for %d epochs", name, spec.regularizer, spec.rate, train.epochs)
    history = train_model(model, train_data=train_data, validation_data=validation_data, params=train)

    weights = {f"{layer.name}_{weight.name}": weight.numpy() for layer in model.layers for weight in layer.weights}
    # The four files appear together or not at all: evaluate and plots never see a partial model.
    with atomic_directory(args.models_dir / name) as out:
        save_model(model, out / model_files.MODEL)
        model_files.write_model_files(
            out,
            history={"epoch": list(range(1, train.epochs + 1)), **history},
            weights=weights,
            test_predictions=predict_probabilities(model, x_test),
        )
    last = {metric: values[-1] for metric, values in history.items()}
    log.info("%s: last val_bce %.4f, val_accuracy %.4f", name, last["val_bce"], last["val_accuracy"])


if __name__ == "__main__":
    cli.run(main)
    # Interpreter shutdown with TensorFlow loaded takes about 0.3 s and does nothing this stage
    # needs: its outputs are written and closed. Flush the logs and leave. (Failures exit in cli.run.)
    sys.stdout.flush()
    logging.shutdown()
    os._exit(0)
