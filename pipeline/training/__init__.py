"""Training and scoring machinery shared by every model; the stages in `pipeline/stages/` call it.

`config` validates the `train:` block and a `models.<name>` block; `data` turns the manifest and
feature files into standardised dialogues and batches; `loop` is the one training loop (`fit` runs
a `Task`), used by `trainer` (one seed of a dialogue model), `mrd` (a package: MRD over two trained
models), `lipsync` (LipSyncNet) and the `finetune_text` stage; `cache` trains every seed or restores
it by content; `model_checkpoints` reads and writes a seed's folder in the one checkpoint format
(`pipeline.checkpoints`); `protocols` says how a model is partitioned (the manifest's split or
session folds) and shapes its reports; `evaluation` checks, scores and writes what `evaluate`
reports; `splits` builds the folds; `metrics` scores predictions and aggregates seeds; `plots`
draws confusion matrices.
"""
