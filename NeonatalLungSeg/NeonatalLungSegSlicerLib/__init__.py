"""Slicer-side helpers of the NeonatalLungSeg module (MRML nodes, dependencies, sample data, editing).

Kept apart from ``NeonatalLungSegLib`` because these import ``slicer`` and ``vtk``; the engine never does.
"""
