"""What runs trained by :func:`lpl_train.experiment.execute` achieved, read back from their run records
(``metrics.jsonl``): the images/s of all of them together, of each alone, and of all of them over the time in
which they trained at once (the figure to compare N concurrent runs with one run's rate)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lpl_train.experiment import Outcome

__all__ = ["epoch_spans", "overlap_throughput", "throughput"]


def throughput(outcomes: Sequence[Outcome], wall_s: float) -> dict[str, Any]:
    """Training throughput of the runs trained in ``outcomes`` (status ``trained``), from their run records
    (``metrics.jsonl``: ``images_per_s`` × ``train_time_s`` per epoch, and ``train_end``).

    Returns ``runs``, ``images`` (training images of those runs, in the epochs trained by this call: a
    resumed run's earlier epochs are left out), ``aggregate_images_per_s``
    (``images / wall_s``: what N concurrent runs achieve together, start-up and evaluation included),
    ``mean_run_images_per_s`` (the mean over runs of each run's own training rate), and
    ``overlap_images_per_s`` / ``overlap_s`` (:func:`overlap_throughput`: the runs' rate together while
    every one of them was past its first epoch and before the end of its last, evaluations between
    epochs included; None / 0 where that window is empty).
    """
    from lpl_train.engine import read_metrics

    if not isinstance(wall_s, int | float) or wall_s <= 0:
        raise ValueError(f"wall_s must be a number > 0, got {wall_s!r}")
    images, rates, spans = 0.0, [], []
    for o in outcomes:
        if o.status != "trained" or not (o.run.out / "metrics.jsonl").is_file():
            continue
        recs = [r for r in read_metrics(o.run.out)[o.first_epoch :] if r.get("images_per_s")]
        n = sum(r["images_per_s"] * r["train_time_s"] for r in recs)
        t = sum(r["train_time_s"] for r in recs)
        if t > 0:
            images += n
            rates.append(n / t)
            spans.append(epoch_spans(recs))
    rate, window = overlap_throughput(spans)
    return {
        "runs": len(rates),
        "images": int(round(images)),
        "aggregate_images_per_s": images / wall_s,
        "mean_run_images_per_s": sum(rates) / len(rates) if rates else 0.0,
        "overlap_images_per_s": rate,
        "overlap_s": window,
    }


def epoch_spans(records: Sequence[dict[str, Any]]) -> list[tuple[float, float, float]]:
    """(start, end, images) of the training part of each epoch record that has ``train_end`` (Unix time),
    ``train_time_s`` and ``images_per_s``."""
    out = []
    for r in records:
        end, t, rate = r.get("train_end"), r.get("train_time_s"), r.get("images_per_s")
        if isinstance(end, int | float) and t and rate:
            out.append((end - t, end, rate * t))
    return out


def overlap_throughput(
    runs: Sequence[Sequence[tuple[float, float, float]]], skip_first: bool = True
) -> tuple[float | None, float]:
    """Images/s of runs trained at the same time, over the time they all trained steadily.

    ``runs``: per run, its epochs' (start, end, images) in order, as :func:`epoch_spans` gives them. The
    window opens when the last run starts its second epoch (with ``skip_first``: the first epoch of a
    call pays warm-up and graph recording) and closes when the first run ends its last epoch; each
    epoch's images count in proportion to the part of its training time inside the window, and the gaps
    between epochs (evaluation, checkpoints) count as time. Returns (images per second, window length in
    s), or (None, 0.0) when there is no run or no common window. With one run it is that run's steady rate,
    its evaluations included: the figure N runs at once are compared with."""
    steady = [list(r[1:] if skip_first else r) for r in runs]
    if not steady or any(not r for r in steady):
        return None, 0.0
    lo = max(r[0][0] for r in steady)
    hi = min(r[-1][1] for r in steady)
    if hi <= lo:
        return None, 0.0
    images = 0.0
    for r in steady:
        for start, end, n in r:
            inside = min(end, hi) - max(start, lo)
            if inside > 0 and end > start:
                images += n * inside / (end - start)
    return images / (hi - lo), hi - lo
