"""Class-level logit perturbation (LPL) losses, baselines, data, models and a training engine."""
