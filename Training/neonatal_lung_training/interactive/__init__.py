"""Click-guided refinement: simulated clicks, training of the refinement network, NoC evaluation."""
