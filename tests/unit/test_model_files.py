"""`imdb_regularization.model.files`: what train writes beside the model, read back without TensorFlow."""

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
    history = {"epoch": [1, 2], "val_bce": [0.7, 0.6]}
    predictions = np.array([0.25, 0.75], dtype=np.float32)
    files.write_model_files(tmp_path, history=history, weights=weights, test_predictions=predictions)

    assert files.read_history(tmp_path) == history
    np.testing.assert_array_equal(files.read_test_predictions(tmp_path), predictions)
    kernels = files.read_hidden_kernels(tmp_path)
    assert list(kernels) == ["hidden_1", "hidden_2"]
    np.testing.assert_array_equal(kernels["hidden_2"], weights["hidden_2_kernel"])
    np.testing.assert_array_equal(
        files.read_hidden_weights(tmp_path),
        np.concatenate([weights["hidden_1_kernel"].ravel(), weights["hidden_2_kernel"].ravel()]),
    )
