"""``lr_factor`` against the schedules written out by hand: the cosine after a warm-up, step decay by
``gamma``, and the end of the schedule."""

from __future__ import annotations

import math

import pytest

from lpl_train.engine.schedules import lr_factor


def test_cosine_starts_after_the_warm_up_epochs_and_ends_at_zero():
    sched = {"epochs": 10, "kind": "cosine", "warmup_epochs": 2}
    # 5 iterations per epoch: warm-up (e + 1)/2 for epochs 0-1, then a cosine over the other 40 steps
    assert lr_factor(0, 3, 5, sched) == 0.5 and lr_factor(1, 4, 5, sched) == 1.0
    assert lr_factor(2, 0, 5, sched) == 1.0
    assert lr_factor(6, 0, 5, sched) == pytest.approx(0.5)  # step 30 = 20 of 40
    assert lr_factor(9, 4, 5, sched) == pytest.approx(0.5 * (1 + math.cos(math.pi * 39 / 40)))
    assert lr_factor(12, 0, 5, sched) == pytest.approx(0.0, abs=1e-15)  # past the end: stays at 0


def test_cosine_after_warm_up_iterations():
    sched = {"epochs": 4, "kind": "cosine", "warmup_iters": 6, "warmup_start_factor": 0.25}
    assert lr_factor(0, 0, 5, sched) == 0.25
    assert lr_factor(0, 3, 5, sched) == pytest.approx(0.25 + 0.75 * 3 / 6)
    assert lr_factor(1, 1, 5, sched) == 1.0  # step 6: the cosine's first step
    assert lr_factor(2, 2, 5, sched) == pytest.approx(0.5 * (1 + math.cos(math.pi * 6 / 14)))


def test_step_decay_by_gamma_or_by_the_given_factors():
    sched = {"epochs": 6, "kind": "step", "milestones": [2, 4], "gamma": 0.2}
    assert [lr_factor(e, 0, 3, sched) for e in range(6)] == pytest.approx(
        [1, 1, 0.2, 0.2, 0.04, 0.04])  # fmt: skip
    sched = {"epochs": 200, "kind": "step", "milestones": [160, 180], "factors": [0.01, 0.0001],
             "warmup_epochs": 5}  # fmt: skip
    assert [lr_factor(e, 0, 3, sched) for e in (0, 4, 5, 159, 160, 179, 180)] == pytest.approx(
        [0.2, 1, 1, 1, 0.01, 0.01, 0.0001])  # fmt: skip


def test_defaults_of_a_partial_schedule_and_one_warm_up_only():
    # kind "step" with gamma 0.1 when not given; an iteration warm-up starts from 0 when not given
    assert [lr_factor(e, 0, 3, {"epochs": 4, "milestones": [1, 3]}) for e in range(4)] == (
        pytest.approx([1, 0.1, 0.1, 0.01]))  # fmt: skip
    sched = {"epochs": 2, "kind": "constant", "warmup_iters": 4}
    assert [lr_factor(0, i, 5, sched) for i in range(5)] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    with pytest.raises(ValueError, match="warmup_epochs=1 and warmup_iters=4"):
        lr_factor(0, 0, 5, {**sched, "warmup_epochs": 1})
