"""`imdb_regularization.model.files`: what train writes beside the model, read back without TensorFlow."""

import json
import re

import numpy as np
import pytest

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
    layers = files.read_network_layers(tmp_path, num_words=5, hidden_units=(3, 2))
    assert list(files.hidden_kernels_of(layers)) == list(kernels)
    np.testing.assert_array_equal(
        files.flat_hidden_weights(layers),
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


def _network_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    shapes = {"hidden_1": (6, 3), "hidden_2": (3, 2), "output": (2, 1)}
    weights = {}
    for layer, shape in shapes.items():
        weights[f"{layer}_kernel"] = rng.normal(size=shape).astype(np.float32)
        weights[f"{layer}_bias"] = rng.normal(size=shape[1]).astype(np.float32)
    return weights


def test_network_layers_are_every_kernel_and_bias_in_order_with_the_output_last(tmp_path):
    weights = _network_weights()
    np.savez(tmp_path / files.WEIGHTS, **weights)  # type: ignore[arg-type]
    layers = files.read_network_layers(tmp_path, num_words=6, hidden_units=(3, 2))
    for (kernel, bias), layer in zip(layers, ("hidden_1", "hidden_2", "output"), strict=True):
        np.testing.assert_array_equal(kernel, weights[f"{layer}_kernel"])
        np.testing.assert_array_equal(bias, weights[f"{layer}_bias"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda weights: weights.pop("output_bias"), "lacks output_bias.npy, which train writes for every layer"),
        (lambda weights: weights.update(hidden_2_bias=np.zeros(5, np.float32)), "hidden_2_bias has shape (5,)"),
        (lambda weights: weights.update(output_kernel=np.zeros((2, 2), np.float32)), "output_kernel has shape (2, 2)"),
        (lambda weights: weights["hidden_1_bias"].__setitem__(1, np.nan), "hidden_1_bias[1] is nan"),
    ],
    ids=["missing", "bias of another width", "two outputs", "nan"],
)
def test_a_missing_or_misshapen_bias_or_output_weight_is_named(tmp_path, edit, message):
    weights = _network_weights()
    edit(weights)
    np.savez(tmp_path / files.WEIGHTS, **weights)  # type: ignore[arg-type]
    with pytest.raises(files.ModelFilesError, match=re.escape(message)):
        files.read_network_layers(tmp_path, num_words=6, hidden_units=(3, 2))


def test_the_vocabulary_is_read_by_index(tmp_path):
    path = tmp_path / "vocabulary.tsv"
    path.write_text(f"{files.VOCABULARY_HEADER}\n4\tthe\t10\n5\tgreat\t3\n")
    assert files.read_vocabulary(path, num_words=8) == {4: "the", 5: "great"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4\tthe\t10\n", "starts with '4\\tthe\\t10'; expected 'index\\tword\\tcount'"),
        ("index\tword\tcount\n3\tthe\t10\n", "line 2 is '3\\tthe\\t10'; expected index<TAB>word<TAB>count"),
        ("index\tword\tcount\n8\tthe\t10\n", "a new index in [4, 7] (data.num_words 8)"),
        ("index\tword\tcount\n4\tthe\t10\n4\ta\t1\n", "line 3 is '4\\ta\\t1'"),
        ("index\tword\tcount\n4\tthe\n", "line 2 is '4\\tthe'"),
        ("index\tword\tcount\n4\t\t1\n", "line 2 is '4\\t\\t1'"),
    ],
    ids=["no header", "reserved index", "beyond num_words", "index twice", "two fields", "empty word"],
)
def test_a_malformed_vocabulary_line_is_named(tmp_path, text, message):
    path = tmp_path / "vocabulary.tsv"
    path.write_text(text)
    with pytest.raises(files.ModelFilesError, match=re.escape(message)):
        files.read_vocabulary(path, num_words=8)


def test_a_missing_vocabulary_says_to_run_encode(tmp_path):
    with pytest.raises(files.ModelFilesError, match="vocabulary.tsv is missing: run the encode stage"):
        files.read_vocabulary(tmp_path / "vocabulary.tsv", num_words=8)
