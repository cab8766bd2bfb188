"""The correction-loop experiment: fine-tune a model on N corrected cases chosen at random or by ranking and
measure what it gains and what the other domains lose. Imports ``evaluation`` and ``training``.
"""
