"""Stage `train@<model>`: fit one model of the comparison.

Params: the `train` section and `models.<model>`.
Reads: the encoded arrays in `<data>/` (`imdb_regularization.model.encoded_arrays`), as float32
rows or, when they are wide and mostly zeros (`train.input`), as sparse rows read a block at a time.
Writes to `<models-dir>/<model>/`: `model.keras` and the files `evaluate` and `plots` read
without TensorFlow (`imdb_regularization.model.files`): per-epoch history, each layer's
weights, the test predictions.

The network lives in `imdb_regularization.model.network`, imported only once params and
data have loaded, so a bad params.yaml fails before TensorFlow's seconds-long start-up.
"""

import argparse
import logging
from pathlib import Path

from imdb_regularization import cli
from imdb_regularization.atomic import atomic_directory, check_writable
from imdb_regularization.model import encoded_arrays, files
from imdb_regularization.params import load_params

log = logging.getLogger("stages.train")


def main() -> None:
    parser = argparse.ArgumentParser(description="Train one model of the regularization comparison.")
    parser.add_argument("--model", help="a key of the models section of params.yaml (default: from DVC_STAGE)")
    parser.add_argument("--data", type=Path, required=True, help="directory of the encoded arrays")
    parser.add_argument("--models-dir", type=Path, required=True, help="writes <models-dir>/<model>/")
    args = parser.parse_args()

    params = load_params()
    name = cli.resolve_model(args.model, params.models)
    check_writable(args.models_dir)  # before the training, not after it
    spec, train = params.models[name], params.train
    data = encoded_arrays.read_for_training(args.data, train.input)
    # Split before TensorFlow's start-up: a validation fraction these rows cannot meet fails at once.
    fit_data, held_out = encoded_arrays.fit_and_validation_data(
        data.train, data.test, train.validation, train.split_seed
    )

    from imdb_regularization.model import network

    # Converted once: validation on the test set and the test predictions share the one copy.
    test = (network.model_input(data.test[0]), data.test[1])
    validation_data = test if train.validation == "test" else held_out
    network.seed_everything(train.seed)
    # Dense or sparse, rows train to the same bits (`network.MultiHotDense`).
    model = network.build_model(
        num_words=data.num_words, hidden_units=train.hidden_units, spec=spec, sparse=data.sparse, wide=data.wide
    )
    log.info(
        "training %s (%s, rate %g) for %d epochs on %s rows (%.1f%% ones at num_words=%d; train.input: %s)",
        name,
        spec.regularizer,
        spec.rate,
        train.epochs,
        "sparse" if data.sparse else "dense",
        100 * data.density,
        data.num_words,
        train.input,
    )
    history = network.train_model(model, train_data=fit_data, validation_data=validation_data, params=train)

    # The files appear together or not at all: evaluate and plots never see a partial model.
    with atomic_directory(args.models_dir / name) as out:
        network.save_model(model, out / files.MODEL)
        files.write_model_files(
            out,
            history={"epoch": list(range(1, train.epochs + 1)), **history},
            weights=network.layer_weights(model),
            test_predictions=network.predict_probabilities(model, test[0]),
        )
    last = {metric: values[-1] for metric, values in history.items()}
    log.info("%s: last val_bce %.4f, val_accuracy %.4f", name, last["val_bce"], last["val_accuracy"])


if __name__ == "__main__":
    cli.run(main)
