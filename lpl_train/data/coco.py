"""MS-COCO multi-label: the COCO instances-JSON parsing shared by COCO-MLT (Table V) and full MS-COCO
(Table X), and the full-COCO dataset ``coco``.

The paper's Table X ("More comparisons with NTR and LC") trains on 82,081 and tests on 40,137 images,
80 classes: these are the COCO-2014 ``train2014`` and ``val2014`` images that carry at least one instance
annotation (the split and counts of the full-COCO multi-label literature, e.g. ML-GCN); ``year=2017``
gives the same construction on ``train2017`` / ``val2017`` (117,266 / 4,952 labelled images). A label is
present when the image has at least one instance of the category; classes are the 80 category ids in
increasing order. Unlabelled images are dropped unless ``keep_empty=True``.

Layout under the root (as the official archives unpack; the same root serves ``coco_mlt``)::

    annotations/instances_train2014.json  annotations/instances_val2014.json  train2014/  val2014/
    annotations/instances_train2017.json  annotations/instances_val2017.json  train2017/  val2017/
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from .common import BadFile, DatasetBundle, check_choice, missing, resolve_root
from .images import ImageFileDataset, multilabel_bundle
from .inat import integer_id, read_json

COCO_YEARS = (2014, 2017)


def coco_paths(root: str | Path | None, year: int) -> tuple[Path, list[Path], str]:
    """(data root, [train JSON, val JSON], how to get them) for COCO ``year`` (2014 or 2017)."""
    check_choice("year", year, COCO_YEARS)
    base = resolve_root(root)
    ann = [base / "annotations" / f"instances_{s}{year}.json" for s in ("train", "val")]
    how = (
        f"Download annotations_trainval{year}.zip, train{year}.zip and val{year}.zip from "
        "https://cocodataset.org and unpack them there."
    )
    return base, ann, how


def coco_labels(
    path: Path, skip_degenerate: bool = True
) -> tuple[dict[int, str], list[int], dict[int, torch.Tensor], list[str]]:
    """(file name by image id, category ids in order, multi-hot by image id, class names) from a COCO
    instances JSON. With ``skip_degenerate`` (the Distribution-Balanced / COCO-MLT labelling), instances
    with area <= 0 or width/height < 1 are skipped; crowd instances are always kept. A malformed or
    truncated file raises ValueError naming it."""
    if not isinstance(skip_degenerate, bool):
        raise TypeError(f"skip_degenerate must be a bool, got {skip_degenerate!r}")
    data = read_json(path)

    def whole(v: object, what: str) -> int:
        return integer_id(v, what, path)

    try:
        cats = sorted(data["categories"], key=lambda c: c["id"])
        cat_ids = [whole(c["id"], "category id") for c in cats]
        names = [str(c.get("name", c["id"])) for c in cats]
        col = {c: i for i, c in enumerate(cat_ids)}
        image_ids = [whole(im["id"], "image id") for im in data["images"]]
        for im in data["images"]:
            if not isinstance(im["file_name"], str) or not im["file_name"]:
                raise BadFile(
                    f"cannot read {path}: image id {im['id']!r} has file_name {im['file_name']!r}"
                )
        for what, ids in (("category", cat_ids), ("image", image_ids)):
            repeated = [i for i, n in Counter(ids).items() if n > 1]
            if repeated:  # a dict would keep the last one silently
                raise BadFile(f"cannot read {path}: {what} id {repeated[0]} is listed twice")
        files = {i: im["file_name"] for i, im in zip(image_ids, data["images"], strict=True)}
        labels = {i: torch.zeros(len(cat_ids)) for i in files}
        for a in data["annotations"]:
            if skip_degenerate:
                _, _, w, h = a["bbox"]
                if a.get("area", 1) <= 0 or w < 1 or h < 1:
                    continue
            image_id = whole(a["image_id"], "annotation image_id")
            labels[image_id][col[whole(a["category_id"], "annotation category_id")]] = 1.0
    except BadFile:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise BadFile(f"cannot read {path}: not a COCO instances file ({err!r})") from err
    return files, cat_ids, labels, names


def coco_images(
    files: dict[int, str],
    labels: dict[int, torch.Tensor],
    ids: Sequence[int],
    image_dir: Path,
    size: int,
) -> ImageFileDataset:
    """The images ``ids`` (in that order) from ``image_dir`` with their multi-hot rows, ``mlt`` recipe."""
    if not ids:
        raise ValueError(f"no images selected from {image_dir}")
    return ImageFileDataset(
        [image_dir / files[i] for i in ids], torch.stack([labels[i] for i in ids]), "mlt", size
    )


def build_coco(
    root: str | Path | None = None,
    seed: int = 0,
    year: int = 2014,
    size: int = 448,
    keep_empty: bool = False,
    skip_degenerate: bool = False,
) -> DatasetBundle:
    """Full MS-COCO multi-label (Table X): train on ``train{year}``, test on ``val{year}``.

    Args:
        root: data root (see the module docstring); default ``$LPL_DATA`` or ``./data``.
        seed: unused (the splits are fixed); accepted for a uniform interface.
        year: 2014 (default; 82,081 / 40,137 labelled images, the paper's counts) or 2017.
        size: square input side after the ``mlt`` resize (448, the paper's Table X input).
        keep_empty: keep the images without any instance (all-zero targets).
        skip_degenerate: skip instances with area <= 0 or a box side < 1 (the COCO-MLT filter); off by
            default, so every instance annotation gives its label.

    ``class_counts`` are the positive counts on the training split. Missing annotation files raise
    FileNotFoundError naming the paths tried and the archives to get; a malformed JSON raises ValueError
    naming the file.
    """
    base, ann, how = coco_paths(root, year)
    if not isinstance(keep_empty, bool):
        raise TypeError(f"keep_empty must be a bool, got {keep_empty!r}")
    absent = [p for p in ann if not p.is_file()]
    if absent:
        raise missing(f"COCO-{year} instance annotations", absent, how)
    splits, cat_ids, names = [], None, []
    for path, folder in zip(ann, (f"train{year}", f"val{year}"), strict=True):
        files, cats, labels, names = coco_labels(path, skip_degenerate)
        if cat_ids is not None and cats != cat_ids:
            raise BadFile(f"{path} and {ann[0]} list different categories")
        cat_ids = cats
        ids = sorted(i for i in files if keep_empty or bool(labels[i].any()))
        if not ids:
            raise BadFile(f"cannot use {path}: no image has an instance annotation")
        splits.append(coco_images(files, labels, ids, base / folder, size))
    return multilabel_bundle(splits[0], splits[1], names, size, "coco")
