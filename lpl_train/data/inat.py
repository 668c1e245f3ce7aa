"""iNaturalist 2017 / 2018 from the official JSON file lists and image folders (Table VI).

Layout under the root (as the competition archives unpack)::

    train2017.json  val2017.json  train_val_images/...        (iNat2017, 5,089 classes)
    train2018.json  val2018.json  train_val2018/...           (iNat2018, 8,142 classes)

Each JSON holds ``images`` (``id``, ``file_name`` relative to the root), ``annotations`` (``image_id``,
``category_id``) and ``categories`` (``id``, ``name``). Classes are the category ids in increasing order,
mapped to ``0 .. C-1`` over the union of train and val categories, and named by the lists' ``name``
where they name every class. The validation list is the test set (as in LDAM-DRW and Logit Adjustment).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .common import BadFile, DatasetBundle, check_choice, missing, resolve_root
from .images import ImageFileDataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD


def read_json(path: Path) -> dict:
    """Parse a JSON file; unreadable or malformed files raise ValueError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise BadFile(f"cannot read {path}: malformed or truncated JSON ({err})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise BadFile(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise BadFile(f"cannot read {path}: expected a JSON object, got {type(data).__name__}")
    return data


def integer_id(value: object, what: str, path: Path) -> int:
    """``value`` as an int where it is one (an int, or a string of one); else BadFile naming ``path``: a
    float id of 2.7 must not become 2, nor a bool an id."""
    if isinstance(value, bool) or not isinstance(value, int | str) or int(value) != float(value):
        raise BadFile(f"cannot read {path}: {what} {value!r} is not an integer")
    return int(value)


def _pairs(data: dict, path: Path) -> tuple[list[tuple[str, int]], dict[int, str]]:
    """(file name, category id) per annotation, and the names of the categories the list names (id →
    name; a name that is not a non-empty string is left out). The official lists give each image one id,
    a file name and one annotation of a listed category; a repeated image id, a file name that is not a
    string, a second annotation of an image or none, a category id that is not an integer or not in
    ``categories`` (where the file lists them), or a list without annotations raises ValueError naming
    the file."""
    try:
        files: dict = {}
        for im in data["images"]:
            if im["id"] in files:
                raise BadFile(f"cannot read {path}: image id {im['id']!r} is listed twice")
            name = im["file_name"]
            if not isinstance(name, str) or not name:
                raise BadFile(f"cannot read {path}: image id {im['id']!r} has file_name {name!r}")
            files[im["id"]] = name
        listed: set[int] | None = None
        names: dict[int, str] = {}
        if "categories" in data:
            listed = set()
            for c in data["categories"]:
                cat_id = int(c["id"])
                listed.add(cat_id)
                if isinstance(c.get("name"), str) and c["name"]:
                    names[cat_id] = c["name"]
        pairs, seen = [], set()
        for a in data["annotations"]:
            image_id, cat = a["image_id"], a["category_id"]
            if image_id in seen:
                raise BadFile(f"cannot read {path}: image id {image_id!r} has two annotations")
            seen.add(image_id)
            cat_id = integer_id(cat, "category_id", path)
            if listed is not None and cat_id not in listed:
                raise BadFile(
                    f"cannot read {path}: category_id {cat!r} (image id {image_id!r}) is not among "
                    "its categories"
                )
            pairs.append((files[image_id], cat_id))
        bare = next((i for i in files if i not in seen), None)
        if bare is not None and seen:
            raise BadFile(
                f"cannot read {path}: image id {bare!r} has no annotation (an iNaturalist train/val "
                "list has one per image)"
            )
    except BadFile:
        raise
    except (KeyError, TypeError, ValueError) as err:  # ValueError: a category_id not a number
        raise BadFile(
            f"cannot read {path}: expected images[id, file_name] and annotations[image_id, "
            f"category_id] ({err!r})"
        ) from err
    if not pairs:
        raise BadFile(
            f"cannot read {path}: no annotations (an iNaturalist train/val list has one per image)"
        )
    return pairs, names


def build_inat(
    year: int, root: str | Path | None = None, seed: int = 0, size: int = 224
) -> DatasetBundle:
    """iNaturalist ``year`` (2017 or 2018) as ``ImageFileDataset`` splits with the ImageNet recipe.

    ``seed`` is unused (the splits are fixed); it is accepted for a uniform interface.
    """
    check_choice("year", year, (2017, 2018))
    base = resolve_root(root, f"inat{year}") if root is None else resolve_root(root)
    files = [base / f"train{year}.json", base / f"val{year}.json"]
    absent = [p for p in files if not p.is_file()]
    if absent:
        raise missing(
            f"iNaturalist {year} file lists",
            absent,
            f"Download the iNat{year} competition images and train/val JSON from "
            "https://github.com/visipedia/inat_comp and unpack them into that folder.",
        )
    train_pairs, train_names = _pairs(read_json(files[0]), files[0])
    val_pairs, val_names = _pairs(read_json(files[1]), files[1])
    cats = sorted({c for _, c in train_pairs} | {c for _, c in val_pairs})
    names = {**val_names, **train_names}
    index = {c: i for i, c in enumerate(cats)}
    num_classes = len(cats)

    def split(pairs: list[tuple[str, int]]) -> ImageFileDataset:
        targets = torch.tensor([index[c] for _, c in pairs], dtype=torch.int64)
        return ImageFileDataset([base / f for f, _ in pairs], targets, "imagenet", size)

    train, test = split(train_pairs), split(val_pairs)
    counts = torch.bincount(train.targets, minlength=num_classes).tolist()
    return DatasetBundle(
        train=train,
        val=None,
        test=test,
        num_classes=num_classes,
        class_counts=counts,
        multi_label=False,
        input_shape=(3, size, size),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        augment="imagenet",
        name=f"inat{year}",
        # the species names, where the lists name every class (the official ones do)
        class_names=[names[c] for c in cats] if all(c in names for c in cats) else [],
    )
