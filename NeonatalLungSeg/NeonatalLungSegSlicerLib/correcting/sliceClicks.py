"""Slice-view pixels to RAS for AI correct's clicks.

The clicks themselves reach the AI correct effect through Slicer's segment editor, which observes every slice
view and routes the active effect's events (``aiCorrectEffect.py``); this file only maps the event's view pixel
to RAS through the slice node's own XY-to-RAS matrix, the one Slicer's cursor position readout uses
(``qSlicerSegmentEditorAbstractEffect::xyToRas`` does the same).
"""

import numpy as np

import slicer


def xyToRas(sliceNode, x, y):
    """RAS (mm) of view pixel (x, y) on the slice that ``sliceNode`` shows."""
    matrix = slicer.util.arrayFromVTKMatrix(sliceNode.GetXYToRAS())
    return (matrix @ np.array([float(x), float(y), 0.0, 1.0]))[:3]
