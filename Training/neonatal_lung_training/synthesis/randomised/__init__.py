"""Domain-randomised synthetic chest MRI (SynthSeg-style), newborn to adult, for training lung models.

Kept apart from training and evaluation: this package only makes cases. ``generate_random_case`` is the
entry point; ``ranges.DomainRanges`` holds every randomisation axis and its range; ``folder`` writes a
training folder (``neonatal-lung-seg synthesize --domain-random``). See docs/synthetic-data.md.
"""

from .generator import generate_random_case
from .ranges import CONTRAST_MODES, DEFAULT_RANGES, FAMILIES, ORIENTATIONS, DomainRanges

__all__ = ["generate_random_case", "DomainRanges", "DEFAULT_RANGES", "FAMILIES", "CONTRAST_MODES",
           "ORIENTATIONS"]
