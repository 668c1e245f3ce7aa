"""The README's loss tables list every registered loss, with the defaults its constructor really has."""

import ast
import inspect
import re
from pathlib import Path

import pytest

from lpl_train.losses import available_losses
from lpl_train.losses.registry import _REGISTRY

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
ROWS = {
    m.group(1): m.group(0)
    for m in re.finditer(r"^\| `([a-z_]+)` \|.*$", README[README.index("## Losses") :], re.M)
}
PUBLIC = [n for n in available_losses() if not n.startswith("_")]
MINIMAL = {"num_classes": 4}  # what a constructor needs to resolve its None defaults


def test_every_registered_loss_has_a_row():
    assert sorted(set(PUBLIC) - set(ROWS)) == []


@pytest.mark.parametrize("name", PUBLIC)
def test_defaults_in_the_row_are_the_constructors(name):
    columns = [c.strip() for c in ROWS[name].strip("|").split("|")]
    params = inspect.signature(_REGISTRY[name].__init__).parameters
    documented = re.findall(r"`(\w+)`=([^,;()`]+?)(?=[,;()]|$| \(| or )", columns[2])
    checked = 0
    for key, text in documented:
        value = ast.literal_eval(text.strip())
        assert key in params, (
            f"{name}: README documents {key!r}, the constructor has no such parameter"
        )
        default = params[key].default
        if default is None and value is not None:
            # a None default resolved inside the constructor (e.g. LPL's alpha): the built loss's value
            built = _REGISTRY[name](**{k: v for k, v in MINIMAL.items() if k in params})
            assert getattr(built, key) == value, (
                f"{name}: README says {key}={value!r}, the built loss has {getattr(built, key)!r}"
            )
            checked += 1
            continue
        assert default == value, (
            f"{name}: README says {key}={value!r}, the constructor's default is {default!r}"
        )
        checked += 1
    assert checked or not documented
