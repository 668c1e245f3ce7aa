"""The Sec. III.B Gaussian data: priors, means and variances of Eq. 17."""

from __future__ import annotations

import pytest
import torch

from lpl_train.data import build_datasets


def test_priors_and_moments() -> None:
    b = build_datasets(
        "gaussian", seed=1, gamma=3.0, d=4, eta=0.5, sigma_pos=0.5, sigma_neg=2.0, num_train=40000
    )
    x, y = b.train.images, b.train.targets
    assert b.class_counts == [30000, 10000]  # P(+1) : P(-1) = 1 : gamma; class 1 is y = +1
    assert b.input_shape == (4,) and x.dtype == torch.float32
    pos, neg = x[y == 1], x[y == 0]
    assert torch.allclose(pos.mean(0), torch.full((4,), 0.5), atol=0.03)
    assert torch.allclose(neg.mean(0), torch.full((4,), -0.5), atol=0.06)
    assert torch.allclose(pos.std(0), torch.full((4,), 0.5), rtol=0.03)
    assert torch.allclose(neg.std(0), torch.full((4,), 2.0), rtol=0.03)
    assert torch.bincount(b.test.targets).tolist() == [5000, 5000]


def test_seeded_and_validated() -> None:
    a = build_datasets("gaussian", seed=2, num_train=100)
    b = build_datasets("gaussian", seed=2, num_train=100)
    c = build_datasets("gaussian", seed=3, num_train=100)
    assert torch.equal(a.train.images, b.train.images) and not torch.equal(
        a.train.images, c.train.images
    )
    with pytest.raises(ValueError, match="gamma"):
        build_datasets("gaussian", gamma=0.5)
    with pytest.raises(ValueError, match="sigma_pos"):
        build_datasets("gaussian", sigma_pos=0.0)
    with pytest.raises(TypeError, match="d must be an int"):
        build_datasets("gaussian", d=2.5)
