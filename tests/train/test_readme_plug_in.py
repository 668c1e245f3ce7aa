"""The README's mixup (timm-style) and train/eval (Lightning-style) examples run and do what they say."""

import re
from pathlib import Path

import torch
import torch.nn.functional as F

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks() -> list[str]:
    section = README.read_text(encoding="utf-8").split("## Use LPL in your own training loop", 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_mixup_example_uses_the_mixed_targets():
    torch.manual_seed(0)
    ns: dict = {}
    exec(compile(_blocks()[1], str(README), "exec"), ns)
    loss, criterion, model = ns["loss"], ns["criterion"], ns["model"]
    y_mix, x_mix = ns["y_mix"], ns["x_mix"]
    assert y_mix.shape == (64, 10) and torch.allclose(y_mix.sum(1), torch.ones(64))
    assert loss.ndim == 0 and torch.isfinite(loss)
    # the mixed-target loss is the mass-weighted sum of the two one-hot losses' class terms; without a
    # perturbation (eval mode) it is exactly torch's soft-target cross-entropy
    with torch.no_grad():
        logits = model(x_mix)
        torch.testing.assert_close(criterion.eval()(logits, y_mix), F.cross_entropy(logits, y_mix))


def test_lightning_style_example_is_perturbed_in_training_and_plain_in_validation():
    ns: dict = {}
    exec(compile(_blocks()[2], str(README), "exec"), ns)
    module = ns["Classifier"]()
    torch.manual_seed(1)
    batch = (torch.randn(32, 20), torch.randint(0, 10, (32,)))
    module.train()
    train_loss = module.training_step(batch, 0)
    module.eval()
    val_loss = module.validation_step(batch, 0)
    with torch.no_grad():
        plain = F.cross_entropy(module.net(batch[0]), batch[1])
    torch.testing.assert_close(val_loss.detach(), plain)
    assert not torch.allclose(train_loss.detach(), plain)
