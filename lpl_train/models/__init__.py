"""Models with separate features and classifier: ``build_model(name, num_classes, **kw)``.

Every model has ``forward_features(x) -> (N, F)``, an attribute ``classifier`` (``nn.Linear``, or the
cosine :class:`~lpl_train.models.heads.NormedLinear` with ``use_norm=True`` for LDAM), ``num_features``,
and ``forward(x) = classifier(forward_features(x))``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from .base import FeatureClassifier
from .cifar_resnet import CifarResNet, LAResNet32
from .heads import NormedLinear
from .imagenet_resnet import ImageNetResNet, ResNet50, ResNet101, load_torchvision_state_dict
from .small import MLP, FMnistCNN, LinearModel
from .wrn import WideResNet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet8": lambda num_classes, **kw: CifarResNet(8, num_classes, **kw),
    "resnet20": lambda num_classes, **kw: CifarResNet(20, num_classes, **kw),
    "resnet32": lambda num_classes, **kw: CifarResNet(32, num_classes, **kw),
    "resnet110": lambda num_classes, **kw: CifarResNet(110, num_classes, **kw),
    "se_resnet110": lambda num_classes, shortcut="B", **kw: CifarResNet(
        110, num_classes, shortcut=shortcut, se=True, **kw
    ),
    "resnet32_la": LAResNet32,
    "wrn28_10": lambda num_classes, **kw: WideResNet(28, 10, num_classes, **kw),
    "wrn16_8": lambda num_classes, **kw: WideResNet(16, 8, num_classes, **kw),
    "resnet50": ResNet50,
    "resnet101": ResNet101,
    "fmnist_cnn": FMnistCNN,
    "mlp": MLP,
    "linear": LinearModel,
}

_IMAGENET_KW = tuple(
    p for p in inspect.signature(ImageNetResNet).parameters if p not in ("depth", "num_classes")
)
_ALLOWED = {
    "resnet50": _IMAGENET_KW,
    "resnet101": _IMAGENET_KW,
    "resnet8": ("shortcut", "dropout", "use_norm", "in_channels"),
    "resnet20": ("shortcut", "dropout", "use_norm", "in_channels"),
    "resnet32": ("shortcut", "dropout", "use_norm", "in_channels"),
    "resnet110": ("shortcut", "dropout", "use_norm", "in_channels"),
    "se_resnet110": ("shortcut", "dropout", "use_norm", "in_channels"),
    "wrn28_10": ("dropout", "use_norm", "in_channels"),
    "wrn16_8": ("dropout", "use_norm", "in_channels"),
}

__all__ = [
    "MODELS",
    "MLP",
    "CifarResNet",
    "FMnistCNN",
    "FeatureClassifier",
    "ImageNetResNet",
    "LAResNet32",
    "LinearModel",
    "NormedLinear",
    "ResNet50",
    "ResNet101",
    "WideResNet",
    "build_model",
    "count_parameters",
    "load_torchvision_state_dict",
]


def _allowed(name: str) -> tuple[str, ...]:
    if name in _ALLOWED:
        return _ALLOWED[name]
    params = inspect.signature(MODELS[name]).parameters
    return tuple(p for p in params if p != "num_classes")


def build_model(name: str, num_classes: int, **kw: Any) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes.

    Names: resnet8, resnet20, resnet32, resnet110 (option-A CIFAR ResNets; kw ``dropout``, ``shortcut``), se_resnet110,
    resnet32_la (the LA code's 0.30M net), wrn28_10, wrn16_8 (kw ``dropout``), resnet50, resnet101 (kw
    ``weights``, ``neck``, ``frozen_stages``, ``norm_eval``), fmnist_cnn (kw ``in_channels``, ``width``, ``dropout``),
    mlp (kw ``in_features``, ``hidden``, ``depth``), linear (kw ``in_features``). Every model takes
    ``use_norm`` (cosine head for LDAM) and ``classifier_bias`` (default True; False: the linear head has no
    bias, as L-Softmax's logits ``||w_c|| ||x|| cos(theta_c)`` have none, so that prediction uses what the
    loss trained).
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"model name must be one of {sorted(MODELS)}, got {name!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    bias = kw.pop("classifier_bias", True)
    if not isinstance(bias, bool):
        raise TypeError(f"classifier_bias must be a bool, got {bias!r}")
    allowed = _allowed(name)
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ValueError(
            f"model {name!r} does not take {unknown}; allowed keywords: "
            f"{[*allowed, 'classifier_bias']}"
        )
    sig = inspect.signature(MODELS[name]).parameters.values()
    need = [p.name for p in sig if p.name != "num_classes" and p.default is p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in kw]  # fmt: skip
    if need:
        raise TypeError(f"model {name!r} needs {', '.join(need)} (no default)")
    model = MODELS[name](num_classes, **kw)
    if not bias:
        head = model.classifier
        if type(head) is not nn.Linear:
            raise ValueError(
                f"classifier_bias=False needs a linear head; model {name!r} has {type(head).__name__}"
            )
        head.register_parameter("bias", None)  # the same weights; no parameter, no random draw
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
