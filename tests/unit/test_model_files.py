"""`imdb_regularization.model.files`: what train writes beside the model, read back without TensorFlow."""

import json

import numpy as np

from imdb_regularization.model import files


def test_model_files_round_trip_and_hidden_kernels_exclude_biases_and_the_output(tmp_path):
    rng = np.random.default_rng(0)
    weights = {
        "hidden_1_kernel": rng.normal(size=(5, 3)).astype(np.float32),
        "hidden_1_bias": np.zeros(3, np.float32),
        "hidden_2_kernel": rng.normal(size=(3, 2)).astype(np.float32),
        "hidden_2_bias": np.zeros(2, np.float32),
        "output_kernel": rng.normal(size=(2, 1)).astype(np.float32),
        "output_bias": np.zeros(1, np.float32),
    }
    history = {key: [0.7, 0.6] for key in files.HISTORY_KEYS} | {"epoch": [1, 2]}
    predictions = np.array([0.25, 0.75], dtype=np.float32)
    files.write_model_files(tmp_path, history=history, weights=weights, test_predictions=predictions)

    assert files.read_history(tmp_path) == history
    np.testing.assert_array_equal(files.read_test_predictions(tmp_path, rows=2), predictions)
    kernels = files.read_hidden_kernels(tmp_path, num_words=5, hidden_units=(3, 2))
    assert list(kernels) == ["hidden_1", "hidden_2"]
    np.testing.assert_array_equal(kernels["hidden_2"], weights["hidden_2_kernel"])
    np.testing.assert_array_equal(
        files.read_hidden_weights(tmp_path, num_words=5, hidden_units=(3, 2)),
        np.concatenate([weights["hidden_1_kernel"].ravel(), weights["hidden_2_kernel"].ravel()]),
    )


def test_the_history_keeps_only_the_keys_it_checks(tmp_path):
    history = {key: [0.5] for key in files.HISTORY_KEYS} | {"epoch": [1], "learning_rate": ["not checked"]}
    (tmp_path / files.HISTORY).write_text(json.dumps(history))
    assert list(files.read_history(tmp_path)) == list(files.HISTORY_KEYS)


def test_kernels_stored_in_fortran_order_or_compressed_load_as_written(tmp_path):
    kernel = np.asfortranarray(np.arange(15, dtype=np.float64).reshape(5, 3))
    np.savez_compressed(tmp_path / files.WEIGHTS, hidden_1_kernel=kernel, output_kernel=np.ones((3, 1)))
    np.testing.assert_array_equal(
        files.read_hidden_kernels(tmp_path, num_words=5, hidden_units=(3,))["hidden_1"], kernel
    )


def test_labels_of_any_integer_type_load_unchanged(tmp_path):
    for labels in (np.array([1, 0, 1], np.uint8), np.array([0, 1], np.int64)):
        np.save(tmp_path / "y_test.npy", labels)
        loaded = files.read_test_labels(tmp_path / "y_test.npy")
        assert loaded.dtype == labels.dtype
        np.testing.assert_array_equal(loaded, labels)
