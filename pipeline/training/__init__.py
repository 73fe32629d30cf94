"""Training machinery shared by every model: data, trainer, metrics and plots.

`data` turns the manifest and feature files into standardised dialogues and batches, `trainer`
fits a registered model per seed (select on dev, never look at test) and caches the result by
content, `metrics` scores predictions and aggregates seeds, `plots` draws confusion matrices.
"""
