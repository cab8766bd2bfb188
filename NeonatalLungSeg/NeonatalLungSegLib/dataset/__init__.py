"""The training folder contract (docs/training-folder.md): writing corrected cases with their sidecars and
manifest (export), reading and checking it, the review queue and the ranking of cases worth correcting.

May import ``errors``, ``geometry``, ``volumes`` and ``inference`` (ranking and export measure what they
store); Training reads training folders only through this package.
"""
