"""Image-file datasets: iNaturalist JSON lists, VOC XML and COCO JSON annotations (tiny files and JPEGs
written here), corrupt files, the torch transforms, and the Pareto long-tail construction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lpl_train.data import build_datasets, make_loader
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
    with pytest.raises(ValueError, match=r"bad\.jpg"):
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
            "categories": [{"id": c, "name": str(c)} for c in (3, 7, 9)],
        }
        (root / name).write_text(json.dumps(data))
        for f, c in pairs:
            jpeg(root / f, (c * 20, 0, 0))


def test_inat(tmp_path: Path) -> None:
    _inat(tmp_path)
    b = build_datasets("inat2017", root=tmp_path, size=16)
    assert b.num_classes == 3 and b.class_counts == [1, 3, 1] and not b.multi_label
    assert b.train.targets.tolist() == [1, 0, 1, 2, 1] and b.test.targets.tolist() == [0, 2]
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
    with pytest.raises(FileNotFoundError, match=r"test\.txt"):
        build_datasets("voc_mlt", root=tmp_path)
    _voc(tmp_path)
    (tmp_path / "VOCdevkit/VOC2012/Annotations/2008_000003.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match=r"2008_000003\.xml"):
        build_datasets("voc_mlt", root=tmp_path)
    _voc_xml(tmp_path / "VOCdevkit/VOC2012/Annotations/2008_000003.xml", [("unicorn", 0)])
    with pytest.raises(ValueError, match="unicorn"):
        build_datasets("voc_mlt", root=tmp_path)


def _coco(root: Path) -> None:
    (root / "annotations").mkdir(parents=True)
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

    train = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in (11, 12, 13)],
        "annotations": [
            ann(1, 11, 1),
            ann(2, 11, 18, area=0.0),  # zero area: skipped
            ann(3, 12, 90, crowd=1),  # crowd: kept
            ann(4, 12, 18, bbox=(0, 0, 0.5, 9)),  # width < 1: skipped
            ann(5, 13, 18),
        ],
        "categories": cats,
    }
    val = {
        "images": [{"id": 21, "file_name": "000000000021.jpg"}],
        "annotations": [ann(9, 21, 90)],
        "categories": cats,
    }
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(train))
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(val))
    for i in (11, 12, 13):
        jpeg(root / "train2017" / f"{i:012d}.jpg", (1, 2, 3))
    jpeg(root / "val2017" / "000000000021.jpg", (1, 2, 3))


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
