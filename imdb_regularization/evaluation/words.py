"""Which words a trained network keeps, and what each one says: the notebook's lesson named word by word.

Row i of the first hidden layer's kernel is everything the network learned about word i (the
multi-hot input has a 1 in column i exactly when the review holds word i), so the row's L2 norm
measures how much the network uses that word:

- a word is *kept* when its row norm is at least `evaluate.kept_norm`. A norm, not single
  weights, because Adam keeps L1's weights jittering around zero rather than at it: counting a
  word as kept when any one of its weights reaches the sparsity threshold keeps most of L1's
  words, while the norm of a discarded row stays small (see params.yaml for the default).
- a word's *effect* is the model's output for a review holding only that word minus its output
  for an empty review. Every encoded review has the start index 1 set (Keras' `start_char`), so
  the empty review is the row with only index 1 set, and the one-word review adds the word's
  index; the out-of-vocabulary index 2 is not set in either. A positive effect pushes towards a
  positive review.

Indices 0-3 (padding, start, out of vocabulary, unused) are not words and are left out. The
forward pass repeats the network of `imdb_regularization.model.network` in NumPy (relu hidden
layers, sigmoid output), so no TensorFlow is needed.
"""

from dataclasses import dataclass

import numpy as np

from imdb_regularization.params import FIRST_WORD_INDEX

# The multi-hot column every encoded review has set: Keras' start character.
START_INDEX = 1
TOP_WORDS = 15


@dataclass(frozen=True)
class WordAnalysis:
    """Per word (index `FIRST_WORD_INDEX` on): its first-layer row norm, one-word effect, and whether it is kept."""

    indices: np.ndarray
    norms: np.ndarray
    effects: np.ndarray
    kept: np.ndarray

    @property
    def words_kept(self) -> int:
        return int(self.kept.sum())

    @property
    def words_kept_fraction(self) -> float:
        return float(self.kept.mean()) if self.kept.size else 0.0


def row_norms(first_kernel: np.ndarray) -> np.ndarray:
    """The L2 norm of each word's row of the first hidden layer's kernel (indices 0-3 left out)."""
    return np.sqrt(np.sum(first_kernel[FIRST_WORD_INDEX:].astype(np.float64) ** 2, axis=1))


def one_word_effects(layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Each word's output for a review holding only it, minus the output for an empty review.

    Args:
        layers: (kernel, bias) of every dense layer in order: the relu hidden layers, then the
            sigmoid output layer (one unit).

    Returns:
        One effect per word index from `FIRST_WORD_INDEX` on, each in (-1, 1).
    """
    (first_kernel, first_bias), *rest = [(k.astype(np.float64), b.astype(np.float64)) for k, b in layers]
    empty = first_kernel[START_INDEX] + first_bias
    # Row 0 is the empty review, the others add one word each: a multi-hot row's first layer is a sum of rows.
    activations = np.vstack([empty, first_kernel[FIRST_WORD_INDEX:] + empty])
    activations = np.maximum(activations, 0.0)
    for kernel, bias in rest[:-1]:
        activations = np.maximum(activations @ kernel + bias, 0.0)
    output_kernel, output_bias = rest[-1]
    probabilities = _sigmoid((activations @ output_kernel + output_bias)[:, 0])
    return probabilities[1:] - probabilities[0]


def analyse_words(layers: list[tuple[np.ndarray, np.ndarray]], kept_norm: float) -> WordAnalysis:
    """The norm, effect and kept flag of every word of a network given as its (kernel, bias) layers.

    Args:
        layers: as in `one_word_effects`; the first kernel has one row per multi-hot column.
        kept_norm: a word whose row norm is at least this is kept (`evaluate.kept_norm`).

    Returns:
        The analysis of the words at indices `FIRST_WORD_INDEX` to the input width - 1.

    Raises:
        ValueError: the network has no output layer, or its first layer holds no word rows.
    """
    if len(layers) < 2:
        raise ValueError(f"a network of hidden layers and an output layer is needed, got {len(layers)} layer(s)")
    first_kernel = layers[0][0]
    if first_kernel.shape[0] <= FIRST_WORD_INDEX:
        raise ValueError(f"the first kernel has {first_kernel.shape[0]} rows; words start at row {FIRST_WORD_INDEX}")
    norms = row_norms(first_kernel)
    return WordAnalysis(
        indices=np.arange(FIRST_WORD_INDEX, first_kernel.shape[0]),
        norms=norms,
        effects=one_word_effects(layers),
        kept=norms >= kept_norm,
    )


def word_rows(model: str, analysis: WordAnalysis, vocabulary: dict[int, str]) -> list[dict]:
    """One row per word for `words.csv`: model, index, word, norm, effect, kept (1 or 0)."""
    return [
        {
            "model": model,
            "index": int(index),
            "word": vocabulary.get(int(index), ""),
            "norm": round(float(norm), 6),
            "effect": round(float(effect), 6),
            "kept": int(kept),
        }
        for index, norm, effect, kept in zip(
            analysis.indices, analysis.norms, analysis.effects, analysis.kept, strict=True
        )
    ]


def top_words(analysis: WordAnalysis, vocabulary: dict[int, str], count: int = TOP_WORDS) -> dict[str, list]:
    """The kept words with the largest positive and the largest negative effects, strongest first.

    Returns:
        `positive` and `negative`: up to `count` (word, effect) pairs each; a word only counts on the
        side its effect is on, so a model that keeps few words lists fewer.
    """
    order = np.argsort(analysis.effects, kind="stable")
    kept_order = order[analysis.kept[order]]
    negative = [i for i in kept_order if analysis.effects[i] < 0][:count]
    positive = [i for i in kept_order[::-1] if analysis.effects[i] > 0][:count]

    def named(positions: list) -> list:
        return [
            (vocabulary.get(int(analysis.indices[i]), f"#{analysis.indices[i]}"), float(analysis.effects[i]))
            for i in positions
        ]

    return {"positive": named(positive), "negative": named(negative)}


def _sigmoid(values: np.ndarray) -> np.ndarray:
    # Written through exp of a non-positive number, so a large logit of either sign cannot overflow.
    exp = np.exp(-np.abs(values))
    return np.where(values >= 0, 1 / (1 + exp), exp / (1 + exp))
