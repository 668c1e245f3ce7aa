"""Learning-rate schedules: warm-up (per epoch or per iteration), then step, cosine or constant."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["lr_factor"]


def lr_factor(epoch: int, it: int, iters_per_epoch: int, schedule: dict[str, Any]) -> float:
    """Learning-rate multiplier at iteration ``it`` (0-indexed) of epoch ``epoch`` (0-indexed).

    * ``warmup_epochs = W``: factor (epoch+1)/W during the first W epochs (LDAM/CB: lr·e/5, e = 1..5).
    * ``warmup_iters = I``: linear from ``warmup_start_factor`` (default 0) to 1 over the first I
      iterations (DB: 500, 1/3). One warm-up or the other, not both.
    * ``kind = "step"`` (the default): after the k-th milestone epoch, ``factors[k-1]`` if given, else
      ``gamma**k`` (``gamma`` default 0.1).
    * ``kind = "cosine"``: 0.5·(1 + cos(π t / T)) per iteration over all iterations after the warm-up
      (milestones are not used; ``lpl-train`` warns when a cosine config sets them).
    * ``kind = "constant"``: 1.
    """
    if not isinstance(schedule, dict) or "epochs" not in schedule:
        raise TypeError(f"schedule must be a [schedule] table with 'epochs', got {schedule!r}")
    if iters_per_epoch < 1:
        raise ValueError(f"iters_per_epoch must be >= 1, got {iters_per_epoch}")
    if epoch < 0 or it < 0:
        raise ValueError(f"epoch and it must be >= 0, got epoch={epoch}, it={it}")
    total_epochs = schedule["epochs"]
    step = epoch * iters_per_epoch + it
    warm = 1.0
    w_ep, w_it = schedule.get("warmup_epochs", 0), schedule.get("warmup_iters", 0)
    if w_ep and w_it:
        raise ValueError(
            f"schedule sets both warmup_epochs={w_ep} and warmup_iters={w_it}; keep one of them"
        )
    if w_ep and epoch < w_ep:
        warm = (epoch + 1) / w_ep
    elif w_it and step < w_it:
        start = schedule.get("warmup_start_factor", 0.0)
        warm = start + (1.0 - start) * step / w_it
    kind = schedule.get("kind", "step")
    if kind == "constant":
        base = 1.0
    elif kind == "step":
        passed = sum(1 for m in schedule.get("milestones", []) if epoch >= m)
        factors = schedule.get("factors", [])
        base = (
            (factors[passed - 1] if factors else schedule.get("gamma", 0.1) ** passed)
            if passed
            else 1.0
        )
    elif kind == "cosine":
        offset = w_ep * iters_per_epoch if w_ep else w_it
        total = max(1, total_epochs * iters_per_epoch - offset)
        t = min(max(0, step - offset), total)
        base = 0.5 * (1.0 + math.cos(math.pi * t / total))
    else:
        raise ValueError(f"schedule kind must be step, cosine or constant; got {kind!r}")
    return warm * base
