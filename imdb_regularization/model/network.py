"""The network of the comparison, how it is trained and saved: the only module that imports TensorFlow.

Every model shares `build_model` and `train_model`; only the regularizer differs. Wide, sparse
multi-hot rows (`encoded_arrays.SparseRows`) train as `tf.SparseTensor` batches through
`MultiHotDense`, whose cost follows the ones a review holds rather than `num_words` and which
multiplies wide dense rows the same way, so they train to the same bits; Adam steps their
num_words-wide first kernel in one fused pass (`FusedAdam`). The saved model is the same plain
network either way.
"""

import json
import zipfile
from pathlib import Path
from typing import TypeAlias

import numpy as np

from imdb_regularization.cli import StageError
from imdb_regularization.model.encoded_arrays import SparseRows
from imdb_regularization.model.keras_import import hidden_module, native_startup_lines_dropped
from imdb_regularization.params import RegularizerSpec, TrainParams

with hidden_module("matplotlib"), native_startup_lines_dropped():
    import keras
    import tensorflow as tf
    from keras import layers

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
# Keras' own name for the first functional model of a process, given explicitly: the model saved
# after a sparse training is a second model, and must be saved under the same name.
MODEL_NAME = "functional"


class TrainingError(StageError):
    """Training produced a model that must not be evaluated."""


def make_regularizer(spec: RegularizerSpec) -> keras.regularizers.Regularizer | None:
    """The Keras kernel regularizer for a model entry of params.yaml (None for `none`)."""
    if spec.regularizer == "none":
        return None
    if spec.regularizer == "l1":
        return keras.regularizers.L1(spec.rate)
    if spec.regularizer == "l2":
        return keras.regularizers.L2(spec.rate)
    if spec.regularizer == "l1_l2":
        return keras.regularizers.L1L2(l1=spec.rate, l2=spec.rate)
    raise ValueError(f"unknown regularizer {spec.regularizer!r}")


# Wide rows' first layer multiplies compressed sparse rows (CSR), whether the rows came dense or
# sparse: dense rows are turned into the same CSR matrix batch by batch, so both add the same terms
# in the same order (row by row, columns ascending) and train to the same bits. A float32 sum
# depends on that order, and Keras' dense product adds in its matrix library's blocked order.
@tf.custom_gradient
def sparse_product(indices: tf.Tensor, values: tf.Tensor, dense_shape: tf.Tensor, kernel: tf.Tensor):
    """rows @ kernel for sparse rows (indices, values, dense_shape); its gradient for the kernel is rowsᵀ @ upstream.

    Both products run on the rows as a CSR matrix, one multiply-add per non-zero and kernel
    column; the transpose for the gradient is a CSR matrix too, so neither touches the zeros.
    The indices must be in row-major order, as `to_sparse_tensor`, `shuffled_sparse_batches`
    and `tf.sparse.from_dense` give them: the conversion to CSR does not sort them.
    """
    rows = tf.raw_ops.SparseTensorToCSRSparseMatrix(indices=indices, values=values, dense_shape=dense_shape)

    def gradient(upstream: tf.Tensor) -> tuple[None, None, None, tf.Tensor]:
        transposed = tf.raw_ops.SparseMatrixTranspose(input=rows, type=kernel.dtype)
        return None, None, None, tf.raw_ops.SparseMatrixMatMul(a=transposed, b=upstream)

    return tf.raw_ops.SparseMatrixMatMul(a=rows, b=kernel), gradient


class MultiHotDense(layers.Dense):
    """`layers.Dense` for multi-hot rows that trains dense and sparse rows to the same bits.

    With `wide` (rows that are mostly zeros), rows dense or sparse go through `sparse_product`:
    Keras' Dense accepts a SparseTensor too, but gathers one copy of a kernel row per non-zero
    before summing them (a batch's non-zeros × units floats, the whole validation set's at once
    when the model is called on it) and scatters its gradient back the same way, in time and in
    memory more than the dense product it replaces. Without it (narrow rows, where dense is both
    faster and Keras' own product), a sparse batch is made dense and goes through Dense's own
    product, as dense rows do. Same weights, same name, same config: only training uses this
    class (see `save_model`).
    """

    def __init__(self, units: int, *, wide: bool, **kwargs):
        super().__init__(units, **kwargs)
        self.wide = wide

    def call(self, inputs, training=None):
        if not self.wide:
            if isinstance(inputs, tf.SparseTensor):
                inputs = tf.sparse.to_dense(inputs)
            return super().call(inputs, training=training)
        if not isinstance(inputs, tf.SparseTensor):
            inputs = tf.sparse.from_dense(inputs)  # its indices in row-major order, as SparseRows' are
        # The kernel read outside the custom gradient, which then returns the gradient for that value.
        outputs = sparse_product(
            inputs.indices,
            tf.cast(inputs.values, self.kernel.dtype),
            inputs.dense_shape,
            tf.convert_to_tensor(self.kernel),
        )
        outputs = tf.ensure_shape(outputs, (None, self.units))
        if self.bias is not None:
            outputs = keras.ops.add(outputs, self.bias)
        return self.activation(outputs) if self.activation is not None else outputs


def build_model(
    *, num_words: int, hidden_units: tuple[int, ...], spec: RegularizerSpec, sparse: bool = False, wide: bool = False
) -> keras.Model:
    """The notebook's network: ReLU hidden layers carrying the regularizer, then one sigmoid unit.

    Args:
        num_words: width of the multi-hot input.
        hidden_units: units of each hidden layer, (128, 128) in the notebook.
        spec: the regularizer of the hidden layers' kernels; the output layer has none.
        sparse: take `tf.SparseTensor` rows (`to_sparse_tensor`); the first layer is a `MultiHotDense`.
        wide: the rows are mostly zeros (`encoded_arrays.TrainingData.wide`): the first layer multiplies
            them, dense or sparse, as sparse rows; without it, sparse rows go through Keras' own
            product, as dense rows do. Either way dense and sparse rows train to the same bits.

    Returns:
        An uncompiled model whose layers are named `hidden_1`, `hidden_2`, ..., `output`.
    """
    inputs = keras.Input(shape=(num_words,), sparse=sparse, name="multi_hot")
    features = inputs
    for number, units in enumerate(hidden_units, start=1):
        options = {"activation": "relu", "kernel_regularizer": make_regularizer(spec), "name": f"hidden_{number}"}
        if number == 1 and (sparse or wide):
            features = MultiHotDense(units, wide=wide, **options)(features)
        else:
            features = layers.Dense(units, **options)(features)
    outputs = layers.Dense(1, activation="sigmoid", name="output")(features)
    return keras.Model(inputs, outputs, name=MODEL_NAME)


def sparse_indices(rows: SparseRows) -> np.ndarray:
    """The (row, column) of each one of `rows`, row by row and columns ascending, as a `tf.SparseTensor` takes them."""
    # Filled in place: TensorFlow copies the indices once more, and every copy is the size of the data.
    indices = np.empty((rows.nonzeros, 2), dtype=np.int64)
    indices[:, 0] = np.repeat(np.arange(rows.shape[0], dtype=np.int64), np.diff(rows.row_starts))
    indices[:, 1] = rows.columns
    return indices


def to_sparse_tensor(rows: SparseRows) -> tf.SparseTensor:
    """`SparseRows` as the `tf.SparseTensor` a sparse model takes: a 1.0 at each (row, column) of a one."""
    return tf.SparseTensor(sparse_indices(rows), tf.ones(rows.nonzeros, dtype=tf.float32), rows.shape)


def shuffled_sparse_batches(rows: SparseRows, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """`(tf.SparseTensor, labels)` batches of `rows`, one epoch's, in the order `fit(x, y, batch_size)` gives rows.

    Keras' own adapter shuffles the row numbers, so sparse rows see the same batches in the same
    order as dense rows do. With the seed `seed_everything` sets, that order is the same in every
    epoch: fit starts a new iterator each epoch, which restarts the seeded shuffle (as in
    tensorflow/tensorflow#29558; a test checks it). So the rows are put in that order once and
    each batch is a contiguous slice of them: cutting batches from a `tf.SparseTensor` of all
    rows, as Keras would, takes a dozen ragged TensorFlow ops a batch, whose CPU time on two
    cores is taken from the training beside them.
    """
    # Keras has no public API for its batching; keras is pinned (pyproject.toml).
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    numbered = ArrayDataAdapter(np.arange(rows.shape[0]), batch_size=batch_size, shuffle=True)
    order = np.concatenate([numbers.numpy() for numbers in numbered.get_tf_dataset()])
    shuffled = rows.take(order)
    indices = sparse_indices(shuffled)
    indices[:, 0] %= batch_size  # each one's row within its batch
    first_rows = np.arange(0, rows.shape[0] + batch_size, batch_size).clip(max=rows.shape[0])
    first_ones = shuffled.row_starts[first_rows]
    indices, first_ones, first_rows = tf.constant(indices), tf.constant(first_ones), tf.constant(first_rows)
    ordered_labels = tf.constant(labels[order])

    def batch(number: tf.Tensor) -> tuple[tf.SparseTensor, tf.Tensor]:
        batch_indices = indices[first_ones[number] : first_ones[number + 1]]
        ones = tf.ones(tf.shape(batch_indices)[:1], dtype=tf.float32)
        shape = tf.stack([first_rows[number + 1] - first_rows[number], rows.num_columns])
        return tf.SparseTensor(batch_indices, ones, shape), ordered_labels[first_rows[number] : first_rows[number + 1]]

    return tf.data.Dataset.range(numbered.num_batches).map(batch).prefetch(tf.data.AUTOTUNE)


ModelInput: TypeAlias = "np.ndarray | SparseRows | tf.SparseTensor"


def model_input(x: ModelInput) -> np.ndarray | tf.SparseTensor:
    """Rows as the model takes them: `SparseRows` as a `tf.SparseTensor`, the others as they are."""
    return to_sparse_tensor(x) if isinstance(x, SparseRows) else x


class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam with each variable's step as TensorFlow's one fused kernel (`ResourceApplyAdam`).

    Keras' own step is about a dozen element-wise ops per variable, each a pass over all its
    weights; on wide rows the first kernel (num_words × units weights) makes those passes most of
    a training. The fused kernel computes the same formula in one pass. It rounds 1 − β in
    float32 where Keras rounds it in Python, so weights differ from Adam's in their last bits.
    A trained model is saved with Keras' Adam and the same state (`plain_model`), so it keeps
    Adam's name; it has no AMSGrad, which params.yaml cannot turn on.
    """

    def __init__(self, learning_rate: float, name: str = "adam"):
        super().__init__(learning_rate=learning_rate, name=name)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=tf.pow(tf.cast(self.beta_1, dtype), step),
            beta2_power=tf.pow(tf.cast(self.beta_2, dtype), step),
            lr=tf.cast(learning_rate, dtype),
            beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype),
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )


def _optimizer(name: str, learning_rate: float, *, wide: bool) -> keras.optimizers.Optimizer:
    """The optimizer `name`; Adam fused (`FusedAdam`) for a model of wide rows, where its passes dominate."""
    adam = FusedAdam if wide else keras.optimizers.Adam
    optimizers = {"adam": adam, "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}
    return optimizers[name](learning_rate=learning_rate)


def has_wide_first_layer(model: keras.Model) -> bool:
    """Whether `model` was built for wide rows (`build_model(wide=True)`)."""
    return any(isinstance(layer, MultiHotDense) and layer.wide for layer in model.layers)


class ValidationMetrics(keras.callbacks.Callback):
    """At each epoch's end, `val_loss`, `val_bce` and `val_accuracy` from one call of the model on all validation rows.

    The same metrics as `fit(validation_data=...)` at a fraction of the cost: fit traces a second
    TensorFlow function for them and runs the rows batch by batch, a sizeable share of a training
    this small, while one call of the model on all rows is quick. The values agree with fit's to
    float32 rounding (fit sums batch by batch; a test checks this). Keras' History and progress bar
    run after user callbacks, so they record these.
    """

    def __init__(self, x: np.ndarray | tf.SparseTensor, y: np.ndarray):
        super().__init__()
        self.x, self.y = x, y

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:  # Keras always passes a dict to fit's callbacks.
            return
        probabilities = self.model(self.x, training=False)
        bce = keras.ops.mean(keras.losses.binary_crossentropy(self.y, probabilities))
        penalty = keras.ops.sum(self.model.losses) if self.model.losses else 0.0
        correct = keras.ops.equal(keras.ops.greater(probabilities, 0.5), keras.ops.greater(self.y, 0.5))
        logs.update(
            val_loss=float(bce + penalty),
            val_bce=float(bce),
            val_accuracy=float(keras.ops.mean(keras.ops.cast(correct, "float32"))),
        )


def train_model(
    model: keras.Model,
    *,
    train_data: tuple[ModelInput, np.ndarray],
    validation_data: tuple[ModelInput, np.ndarray],
    params: TrainParams,
) -> dict[str, list[float]]:
    """Compile and fit `model`; returns its per-epoch history.

    The `bce` metric is the cross-entropy without the regularization penalty, which
    `loss` includes, so models with different penalties compare on `val_bce`. (A metric
    object also avoids the rank error that `metrics=['binary_crossentropy']` raises on
    Keras 3 with 1-D targets.) `SparseRows` go in as `shuffled_sparse_batches`: the same
    seeded shuffle as Keras gives dense rows, so both see the same batches in the same order.
    That holds only after `seed_everything`, as the train stage calls it: without a seed, Keras
    draws a new order every epoch for dense rows, while sparse rows would keep the first.

    Raises:
        TrainingError: the loss stopped being finite (the learning rate is too high).
    """
    model.compile(
        optimizer=_optimizer(params.optimizer, params.learning_rate, wide=has_wide_first_layer(model)),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=["accuracy", keras.metrics.BinaryCrossentropy(name="bce")],
        steps_per_execution=params.steps_per_execution,
    )
    validation_x, validation_y = validation_data
    x, y = train_data
    batches = (
        {"x": shuffled_sparse_batches(x, y, params.batch_size), "shuffle": False}  # shuffled as Keras would
        if isinstance(x, SparseRows)
        else {"x": x, "y": y, "batch_size": params.batch_size}
    )
    fitted = model.fit(
        **batches,
        epochs=params.epochs,
        callbacks=[ValidationMetrics(model_input(validation_x), validation_y), keras.callbacks.TerminateOnNaN()],
        verbose=2,
    )
    history = {name: [float(value) for value in values] for name, values in fitted.history.items()}
    # The validation metrics too: an epoch's loss is averaged before its last step, which may diverge alone.
    finite = [all(np.isfinite(values[epoch]) for values in history.values()) for epoch in range(len(history["loss"]))]
    if len(finite) < params.epochs or not all(finite):
        first_bad = finite.index(False) + 1 if not all(finite) else len(finite)
        raise TrainingError(
            f"the loss became NaN or infinite at epoch {first_bad}; "
            f"try a lower train.learning_rate (now {params.learning_rate}) or a lower regularization rate"
        )
    return history


def _renumber_shared_objects(config: object, numbers: dict[int, int]) -> object:
    """`config` with each `shared_object_id` replaced by its position among the distinct ones (from 1)."""
    if isinstance(config, dict):
        return {
            key: numbers.setdefault(value, len(numbers) + 1)
            if key == "shared_object_id"
            else _renumber_shared_objects(value, numbers)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [_renumber_shared_objects(value, numbers) for value in config]
    return config


def plain_model(model: keras.Model) -> keras.Model:
    """`model` as `build_model(sparse=False)` makes it, with the same weights and optimizer state.

    A model trained on sparse rows is saved as this copy, so every saved model is the same plain
    network, which loads without this module and predicts on dense rows. The model is a chain
    of Dense layers, rebuilt from their configs (`MultiHotDense`'s is Dense's).
    """
    if not any(isinstance(layer, MultiHotDense) for layer in model.layers):
        return model
    input_layer, *dense_layers = model.layers
    inputs = keras.Input(shape=model.input_shape[1:], name=input_layer.name)
    features = inputs
    for layer in dense_layers:
        # The layer's own dtype policy object, not a copy of its config: build_model's layers share one,
        # which model.keras records, so the saved bytes match a model trained on dense rows.
        features = layers.Dense.from_config({**layer.get_config(), "dtype": layer.dtype_policy})(features)
    plain = keras.Model(inputs, features, name=model.name)
    plain.set_weights(model.get_weights())
    if model.compiled:
        config = model.get_compile_config()
        if isinstance(model.optimizer, FusedAdam):  # saved as Keras' Adam, which loads anywhere
            config["optimizer"] = keras.optimizers.serialize(
                keras.optimizers.Adam.from_config(model.optimizer.get_config())
            )
        plain.compile_from_config(config)
        for copy, original in zip(plain.optimizer.variables, model.optimizer.variables, strict=True):
            copy.assign(original)
    return plain


def save_model(model: keras.Model, path: Path) -> None:
    """`plain_model(model).save(path)`, with bytes that depend on the model only.

    Keras stamps the time of saving into a .keras file (`date_saved` in metadata.json and the
    zip entry's time of the weights) and the memory addresses of shared objects into its config
    (`shared_object_id`), so identical trainings would get different hashes in dvc.lock and
    rerun everything downstream. The zip is rewritten without the times, and with the shared
    objects numbered 1, 2, ... in order of appearance (they only have to match each other).
    """
    plain_model(model).save(path)
    with zipfile.ZipFile(path) as saved:
        entries = [(info, saved.read(info)) for info in saved.infolist()]
    with zipfile.ZipFile(path, "w") as rewritten:
        for info, data in entries:
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata).encode()
            elif info.filename == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data), {})).encode()
            entry = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            entry.compress_type = info.compress_type
            rewritten.writestr(entry, data)


def predict_probabilities(model: keras.Model, x: ModelInput) -> np.ndarray:
    """P(positive) for each row of `x` (dense rows, or `SparseRows` for a sparse model), in one call of the model.

    `model.predict` would first build a TensorFlow function and then run batch by batch, which
    costs more than this whole forward pass on arrays of this size.
    """
    return keras.ops.convert_to_numpy(model(model_input(x), training=False))[:, 0]


def layer_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """Every weight of every layer as a NumPy array, named `<layer>_<weight>` (`hidden_1_kernel`, ...)."""
    return {f"{layer.name}_{weight.name}": weight.numpy() for layer in model.layers for weight in layer.weights}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's ops deterministic.

    With both, the same params on the same machine give the same bytes.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
