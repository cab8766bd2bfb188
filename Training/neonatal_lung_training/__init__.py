"""Everything that makes, trains, evaluates and releases models for the engine in NeonatalLungSegLib.

Subpackages, lowest first: ``synthesis`` (synthetic cases), ``evaluation`` (metrics, evaluation, reports),
``training`` (the slice-wise recipe, its configs, checkpoints, lineage and cards), ``release`` (model
versions, int8 quantisation), ``datasets`` (preparing and combining real data), ``interactive`` (click
refinement training and NoC) and ``loop`` (the correction-loop experiment). Each imports only the ones
before it and the engine; the engine never imports this package (the CLI reaches it by module name).
"""
