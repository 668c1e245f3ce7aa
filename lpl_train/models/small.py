"""Small networks for the CPU-scale runs: a CNN for Fashion-MNIST (and its 56 x 56 mosaics), an MLP and a
linear model for the Gaussian data of Sec. III.B (Eq. 17)."""

from __future__ import annotations

import torch
from torch import nn

from .base import FeatureClassifier, check_dropout, check_positive_int, make_head


class FMnistCNN(FeatureClassifier):
    """Three conv3x3-BN-ReLU layers (widths w, 2w, 4w; 2x2 max-pool after the first two), then a global
    mean pool: ``4 * width`` features. Any input size >= 4 x 4 works (28 x 28 items, 56 x 56 mosaics)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        width: int = 32,
        dropout: float = 0.0,
        use_norm: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("width", width)
        dropout = check_dropout(dropout)

        def block(i: int, o: int) -> list[nn.Module]:
            return [
                nn.Conv2d(i, o, 3, padding=1, bias=False),
                nn.BatchNorm2d(o),
                nn.ReLU(inplace=True),
            ]

        self.body = nn.Sequential(
            *block(in_channels, width),
            nn.MaxPool2d(2),
            *block(width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 4 * width),
        )
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.num_features = 4 * width
        self.classifier = make_head(self.num_features, num_classes, use_norm)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.body(x).mean(dim=(2, 3)))


class MLP(FeatureClassifier):
    """``depth`` hidden layers of ``hidden`` ReLU units on the flattened input."""

    def __init__(
        self,
        num_classes: int,
        in_features: int,
        hidden: int = 64,
        depth: int = 2,
        use_norm: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int("in_features", in_features)
        check_positive_int("hidden", hidden)
        check_positive_int("depth", depth)
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(depth):
            layers += [nn.Linear(in_features if i == 0 else hidden, hidden), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.num_features = hidden
        self.classifier = make_head(hidden, num_classes, use_norm)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class LinearModel(FeatureClassifier):
    """``f(x) = W x + b`` on the flattened input (the linear classifier of Sec. III.B); the features are
    the input itself."""

    def __init__(self, num_classes: int, in_features: int, use_norm: bool = False) -> None:
        super().__init__()
        self.num_features = check_positive_int("in_features", in_features)
        self.classifier = make_head(in_features, num_classes, use_norm)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"x has {x.shape[1]} features per sample, expected {self.num_features}"
            )
        return x
