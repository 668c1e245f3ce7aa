"""Losses: LPL and its combinations (``lpl``), single-label and multi-label baselines, and the registry.

Every loss is importable from here (``from lpl_train.losses import LPLLoss``) and buildable by its registry
name (``build_loss("lpl", num_classes=10, ...)``). This package needs only torch and numpy.
"""

from . import (  # noqa: F401  (modules register their losses on import)
    feature_losses,
    label_noise,
    lpl,
    lpl_la,
    lpl_multi_label,
    multi_label,
    single_label,
)
from .feature_losses import CenterLoss, ISDALoss, LargeMarginSoftmaxLoss
from .label_noise import DisturbLabelLoss, GeneralizedCELoss
from .lpl import PRESETS, LALPLLoss, LPLLoss, MultiLabelLPLLoss
from .multi_label import (
    BCELoss,
    ClassBalancedFocalBCELoss,
    DBLoss,
    DistributionBalancedLoss,
    FocalBCELoss,
    RBCEFocalLCLoss,
    RBCEFocalLoss,
    RBCELCLoss,
    RBCENTRLoss,
    RebalancedBCELoss,
    ReweightedBCELoss,
)
from .registry import available_losses, build_loss, register
from .single_label import (
    ClassBalancedCELoss,
    ClassBalancedFocalLoss,
    CrossEntropyLoss,
    DRWSchedule,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
)

__all__ = [
    "PRESETS",
    "BCELoss",
    "CenterLoss",
    "ClassBalancedCELoss",
    "ClassBalancedFocalBCELoss",
    "ClassBalancedFocalLoss",
    "CrossEntropyLoss",
    "DBLoss",
    "DRWSchedule",
    "DisturbLabelLoss",
    "DistributionBalancedLoss",
    "FocalBCELoss",
    "FocalLoss",
    "GeneralizedCELoss",
    "ISDALoss",
    "LALPLLoss",
    "LDAMLoss",
    "LPLLoss",
    "LargeMarginSoftmaxLoss",
    "LogitAdjustedLoss",
    "MultiLabelLPLLoss",
    "RBCEFocalLCLoss",
    "RBCEFocalLoss",
    "RBCELCLoss",
    "RBCENTRLoss",
    "RebalancedBCELoss",
    "ReweightedBCELoss",
    "available_losses",
    "build_loss",
    "register",
]
