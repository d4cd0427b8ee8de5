"""From reviews to the notebook's inputs: tokens, a ranked vocabulary, Keras indices, multi-hot rows.

- `ragged`: integer sequences of different lengths, stored flat.
- `vocabulary`: tokenizing (in worker processes) and ranking words by training-set count.
- `multi_hot`: Keras' index convention and the multi-hot encoding of both sources.
"""
