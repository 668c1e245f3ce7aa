"""Image-file datasets: iNaturalist JSON lists, VOC XML and COCO JSON annotations (COCO-MLT and full
MS-COCO 2014/2017; tiny files and JPEGs written here), corrupt files, the torch transforms, and the Pareto long-tail construction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lpl_train.data import BadFile, build_datasets, check_data, make_loader
from lpl_train.data.images import decode_image
from lpl_train.data.longtail import multilabel_long_tail_ids, pareto_reference_counts
from lpl_train.data.mlt import VOC_CLASSES
from lpl_train.data.transforms import mlt_train, random_resized_crop, resize


def jpeg(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, quality=95)


def test_decode_and_corrupt_jpeg(tmp_path: Path) -> None:
    jpeg(tmp_path / "a.jpg", (200, 10, 10))
    x = decode_image(tmp_path / "a.jpg")
    assert x.shape == (3, 30, 40) and x.dtype == torch.uint8
    assert abs(int(x[0, 15, 20]) - 200) <= 3 and int(x[1, 15, 20]) <= 15
    raw = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "bad.jpg").write_bytes(raw[:100])
    with pytest.raises(BadFile, match=r"bad\.jpg"):
        decode_image(tmp_path / "bad.jpg")


def test_transforms_shapes_and_values() -> None:
    g = torch.Generator().manual_seed(0)
    const = torch.full((3, 50, 70), 77, dtype=torch.uint8)
    for _ in range(5):
        out = random_resized_crop(const, g, 24)
        assert out.shape == (3, 24, 24) and torch.all(
            out == 77
        )  # interpolation of a constant is constant
    ramp = torch.arange(64, dtype=torch.uint8).repeat(3, 64, 1)  # value = column index
    small = resize(ramp, (64, 32))
    assert torch.allclose(small[0, 0].float(), torch.arange(32).float() * 2 + 0.5, atol=1.0)
    out = mlt_train(ramp, g, 16)
    assert out.shape == (3, 16, 16)
    row = out[0, 0].float()
    assert torch.all(row[1:] >= row[:-1]) or torch.all(
        row[1:] <= row[:-1]
    )  # monotone: crop, maybe flipped


def _inat(root: Path) -> None:
    # categories 3, 7, 9: classes 0, 1, 2; class 7 has three training images
    train = [("t/a.jpg", 7), ("t/b.jpg", 3), ("t/c.jpg", 7), ("t/d.jpg", 9), ("t/e.jpg", 7)]
    val = [("v/a.jpg", 3), ("v/b.jpg", 9)]
    for name, pairs in (("train2017.json", train), ("val2017.json", val)):
        data = {
            "images": [
                {"id": 100 + i, "file_name": f, "width": 40, "height": 30}
                for i, (f, _) in enumerate(pairs)
            ],
            "annotations": [
                {"id": i, "image_id": 100 + i, "category_id": c} for i, (_, c) in enumerate(pairs)
            ],
            "categories": [{"id": c, "name": f"species {c}"} for c in (3, 7, 9)],
        }
        (root / name).write_text(json.dumps(data))
        for f, c in pairs:
            jpeg(root / f, (c * 20, 0, 0))


def test_inat(tmp_path: Path) -> None:
    _inat(tmp_path)
    b = build_datasets("inat2017", root=tmp_path, size=16)
    assert b.num_classes == 3 and b.class_counts == [1, 3, 1] and not b.multi_label
    assert b.train.targets.tolist() == [1, 0, 1, 2, 1] and b.test.targets.tolist() == [0, 2]
    assert b.class_names == ["species 3", "species 7", "species 9"]  # in class order
    # lists that do not name every class: no names rather than some
    data = json.loads((tmp_path / "train2017.json").read_text())
    data["categories"][1].pop("name")
    (tmp_path / "train2017.json").write_text(json.dumps(data))
    assert build_datasets("inat2017", root=tmp_path, size=16).class_names == [
        "species 3",
        "species 7",
        "species 9",
    ]
    for name in ("train2017.json", "val2017.json"):
        data = json.loads((tmp_path / name).read_text())
        data["categories"] = [{"id": c} for c in (3, 7, 9)]
        (tmp_path / name).write_text(json.dumps(data))
    assert build_datasets("inat2017", root=tmp_path, size=16).class_names == []
    x, y = b.test[1]
    assert x.shape == (3, 16, 16) and int(y) == 2
    # red channel 180 normalised with ImageNet statistics
    assert abs(float(x[0].mean()) - (180 / 255 - 0.485) / 0.229) < 0.05
    ld = make_loader(b.train, 2, train=True, augment="imagenet", device="cpu", seed=0)
    ld.set_epoch(0)
    batches = list(ld)
    assert [tuple(x.shape) for x, _ in batches] == [(2, 3, 16, 16)] * 2 + [(1, 3, 16, 16)]
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == [0, 1, 1, 1, 2]
    again = list(ld)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))


def test_inat_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train2018\.json.*inat_comp"):
        build_datasets("inat2018", root=tmp_path)
    _inat(tmp_path)
    (tmp_path / "val2017.json").write_text('{"images": [')
    with pytest.raises(ValueError, match=r"val2017\.json"):
        build_datasets("inat2017", root=tmp_path)
    data = json.loads((tmp_path / "train2017.json").read_text())
    data["annotations"][0]["category_id"] = "x1"  # not a number: the error names the file
    (tmp_path / "train2017.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"cannot read .*train2017\.json.*category_id"):
        build_datasets("inat2017", root=tmp_path)


def _voc_xml(path: Path, objects: list[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>1</xmin></bndbox></object>"
        for n, d in objects
    )
    path.write_text(f"<annotation><filename>x.jpg</filename>{objs}</annotation>")


def _voc(root: Path) -> None:
    v12, v07 = root / "VOCdevkit" / "VOC2012", root / "VOCdevkit" / "VOC2007"
    _voc_xml(v12 / "Annotations" / "2008_000001.xml", [("person", 0), ("dog", 1)])
    _voc_xml(v12 / "Annotations" / "2008_000002.xml", [("cat", 0), ("cat", 0)])
    _voc_xml(v12 / "Annotations" / "2008_000003.xml", [("tvmonitor", 1)])
    _voc_xml(v07 / "Annotations" / "000001.xml", [("aeroplane", 0), ("person", 0)])
    for d, ids in ((v12, ["2008_000001", "2008_000002", "2008_000003"]), (v07, ["000001"])):
        for i in ids:
            jpeg(d / "JPEGImages" / f"{i}.jpg", (0, 90, 0))
    (v07 / "ImageSets" / "Main").mkdir(parents=True)
    (v07 / "ImageSets" / "Main" / "test.txt").write_text("000001\n")
    (v12 / "ImageSets" / "Main").mkdir(parents=True)
    (v12 / "ImageSets" / "Main" / "trainval.txt").write_text(
        "2008_000001\n2008_000002\n2008_000003\n"
    )


def test_voc_mlt_from_released_ids(tmp_path: Path) -> None:
    _voc(tmp_path)
    ids = tmp_path / "img_id.txt"
    ids.write_text("2008_000001\n2008_000002\n")
    b = build_datasets("voc_mlt", root=tmp_path, train_ids=ids, size=16)
    col = {n: i for i, n in enumerate(VOC_CLASSES)}
    expected = torch.zeros(2, 20)
    expected[0, [col["person"], col["dog"]]] = 1  # the difficult dog counts
    expected[1, col["cat"]] = 1
    assert torch.equal(b.train.targets, expected)
    assert b.multi_label and b.class_counts[col["cat"]] == 1 and sum(b.class_counts) == 3
    test_t = b.test.targets[0]
    assert test_t[col["aeroplane"]] == 1 and test_t[col["person"]] == 1 and test_t.sum() == 2
    x, _ = b.train[0]
    assert x.shape == (3, 16, 16)
    # without an id list the Pareto construction runs on VOC2012 trainval (head 2, tail 1 here)
    built = build_datasets("voc_mlt", root=tmp_path, n_max=2, n_min=1, size=16)
    assert len(built.train) >= 1 and max(built.class_counts) <= 2


def test_voc_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"test\.txt") as err:
        build_datasets("voc_mlt", root=tmp_path)
    # says where to unpack the archives (the root), not an ambiguous "there"
    assert f"into {tmp_path}; they create {tmp_path / 'VOCdevkit'}" in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        check_data("voc_mlt", root=tmp_path)
    assert f"into {tmp_path}; they create {tmp_path / 'VOCdevkit'}" in str(err.value)
    _voc(tmp_path)
    (tmp_path / "VOCdevkit/VOC2012/Annotations/2008_000003.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match=r"2008_000003\.xml"):
        build_datasets("voc_mlt", root=tmp_path)
    _voc_xml(tmp_path / "VOCdevkit/VOC2012/Annotations/2008_000003.xml", [("unicorn", 0)])
    with pytest.raises(ValueError, match="unicorn"):
        build_datasets("voc_mlt", root=tmp_path)


def _coco(root: Path, year: int = 2017, unlabelled: bool = False) -> None:
    """Tiny ``instances_{train,val}{year}.json`` + JPEGs; ``unlabelled`` adds an image without any
    instance to each split (image 14 in train, 22 in val)."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    cats = [
        {"id": 1, "name": "person"},
        {"id": 18, "name": "dog"},
        {"id": 90, "name": "toothbrush"},
    ]

    def ann(i, img, cat, area=10.0, bbox=(0, 0, 5, 5), crowd=0):
        return {
            "id": i,
            "image_id": img,
            "category_id": cat,
            "area": area,
            "bbox": list(bbox),
            "iscrowd": crowd,
        }

    def fname(split: str, i: int) -> str:  # the official names: 2014 has a prefix, 2017 does not
        return f"COCO_{split}2014_{i:012d}.jpg" if year == 2014 else f"{i:012d}.jpg"

    train_ids, val_ids = [11, 12, 13], [21]
    if unlabelled:
        train_ids, val_ids = [*train_ids, 14], [*val_ids, 22]
    train = {
        "images": [{"id": i, "file_name": fname("train", i)} for i in train_ids],
        "annotations": [
            ann(1, 11, 1),
            ann(2, 11, 18, area=0.0),  # zero area: skipped by the COCO-MLT filter
            ann(3, 12, 90, crowd=1),  # crowd: kept
            ann(4, 12, 18, bbox=(0, 0, 0.5, 9)),  # width < 1: skipped by the COCO-MLT filter
            ann(5, 13, 18),
        ],
        "categories": cats,
    }
    val = {
        "images": [{"id": i, "file_name": fname("val", i)} for i in val_ids],
        "annotations": [ann(9, 21, 90)],
        "categories": cats,
    }
    (root / "annotations" / f"instances_train{year}.json").write_text(json.dumps(train))
    (root / "annotations" / f"instances_val{year}.json").write_text(json.dumps(val))
    for i in train_ids:
        jpeg(root / f"train{year}" / fname("train", i), (1, 2, 3))
    for i in val_ids:
        jpeg(root / f"val{year}" / fname("val", i), (1, 2, 3))


def test_coco_mlt(tmp_path: Path) -> None:
    _coco(tmp_path)
    ids = tmp_path / "img_id.pkl"  # the release's ".pkl" is plain text
    ids.write_text("11 12\n13")
    b = build_datasets("coco_mlt", root=tmp_path, train_ids=ids, size=16)
    assert b.class_names == ["person", "dog", "toothbrush"]
    assert b.train.targets.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert b.class_counts == [1, 1, 1] and b.test.targets.tolist() == [[0, 0, 1]]
    ids.write_text("11 99")
    with pytest.raises(ValueError, match="99"):
        build_datasets("coco_mlt", root=tmp_path, train_ids=ids)
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{}")
    ids.write_text("11")
    with pytest.raises(ValueError, match=r"instances_val2017\.json"):
        build_datasets("coco_mlt", root=tmp_path, train_ids=ids)


def test_mlt_constructions_default_to_the_reference_scripts_pareto_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the reference's create_longtail_dataset.py: Pareto shape 6, head 800 (VOC) / 1200 (COCO), tail 4 / 6,
    # random.seed(0); the shipped Table V configs rely on these defaults
    import lpl_train.data.mlt as mlt

    seen = []

    def record(labels, n_max, n_min, shape, seed):
        seen.append((n_max, n_min, shape, seed))
        return np.arange(len(labels))

    monkeypatch.setattr(mlt, "_construct", record)
    _voc(tmp_path / "voc")
    _coco(tmp_path / "coco")
    build_datasets("voc_mlt", root=tmp_path / "voc", size=16)
    build_datasets("coco_mlt", root=tmp_path / "coco", size=16)
    assert seen == [(800, 4, 6.0, 0), (1200, 6, 6.0, 0)]


def test_coco_full_2014(tmp_path: Path) -> None:
    _coco(tmp_path, 2014, unlabelled=True)
    b = build_datasets("coco", root=tmp_path, size=16)
    assert b.name == "coco" and b.multi_label and b.num_classes == 3 and b.val is None
    # a dry run without the data builds placeholders of the same kind of labels
    from lpl_train.engine.components import _placeholder_shape

    assert _placeholder_shape({"name": "coco", "params": {}}, FileNotFoundError("x"))[2] is True
    assert b.class_names == ["person", "dog", "toothbrush"]  # category ids 1, 18, 90 in order
    # every instance gives its label (zero-area and thin boxes included); image 14 has none: dropped
    assert b.train.targets.tolist() == [[1, 1, 0], [0, 1, 1], [0, 1, 0]]
    assert b.class_counts == [1, 3, 1]  # positive counts
    assert b.train.paths[1] == tmp_path / "train2014" / "COCO_train2014_000000000012.jpg"
    assert b.test.targets.tolist() == [[0, 0, 1]]  # image 22 (unlabelled) dropped
    assert b.test.paths == [tmp_path / "val2014" / "COCO_val2014_000000000021.jpg"]
    x, y = b.train[2]
    assert x.shape == (3, 16, 16) and y.tolist() == [0, 1, 0]
    # red channel 1 of 255, normalised with the ImageNet statistics
    assert abs(float(x[0].mean()) - (1 / 255 - 0.485) / 0.229) < 0.05
    assert b.input_shape == (3, 16, 16) and b.augment == "mlt"
    assert build_datasets("coco", root=tmp_path).input_shape == (3, 448, 448)  # Table X's input

    kept = build_datasets("coco", root=tmp_path, keep_empty=True, size=16)
    assert kept.train.targets.tolist()[-1] == [0, 0, 0] and len(kept.train) == 4
    assert kept.class_counts == [1, 3, 1] and len(kept.test) == 2
    # the COCO-MLT filter drops the zero-area dog of image 11 and the thin dog of image 12
    mlt = build_datasets("coco", root=tmp_path, skip_degenerate=True, size=16)
    assert mlt.train.targets.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert mlt.class_counts == [1, 1, 1]


def test_coco_full_2017_and_loader(tmp_path: Path) -> None:
    _coco(tmp_path, 2017)
    with pytest.raises(FileNotFoundError, match=r"instances_train2014\.json"):
        build_datasets("coco", root=tmp_path)  # 2014 is the default
    b = build_datasets("coco", root=tmp_path, year=2017, size=16)
    assert b.train.paths[0] == tmp_path / "train2017" / "000000000011.jpg"
    assert b.class_counts == [1, 3, 1] and b.test.targets.tolist() == [[0, 0, 1]]
    ld = make_loader(b.train, 2, train=True, augment="mlt", device="cpu", seed=0)
    ld.set_epoch(0)
    batches = list(ld)
    assert [tuple(x.shape) for x, _ in batches] == [(2, 3, 16, 16), (1, 3, 16, 16)]
    got = torch.cat([y for _, y in batches])
    assert got.sum(0).tolist() == [1.0, 3.0, 1.0] and got.dtype == torch.float32


def test_coco_full_errors(tmp_path: Path) -> None:
    for call in (
        lambda: build_datasets("coco", root=tmp_path),
        lambda: check_data("coco", root=tmp_path),
    ):
        with pytest.raises(FileNotFoundError) as err:
            call()
        msg = str(err.value)
        for part in ("instances_train2014.json", "instances_val2014.json", "train2014.zip",
                     "cocodataset.org", str(tmp_path)):  # fmt: skip
            assert part in msg, (part, msg)
    with pytest.raises(FileNotFoundError, match=r"instances_val2017\.json.*val2017\.zip"):
        check_data("coco", root=tmp_path, year=2017)
    with pytest.raises(ValueError, match=r"year must be one of \[2014, 2017\], got 2015"):
        build_datasets("coco", root=tmp_path, year=2015)
    with pytest.raises(ValueError, match=r"year must be one of \[2014, 2017\], got 2015"):
        check_data("coco", root=tmp_path, year=2015)
    _coco(tmp_path, 2014)
    ann = tmp_path / "annotations"
    assert check_data("coco", root=tmp_path) == [
        ann / "instances_train2014.json",
        ann / "instances_val2014.json",
    ]
    with pytest.raises(TypeError, match="keep_empty"):
        build_datasets("coco", root=tmp_path, keep_empty=1)
    good = (ann / "instances_train2014.json").read_text()
    (ann / "instances_train2014.json").write_text(good[: len(good) // 2])  # truncated download
    with pytest.raises(ValueError, match=r"cannot read .*instances_train2014\.json: malformed"):
        build_datasets("coco", root=tmp_path)
    (ann / "instances_train2014.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match=r"instances_train2014\.json: not a COCO instances file"):
        build_datasets("coco", root=tmp_path)
    data = json.loads(good)
    data["categories"] = data["categories"][:2]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 90]
    (ann / "instances_train2014.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="list different categories"):
        build_datasets("coco", root=tmp_path)
    data = json.loads(good)
    data["annotations"] = []
    (ann / "instances_train2014.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"instances_train2014\.json: no image has an instance"):
        build_datasets("coco", root=tmp_path)


def test_pareto_reference_and_greedy_selection() -> None:
    ref = pareto_reference_counts(20, 800, 4, shape=6.0, seed=0)
    assert ref[0] == 800 and ref[-1] == 4 and ref == sorted(ref, reverse=True)
    assert ref == pareto_reference_counts(20, 800, 4, shape=6.0, seed=0)
    # single-label rows: the greedy selection hits every target exactly
    labels = np.eye(3, dtype=int)[np.repeat([0, 1, 2], 50)]
    keep = multilabel_long_tail_ids(labels, [40, 10, 3], np.array([2, 0, 1]), seed=1)
    assert labels[keep].sum(0).tolist() == [10, 3, 40]
    # multi-label rows: a pick never takes a class over its target (each pick adds 1 per class, and
    # rows touching a class already at its target are skipped)
    rng = np.random.RandomState(0)
    ml = (rng.rand(2000, 6) < np.array([0.6, 0.3, 0.2, 0.1, 0.05, 0.02])).astype(int)
    target = [300, 120, 60, 30, 10, 5]
    keep = multilabel_long_tail_ids(ml, target, np.arange(6), seed=0)
    got = ml[keep].sum(0)
    assert got[-1] == 5 and np.all(got <= np.array(target))
    assert np.all(np.diff(got) <= 0)


# ------------------------------------------------------------------------------- transforms, in detail


def test_imagenet_statistics_and_recipes(tmp_path: Path) -> None:
    from lpl_train.data import transforms as T

    # torchvision's ImageNet statistics
    assert T.IMAGENET_MEAN == (0.485, 0.456, 0.406) and T.IMAGENET_STD == (0.229, 0.224, 0.225)
    assert T.RECIPES == {
        "imagenet": (T.imagenet_train, T.imagenet_eval),
        "mlt": (T.mlt_train, T.mlt_eval),
    }
    _inat(tmp_path)
    b = build_datasets("inat2017", root=tmp_path, size=16)
    assert (b.mean, b.std) == (T.IMAGENET_MEAN, T.IMAGENET_STD)
    assert (b.train.mean, b.train.std) == (T.IMAGENET_MEAN, T.IMAGENET_STD)
    x = torch.zeros(3, 40, 30, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    for fn in (T.imagenet_train, T.imagenet_eval, T.mlt_train, T.mlt_eval):
        assert fn(x, g).shape == (3, 224, 224)  # default size
    assert T.mlt_eval(x, None, 16).shape == (3, 16, 16)


def _np_crop_flip(x: torch.Tensor, seed: int, pad: int, mode: str, crop: bool, flip: bool):
    """Reference: the documented draws (shifts (B, 2) then flips (B,) from ``seed``), numpy padding."""
    g = torch.Generator().manual_seed(seed)
    shifts = torch.randint(0, 2 * pad + 1, (x.shape[0], 2), generator=g).numpy()
    flips = (torch.rand(x.shape[0], generator=g) < 0.5).numpy()
    h, w = x.shape[-2:]
    out = []
    for img, (dy, dx), f in zip(x.numpy(), shifts, flips, strict=True):
        if crop:
            p = np.pad(img, ((0, 0), (pad, pad), (pad, pad)), mode=mode)
            img = p[:, dy : dy + h, dx : dx + w]
        out.append(img[:, :, ::-1] if flip and f else img)
    return torch.from_numpy(np.stack(out).copy())


def test_batch_crop_flip_matches_a_numpy_reference() -> None:
    from lpl_train.data.transforms import batch_crop_flip

    x = torch.from_numpy(
        np.random.RandomState(0).randint(1, 256, size=(40, 2, 5, 7)).astype(np.uint8)
    )
    for pad, mode, crop, flip in ((2, "zero", True, True), (3, "reflect", True, True),
                                  (2, "zero", False, True), (2, "reflect", True, False)):  # fmt: skip
        got = batch_crop_flip(x, torch.Generator().manual_seed(pad), pad, crop, flip, mode)
        np_mode = "constant" if mode == "zero" else "reflect"
        assert torch.equal(got, _np_crop_flip(x, pad, pad, np_mode, crop, flip)), (pad, mode)
    with pytest.raises(ValueError, match=r"x must be a \(B, C, H, W\) tensor"):
        batch_crop_flip(x[0], torch.Generator())


def test_normalize_values_and_dtypes() -> None:
    from lpl_train.data.transforms import normalize

    x = torch.tensor([[[0, 51]], [[255, 102]]], dtype=torch.uint8)  # (2, 1, 2)
    got = normalize(x, (0.5, 0.1), (0.25, 2.0))
    want = torch.tensor(
        [[[(0 - 0.5) / 0.25, (0.2 - 0.5) / 0.25]], [[(1 - 0.1) / 2, (0.4 - 0.1) / 2]]]
    )
    assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(normalize(x, None, None), x.float() / 255)
    assert torch.allclose(normalize(x, (0.5, 0.1), None), x.float() / 255)  # no std: unscaled
    rows = torch.arange(4, dtype=torch.float64).view(2, 2)
    out = normalize(rows, (9.0,), (9.0,))  # feature rows: as they are, as float32
    assert out.dtype == torch.float32 and out.tolist() == rows.tolist()
    with pytest.raises(ValueError, match=r"mean/std must have 2 entries .*got 2/3"):
        normalize(x, (0.5, 0.5), (0.2, 0.2, 0.2))


def test_resize_antialias_and_rounding() -> None:
    from lpl_train.data.transforms import resize

    # one bright column in four: an antialiased 4x shrink averages to 255 / 4 = 63.75 -> 64
    x = torch.zeros(1, 4, 64, dtype=torch.uint8)
    x[..., ::4] = 255
    out = resize(x, (4, 16))
    assert out.dtype == torch.uint8 and out[0, :, 2:-2].unique().tolist() == [64]
    same = torch.arange(12, dtype=torch.uint8).view(1, 3, 4)
    assert resize(same, (3, 4)) is same


def test_resize_shorter_and_imagenet_eval() -> None:
    import torch.nn.functional as F

    from lpl_train.data.transforms import center_crop, imagenet_eval, resize_shorter

    img = torch.zeros(3, 6, 10, dtype=torch.uint8)
    # torchvision's Resize(4): the longer side int(4 * 10 / 6) = int(6.67) = 6, truncated
    assert resize_shorter(img, 4).shape == (3, 4, 6)
    assert resize_shorter(img.transpose(1, 2), 4).shape == (3, 6, 4)
    assert resize_shorter(torch.zeros(1, 10, 5, dtype=torch.uint8), 4).shape == (1, 8, 4)
    grid = torch.arange(96, dtype=torch.uint8).view(1, 8, 12)
    assert torch.equal(center_crop(grid, 4), grid[:, 2:6, 4:8])
    # torchvision's CenterCrop offsets: round(margin / 2), half to even: 7 / 2 = 3.5 -> 4, 5 / 2 = 2.5 -> 2
    grid = torch.arange(99, dtype=torch.uint8).view(1, 11, 9)
    assert torch.equal(center_crop(grid, 4), grid[:, 4:8, 2:6])
    assert torch.equal(center_crop(grid, 12), grid)  # sides shorter than the crop are kept whole
    # eval: shorter side to round(14 * 8 / 7) = 16 (30 x 20 -> 24 x 16), centre 14 x 14
    x = torch.from_numpy(
        np.random.RandomState(1).randint(0, 256, size=(3, 30, 20)).astype(np.uint8)
    )
    ref = F.interpolate(x[None].float(), size=(24, 16), mode="bilinear", align_corners=False,
                        antialias=True)[0].round().clamp(0, 255).to(torch.uint8)  # fmt: skip
    assert torch.equal(imagenet_eval(x, None, 14), ref[:, 5:19, 1:15])


def _coords(h: int, w: int) -> torch.Tensor:
    """uint8 (2, h, w): channel 0 the row index, channel 1 the column index."""
    r = torch.arange(h, dtype=torch.uint8)[:, None].expand(h, w)
    c = torch.arange(w, dtype=torch.uint8)[None, :].expand(h, w)
    return torch.stack([r, c])


def _record_crops(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int, int]]:
    """Replace the final resize by a recorder of (top, left, height, width) of the crop it gets."""
    from lpl_train.data import transforms as T

    seen: list[tuple[int, int, int, int]] = []

    def fake_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        seen.append((int(x[0, 0, 0]), int(x[1, 0, 0]), x.shape[-2], x.shape[-1]))
        return x

    monkeypatch.setattr(T, "resize", fake_resize)
    return seen


def test_random_resized_crop_geometry(monkeypatch: pytest.MonkeyPatch) -> None:
    from lpl_train.data.transforms import random_resized_crop

    seen = _record_crops(monkeypatch)
    g = torch.Generator().manual_seed(0)
    x = _coords(64, 64)
    for _ in range(2000):
        random_resized_crop(x, g, 8)
    a = np.array(seen, dtype=float)
    top, left, ch, cw = a.T
    assert (
        np.all(top >= 0)
        and np.all(left >= 0)
        and np.all(top + ch <= 64)
        and np.all(left + cw <= 64)
    )
    frac, ar = ch * cw / 64**2, cw / ch
    assert frac.min() > 0.075 and frac.max() <= 1.0 and 0.45 < frac.mean() < 0.62  # U(0.08, 1)
    assert ar.min() > 0.7 and ar.max() < 1.4
    # log-uniform aspect on (3/4, 4/3): as many wide crops as tall ones
    assert abs((cw > ch).mean() - (cw < ch).mean()) < 0.06
    # every offset is reachable (the bottom/right edge too) and rows/columns are drawn independently
    assert ((top + ch == 64) & (ch < 64)).sum() > 50 and ((left + cw == 64) & (cw < 64)).sum() > 50
    assert abs(np.corrcoef(top / (65 - ch), left / (65 - cw))[0, 1]) < 0.1
    # a one-sided ratio range: width at least height (up to rounding)
    seen.clear()
    for _ in range(200):
        random_resized_crop(x, g, 8, ratio=(1.0, 2.0))
    a = np.array(seen, dtype=float)
    assert np.all(a[:, 3] >= a[:, 2] - 1) and (a[:, 3] > a[:, 2] + 2).mean() > 0.5


def test_random_resized_crop_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    from lpl_train.data.transforms import random_resized_crop

    seen = _record_crops(monkeypatch)
    g = torch.Generator().manual_seed(0)
    # 3 x 200 and 200 x 3: no crop of >= 8 % area fits: the centre crop of aspect 4/3 (resp. 3/4)
    random_resized_crop(_coords(3, 200), g, 8)
    random_resized_crop(_coords(200, 3), g, 8)
    assert seen == [(0, (200 - 4) // 2, 3, 4), ((200 - 4) // 2, 0, 4, 3)]
    # 20 x 100: about 15 % of tries fit, so 10 tries leave about 20 % to the fallback (1 try: 85 %)
    seen.clear()
    for _ in range(400):
        random_resized_crop(_coords(20, 100), g, 8)
    fallback = sum(s == (0, (100 - 27) // 2, 20, 27) for s in seen) / 400
    assert 0.05 < fallback < 0.4


def test_mlt_train_geometry_and_flips(monkeypatch: pytest.MonkeyPatch) -> None:
    from lpl_train.data.transforms import hflip, imagenet_train, mlt_train

    ramp = torch.arange(64, dtype=torch.uint8).repeat(3, 64, 1)  # value = column index
    rows = [mlt_train(ramp, torch.Generator().manual_seed(s), 16) for s in range(40)]
    # the image is first resized to 16 x 16, then a crop of >= 80 % of its width is taken: the crop
    # spans >= 12 of the 16 resized columns, i.e. >= 12 * 4 of the 64 ramp values (less smoothing)
    spans = [float(r[0, 8].max()) - float(r[0, 8].min()) for r in rows]
    assert min(spans) > 40
    increasing = [bool((r[0, 8, 1:] >= r[0, 8, :-1]).all()) for r in rows]
    assert 5 < sum(increasing) < 35  # flipped about half the time
    inc = [bool((row[0, 8, 1:] >= row[0, 8, :-1]).all())
           for row in (imagenet_train(ramp, torch.Generator().manual_seed(s), 16) for s in range(40))]  # fmt: skip
    assert 5 < sum(inc) < 35
    x = torch.arange(6, dtype=torch.uint8).view(1, 2, 3)
    outs = [hflip(x, torch.Generator().manual_seed(s)) for s in range(20)]
    assert all(torch.equal(o, x) or torch.equal(o, x.flip(-1)) for o in outs)
    assert 3 < sum(torch.equal(o, x) for o in outs) < 17
    seen = _record_crops(monkeypatch)
    for s in range(500):
        mlt_train(_coords(50, 50), torch.Generator().manual_seed(s), 50)
    a = np.array(
        seen[1::2], dtype=float
    )  # the crops (the first resize of each call gets the image)
    top, left, ch, cw = a.T
    assert ch.min() >= 40 and cw.min() >= 40 and ch.max() <= 50 and cw.max() <= 50
    assert (ch != cw).mean() > 0.5  # height and width drawn independently
    assert ((top + ch == 50) & (ch < 50)).sum() > 20 and ((left + cw == 50) & (cw < 50)).sum() > 20


def test_a_loader_mean_and_std_reach_a_dataset_that_normalises_itself(tmp_path: Path) -> None:
    """Image-file datasets normalise inside ``get`` with their own (ImageNet) statistics; a loader given
    its own mean/std (``[data.loader] mean/std``) used to report them and normalise with the dataset's."""
    from lpl_train.data.images import ImageFileDataset
    from lpl_train.engine.components import _IndexedView

    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((16, 16, 3), 100, dtype=np.uint8)).save(p)
        paths.append(str(p))
    ds = ImageFileDataset(paths, torch.arange(4), "mlt", 16)
    for data in (ds, _IndexedView(ds, torch.arange(4))):
        x, _ = next(iter(make_loader(data, 4, train=False, mean=(0, 0, 0), std=(1, 1, 1))))
        torch.testing.assert_close(x, torch.full_like(x, 100 / 255), rtol=0, atol=1e-6)
        x, _ = next(iter(make_loader(data, 4, train=False)))  # the dataset's own statistics
        expected = (100 / 255 - ds.mean[0]) / ds.std[0]
        torch.testing.assert_close(x[:, 0], torch.full_like(x[:, 0], expected), rtol=0, atol=1e-5)


# ------------------------------------------------------- label columns, constructions, eval geometry


def test_voc_classes_are_the_official_order_and_fix_the_columns(tmp_path: Path) -> None:
    # the 20 VOC classes in the devkit's (alphabetical) order, written out here: the label columns of
    # the released models and of Wu et al.'s split follow it
    official = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
                "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
                "train", "tvmonitor"]  # fmt: skip
    assert VOC_CLASSES == official
    _voc(tmp_path)
    ids = tmp_path / "img_id.txt"
    ids.write_text("2008_000001\n2008_000002\n2008_000003\n")
    b = build_datasets("voc_mlt", root=tmp_path, train_ids=ids, size=16)
    # person (14) and dog (11); cat (7); tvmonitor (19)
    assert [torch.nonzero(t).flatten().tolist() for t in b.train.targets] == [[11, 14], [7], [19]]
    assert torch.nonzero(b.test.targets[0]).flatten().tolist() == [0, 14]  # aeroplane, person


def test_pareto_reference_counts_are_the_rounded_affine_map_of_sorted_draws() -> None:
    # the documented recipe, written out: Pareto(shape) draws from RandomState(seed), sorted decreasing,
    # mapped affinely onto [n_min, n_max] and rounded to the nearest int
    for c, n_max, n_min, shape, seed in (
        (20, 800, 4, 6.0, 0),
        (80, 1200, 6, 6.0, 3),
        (7, 50, 1, 2.0, 1),
    ):
        draws = sorted(np.random.RandomState(seed).pareto(shape, c).tolist(), reverse=True)
        lo, hi = draws[-1], draws[0]
        want = [round(n_min + (n_max - n_min) * (d - lo) / (hi - lo)) for d in draws]
        assert pareto_reference_counts(c, n_max, n_min, shape, seed) == want, (c, seed)


def test_greedy_selection_serves_the_rarest_target_first() -> None:
    # class 0 (target 1) has one image, which also carries class 1 (target 3, nine more images of its
    # own). Visited first, class 0 takes that image; were class 1 visited first, three of its ten images
    # would often leave class 0's only image out (then refused: class 1 is full)
    labels = np.array([[1, 1]] + [[0, 1]] * 9)
    for seed in range(8):
        keep = multilabel_long_tail_ids(labels, [1, 3], np.array([0, 1]), seed=seed)
        assert 0 in keep and labels[keep].sum(0).tolist() == [1, 3], seed


def test_voc_mlt_construction_gives_the_head_target_to_the_most_frequent_class() -> None:
    from lpl_train.data.mlt import _construct

    # single-label rows: class 2 is the most frequent (200), then class 0 (60), class 1 the rarest (30)
    labels = np.eye(3, dtype=int)[np.repeat([0, 1, 2], [60, 30, 200])]
    ref = pareto_reference_counts(3, 100, 5, 6.0, 0)
    assert ref[0] == 100 and ref[-1] == 5
    keep = _construct(labels, 100, 5, 6.0, 0)
    # the largest reference count goes to the most frequent class, the smallest to the rarest
    assert labels[keep].sum(0).tolist() == [ref[1], 5, 100]


def test_coco_mlt_filter_skips_a_box_thinner_than_one_pixel_in_height(tmp_path: Path) -> None:
    from lpl_train.data.coco import coco_labels

    data = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "annotations": [
            {"image_id": 1, "category_id": 5, "area": 4.0, "bbox": [0, 0, 9, 0.5]},  # height < 1
            {"image_id": 2, "category_id": 5, "area": 4.0, "bbox": [0, 0, 1, 1]},  # 1 x 1: kept
            {"image_id": 2, "category_id": 7, "area": 4.0, "bbox": [0, 0, 0.9, 9]},  # width < 1
        ],
        "categories": [{"id": 7, "name": "b"}, {"id": 5, "name": "a"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    _, cat_ids, labels, names = coco_labels(path)
    assert cat_ids == [5, 7] and names == ["a", "b"]
    assert labels[1].tolist() == [0.0, 0.0] and labels[2].tolist() == [1.0, 0.0]
    _, _, kept, _ = coco_labels(path, skip_degenerate=False)
    assert kept[1].tolist() == [1.0, 0.0] and kept[2].tolist() == [1.0, 1.0]


def test_inat_classes_are_the_union_of_train_and_val_categories(tmp_path: Path) -> None:
    _inat(tmp_path)
    data = json.loads((tmp_path / "val2017.json").read_text())
    data["images"].append({"id": 200, "file_name": "v/c.jpg"})
    data["annotations"].append({"id": 9, "image_id": 200, "category_id": 5})
    data["categories"].append(
        {"id": 5, "name": "5"}
    )  # each list names all its categories  # no training image
    (tmp_path / "val2017.json").write_text(json.dumps(data))
    jpeg(tmp_path / "v" / "c.jpg", (0, 0, 0))
    b = build_datasets("inat2017", root=tmp_path, size=16)
    # ids 3, 5, 7, 9 -> classes 0, 1, 2, 3
    assert b.num_classes == 4 and b.class_counts == [1, 0, 3, 1]
    assert b.train.targets.tolist() == [2, 0, 2, 3, 2] and b.test.targets.tolist() == [0, 3, 1]


def test_imagenet_eval_at_224_resizes_the_shorter_side_to_256_and_crops_the_centre() -> None:
    import torch.nn.functional as F

    from lpl_train.data.transforms import imagenet_eval

    x = torch.from_numpy(
        np.random.RandomState(2).randint(0, 256, size=(3, 300, 400)).astype(np.uint8)
    )
    # 300 x 400 -> 256 x round(400 * 256 / 300) = 256 x 341; the 224 x 224 centre starts at row
    # (256 - 224) // 2 = 16 and column (341 - 224) // 2 = 58 (117 / 2 = 58.5, torchvision's round too)
    ref = F.interpolate(x[None].float(), size=(256, 341), mode="bilinear", align_corners=False,
                        antialias=True)[0].round().clamp(0, 255).to(torch.uint8)  # fmt: skip
    assert torch.equal(imagenet_eval(x), ref[:, 16:240, 58:282])


def test_an_image_file_split_is_evaluated_in_parts_under_ddp(tmp_path: Path) -> None:
    """Under DDP each process evaluates its consecutive part of an image-file split (through the
    indexed view): the parts' batches, in rank order, are the whole split's."""
    from lpl_train.data.images import ImageFileDataset
    from lpl_train.engine.components import _eval_part
    from lpl_train.engine.distributed import DistInfo

    paths = []
    for i in range(5):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((16, 16, 3), 40 * i, dtype=np.uint8)).save(p)
        paths.append(str(p))
    ds = ImageFileDataset(paths, torch.arange(5) % 3, "imagenet", 16)
    assert _eval_part(ds, DistInfo()) is ds
    x, y = next(iter(make_loader(ds, 8, train=False)))
    parts = [_eval_part(ds, DistInfo(rank=r, world=2)) for r in (0, 1)]
    got = [next(iter(make_loader(p, 8, train=False))) for p in parts]
    assert [len(p) for p in parts] == [3, 2]
    assert torch.equal(torch.cat([g[0] for g in got]), x)
    assert torch.equal(torch.cat([g[1] for g in got]), y)


def test_coco_mlt_tests_on_every_val2017_image_and_checks_its_categories(tmp_path: Path) -> None:
    # COCO-MLT's test set is the whole val2017 (5,000 images), the unlabelled ones included: they are
    # negatives of every class
    _coco(tmp_path, 2017, unlabelled=True)
    ids = tmp_path / "img_id.txt"
    ids.write_text("11 12 13")
    b = build_datasets("coco_mlt", root=tmp_path, train_ids=ids, size=16)
    assert b.test.targets.tolist() == [[0, 0, 1], [0, 0, 0]]
    assert b.test.paths == [tmp_path / "val2017" / f"{i:012d}.jpg" for i in (21, 22)]
    # a val file whose categories differ from train's would shift the label columns: refused
    val = tmp_path / "annotations" / "instances_val2017.json"
    data = json.loads(val.read_text())
    data["categories"] = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    data["annotations"] = [dict(data["annotations"][0], category_id=18)]
    val.write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=r"instances_val2017\.json and .*instances_train2017\.json"
    ):
        build_datasets("coco_mlt", root=tmp_path, train_ids=ids, size=16)


def test_coco_labels_type_checks_skip_degenerate(tmp_path: Path) -> None:
    from lpl_train.data.coco import coco_images, coco_labels

    _coco(tmp_path, 2014)
    path = tmp_path / "annotations" / "instances_train2014.json"
    for bad in (1, "yes", None):
        with pytest.raises(TypeError, match="skip_degenerate must be a bool"):
            coco_labels(path, skip_degenerate=bad)
    with pytest.raises(TypeError, match="skip_degenerate must be a bool"):
        build_datasets("coco", root=tmp_path, skip_degenerate=0)
    files, _, labels, _ = coco_labels(path)
    with pytest.raises(ValueError, match="no images selected from"):
        coco_images(files, labels, [], tmp_path / "train2014", 16)


def test_voc_errors_name_the_file_and_an_empty_id_list_is_refused(tmp_path: Path) -> None:
    from lpl_train.data.mlt import voc_labels

    xml = tmp_path / "x.xml"
    _voc_xml(xml, [("cat", 0), ("unicorn", 0), ("pegasus", 1)])
    with pytest.raises(ValueError, match=r"x\.xml: unknown VOC classes \['pegasus', 'unicorn'\]"):
        voc_labels(xml)
    _voc(tmp_path)
    empty = tmp_path / "img_id.txt"
    empty.write_text(" \n\n")
    with pytest.raises(ValueError, match=r"img_id\.txt: the id list is empty"):
        build_datasets("voc_mlt", root=tmp_path, train_ids=empty, size=16)


def test_inat_uses_the_imagenet_recipe_and_counts_every_class(tmp_path: Path) -> None:
    _inat(tmp_path)
    # a validation-only category with the largest id: the last class, with no training image
    data = json.loads((tmp_path / "val2017.json").read_text())
    data["images"].append({"id": 200, "file_name": "v/c.jpg"})
    data["annotations"].append({"id": 9, "image_id": 200, "category_id": 12})
    data["categories"].append({"id": 12, "name": "12"})
    (tmp_path / "val2017.json").write_text(json.dumps(data))
    # 40 x 30, red in its 4 leftmost columns: the ImageNet evaluation (shorter side to round(16 * 8 / 7)
    # = 18, so 24 x 18, then the central 16 columns from column 4) crops the red strip away, where a
    # plain 16 x 16 resize would keep it in column 0
    img = Image.new("RGB", (40, 30), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 4, 30))
    img.save(tmp_path / "v" / "c.jpg", quality=95)
    b = build_datasets("inat2017", root=tmp_path, size=16)
    assert b.num_classes == 4 and b.class_counts == [1, 3, 1, 0]
    assert b.augment == "imagenet" and b.test.targets.tolist() == [0, 2, 3]
    x, _ = b.test[2]
    black = (0 - 0.485) / 0.229
    assert x.shape == (3, 16, 16) and float(x[0, :, 0].max()) < black + 0.3


def test_pareto_reference_refuses_a_tail_above_the_head() -> None:
    with pytest.raises(ValueError, match="n_min must be <= n_max, got n_min=10, n_max=5"):
        pareto_reference_counts(4, 5, 10)
    assert pareto_reference_counts(4, 5, 5) == [5, 5, 5, 5]


def test_augment_none_on_an_image_file_dataset_gives_the_evaluation_transform(
    tmp_path: Path,
) -> None:
    """``augment="none"`` means no training recipe, also for a training loader: each item is exactly the
    dataset's evaluation transform (``dataset[i]``), whatever the seed and epoch."""
    from lpl_train.data.images import ImageFileDataset

    ramp = np.tile(np.arange(0, 240, 12, dtype=np.uint8)[None, :, None], (20, 1, 3))  # 20 x 20
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.png"
        Image.fromarray(ramp + 10 * i).save(p)
        paths.append(str(p))
    ds = ImageFileDataset(paths, torch.arange(4), "mlt", 16)
    loader = make_loader(ds, 4, train=True, augment="none", seed=3)
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        x, y = next(iter(loader))
        expected = torch.stack([ds[int(t)][0] for t in y])
        torch.testing.assert_close(x, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d["images"][1].update(id=100), r"image id 100 is listed twice"),
        (lambda d: d["annotations"][1].update(image_id=100), r"image id 100 has two annotations"),
        (lambda d: d["annotations"][0].update(category_id=7.5), r"category_id 7\.5 is not an"),
        (lambda d: d["annotations"][0].update(category_id=True), r"category_id True is not an"),
        (lambda d: d.update(annotations=[]), r"no annotations"),
    ],
)
def test_inat_refuses_repeated_ids_non_integer_categories_and_empty_lists(
    tmp_path: Path, change, match: str
) -> None:
    _inat(tmp_path)
    data = json.loads((tmp_path / "train2017.json").read_text())
    change(data)
    (tmp_path / "train2017.json").write_text(json.dumps(data))
    with pytest.raises(BadFile, match=r"cannot read .*train2017\.json: " + match) as info:
        build_datasets("inat2017", root=tmp_path)
    assert str(info.value).count("cannot read") == 1  # the reader's own refusal, not re-wrapped


@pytest.mark.parametrize("what", ["images", "categories"])
def test_coco_refuses_a_repeated_image_or_category_id(tmp_path: Path, what: str) -> None:
    _coco(tmp_path, 2014)
    path = tmp_path / "annotations" / "instances_train2014.json"
    data = json.loads(path.read_text())
    data[what].append(dict(data[what][-1], file_name="other.jpg", name="other"))
    path.write_text(json.dumps(data))
    kind = what[:-1].replace("categorie", "category")
    with pytest.raises(
        BadFile, match=rf"instances_train2014\.json: {kind} id \d+ is listed twice"
    ) as info:
        build_datasets("coco", root=tmp_path)
    assert str(info.value).count("cannot read") == 1  # the reader's own refusal, not re-wrapped


def test_an_image_header_claiming_too_many_pixels_is_a_bad_file(tmp_path: Path) -> None:
    """A small PNG whose header claims 20000 x 20000 pixels: Pillow's decompression-bomb guard, reported
    as a BadFile naming it (it escaped as PIL's own error, a traceback on the command line)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    (tmp_path / "bomb.png").write_bytes(png)
    with pytest.raises(BadFile, match=r"cannot decode image .*bomb\.png"):
        decode_image(tmp_path / "bomb.png")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["images"][1].update(file_name=None), r"image id 101 has file_name None"),
        (lambda d: d["annotations"][0].update(category_id=9999), r"category_id 9999 .* not among"),
        (lambda d: d["annotations"].pop(), r"image id 104 has no annotation"),
    ],
)
def test_inat_lists_that_do_not_describe_their_images_are_refused(
    tmp_path: Path, edit, match
) -> None:
    """A file name that is not a string, an annotation of a category the file does not list (it became a
    class of its own) and a listed image without annotation (it vanished): each named with the file."""
    _inat(tmp_path)
    data = json.loads((tmp_path / "train2017.json").read_text())
    edit(data)
    (tmp_path / "train2017.json").write_text(json.dumps(data))
    with pytest.raises(BadFile, match=r"cannot read .*train2017\.json: " + match):
        build_datasets("inat2017", root=tmp_path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["images"][0].update(file_name=None), r"image id \d+ has file_name None"),
        (
            lambda d: d["images"][0].update(id=d["images"][0]["id"] + 0.9),
            r"image id .* is not an integer",
        ),
        (
            lambda d: d["annotations"][0].update(category_id=2.7),
            r"annotation category_id 2\.7 is not an integer",
        ),
    ],
)
def test_coco_ids_and_file_names_are_checked_not_truncated(tmp_path: Path, edit, match) -> None:
    """A category id of 2.7 became category 2 and an image id of 1.9 image 1 (int()), silently
    changing the labels; a file_name of null ended in a bare TypeError."""
    _coco(tmp_path, 2014)
    path = tmp_path / "annotations" / "instances_train2014.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(BadFile, match=r"cannot read .*instances_train2014\.json: " + match):
        build_datasets("coco", root=tmp_path)


def test_a_repeated_id_in_a_released_list_is_warned_and_taken_as_listed(tmp_path: Path) -> None:
    _voc(tmp_path)
    ids = tmp_path / "img_id.txt"
    ids.write_text("2008_000001\n2008_000002\n2008_000001\n")
    with pytest.warns(
        UserWarning,
        match=r"img_id\.txt: 1 image id\(s\) listed more than once \(first: 2008_000001\)",
    ):
        b = build_datasets("voc_mlt", root=tmp_path, train_ids=ids, size=16)
    assert len(b.train) == 3
