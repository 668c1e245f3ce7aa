"""One experiment machinery: grids, seeds and run folders, for ``lpl-train sweep`` and for studies.

A *plan* is a list of :class:`PlannedRun` (a validated config, its run folder, its seed and grid point); a
*runner* says when a run folder is finished, how to read its result back and how to train it. :func:`execute`
goes through a plan the same way for every caller: a finished run is read back, not trained again; a run
folder holding a checkpoint is resumed; a folder being trained by another process (it holds the folder's
OS lock, taken by ``engine.fit``) is left alone; ``jobs > 1`` trains runs in parallel worker processes (one
CPU thread each; on a machine with one GPU every worker trains on it, with its own copy of the data).
:func:`lpl_train.experiment_throughput.throughput` reads back from the runs' records what they achieved
together.

``lpl-train sweep`` plans with :func:`plan_sweep` (which builds every grid point's model and loss before
anything trains, so a bad value is named up front) and runs with :class:`ConfigRunner` (``engine.fit`` on the
config); a study (``lpl_train.study``) plans its selection and final runs from its declarative file and runs
them with its own runner, which adds the validation split and the test evaluation around the same ``fit``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lpl_train._pipes import print_line
from lpl_train._warning_lines import keep_one_line_warnings, one_line_warnings_on

__all__ = [
    "ConfigRunner",
    "PlannedRun",
    "Runner",
    "check_points",
    "check_runs",
    "execute",
    "expand_grid",
    "parse_grid",
    "plan_sweep",
    "point_name",
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
    """What :func:`execute` needs to know about a kind of run (picklable, for worker processes).

    A runner may also have ``check(run)``: the refusals its ``load``/``train`` would raise for the run's folder
    as it is now, found without writing anything; :func:`check_runs` calls it for every run before any of
    them starts (and for a dry run)."""

    def finished(self, run: PlannedRun) -> bool: ...

    def load(self, run: PlannedRun) -> dict[str, Any]: ...

    def train(self, run: PlannedRun, resume: bool) -> dict[str, Any]: ...


# ---------------------------------------------------------------------------------------------- grids
def parse_grid(items: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """``["optim.lr=0.1,0.05", ...]`` → ``[("optim.lr", [0.1, 0.05]), ...]`` (values parsed as TOML).

    Values are split on the commas outside brackets, braces and quotes, so a value may be a TOML list, table
    or quoted string: ``schedule.milestones=[80, 120],[160]`` gives two lists (:func:`plan_sweep` refuses a
    key given twice: its values belong in one ``--grid``).

    >>> parse_grid(["schedule.milestones=[1,2],[3]", 'data.root="a,b",c'])
    [('schedule.milestones', [[1, 2], [3]]), ('data.root', ['a,b', 'c'])]
    """
    from lpl_train.config import ConfigError, parse_value

    grid: list[tuple[str, list[Any]]] = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r} must look like key=v1,v2")
        key, vals = item.split("=", 1)
        values = []
        for text in _split_values(item, vals):
            value = parse_value(text)
            if text[0] in "[{\"'" and value == text:  # parse_value keeps text it cannot parse
                raise ConfigError(
                    f"--grid {item!r}: {text!r} is not a TOML value; write lists as [1, 2], tables as "
                    "{a = 1} and strings holding commas or brackets in quotes"
                )
            values.append(value)
        if not key.strip() or not values:
            raise ConfigError(f"--grid {item!r} must name a key and at least one value")
        grid.append((key.strip(), values))
    return grid


def _split_values(item: str, text: str) -> list[str]:
    """The values of ``--grid key=text``: ``text`` split on the commas outside brackets, braces and quotes,
    each stripped, empty ones dropped. A quote or an opening bracket counts where a value starts (or inside
    brackets), so a bare word may hold them (``bob's``)."""
    from lpl_train.config import ConfigError

    parts, start, depth, quote, escaped = [], 0, 0, "", False
    for i, c in enumerate(text):
        opens = depth > 0 or not text[start:i].strip()
        if quote:
            if escaped:
                escaped = False
            elif c == "\\" and quote == '"':
                escaped = True
            elif c == quote:
                quote = ""
        elif c in "\"'" and opens:
            quote = c
        elif c in "[{" and opens:
            depth += 1
        elif c in "]}" and depth > 0:
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if quote or depth:
        what = "quote" if quote else "bracket"
        raise ConfigError(
            f"--grid {item!r} has an unbalanced {what} in its values; write lists as [1, 2] and close "
            "every quote (values are split on the commas outside brackets and quotes)"
        )
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _dotted(key: str) -> str:
    """A config key as ``--set`` reads it (``" optim . lr"`` → ``"optim.lr"``)."""
    return ".".join(k.strip() for k in key.strip().split("."))


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
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:  # the points would keep only the last one's values
        raise ValueError(f"grid key {twice[0]!r} is given twice; list all its values once")
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


# A sweep plans (loads the config of) every run before it trains or prints one: about 2 ms per run, so
# 100,000 runs take minutes to plan, and an absurd --seeds would exhaust the memory first.
MAX_SWEEP_RUNS = 100_000


def plan_sweep(
    config: str | Path,
    overrides: Sequence[str],
    grid: Sequence[tuple[str, list[Any]]],
    seeds: Sequence[int],
    epochs: int | None,
    root: str | Path,
    *,
    check: bool = True,
) -> list[PlannedRun]:
    """The runs of ``lpl-train sweep``: every grid point × seed, in ``root/<point>/seed<k>``.

    The sweep sets ``train.seed`` itself, so ``overrides`` and ``grid`` may not; a grid key may not be given
    twice, nor lie inside another grid key, and an override may not set a grid key (or a key inside one):
    the grid's values would silently replace it. A grid point whose config is refused is named in the error.
    With ``check``, :func:`check_points` then builds every point's model and loss before anything trains
    (its warnings are printed on stderr as ``lpl-train: warning: ...`` lines).
    """
    from lpl_train.config import ConfigError, _toml_value, load_config

    _check_sweep_keys(overrides, grid)
    plan = expand_grid(list(grid))
    points = len(plan)
    if points * len(seeds) > MAX_SWEEP_RUNS:  # each run's config is loaded now: refuse before that
        raise ConfigError(
            f"this sweep would plan {points * len(seeds)} runs ({points} grid point(s) x "
            f"{len(seeds)} seed(s)), more than {MAX_SWEEP_RUNS} in one call; split it over calls "
            "into the same --out (--seeds N --first-seed S) or over grid values"
        )
    runs: list[PlannedRun] = []
    folders: dict[str, dict[str, Any]] = {}
    for point in plan:
        sets = [f"{k}={_toml_value(v)}" for k, v in point.items()]
        name = point_name(point)
        if name in folders:  # point_name maps some distinct values to one folder name
            raise ConfigError(
                f"grid points {folders[name]} and {point} share the run folder {name!r}; give the grid "
                "distinct values (folder names keep letters, digits and ._-=, only)"
            )
        folders[name] = point
        for seed in seeds:
            try:
                cfg = load_config(config, [*overrides, *sets, f"train.seed={seed}"], epochs)
            except ConfigError as exc:
                if not point:
                    raise
                raise ConfigError(f"{_point_text(point)}: {exc}") from None
            key = f"{name}/seed{seed}"
            runs.append(PlannedRun(key, Path(root) / key, cfg, seed, point))
    if check:
        for text in check_points(runs):
            print(f"lpl-train: warning: {text}", file=sys.stderr)
    return runs


def _check_sweep_keys(overrides: Sequence[str], grid: Sequence[tuple[str, list[Any]]]) -> None:
    """Refuse what the sweep would silently replace: ``train.seed`` (it sets it per run), a grid key given
    twice or inside another, and an override of a grid key (the grid's values come after it)."""
    from lpl_train.config import ConfigError, parse_value

    seeds_hint = (
        "a sweep sets train.seed itself, 0..N-1 with --seeds N, S..S+N-1 with --first-seed S as well "
        "(call it again with a larger N to add seeds: the finished runs are skipped); drop it"
    )
    keys = [(_dotted(k), vals) for k, vals in grid]
    for i, (key, vals) in enumerate(keys):
        if key == "train.seed" or (key == "train" and any(_sets_seed(v) for v in vals)):
            raise ConfigError(f"--grid {grid[i][0]}: {seeds_hint} from --grid")
        for other, _ in keys[:i]:
            if key == other:
                raise ConfigError(
                    f"grid key {key!r} is given twice; list all its values in one --grid, e.g. "
                    f"--grid {key}=V1,V2,V3"
                )
            if key.startswith(other + ".") or other.startswith(key + "."):
                outer, inner = (other, key) if key.startswith(other + ".") else (key, other)
                raise ConfigError(
                    f"--grid {inner} lies inside --grid {outer}: each point would set one over the "
                    f"other; sweep the keys of {outer} one by one"
                )
    for ov in overrides:
        if not isinstance(ov, str) or "=" not in ov:
            continue  # load_config names the malformed override
        key, text = _dotted(ov.split("=", 1)[0]), ov.split("=", 1)[1]
        if key == "train.seed" or (key == "train" and _sets_seed(parse_value(text.strip()))):
            raise ConfigError(f"--set {ov}: {seeds_hint} from --set")
        for gkey, _ in keys:
            if key == gkey or key.startswith(gkey + "."):
                raise ConfigError(
                    f"--set {ov} is replaced by --grid {gkey} in every point of the sweep; drop the "
                    f"--set, or put its value into the --grid"
                )


def _sets_seed(value: Any) -> bool:
    """Whether a value given to the key ``train`` (a whole table) sets ``seed``."""
    return isinstance(value, dict) and "seed" in value


def check_points(runs: Sequence[PlannedRun]) -> list[str]:
    """Build the model and the loss of every grid point of a sweep plan (one run per point: the seed does not
    change what is built) and pass one training batch through the model, as the first second of each run
    would; raise naming the grid point on the first that fails. The data is loaded once per distinct
    ``[data]`` table, never downloaded; where it is missing the model and loss are built with the dataset's
    known shape (the runs themselves then report the missing data), as ``lpl-train run --dry-run`` does.

    Returns the warnings the builds gave (e.g. a loss parameter that makes LPL plain cross-entropy), each
    once, prefixed by its grid point; one that every point gives (points that differ only in what is not
    built, e.g. ``optim.lr``, give the same) without a point."""
    import warnings

    from lpl_train.config import ConfigError
    from lpl_train.engine.components import check_config

    data: dict[str, Any] = {}
    seen: set[str] = set()
    said: list[tuple[str, list[str]]] = []  # (grid point, its warnings) of each build
    for run in runs:
        if run.cfg is None:
            continue
        # what the check builds from: the data, model and loss, and [train] (compile_loss, capture and
        # device decide whether the loss is compiled alone), not the seed
        train = {k: v for k, v in (run.cfg.get("train") or {}).items() if k != "seed"}
        sig = json.dumps(
            {**{k: run.cfg.get(k) for k in ("data", "model", "loss")}, "train": train},
            sort_keys=True,
            default=str,
        )
        if sig in seen:
            continue
        seen.add(sig)
        where = _point_text(run.point) if run.point else ""
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                check_config(run.cfg, data)
        except (ValueError, TypeError, KeyError) as exc:
            if not run.point:
                raise
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise ConfigError(f"{where}: {msg}") from None
        said.append((where, [" ".join(str(w.message).split()) for w in caught]))
    return [text if not where else f"{where}: {text}" for where, text in point_warnings(said)]


def point_warnings(said: Sequence[tuple[str, Sequence[str]]]) -> list[tuple[str | None, str]]:
    """The warnings of grid points, ``(point, its warnings)`` each, as (point, warning) once each in the
    order given; one that every point gives once as (None, warning): it is no point's own."""
    out: list[tuple[str | None, str]] = []
    for where, texts in said:
        for text in texts:
            item = (None, text) if all(text in t for _w, t in said) else (where, text)
            if item not in out:
                out.append(item)
    return out


def _point_text(point: dict[str, Any]) -> str:
    """``grid point key=value key=value`` (values as TOML), how errors and warnings name a grid point."""
    from lpl_train.config import _toml_value

    return "grid point " + " ".join(f"{k}={_toml_value(v)}" for k, v in point.items())


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
            ConfigMismatch: the run's config (its ``config.toml``, or where that is gone its checkpoint's
                own) differs (e.g. the sweep was called again into the same ``--out`` with other ``--set``
                or ``--epochs``); the keys are named.
            ValueError: ``final.json`` is damaged; the file is named.
        """
        return self._check_finished(run)

    def _check_finished(self, run: PlannedRun) -> dict[str, Any]:
        """The finished run's ``final.json`` (read once), after checking that its config is this run's:
        the config its ``final.json`` keeps (what the result was trained with); for a ``final.json``
        written before results kept it, its ``config.toml``, or, where that is gone, the config its
        checkpoint was made with (verified); a run with none of them cannot be compared."""
        from lpl_train.config import dumps_toml
        from lpl_train.engine.files import ConfigMismatch, config_differences, load_checkpoint
        from lpl_train.engine.run_folder import RunFolder

        done = RunFolder(run.out).finished()  # a damaged final.json is refused naming it
        if done is None:
            raise FileNotFoundError(f"{str(run.out / 'final.json')!r} is gone")
        if run.cfg is None:
            return done
        stored = run.out / "config.toml"
        kept = done.get("config") if isinstance(done.get("config"), str) else None
        source = "final.json's config" if kept is not None else stored.name
        if kept is not None:
            text: Any = kept
        elif stored.is_file():
            text = stored.read_text(encoding="utf-8", errors="replace")
        elif (run.out / CHECKPOINT).is_file():
            text = load_checkpoint(run.out / CHECKPOINT).get("config")
        else:
            return done
        try:
            diff = config_differences(text, dumps_toml(run.cfg)) if isinstance(text, str) else []
        except ValueError:  # TOMLDecodeError is a ValueError
            diff = [f"(its {source} is not a config)"]
        if diff:
            raise ConfigMismatch(
                f"{str(run.out)!r} holds a finished run of another config (it differs in "
                f"{', '.join(diff)}); sweep into another --out, or remove that folder to retrain it"
            )
        return done

    def check(self, run: PlannedRun) -> None:
        """What this run's folder would make :meth:`load` or ``engine.fit`` refuse, found without writing:
        a finished run of another config or with a damaged ``final.json``; a checkpointed run whose
        checkpoint is damaged or was made with another config (resuming it would be refused, whatever its
        ``config.toml`` says); for a fresh run, everything ``RunFolder.check_fresh`` refuses (epoch
        records without a checkpoint, a run folder inside it or around it, the ``config.toml`` of another
        config); for a run to train, a path that cannot be written (a file on the way, a read-only file
        system, no permission). A folder that another process moves on meanwhile (a first checkpoint, ``final.json``)
        is looked at again."""
        from lpl_train.config import dumps_toml
        from lpl_train.engine.run_folder import RunFolder, check_writable

        if run.cfg is None:
            return
        folder, text = RunFolder(run.out), dumps_toml(run.cfg)
        for attempt in range(3):
            state = self.finished(run), (run.out / CHECKPOINT).is_file()
            try:
                if state[0]:
                    self._check_finished(run)  # a damaged final.json is refused naming it
                elif state[1]:
                    # as fit resumes it: the checkpoint verified and its own config compared (a
                    # config.toml edited or lost is written again from it)
                    folder.resume_checkpoint(text)
                else:
                    folder.check_fresh(text)
                if not state[0]:
                    check_writable(run.out)
                return
            except (OSError, ValueError):
                if attempt == 2 or state == (self.finished(run), (run.out / CHECKPOINT).is_file()):
                    raise

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
    """What happened to one planned run: ``status`` in {"done", "trained", "locked", "planned", "failed"}
    (``failed``: it raised, under ``execute(keep_going=True)``)."""

    run: PlannedRun
    status: str
    result: dict[str, Any] | None = None
    first_epoch: int = 0  # the epochs of a resumed run trained before this call (by its checkpoint)


def check_runs(runs: Sequence[PlannedRun], runner: Runner) -> None:
    """Call ``runner.check(run)`` (where the runner has one) for every run: what its ``load`` or ``train``
    would refuse in a run folder is raised before any run starts, by a dry run too."""
    check = getattr(runner, "check", None)
    if check is not None:
        for run in runs:
            check(run)


def _run_one(runner: Runner, run: PlannedRun, keep_going: bool = False) -> Outcome:
    if runner.finished(run):
        return Outcome(run, "done", runner.load(run))
    from lpl_train.engine import RunLocked

    resume = (run.out / CHECKPOINT).is_file()
    started = time.time()
    try:  # fit holds the run folder's OS lock while it trains: a folder in use raises RunLocked
        result = runner.train(run, resume)
    except RunLocked:
        return Outcome(run, "locked")
    except Exception as exc:
        if not keep_going:
            raise
        return Outcome(run, "failed", _failure(run, exc), _epochs_before(run.out, started, resume))
    return Outcome(run, "trained", result, _epochs_before(run.out, started, resume))


def _failure(run: PlannedRun, exc: Exception) -> dict[str, Any]:
    """``error``: the one-line reason of a run that raised; ``log``: the ``train.log`` its traceback was
    appended to (None where the run left no folder, or the log could not be written)."""
    import traceback

    why = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    log: str | None = None
    if run.out.is_dir():
        with contextlib.suppress(OSError), open(run.out / "train.log", "a", encoding="utf-8") as fh:
            fh.write(f"FAILED: {why}\n{''.join(traceback.format_exception(exc))}")
            log = str(run.out / "train.log")
    return {"error": why, "log": log}


def _epochs_before(run_dir: Path, started: float, resumed: bool = True) -> int:
    """How many of a resumed run's epoch records were trained before ``started`` (Unix time): those the
    checkpoint it resumed from carries (0 for a run not ``resumed``). Counting the records found before
    it resumed instead would take in records past that checkpoint (an earlier checkpoint renamed into its
    place), or miss one the checkpoint restored (a process stopped between its checkpoint and its
    record). 0 where the records cannot be read."""
    from lpl_train.engine import read_metrics

    if not resumed:
        return 0
    try:
        recs = read_metrics(run_dir)
    except (OSError, ValueError):
        return 0
    n = 0
    for r in recs:
        end = r.get("train_end")
        if isinstance(end, int | float) and end >= started:
            break
        n += 1
    return n


def _worker_init(parent_pid: int | None = None, one_line_warnings: bool = False) -> None:
    """One thread per worker; on Linux the worker is also ended (SIGTERM) when the process that runs the
    sweep or study dies, even by SIGKILL, instead of training on unseen (its run stays resumable: the run
    folder's checkpoint writes are atomic and its lock is released by the kernel). A Ctrl-C, which the
    terminal sends to every process of the sweep, is left to the parent: it ends the workers and says
    how to go on (a worker's own KeyboardInterrupt would print its traceback). With
    ``one_line_warnings`` the package's warnings print as the command line's do (one line each)."""
    import signal

    import torch

    torch.set_num_threads(1)
    if one_line_warnings:
        keep_one_line_warnings()
    if parent_pid is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None and sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)


def _task(args: tuple[Runner, PlannedRun, bool]) -> Outcome:
    return _run_one(*args)


def _watched(pool: Any, results: Any) -> Iterator[Outcome]:
    """The outcomes of ``results`` (``pool.imap_unordered``), raising ``ChildProcessError`` when a worker
    process dies (killed, e.g. by the out-of-memory killer, or crashed): the pool would start another
    and wait forever for the outcome of the run the dead one held. Workers end only with the pool, so
    any worker that has ended, or a worker started in place of one, is such a death."""
    import multiprocessing as mp

    workers: dict[int | None, Any] = {}
    while True:
        workers.update((p.pid, p) for p in list(pool._pool))  # the pool's workers (no public API)
        dead = [p for p in workers.values() if p.exitcode is not None]
        if dead or len(workers) > len(pool._pool):
            code = dead[0].exitcode if dead else None
            how = f" (exit status {code})" if code is not None and code >= 0 else ""
            if code is not None and code < 0:
                how = f" (killed by signal {-code}, e.g. by the out-of-memory killer)"
            raise ChildProcessError(
                f"a worker process died{how} while it trained a run; the runs not finished resume "
                "from their checkpoints when the same command is run again"
            )
        try:
            yield results.next(timeout=1.0)
        except StopIteration:
            return
        except mp.TimeoutError:
            continue


def execute(
    runs: Sequence[PlannedRun],
    runner: Runner,
    *,
    jobs: int = 1,
    dry_run: bool = False,
    log: Callable[[str], None] = print_line,
    describe: Callable[[Outcome], str] | None = None,
    check: bool = True,
    keep_going: bool = False,
) -> list[Outcome]:
    """Go through ``runs``: read finished ones back, train (or resume) the others, skip locked ones.

    Returns one :class:`Outcome` per run, in the order they completed. With ``dry_run`` nothing is trained
    (status ``planned`` for the runs that would be). ``describe`` turns a trained outcome into the text after
    its key in the log line. With ``check`` (leave it on unless :func:`check_runs` was just called) the
    runner's read-only checks of every run folder come first, so what a run would refuse stops the whole
    call before anything is trained, and a dry run reports it as the real call would. An error raised
    while a run trains stops the call, unless ``keep_going``: then that run's outcome is ``failed`` (its
    ``result`` holds ``error``, the one-line reason, and ``log``, the ``train.log`` its traceback was
    appended to, None where the run left no folder) and the other runs go on. A worker process that dies (``jobs`` > 1) stops the call either way.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    if check:
        check_runs(runs, runner)
    if dry_run:
        out = [Outcome(r, "done" if runner.finished(r) else "planned") for r in runs]
        for o in out:
            if o.status == "done":
                log(f"skip (finished): {o.run.out}")
            else:
                resume = (o.run.out / CHECKPOINT).is_file()
                log(f"{'would resume' if resume else 'would run'}: {o.run.out}")
        return out
    t0 = time.perf_counter()
    if jobs == 1:
        it: Iterable[Outcome] = (_run_one(runner, r, keep_going) for r in runs)
        pool = None
    else:
        import multiprocessing as mp

        # a spawned worker starts with Python's warning display: given the command line's where it has it
        init = (os.getpid(), one_line_warnings_on())
        pool = mp.get_context("spawn").Pool(jobs, initializer=_worker_init, initargs=init)
        it = _watched(pool, pool.imap_unordered(_task, [(runner, r, keep_going) for r in runs]))
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
                if o.status == "failed":
                    log(f"{head}: FAILED ({(o.result or {}).get('error')})")
                else:
                    log(f"{head}: {describe(o) if describe else 'trained'}")
    except BaseException:
        # Ctrl-C or an error: stop the workers now (close + join would train on)
        if pool is not None:
            pool.terminate()
            pool.join()
            pool = None
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return done
