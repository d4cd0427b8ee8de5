"""The network of the comparison, how it is trained and saved: the only module that imports TensorFlow.

Every model shares `build_model` and `train_model`; only the regularizer differs.
"""

import json
import zipfile
from pathlib import Path

import numpy as np

from imdb_regularization.cli import StageError
from imdb_regularization.model.keras_import import hidden_module, native_startup_lines_dropped
from imdb_regularization.params import RegularizerSpec, TrainParams

with hidden_module("matplotlib"), native_startup_lines_dropped():
    import keras
    import tensorflow as tf
    from keras import layers

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


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


def build_model(*, num_words: int, hidden_units: tuple[int, ...], spec: RegularizerSpec) -> keras.Model:
    """The notebook's network: ReLU hidden layers carrying the regularizer, then one sigmoid unit.

    Args:
        num_words: width of the multi-hot input.
        hidden_units: units of each hidden layer, (128, 128) in the notebook.
        spec: the regularizer of the hidden layers' kernels; the output layer has none.

    Returns:
        An uncompiled model whose layers are named `hidden_1`, `hidden_2`, ..., `output`.
    """
    inputs = keras.Input(shape=(num_words,), name="multi_hot")
    features = inputs
    for number, units in enumerate(hidden_units, start=1):
        features = layers.Dense(
            units, activation="relu", kernel_regularizer=make_regularizer(spec), name=f"hidden_{number}"
        )(features)
    outputs = layers.Dense(1, activation="sigmoid", name="output")(features)
    return keras.Model(inputs, outputs)


def _optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    optimizers = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}
    return optimizers[name](learning_rate=learning_rate)


class ValidationMetrics(keras.callbacks.Callback):
    """At each epoch's end, `val_loss`, `val_bce` and `val_accuracy` from one call of the model on all validation rows.

    The same metrics as `fit(validation_data=...)` at a fraction of the cost: fit traces a second
    TensorFlow function for them and runs the rows batch by batch, a sizeable share of a training
    this small, while one call of the model on all rows is quick. The values agree with fit's to
    float32 rounding (fit sums batch by batch; a test checks this). Keras' History and progress bar
    run after user callbacks, so they record these.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray):
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
    train_data: tuple[np.ndarray, np.ndarray],
    validation_data: tuple[np.ndarray, np.ndarray],
    params: TrainParams,
) -> dict[str, list[float]]:
    """Compile and fit `model`; returns its per-epoch history.

    The `bce` metric is the cross-entropy without the regularization penalty, which
    `loss` includes, so models with different penalties compare on `val_bce`. (A metric
    object also avoids the rank error that `metrics=['binary_crossentropy']` raises on
    Keras 3 with 1-D targets.)

    Raises:
        TrainingError: the loss stopped being finite (the learning rate is too high).
    """
    model.compile(
        optimizer=_optimizer(params.optimizer, params.learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=["accuracy", keras.metrics.BinaryCrossentropy(name="bce")],
        steps_per_execution=params.steps_per_execution,
    )
    fitted = model.fit(
        *train_data,
        epochs=params.epochs,
        batch_size=params.batch_size,
        callbacks=[ValidationMetrics(*validation_data), keras.callbacks.TerminateOnNaN()],
        verbose=2,
    )
    history = {name: [float(value) for value in values] for name, values in fitted.history.items()}
    if len(history["loss"]) < params.epochs or not np.isfinite(history["loss"]).all():
        raise TrainingError(
            f"the loss became NaN or infinite at epoch {len(history['loss'])}; "
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


def save_model(model: keras.Model, path: Path) -> None:
    """`model.save(path)`, with bytes that depend on the model only.

    Keras stamps the time of saving into a .keras file (`date_saved` in metadata.json and the
    zip entry's time of the weights) and the memory addresses of shared objects into its config
    (`shared_object_id`), so identical trainings would get different hashes in dvc.lock and
    rerun everything downstream. The zip is rewritten without the times, and with the shared
    objects numbered 1, 2, ... in order of appearance (they only have to match each other).
    """
    model.save(path)
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


def predict_probabilities(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """P(positive) for each row of `x`, in one call of the model.

    `model.predict` would first build a TensorFlow function and then run batch by batch, which
    costs more than this whole forward pass on arrays of this size.
    """
    return keras.ops.convert_to_numpy(model(x, training=False))[:, 0]


def layer_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """Every weight of every layer as a NumPy array, named `<layer>_<weight>` (`hidden_1_kernel`, ...)."""
    return {f"{layer.name}_{weight.name}": weight.numpy() for layer in model.layers for weight in layer.weights}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's ops deterministic.

    With both, the same params on the same machine give the same bytes.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
