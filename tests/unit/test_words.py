"""What L1 keeps: the word analysis on made-up weights, and on networks trained on planted sentiment words."""

import re

import numpy as np
import pytest

from imdb_regularization.evaluation.words import analyse_words, one_word_effects, top_words, word_rows
from imdb_regularization.params import FIRST_WORD_INDEX, RegularizerSpec, load_params
from tests.support.data import FILLER_WORDS, NEGATIVE_WORDS, POSITIVE_WORDS, make_reviews
from tests.support.project import PROJECT_ROOT


def test_the_effect_is_the_one_word_review_minus_the_empty_review_through_relu_and_sigmoid():
    # Two units; row 1 (start) and row 4 (the only word) of a 5-wide input.
    first = np.zeros((5, 2))
    first[1] = [1.0, -1.0]
    first[4] = [2.0, 3.0]
    hidden_bias, output_kernel, output_bias = np.array([0.0, 0.5]), np.array([[1.0], [-2.0]]), np.array([0.25])
    effects = one_word_effects([(first, hidden_bias), (output_kernel, output_bias)])

    def sigmoid(value: float) -> float:
        return 1 / (1 + np.exp(-value))

    empty = np.maximum(first[1] + hidden_bias, 0) @ output_kernel[:, 0] + output_bias[0]
    one_word = np.maximum(first[1] + first[4] + hidden_bias, 0) @ output_kernel[:, 0] + output_bias[0]
    assert effects == pytest.approx([sigmoid(one_word) - sigmoid(empty)])
    assert effects[0] < 0


def test_kept_is_the_row_norm_against_the_threshold_and_reserved_rows_are_not_words():
    first = np.zeros((7, 2))
    first[:4] = 5.0  # padding, start, out-of-vocabulary, unused: large, but not words
    first[4] = [0.3, 0.4]  # norm 0.5
    first[5] = [0.06, 0.08]  # norm 0.1, exactly the threshold
    first[6] = [0.01, 0.0]
    analysis = analyse_words([(first, np.zeros(2)), (np.ones((2, 1)), np.zeros(1))], kept_norm=0.1)
    assert analysis.indices.tolist() == [4, 5, 6]
    assert analysis.norms == pytest.approx([0.5, 0.1, 0.01])
    assert analysis.kept.tolist() == [True, True, False]
    assert (analysis.words_kept, analysis.words_kept_fraction) == (2, pytest.approx(2 / 3))
    rows = word_rows("l1", analysis, {4: "great", 5: "fun"})
    assert rows[0] == {"model": "l1", "index": 4, "word": "great", "norm": 0.5, "effect": rows[0]["effect"], "kept": 1}
    assert rows[2]["word"] == ""


def test_top_words_list_kept_words_only_on_the_side_of_their_effect():
    first = np.zeros((8, 1))
    first[4:] = [[1.0], [-1.0], [2.0], [0.01]]
    analysis = analyse_words([(first, np.zeros(1)), (np.ones((1, 1)), np.zeros(1))], kept_norm=0.1)
    top = top_words(analysis, {4: "good", 5: "bad", 6: "great", 7: "faint"}, count=5)
    # relu: a negative row does nothing, so "bad" has no effect here and is on neither side.
    assert [word for word, _ in top["positive"]] == ["great", "good"]
    assert top["negative"] == []


# Planted words: the labels of make_reviews' data are given away by five positive and five negative
# words among filler. A network trained on it with L1 keeps the planted words and drops the filler;
# a plain network has no reason to drop anything.

HIDDEN_UNITS = (32, 32)
# Enough reviews per label that no filler word goes with one label by chance.
REVIEWS = 500


def _multi_hot(texts: list[str], columns: dict[str, int]) -> np.ndarray:
    rows = np.zeros((len(texts), FIRST_WORD_INDEX + len(columns)), dtype=np.float32)
    rows[:, 1] = 1  # the start index, as every encoded review has it
    for row, text in enumerate(texts):
        for word in re.findall(r"[a-z]+", text.lower()):
            rows[row, columns[word]] = 1
    return rows


@pytest.fixture(scope="module")
def planted():
    """Each model's word analysis after training on planted-word reviews, and the words by index."""
    keras = pytest.importorskip("keras")
    from imdb_regularization.model.network import build_model, layer_weights, seed_everything

    reviews = make_reviews(REVIEWS, seed=1)
    words = sorted(
        {word for texts in reviews.values() for text in texts for word in re.findall(r"[a-z]+", text.lower())}
    )
    columns = {word: FIRST_WORD_INDEX + position for position, word in enumerate(words)}
    texts = reviews["train", "pos"] + reviews["train", "neg"]
    x, y = _multi_hot(texts, columns), np.array([1] * REVIEWS + [0] * REVIEWS, dtype=np.float32)
    kept_norm = load_params(PROJECT_ROOT / "params.yaml").evaluate.kept_norm
    analyses = {}
    for name, spec in {"basic": RegularizerSpec("none", 0.0), "l1": RegularizerSpec("l1", 0.005)}.items():
        seed_everything(0)
        model = build_model(num_words=x.shape[1], hidden_units=HIDDEN_UNITS, spec=spec)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
        model.fit(x, y, epochs=20, batch_size=50, verbose=0)
        weights = layer_weights(model)
        layers = [
            (weights[f"{layer}_kernel"], weights[f"{layer}_bias"]) for layer in ("hidden_1", "hidden_2", "output")
        ]
        analyses[name] = analyse_words(layers, kept_norm)
    return analyses, {index: word for word, index in columns.items()}


def _kept_words(analysis, vocabulary) -> set[str]:
    return {vocabulary[int(index)] for index in analysis.indices[analysis.kept]}


def test_l1_keeps_the_planted_words_and_drops_most_of_the_filler(planted):
    analyses, vocabulary = planted
    kept = _kept_words(analyses["l1"], vocabulary)
    assert set(POSITIVE_WORDS + NEGATIVE_WORDS) <= kept
    filler = set(vocabulary.values()) - set(POSITIVE_WORDS + NEGATIVE_WORDS)
    assert set(FILLER_WORDS) <= filler
    assert len(kept & filler) <= len(filler) // 4, sorted(kept & filler)


def test_the_plain_model_keeps_nearly_all_words(planted):
    analyses, _ = planted
    assert analyses["basic"].words_kept_fraction >= 0.9


def test_planted_words_push_the_output_their_way(planted):
    analyses, vocabulary = planted
    for analysis in analyses.values():
        effect = {
            vocabulary[int(index)]: value for index, value in zip(analysis.indices, analysis.effects, strict=True)
        }
        assert all(effect[word] > 0 for word in POSITIVE_WORDS), effect
        assert all(effect[word] < 0 for word in NEGATIVE_WORDS), effect
    top = top_words(analyses["l1"], vocabulary, count=5)
    assert {word for word, _ in top["positive"]} == set(POSITIVE_WORDS)
    assert {word for word, _ in top["negative"]} == set(NEGATIVE_WORDS)
