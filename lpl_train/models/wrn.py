"""Wide ResNets (Zagoruyko & Komodakis, 2016) for 32 x 32 inputs: WRN-28-10 (Tables I, II) and WRN-16-8
(Table VIII), with the standard dropout between the two convs of each block (the "+Dropout" rows).

Pre-activation blocks (BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3), 1x1-conv shortcuts where the shape
changes, widths 16k / 32k / 64k, n = (depth - 4) / 6 blocks per stage, final BN-ReLU and mean pool.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FeatureClassifier, check_dropout, check_positive_int, make_head


class WideBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.equal = in_planes == planes and stride == 1
        self.shortcut = None if self.equal else nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(o)
        out = self.conv2(self.drop(F.relu(self.bn2(self.conv1(o)))))
        return out + shortcut


class WideResNet(FeatureClassifier):
    """WRN-``depth``-``widen``; ``forward_features`` gives the ``64 * widen``-d pooled features."""

    def __init__(
        self,
        depth: int,
        widen: int,
        num_classes: int,
        dropout: float = 0.0,
        use_norm: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n+4 with n >= 1 (e.g. 16, 28), got {depth!r}")
        check_positive_int("widen", widen)
        check_positive_int("in_channels", in_channels)
        dropout = check_dropout(dropout)
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages, in_planes = [], widths[0]
        for planes, stride in zip(widths[1:], (1, 2, 2), strict=True):
            blocks = []
            for i in range(n):
                blocks.append(WideBlock(in_planes, planes, stride if i == 0 else 1, dropout))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(widths[3])
        self.num_features = widths[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.classifier = make_head(widths[3], num_classes, use_norm)
        if not use_norm:
            nn.init.zeros_(self.classifier.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return F.relu(self.bn(x)).mean(dim=(2, 3))
