"""Click-guided refinement: simulated clicks and rim starts, training of the refinement network, and the
NoC evaluation (``neonatal-lung-seg evaluate-clicks``). Imports ``training``, ``evaluation`` and the engine.
"""
