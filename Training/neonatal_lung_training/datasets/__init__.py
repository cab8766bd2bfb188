"""Bringing real labelled data in as training folders (the public CT lung slices) and combining training
folders into mixes with splits. Imports ``training`` (splits) and the engine's training-folder code.
"""
