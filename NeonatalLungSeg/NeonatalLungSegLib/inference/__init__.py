"""The segmentation engine: preprocessing, slice / 2.5D / 3D inference on CPU or GPU with its accelerators,
postprocessing into right and left lungs, confidence and volumes.

``engine.Segmenter`` is the entry point the CLI, the worker and Training use. May import ``errors``,
``geometry``, ``volumes`` and ``models``; never the worker, the command line or the dataset code.
"""
