"""Bottleneck ResNets (He et al., 2016) for the ImageNet-scale sets, with parameter names identical to
torchvision's ``resnet50`` / ``resnet101`` so that a torchvision-format state dict loads directly (``fc.*``
maps to ``classifier.*``).

* ResNet-50: iNaturalist (Table VI) and VOC/COCO-MLT (Table V).
* ResNet-101: full MS-COCO at 448 x 448 (Table X). The paper's text says "ResNet-110", but ResNet-110 is
  the 1.7M-parameter CIFAR network (32 x 32 inputs, Tables I, II); for 448 x 448 ImageNet-scale inputs
  the standard backbone of that name family is ResNet-101 (the ML-GCN / full-COCO multi-label baseline),
  so we read "ResNet-110" as ResNet-101.

Both are one class, :class:`ImageNetResNet`, that differs only in the number of bottleneck blocks per
stage: (3, 4, 6, 3) for depth 50 and (3, 4, 23, 3) for depth 101.

Pretrained use (the VOC/COCO-MLT recipe of Wu et al.): save torchvision's ImageNet weights once with
``torch.save(torchvision.models.resnet50(weights="IMAGENET1K_V1").state_dict(), "r50.pth")`` (or
``resnet101``) on a machine that has torchvision, then ``build_model("resnet50", C, weights="r50.pth",
neck="pfc", frozen_stages=1, norm_eval=True)``. Weights are read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import FeatureClassifier, make_head


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_planes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
            if stride != 1 or in_planes != out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


STAGE_BLOCKS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class ImageNetResNet(FeatureClassifier):
    """Bottleneck ResNet-50 / ResNet-101 with torchvision's parameter names; see the module docstring.

    Args:
        depth: 50 or 101 (bottleneck blocks per stage: 3-4-6-3 or 3-4-23-3).
        num_classes: output classes.
        use_norm: cosine head (LDAM).
        neck: ``"none"`` (2048-d features) or ``"pfc"`` (Linear(2048, 256) -> BN1d -> Dropout 0.5, the
            DB recipe's neck; 256-d features, head initialised N(0, 0.01)).
        frozen_stages: 0 (train all), 1 (freeze the stem and ``layer1``), ... up to 4.
        norm_eval: keep every backbone BatchNorm in eval mode (running statistics frozen).
        weights: path of a torchvision-format state dict to load (``None``: random init).
    """

    def __init__(
        self,
        depth: int,
        num_classes: int,
        use_norm: bool = False,
        neck: str = "none",
        frozen_stages: int = 0,
        norm_eval: bool = False,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or depth not in STAGE_BLOCKS:
            raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)}, got {depth!r}")
        self.depth = depth
        if neck not in ("none", "pfc"):
            raise ValueError(f"neck must be 'none' or 'pfc', got {neck!r}")
        if isinstance(frozen_stages, bool) or frozen_stages not in range(5):
            raise ValueError(f"frozen_stages must be an int in 0..4, got {frozen_stages!r}")
        if not isinstance(norm_eval, bool):
            raise TypeError(f"norm_eval must be a bool, got {norm_eval!r}")
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_planes = 64
        for i, (planes, blocks, stride) in enumerate(
            zip((64, 128, 256, 512), STAGE_BLOCKS[depth], (1, 2, 2, 2), strict=True), start=1
        ):
            layer = []
            for b in range(blocks):
                layer.append(Bottleneck(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes * 4
            setattr(self, f"layer{i}", nn.Sequential(*layer))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.neck: nn.Module
        if neck == "pfc":
            self.neck = nn.Sequential(nn.Linear(2048, 256), nn.BatchNorm1d(256), nn.Dropout(0.5))
            self.num_features = 256
        else:
            self.neck = nn.Identity()
            self.num_features = 2048
        self.classifier = make_head(self.num_features, num_classes, use_norm)
        if neck == "pfc" and not use_norm:
            nn.init.normal_(self.classifier.weight, 0.0, 0.01)
            nn.init.zeros_(self.classifier.bias)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        if weights is not None:
            load_torchvision_state_dict(self, weights)
        self._freeze()

    def _backbone_stages(self) -> list[nn.Module]:
        return [
            nn.ModuleList([self.conv1, self.bn1]),
            self.layer1,
            self.layer2,
            self.layer3,
            self.layer4,
        ]

    def _freeze(self) -> None:
        for stage in self._backbone_stages()[
            : self.frozen_stages + (1 if self.frozen_stages else 0)
        ]:
            for p in stage.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ImageNetResNet:
        super().train(mode)
        if mode:
            frozen = self._backbone_stages()[
                : self.frozen_stages + (1 if self.frozen_stages else 0)
            ]
            for stage in frozen:
                stage.eval()
            if self.norm_eval:
                for stage in self._backbone_stages():
                    for m in stage.modules():
                        if isinstance(m, nn.BatchNorm2d):
                            m.eval()
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.neck(torch.flatten(x.mean(dim=(2, 3)), 1))


class ResNet50(ImageNetResNet):
    """ResNet-50: :class:`ImageNetResNet` with ``depth=50`` (25,557,032 parameters with 1000 classes)."""

    def __init__(self, num_classes: int, **kw: Any) -> None:
        super().__init__(50, num_classes, **kw)


class ResNet101(ImageNetResNet):
    """ResNet-101: :class:`ImageNetResNet` with ``depth=101`` (44,549,160 parameters with 1000 classes)."""

    def __init__(self, num_classes: int, **kw: Any) -> None:
        super().__init__(101, num_classes, **kw)


def load_torchvision_state_dict(
    model: ImageNetResNet, weights: str | Path | Mapping[str, torch.Tensor]
) -> list[str]:
    """Load a torchvision-format ResNet-50 / ResNet-101 state dict into ``model`` (strict on the backbone).

    ``fc.weight``/``fc.bias`` are loaded into the classifier when it is an ``nn.Linear`` of the same shape
    (no neck), and skipped otherwise (the usual fine-tuning case). Returns the skipped keys. Files are read
    with ``torch.load(weights_only=True)``; unknown or missing backbone keys raise ValueError.
    """
    if isinstance(weights, str | Path):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"weights file not found: {path} (tried: {path.absolute()}). Save torchvision's ImageNet "
                f"weights there once, on a machine with torchvision: torch.save(torchvision.models."
                f"resnet{model.depth}(weights='IMAGENET1K_V1').state_dict(), '{path}'), or point "
                "model.params.weights at such a file"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"cannot read weights {path}: {err}") from err
    elif isinstance(weights, Mapping):
        state = weights
    else:
        raise TypeError(f"weights must be a path or a state dict, got {type(weights).__name__}")
    if not isinstance(state, Mapping):
        raise ValueError(f"weights must hold a state dict, got {type(state).__name__}")
    own = model.state_dict()
    mapped, skipped = {}, []
    for k, v in state.items():
        if k.startswith("fc."):
            nk = "classifier." + k[3:]
            if isinstance(model.neck, nn.Identity) and nk in own and own[nk].shape == v.shape:
                mapped[nk] = v
            else:
                skipped.append(k)
        else:
            mapped[k] = v
    backbone = {k for k in own if not k.startswith(("classifier.", "neck."))}
    missing_keys = sorted(backbone - mapped.keys())
    unexpected = sorted(k for k in mapped if k not in own)
    if missing_keys or unexpected:
        raise ValueError(
            f"weights do not match torchvision's resnet{model.depth}: missing {missing_keys[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for k, v in mapped.items():
        if own[k].shape != v.shape:
            raise ValueError(
                f"weights: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}"
            )
    model.load_state_dict(mapped, strict=False)
    return skipped
