"""What every summary of runs shares: mean ± std over distinct seeds, the many/medium/few class groups, and
the seed-noise verdict of a comparison.

Class groups. Two definitions are in use in the long-tail literature, and each table says which it used:

* ``counts`` (the default everywhere): the paper's rule, from OLTR (Liu et al.) — a class is *many* with more
  than 100 training samples, *few* with fewer than 20, *medium* otherwise; for multi-label data Wu et al.'s
  head (at least 100 positives) / tail (fewer than 20), as in ``lpl_train.metrics``.
* ``ranks``: by rank of the training count — the ``round(f_many·C)`` most frequent classes are many/head,
  the ``round(f_few·C)`` least frequent few/tail. On a 10-class set the paper's thresholds can leave whole
  groups empty, so the CPU-scale study chooses this one explicitly (``group_fractions`` in its file).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_GROUPS",
    "GroupRule",
    "class_groups_by_rank",
    "diverged_note",
    "fmt_mean_std",
    "mean_std",
    "nanmean",
    "parse_groups",
    "verdict",
]


def nanmean(values: Iterable[float | None]) -> float:
    """Mean of the defined values (None and NaN, of any float type, left out); NaN when none is left."""
    v = [x for x in values if x is not None and not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


def mean_std(values: Sequence[float | None]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n − 1) of the defined values; std None for one value, and
    ``(nan, None)`` for none."""
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return math.nan, None
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None


def fmt_mean_std(ms: tuple[float, float | None] | None, empty: str = "—") -> str:
    """``"12.34 ± 0.56"``; the mean alone for a single seed; ``empty`` when undefined."""
    if ms is None or math.isnan(ms[0]):
        return empty
    mean, std = ms
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def diverged_note(seeds: Sequence[int]) -> str:
    """``"seed 1 diverged"`` / ``"seeds 0, 2 diverged"``: the seeds of a row whose runs diverged (no test
    metrics; left out of its means), for its seeds column; ``""`` for none."""
    if not seeds:
        return ""
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} diverged"


def verdict(
    a: tuple[float, float | None], b: tuple[float, float | None], lower_better: bool
) -> dict[str, Any]:
    """Does ``a`` beat ``b``, given their seed std? ``status`` is "held" / "did not hold" when the difference
    of the means is at least the combined seed std sqrt(s_a² + s_b²) (``noise``), else "not established",
    with ``favours`` saying on which side the means fall. A side with one seed (std None) has no spread to
    compare with: "not established" with ``noise`` None, whatever the difference."""
    (va, sa), (vb, sb) = a, b
    held = va < vb if lower_better else va > vb
    if sa is None or sb is None:
        return {"status": "not established", "favours": held, "delta": abs(va - vb), "noise": None}
    noise = math.sqrt(sa**2 + sb**2)
    status = "not established" if abs(va - vb) < noise else ("held" if held else "did not hold")
    return {"status": status, "favours": held, "delta": abs(va - vb), "noise": noise}


# -------------------------------------------------------------------------------------------- groups
def class_groups_by_rank(
    class_counts: Sequence[int], fractions: Sequence[float] = (0.3, 0.3)
) -> dict[str, list[int]]:
    """Many/medium/few classes by rank of the training count (ties broken by class index): the
    ``round(fractions[0] * C)`` most frequent are "many", the ``round(fractions[1] * C)`` least frequent
    "few" (fewer where the two roundings add up to more than C: a class is in one group only), the rest
    "medium"."""
    counts = list(class_counts)
    if not counts or any(
        isinstance(c, bool) or not isinstance(c, int | float) or c < 0 for c in counts
    ):
        raise ValueError(f"class_counts must be a non-empty list of counts >= 0, got {counts!r}")
    if len(fractions) != 2 or any(not 0 <= f <= 1 for f in fractions) or sum(fractions) > 1:
        raise ValueError(
            f"fractions must be two numbers in [0, 1] summing to <= 1, got {fractions!r}"
        )
    c = len(counts)
    order = sorted(range(c), key=lambda i: (-counts[i], i))
    n_many = round(fractions[0] * c)
    n_few = min(round(fractions[1] * c), c - n_many)  # (0.5, 0.5) of 3 classes rounds to 2 + 2
    return {
        "many": sorted(order[:n_many]),
        "medium": sorted(order[n_many : c - n_few]),
        "few": sorted(order[c - n_few :]),
    }


def class_groups_by_count(
    class_counts: Iterable[float], many: float, few: float, many_inclusive: bool = False
) -> dict[str, list[int]]:
    """Class indices per group by training count: ``many`` above ``many`` (at ``many`` too with
    ``many_inclusive``, the multi-label rule), ``few`` below ``few``, the rest ``medium``. Unchecked: the
    callers check the counts and thresholds."""
    g: dict[str, list[int]] = {"many": [], "medium": [], "few": []}
    for c, k in enumerate(class_counts):
        top = k >= many if many_inclusive else k > many
        g["many" if top else "few" if k < few else "medium"].append(c)
    return g


DEFAULT_MANY, DEFAULT_FEW = 100, 20  # the paper's count thresholds


@dataclass(frozen=True)
class GroupRule:
    """A definition of the many/medium/few (head/medium/tail) groups; see the module docstring."""

    kind: str = "counts"
    many: int = DEFAULT_MANY
    few: int = DEFAULT_FEW
    fractions: tuple[float, float] = (0.3, 0.3)

    def __post_init__(self) -> None:
        if self.kind not in ("counts", "ranks"):
            raise ValueError(f"group rule must be 'counts' or 'ranks', got {self.kind!r}")
        if self.kind == "counts" and not all(
            isinstance(t, int) and not isinstance(t, bool) for t in (self.many, self.few)
        ):
            raise ValueError(
                f"group count thresholds must be ints, got many={self.many!r}, few={self.few!r}"
            )
        if not 0 < self.few <= self.many:
            raise ValueError(
                f"group thresholds need 0 < few <= many (counts:MANY,FEW), got many={self.many}, "
                f"few={self.few}"
            )
        class_groups_by_rank([1], self.fractions)  # checks the fractions

    def split(self, class_counts: Sequence[int], multi_label: bool = False) -> dict[str, list[int]]:
        """Class indices of the groups ``many``, ``medium``, ``few`` for these training counts."""
        if self.kind == "ranks":
            return class_groups_by_rank(class_counts, self.fractions)
        return class_groups_by_count(class_counts, self.many, self.few, many_inclusive=multi_label)

    def spec(self) -> str:
        """The rule as :func:`parse_groups` reads it, e.g. ``"counts:100,20"``."""
        if self.kind == "ranks":
            return f"ranks:{self.fractions[0]},{self.fractions[1]}"
        return f"counts:{self.many},{self.few}"

    def describe(self) -> str:
        """The rule in words, to follow ``"groups: "`` at the head of a table."""
        if self.kind == "ranks":
            f_many, f_few = self.fractions
            return (f"the {f_many:.0%} most frequent training classes (many/head), the {f_few:.0%} least "
                    "frequent (few/tail), the rest (medium)")  # fmt: skip
        paper = (self.many, self.few) == (DEFAULT_MANY, DEFAULT_FEW)
        source = (
            "the paper's count rule"
            if paper
            else f"the paper's count rule uses {DEFAULT_MANY} and {DEFAULT_FEW}"
        )
        return (f"many/head = more than {self.many} training samples (multi-label: at least {self.many} "
                f"positives), few/tail = fewer than {self.few}, the rest medium ({source})")  # fmt: skip


DEFAULT_GROUPS = GroupRule()


def parse_groups(spec: str) -> GroupRule:
    """``"counts"``, ``"counts:100,20"`` (many, few), ``"ranks"`` or ``"ranks:0.3,0.3"`` → a rule."""
    if not isinstance(spec, str):
        raise TypeError(f"groups must be a string, got {type(spec).__name__}")
    kind, colon, rest = spec.partition(":")
    try:  # "counts:" (nothing after the colon) is malformed, not the default
        nums = [float(x) for x in rest.split(",")] if colon else []
    except ValueError:
        nums = [math.nan]
    if kind not in ("counts", "ranks") or len(nums) not in (0, 2) or any(map(math.isnan, nums)):
        raise ValueError(
            f"groups {spec!r} must be 'counts', 'counts:MANY,FEW', 'ranks' or 'ranks:F_MANY,F_FEW'"
        )
    if kind == "ranks":
        return GroupRule("ranks", fractions=(nums[0], nums[1]) if nums else (0.3, 0.3))
    if nums and not all(n.is_integer() for n in nums):
        raise ValueError(f"groups {spec!r}: count thresholds must be integers")
    return GroupRule("counts", *(int(n) for n in nums)) if nums else GroupRule("counts")
