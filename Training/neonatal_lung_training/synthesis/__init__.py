"""Synthetic chest MRI with lung labels: two generators over one body of anatomy code.

``anatomy`` builds the tissues (procedural and atlas-based bodies, lung topology, BPD patterns, size and pose
variants); ``neonatal`` paints them as neonatal MR sequences with their artefacts; ``randomised`` paints them
with SynthSeg-style random contrasts and acquisitions; ``synthesize`` is the command for both. Only makes
cases: it imports nothing from training, evaluation or release.
"""
