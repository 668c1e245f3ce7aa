"""``lpl_train.engine.evaluate.evaluate`` called directly: what its numbers mean and what it leaves as it was."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lpl_train.engine.evaluate import _EvalMeter, evaluate


class _Fixed(nn.Module):
    """Returns the logits stored for each batch, in order, and notes the mode and layout it was called in."""

    def __init__(self, logits: list[torch.Tensor]) -> None:
        super().__init__()
        self.logits, self.calls = logits, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, x.is_contiguous(memory_format=torch.channels_last)))
        return self.logits[len(self.calls) - 1]


def test_a_class_absent_from_the_test_set_has_no_accuracy_and_no_weight_in_its_group():
    # 3 classes; class 2 has no test sample: its accuracy is undefined, not 0
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [2.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 1, 0])
    out = evaluate(_Fixed([logits]), [(torch.zeros(4, 1), y)], 3, [500, 50, 5], False)
    assert out["per_class_acc"] == [100.0, 50.0, None]
    assert out["top1_error"] == pytest.approx(25.0)
    assert out["acc_many"] == 100.0 and out["acc_medium"] == 50.0
    assert out["acc_few"] is None  # the mean of no class: undefined, written as null


def test_top1_error_counts_samples_not_classes():
    # class 0: 3 of 3 right, class 1: 0 of 1 right; 1 of 4 samples wrong (the balanced error would be 50)
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [2.0, 0.0]])
    y = torch.tensor([0, 0, 0, 1])
    out = evaluate(_Fixed([logits]), [(torch.zeros(4, 1), y)], 2, [10, 1], False)
    assert out["per_class_acc"] == [100.0, 0.0]
    assert out["top1_error"] == pytest.approx(25.0)


def test_evaluate_restores_the_training_mode_and_passes_channels_last_images():
    model = _Fixed([torch.zeros(2, 3)] * 3)
    model.train()
    batch = (torch.zeros(2, 3, 4, 4), torch.tensor([0, 1]))
    evaluate(model, [batch], 3, [1, 1, 1], False)
    evaluate(model, [batch], 3, [1, 1, 1], False, channels_last=True)
    assert model.training
    assert model.calls == [(False, False), (False, True)]  # eval mode; the layout asked for
    model.eval()
    evaluate(model, [batch], 3, [1, 1, 1], False)
    assert not model.training


def test_a_loader_of_empty_batches_is_refused():
    empty = (torch.zeros(0, 1), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="yielded no samples"):
        evaluate(_Fixed([torch.zeros(0, 3)]), [empty], 3, [1, 1, 1], False)
    with pytest.raises(ValueError, match="yielded no samples"):
        evaluate(_Fixed([]), [], 3, [1, 1, 1], False)


def test_sums_are_float64_on_the_cpu():
    # a float32 sum would lose the second batch's loss (ln 2) next to the first's 1e8
    meter = _EvalMeter(2, False, torch.device("cpu"))
    meter.update(torch.tensor([[1e8, 0.0]]), torch.tensor([1]))
    meter.update(torch.zeros(1, 2), torch.tensor([0]))
    loss_sum = meter.read()[0]
    assert loss_sum - 1e8 == pytest.approx(math.log(2), rel=1e-6)


class _LayoutNet(nn.Module):
    """A conv net that notes whether each input it sees is channels-last, in training and in evaluation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.classifier = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 3)
        self.seen: dict[bool, set[bool]] = {True: set(), False: set()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen[self.training].add(x.is_contiguous(memory_format=torch.channels_last))
        return self.classifier(self.conv(x).mean((2, 3)))


@pytest.mark.parametrize("channels_last", [True, False])
def test_fit_gives_the_network_the_memory_layout_it_asks_for(tmp_path, channels_last):
    from lpl_train.engine import Components, fit
    from tests.train.test_engine import TinyLoader, make_cfg, quiet

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 3, 4, 4, generator=g), torch.arange(48) % 3
    model = _LayoutNet()
    comps = Components(model=model, loss=nn.CrossEntropyLoss(), num_classes=3, class_counts=[16] * 3,
                       train_loader=TinyLoader(x, y, 16, True), test_loader=TinyLoader(x, y, 16, False))  # fmt: skip
    fit(
        make_cfg(epochs=1, channels_last=channels_last), tmp_path / "r", components=comps, log=quiet
    )
    assert model.seen == {True: {channels_last}, False: {channels_last}}
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last) is channels_last


def test_a_row_with_a_nan_logit_is_a_wrong_prediction_not_class_0():
    """argmax takes NaN for the largest value: a diverged model (all NaN) scored as 'predicts class 0'
    (100% accuracy on class 0, 69.9% error); its rows are wrong now, in the engine's meter and in
    lpl_train.metrics, and a NaN score column has no AP."""
    from lpl_train import metrics as M

    logits = torch.tensor(
        [[math.nan, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, math.nan, 0.0], [2.0, 0.0, 0.0]]
    )
    y = torch.tensor([0, 1, 1, 0])
    out = evaluate(_Fixed([logits]), [(torch.zeros(4, 1), y)], 3, [500, 50, 5], False)
    assert out["per_class_acc"] == [50.0, 50.0, None] and out["top1_error"] == pytest.approx(50.0)
    assert M.top1_error(logits, y) == pytest.approx(50.0)
    assert M.per_class_accuracy(logits, y, 3)[:2] == [0.5, 0.5]
    scores = torch.tensor([[math.nan, 0.3], [0.2, 0.1], [0.9, 0.8]])
    ap = M.average_precision_per_class(scores, torch.tensor([[0, 1], [1, 0], [0, 1]]))
    assert math.isnan(ap[0]) and ap[1] == pytest.approx(100.0)


def test_fit_evaluates_in_float32_not_under_the_training_autocast(tmp_path, monkeypatch):
    """bf16 logits tie often and argmax breaks a tie towards the lower index (the head class on the
    long-tail sets): the engine evaluates without autocast."""
    from lpl_train.engine import trainer as TR

    from .test_engine import make_cfg, make_components

    seen = []
    real = TR.evaluate

    def spy(model, loader, num_classes, counts, multi_label, autocast=None, channels_last=False,
            **kw):  # fmt: skip
        seen.append(autocast)
        return real(model, loader, num_classes, counts, multi_label, autocast, channels_last, **kw)

    monkeypatch.setattr(TR, "evaluate", spy)
    from lpl_train.engine import fit

    fit(make_cfg(epochs=1, amp="bf16"), tmp_path / "r", components=make_components(), log=print)
    assert seen and all(a is None for a in seen)


def test_a_class_with_a_non_finite_score_makes_the_map_undefined_not_higher():
    """One +inf score (on a negative) left class 1 without an AP, and the mean over the other classes
    reported mAP 100.0 instead of 79.17: a diverged class raised the number. Now the total and the class's
    group are undefined; a class without a test positive still drops out."""
    from lpl_train import metrics as M

    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.2, 0.0], [0.8, 0.9, 0.0], [0.1, 0.3, 0.0]])
    assert M.mean_average_precision(scores, y) == pytest.approx((100.0 + 58.333333) / 2)
    out = evaluate(_Fixed([scores]), [(torch.zeros(4, 1), y)], 3, [500, 5, 50], True)
    assert out["map"] == pytest.approx((100.0 + 58.333333) / 2) and out["map_medium"] is None
    scores[0, 1] = math.inf
    assert math.isnan(M.mean_average_precision(scores, y))
    out = evaluate(_Fixed([scores]), [(torch.zeros(4, 1), y)], 3, [500, 5, 50], True)
    assert out["ap_per_class"][1] is None and out["map"] is None and out["map_tail"] is None
    assert out["map_head"] == pytest.approx(100.0) and out["map_medium"] is None
    g = M.map_groups([100.0, math.nan, math.nan], [500, 5, 50], positives=[2, 2, 0])
    assert g["head"] == 100.0 and math.isnan(g["total"]) and math.isnan(g["tail"])
    assert M.map_groups([100.0, math.nan], [500, 5])["total"] == 100.0  # no positives given
    with pytest.raises(ValueError, match="positives must have 2 entries"):
        M.map_groups([100.0, 50.0], [500, 5], positives=[1])
