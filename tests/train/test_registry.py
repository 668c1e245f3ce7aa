import pytest
from torch import nn

from lpl_train.losses import available_losses, build_loss, register


@register("_test_dummy")
class _Dummy(nn.Module):
    def __init__(self, scale: float = 1.0, num_classes: int | None = None):
        super().__init__()
        self.scale = scale
        self.num_classes = num_classes


def test_build_passes_params_and_drops_engine_params_it_does_not_take():
    loss = build_loss("_test_dummy", scale=2.0, num_classes=3, class_counts=[5, 4, 1])
    assert loss.scale == 2.0
    assert loss.num_classes == 3


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown loss 'nope'.*_test_dummy"):
        build_loss("nope")


def test_unknown_parameter_is_an_error():
    with pytest.raises(ValueError, match="unknown parameter 'gamma'"):
        build_loss("_test_dummy", gamma=2.0)


def test_registered_names_are_listed():
    assert "_test_dummy" in available_losses()


def test_name_clash_is_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register("_test_dummy")(type("Other", (nn.Module,), {}))
