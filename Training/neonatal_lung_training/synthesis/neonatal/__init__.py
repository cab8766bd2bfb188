"""The neonatal MR generator: anatomy painted with measured-like T2-HASTE / UTE / GRE contrasts, then MR
artefacts (noise, bias field, motion, streaks), and a writer for training folders of such cases
(``neonatal-lung-seg synthesize``). Imports ``synthesis.anatomy`` and the engine's training-folder code.
"""
