"""Datasets, long-tail constructions and seeded batch loaders.

``build_datasets(name, root=None, seed=0, **params)`` returns a :class:`DatasetBundle`; ``seed`` is the
*data* seed (long-tail subsampling, validation split, generated data), separate from the training seed.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from .cifar import _NPZ_FILES, build_cifar, build_cifar_lt_npz, cifar_path
    from .coco import build_coco, coco_paths
    from .common import BadFile, DatasetBundle, TensorData, check_int, missing, resolve_root
    from .fmnist import FILES as FMNIST_FILES
    from .fmnist import build_fmnist, build_fmnist_ml_lt, fmnist_dir
    from .gaussian import build_gaussian
    from .inat import build_inat
    from .loader import DatasetLoader, TensorLoader, make_loader
    from .longtail import long_tail_counts, long_tail_indices
    from .mlt import build_coco_mlt, build_voc_mlt
except ModuleNotFoundError as exc:  # a core install without the extra (Pillow): say which one
    if exc.name != "PIL":
        raise
    raise ModuleNotFoundError(
        "lpl_train.data needs 'PIL' (Pillow), part of the [train] extra: pip install 'lpl-torch[train]'",
        name=exc.name,
    ) from exc

__all__ = [
    "BadFile",
    "DATASETS",
    "DatasetBundle",
    "DatasetLoader",
    "TensorData",
    "TensorLoader",
    "build_datasets",
    "check_data",
    "long_tail_counts",
    "long_tail_indices",
    "make_loader",
]


def _lt(builder: Callable[..., DatasetBundle], **fixed: Any) -> Callable[..., DatasetBundle]:
    def build(
        root: Any = None, seed: int = 0, imbalance_ratio: float = 100.0, **params: Any
    ) -> DatasetBundle:
        return builder(root=root, seed=seed, imbalance_ratio=imbalance_ratio, **fixed, **params)

    # the parameters it really takes: the builder's, less the fixed ones, long-tailed by default
    sig = inspect.signature(builder)
    build.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(default=100.0) if p.name == "imbalance_ratio" else p
            for p in sig.parameters.values()
            if p.name not in fixed
        ]
    )
    return build


DATASETS: dict[str, Callable[..., DatasetBundle]] = {
    "fmnist": build_fmnist,
    "fmnist_lt": _lt(build_fmnist),
    "fmnist_ml_lt": build_fmnist_ml_lt,
    "gaussian": build_gaussian,
    "cifar10": functools.partial(build_cifar, 10),
    "cifar100": functools.partial(build_cifar, 100),
    "cifar10_lt": _lt(build_cifar, num_classes=10),
    "cifar100_lt": _lt(build_cifar, num_classes=100),
    "cifar_lt_npz": build_cifar_lt_npz,
    "inat2017": functools.partial(build_inat, 2017),
    "inat2018": functools.partial(build_inat, 2018),
    "voc_mlt": build_voc_mlt,
    "coco_mlt": build_coco_mlt,
    "coco": build_coco,
}


def build_datasets(
    name: str, root: str | Path | None = None, seed: int = 0, **params: Any
) -> DatasetBundle:
    """Build dataset ``name`` (see ``DATASETS``) from ``root`` with data seed ``seed``.

    Unknown names or parameters raise ValueError listing what is allowed; a missing data root raises
    FileNotFoundError naming the path tried and how to get the data.
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"dataset name must be one of {sorted(DATASETS)}, got {name!r}")
    check_int("seed", seed, 0)
    builder = DATASETS[name]
    accepted = inspect.signature(builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        allowed = sorted(k for k in accepted if k not in ("root", "seed"))
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(
                f"dataset {name!r} has no parameter {unknown[0]!r}; allowed: "
                f"{', '.join(allowed) or 'none'}"
            )
    return builder(root=root, seed=seed, **params)


def check_data(name: str, root: str | Path | None = None, **params: Any) -> list[Path]:
    """The files dataset ``name`` would read, without reading them (for ``--dry-run``).

    Raises FileNotFoundError naming the paths tried and how to get the data when something is missing;
    returns ``[]`` for generated data (``gaussian``). Only ``download``, ``variant``, ``train_ids`` and
    ``year`` (``coco``: 2014 or 2017) among ``params`` matter here; the others are ignored.
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"dataset name must be one of {sorted(DATASETS)}, got {name!r}")
    if name == "gaussian":
        return []
    if name.startswith("fmnist"):
        d = fmnist_dir(root)
        return [d / f for f in FMNIST_FILES]
    if name.startswith("cifar") and name != "cifar_lt_npz":
        return [cifar_path(100 if name.startswith("cifar100") else 10, root)]
    base = resolve_root(root)
    if name == "cifar_lt_npz":
        files = [base / f for f in _NPZ_FILES[100 if params.get("variant") == "cifar100" else 10]]
        how = (
            "Download the Logit Adjustment CIFAR-LT tfrecords "
            "(storage.googleapis.com/gresearch/logit_adjustment/) and convert them with "
            f"`lpl-train data convert-la TFRECORD_DIR {base}`."
        )
    elif name.startswith("inat"):
        year = name[4:]
        base = resolve_root(root, f"inat{year}") if root is None else base
        files = [base / f"train{year}.json", base / f"val{year}.json"]
        how = "Get the images and JSON lists from https://github.com/visipedia/inat_comp."
    elif name == "voc_mlt":
        files = [base / "VOCdevkit/VOC2007/ImageSets/Main/test.txt"]
        ids = params.get("train_ids")
        files.append(Path(ids) if ids else base / "VOCdevkit/VOC2012/ImageSets/Main/trainval.txt")
        how = (
            "Unpack the VOC2012 trainval and VOC2007 trainval/test archives "
            f"(host.robots.ox.ac.uk/pascal/VOC) into {base}; they create {base / 'VOCdevkit'}."
        )
    elif name == "coco":
        _, files, how = coco_paths(root, params.get("year", 2014))
    else:  # coco_mlt
        _, files, how = coco_paths(root, 2017)
        ids = params.get("train_ids")
        if ids:
            files.append(Path(ids))
    absent = [f for f in files if not f.is_file()]
    if absent:
        raise missing(f"{name} data", absent, how)
    return files
