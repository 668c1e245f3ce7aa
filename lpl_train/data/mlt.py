"""VOC-MLT and COCO-MLT, the long-tail multi-label sets of Wu et al. (Distribution-Balanced loss), Table V.

Training images are a subset of VOC2012 trainval (1,142 ids) or COCO-2017 train (1,909 ids); the test
sets are the full VOC2007 test (4,952) and COCO val2017 (5,000) sets. Labels come from the official
annotations: every VOC ``<object>`` (``difficult`` included) and every COCO instance with positive area
and width/height >= 1 (crowd included). Classes: the 20 VOC classes in their usual alphabetical order;
the 80 COCO categories in increasing id order.

The id list is either the released one, at a user-given path (``train_ids=``: plain text, ids separated
by whitespace; the release's ``img_id.txt`` / ``img_id.pkl`` are both plain text), or rebuilt with the
published recipe: a seeded Pareto reference distribution (shape 6, head 800 for VOC / 1,200 for COCO)
assigned to the classes in decreasing order of their full-set frequency, then a greedy seeded selection
(:func:`lpl_train.data.longtail.multilabel_long_tail_ids`). The rebuilt list follows the same shape of
distribution but is not the released list (its generator was run on an intermediate file and a
``random.seed(0)`` stream we do not reproduce); use the released ids to match the paper's numbers.

Layout under the root::

    VOCdevkit/VOC2012/{Annotations,JPEGImages,ImageSets/Main/trainval.txt}
    VOCdevkit/VOC2007/{Annotations,JPEGImages,ImageSets/Main/test.txt}
    annotations/instances_{train,val}2017.json  train2017/  val2017/

The COCO JSON parsing is shared with the full MS-COCO set (:mod:`lpl_train.data.coco`).
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .coco import coco_images, coco_labels, coco_paths
from .common import BadFile, DatasetBundle, check_int, missing, resolve_root
from .images import ImageFileDataset, multilabel_bundle
from .longtail import multilabel_long_tail_ids, pareto_reference_counts

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]  # fmt: skip


def read_id_list(path: str | Path) -> list[str]:
    """Whitespace-separated image ids from a plain-text file (ValueError naming the file if unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise missing(
            "image id list", [path], "Pass the path of the released id list (plain text)."
        )
    try:
        ids = path.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as err:
        raise BadFile(f"cannot read {path}: expected plain-text ids ({err})") from err
    if not ids:
        raise BadFile(f"cannot read {path}: the id list is empty")
    repeated = [i for i, n in Counter(ids).items() if n > 1]
    if repeated:  # taken as listed (a repeated sample), as a reader of the list line by line does
        warnings.warn(
            f"{path}: {len(repeated)} image id(s) listed more than once (first: {repeated[0]}); each "
            "line is taken as one sample",
            UserWarning,
            stacklevel=2,
        )
    return ids


def voc_labels(xml_path: Path) -> list[str]:
    """Class names of every object in a VOC annotation file (``difficult`` objects included)."""
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as err:
        raise BadFile(f"cannot read {xml_path}: malformed or truncated VOC XML ({err})") from err
    names = [(obj.findtext("name") or "").strip() for obj in root.iter("object")]
    unknown = sorted({n for n in names if n not in VOC_CLASSES})
    if unknown:
        raise BadFile(f"cannot read {xml_path}: unknown VOC classes {unknown}")
    return names


def _voc_split(year_dir: Path, ids: list[str]) -> tuple[list[Path], torch.Tensor]:
    target = torch.zeros(len(ids), len(VOC_CLASSES))
    for i, img_id in enumerate(ids):
        xml = year_dir / "Annotations" / f"{img_id}.xml"
        if not xml.is_file():
            raise missing(
                f"VOC annotation for id {img_id}", [xml], "Unpack the official VOC archives."
            )
        for name in voc_labels(xml):
            target[i, VOC_CLASSES.index(name)] = 1.0
    return [year_dir / "JPEGImages" / f"{i}.jpg" for i in ids], target


def _construct(labels: np.ndarray, n_max: int, n_min: int, shape: float, seed: int) -> np.ndarray:
    counts = labels.sum(axis=0)
    ref = pareto_reference_counts(labels.shape[1], n_max, n_min, shape, seed)
    order = np.argsort(-counts, kind="stable")
    return multilabel_long_tail_ids(labels, ref, order, seed)


def build_voc_mlt(
    root: str | Path | None = None,
    seed: int = 0,
    train_ids: str | Path | None = None,
    n_max: int = 800,
    n_min: int = 4,
    pareto_shape: float = 6.0,
    size: int = 224,
) -> DatasetBundle:
    """VOC-MLT: train ids from ``train_ids`` (released list) or rebuilt with data seed ``seed``."""
    base = resolve_root(root)
    voc12, voc07 = base / "VOCdevkit" / "VOC2012", base / "VOCdevkit" / "VOC2007"
    test_list = voc07 / "ImageSets" / "Main" / "test.txt"
    how = (
        f"Unpack VOCtrainval_11-May-2012.tar, VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar "
        f"(host.robots.ox.ac.uk/pascal/VOC) into {base}; they create {base / 'VOCdevkit'}."
    )
    if not test_list.is_file():
        raise missing("VOC2007 test list", [test_list], how)
    if train_ids is not None:
        ids = read_id_list(train_ids)
        paths, target = _voc_split(voc12, ids)
    else:
        trainval = voc12 / "ImageSets" / "Main" / "trainval.txt"
        if not trainval.is_file():
            raise missing("VOC2012 trainval list", [trainval], how)
        all_ids = read_id_list(trainval)
        paths, target = _voc_split(voc12, all_ids)
        keep = _construct(target.numpy(), check_int("n_max", n_max, 1), n_min, pareto_shape, seed)
        paths, target = [paths[i] for i in keep], target[torch.as_tensor(keep)]
    test_paths, test_target = _voc_split(voc07, read_id_list(test_list))
    train = ImageFileDataset(paths, target, "mlt", size)
    test = ImageFileDataset(test_paths, test_target, "mlt", size)
    return multilabel_bundle(train, test, VOC_CLASSES, size, "voc_mlt")


def build_coco_mlt(
    root: str | Path | None = None,
    seed: int = 0,
    train_ids: str | Path | None = None,
    n_max: int = 1200,
    n_min: int = 6,
    pareto_shape: float = 6.0,
    size: int = 224,
) -> DatasetBundle:
    """COCO-MLT: train ids from ``train_ids`` (released list) or rebuilt with data seed ``seed``; test on val2017."""
    base, ann, how = coco_paths(root, 2017)
    absent = [p for p in ann if not p.is_file()]
    if absent:
        raise missing("COCO-2017 instance annotations", absent, how)
    files, cat_ids, labels, names = coco_labels(ann[0])
    if train_ids is not None:
        try:
            ids = [int(i) for i in read_id_list(train_ids)]
        except ValueError as err:
            raise BadFile(f"cannot read {train_ids}: COCO ids must be integers ({err})") from err
        unknown = [i for i in ids if i not in files]
        if unknown:
            raise BadFile(f"{train_ids}: ids not in {ann[0]}: {unknown[:5]}")
    else:
        all_ids = sorted(files)
        mat = torch.stack([labels[i] for i in all_ids]).numpy()
        keep = _construct(mat, check_int("n_max", n_max, 1), n_min, pareto_shape, seed)
        ids = [all_ids[i] for i in keep]
    train = coco_images(files, labels, ids, base / "train2017", size)
    vfiles, vcats, vlabels, _ = coco_labels(ann[1])
    if vcats != cat_ids:
        raise BadFile(f"{ann[1]} and {ann[0]} list different categories")
    test = coco_images(vfiles, vlabels, sorted(vfiles), base / "val2017", size)
    return multilabel_bundle(train, test, names, size, "coco_mlt")
