"""Reading, checking and writing volumes: NIfTI, NRRD, MHA and DICOM series in, label files and DICOM SEG out.

Owns every byte that crosses the file system for images and labels: header and size checks before any voxel
is used (``header_checks``, ``input_checks``), NIfTI read in one pass that checks the bytes it decodes
(``nifti_reader``), a stamp of the checked bytes that every later read must match, atomic all-or-nothing
outputs, and the one conversion between the files' (x, y, z) and the engine's (z, y, x) arrays (through
``geometry``). May import only ``errors`` and ``geometry`` from this library, so
that everything above it reads volumes the same way.
"""
