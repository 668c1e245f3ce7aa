"""The training loop: :func:`fit` and the step, for every config, single- and multi-label.

The loop a reader can hold in their head (:func:`_fit`, below)::

    for epoch in range(start, E):
        loader.set_epoch(epoch); loss.set_epoch(epoch, E)       # batch order = f(seed, epoch); DRW / ISDA λ
        for x, y in loader:
            lr = base_lr * lr_factor(...)                          # warm-up, then step or cosine
            loss = L(model(x), y)  [+ l2_all * Σθ²]                # ISDA: L(features, y, classifier)
            loss.backward(); clip; optimiser.step()
        evaluate (validation, test) → checkpoint.pt → metrics.jsonl → one summary line

The loss ``L`` is any registered loss (LPL's Eqs. 27-33 single-label, Eqs. 34-41 multi-label, or a baseline).
Everything the run folder holds is written by :class:`~lpl_train.engine.run_folder.RunFolder`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lpl_train._pipes import print_line

from .components import Components
from .devices import flush_denormals, select_device
from .distributed import DistInfo, process_group
from .progress import epoch_line, wants_bar
from .run_folder import CorruptCheckpoint, RunFolder, RunFolderError, finite_or_none
from .trainer import TrainingDiverged, _Trainer

__all__ = ["TrainingDiverged", "fit"]


def fit(
    cfg: dict[str, Any],
    out_dir: str | Path,
    *,
    components: Components | None = None,
    resume: bool = False,
    stop_after_epoch: int | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train and evaluate the validated config ``cfg``, writing the run folder ``out_dir``.

    Run folder (see :mod:`lpl_train.engine.run_folder`): ``config.toml``, ``metrics.jsonl`` / ``metrics.csv``
    (one record per epoch), ``checkpoint.pt`` (+ ``checkpoint.prev.pt``), ``best.pt`` (best validation
    epoch, when the data has a validation split), ``train.log`` and, at the end, ``final.json``.

    Args:
        cfg: a config from :func:`lpl_train.config.load_config` / ``validate_config``.
        out_dir: the run folder; created if missing. Without ``resume`` it must hold no run.
        components: pre-built model/loss/loaders (tests, notebooks); default: built from ``cfg``.
        resume: continue from ``out_dir/checkpoint.pt``; the config must equal the checkpoint's own
            (the keys of ``lpl_train.config.VOLATILE_KEYS`` may differ: the description, progress, device,
            capture and tensorboard). A
            finished run is returned unchanged (``components`` then get its last weights); it is only
            read, so also from a folder that cannot be written (there without the lock, which needs to
            write: a read-only file system), except that in a folder that can be written a damaged
            ``metrics.jsonl`` is repaired from the records its checkpoint carries.
        stop_after_epoch: return after this many completed epochs (a clean stand-in for a killed job).
        progress: show a tqdm bar on a terminal (default: ``cfg["train"]["progress"]``).
        log: where the one-line messages go (default: print on rank 0); they also go to ``train.log``.

    Returns:
        the ``final.json`` content (or, when stopped early, the last epoch's record). Under DDP every
        rank returns once rank 0 has written the run folder (``final.json`` or the checkpoint).

    Raises:
        TrainingDiverged: on a NaN/inf training loss; ``checkpoint.pt`` stays at the last good epoch.
        RunLocked: another process trains in ``out_dir``.
        FileExistsError: ``out_dir`` holds a run and ``resume`` is False.
        ConfigMismatch, CorruptCheckpoint: (``ValueError``) on ``resume``.
    """
    from lpl_train.config import validate_config

    if not isinstance(cfg, dict):
        raise TypeError(f"cfg must be a validated config dict, got {type(cfg).__name__}")
    cfg = validate_config(cfg)
    if stop_after_epoch is not None and (
        isinstance(stop_after_epoch, bool)
        or not isinstance(stop_after_epoch, int)
        or stop_after_epoch < 1
    ):
        raise ValueError(
            f"stop_after_epoch must be a positive int or None, got {stop_after_epoch!r}"
        )
    # (a string such as "no" would read as true: a resume, a bar)
    if not isinstance(resume, bool):
        raise TypeError(f"resume must be True or False, got {resume!r}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    if log is not None and not callable(log):
        raise TypeError(f"log must be a callable taking one line (str) or None, got {log!r}")
    dist = DistInfo.from_env()
    tr = cfg["train"]
    show = wants_bar(tr["progress"] if progress is None else progress) and dist.main
    folder = RunFolder(out_dir, main=dist.main, tensorboard=tr["tensorboard"])
    printer = log or (print_line if dist.main else (lambda s: None))

    def emit(line: str) -> None:
        printer(line)
        folder.log(line)

    if resume and folder.unwritable() is not None and (done := folder.finished()) is not None:
        # a finished run is never rewritten and a folder that cannot be written has no writer to wait
        # for: it is read without taking the lock (which needs to write), e.g. from a read-only mount
        from lpl_train.config import dumps_toml

        return _finished_run(folder, done, dumps_toml(cfg), emit, components, repair=False)
    with folder.locked(), process_group(dist, tr["device"]), flush_denormals():
        device = select_device(tr["device"], dist.local_rank)
        return _fit(cfg, folder, dist, device, components, resume, stop_after_epoch, show, emit)


def _fit(
    cfg: dict[str, Any],
    folder: RunFolder,
    dist: DistInfo,
    device: torch.device,
    components: Components | None,
    resume: bool,
    stop_after_epoch: int | None,
    show: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from lpl_train.config import dumps_toml

    cfg_text = dumps_toml(cfg)
    ckpt = None
    if resume and (done := folder.finished()) is not None:
        return _finished_run(folder, done, cfg_text, log, components, repair=True)
    if resume:
        ckpt = folder.resume_checkpoint(cfg_text)
    elif dist.main:
        folder.check_fresh(cfg_text)
    torch.manual_seed(cfg["train"]["seed"])
    run = _Trainer(cfg, device, dist, components, show)
    if ckpt is not None:
        run.restore(ckpt)
        for note in folder.resume(ckpt, cfg_text):
            log(f"{cfg['name']}: {note}")
        log(f"resuming {cfg['name']} from epoch {run.epoch} ({str(folder.path)})")
    else:
        prov = ", ".join(f"{k} {v}" for k, v in run.provenance().items())
        folder.start(
            cfg_text + f"\n# run: {prov}\n"
        )  # what was used; a comment, so the config stays valid
    # what an unfinished run's plots need (final.json has it later)
    folder.write_classes(run.classes())
    log(run.describe())
    E = cfg["schedule"]["epochs"]
    warm = cfg["schedule"]["warmup_iters"]
    # (warmup_epochs is checked with the config, which needs no data; iterations need the loader)
    if warm and warm >= E * run.n_iter:
        log(
            f"warning: schedule.warmup_iters={warm} >= the run's {E} x {run.n_iter} = {E * run.n_iter} "
            "iterations: the run ends inside the warm-up"
        )
    record = run.last_record(folder)  # a run resumed after its last epoch: that epoch's record
    t_run = time.perf_counter()
    for epoch in range(run.epoch, E):
        record = run.train_epoch(epoch, folder)
        for note in run.notes:  # e.g. a CUDA graph that could not be recorded: eager from here on
            log(note)
        run.notes.clear()
        run.evaluate_into(record, epoch, folder)
        folder.end_epoch(finite_or_none(record), run.state(epoch + 1, cfg_text, run.wall(t_run)))
        log(epoch_line(record, E, run.eta(epoch, t_run)))
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < E:
            if dist.world > 1:  # every rank returns once rank 0 has written the checkpoint
                torch.distributed.barrier()
            return record
    # wall_s summed over the processes that trained the run
    final = run.final(record, run.wall(t_run), cfg_text)
    folder.write_final(finite_or_none(final))
    if dist.world > 1:
        torch.distributed.barrier()
    return final


def _finished_run(
    folder: RunFolder,
    done: dict[str, Any],
    cfg_text: str,
    log: Callable[[str], None],
    components: Components | None,
    *,
    repair: bool,
) -> dict[str, Any]:
    """``--resume`` of a finished run: its config must match; nothing is trained or rewritten, but with
    ``repair`` (under the folder's lock) a ``metrics.jsonl`` that differs from the records the final
    checkpoint carries (a damaged line) is restored from them, as a resume does. Pre-built
    ``components`` get the run's last weights (model and loss state), so a caller that evaluates them
    after ``fit`` evaluates the trained model; a run whose checkpoint is gone cannot give them and
    raises."""
    if components is not None and not (folder / "checkpoint.pt").is_file():
        raise FileNotFoundError(
            f"{str(folder / 'final.json')!r}: the run is finished but its checkpoint is gone, so the "
            "components passed to fit cannot be given its weights"
        )
    try:
        ck = folder.check_finished(cfg_text)
    except CorruptCheckpoint as exc:
        if components is not None:
            raise CorruptCheckpoint(
                f"{exc}, so the components passed to fit cannot be given them"
            ) from None
        log(f"{done.get('name', 'run')}: {exc}; nothing is rewritten")
        ck = None
    last = done.get("epochs")
    if ck is not None and isinstance(last, int) and ck["epoch"] != last:
        # an earlier checkpoint in its place (checkpoint.prev.pt renamed): neither its weights nor its
        # records are the result's, and the records of the later epochs are not moved aside
        if components is not None:
            raise RunFolderError(
                f"{str(folder / 'checkpoint.pt')!r} is of epoch {ck['epoch']}, not the finished "
                f"run's last ({last}), so the components passed to fit cannot be given its weights"
            )
        log(
            f"{done.get('name', 'run')}: checkpoint.pt is of epoch {ck['epoch']}, not the run's "
            f"last ({last}); metrics.jsonl is left as it is"
        )
        ck = None
    if components is not None and ck is not None:
        components.model.load_state_dict(ck["model"])
        components.loss.load_state_dict(ck["loss"])
    if repair and ck is not None:
        for note in folder.repair_finished_records(ck):
            log(f"{done.get('name', 'run')}: {note}")
    log(
        f"{done.get('name', 'run')}: already finished ({str(folder / 'final.json')}); nothing to do"
    )
    return done
