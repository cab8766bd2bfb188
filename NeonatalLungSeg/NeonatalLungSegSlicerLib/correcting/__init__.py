"""AI correct in the slice views: the Segment Editor effect, its session with the worker, and
slice-view coordinates. Imports the package's top-level helpers (mrmlNodes, labelmaps, segmentEditing,
processRunner, staging) and the engine's torch-free modules.
"""
