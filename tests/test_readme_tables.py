"""The README's loss tables list every registered loss, with the defaults its constructor really has."""

import ast
import inspect
import re
import warnings
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
# what a constructor needs to resolve its None defaults (LA+LPL needs the class prior)
MINIMAL = {"num_classes": 4, "class_counts": [40, 30, 20, 10]}


def test_every_registered_loss_has_a_row():
    assert sorted(set(PUBLIC) - set(ROWS)) == []


_DEFAULT = re.compile(r"`(\w+)`=([^,;()`]+?)(?=[,;()]|$| \(| or )")


def _defaults_column(name: str) -> str:
    return [c.strip() for c in ROWS[name].strip("|").split("|")][2]


def _documented(name: str) -> dict[str, str]:
    """The defaults a row writes as `key`=value, with those of the row it says it is "as `other`" first
    (its own values win)."""
    column = _defaults_column(name)
    like = re.match(r"as `([a-z_]+)`", column)
    inherited = _documented(like.group(1)) if like else {}
    return {**inherited, **dict(_DEFAULT.findall(column))}


def test_every_default_written_in_a_row_is_read_by_the_check():
    # a `key` followed by "=" in any other spelling (spaces, a different quote) would escape the check
    for name in PUBLIC:
        column = _defaults_column(name)
        written = re.findall(r"`(\w+)`\s*=", column)
        assert written == [k for k, _ in _DEFAULT.findall(column)], (name, column)


@pytest.mark.parametrize("name", PUBLIC)
def test_defaults_in_the_row_are_the_constructors(name):
    params = inspect.signature(_REGISTRY[name].__init__).parameters
    documented = _documented(name)
    if _defaults_column(name) == "—":  # nothing to document: no parameter but the reduction
        assert set(params) <= {"self", "reduction"}, (name, list(params))
        return
    assert documented, f"{name}: the row documents no default (write `key`=value, or as `other`)"
    for key, text in documented.items():
        value = ast.literal_eval(text.strip())
        assert key in params, (
            f"{name}: README documents {key!r}, the constructor has no such parameter"
        )
        default = params[key].default
        if default is None and value is not None:
            # a None default resolved inside the constructor (e.g. LPL's alpha): the built loss's value
            with warnings.catch_warnings():  # e.g. class_counts that this loss does not use
                warnings.simplefilter("ignore")
                built = _REGISTRY[name](**{k: v for k, v in MINIMAL.items() if k in params})
            assert getattr(built, key) == value, (
                f"{name}: README says {key}={value!r}, the built loss has {getattr(built, key)!r}"
            )
            continue
        assert default == value, (
            f"{name}: README says {key}={value!r}, the constructor's default is {default!r}"
        )
