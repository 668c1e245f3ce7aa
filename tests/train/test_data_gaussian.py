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


def test_subset_takes_indices_or_a_boolean_mask_and_refuses_other_indices():
    data = build_datasets("gaussian", num_train=10, num_test=4).train
    mask = data.targets == 1
    picked = data.subset(mask)
    assert len(picked) == int(mask.sum()) and bool((picked.targets == 1).all())
    assert torch.equal(picked.images, data.images[mask])
    assert torch.equal(data.subset(mask.numpy()).images, picked.images)
    assert torch.equal(data.subset([3, 1]).targets, data.targets[[3, 1]])
    assert len(data.subset([])) == 0
    with pytest.raises(ValueError, match=r"boolean mask for subset must have shape \(10,\)"):
        data.subset(mask[:5])
    with pytest.raises(TypeError, match="integer indices or a boolean mask, got dtype float32"):
        data.subset(torch.tensor([1.7, 2.2]))


def test_balanced_test_must_be_a_bool():
    with pytest.raises(TypeError, match="balanced_test must be true or false, got 'no'"):
        build_datasets("gaussian", balanced_test="no")


def test_a_val_fraction_too_small_to_give_any_class_a_sample_is_refused():
    """round(0.01 * n_c) is 0 for every class of 20 samples: the run would have had no validation split
    and said nothing; 0.1 gives one (the 2 validation samples of 0.1 * 13 and 0.1 * 7, rounded)."""
    from lpl_train.data import build_datasets

    with pytest.raises(
        ValueError, match=r"^val_fraction=0\.01 leaves no validation sample: .*13\)"
    ):
        build_datasets("gaussian", num_train=20, val_fraction=0.01)
    assert len(build_datasets("gaussian", num_train=20, val_fraction=0.1).val) == 2
