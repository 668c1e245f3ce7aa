"""One 64-bit seed from several integers, for random streams that must differ by run, rank or epoch."""

from __future__ import annotations

import numpy as np


def derived_seed(*entropy: int) -> int:
    """A seed in [0, 2**64) from the non-negative integers ``entropy`` (NumPy's ``SeedSequence``): every
    tuple starts its own stream, where sums or products of the parts would collide."""
    low, high = np.random.SeedSequence(list(entropy)).generate_state(2, np.uint32).tolist()
    return (high << 32) | low
