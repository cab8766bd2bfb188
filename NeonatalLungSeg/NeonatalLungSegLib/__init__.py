"""Slicer-free engine for neonatal lung segmentation in chest MRI.

The CLI, the 3D Slicer module and the training pipeline all use this package; it imports torch, NumPy,
SimpleITK and segmentation-models-pytorch, and never Slicer, Qt or VTK.
"""

__version__ = "0.1.0"
