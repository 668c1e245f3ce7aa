"""One training and evaluation loop for every config, single- and multi-label.

The loop a reader can hold in their head::

    for epoch in range(start, E):
        loader.set_epoch(epoch); loss.set_epoch(epoch, E)       # batch order = f(seed, epoch); DRW / ISDA λ
        for x, y in loader:
            lr = base_lr * lr_factor(...)                          # warm-up, then step or cosine
            loss = L(model(x), y)  [+ l2_all * Σθ²]                # ISDA: L(features, y, classifier)
            loss.backward(); clip; optimiser.step()
        evaluate → metrics.jsonl (appended, flushed) → checkpoint.pt (temp file + rename)

The loss ``L`` is any registered loss (LPL's Eqs. 27-33 single-label, Eqs. 34-41 multi-label, or a baseline).
Checkpoints hold the model, the loss's state (ISDA's covariance, LC's parameters), the optimiser, the global
step and the RNG states, so a run resumed from epoch k ends bit-for-bit where an uninterrupted run ends (CPU).
A non-finite loss stops the run with :class:`TrainingDiverged`; the last good checkpoint is kept.

Device: ``auto`` picks CUDA, then MPS, then CPU. AMP: bf16 autocast on CUDA (``auto``), off on CPU unless
``amp = "bf16"``. ``channels_last`` on CUDA by default. ``compile = true`` wraps the network in
``torch.compile``. Under ``torchrun`` (``WORLD_SIZE > 1``) the step runs in DistributedDataParallel (NCCL on
CUDA, gloo on CPU); each rank takes every ``world``-th batch of a loader built with ``batch_size / world``,
so the global batch and the number of steps per epoch are those of the config.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Components",
    "DistInfo",
    "TrainingDiverged",
    "atomic_save",
    "build_components",
    "check_config",
    "evaluate",
    "fit",
    "load_checkpoint",
    "lr_factor",
    "read_metrics",
    "select_device",
]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
FINAL = "final.json"
CONFIG_COPY = "config.toml"


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the run folder keeps the last good checkpoint."""


# ----------------------------------------------------------------------------------------------- device
def select_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """Device for ``spec`` in {"auto", "cpu", "cuda", "cuda:N", "mps"}; "auto" prefers CUDA, then MPS, then CPU.

    Under DDP ("auto" or "cuda"), rank ``local_rank`` takes ``cuda:local_rank``.
    """
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string, got {type(spec).__name__}")
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' requested but MPS is not available on this machine")
        return torch.device("mps")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {spec!r} requested but CUDA is not available; use 'auto' or 'cpu'"
            )
        return torch.device("cuda", local_rank) if spec == "cuda" else torch.device(spec)
    raise ValueError(f"device must be one of auto, cpu, cuda, cuda:N, mps; got {spec!r}")


# --------------------------------------------------------------------------------------------- schedule
def lr_factor(epoch: int, it: int, iters_per_epoch: int, schedule: dict[str, Any]) -> float:
    """Learning-rate multiplier at iteration ``it`` (0-indexed) of epoch ``epoch`` (0-indexed).

    * ``warmup_epochs = W``: factor (epoch+1)/W during the first W epochs (LDAM/CB: lr·e/5, e = 1..5).
    * ``warmup_iters = I``: linear from ``warmup_start_factor`` to 1 over the first I iterations (DB: 500, 1/3).
    * ``kind = "step"``: after the k-th milestone epoch, ``factors[k-1]`` if given, else ``gamma**k``.
    * ``kind = "cosine"``: 0.5·(1 + cos(π t / T)) per iteration over all iterations after the warm-up.
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


# ------------------------------------------------------------------------------------------ distributed
@dataclass(frozen=True)
class DistInfo:
    """Rank and world size read from the torchrun environment (world 1 without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistInfo:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)


class _ShardLoader:
    """Rank r of W takes batches r, r+W, r+2W, ... (the same count on every rank, so DDP never waits)."""

    def __init__(self, loader: Any, dist: DistInfo) -> None:
        self.loader, self.dist = loader, dist

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader) // self.dist.world

    def __iter__(self) -> Iterator[Any]:
        n = len(self) * self.dist.world
        for i, batch in enumerate(self.loader):
            if i >= n:
                break
            if i % self.dist.world == self.dist.rank:
                yield batch


# ------------------------------------------------------------------------------------------- components
@dataclass
class Components:
    """Everything the loop needs; :func:`build_components` makes it from a config, tests make it by hand.

    ``train_loader``/``test_loader`` follow the loader interface of ``lpl_train.data.make_loader``:
    ``set_epoch(epoch)``, iteration yields ``(x, target)`` on the device, ``len()`` = batches per epoch.
    """

    model: nn.Module
    loss: nn.Module
    train_loader: Any
    test_loader: Any
    num_classes: int
    class_counts: list[int]
    multi_label: bool = False


def build_components(
    cfg: dict[str, Any],
    device: torch.device,
    dist: DistInfo | None = None,
    *,
    check_only: bool = False,
) -> Components | dict[str, Any]:
    """Build dataset, loaders, model and loss from a validated config (``lpl_train.config``).

    With ``check_only`` the data is loaded (or its absence reported by ``FileNotFoundError``), the model and
    loss built, and a summary dict returned instead of loaders.
    """
    from lpl_train.data import build_datasets, make_loader
    from lpl_train.losses import build_loss
    from lpl_train.models import build_model

    dist = dist or DistInfo()
    d, m, lo, tr = cfg["data"], cfg["model"], cfg["loss"], cfg["train"]
    bundle = build_datasets(d["name"], root=d["root"], seed=d["seed"], **d["params"])
    torch.manual_seed(tr["seed"])  # model initialisation depends only on the training seed
    model = build_model(m["name"], num_classes=bundle.num_classes, **m["params"])
    loss = build_loss(
        lo["name"],
        num_classes=bundle.num_classes,
        class_counts=list(bundle.class_counts),
        **lo["params"],
    )
    bs = d["batch_size"]
    if bs % dist.world:
        raise ValueError(
            f"data.batch_size={bs} must be divisible by the number of processes {dist.world}"
        )
    common = {"device": device, "seed": tr["seed"], **d["loader"]}
    augment = bundle.augment if d["augment"] == "auto" else d["augment"]
    train_kw = {"batch_size": bs // dist.world, "train": True, "augment": augment,
                "drop_last": d["drop_last"], **common}  # fmt: skip
    if d["sampler"] == "class_aware":
        from lpl_train.samplers import ClassAwareSampler

        sampler = ClassAwareSampler(
            bundle.train.targets,
            seed=tr["seed"],
            num_classes=bundle.num_classes,
            **d["sampler_params"],
        )
        train_loader: Any = _ResampledLoader(bundle.train, sampler, make_loader, train_kw)
    else:
        train_loader = make_loader(bundle.train, **train_kw)
    test_loader = make_loader(
        bundle.test, batch_size=d["eval_batch_size"], train=False, augment="none", **common
    )
    if dist.world > 1:
        train_loader = _ShardLoader(train_loader, dist)
    return Components(
        model=model,
        loss=loss,
        train_loader=train_loader,
        test_loader=test_loader,
        num_classes=bundle.num_classes,
        class_counts=list(bundle.class_counts),
        multi_label=bundle.multi_label,
    )


class _IndexedView(torch.utils.data.Dataset):
    """Items ``index[i]`` of a map-style dataset, keeping its ``get``/``mean``/``std``/``targets``."""

    def __init__(self, base: Any, index: torch.Tensor) -> None:
        self.base, self.index = base, index.tolist()
        self.mean, self.std = getattr(base, "mean", None), getattr(base, "std", None)
        self.targets = base.targets[index]

    def __len__(self) -> int:
        return len(self.index)

    def get(self, i: int, generator: Any = None, train: bool = False) -> Any:
        if hasattr(self.base, "get"):
            return self.base.get(self.index[i], generator, train=train)
        return self.base[self.index[i]]

    def __getitem__(self, i: int) -> Any:
        return self.get(i)


class _ResampledLoader:
    """Class-aware resampling (the "RS" of R-BCE): epoch ``e`` trains on ``sampler.indices(e)``.

    The resampled multiset of epoch ``e`` depends only on (seed, e); the loader then orders it with its
    own (seed, e) permutation, so consecutive same-class triples of the reference sampler are not kept
    together within a batch.
    """

    def __init__(
        self, split: Any, sampler: Any, make_loader: Callable[..., Any], kw: dict[str, Any]
    ) -> None:
        self.split, self.sampler, self.make_loader, self.kw = split, sampler, make_loader, kw
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n, bs = self.sampler.num_samples, self.kw["batch_size"]
        return n // bs if self.kw["drop_last"] else -(-n // bs)

    def __iter__(self) -> Iterator[Any]:
        idx = self.sampler.indices(self.epoch)
        view = (
            self.split.subset(idx)
            if hasattr(self.split, "subset")
            else _IndexedView(self.split, idx)
        )
        loader = self.make_loader(view, **self.kw)
        loader.set_epoch(self.epoch)
        yield from loader


#: (classes, largest class, default imbalance) of each dataset, used by :func:`check_config` to build the
#: model and the loss when the data itself is missing.
_DATASET_SHAPES: dict[str, tuple[int, int, float]] = {
    "cifar10": (10, 5000, 1.0), "cifar100": (100, 500, 1.0), "cifar10_lt": (10, 5000, 100.0),
    "cifar100_lt": (100, 500, 100.0), "fmnist": (10, 6000, 1.0), "fmnist_lt": (10, 6000, 100.0),
    "fmnist_ml_lt": (10, 6000, 100.0), "gaussian": (2, 1000, 1.0), "inat2017": (5089, 3919, 435.0),
    "inat2018": (8142, 1000, 500.0), "voc_mlt": (20, 775, 775 / 4), "coco_mlt": (80, 1128, 1128 / 6),
    "coco": (80, 45000, 300.0),  # rough shape of train2014 (person in ~45k images); dry runs only
}  # fmt: skip


def check_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """What ``lpl-train run --dry-run`` reports: load the data (or catch why it cannot be found), build the
    model and the loss, and return a summary.

    When the data is missing (``FileNotFoundError``), the model and the loss are still built, with the
    dataset's known number of classes and placeholder long-tailed class counts, and ``data_error`` holds
    the loader's message (the path tried and how to get the data); likewise ``weights_error`` for a missing
    pretrained-weights file. Other errors propagate.
    """
    from lpl_train.data import build_datasets, long_tail_counts
    from lpl_train.losses import build_loss
    from lpl_train.models import build_model

    d, m, lo = cfg["data"], cfg["model"], cfg["loss"]
    info: dict[str, Any] = {"data_error": None}
    try:
        bundle = build_datasets(d["name"], root=d["root"], seed=d["seed"], **d["params"])
        num_classes, counts = bundle.num_classes, list(bundle.class_counts)
        info.update(
            train_size=len(bundle.train), test_size=len(bundle.test), multi_label=bundle.multi_label
        )
    except FileNotFoundError as exc:
        info["data_error"] = " ".join(str(exc).split())
        name = d["name"]
        if name == "cifar_lt_npz":
            name = f"{d['params'].get('variant', 'cifar10')}_lt"
        if name not in _DATASET_SHAPES:
            raise
        num_classes, n_max, ratio = _DATASET_SHAPES[name]
        ratio = float(d["params"].get("imbalance_ratio", ratio))
        counts = long_tail_counts(num_classes, n_max, ratio) if ratio > 1 else [n_max] * num_classes
        info["multi_label"] = name.endswith("ml_lt") or name in ("voc_mlt", "coco_mlt", "coco")
    torch.manual_seed(cfg["train"]["seed"])
    info["weights_error"] = None
    try:
        model = build_model(m["name"], num_classes=num_classes, **m["params"])
    except FileNotFoundError as exc:  # pretrained weights missing: build without them, report it
        if "weights" not in m["params"]:
            raise
        info["weights_error"] = " ".join(str(exc).split())
        params = {k: v for k, v in m["params"].items() if k != "weights"}
        model = build_model(m["name"], num_classes=num_classes, **params)
    loss = build_loss(lo["name"], num_classes=num_classes, class_counts=counts, **lo["params"])
    info.update(
        num_classes=num_classes,
        model_params=sum(p.numel() for p in model.parameters()),
        loss=type(loss).__name__,
    )
    return info


# ------------------------------------------------------------------------------------------- the step
class _Step(nn.Module):
    """Network + loss as one module, so DDP sees every parameter used in the loss (ISDA, LC)."""

    def __init__(self, model: nn.Module, loss: nn.Module, compiled: bool) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.needs_features = bool(getattr(loss, "needs_features", False))
        fwd: Callable[..., torch.Tensor] = model.forward_features if self.needs_features else model
        if compiled:
            fwd = torch.compile(fwd)
        object.__setattr__(
            self, "_fwd", fwd
        )  # not a registered submodule: state_dict keys unchanged

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, autocast: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns (loss value, logits, features or None)."""
        with autocast:
            out = self._fwd(x)
        out = out.float()
        if self.needs_features:
            value = self.loss(out, y, self.model.classifier)
            return value, self.model.classifier(out), out
        return self.loss(out, y), out, None


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)


# ---------------------------------------------------------------------------------------- checkpoints
def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`fit` (``weights_only=True``: tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != 1:
        raise ValueError(
            f"checkpoint {str(path)!r} is not a checkpoint written by lpl_train.engine"
        )
    return ckpt


def _write_json_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run folder's ``metrics.jsonl`` (an incomplete last line is ignored)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a run killed while writing: keep what is complete
    return out


# ----------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    class_counts: list[int],
    multi_label: bool,
    autocast: Any = None,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Test-set metrics, in percent (an undefined value, e.g. the mean of an empty group, is None).

    Single-label: ``loss`` (mean CE), ``top1_error``, ``per_class_acc`` and the many/medium/few group means
    (``lpl_train.metrics.group_accuracy``). Multi-label: ``loss`` (mean BCE over N×C), ``map``,
    ``ap_per_class`` and ``map_head/medium/tail`` (``lpl_train.metrics.map_groups``).
    """
    from lpl_train import metrics as M

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if len(class_counts) != num_classes:
        raise ValueError(
            f"class_counts must have num_classes={num_classes} entries, got {len(class_counts)}"
        )
    autocast = autocast or contextlib.nullcontext()
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    count = 0
    correct = torch.zeros(num_classes, dtype=torch.float64)
    total = torch.zeros(num_classes, dtype=torch.float64)
    scores, targets = [], []
    for x, y in loader:
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(x)
        logits = logits.float()
        if multi_label:
            loss_sum += (
                F.binary_cross_entropy_with_logits(logits, y.float(), reduction="sum")
                .double()
                .cpu()
            )
            count += y.numel()
            scores.append(logits.cpu())
            targets.append(y.cpu())
        else:
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double().cpu()
            count += y.numel()
            hit = (logits.argmax(1) == y).double()
            total += torch.bincount(y.cpu(), minlength=num_classes).double()
            correct += torch.zeros(num_classes, dtype=torch.float64).index_add_(
                0, y.cpu(), hit.cpu()
            )
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluation loader yielded no samples")
    out: dict[str, Any] = {"loss": float(loss_sum) / count}
    if multi_label:
        ap = M.average_precision_per_class(torch.cat(scores), torch.cat(targets))  # percent
        out["ap_per_class"] = [float(a) for a in ap]
        for k, v in M.map_groups(ap, class_counts).items():
            out["map" if k == "total" else f"map_{k}"] = float(v)
    else:
        acc = [
            100.0 * c / t if t > 0 else math.nan
            for c, t in zip(correct.tolist(), total.tolist(), strict=True)
        ]
        out["top1_error"] = 100.0 * (1.0 - float(correct.sum() / total.sum()))
        out["per_class_acc"] = acc
        for k, v in M.group_accuracy(acc, class_counts).items():
            out[f"acc_{k}"] = float(v)
    return _finite_or_none(out)


def _finite_or_none(obj: Any) -> Any:
    """NaN/inf → None, so that metrics.jsonl is strict JSON (an empty group has no mean)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------------- loss variation
class _LossVariation:
    """Per-class relative loss variation (l' − l)/l of the trained loss against plain CE/BCE (Figs. 1, 2, 11).

    l' is the loss's own per-sample value (``reduction="none"``) on the detached logits of the step, through
    :meth:`LossVariation.update_with` (LDAM is compared on its scaled logits s·u); for a feature-level loss
    (ISDA) it is CE on its ``augmented_logits``. The loss's buffers are restored after the measurement, so
    it changes neither the gradient nor any loss state (counters, statistics).
    """

    def __init__(self, loss: nn.Module, num_classes: int, multi_label: bool) -> None:
        from lpl_train import loss_variation as LV

        self.loss = loss
        self.features = bool(getattr(loss, "needs_features", False))
        self.acc = LV.LossVariation(num_classes, multi_label=multi_label, validate=False)
        self.ok = hasattr(loss, "augmented_logits") if self.features else hasattr(loss, "reduction")

    @torch.no_grad()
    def update(
        self,
        logits: torch.Tensor,
        y: torch.Tensor,
        features: torch.Tensor | None,
        classifier: nn.Module,
    ) -> None:
        if self.features:  # augmented_logits reads the statistics without updating them
            aug = self.loss.augmented_logits(features, y, classifier)
            self.acc.update(logits, y, perturbed_logits=aug.float())
            return
        # update_with restores the loss's reduction and buffers, and measures LDAM on its own scale (s·u)
        self.acc.update_with(self.loss, logits, y)

    def result(self) -> dict[str, Any]:
        res = self.acc.compute()
        self.acc.reset()
        return res


def _make_loss_variation(loss: nn.Module, comps: Components) -> _LossVariation | None:
    try:
        lv = _LossVariation(loss, comps.num_classes, comps.multi_label)
    except (ImportError, AttributeError):
        return None
    return lv if lv.ok else None


# ------------------------------------------------------------------------------------------------ fit
def _optimizer(params: list[nn.Parameter], o: dict[str, Any]) -> torch.optim.Optimizer:
    if o["name"] == "sgd":
        return torch.optim.SGD(
            params,
            lr=o["lr"],
            momentum=o["momentum"],
            nesterov=o["nesterov"],
            weight_decay=o["weight_decay"],
        )
    cls = torch.optim.Adam if o["name"] == "adam" else torch.optim.AdamW
    return cls(params, lr=o["lr"], weight_decay=o["weight_decay"])


def _rng_state() -> dict[str, Any]:
    st: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _autocast(device: torch.device, amp: str) -> Any:
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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

    Run folder: ``config.toml`` (the config as run), ``metrics.jsonl`` (one JSON object per epoch, appended
    and flushed), ``checkpoint.pt`` (last completed epoch, written atomically) and, at the end,
    ``final.json`` (last-epoch and best metrics, per-class statistics, class counts).

    Args:
        cfg: a config from :func:`lpl_train.config.load_config` / ``validate_config``.
        out_dir: the run folder; created if missing. Without ``resume`` it must not hold a checkpoint.
        components: pre-built model/loss/loaders (tests, notebooks); default: built from ``cfg``.
        resume: continue from ``out_dir/checkpoint.pt``; the config must equal the stored one.
        stop_after_epoch: return after this many completed epochs (a clean stand-in for a killed job).
        progress: show a tqdm bar (default: ``cfg["train"]["progress"]``).
        log: where one-line messages go (default: print on rank 0).

    Returns:
        the ``final.json`` content (or, when stopped early, the last epoch's record).

    Raises:
        TrainingDiverged: on a NaN/inf training loss; ``checkpoint.pt`` stays at the last good epoch.
    """
    from lpl_train.config import validate_config

    if not isinstance(cfg, dict):
        raise TypeError(f"cfg must be a validated config dict, got {type(cfg).__name__}")
    cfg = validate_config(cfg)
    if stop_after_epoch is not None and (
        not isinstance(stop_after_epoch, int) or stop_after_epoch < 1
    ):
        raise ValueError(
            f"stop_after_epoch must be a positive int or None, got {stop_after_epoch!r}"
        )
    out = Path(out_dir)
    dist = DistInfo.from_env()
    tr = cfg["train"]
    show = tr["progress"] if progress is None else progress
    log = log or (print if dist.main else (lambda s: None))

    own_group = dist.world > 1 and not torch.distributed.is_initialized()
    if own_group:
        backend = "nccl" if torch.cuda.is_available() and tr["device"] != "cpu" else "gloo"
        torch.distributed.init_process_group(backend)
    try:
        device = select_device(tr["device"], dist.local_rank)
        return _fit(cfg, out, dist, device, components, resume, stop_after_epoch, show, log)
    except BaseException as exc:
        if (
            own_group
        ):  # free the DDP wrapper held by the failed frames before its process group goes
            traceback.clear_frames(exc.__traceback__)
            gc.collect()
        raise
    finally:
        if own_group:
            torch.distributed.destroy_process_group()


def _fit(
    cfg: dict[str, Any],
    out: Path,
    dist: DistInfo,
    device: torch.device,
    components: Components | None,
    resume: bool,
    stop_after_epoch: int | None,
    show: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from lpl_train.config import dumps_toml

    tr, sched = cfg["train"], cfg["schedule"]

    ckpt_path = out / CHECKPOINT
    cfg_text = dumps_toml(cfg)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {str(ckpt_path)!r}")
        stored = (
            (out / CONFIG_COPY).read_text(encoding="utf-8")
            if (out / CONFIG_COPY).is_file()
            else None
        )
        if stored is not None and _strip_volatile(stored) != _strip_volatile(cfg_text):
            raise ValueError(
                f"--resume: the config differs from the one stored in {str(out / CONFIG_COPY)!r}; "
                "resume with the same config (and --epochs), or use another --out"
            )
    elif ckpt_path.exists() and dist.main:
        raise FileExistsError(
            f"run folder {str(out)!r} already holds a checkpoint; pass --resume to continue it or choose "
            "another --out"
        )

    torch.set_flush_denormal(True)
    torch.manual_seed(tr["seed"])
    comps = components if components is not None else build_components(cfg, device, dist)
    if not isinstance(comps, Components):
        raise TypeError(f"components must be a Components instance, got {type(comps).__name__}")
    model, loss = comps.model.to(device), comps.loss.to(device)
    channels_last = tr["channels_last"] is True or (
        tr["channels_last"] == "auto" and device.type == "cuda"
    )
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_mod = _Step(model, loss, compiled=tr["compile"])
    params = [p for p in step_mod.parameters() if p.requires_grad]
    opt = _optimizer(params, cfg["optim"])
    base_lrs = [g["lr"] for g in opt.param_groups]
    runner: nn.Module = step_mod
    if dist.world > 1:
        runner = nn.parallel.DistributedDataParallel(
            step_mod, device_ids=[device.index] if device.type == "cuda" else None
        )
    autocast = _autocast(device, tr["amp"])
    lv = _make_loss_variation(loss, comps) if tr["loss_variation"] else None

    start_epoch, step, best = 0, 0, {}
    if resume:
        ck = load_checkpoint(ckpt_path)
        model.load_state_dict(ck["model"])
        loss.load_state_dict(ck["loss"])
        opt.load_state_dict(ck["optimizer"])
        start_epoch, step, best = ck["epoch"], ck["step"], ck.get("best", {})
        _set_rng_state(ck["rng"])
        if dist.main:
            kept = [r for r in read_metrics(out) if r.get("epoch", 0) < start_epoch]
            _write_text_atomic("".join(json.dumps(r) + "\n" for r in kept), out / METRICS)
        log(f"resuming {cfg['name']} from epoch {start_epoch} ({str(ckpt_path)})")
    elif dist.main:
        _write_text_atomic(cfg_text, out / CONFIG_COPY)
        _write_text_atomic("", out / METRICS)

    E = sched["epochs"]
    n_iter = len(comps.train_loader)
    if n_iter < 1:
        raise ValueError(
            "the training loader yields no batches (dataset smaller than one batch with drop_last)"
        )
    done = read_metrics(out) if resume and dist.main else []
    record: dict[str, Any] = done[-1] if done else {}  # a finished run resumed: its last epoch
    t_run = time.perf_counter()
    for epoch in range(start_epoch, E):
        comps.train_loader.set_epoch(epoch)
        if hasattr(loss, "set_epoch"):
            loss.set_epoch(epoch, E)
        runner.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        bad_step = torch.full((), -1, dtype=torch.long, device=device)
        seen = 0
        bar = _progress(
            comps.train_loader, n_iter, show and dist.main, f"{cfg['name']} {epoch + 1}/{E}"
        )
        for it, (x, y) in enumerate(bar):
            f = lr_factor(epoch, it, n_iter, sched)
            for g, lr0 in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = lr0 * f
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            value, logits, feats = runner(x, y, autocast)
            if cfg["optim"]["l2_all"]:
                value = value + cfg["optim"]["l2_all"] * sum(
                    (p.float() ** 2).sum() for p in model.parameters()
                )
            opt.zero_grad(set_to_none=True)
            value.backward()
            if cfg["optim"]["grad_clip"]:
                nn.utils.clip_grad_norm_(params, cfg["optim"]["grad_clip"])
            det = value.detach()
            finite = torch.isfinite(det)
            bad_step = torch.where(
                ~finite & (bad_step < 0), torch.full_like(bad_step, step), bad_step
            )
            if device.type == "cpu" and dist.world == 1 and not bool(finite):
                break  # (under DDP every rank must take the same steps: checked after the epoch)
            if lv is not None:  # before the update: l' with the weights that produced the logits
                lv.update(
                    logits.detach(), y, None if feats is None else feats.detach(), model.classifier
                )
            opt.step()
            loss_sum += det
            seen += y.shape[0]
            step += 1
            if show and dist.main and it % 20 == 0:
                bar.set_postfix(loss=f"{float(det):.4f}", lr=f"{opt.param_groups[0]['lr']:.3g}")
        if dist.world > 1:  # any rank diverged → all stop; train_loss averaged over the ranks
            torch.distributed.all_reduce(bad_step, op=torch.distributed.ReduceOp.MAX)
            torch.distributed.all_reduce(loss_sum)
            loss_sum /= dist.world
        bad = int(bad_step)
        if bad >= 0:
            _diverged(out, cfg, epoch, bad, ckpt_path, dist)
        train_time = time.perf_counter() - t0
        record = {
            "epoch": epoch,
            "lr": opt.param_groups[0]["lr"],
            "train_loss": float(loss_sum) / n_iter,
            "train_time_s": train_time,
            "images_per_s": seen * dist.world / train_time if train_time > 0 else None,
        }
        if lv is not None:
            record["loss_variation"] = lv.result()
        if (epoch + 1) % tr["eval_every"] == 0 or epoch + 1 == E:
            if dist.main:
                test = evaluate(
                    model, comps.test_loader, comps.num_classes, comps.class_counts, comps.multi_label,
                    autocast, channels_last,
                )  # fmt: skip
                record.update({f"test_{k}": v for k, v in test.items()})
                best = _update_best(best, record, epoch, comps.multi_label)
            if dist.world > 1:
                torch.distributed.barrier()
        record["best"] = dict(best)
        if dist.main:
            with open(out / METRICS, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(_finite_or_none(record), allow_nan=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            atomic_save(
                {
                    "format": 1,
                    "epoch": epoch + 1,
                    "step": step,
                    "model": _unwrap(model).state_dict(),
                    "loss": loss.state_dict(),
                    "optimizer": opt.state_dict(),
                    "rng": _rng_state(),
                    "best": dict(best),
                    "config": cfg_text,
                },
                ckpt_path,
            )
            summary = _epoch_line(record)
            if not show:
                log(summary)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < E:
            return record
    final = _final(cfg, out, comps, record, best, time.perf_counter() - t_run)
    if dist.main:
        _write_json_atomic(_finite_or_none(final), out / FINAL)
    if dist.world > 1:
        torch.distributed.barrier()
    return final


def _strip_volatile(text: str) -> str:
    """The config text without the keys a resumed run may change (progress bar, device)."""
    return "\n".join(
        line for line in text.splitlines() if not line.startswith(("progress =", "device ="))
    )


def _write_text_atomic(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _progress(it: Any, total: int, show: bool, desc: str) -> Any:
    if not show:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _diverged(
    out: Path, cfg: dict[str, Any], epoch: int, step: int, ckpt: Path, dist: DistInfo
) -> None:
    kept = (
        f"the last good checkpoint {str(ckpt)!r} is kept"
        if ckpt.exists()
        else "no checkpoint was written"
    )
    msg = (
        f"training loss became non-finite (NaN/inf) in run {cfg['name']!r} in epoch {epoch + 1} of "
        f"{cfg['schedule']['epochs']} (global step {step}); {kept}. Lower optim.lr, enable optim.grad_clip or check the loss parameters."
    )
    if dist.main:
        _write_json_atomic({"epoch": epoch, "step": step, "message": msg}, out / "diverged.json")
    raise TrainingDiverged(msg)


def _update_best(
    best: dict[str, Any], rec: dict[str, Any], epoch: int, multi_label: bool
) -> dict[str, Any]:
    key, better = ("test_map", max) if multi_label else ("test_top1_error", min)
    if key in rec and (key not in best or better(rec[key], best[key]) != best[key]):
        return {key: rec[key], "epoch": epoch}
    return best


def _epoch_line(rec: dict[str, Any]) -> str:
    parts = [f"epoch {rec['epoch'] + 1}", f"loss {rec['train_loss']:.4f}"]
    if "test_top1_error" in rec:
        parts.append(f"top-1 error {rec['test_top1_error']:.2f}%")
    if "test_map" in rec:
        parts.append(f"mAP {rec['test_map']:.2f}%")
    if rec.get("images_per_s"):
        parts.append(f"{rec['images_per_s']:.0f} img/s")
    return ", ".join(parts)


def _final(
    cfg: dict[str, Any],
    out: Path,
    comps: Components,
    rec: dict[str, Any],
    best: dict[str, Any],
    wall: float,
) -> dict[str, Any]:
    last = {k[len("test_") :]: v for k, v in rec.items() if k.startswith("test_")}
    return {
        "name": cfg["name"],
        "paper": cfg.get("paper"),
        "seed": cfg["train"]["seed"],
        "data_seed": cfg["data"]["seed"],
        "epochs": cfg["schedule"]["epochs"],
        "multi_label": comps.multi_label,
        "num_classes": comps.num_classes,
        "class_counts": list(comps.class_counts),
        "final": last,
        "best": best,
        "wall_s": wall,
    }
