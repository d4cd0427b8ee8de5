"""The regularization study: L1 and L2 over a log grid of rates, and the basic model, each with several seeds.

`python -m study.run` trains the points as DVC experiments; `python -m study.summarize`
collects their metrics into a chart and a table under `study/results/`.
"""
