"""Metrics against hand-computed cases and scikit-learn's average precision."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from lpl_train.metrics import (
    average_precision_per_class,
    class_groups,
    group_accuracy,
    map_groups,
    mean_average_precision,
    per_class_accuracy,
    top1_error,
)


def test_top1_and_per_class() -> None:
    logits = torch.tensor([[2.0, 1, 0], [0, 3, 1], [1, 0, 2], [5, 0, 0], [0, 0, 1]])
    target = torch.tensor([0, 1, 1, 2, 2])
    # predictions 0, 1, 2, 0, 2 -> wrong on samples 2 and 3
    assert top1_error(logits, target) == pytest.approx(40.0)
    acc = per_class_accuracy(logits, target, 4)
    assert acc[:3] == [1.0, 0.5, 0.5] and math.isnan(acc[3])


def test_top1_error_is_computed_in_float64() -> None:
    # one wrong of three is 100/3 percent to float64 precision, not a float32 mean (33.33333433)
    logits = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert top1_error(logits, torch.tensor([0, 1, 1])) == pytest.approx(100.0 / 3, rel=1e-12)


def test_groups() -> None:
    # OLTR's single-label rule: many > 100, few < 20, so a class of exactly 100 is medium
    counts = [500, 101, 100, 20, 19, 1]
    assert class_groups(counts) == {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}
    g = group_accuracy([0.9, 0.7, 0.5, 0.3, 0.2, 0.0], counts)
    assert (
        g["many"] == pytest.approx(0.8)
        and g["medium"] == pytest.approx(0.4)
        and g["few"] == pytest.approx(0.1)
    )
    assert math.isnan(group_accuracy([0.5], [5])["many"])


def test_class_counts_from_numpy_or_torch_group_as_a_list_does() -> None:
    # np.bincount / torch.bincount of the training labels: non-negative ints, not refused as if not
    counts = [500, 101, 100, 20, 19, 1]
    acc = [0.9, 0.7, 0.5, 0.3, 0.2, 0.0]
    for c in (np.array(counts), torch.tensor(counts), [np.int64(k) for k in counts]):
        assert class_groups(c) == class_groups(counts)
        assert group_accuracy(acc, c) == group_accuracy(acc, counts)
        assert map_groups(acc, c) == map_groups(acc, counts)
    with pytest.raises(ValueError, match="non-negative ints"):
        class_groups(np.array([5.0, 1.0]))
    with pytest.raises(ValueError, match="non-negative ints"):
        class_groups(torch.tensor([5, -1]))


def test_fmnist_lt100_class_of_100_is_medium_but_voc_class_of_100_is_head() -> None:
    fm = [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]  # Fashion-MNIST-LT 100:1
    assert class_groups(fm) == {"many": list(range(8)), "medium": [8, 9], "few": []}
    voc = [6, 34, 8, 14, 154, 17, 249, 29, 479, 4, 240, 48, 11, 20, 775, 100, 5, 82, 7, 64]
    ap = [float(i) for i in range(20)]
    head = [4, 6, 8, 10, 14, 15]  # Wu et al.'s VOC-MLT head split (6/6/8) includes class 15 (100)
    out = map_groups(ap, voc)
    assert out["head"] == pytest.approx(sum(head) / 6)
    assert out["medium"] == pytest.approx((1 + 7 + 11 + 13 + 17 + 19) / 6)
    assert out["tail"] == pytest.approx((0 + 2 + 3 + 5 + 9 + 12 + 16 + 18) / 8)


def test_ap_hand_case() -> None:
    # scores 0.9(+) 0.8(-) 0.7(+) 0.1(-): AP = 1*1/2 + (2/3)*1/2 = 5/6
    scores = torch.tensor([[0.9], [0.8], [0.7], [0.1]])
    target = torch.tensor([[1.0], [0], [1], [0]])
    assert average_precision_per_class(scores, target)[0] == pytest.approx(100 * 5 / 6)


def test_ap_matches_sklearn_with_ties() -> None:
    g = torch.Generator().manual_seed(0)
    n, c = 300, 12
    target = (torch.rand(n, c, generator=g) < torch.linspace(0.02, 0.5, c)).float()
    scores = torch.randn(n, c, generator=g) + 1.5 * target
    scores[:, :4] = (scores[:, :4] * 2).round() / 2  # many ties in 4 columns
    ours = average_precision_per_class(scores, target)
    for k in range(c):
        ref = 100 * average_precision_score(target[:, k].numpy(), scores[:, k].numpy())
        assert ours[k] == pytest.approx(ref, abs=1e-9)
    assert mean_average_precision(scores, target) == pytest.approx(sum(ours) / c)


def test_class_without_positive_is_ignored() -> None:
    scores = torch.tensor([[0.2, 0.9], [0.8, 0.1]])
    target = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    ap = average_precision_per_class(scores, target)
    assert math.isnan(ap[0]) and ap[1] == pytest.approx(100.0)
    assert mean_average_precision(scores, target) == pytest.approx(100.0)


def test_map_groups() -> None:
    out = map_groups([90.0, 80.0, 60.0, 40.0, 20.0], [775, 100, 50, 19, 4])
    assert out == {"total": pytest.approx(58.0), "head": 85.0, "medium": 60.0, "tail": 30.0}


def test_validation() -> None:
    with pytest.raises(ValueError, match="logits must have shape"):
        top1_error(torch.zeros(3), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="target values"):
        top1_error(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="integer class indices"):
        top1_error(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="0/1"):
        mean_average_precision(torch.zeros(2, 2), torch.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="class_counts must have 2"):
        group_accuracy([0.1, 0.2], [1])


def test_every_integer_target_dtype_is_taken_as_the_losses_take_it() -> None:
    # int8 labels train with the losses; the metrics take them too (and still refuse bool and floats)
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0]])
    for dtype in (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64):
        target = torch.tensor([0, 2, 2], dtype=dtype)
        assert top1_error(logits, target) == pytest.approx(100.0 / 3), dtype
        acc = per_class_accuracy(logits, target, 3)
        assert acc[0] == 1.0 and math.isnan(acc[1]) and acc[2] == 0.5, dtype
    with pytest.raises(TypeError, match="integer class indices, got torch.bool"):
        top1_error(logits[:2], torch.tensor([True, False]))


def test_argument_checks_on_class_counts_and_thresholds() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    target = torch.tensor([0, 1])
    # fewer classes than the logits' width would silently drop class 2
    with pytest.raises(
        ValueError, match=r"num_classes must be an int >= 3 \(logits width\), got 2"
    ):
        per_class_accuracy(logits, target, 2)
    assert per_class_accuracy(logits, target, 3)[:2] == [1.0, 1.0]
    # few above many leaves no medium class and reads many/few backwards: refused
    with pytest.raises(ValueError, match=r"0 < few <= many, got many=10, few=20"):
        class_groups([5, 50], many=10, few=20)
    with pytest.raises(ValueError, match=r"0 < few <= many, got many=10, few=20"):
        map_groups([50.0, 60.0], [5, 50], head=10, tail=20)
    with pytest.raises(ValueError, match="0 < few <= many"):
        group_accuracy([0.5, 0.5], [5, 50], many=20, few=0)


def test_empty_input_and_mismatched_class_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one sample, got 0"):
        top1_error(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))
    # one training count per class: a longer list is refused, not read past the accuracies
    with pytest.raises(ValueError, match="class_counts must have 2 entries"):
        group_accuracy([0.1, 0.2], [1, 2, 3])
    with pytest.raises(ValueError, match="class_counts must have 2 entries"):
        map_groups([10.0, 20.0], [150, 5, 30])
