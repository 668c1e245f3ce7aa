import math

import pytest
import torch

from lpl_train.models.heads import NormedLinear


def test_logits_are_cosines():
    torch.manual_seed(0)
    head = NormedLinear(4, 3)
    # unit columns only at initialisation: training moves them off the sphere, the logits stay cosines
    with torch.no_grad():
        head.weight[:, 0] *= 3.0
        head.weight[:, 1] *= 0.2
        head.weight[:, 2] = torch.tensor([1.0, -2.0, 0.5, 4.0])
    x = torch.randn(5, 4)
    out = head(x).detach()
    w = head.weight.detach()
    for i in range(5):
        for c in range(3):
            cos = float(x[i] @ w[:, c]) / (float(x[i].norm()) * float(w[:, c].norm()))
            assert math.isclose(float(out[i, c]), cos, rel_tol=1e-5, abs_tol=1e-6)
    assert out.abs().max() <= 1.0 + 1e-6


def test_columns_start_unit_length_and_no_bias():
    head = NormedLinear(8, 5)
    assert torch.allclose(head.weight.norm(dim=0), torch.ones(5), atol=1e-6)
    assert [n for n, _ in head.named_parameters()] == ["weight"]


def test_bad_input():
    with pytest.raises(ValueError, match="in_features"):
        NormedLinear(0, 3)
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        NormedLinear(4, 3)(torch.randn(2, 5))
