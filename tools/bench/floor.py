"""Where a train stage's time goes on sparse rows, against a floor derived from the non-zeros.

The floor: start-up (Python and TensorFlow's import) plus the multiply-adds the non-zeros need,
at the rate this machine's dense matrix product reaches: per epoch, the first layer's product and
its kernel gradient over the training rows (2 × ones × units) and the validation pass over the
test rows (ones × units). The parts measured here, each on its own in this process:
- start-up: `import tensorflow`;
- products: the first layer's sparse products (`network.MultiHotDense`'s forward and kernel
  gradient) over every batch of an epoch, and its forward over the validation rows, × epochs;
- kernel update: the optimizer's step and the regularization penalty's gradient on every weight,
  × steps: work that follows num_words × units, not the ones, because Adam and the L1/L2 penalty
  touch every weight of the first layer at every step.
The benchmark subtracts them from the stage's measured time: the rest is Keras' and tf.data's own
work, the other layers, metrics and saving.

Run from a project copy whose `data/encoded/` exists (params from its params.yaml):
    python -m tools.bench.floor --data data/encoded --model l1 --out floor.json
"""

import argparse
import json
import time
from pathlib import Path

STARTED = time.perf_counter()
REPEATS = 3


def _best_seconds(function, repeats: int = REPEATS) -> float:
    """The best of `repeats` timings, after one untimed call (which traces it)."""
    function()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return min(timings)


def measure_floor(data_dir: Path, model_name: str) -> dict[str, float]:
    """Each part of a train stage's time on the encoded rows in `data_dir`, and the floor (see the module)."""
    from imdb_regularization.model.encoded_arrays import read_sparse_rows
    from imdb_regularization.params import load_params

    params = load_params()
    train_rows, test_rows = (read_sparse_rows(data_dir / f"{name}.npy") for name in ("x_train", "x_test"))
    num_words = train_rows.shape[1]
    python_seconds = time.perf_counter() - STARTED
    started = time.perf_counter()
    import tensorflow as tf

    from imdb_regularization.model import network

    import_seconds = time.perf_counter() - started
    train = params.train
    network.seed_everything(train.seed)
    model = network.build_model(
        num_words=num_words, hidden_units=train.hidden_units, spec=params.models[model_name], sparse=True, exact=True
    )
    model.compile(optimizer=network._optimizer(train.optimizer, train.learning_rate), loss="binary_crossentropy")
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

    # Python loops and closures only, unrolled when traced: no AutoGraph needed.
    @tf.function(autograph=False)
    def first_layer_products() -> None:
        for batch in batches:
            with tf.GradientTape() as tape:
                tape.watch(kernel.value)
                product = network._exact_sparse_product(batch.indices, batch.values, batch.dense_shape, kernel.value)
            tape.gradient(product, kernel.value, output_gradients=upstream[: tf.shape(product)[0]])

    @tf.function(autograph=False)
    def validation_product() -> tf.Tensor:
        return network._exact_sparse_product(x_test.indices, x_test.values, x_test.dense_shape, kernel.value)

    @tf.function(autograph=False)
    def kernel_update() -> None:
        with tf.GradientTape() as tape:
            penalty = tf.add_n(model.losses) if model.losses else tf.constant(0.0)
        variables = [variable.value for variable in model.trainable_variables]
        gradients = tape.gradient(penalty, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        model.optimizer.apply(gradients, model.trainable_variables)

    epoch_products = _best_seconds(first_layer_products) + _best_seconds(validation_product)
    step_update = _best_seconds(kernel_update)
    dense_rows = tf.random.uniform((train.batch_size, num_words))
    dense_seconds = _best_seconds(tf.function(lambda: tf.matmul(dense_rows, kernel.value), autograph=False))
    dense_rate = train.batch_size * num_words * units / dense_seconds
    ones_train, ones_test = train_rows.nonzeros, test_rows.nonzeros
    floor_multiply_adds = train.epochs * (2 * ones_train + ones_test) * units
    steps = train.epochs * len(batches)
    return {
        "num_words": num_words,
        "ones_per_row": round(ones_train / rows, 1),
        "start_up_seconds": round(python_seconds + import_seconds, 3),
        "products_seconds": round(train.epochs * epoch_products, 6),
        "kernel_update_seconds": round(steps * step_update, 6),
        "products_rate_gmacs": round(floor_multiply_adds / (train.epochs * epoch_products) / 1e9, 2),
        "dense_rate_gmacs": round(dense_rate / 1e9, 2),
        "floor_multiply_adds": floor_multiply_adds,
        "floor_seconds": round(python_seconds + import_seconds + floor_multiply_adds / dense_rate, 3),
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
