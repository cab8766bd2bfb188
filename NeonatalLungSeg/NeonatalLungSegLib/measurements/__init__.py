"""Lung descriptors and the per-case report: what the numbers are (docs/descriptors.md) and how they reach a
reader.

Owns the descriptors of a lung label map on its scan's grid, in physical units: volume, sphericity, principal
axes, cranio-caudal extent and regional fractions (``shape``), the surface area's Crofton estimate
(``surface``), the normalised signal-intensity distribution (``intensity``); their table of names, units,
definitions and input checks (``descriptors``); and the per-case outputs: JSON, one CSV row, a cohort CSV and a
self-contained HTML report with overlays (``figures``), an offscreen VTK surface view rendered in a child
process (``surface_view``) and the page itself (``report``), written all-or-nothing (``outputs``).

May import ``errors``, ``geometry``, ``json_input``, ``volumes``, ``models`` and ``inference``; the ``cli``
imports it. matplotlib is imported only to draw the report, VTK only in ``surface_view``'s child process.
"""
