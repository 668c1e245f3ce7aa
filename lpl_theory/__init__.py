"""Gaussian binary-classification analysis of class-level logit perturbation (paper Sec. III.B)."""
