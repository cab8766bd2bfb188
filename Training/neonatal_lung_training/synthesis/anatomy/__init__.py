"""The anatomy both generators share: tissue maps of a newborn's chest (procedural or from the fetal thorax
atlas), lung lobes and airways made topologically sound, BPD-like pathology, and the size/pose variants.
Returns tissue labels only; how a tissue looks on a scanner is the generators' business.
"""
