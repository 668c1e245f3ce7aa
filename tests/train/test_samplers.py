"""Class-aware sampler: epoch length, class cycling, per-class passes, seeding."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lpl_train.samplers import ClassAwareSampler, class_index_lists

VOC_COUNTS = [6, 34, 8, 14, 154, 17, 249, 29, 479, 4, 240, 48, 11, 20, 775, 100, 5, 82, 7, 64]


def _single_label(counts, seed=0):
    y = np.concatenate([np.full(n, k) for k, n in enumerate(counts)])
    return torch.from_numpy(np.random.default_rng(seed).permutation(y))


def test_epoch_length_matches_reference_formula():
    # VOC-MLT: max count 775, 20 classes, reduce 4 -> 3875 images per epoch
    assert len(ClassAwareSampler(_single_label(VOC_COUNTS))) == 3875
    # COCO-MLT: 1128 * 80 / 4 = 22560 (single-label stand-in with that max count)
    assert len(ClassAwareSampler(_single_label([1128] + [6] * 79))) == 22560
    assert len(ClassAwareSampler(_single_label([5, 3]), num_samples=7)) == 7
    assert len(ClassAwareSampler(_single_label([5, 3]), reduce=1)) == 10


def test_classes_are_cycled_and_visits_take_consecutive_images():
    counts = [20, 7, 3, 1]
    y = _single_label(counts)
    s = ClassAwareSampler(y, num_samples_cls=3, num_samples=3 * 4 * 6, seed=5)
    idx = s.indices()
    cls = y[idx].reshape(-1, 3)
    assert (cls == cls[:, :1]).all()  # every visit: 3 images of one class
    visits = cls[:, 0].reshape(-1, 4)  # every round of 4 visits covers each class once
    assert all(sorted(r.tolist()) == [0, 1, 2, 3] for r in visits)
    # so classes are drawn equally often whatever their size
    assert torch.bincount(y[idx], minlength=4).tolist() == [18, 18, 18, 18]


def test_each_class_list_is_used_up_before_repeating():
    counts = [9, 4]
    y = _single_label(counts)
    idx = ClassAwareSampler(y, num_samples_cls=3, num_samples=120, seed=1).indices()
    for k, n in enumerate(counts):
        drawn = idx[y[idx] == k].tolist()
        for start in range(0, len(drawn) - n + 1, n):
            chunk = drawn[start : start + n]
            assert sorted(chunk) == sorted(torch.nonzero(y == k).flatten().tolist())


def test_multi_label_images_sit_in_every_class_list():
    y = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]])
    lists = class_index_lists(y)
    assert [v.tolist() for v in lists] == [[0, 3], [0, 1], [2, 3]]
    assert [v.tolist() for v in class_index_lists(y.float())] == [[0, 3], [0, 1], [2, 3]]
    s = ClassAwareSampler(y, num_samples_cls=2, num_samples=60, seed=0)
    idx = s.indices().reshape(-1, 2)
    # each visit's two images share at least one label (the visited class)
    for a, b in idx.tolist():
        assert (y[a] & y[b]).any()
    assert class_index_lists([[0, 1], [1], [2], [0, 2]])[0].tolist() == [0, 3]


def test_seeded_per_epoch_and_resumable():
    y = _single_label([30, 10, 4])
    a = ClassAwareSampler(y, seed=3)
    b = ClassAwareSampler(y, seed=3)
    assert torch.equal(a.indices(0), b.indices(0))
    assert not torch.equal(a.indices(0), a.indices(1))
    assert not torch.equal(a.indices(0), ClassAwareSampler(y, seed=4).indices(0))
    b.set_epoch(2)
    assert (
        list(b) == a.indices(2).tolist()
    )  # a fresh sampler resumes at epoch 2 with the same images
    loader = DataLoader(
        TensorDataset(torch.arange(len(y))), batch_size=4, sampler=a, drop_last=True
    )
    a.set_epoch(1)
    got = torch.cat([batch[0] for batch in loader])
    assert torch.equal(got, a.indices(1)[: len(got)]) and len(loader) == len(a) // 4


def test_empty_class_is_skipped_but_counts_in_epoch_length():
    y = torch.tensor([0, 0, 2, 2, 2])
    s = ClassAwareSampler(y, num_classes=3, num_samples_cls=1, seed=0)
    assert len(s) == int(3 * 3 / 4)
    idx = ClassAwareSampler(y, num_classes=3, num_samples=40, seed=0).indices()
    assert set(y[idx].tolist()) == {0, 2}


def test_bad_input():
    with pytest.raises(ValueError, match="num_samples_cls must be >= 1"):
        ClassAwareSampler(torch.tensor([0, 1]), num_samples_cls=0)
    with pytest.raises(ValueError, match="reduce must be a number > 0"):
        ClassAwareSampler(torch.tensor([0, 1]), reduce=0)
    with pytest.raises(ValueError, match="only 0 and 1"):
        ClassAwareSampler(torch.tensor([[0, 2], [1, 0]]))
    with pytest.raises(ValueError, match="no positive label"):
        ClassAwareSampler(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"class indices in \[0, 1\]"):
        ClassAwareSampler(torch.tensor([0, 2]), num_classes=2)
    with pytest.raises(TypeError, match="integer class indices"):
        ClassAwareSampler(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"int\(1 \* 2 / 4\) is 0; lower reduce"):
        ClassAwareSampler(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="epoch must be an int >= 0"):
        ClassAwareSampler(torch.tensor([0, 1]), reduce=1).set_epoch(-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        ClassAwareSampler(torch.tensor([0, 1]), seed=1.5)


def test_class_order_and_class_lists_are_reshuffled():
    # the reference draws a new class order after every round and reshuffles a class's list every time
    # it is used up (its first pass already in random order), so neither repeats the previous one
    counts = [9, 7, 5, 3]
    y = _single_label(counts, seed=1)
    idx = ClassAwareSampler(y, num_samples_cls=1, num_samples=4 * 63, seed=2).indices()
    rounds = y[idx].reshape(-1, 4).tolist()
    assert all(sorted(r) == [0, 1, 2, 3] for r in rounds)
    assert len({tuple(r) for r in rounds}) > 5
    for k, n in enumerate(counts):
        drawn = idx[y[idx] == k].tolist()
        passes = [drawn[i : i + n] for i in range(0, len(drawn) - n + 1, n)]
        assert len(passes) >= 3 and len({tuple(p) for p in passes}) > 1, k
        own = torch.nonzero(y == k).flatten().tolist()  # dataset order
        assert passes[0] != own, k
        # every pass goes through the whole class once, each in a new order: a list refilled in dataset
        # order after its first (random) pass would repeat the same sequence pass after pass
        assert all(sorted(p) == own for p in passes), k
        if n >= 5:  # 1 in n! that a random pass repeats the one before or is the dataset order
            assert all(a != b for a, b in zip(passes, passes[1:], strict=False)), k
            assert own not in passes, k


def test_a_class_repeated_in_one_sample_lists_that_sample_once():
    # per-sample collections may repeat a class (one entry per instance, e.g. two persons)
    lists = class_index_lists([[0, 0, 1], [1], [2, 2, 2]])
    assert [v.tolist() for v in lists] == [[0], [0, 1], [2]]


def test_epoch_length_truncates_and_visits_take_three_images_by_default():
    # int(max_c n_c * C / reduce), truncated as in the reference: 7 * 2 / 4 = 3.5 -> 3, 11 * 2 / 4 = 5.5 -> 5
    assert len(ClassAwareSampler(_single_label([7, 2]))) == 3
    assert len(ClassAwareSampler(_single_label([11, 4]))) == 5
    assert len(ClassAwareSampler(_single_label([11, 4]), reduce=3)) == 7  # 22 / 3 = 7.33
    # num_samples_cls defaults to 3: every visit takes three images of one class
    y = _single_label([20, 7, 3, 1])
    cls = y[ClassAwareSampler(y, num_samples=3 * 4 * 5, seed=0).indices()].reshape(-1, 3)
    assert (cls == cls[:, :1]).all()
    assert all(sorted(r) == [0, 1, 2, 3] for r in cls[:, 0].reshape(-1, 4).tolist())


def test_epochs_of_different_seeds_do_not_coincide():
    # the stream of epoch e depends on the pair (seed, e), not on seed + e
    y = _single_label([30, 10, 4])
    for seed, epoch in ((3, 1), (0, 2), (5, 0)):
        a = ClassAwareSampler(y, seed=seed).indices(epoch)
        b = ClassAwareSampler(y, seed=seed + 1).indices(epoch - 1 if epoch else 1)
        assert not torch.equal(a, b), (seed, epoch)


def test_the_first_class_order_is_random_too():
    # the reference's first round is a shuffle as well, not the class index order
    y = _single_label([9, 7, 5, 3])
    firsts = {
        tuple(y[ClassAwareSampler(y, num_samples_cls=1, num_samples=4, seed=s).indices()].tolist())
        for s in range(10)
    }
    assert all(sorted(f) == [0, 1, 2, 3] for f in firsts) and len(firsts) > 3


def test_class_lists_refuse_labels_outside_the_classes():
    with pytest.raises(ValueError, match="3 columns but num_classes is 4"):
        class_index_lists(torch.tensor([[1, 0, 0], [0, 1, 1]]), num_classes=4)
    with pytest.raises(ValueError, match="3 columns but num_classes is 4"):
        ClassAwareSampler(torch.tensor([[1, 0, 0], [0, 1, 1]]), num_classes=4)
    # a negative index would otherwise land in the last class's list
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\], got -1\.\.2"):
        class_index_lists([[0, 2], [-1]])
    with pytest.raises(ValueError, match=r"class indices in \[0, 1\], got values in \[-1, 1\]"):
        class_index_lists(np.array([0, -1, 1]), num_classes=2)


def test_an_explicit_epoch_length_must_be_an_int():
    for bad in (7.5, 7.0, "7"):
        with pytest.raises(TypeError, match="num_samples must be an int or None"):
            ClassAwareSampler(torch.tensor([0, 1, 1]), num_samples=bad)
