"""One experiment machinery: grids, seeds and run folders, for ``lpl-train sweep`` and for studies.

A *plan* is a list of :class:`PlannedRun` (a validated config, its run folder, its seed and grid point); a
*runner* says when a run folder is finished, how to read its result back and how to train it. :func:`execute`
goes through a plan the same way for every caller: a finished run is read back, not trained again; a run
folder holding a checkpoint is resumed; a folder being trained by another process (it holds the folder's
OS lock, taken by ``engine.fit``) is left alone; ``jobs > 1`` trains runs in parallel worker processes (one
CPU thread each; on a machine with one GPU every worker trains on it, with its own copy of the data).
:func:`throughput` reads back from the runs' records what they achieved together.

``lpl-train sweep`` plans with :func:`plan_sweep` and runs with :class:`ConfigRunner` (``engine.fit`` on the
config); a study (``lpl_train.study``) plans its selection and final runs from its declarative file and runs
them with its own runner, which adds the validation split and the test evaluation around the same ``fit``.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "ConfigRunner",
    "PlannedRun",
    "Runner",
    "epoch_spans",
    "execute",
    "expand_grid",
    "overlap_throughput",
    "parse_grid",
    "plan_sweep",
    "point_name",
    "throughput",
]

CHECKPOINT = "checkpoint.pt"  # the engine's checkpoint file: its presence means "resume"


@dataclass
class PlannedRun:
    """One run of a plan: ``cfg`` (validated) is trained into ``out``; ``key`` names it in logs and records.
    A study's runs carry their spec in ``meta`` and build their config when they train (``cfg`` None)."""

    key: str
    out: Path
    cfg: dict[str, Any] | None
    seed: int
    point: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


class Runner(Protocol):
    """What :func:`execute` needs to know about a kind of run (picklable, for worker processes)."""

    def finished(self, run: PlannedRun) -> bool: ...

    def load(self, run: PlannedRun) -> dict[str, Any]: ...

    def train(self, run: PlannedRun, resume: bool) -> dict[str, Any]: ...


# ---------------------------------------------------------------------------------------------- grids
def parse_grid(items: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """``["optim.lr=0.1,0.05", ...]`` → ``[("optim.lr", [0.1, 0.05]), ...]`` (values parsed as TOML)."""
    from lpl_train.config import ConfigError, parse_value

    grid = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r} must look like key=v1,v2")
        key, vals = item.split("=", 1)
        values = [parse_value(v.strip()) for v in vals.split(",") if v.strip()]
        if not key.strip() or not values:
            raise ConfigError(f"--grid {item!r} must name a key and at least one value")
        grid.append((key.strip(), values))
    return grid


def expand_grid(grid: dict[str, Sequence[Any]] | Sequence[tuple[str, Sequence[Any]]]) -> list[dict]:
    """All points of a grid (cartesian product, keys in the given order); an empty grid gives ``[{}]``.

    >>> expand_grid({"a": [1, 2], "b": ["x"]})
    [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
    """
    if isinstance(grid, dict):
        pairs = list(grid.items())
    elif isinstance(grid, list | tuple):
        pairs = list(grid)
    else:
        raise TypeError(f"grid must be a dict of lists, got {type(grid).__name__}")
    for k, v in pairs:
        if not isinstance(v, list | tuple) or len(v) == 0:
            raise ValueError(f"grid[{k!r}] must be a non-empty list of values, got {v!r}")
    keys = [k for k, _ in pairs]
    return [
        dict(zip(keys, vals, strict=True)) for vals in itertools.product(*[v for _, v in pairs])
    ]


def point_name(point: dict[str, Any] | Sequence[tuple[str, Any]]) -> str:
    """Folder name of a grid point: ``default``, or ``key=value,key=value`` with any character other than
    letters, digits and ``._-=,`` replaced by ``_``."""
    if isinstance(point, dict):
        items = list(point.items())
    elif isinstance(point, list | tuple):
        items = list(point)
    else:
        raise TypeError(f"point must be a dict, got {type(point).__name__}")
    if not items:
        return "default"
    text = ",".join(f"{k}={v}" for k, v in items)
    return "".join(c if c.isalnum() or c in "._-=," else "_" for c in text)


def plan_sweep(
    config: str | Path,
    overrides: Sequence[str],
    grid: Sequence[tuple[str, list[Any]]],
    seeds: Sequence[int],
    epochs: int | None,
    root: str | Path,
) -> list[PlannedRun]:
    """The runs of ``lpl-train sweep``: every grid point × seed, in ``root/<point>/seed<k>``."""
    from lpl_train.config import ConfigError, _toml_value, load_config

    runs: list[PlannedRun] = []
    folders: dict[str, dict[str, Any]] = {}
    for point in expand_grid(list(grid)):
        sets = [f"{k}={_toml_value(v)}" for k, v in point.items()]
        name = point_name(point)
        if name in folders:  # point_name maps some distinct values to one folder name
            raise ConfigError(
                f"grid points {folders[name]} and {point} share the run folder {name!r}; give the grid "
                "distinct values (folder names keep letters, digits and ._-=, only)"
            )
        folders[name] = point
        for seed in seeds:
            cfg = load_config(config, [*overrides, *sets, f"train.seed={seed}"], epochs)
            key = f"{name}/seed{seed}"
            runs.append(PlannedRun(key, Path(root) / key, cfg, seed, point))
    return runs


# ------------------------------------------------------------------------------------------ execution
@dataclass
class ConfigRunner:
    """A plain config run: finished when ``final.json`` exists; trained by ``engine.fit``."""

    quiet: bool = False

    def finished(self, run: PlannedRun) -> bool:
        return (run.out / "final.json").is_file()

    def load(self, run: PlannedRun) -> dict[str, Any]:
        """The finished run's ``final.json``, after checking that it ran this run's config.

        Raises:
            ConfigMismatch: the folder's ``config.toml`` differs (e.g. the sweep was called again into
                the same ``--out`` with other ``--set`` or ``--epochs``); the keys are named.
        """
        from lpl_train.config import dumps_toml
        from lpl_train.engine.files import ConfigMismatch, config_differences

        stored = run.out / "config.toml"
        if stored.is_file() and run.cfg is not None:
            diff = config_differences(stored.read_text(encoding="utf-8"), dumps_toml(run.cfg))
            if diff:
                raise ConfigMismatch(
                    f"{str(run.out)!r} holds a finished run of another config (it differs in "
                    f"{', '.join(diff)}); sweep into another --out, or remove that folder to retrain it"
                )
        return json.loads((run.out / "final.json").read_text(encoding="utf-8"))

    def train(self, run: PlannedRun, resume: bool) -> dict[str, Any]:
        """``engine.fit``; a run whose loss diverges is returned as ``{"diverged": why}`` (its folder
        keeps the last good checkpoint) so the other runs of the sweep go on."""
        from lpl_train.engine import TrainingDiverged, fit

        try:
            return fit(run.cfg, run.out, resume=resume, progress=False if self.quiet else None)
        except TrainingDiverged as exc:
            return {"diverged": str(exc)}


@dataclass
class Outcome:
    """What happened to one planned run: ``status`` in {"done", "trained", "locked", "planned"}."""

    run: PlannedRun
    status: str
    result: dict[str, Any] | None = None
    first_epoch: int = 0  # the epochs a resumed run had before this call (not trained now)


def _run_one(runner: Runner, run: PlannedRun) -> Outcome:
    if runner.finished(run):
        return Outcome(run, "done", runner.load(run))
    from lpl_train.engine import RunLocked

    resume = (run.out / CHECKPOINT).is_file()
    first = _epochs_recorded(run.out) if resume else 0
    try:  # fit holds the run folder's OS lock while it trains: a folder in use raises RunLocked
        return Outcome(run, "trained", runner.train(run, resume), first)
    except RunLocked:
        return Outcome(run, "locked")


def _epochs_recorded(run_dir: Path) -> int:
    """How many epoch records a run folder holds (0 when its metrics file cannot be read)."""
    from lpl_train.engine import read_metrics

    try:
        return len(read_metrics(run_dir))
    except (OSError, ValueError):
        return 0


def _worker_init(parent_pid: int | None = None) -> None:
    """One thread per worker; on Linux the worker is also ended (SIGTERM) when the process that runs the
    sweep or study dies, even by SIGKILL, instead of training on unseen (its run stays resumable: the run
    folder's checkpoint writes are atomic and its lock is released by the kernel)."""
    import torch

    torch.set_num_threads(1)
    if parent_pid is not None and sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)


def _task(args: tuple[Runner, PlannedRun]) -> Outcome:
    return _run_one(*args)


def execute(
    runs: Sequence[PlannedRun],
    runner: Runner,
    *,
    jobs: int = 1,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
    describe: Callable[[Outcome], str] | None = None,
) -> list[Outcome]:
    """Go through ``runs``: read finished ones back, train (or resume) the others, skip locked ones.

    Returns one :class:`Outcome` per run, in the order they completed. With ``dry_run`` nothing is trained
    (status ``planned`` for the runs that would be). ``describe`` turns a trained outcome into the text after
    its key in the log line.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    if dry_run:
        out = [Outcome(r, "done" if runner.finished(r) else "planned") for r in runs]
        for o in out:
            log(f"{'skip (finished)' if o.status == 'done' else 'would run'}: {o.run.out}")
        return out
    t0 = time.perf_counter()
    if jobs == 1:
        it: Iterable[Outcome] = (_run_one(runner, r) for r in runs)
        pool = None
    else:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(jobs, initializer=_worker_init, initargs=(os.getpid(),))
        it = pool.imap_unordered(_task, [(runner, r) for r in runs])
    done: list[Outcome] = []
    try:
        for i, o in enumerate(it, 1):
            done.append(o)
            if o.status == "locked":
                log(f"skip (locked: another process trains it): {o.run.out}")
            elif o.status == "done":
                log(f"skip (finished): {o.run.out}")
            else:
                head = f"[{i}/{len(runs)} {time.perf_counter() - t0:.0f}s] {o.run.key}"
                log(f"{head}: {describe(o) if describe else 'trained'}")
    except BaseException:
        if (
            pool is not None
        ):  # Ctrl-C or an error: stop the workers now (close + join would train on)
            pool.terminate()
            pool.join()
            pool = None
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return done


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
