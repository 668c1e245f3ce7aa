"""ResNets for 32 x 32 inputs (He et al., 2016), as used by the paper's CIFAR experiments (Tables I-IV,
VIII, IX).

* ``resnet32`` / ``resnet110``: 3 stages x n BasicBlocks (n = 5 / 18), widths 16/32/64, strides 1/2/2,
  option-A shortcuts (stride-2 subsampling and zero channel padding) by default: 0.46M / 1.73M parameters
  for 10 classes (the LDAM-DRW network). ``shortcut="B"`` uses 1x1-conv+BN projections (ISDA's variant).
  ``dropout`` is applied inside each block after the first conv-BN-ReLU ("+Dropout" rows of ISDA).
* ``se_resnet110``: the same with a squeeze-and-excitation gate (reduction 16) on each block's residual
  and projection shortcuts.
* ``resnet32_la``: the 0.30M-parameter "ResNet-32" of the Logit Adjustment code that the paper's long-tail
  runs used: zero-pad 3 + valid 3x3 stem conv (36 x 36), 3 stages x 5 blocks of three equal-width convs
  (1x1, 3x3, 1x1), a 1x1-conv+BN projection on the first block of every stage, a final BN before the
  spatial mean, and a dense head initialised N(0, 0.01).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FeatureClassifier, check_dropout, check_positive_int, make_head


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SqueezeExcite(nn.Module):
    """Channel gate ``x * sigmoid(W2 relu(W1 mean_hw(x)))`` with ``channels // reduction`` hidden units."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * s[:, :, None, None]


class OptionAShortcut(nn.Module):
    """Identity shortcut that halves the resolution and zero-pads the new channels equally on both sides."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = planes - in_planes
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad))


class BasicBlock(nn.Module):
    def __init__(
        self, in_planes: int, planes: int, stride: int, shortcut: str, dropout: float, se: bool
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.se = SqueezeExcite(planes) if se else nn.Identity()
        if stride == 1 and in_planes == planes:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = OptionAShortcut(in_planes, planes, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop(F.relu(self.bn1(self.conv1(x))))
        out = self.se(self.bn2(self.conv2(out)))
        return F.relu(out + self.shortcut(x))


class CifarResNet(FeatureClassifier):
    """ResNet-(6n+2) for 32 x 32 images; ``forward_features`` gives the 64-d pooled features."""

    def __init__(
        self,
        depth: int,
        num_classes: int,
        shortcut: str = "A",
        dropout: float = 0.0,
        se: bool = False,
        use_norm: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (e.g. 32, 110), got {depth!r}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        dropout = check_dropout(dropout)
        check_positive_int("in_channels", in_channels)
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(
                    BasicBlock(in_planes, planes, stride if i == 0 else 1, shortcut, dropout, se)
                )
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.num_features = 64
        _init(self)
        self.classifier = make_head(64, num_classes, use_norm)
        if not use_norm:
            nn.init.kaiming_normal_(self.classifier.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return x.mean(dim=(2, 3))


class LABlock(nn.Module):
    """1x1 -> 3x3 -> 1x1 convs of equal width (BN after each, ReLU after the first two and the sum)."""

    def __init__(self, in_planes: int, planes: int, stride: int, project: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.shortcut = (
            nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
            if project
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class LAResNet32(FeatureClassifier):
    """The Logit Adjustment code's "ResNet-32" (~0.30M parameters); see the module docstring."""

    def __init__(self, num_classes: int, use_norm: bool = False, in_channels: int = 3) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        self.stem = nn.Sequential(
            nn.ZeroPad2d(3),
            nn.Conv2d(in_channels, 16, 3, 1, 0, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        )
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = [LABlock(in_planes, planes, stride, project=True)]
            blocks += [LABlock(planes, planes, 1, project=False) for _ in range(4)]
            stages.append(nn.Sequential(*blocks))
            in_planes = planes
        self.stages = nn.Sequential(*stages)
        self.final_bn = nn.BatchNorm2d(64)
        self.num_features = 64
        _init(self)
        self.classifier = make_head(64, num_classes, use_norm)
        if not use_norm:
            nn.init.normal_(self.classifier.weight, 0.0, 0.01)
            nn.init.zeros_(self.classifier.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_bn(self.stages(self.stem(x))).mean(dim=(2, 3))
