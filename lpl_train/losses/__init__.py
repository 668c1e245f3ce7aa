"""Losses: LPL and its combinations (``lpl``), single-label and multi-label baselines, and the registry."""

from . import lpl, multi_label, single_label  # noqa: F401  (modules register their losses on import)
from .registry import available_losses, build_loss, register

__all__ = ["available_losses", "build_loss", "register"]
