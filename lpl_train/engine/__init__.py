"""One training and evaluation loop for every config, as a package with one owner per concern.

==================  ==========================================================================================
``loop``            :func:`fit` and the step (the loop readable top to bottom at the top of the file)
``run_folder``      the run folder: layout, lock, atomic writes, verified checkpoints, metrics records, resume
                    checks -- the only code that writes a run folder
``evaluate``        top-1 error, per-class accuracy and groups, or mAP, on a loader
``components``      config → dataset, loaders (class-aware resampling), model and loss; the dry-run check
``schedules``       learning-rate warm-up, step, cosine
``distributed``     DDP under ``torchrun``: ranks, process group, sharded loaders
``devices``         device selection and precision (autocast)
``step``            network + loss as one module, optimiser, RNG state, loss-variation measurement
``capture``         how a step runs (``train.capture``): the CUDA-graph step, epoch metrics on the device
``progress``        the progress bar (terminal only) and the per-epoch summary line
``runs``            :func:`load_run`: a finished run folder → (model, config, data info)
==================  ==========================================================================================

Checkpoints hold the model, the loss's state (ISDA's covariance, LC's parameters), the optimiser, the global
step, the RNG states and the epoch records, so a run resumed from epoch k ends bit-for-bit where an
uninterrupted run ends (CPU). A non-finite loss stops the run with :class:`TrainingDiverged`; the last good
checkpoint is kept.

Device: ``auto`` picks CUDA, then MPS, then CPU. AMP (``train.amp = "auto"``): bf16 autocast on a CUDA device
that supports it, fp16 with gradient scaling on one that does not, off on CPU unless ``amp = "bf16"``.
``channels_last`` on CUDA by default. ``compile = true`` wraps the network in ``torch.compile``; on CUDA the
whole step is recorded into a CUDA graph where safe (``train.capture``, :mod:`.capture`). Under
``torchrun`` (``WORLD_SIZE > 1``) the step runs in DistributedDataParallel (NCCL on CUDA, gloo on CPU); each
rank reads, augments and trains its ``torch.tensor_split`` slice of every batch of the config's global batch
size, so the ranks together train the single-process run's batches, crops included, in as many steps; each
rank evaluates its part of the evaluation splits and the sums are combined.
"""

from __future__ import annotations

from .components import (
    _DATASET_SHAPES,
    Components,
    _IndexedView,
    _ResampledLoader,
    build_components,
    check_config,
)
from .devices import autocast_for, flush_denormals, resolve_precision, select_device
from .distributed import DistInfo, _ShardLoader, process_group
from .evaluate import evaluate
from .loop import TrainingDiverged, fit
from .run_folder import (
    BEST,
    CHECKPOINT,
    CONFIG_COPY,
    FINAL,
    LOCK,
    LOG,
    METRICS,
    METRICS_CSV,
    PREVIOUS,
    ConfigMismatch,
    CorruptCheckpoint,
    RunFolder,
    RunFolderError,
    RunLocked,
    atomic_save,
    config_differences,
    load_checkpoint,
    read_metrics,
)
from .run_folder import finite_or_none as _finite_or_none
from .runs import load_run
from .schedules import lr_factor
from .step import _LossVariation, _make_loss_variation, _Step

__all__ = [
    "Components",
    "ConfigMismatch",
    "CorruptCheckpoint",
    "DistInfo",
    "RunFolder",
    "RunFolderError",
    "RunLocked",
    "TrainingDiverged",
    "atomic_save",
    "autocast_for",
    "build_components",
    "check_config",
    "config_differences",
    "evaluate",
    "fit",
    "flush_denormals",
    "load_checkpoint",
    "load_run",
    "lr_factor",
    "process_group",
    "read_metrics",
    "resolve_precision",
    "select_device",
]

# Also importable from here, outside __all__, for the modules and tests that use them: CHECKPOINT, METRICS,
# FINAL, CONFIG_COPY, PREVIOUS, BEST, LOCK, LOG, METRICS_CSV, _finite_or_none, _ShardLoader, _ResampledLoader,
# _IndexedView, _LossVariation, _make_loss_variation, _Step, _DATASET_SHAPES.
_REEXPORTED = (_DATASET_SHAPES, _IndexedView, _ResampledLoader, _ShardLoader, _LossVariation,
               _make_loss_variation, _Step, _finite_or_none, BEST, CHECKPOINT, CONFIG_COPY, FINAL, LOCK,
               LOG, METRICS, METRICS_CSV, PREVIOUS)  # fmt: skip
