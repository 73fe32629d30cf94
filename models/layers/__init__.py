"""Building blocks shared by the fusion-distillation models, each written once.

`transformer`: post-norm attention blocks, the CMA and LFA blocks, gates, positions;
`variational`: Gaussian encoders, closed-form KLs, fusion of Gaussians; `distill`: student CE and
feature / prediction distillation; `mutual_distill`: MRD's mutual distillation, refactoring and
classification terms; `contrastive`: LFVD's dual contrastive losses; `graph`: the
DAG-ERC context encoder; `masking`: reductions over real utterances only; `checks`: hyper-parameter
validation.
"""
