"""Training throughput: the train stage's `train_model` against a bare `model.fit`, and the options tried.

Every variant trains the same network (`imdb_regularization.model.network.build_model`, same seed) on the same
arrays in this one process, so TensorFlow's start-up is paid once and left out; each is
timed from `compile` to the end of `fit` (the best of two), and its validation losses are
compared with the bare fit's, which is the reference for "equivalent results".

Run from a project copy whose `data/encoded/` exists (params from its params.yaml):
    python -m tools.bench.training --data data/encoded --model l2 --out training.json
"""

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from imdb_regularization.model.encoded_arrays import read_for_training
from imdb_regularization.params import load_params

Arrays = tuple[np.ndarray, np.ndarray]
REPEATS = 2


def bare_fit(
    model,
    train_data: Arrays,
    validation_data: Arrays,
    params,
    *,
    steps_per_execution: int = 1,
    jit_compile: bool = False,
    dataset: bool = False,
) -> dict[str, list[float]]:
    """`compile` and `fit` as anyone would write them; the keyword arguments are the options under test.

    With `dataset`, the arrays go in as a `tf.data` pipeline (shuffled each epoch, batched, prefetched)
    instead of as NumPy arrays.
    """
    import keras
    import tensorflow as tf

    if jit_compile:
        # Keras silently drops jit_compile while op determinism is on (XLA does not support it), so
        # this variant runs without it; the next variant's seed_everything turns it back on.
        from tensorflow.python.framework.config import disable_op_determinism

        disable_op_determinism()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=params.learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=["accuracy", keras.metrics.BinaryCrossentropy(name="bce")],
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    if not dataset:
        fitted = model.fit(
            *train_data, epochs=params.epochs, batch_size=params.batch_size, validation_data=validation_data, verbose=0
        )
        return fitted.history
    train = (
        tf.data.Dataset.from_tensor_slices(train_data)
        .shuffle(len(train_data[1]), seed=params.seed)
        .batch(params.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    validation = tf.data.Dataset.from_tensor_slices(validation_data).batch(params.batch_size).prefetch(tf.data.AUTOTUNE)
    return model.fit(train, epochs=params.epochs, validation_data=validation, verbose=0).history


def variants(params) -> dict[str, Callable]:
    """Each option to time, as a function of (model, train_data, validation_data)."""
    from imdb_regularization.model.network import train_model

    def pipeline(steps: int) -> Callable:
        chosen = dataclasses.replace(params, steps_per_execution=steps)
        return lambda model, train, validation: train_model(
            model, train_data=train, validation_data=validation, params=chosen
        )

    def bare(**options) -> Callable:
        return lambda model, train, validation: bare_fit(model, train, validation, params, **options)

    spe = params.steps_per_execution
    return {
        "bare model.fit": bare(),
        f"train stage (steps_per_execution={spe})": pipeline(spe),
        "train stage (steps_per_execution=1)": pipeline(1),
        f"bare, steps_per_execution={spe} (fit's own validation pass)": bare(steps_per_execution=spe),
        f"bare, steps_per_execution={spe}, jit_compile (no op determinism)": bare(
            steps_per_execution=spe, jit_compile=True
        ),
        f"bare, steps_per_execution={spe}, tf.data": bare(steps_per_execution=spe, dataset=True),
    }


def time_variants(data_dir: Path, model_name: str, repeats: int = REPEATS) -> list[dict]:
    """Train `model_name` with each variant; its best time of `repeats`, and how its val_loss differs from the first's.

    One untimed fit first: the first fit in a process pays one-off costs that would count against
    whichever variant came first.
    """
    from imdb_regularization.model.network import build_model, seed_everything

    params = load_params()
    # Dense rows, as the bare fit takes them (the data are the default 100-word ones).
    data = read_for_training(data_dir, "dense")
    train_data, validation_data = data.train, data.test

    def timed(fit: Callable) -> tuple[float, np.ndarray]:
        seed_everything(params.train.seed)
        model = build_model(
            num_words=train_data[0].shape[1], hidden_units=params.train.hidden_units, spec=params.models[model_name]
        )
        started = time.perf_counter()
        history = fit(model, train_data, validation_data)
        return time.perf_counter() - started, np.array(history["val_loss"])

    all_variants = variants(params.train)
    timed(next(iter(all_variants.values())))
    results: list[dict[str, Any]] = []
    for name, fit in all_variants.items():
        runs = [timed(fit) for _ in range(repeats)]
        seconds, val_loss = min(runs, key=lambda run: run[0])
        reference = results[0]["val_loss"] if results else val_loss
        results.append(
            {
                "variant": name,
                "seconds": round(seconds, 3),
                "samples_per_second": round(params.train.epochs * len(train_data[1]) / seconds),
                "max_val_loss_difference": float(np.abs(val_loss - np.array(reference)).max()),
                "val_loss": val_loss.tolist(),
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the train stage's fit against a bare model.fit.")
    parser.add_argument("--data", type=Path, required=True, help="directory of the encoded arrays")
    parser.add_argument("--model", required=True, help="a key of the models section of params.yaml")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    args = parser.parse_args()
    args.out.write_text(json.dumps(time_variants(args.data, args.model), indent=2) + "\n")


if __name__ == "__main__":
    main()
