"""The binary Gaussian task of Sec. III.B (Eq. 17), as a dataset for small linear / MLP runs.

``x ~ N(theta, sigma_pos^2 I)`` for ``y = +1`` and ``x ~ N(-theta, sigma_neg^2 I)`` for ``y = -1``, with
``theta = (eta, ..., eta)`` in ``d`` dimensions and priors ``P(+1) : P(-1) = 1 : gamma`` (Theorems 1-3).
Class indices follow the project's "class 0 = head" rule: class 0 is ``y = -1`` (the majority, prior
``gamma / (1 + gamma)``) and class 1 is ``y = +1`` (the minority). The training set has exactly
``round(num_train / (1 + gamma))`` minority samples; the test set is balanced by default so that the
per-class errors R(f, -1) and R(f, +1) are estimated with equal precision.
"""

from __future__ import annotations

import numpy as np
import torch

from .common import (
    DatasetBundle,
    TensorData,
    check_float,
    check_int,
    class_counts_of,
    split_validation,
)


def sample_gaussian(
    n_neg: int,
    n_pos: int,
    d: int,
    eta: float,
    sigma_pos: float,
    sigma_neg: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``n_neg`` samples of class 0 (y = -1) then ``n_pos`` of class 1 (y = +1), float32 and int64."""
    theta = np.full(d, eta)
    neg = -theta + sigma_neg * rng.standard_normal((n_neg, d))
    pos = theta + sigma_pos * rng.standard_normal((n_pos, d))
    x = np.concatenate([neg, pos]).astype(np.float32)
    y = np.concatenate([np.zeros(n_neg, np.int64), np.ones(n_pos, np.int64)])
    return x, y


def build_gaussian(
    root: object = None,
    seed: int = 0,
    gamma: float = 2.0,
    d: int = 2,
    eta: float = 1.0,
    sigma_pos: float = 1.0,
    sigma_neg: float = 1.0,
    num_train: int = 3000,
    num_test: int = 10000,
    balanced_test: bool = True,
    val_fraction: float = 0.0,
) -> DatasetBundle:
    """Sample the Sec. III.B data (defaults: Fig. 3's Gamma = 2, d = 2, eta = 1, sigma = 1).

    ``root`` is ignored (the data is generated). With ``balanced_test=False`` the test set has the
    training priors.
    """
    gamma = check_float("gamma", gamma, 1.0)
    d = check_int("d", d, 1)
    eta = check_float("eta", eta, 0.0, low_open=True)
    sigma_pos = check_float("sigma_pos", sigma_pos, 0.0, low_open=True)
    sigma_neg = check_float("sigma_neg", sigma_neg, 0.0, low_open=True)
    num_train = check_int("num_train", num_train, 2)
    num_test = check_int("num_test", num_test, 2)
    seed = check_int("seed", seed, 0)
    if not isinstance(balanced_test, bool | np.bool_):
        raise TypeError(f"balanced_test must be true or false, got {balanced_test!r}")
    rng = np.random.default_rng(seed)
    n_pos = max(1, int(round(num_train / (1.0 + gamma))))
    xtr, ytr = sample_gaussian(num_train - n_pos, n_pos, d, eta, sigma_pos, sigma_neg, rng)
    t_pos = num_test // 2 if balanced_test else max(1, int(round(num_test / (1.0 + gamma))))
    xte, yte = sample_gaussian(num_test - t_pos, t_pos, d, eta, sigma_pos, sigma_neg, rng)
    train = TensorData(torch.from_numpy(xtr), torch.from_numpy(ytr))
    train, val = split_validation(train, val_fraction, seed)
    return DatasetBundle(
        train=train,
        val=val,
        test=TensorData(torch.from_numpy(xte), torch.from_numpy(yte)),
        num_classes=2,
        class_counts=class_counts_of(train.targets, 2),
        multi_label=False,
        input_shape=(d,),
        augment="none",
        name="gaussian",
        class_names=["y=-1", "y=+1"],
    )
