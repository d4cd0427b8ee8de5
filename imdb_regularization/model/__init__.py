"""The network and the files around it.

- `encoded_arrays`: the arrays `encode` writes and `train`/`evaluate` read (the contract between them).
- `network`: the Keras model, its training and saving; the only module that imports TensorFlow.
- `files`: what `train` writes beside the model, so `evaluate` and `plots` never import TensorFlow.
"""
