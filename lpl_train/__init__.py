"""Class-level logit perturbation (LPL) losses, baselines, data, models and a training engine."""

__version__ = "0.1.0"
