import numpy as np
import pytest

from lpl_train.validation import check_choice, check_float, check_int


def test_numpy_scalars_are_numbers_and_bools_are_not():
    assert check_float("beta", np.float32(0.5), 0.0, 1.0) == 0.5
    assert check_int("seed", np.int64(3), minimum=0) == 3
    with pytest.raises(TypeError, match="gamma must be a real number, got bool True"):
        check_float("gamma", True)
    with pytest.raises(TypeError, match="seed must be an int, got float 1.0"):
        check_int("seed", 1.0)


@pytest.mark.parametrize(
    ("kw", "value", "message"),
    [
        ({"low": 0.0, "high": 1.0, "low_open": True, "high_open": True}, 1.0, r"beta must be in \(0.0, 1.0\), got 1.0"),
        ({"low": 0.0}, -0.5, r"beta must be in \[0.0, inf\), got -0.5"),
        ({"high": 2.0}, 2.5, r"beta must be in \(-inf, 2.0\], got 2.5"),
        ({}, float("nan"), "beta must be finite"),
    ],
)  # fmt: skip
def test_float_range_messages_name_argument_interval_and_value(kw, value, message):
    with pytest.raises(ValueError, match=message):
        check_float("beta", value, **kw)


def test_bounds_are_closed_unless_open():
    assert check_float("x", 0.0, low=0.0) == 0.0
    assert check_float("x", 1.0, high=1.0) == 1.0
    with pytest.raises(ValueError):
        check_float("x", 0.0, low=0.0, low_open=True)


def test_int_minimum_and_choice():
    with pytest.raises(ValueError, match="epoch must be >= 0, got -1"):
        check_int("epoch", -1, minimum=0)
    assert check_choice("split", "mean", ("mean", "index")) == "mean"
    with pytest.raises(ValueError, match=r"split must be one of \['mean', 'index'\], got 'x'"):
        check_choice("split", "x", ("mean", "index"))


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_a_float_without_bounds_must_still_be_finite(value):
    with pytest.raises(ValueError, match="beta must be finite"):
        check_float("beta", value)


@pytest.mark.parametrize("value", [True, False])
def test_an_int_is_not_a_bool(value):
    with pytest.raises(TypeError, match="seed must be an int, got bool"):
        check_int("seed", value)
