"""Training recipes for the neonatal lung model: synthetic data, augmentation, training, evaluation."""
