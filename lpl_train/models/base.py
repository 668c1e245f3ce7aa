"""The shape every model shares: ``forward(x) = classifier(forward_features(x))``.

The split lets feature-level methods (ISDA, Eq. 7) read the features and the classifier weights, and lets
LDAM swap the linear head for the cosine :class:`~lpl_train.models.heads.NormedLinear`.
"""

from __future__ import annotations

import torch
from torch import nn

from .heads import NormedLinear


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_dropout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {value!r}")
    return float(value)


def make_head(in_features: int, num_classes: int, use_norm: bool) -> nn.Module:
    """``nn.Linear`` or, with ``use_norm``, the LDAM cosine head ``NormedLinear``."""
    if not isinstance(use_norm, bool):
        raise TypeError(f"use_norm must be a bool, got {use_norm!r}")
    check_positive_int("num_classes", num_classes)
    return (
        NormedLinear(in_features, num_classes) if use_norm else nn.Linear(in_features, num_classes)
    )


class FeatureClassifier(nn.Module):
    """Base class: subclasses define ``forward_features`` and set ``self.classifier``."""

    classifier: nn.Module
    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))
