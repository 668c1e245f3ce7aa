"""Long-tail class profiles and seeded subsampling (the LDAM-DRW construction of CIFAR-LT).

With ``C`` classes, a head size ``n_max`` and an imbalance ratio ``rho = n_max / n_min``:

* ``exp``:  ``n_c = int(n_max * (1/rho) ** (c / (C - 1)))`` for ``c = 0 .. C-1`` (class 0 is the head);
* ``step``: the first ``C // 2`` classes keep ``n_max``, the others get ``int(n_max * (1/rho))``
  (LDAM's arithmetic: ``n_max / rho`` can round the other way, e.g. 49 · (1/49) < 1 = 49 / 49).

These are the profiles of Cao et al. (LDAM-DRW) and Cui et al. that the paper's CIFAR-LT experiments use
(Sec. V); with ``n_max = 5000 / 500`` they give 12,406 (CIFAR-10, rho 100), 20,431 (CIFAR-10, rho 10),
10,847 (CIFAR-100, rho 100) and 19,573 (CIFAR-100, rho 10) training images.

Subsampling follows the same recipe: a ``numpy.random.RandomState(seed)``, then for each class in index
order a shuffle of that class's indices, keeping the first ``n_c``. With ``seed = 0`` and the standard CIFAR
order this selects the same images as the LDAM-DRW reference (``rand_number = 0``).
"""

from __future__ import annotations

import numpy as np

from .common import check_choice, check_float, check_int

PROFILES = ("exp", "step")


def long_tail_counts(
    num_classes: int, n_max: int, imbalance_ratio: float, profile: str = "exp"
) -> list[int]:
    """Per-class sample counts of a long-tail profile (class 0 is the head).

    Args:
        num_classes: number of classes C (>= 2).
        n_max: size of the head class (>= 1).
        imbalance_ratio: rho = n_max / n_min (>= 1; 1 gives the balanced set).
        profile: ``"exp"`` or ``"step"``.
    """
    num_classes = check_int("num_classes", num_classes, 2)
    n_max = check_int("n_max", n_max, 1)
    rho = check_float("imbalance_ratio", imbalance_ratio, 1.0)
    check_choice("profile", profile, PROFILES)
    factor = 1.0 / rho
    if profile == "exp":
        counts = [int(n_max * (factor ** (c / (num_classes - 1.0)))) for c in range(num_classes)]
    else:
        half = num_classes // 2
        counts = [n_max] * half + [int(n_max * factor)] * (num_classes - half)
    if min(counts) < 1:
        # the smallest class gets int(n_max * (1 / rho)): 0 for rho > n_max, and also for some rho = n_max
        # whose product falls just below 1 in floating point (49 * (1 / 49) = 0.9999...)
        hint = (
            f"use imbalance_ratio <= {n_max}"
            if rho > n_max
            else f"{n_max} * (1 / {rho}) is just below 1 in floating point; use a smaller "
            "imbalance_ratio"
        )
        raise ValueError(
            f"imbalance_ratio={rho} with n_max={n_max} leaves a class with no sample; {hint}"
        )
    return counts


def long_tail_indices(targets: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """Indices of a seeded per-class subsample with ``counts[c]`` samples of class ``c``.

    Classes are visited in index order with one ``RandomState(seed)``; each class's indices (in dataset
    order) are shuffled and the first ``counts[c]`` kept. The result is ordered class by class.
    """
    seed = check_int("seed", seed, 0)
    targets = np.asarray(targets)
    if targets.ndim != 1:
        raise ValueError(f"targets must be 1-D class indices, got shape {targets.shape}")
    rng = np.random.RandomState(seed)
    out = []
    for c, n in enumerate(counts):
        idx = np.flatnonzero(targets == c)
        if n > len(idx):
            raise ValueError(f"counts[{c}]={n} exceeds the {len(idx)} samples of class {c}")
        rng.shuffle(idx)
        out.append(idx[:n])
    return np.concatenate(out)


def pareto_reference_counts(
    num_classes: int, n_max: int, n_min: int, shape: float = 6.0, seed: int = 0
) -> list[int]:
    """Seeded Pareto reference distribution of per-class counts, sorted descending.

    ``num_classes`` values are drawn from a Pareto distribution with shape ``shape`` (the long-tail
    multi-label sets of Wu et al. use 6) with ``numpy.random.RandomState(seed)``, sorted in decreasing order
    and mapped affinely so that the largest is ``n_max`` and the smallest ``n_min``.
    """
    num_classes = check_int("num_classes", num_classes, 2)
    n_max = check_int("n_max", n_max, 1)
    n_min = check_int("n_min", n_min, 1)
    if n_min > n_max:
        raise ValueError(f"n_min must be <= n_max, got n_min={n_min}, n_max={n_max}")
    shape = check_float("shape", shape, 0.0, low_open=True)
    draws = np.sort(np.random.RandomState(check_int("seed", seed, 0)).pareto(shape, num_classes))[
        ::-1
    ]
    span = draws[0] - draws[-1]
    scaled = (draws - draws[-1]) / span if span > 0 else np.ones_like(draws)
    return [int(round(n_min + (n_max - n_min) * s)) for s in scaled]


def multilabel_long_tail_ids(
    labels: np.ndarray, target_counts: list[int], class_order: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Greedy seeded selection of multi-label samples approaching per-class target counts.

    ``labels`` is an ``(N, C)`` 0/1 matrix, ``target_counts[k]`` the count wanted for class
    ``class_order[k]``. Classes are visited from the smallest target to the largest; for each, candidate
    samples containing it are visited in a seeded random order and added while the class is below its
    target and no already-satisfied class would go over its own target. Returns sorted row indices.
    """
    labels = np.asarray(labels) > 0
    if labels.ndim != 2:
        raise ValueError(f"labels must be an (N, C) matrix, got shape {labels.shape}")
    n, c = labels.shape
    if len(target_counts) != c or len(class_order) != c:
        raise ValueError(
            f"target_counts and class_order must have {c} entries, got {len(target_counts)} "
            f"and {len(class_order)}"
        )
    target = np.zeros(c, dtype=np.int64)
    target[np.asarray(class_order)] = np.asarray(target_counts)
    rng = np.random.RandomState(check_int("seed", seed, 0))
    chosen = np.zeros(n, dtype=bool)
    have = np.zeros(c, dtype=np.int64)
    for k in np.argsort(target, kind="stable"):
        cand = np.flatnonzero(labels[:, k] & ~chosen)
        rng.shuffle(cand)
        for i in cand:
            if have[k] >= target[k]:
                break
            row = labels[i]
            if np.any(row & (have >= target) & (np.arange(c) != k)):
                continue
            chosen[i] = True
            have += row
    return np.flatnonzero(chosen)
