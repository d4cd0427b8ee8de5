"""Where a train stage's time goes on sparse rows, against a floor derived from its non-zeros and its kernel.

The floor: start-up (Python and TensorFlow's import) plus the multiply-adds the non-zeros need,
at the rate this machine's dense matrix product reaches: per epoch, the first layer's product and
its kernel gradient over the training rows (2 × ones × units) and the validation pass over the
test rows (ones × units); plus the memory traffic of Adam's step on the first kernel, which no
sparse product avoids: Adam moves every weight at every step (its moments decay even where the
gradient is zero), reading the weights, their gradient and both moments and writing back the
weights and moments, seven passes over num_words × units float32 values, at the rate this
machine streams memory through TensorFlow's element-wise kernels.

The stage's fit, taken apart: whole trainings (`network.train_model`, the stage's params) in this
process, after one untimed training (a process's first pays one-off costs), each variant the best
of FIT_ROUNDS, the variants taking turns so that a slow spell of the machine does not fall on one
of them (every timing is kept, so their spread shows the noise):
- batching: the stage's (`network.shuffled_sparse_batches`), or one pre-built batch repeated for as many
  steps (no batching left; in tf.data's threads batching runs beside the steps, competing with
  them for the cores, so what it costs depends on how long the steps take);
- the optimizer: Adam fused into one pass per variable (the stage, see `network.FusedAdam`) or
  Keras' own Adam, about a dozen passes;
- the first layer's three costs that a 100-word training hardly has, taken out in turn and then all at once,
  each inside a whole training, where it shares the cores and the caches with the rest:
  its products (training and validation) replaced by `free_product`, which multiplies nothing;
  the L1/L2 penalty left out (of both hidden layers); Adam's step (seven passes over num_words ×
  units floats: weights, gradient and moments) replaced, for every variable, by the least a step
  can move, plain gradient descent fused into one kernel (three passes: weights and gradient read,
  weights written; `FusedDescent`).
Parts timed alone, each in its own loop (the same work inside a training, where it shares the
cores and the caches with the rest, can take longer or, taken out of it, save less):
- start-up: `import tensorflow`;
- products: the first layer's sparse products (`network.MultiHotDense`'s forward and kernel
  gradient, both returned, so that TensorFlow prunes neither) over every batch of an epoch, one
  call per batch as in training, and its forward over the validation rows, × epochs;
- kernel update: the optimizer's step and the regularization penalty's gradient on every weight,
  × steps: work that follows num_words × units, not the ones, because Adam and the L1/L2 penalty
  touch every weight of the first layer at every step;
- batching: building a training's batches (`network.shuffled_sparse_batches`) and going through them
  every epoch.

Run from a project copy whose `data/encoded/` exists (params from its params.yaml):
    python -m tools.bench.floor --data data/encoded --model l1 --out floor.json
"""

import argparse
import contextlib
import json
import time
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

STARTED = time.perf_counter()
REPEATS = 3
FIT_ROUNDS = 2  # one training here can take seconds longer than the next
ADAM_PASSES = 7  # reads of the weights, gradient and two moments; writes of the weights and moments
FLOAT_BYTES = 4


def _best_seconds(function, repeats: int = REPEATS) -> float:
    """The best of `repeats` timings, after one untimed call (which traces it)."""
    function()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return min(timings)


def free_product(indices, values, dense_shape, kernel):
    """A stand-in for `network.sparse_product` that multiplies nothing: zeros of its output's and gradient's shapes.

    The gradient's zeros are written at every step, as the product's gradient, a num_words × units
    array, is: `Empty` is stateful, so TensorFlow cannot fold them into a constant made once.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def product(kernel):
        def gradient(upstream):
            return tf.raw_ops.Empty(shape=tf.shape(kernel), dtype=kernel.dtype, init=True)

        shape = tf.stack([dense_shape[0], tf.shape(kernel, out_type=dense_shape.dtype)[1]])
        return tf.zeros(shape, dtype=kernel.dtype), gradient

    return product(kernel)


def measure_floor(data_dir: Path, model_name: str) -> dict[str, Any]:
    """Each part of a train stage's time on the encoded rows in `data_dir`, and the floor (see the module)."""
    from imdb_regularization.model.encoded_arrays import SparseRows, read_for_training
    from imdb_regularization.params import RegularizerSpec, load_params

    params = load_params()
    # As the train stage reads them: the rows as `SparseRows`, the labels as Keras' losses want them.
    data = read_for_training(data_dir, "sparse")
    (train_rows, train_labels), (test_rows, test_labels) = data.train, data.test
    assert isinstance(train_rows, SparseRows) and isinstance(test_rows, SparseRows)  # what "sparse" reads
    num_words = train_rows.shape[1]
    python_seconds = time.perf_counter() - STARTED
    started = time.perf_counter()
    import keras
    import tensorflow as tf

    from imdb_regularization.model import network

    import_seconds = time.perf_counter() - started
    train = params.train

    def seeded_model(spec: RegularizerSpec):
        """The stage's model on sparse rows (with `spec`'s regularizer), seeded as the stage seeds it."""
        network.seed_everything(train.seed)
        return network.build_model(
            num_words=num_words, hidden_units=train.hidden_units, spec=spec, sparse=True, wide=True
        )

    spec = params.models[model_name]
    model = seeded_model(spec)
    model.compile(
        optimizer=network._optimizer(train.optimizer, train.learning_rate, wide=True), loss="binary_crossentropy"
    )
    model.optimizer.build(model.trainable_variables)
    units = train.hidden_units[0]
    x_train, x_test = network.to_sparse_tensor(train_rows), network.to_sparse_tensor(test_rows)
    rows = train_rows.shape[0]
    batches = [
        tf.sparse.slice(x_train, [first, 0], [min(train.batch_size, rows - first), num_words])
        for first in range(0, rows, train.batch_size)
    ]
    kernel = model.get_layer("hidden_1").kernel
    upstream = tf.ones((train.batch_size, units))

    # One call per batch, the batch an argument, as Keras' steps run: batches given as constants of
    # one graph would let TensorFlow share the kernel's conversion between them and fold their
    # conversion to CSR, which a training cannot. Both results are returned: TensorFlow prunes the
    # stateless ops whose results a function drops, which would leave nothing to time.
    @tf.function(autograph=False, reduce_retracing=True)
    def product_step(batch: tf.SparseTensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(kernel.value)
            result = network.sparse_product(batch.indices, batch.values, batch.dense_shape, kernel.value)
        return result, tape.gradient(result, kernel.value, output_gradients=upstream[: tf.shape(result)[0]])

    @tf.function(autograph=False)
    def validation_product(rows: tf.SparseTensor) -> tf.Tensor:
        return network.sparse_product(rows.indices, rows.values, rows.dense_shape, kernel.value)

    def epoch_of_products() -> None:
        for batch in batches:
            product_step(batch)

    @tf.function(autograph=False)
    def kernel_update() -> None:
        with tf.GradientTape() as tape:
            penalty = tf.add_n(model.losses) if model.losses else tf.constant(0.0)
        variables = [variable.value for variable in model.trainable_variables]
        gradients = tape.gradient(penalty, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        model.optimizer.apply(gradients, model.trainable_variables)

    def batching() -> None:
        """A training's batching: the rows put in Keras' shuffled order once, then sliced into batches every epoch."""
        batched = network.shuffled_sparse_batches(train_rows, train_labels, train.batch_size)
        for _ in range(train.epochs):
            batched.reduce(0, lambda count, _: count + 1)

    class FusedDescent(keras.optimizers.SGD):
        """Plain gradient descent as one fused TensorFlow kernel per variable: the least a step can move."""

        def update_step(self, gradient, variable, learning_rate):
            dtype = variable.dtype
            tf.raw_ops.ResourceApplyGradientDescent(
                var=variable.handle, alpha=tf.cast(learning_rate, dtype), delta=tf.cast(gradient, dtype)
            )

    def fit_once(train_data: tuple, spec: RegularizerSpec) -> float:
        """One training as the stage runs it (validating on the test rows, the default), on `train_data`."""
        fitted = seeded_model(spec)
        started = time.perf_counter()
        network.train_model(fitted, train_data=train_data, validation_data=(x_test, test_labels), params=train)
        return time.perf_counter() - started

    stage_rows, no_penalty = (train_rows, train_labels), RegularizerSpec("none", 0.0)
    # The first batch at every step, as many steps as an epoch has: a training without batching.
    one_batch = (
        tf.data.Dataset.from_tensors((batches[0], train_labels[: train.batch_size])).repeat(len(batches)),
        None,
    )
    keras_adam = mock.patch.object(network, "FusedAdam", keras.optimizers.Adam)
    free_products = mock.patch.object(network, "sparse_product", free_product)
    descent = mock.patch.object(network, "FusedAdam", FusedDescent)
    trainings = {  # name: (what is patched, rows, regularizer)
        "fit": ((), stage_rows, spec),
        "fit_one_batch": ((), one_batch, spec),
        "fit_keras_adam": ((keras_adam,), stage_rows, spec),
        "fit_one_batch_keras_adam": ((keras_adam,), one_batch, spec),
        "fit_free_products": ((free_products,), stage_rows, spec),
        "fit_without_penalty": ((), stage_rows, no_penalty),
        "fit_descent": ((descent,), stage_rows, spec),
        "fit_without_first_layer_costs": ((free_products, descent), stage_rows, no_penalty),
    }
    timings: dict[str, list[float]] = {name: [] for name in trainings}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")  # fit cannot shuffle a dataset: none wanted
        fit_once(stage_rows, spec)
        for _ in range(FIT_ROUNDS):
            for name, (patches, train_data, regularizer) in trainings.items():
                with contextlib.ExitStack() as stack:
                    for patch in patches:
                        stack.enter_context(patch)
                    timings[name].append(fit_once(train_data, regularizer))
    fits = {f"{name}_seconds": round(min(seconds), 3) for name, seconds in timings.items()}
    fit_runs = {name: [round(seconds, 3) for seconds in runs] for name, runs in timings.items()}

    epoch_products = _best_seconds(epoch_of_products) + _best_seconds(lambda: validation_product(x_test))
    step_update = _best_seconds(kernel_update)
    training_batching = _best_seconds(batching)
    dense_rows = tf.random.uniform((train.batch_size, num_words))
    dense_seconds = _best_seconds(tf.function(lambda: tf.matmul(dense_rows, kernel.value), autograph=False))
    dense_rate = train.batch_size * num_words * units / dense_seconds
    # The rate memory streams through an in-place update as Adam's: `weights -= step` over two
    # kernels' worth of each, so that the arrays are as large as Adam's four (weights, gradient,
    # moments) and written where they were read, as Adam writes them.
    weights = tf.Variable(tf.zeros((2, num_words, units)))
    step = tf.random.uniform((2, num_words, units))

    @tf.function(autograph=False)
    def update() -> None:
        tf.raw_ops.ResourceApplyGradientDescent(var=weights.handle, alpha=1.0, delta=step)

    memory_rate = 3 * FLOAT_BYTES * int(tf.size(step)) / _best_seconds(update)  # weights read and written, step read
    ones_train, ones_test = train_rows.nonzeros, test_rows.nonzeros
    floor_multiply_adds = train.epochs * (2 * ones_train + ones_test) * units
    steps = train.epochs * len(batches)
    kernel_update_bytes = steps * ADAM_PASSES * FLOAT_BYTES * num_words * units
    kernel_update_floor = kernel_update_bytes / memory_rate
    return {
        "num_words": num_words,
        "ones_per_row": round(ones_train / rows, 1),
        "start_up_seconds": round(python_seconds + import_seconds, 3),
        **fits,
        "fit_rounds": FIT_ROUNDS,
        "fit_runs_seconds": fit_runs,
        "products_seconds": round(train.epochs * epoch_products, 6),
        "kernel_update_seconds": round(steps * step_update, 6),
        "batching_seconds": round(training_batching, 6),
        "products_rate_gmacs": round(floor_multiply_adds / (train.epochs * epoch_products) / 1e9, 2),
        "dense_rate_gmacs": round(dense_rate / 1e9, 2),
        "memory_rate_gbs": round(memory_rate / 1e9, 2),
        "floor_multiply_adds": floor_multiply_adds,
        "kernel_update_passes": ADAM_PASSES,
        "floor_kernel_update_bytes": kernel_update_bytes,
        "floor_kernel_update_seconds": round(kernel_update_floor, 6),
        "floor_seconds": round(
            python_seconds + import_seconds + floor_multiply_adds / dense_rate + kernel_update_floor, 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Where a sparse train stage's time goes, against its floor.")
    parser.add_argument("--data", type=Path, required=True, help="directory of the encoded arrays")
    parser.add_argument("--model", required=True, help="a key of the models section of params.yaml")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    args = parser.parse_args()
    args.out.write_text(json.dumps(measure_floor(args.data, args.model), indent=2) + "\n")


if __name__ == "__main__":
    main()
