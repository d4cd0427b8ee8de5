"""The library behind the pipeline: every stage in `stages/` is a thin `main()` around these modules.

- `params`: the one loader of `params.yaml`, validated into frozen dataclasses.
- `cli`: what every stage's `__main__` shares (logging, one-line failures, stop signals, worker processes).
- `atomic`: output writes that never leave a file looking finished.
- `dvc_commands`: running this environment's `dvc` from Python (the study, the tools, the tests).
- `readers/`: the raw sources: download, checksums, Keras' npz, the aclImdb archive.
- `features/`: tokens, vocabulary and multi-hot rows.
- `model/`: the encoded-array and model-file contracts, and the Keras network.
- `evaluation/`: metrics and the report.
"""
