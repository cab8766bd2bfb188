"""The *Measurements* section: lung descriptors of the current (corrected) segmentation as a table
node and a histogram plot, refreshed after edits, and *Save report*. Imports the package's top-level
helpers and the engine's ``measurements`` package (no torch).
"""
