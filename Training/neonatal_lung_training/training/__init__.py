"""The published slice-wise recipe and its 2.5D/3D variants: configs, slice and volume datasets,
augmentation, splits, the training loop with checkpoints and multi-process runs, and the model folder it
writes (weights, lineage, model card). Imports ``synthesis`` and ``evaluation``; nothing above it.
"""
