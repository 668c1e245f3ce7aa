"""From a config to the pieces the loop needs: dataset, loaders (resampled, sharded), model and loss; and the
dry-run check that builds them without training."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .distributed import DistInfo

__all__ = ["Components", "build_components", "check_config"]


@dataclass
class Components:
    """Everything the loop needs; :func:`build_components` makes it from a config, tests make it by hand.

    ``train_loader``/``test_loader`` follow the loader interface of ``lpl_train.data.make_loader``:
    ``set_epoch(epoch)``, iteration yields ``(x, target)`` on the device, ``len()`` = batches per epoch.
    ``val_loader`` (optional) is evaluated every epoch too; the best-validation checkpoint follows it.
    """

    model: nn.Module
    loss: nn.Module
    train_loader: Any
    test_loader: Any
    num_classes: int
    class_counts: list[int]
    multi_label: bool = False
    val_loader: Any = None
    class_names: list[str] | None = None
    #: under DDP, the evaluation loaders hold this process's part of each split (every process evaluates
    #: its part and the sums are combined); otherwise rank 0 evaluates the whole split alone
    eval_sharded: bool = False


def _loss_params(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config's loss parameters, with the run's ``train.seed`` as ``seed`` unless they set one: a loss
    that draws its own random numbers (DisturbLabel) draws other ones for every seed of a sweep."""
    return {"seed": cfg["train"]["seed"], **cfg["loss"]["params"]}


def _keyed(exc: Exception, section: str, params: dict[str, Any]) -> Exception:
    """A model's or loss's own error (``width must be ...``) as a config error naming its key:
    ``config key 'model.params.width': width must be ...`` (``section.params`` where the message names
    no parameter of the config)."""
    msg = " ".join(str(exc).split())
    if msg.startswith("config key "):
        return exc
    first = msg.split(" ", 1)[0].strip("'\"`:,;()")
    key = f"{section}.params.{first}" if first in params else f"{section}.params"
    return type(exc)(f"config key {key!r}: {msg}")


def _build_loss(cfg: dict[str, Any], num_classes: int, counts: list[Any] | None) -> nn.Module:
    """The config's loss; its own errors name the config key (:func:`_keyed`)."""
    from lpl_train.losses import build_loss

    lo = cfg["loss"]
    try:
        return build_loss(
            lo["name"], num_classes=num_classes, class_counts=counts, **_loss_params(cfg)
        )
    except (TypeError, ValueError) as exc:
        raise _keyed(exc, "loss", lo["params"]) from None


def _build_model(
    m: dict[str, Any], num_classes: int, params: dict[str, Any] | None = None
) -> nn.Module:
    """The config's model (with ``params`` in place of its own); its errors name the config key."""
    from lpl_train.models import build_model

    params = m["params"] if params is None else params
    try:
        return build_model(m["name"], num_classes=num_classes, **params)
    except (TypeError, ValueError) as exc:
        raise _keyed(exc, "model", params) from None


def check_processes(cfg: dict[str, Any], world: int, device: torch.device | None = None) -> None:
    """What ``world`` processes (torchrun's) need of the config: a batch size they divide, and, with
    ``train.sync_batchnorm``, a CUDA ``device`` (checked where it is given)."""
    bs = cfg["data"]["batch_size"]
    if bs % world:
        raise ValueError(
            f"data.batch_size={bs} must be divisible by the number of processes {world}"
        )
    if (
        cfg["train"]["sync_batchnorm"]
        and world > 1
        and device is not None
        and device.type != "cuda"
    ):
        raise ValueError(
            f"config key 'train.sync_batchnorm' is true but the device is {device}: torch's "
            "SyncBatchNorm works only on CUDA devices; set it false on CPU"
        )


def check_loss_kind(loss_name: str, loss: Any, data_name: str, multi_label: bool) -> None:
    """A single-label loss on multi-label data (multi-hot targets) or the reverse is refused before
    training: the loss's own checks would stop it only in the first step, or, with ``validate = false``,
    train it on targets it does not define."""
    from lpl_train.losses.registry import _REGISTRY

    def multi(x: Any) -> bool:
        return bool(getattr(x, "multi_label", False))

    if multi(loss) == bool(multi_label):
        return
    kind = "multi-label" if multi_label else "single-label"
    fits = sorted(n for n, cls in _REGISTRY.items() if multi(cls) == bool(multi_label))
    raise ValueError(
        f"config key 'loss.name' has value {loss_name!r}, a {'multi' if multi(loss) else 'single'}-label "
        f"loss, but data {data_name!r} is {kind}; use a {kind} loss ({', '.join(fits)})"
    )


def _in_config_terms(exc: FileNotFoundError) -> str:
    """A loader's missing-data message with its advice in the config's terms (``MissingData.in_config``:
    ``data.params.download`` where the Python call says ``download=True``)."""
    return getattr(exc, "in_config", str(exc))


def build_components(
    cfg: dict[str, Any],
    device: torch.device,
    dist: DistInfo | None = None,
    *,
    check_only: bool = False,
) -> Components | dict[str, Any]:
    """Build dataset, loaders, model and loss from a validated config (``lpl_train.config``).

    With ``check_only`` the result of :func:`check_config` is returned instead (nothing is trained).
    """
    if check_only:
        return check_config(cfg)
    from lpl_train.data import build_datasets, make_loader

    dist = dist or DistInfo()
    d, m, lo, tr = cfg["data"], cfg["model"], cfg["loss"], cfg["train"]
    _check_loader_options(d)  # before the data is read, as the dry run checks them
    try:
        bundle = build_datasets(d["name"], root=d["root"], seed=d["seed"], **d["params"])
    except FileNotFoundError as exc:
        raise FileNotFoundError(_in_config_terms(exc)) from None
    torch.manual_seed(tr["seed"])  # model initialisation depends only on the training seed
    model = _build_model(m, bundle.num_classes)
    loss = _build_loss(cfg, bundle.num_classes, list(bundle.class_counts))
    check_loss_kind(lo["name"], loss, d["name"], bundle.multi_label)
    check_processes(cfg, dist.world)
    common = {"device": device, "seed": tr["seed"], "pad_mode": bundle.pad_mode, **d["loader"]}
    train_loader = _train_loader(cfg, bundle, dist, common)
    check_train_batches(train_loader, d["batch_size"])
    eval_kw = {"batch_size": d["eval_batch_size"], "train": False, "augment": "none", **common}
    # under DDP each process evaluates its consecutive part of each split; the sums are combined
    test_loader = make_loader(_eval_part(bundle.test, dist), **eval_kw)
    val = getattr(bundle, "val", None)
    if val is not None and len(val):
        val_loader = make_loader(_eval_part(val, dist), **eval_kw)
    else:
        val_loader = None
    names = getattr(bundle, "class_names", None)
    return Components(
        model=model,
        loss=loss,
        train_loader=train_loader,
        test_loader=test_loader,
        num_classes=bundle.num_classes,
        class_counts=list(bundle.class_counts),
        multi_label=bundle.multi_label,
        val_loader=val_loader,
        class_names=list(names) if names else None,
        eval_sharded=dist.world > 1,
    )


def _train_loader(cfg: dict[str, Any], bundle: Any, dist: DistInfo, common: dict[str, Any]) -> Any:
    """The training loader of a run: batches of the global batch size, class-aware resampled with
    ``data.sampler``; under DDP each rank reads, augments and trains only its slice of every batch
    (``shard``), and the loader's ``share`` weights an unevenly split last batch."""
    from lpl_train.data import make_loader

    d = cfg["data"]
    augment = bundle.augment if d["augment"] == "auto" else d["augment"]
    train_kw = {"batch_size": d["batch_size"], "train": True, "augment": augment,
                "drop_last": d["drop_last"], "shard": (dist.rank, dist.world), **common}  # fmt: skip
    keys = {"augment": "data.augment", **{k: f"data.loader.{k}" for k in d["loader"]}}
    try:
        if d["sampler"] != "class_aware":
            return make_loader(bundle.train, **train_kw)
        # a resampled epoch's loader is built when the epoch starts: one over the split's first row,
        # with the same options, refuses them now, before the run folder is written
        make_loader(_rows(bundle.train, torch.arange(min(1, len(bundle.train)))), **train_kw)
    except (TypeError, ValueError) as exc:
        raise _named_loader_error(exc, keys) from None
    from lpl_train.samplers import ClassAwareSampler

    sampler = ClassAwareSampler(
        bundle.train.targets,
        seed=cfg["train"]["seed"],
        num_classes=bundle.num_classes,
        **d["sampler_params"],
    )
    return _ResampledLoader(bundle.train, sampler, make_loader, train_kw)


def _named_loader_error(exc: Exception, keys: dict[str, str]) -> Exception:
    """``make_loader``'s refusal of an option it was given from the config (its message starts with the
    option's name, ``keys`` maps names to config keys), with the config key in front; any other error as
    it is."""
    msg = str(exc)
    name = next(
        (k for k in sorted(keys, key=len, reverse=True) if msg.startswith((f"{k} ", f"{k}="))),
        None,
    )
    return exc if name is None else type(exc)(f"config key '{keys[name]}': {msg}")


def check_train_batches(loader: Any, batch_size: int | None) -> None:
    """Refuse a training loader that yields no batch (fewer samples per epoch than one batch, with
    ``data.drop_last``): its run would train nothing. ``batch_size`` None: a loader of one's own (fit's
    ``components``), which no config key built."""
    if len(loader) >= 1:
        return
    if batch_size is None:
        raise ValueError(
            "the training loader of the components given to fit yields no batches (its len() is 0): "
            "the run would train nothing"
        )
    raise ValueError(
        f"the training loader yields no batches: fewer training samples per epoch than one batch "
        f"of data.batch_size={batch_size}, with data.drop_last = true"
    )


def _eval_part(split: Any, dist: DistInfo) -> Any:
    """Process ``dist.rank``'s part of an evaluation split: the ``rank``-th of ``world`` consecutive parts
    (``torch.tensor_split`` of its indices; possibly empty); the whole split for one process."""
    if dist.world <= 1:
        return split
    return _rows(split, torch.tensor_split(torch.arange(len(split)), dist.world)[dist.rank])


def _rows(split: Any, index: Any) -> Any:
    """The rows ``index`` of a split: its own ``subset`` (a :class:`TensorData`), else an
    :class:`_IndexedView` of a map-style dataset."""
    return split.subset(index) if hasattr(split, "subset") else _IndexedView(split, index)


class _IndexedView(torch.utils.data.Dataset):
    """Items ``index[i]`` of a map-style dataset, keeping its ``get``/``mean``/``std``/``targets``."""

    def __init__(self, base: Any, index: torch.Tensor) -> None:
        self.base, self.index = base, index.tolist()
        self.mean, self.std = getattr(base, "mean", None), getattr(base, "std", None)
        self.targets = base.targets[index]

    def __len__(self) -> int:
        return len(self.index)

    def get(self, i: int, generator: Any = None, train: bool = False, **norm: Any) -> Any:
        if hasattr(self.base, "get"):
            return self.base.get(self.index[i], generator, train=train, **norm)
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
        self.share = 1.0  # the inner loader's, for the batch just yielded (see make_loader's shard)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n, bs = self.sampler.num_samples, self.kw["batch_size"]
        return n // bs if self.kw["drop_last"] else -(-n // bs)

    def __iter__(self) -> Iterator[Any]:
        idx = self.sampler.indices(self.epoch)
        loader = self.make_loader(_rows(self.split, idx), **self.kw)
        loader.set_epoch(self.epoch)
        for batch in loader:
            self.share = getattr(loader, "share", 1.0)
            yield batch


#: (classes, largest class, default imbalance) of each dataset, used by :func:`check_config` to build the
#: model and the loss when the data itself is missing.
_DATASET_SHAPES: dict[str, tuple[int, int, float]] = {
    "cifar10": (10, 5000, 1.0), "cifar100": (100, 500, 1.0), "cifar10_lt": (10, 5000, 100.0),
    "cifar100_lt": (100, 500, 100.0), "fmnist": (10, 6000, 1.0), "fmnist_lt": (10, 6000, 100.0),
    "fmnist_ml_lt": (10, 6000, 100.0), "gaussian": (2, 1000, 1.0), "inat2017": (5089, 3919, 435.0),
    "inat2018": (8142, 1000, 500.0), "voc_mlt": (20, 775, 775 / 4), "coco_mlt": (80, 1128, 1128 / 6),
    "coco": (80, 45000, 300.0),  # rough shape of train2014 (person in ~45k images); dry runs only
}  # fmt: skip


def check_config(
    cfg: dict[str, Any],
    data_cache: dict[str, Any] | None = None,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """What ``lpl-train run --dry-run`` reports: load the data (or catch why it cannot be found), build the
    loaders, the model and the loss, pass one training batch through the model, and return a summary.

    When the data is missing (``FileNotFoundError``), the model and the loss are still built, with the
    dataset's known number of classes and placeholder long-tailed class counts, and ``data_error`` holds
    the loader's message (the path tried and how to get the data); likewise ``weights_error`` for a missing
    pretrained-weights file. ``data.augment`` and ``data.loader`` are checked either way. Other errors
    propagate; nothing is downloaded. ``data_cache`` (a dict, e.g. across a sweep's grid points) keeps the
    data loaded (or the reason it is missing) per distinct ``[data]`` table, so each is read once.
    ``device``: the run's (default: ``select_device(train.device)``), where ``train.compile_loss`` is checked
    against the step mode the run would choose, with torchrun's ``WORLD_SIZE`` processes (one without it).
    """
    from lpl_train.data import build_datasets

    d, lo = cfg["data"], cfg["loss"]
    _check_loader_options(d)
    dist = DistInfo.from_env()  # under torchrun: what its processes need, as the run checks it
    if dist.world > 1 and cfg["train"]["sync_batchnorm"] and device is None:
        from .devices import select_device

        device = select_device(cfg["train"]["device"], dist.local_rank)
    check_processes(cfg, dist.world, device)
    info: dict[str, Any] = {"data_error": None}
    params = {**d["params"], "download": False} if "download" in d["params"] else d["params"]
    cache = {} if data_cache is None else data_cache
    key = json.dumps([d["name"], d["root"], d["seed"], params], sort_keys=True, default=str)
    if key not in cache:
        try:  # a dry run never downloads: missing data is reported, not fetched
            cache[key] = build_datasets(d["name"], root=d["root"], seed=d["seed"], **params)
        except FileNotFoundError as exc:
            cache[key] = exc
    bundle = cache[key]
    if isinstance(bundle, FileNotFoundError):
        info["data_error"] = " ".join(_in_config_terms(bundle).split())
        if d["params"].get("download"):
            info["data_error"] += " It is set: the run downloads the data; a dry run never does."
        num_classes, counts, info["multi_label"] = _placeholder_shape(d, bundle)
        bundle = None
    else:
        num_classes, counts = bundle.num_classes, list(bundle.class_counts)
        info.update(
            train_size=len(bundle.train), test_size=len(bundle.test), multi_label=bundle.multi_label
        )
    torch.manual_seed(cfg["train"]["seed"])
    model = _build_model_reporting_weights(cfg["model"], num_classes, info)
    loss = _build_loss(cfg, num_classes, counts)
    check_loss_kind(lo["name"], loss, d["name"], info["multi_label"])
    # in the run's order: its training loader (build_components), its step (the Trainer), a first batch
    if bundle is not None:
        _check_train_loader(cfg, bundle)
    # train.compile_loss as the Trainer decides it, in as many processes as torchrun starts
    if cfg["train"]["compile_loss"]:
        from .capture import compiles_loss_alone, run_capture
        from .devices import resolve_precision, select_device
        from .step import check_loss_compiles

        if device is None:
            device = select_device(cfg["train"]["device"], dist.local_rank)
        precision = resolve_precision(device, cfg["train"]["amp"])
        if compiles_loss_alone(cfg, run_capture(cfg, device, dist.world, loss, precision, model)):
            check_loss_compiles(loss)
    if bundle is not None:
        _try_one_batch(cfg, bundle, model)
    info.update(
        num_classes=num_classes,
        model_params=sum(p.numel() for p in model.parameters()),
        loss=type(loss).__name__,
    )
    return info


def _check_loader_options(d: dict[str, Any]) -> None:
    """``data.augment``, ``data.loader`` and the sampler's keys, as far as they are known without the
    data: the run and the dry run call this before reading it."""
    from lpl_train.data.loader import AUGMENTS, check_loader_values

    if d["augment"] != "auto" and d["augment"] not in AUGMENTS:
        raise ValueError(
            f"config key 'data.augment' has value {d['augment']!r}; allowed: auto, {', '.join(AUGMENTS)}"
        )
    backend = d["loader"].get("backend", "auto")
    if backend not in ("auto", "tensor", "dataloader"):
        raise ValueError(
            f"config key 'data.loader.backend' has value {backend!r}; allowed: auto, tensor, dataloader"
        )
    allowed = {"backend", "num_workers", "mean", "std", "pad", "pad_mode"}
    unknown = sorted(set(d["loader"]) - allowed)
    if unknown:
        raise ValueError(
            f"unknown config key 'data.loader.{unknown[0]}'; allowed in [data.loader]: "
            f"{', '.join(sorted(allowed))}"
        )
    workers = d["loader"].get("num_workers", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(
            f"config key 'data.loader.num_workers' has value {workers!r}; expected an integer >= 0"
        )
    # the values every loader checks (training, evaluation, resampled): refused here under their key
    values = {k: v for k, v in d["loader"].items() if k in ("mean", "std", "pad", "pad_mode")}
    try:
        check_loader_values(**values)
    except (TypeError, ValueError) as exc:
        raise _named_loader_error(exc, {k: f"data.loader.{k}" for k in values}) from None
    if d["sampler"] == "none" and d["sampler_params"]:
        raise ValueError(
            f"config key 'data.sampler_params' has value {d['sampler_params']!r} but data.sampler is "
            "'none', which takes no parameters; set data.sampler or drop the parameters"
        )
    allowed = ("num_samples_cls", "reduce", "num_samples")  # (the run sets seed and num_classes)
    unknown = sorted(set(d["sampler_params"]) - set(allowed))
    if d["sampler"] == "class_aware" and unknown:
        raise ValueError(
            f"unknown config key 'data.sampler_params.{unknown[0]}'; allowed for data.sampler = "
            f"'class_aware': {', '.join(allowed)}"
        )


def _placeholder_shape(d: dict[str, Any], exc: Exception) -> tuple[int, list[int], bool]:
    from lpl_train.data import long_tail_counts

    name = d["name"]
    if name == "cifar_lt_npz":
        name = f"{d['params'].get('variant', 'cifar10')}_lt"
    if name not in _DATASET_SHAPES:
        raise exc
    num_classes, n_max, ratio = _DATASET_SHAPES[name]
    ratio = float(d["params"].get("imbalance_ratio", ratio))
    counts = long_tail_counts(num_classes, n_max, ratio) if ratio > 1 else [n_max] * num_classes
    multi = name.endswith("ml_lt") or name in ("voc_mlt", "coco_mlt", "coco")
    return num_classes, counts, multi


def _loss_without_data(cfg: dict[str, Any]) -> tuple[nn.Module, int]:
    """The config's loss built as its run builds it, from the class count and long-tail counts its data
    gives (known without reading the data's files), and that class count. A dataset whose shape is not
    known without its files raises :class:`LookupError`."""

    d = cfg["data"]
    c, counts, _ = _placeholder_shape(
        d, LookupError(f"the shape of data {d['name']!r} needs its files")
    )
    return _build_loss(cfg, c, counts), c


def _build_model_reporting_weights(m: dict[str, Any], num_classes: int, info: dict) -> nn.Module:
    info["weights_error"] = None
    try:
        return _build_model(m, num_classes)
    except FileNotFoundError as exc:  # pretrained weights missing: build without them, report it
        if "weights" not in m["params"]:
            raise
        info["weights_error"] = " ".join(str(exc).split())
        params = {k: v for k, v in m["params"].items() if k != "weights"}
        return _build_model(m, num_classes, params)


def _dry_loader_options(d: dict[str, Any]) -> dict[str, Any]:
    """The ``data.loader`` options of a loader the dry run builds: all but ``num_workers`` (it starts no
    worker processes)."""
    return {k: v for k, v in d["loader"].items() if k != "num_workers"}


def _check_train_loader(cfg: dict[str, Any], bundle: Any) -> None:
    """Build the training loader as the run does (sampler included) and refuse it if it yields no batch."""
    d = cfg["data"]
    common = {
        "device": torch.device("cpu"),
        "seed": cfg["train"]["seed"],
        "pad_mode": bundle.pad_mode,
    }
    loader = _train_loader(cfg, bundle, DistInfo(), {**common, **_dry_loader_options(d)})
    check_train_batches(loader, d["batch_size"])


def _try_one_batch(cfg: dict[str, Any], bundle: Any, model: nn.Module) -> None:
    """Pass the first two training samples through the model (eval mode, no grad), as the first second of
    a real run would."""
    from lpl_train.data import make_loader

    d = cfg["data"]
    augment = bundle.augment if d["augment"] == "auto" else d["augment"]
    kw = _dry_loader_options(d)
    loader = make_loader(bundle.train, batch_size=2, train=True, augment=augment, seed=0, **kw)
    x, _ = next(iter(loader))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"model {cfg['model']['name']!r} does not accept the input of data {d['name']!r} "
            f"(a batch of shape {tuple(x.shape)}): {first}"
        ) from None
    finally:
        model.train(was)
    if out.dim() != 2 or out.shape[1] != bundle.num_classes:
        raise ValueError(
            f"model {cfg['model']['name']!r} maps the input of data {d['name']!r} to shape "
            f"{tuple(out.shape)}; expected (batch, {bundle.num_classes})"
        )
