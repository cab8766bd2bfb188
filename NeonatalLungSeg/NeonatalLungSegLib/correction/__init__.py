"""Click refinement ("AI correct"): clicks and their files, the refinement network's session on one volume,
and the image-guided rules (contrast region, rim peel) that decide what a remove click may take.

May import ``errors``, ``geometry``, ``volumes``, ``models`` and ``inference``. ``clicks`` alone is torch-free
(the Slicer process reads click outcomes through it).
"""
