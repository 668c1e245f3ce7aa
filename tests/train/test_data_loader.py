"""The tensor-resident loader and the DataLoader path: epochs depend only on (seed, epoch), every sample
once per epoch, crops/flips are exact shifted/mirrored copies, normalisation values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lpl_train.data import DatasetLoader, TensorData, TensorLoader, make_loader
from lpl_train.data.transforms import batch_crop_flip


def _data(n: int = 50, c: int = 1, h: int = 8, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, c, h, h), generator=g, dtype=torch.uint8)
    return TensorData(images, torch.arange(n) % 5, mean=(0.5,) * c, std=(0.25,) * c)


def _candidates(img: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """Every pad-p shifted crop of one C x H x W image, plain and mirrored (an independent reference)."""
    h, w = img.shape[-2:]
    p = F.pad(img, (pad, pad, pad, pad))
    out = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = p[:, dy : dy + h, dx : dx + w]
            out += [crop, crop.flip(-1)]
    return out


def test_batch_crop_flip_gives_shifted_or_mirrored_copies() -> None:
    x = _data(64, c=3, h=6).images
    out = batch_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    seen = set()
    for i in range(len(x)):
        matches = [k for k, c in enumerate(_candidates(x[i], 2)) if torch.equal(c, out[i])]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 20  # many different shifts/flips used
    # pad 0 and no flip is the identity
    same = batch_crop_flip(x, torch.Generator().manual_seed(0), pad=0, flip=False)
    assert torch.equal(same, x)


def test_each_sample_once_and_reproducible_epochs() -> None:
    d = _data()
    a = TensorLoader(d, 16, train=True, augment="none", seed=3)
    b = TensorLoader(d, 16, train=True, augment="none", seed=3)
    assert len(a) == 4
    a.set_epoch(2)
    b.set_epoch(2)
    xa = torch.cat([x for x, _ in a])
    xb = torch.cat([x for x, _ in b])
    assert torch.equal(xa, xb)
    # a permutation of the normalised images
    ref = (d.images.float() / 255 - 0.5) / 0.25
    key = lambda t: sorted(map(tuple, t.flatten(1).tolist()))  # noqa: E731
    assert key(xa) == key(ref)
    b.set_epoch(3)
    assert not torch.equal(torch.cat([x for x, _ in b]), xa)
    # iterating again repeats the epoch (resume sees the same batches)
    assert torch.equal(torch.cat([x for x, _ in a]), xa)


def test_resumed_loader_matches() -> None:
    d = _data()
    a = make_loader(d, 8, train=True, augment="crop_flip", device="cpu", seed=1)
    for e in range(3):
        a.set_epoch(e)
        batches = [(x.clone(), y.clone()) for x, y in a]
    fresh = make_loader(d, 8, train=True, augment="crop_flip", device="cpu", seed=1)
    fresh.set_epoch(2)
    for (x1, y1), (x2, y2) in zip(batches, fresh, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


@pytest.mark.parametrize("backend", ["tensor", "dataloader"])
def test_eval_order_drop_last_and_targets(backend: str) -> None:
    d = _data(10)
    ev = make_loader(d, 4, train=False, augment="crop_flip", device="cpu", seed=0, backend=backend)
    xs, ys = zip(*list(ev), strict=True)
    assert [len(y) for y in ys] == [4, 4, 2]
    assert torch.equal(torch.cat(ys), d.targets)
    assert torch.equal(
        torch.cat(xs), (d.images.float() / 255 - 0.5) / 0.25
    )  # no augmentation at eval
    tr = make_loader(d, 4, train=True, augment="none", device="cpu", seed=0, drop_last=True)
    assert len(tr) == 2 and sum(len(y) for _, y in tr) == 8


def test_feature_rows_pass_through() -> None:
    d = TensorData(torch.randn(7, 3), torch.tensor([0, 1, 0, 1, 0, 1, 0]))
    ld = make_loader(d, 7, train=False, augment="none", device="cpu", seed=0)
    x, y = next(iter(ld))
    assert torch.equal(x, d.images) and torch.equal(y, d.targets)
    with pytest.raises(ValueError, match="uint8"):
        make_loader(d, 7, train=True, augment="crop_flip", device="cpu", seed=0)


@pytest.mark.parametrize("backend", ["tensor", "dataloader"])
@pytest.mark.parametrize("augment", ["flip", "crop_flip"])
def test_an_image_augment_on_feature_rows_is_refused_when_built(backend, augment) -> None:
    """Either path refuses a crop or flip of float feature rows when the loader is built, under the
    option's name (the DataLoader path used to fail at the first batch with a tensor-shape error)."""
    d = TensorData(torch.randn(7, 3), torch.tensor([0, 1, 0, 1, 0, 1, 0]))
    with pytest.raises(ValueError, match=f"^augment='{augment}' needs uint8 images"):
        make_loader(d, 4, train=True, augment=augment, backend=backend)
    # without augmentation the rows pass through on both paths
    x, _ = next(iter(make_loader(d, 7, train=True, augment="none", backend=backend)))
    assert sorted(x[:, 0].tolist()) == sorted(d.images[:, 0].tolist())


def test_dataloader_path_on_tensor_data() -> None:
    d = _data(20, h=6)
    dl = make_loader(
        d, 6, train=True, augment="crop_flip", device="cpu", seed=4, backend="dataloader", pad=1
    )
    assert isinstance(dl, DatasetLoader) and len(dl) == 4
    dl.set_epoch(1)
    x1 = [(x, y) for x, y in dl]
    x2 = [(x, y) for x, y in dl]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(x1, x2, strict=True))
    ys = torch.cat([y for _, y in x1])
    assert sorted(ys.tolist()) == sorted(d.targets.tolist())
    # each sample is a pad-1 crop (maybe mirrored) of some source image, normalised
    x = torch.cat([a for a, _ in x1])
    raw = (x * 0.25 + 0.5) * 255
    assert torch.allclose(raw, raw.round(), atol=1e-3)
    raw = raw.round().to(torch.uint8)
    for i in range(len(raw)):
        assert any(torch.equal(c, raw[i]) for j in range(20) for c in _candidates(d.images[j], 1))


def test_errors() -> None:
    d = _data()
    with pytest.raises(ValueError, match="augment"):
        make_loader(d, 4, train=True, augment="mixup", device="cpu", seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(d, 0, train=True, augment="none", device="cpu", seed=0)
    with pytest.raises(ValueError, match="split"):
        make_loader(None, 4, train=True, augment="none", device="cpu", seed=0)
    with pytest.raises(ValueError, match="targets has 3 rows"):
        TensorData(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="images must be uint8"):
        TensorData(torch.zeros(4, 1, 2, 2, dtype=torch.int32), torch.zeros(4, dtype=torch.int64))
    from lpl_train.data.transforms import normalize

    x, g = _data(4, c=3, h=4).images, torch.Generator()
    with pytest.raises(ValueError, match="pad=4 must be smaller than the image side"):
        batch_crop_flip(x, g, pad=4, pad_mode="reflect")
    for pad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="pad must be a non-negative int"):
            batch_crop_flip(x, g, pad=pad)
    with pytest.raises(ValueError, match="mean/std must have 3 entries"):
        normalize(x, (0.5, 0.5), (0.2, 0.2, 0.2))


def test_dataloader_workers_do_not_change_batches() -> None:
    d = _data(24, h=6)
    kw = dict(
        batch_size=8, train=True, augment="crop_flip", device="cpu", seed=2, backend="dataloader"
    )
    single = make_loader(d, num_workers=0, **kw)
    multi = make_loader(d, num_workers=2, **kw)
    single.set_epoch(5)
    multi.set_epoch(5)
    for (x1, y1), (x2, y2) in zip(single, multi, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_reflect_padding_mirrors_without_repeating_the_edge() -> None:
    # a 1 x 3 x 3 image 1..9 reflect-padded by 1 (hand-written): rows/cols mirror about the border pixel
    img = torch.arange(1, 10, dtype=torch.uint8).view(1, 1, 3, 3)
    padded = torch.tensor(
        [[5, 4, 5, 6, 5], [2, 1, 2, 3, 2], [5, 4, 5, 6, 5], [8, 7, 8, 9, 8], [5, 4, 5, 6, 5]],
        dtype=torch.uint8,
    )
    windows = [padded[dy : dy + 3, dx : dx + 3] for dy in range(3) for dx in range(3)]
    got = set()
    for s in range(40):
        out = batch_crop_flip(img, torch.Generator().manual_seed(s), pad=1, flip=False,
                              pad_mode="reflect")[0, 0]  # fmt: skip
        k = [i for i, w in enumerate(windows) if torch.equal(w, out)]
        assert len(k) == 1
        got.add(k[0])
    assert len(got) == 9  # every shift occurs
    # no zero ever appears with reflect padding; with zero padding the corner shift shows zeros
    x = torch.full((16, 1, 4, 4), 7, dtype=torch.uint8)
    assert bool(
        (batch_crop_flip(x, torch.Generator().manual_seed(0), 2, pad_mode="reflect") == 7).all()
    )
    assert bool((batch_crop_flip(x, torch.Generator().manual_seed(0), 2) == 0).any())
    with pytest.raises(ValueError, match="pad_mode must be one of"):
        batch_crop_flip(x, torch.Generator(), 2, pad_mode="edge")


def test_both_loader_paths_apply_pad_mode() -> None:
    # constant non-zero images: a zero-padded crop shows padding (x = 0), a reflect-padded one never does
    n = 32
    d = TensorData(
        torch.full((n, 1, 8, 8), 200, dtype=torch.uint8), torch.arange(n) % 4, (0.0,), (1.0,)
    )
    kw = {"batch_size": 8, "train": True, "augment": "crop_flip", "seed": 3, "pad": 3}
    for backend in ("tensor", "dataloader"):
        zero = torch.cat([x for x, _ in make_loader(d, **kw, backend=backend)])
        refl = make_loader(d, **kw, backend=backend, pad_mode="reflect")
        assert refl.pad_mode == "reflect"
        refl_x = torch.cat([x for x, _ in refl])
        assert bool((zero == 0).any()), backend
        assert torch.allclose(refl_x, torch.full_like(refl_x, 200 / 255)), backend
    with pytest.raises(ValueError, match="pad_mode must be one of"):
        make_loader(d, **kw, pad_mode="edge")


def test_flip_only_mirrors_and_given_statistics_normalise() -> None:
    """``augment="flip"`` never shifts (each image is itself or its mirror, both seen); ``mean``/``std``
    given to the loader replace the split's own."""
    d = _data(64, c=3, h=6)
    loader = TensorLoader(d, 64, train=True, augment="flip", seed=1, mean=(0.1, 0.2, 0.3),
                          std=(0.5, 0.4, 0.2))  # fmt: skip
    (x, y), = list(loader)  # fmt: skip
    mean = torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1)
    std = torch.tensor([0.5, 0.4, 0.2]).view(3, 1, 1)
    flipped = 0
    for xi, yi in zip(x, y, strict=True):
        # the sample: labels are index % 5, so look among the images with its label
        own = [(img.float() / 255 - mean) / std for img in d.images[d.targets == yi]]
        plain = any(torch.allclose(xi, o, atol=1e-6) for o in own)
        mirror = any(torch.allclose(xi, o.flip(-1), atol=1e-6) for o in own)
        assert plain or mirror
        flipped += mirror and not plain
    assert 10 < flipped < 54


def test_fashion_mnist_crops_pad_2_pixels_and_cifar_4():
    """The recipe's padding follows the image side: 2 pixels for 28 x 28 (Fashion-MNIST), 4 for 32 x 32;
    a 28 x 28 crop then shifts the image by at most 2 pixels either way."""
    import torch

    from lpl_train.data import TensorData, make_loader

    for side, pad in ((28, 2), (32, 4)):
        x = torch.zeros(64, 1, side, side, dtype=torch.uint8)
        x[:, :, side // 2, side // 2] = 255  # one bright pixel in the middle
        data = TensorData(x, torch.arange(64) % 4, mean=(0.0,), std=(1.0,))
        loader = make_loader(data, 64, True, "crop_flip", "cpu", seed=0)
        assert loader.pad == pad
        (batch, _) = next(iter(loader))
        rows = batch[:, 0].amax(dim=2).argmax(dim=1) - side // 2  # where the pixel went
        assert rows.abs().max() == pad  # every shift in [-pad, pad], the extremes reached


def test_dataloader_path_shuffles_training_and_flip_never_shifts() -> None:
    # DataLoader path on tensor data: training order is a permutation that changes with the epoch (the
    # eval order is the dataset's); augment="flip" gives each image or its mirror, never a shifted crop
    d = _data(40, c=1, h=6)
    kw = {"batch_size": 40, "device": "cpu", "seed": 2, "backend": "dataloader", "pad": 2}
    ev = make_loader(d, train=False, augment="none", **kw)
    assert next(iter(ev))[1].tolist() == d.targets.tolist()
    tr = make_loader(d, train=True, augment="flip", **kw)
    orders = []
    for e in (0, 1):
        tr.set_epoch(e)
        (x, y), = list(tr)  # fmt: skip
        raw = ((x * 0.25 + 0.5) * 255).round().to(torch.uint8)
        # images are distinct, so each output names its source image
        src = [next(j for j in range(40) if torch.equal(raw[i], d.images[j])
                    or torch.equal(raw[i], d.images[j].flip(-1))) for i in range(40)]  # fmt: skip
        assert sorted(src) == list(range(40)) and y.tolist() == d.targets[src].tolist()
        assert any(torch.equal(raw[i], d.images[s].flip(-1)) for i, s in enumerate(src))
        orders.append(src)
    assert orders[0] != list(range(40)) and orders[0] != orders[1]


# ------------------------------------------------------------------ one process's slice of every batch
def _tensor_split_rows(m: int, world: int) -> list[list[int]]:
    """The rows torch.tensor_split gives each of ``world`` processes in a batch of ``m`` (independent of
    the loader's own arithmetic)."""
    return [part.tolist() for part in torch.tensor_split(torch.arange(m), world)]


@pytest.mark.parametrize("backend", ["tensor", "dataloader"])
@pytest.mark.parametrize("augment", ["crop_flip", "flip", "none"])
def test_a_shard_yields_its_slice_of_the_whole_loader_s_batches(backend, augment) -> None:
    """Each of W processes gets its tensor_split slice of every batch of the whole loader (the same
    crops and flips, in the same order), as many batches, and the share n_r·W/m of its rows; a batch of
    fewer than W samples is every process's whole; drop_last drops the same batch for every process."""
    for n, world, drop_last in ((37, 2, False), (33, 2, False), (50, 3, False), (37, 3, True)):
        data = _data(n)
        kw = {"batch_size": 16, "train": True, "augment": augment, "seed": 3,
              "drop_last": drop_last, "backend": backend}  # fmt: skip
        whole = make_loader(data, **kw)
        whole.set_epoch(2)
        want = list(whole)
        for r in range(world):
            loader = make_loader(data, **kw, shard=(r, world))
            loader.set_epoch(2)
            assert len(loader) == len(whole) == len(want)
            got = []
            for x, y in loader:
                got.append((x, y, loader.share))
            assert len(got) == len(want)
            for (x, y), (xs, ys, share) in zip(want, got, strict=True):
                m = x.shape[0]
                if m < world:  # every process trains the whole (small) batch
                    assert torch.equal(xs, x) and torch.equal(ys, y) and share == 1.0
                    continue
                rows = _tensor_split_rows(m, world)[r]
                assert torch.equal(xs, x[rows]) and torch.equal(ys, y[rows])
                assert share == pytest.approx(len(rows) * world / m)
        if n == 37 and world == 2 and not drop_last:
            assert [len(b[0]) for b in want] == [16, 16, 5]  # the last batch splits 3 + 2


def test_a_shard_reads_and_augments_only_its_rows(monkeypatch) -> None:
    """The point of the shard: a process crops only its own rows of a batch (not the whole batch, to drop
    the rest), and draws the batch's random numbers whole."""
    import lpl_train.data.loader as loader_mod

    sizes: list[tuple[int, tuple[int, int] | None]] = []

    def spy(x, gen, *args, **kwargs):
        sizes.append((x.shape[0], kwargs.get("part")))
        return batch_crop_flip(x, gen, *args, **kwargs)

    monkeypatch.setattr(loader_mod, "batch_crop_flip", spy)
    loader = make_loader(_data(37), 16, True, "crop_flip", seed=1, shard=(1, 2))
    assert [x.shape[0] for x, _ in loader] == [8, 8, 2]
    assert sizes == [(8, (8, 16)), (8, (8, 16)), (2, (3, 5))]


def test_batch_crop_flip_of_a_part_is_that_part_of_the_whole() -> None:
    x = _data(10, c=3, h=6).images
    whole = batch_crop_flip(x, torch.Generator().manual_seed(4), pad=2)
    for start, stop in ((0, 4), (4, 10), (3, 4)):
        part = batch_crop_flip(
            x[start:stop], torch.Generator().manual_seed(4), pad=2, part=(start, 10)
        )
        assert torch.equal(part, whole[start:stop])
    gen = torch.Generator().manual_seed(4)
    batch_crop_flip(x[:4], gen, pad=2, part=(0, 10))
    after = torch.rand(1, generator=gen)  # the generator moved past the whole batch's numbers
    gen = torch.Generator().manual_seed(4)
    batch_crop_flip(x, gen, pad=2)
    assert torch.equal(after, torch.rand(1, generator=gen))
    for bad in ((7, 10), (-1, 10), (0, 3)):
        with pytest.raises(ValueError, match="does not hold the 4 rows"):
            batch_crop_flip(x[:4], torch.Generator(), pad=2, part=bad)


def test_bad_shards_are_refused() -> None:
    data = _data(8)
    for bad, match in (((2, 2), "below the world size 2"), ((0, 0), "world must be"),
                       ((-1, 2), "rank must be"), ((0,), "pair"), (3, "pair")):  # fmt: skip
        with pytest.raises((ValueError, TypeError), match=match):
            make_loader(data, 4, True, shard=bad)
        with pytest.raises((ValueError, TypeError), match=match):
            make_loader(data, 4, True, backend="dataloader", shard=bad)


@pytest.mark.parametrize("backend", ["tensor", "dataloader"])
def test_a_loader_s_own_normalisation_is_checked(backend: str) -> None:
    d = _data(6)
    kw = {"batch_size": 3, "train": False, "augment": "none", "device": "cpu", "backend": backend}
    x, _ = next(iter(make_loader(d, mean=(0.5,), std=(0.25,), **kw)))
    assert torch.isfinite(x).all()
    for mean, std, err, pattern in (
        (None, (0,), ValueError, r"std must be positive, got \(0,\)"),
        (None, (-1.0,), ValueError, "std must be positive"),
        ((float("nan"),), None, ValueError, "mean must be finite numbers"),
        (None, ("a",), TypeError, "std must be a sequence of numbers"),
    ):
        with pytest.raises(err, match=pattern):
            make_loader(d, mean=mean, std=std, **kw)


@pytest.mark.parametrize("backend", ["tensor", "dataloader"])
def test_a_normalisation_without_one_entry_per_channel_is_refused_when_built(backend) -> None:
    """3-channel images with a 1-entry mean or std: refused when the loader is built, the option named
    first (so the engine can name its config key), not when the first batch is normalised."""
    d = _data(6, c=3)  # its own mean/std have 3 entries
    kw = {"batch_size": 3, "train": True, "augment": "crop_flip", "backend": backend}
    with pytest.raises(ValueError, match=r"^mean must have 3 entries .*got 1$"):
        make_loader(d, mean=(0.5,), **kw)
    with pytest.raises(ValueError, match=r"^std must have 3 entries .*got 2$"):
        make_loader(d, std=(0.2, 0.2), **kw)
    x, _ = next(iter(make_loader(d, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), **kw)))
    assert x.shape == (3, 3, 8, 8) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_each_sample_of_the_dataloader_path_draws_its_own_flip() -> None:
    """Sample i's augmentation is drawn from (seed, epoch, i): within one batch some images are mirrored
    and others are not (one draw shared by the whole epoch would mirror all or none)."""
    images = _data(40, c=1, h=6).images
    d = TensorData(images, torch.arange(40), mean=(0.0,), std=(1.0,))  # the target names the image
    loader = make_loader(d, 40, train=True, augment="flip", seed=0, backend="dataloader")
    (x, y), = list(loader)  # fmt: skip
    raw = (x * 255).round().to(torch.uint8)
    mirrored = []
    for out, t in zip(raw, y.tolist(), strict=True):
        assert torch.equal(out, images[t]) or torch.equal(out, images[t].flip(-1))
        mirrored.append(not torch.equal(out, images[t]))
    assert 0 < sum(mirrored) < 40


def test_both_loader_paths_draw_the_same_sample_order() -> None:
    """The sample order of epoch e is the permutation of epoch_generator(seed, e) on either path, so
    switching data.loader.backend does not change which samples are batched together."""
    from lpl_train.data.loader import epoch_generator

    d = TensorData(torch.zeros(23, 1, 2, 2, dtype=torch.uint8), torch.arange(23))
    for epoch in (0, 3):
        expected = torch.randperm(23, generator=epoch_generator(7, epoch)).tolist()
        for backend in ("tensor", "dataloader"):
            loader = make_loader(d, 5, train=True, seed=7, backend=backend)
            loader.set_epoch(epoch)
            assert torch.cat([y for _, y in loader]).tolist() == expected, backend


def test_the_dataloader_path_pads_crops_by_the_image_side() -> None:
    """The DataLoader path follows the recipe as the tensor path does: pad 2 for 28 x 28, 4 for 32 x 32."""
    for c, side, pad in ((1, 28, 2), (3, 32, 4), (3, 28, 2)):
        d = TensorData(torch.zeros(2, c, side, side, dtype=torch.uint8), torch.arange(2))
        assert make_loader(d, 2, True, "crop_flip", backend="dataloader").pad == pad


@pytest.mark.parametrize("backend", ["auto", "tensor", "dataloader"])
@pytest.mark.parametrize("augment", ["imagenet", "mlt"])
def test_an_image_file_recipe_on_tensor_data_is_refused_on_either_path(backend, augment):
    """The DataLoader path used to accept augment='imagenet'/'mlt' on a TensorData split and yield the
    unaugmented images; both paths refuse it, as the tensor path did."""
    with pytest.raises(ValueError, match=f"augment='{augment}' is for image-file datasets"):
        make_loader(_data(), 8, train=True, augment=augment, backend=backend)
