"""The "use LPL in your own training loop" example of the README runs and does what it says."""

import re
from pathlib import Path

import torch
import torch.nn.functional as F

from lpl_train.losses.lpl import LPLLoss

DOC = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    text = DOC.read_text()
    section = text.split("## Use LPL in your own training loop", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_example_is_at_most_ten_lines_of_code():
    code = [ln for ln in _example().splitlines() if ln.strip()]
    assert len(code) <= 10


def test_example_trains_with_the_lpl_loss():
    torch.set_flush_denormal(True)
    ns: dict = {}
    exec(compile(_example(), str(DOC), "exec"), ns)
    criterion, model, x, y = ns["criterion"], ns["model"], ns["x"], ns["y"]
    assert isinstance(criterion, LPLLoss)
    assert (criterion.alpha, criterion.epsilon, criterion.split) == (0.01, 0.1, "mean")
    with torch.no_grad():
        logits = model(x)
        final = float(criterion(logits, y))
        # the loss is the cross-entropy of the perturbed logits ...
        assert final == float(F.cross_entropy(criterion.perturb(logits, y), y))
        # ... and training lowered it from its value at the untrained model
        torch.manual_seed(0)
        torch.randn(512, 20), torch.randint(0, 10, (512,))
        fresh = torch.nn.Linear(20, 10)
        assert final < float(criterion(fresh(x), y)) - 0.05
