"""Class-aware resampling, the "RS" of R-BCE (Wu et al., ECCV 2020; Shen et al., ECCV 2016).

:class:`ClassAwareSampler` follows the Distribution-Balanced reference's ``ClassAwareSampler``: classes are
visited in a random order that is reshuffled each time every class has been visited; each visit takes
``num_samples_cls`` (default 3) consecutive images from that class's own list, itself reshuffled each
time it is used up (an image with several labels is in several lists); an epoch has
``int(max_c n_c * C / reduce)`` images (``reduce`` = 4: 3875 for VOC-MLT, 22560 for COCO-MLT).

One deliberate difference: the reference seeds Python's ``random`` once, so its cyclic state carries over
from one epoch to the next. Here the indices of epoch ``e`` depend only on ``(seed, e)`` (every epoch
starts from fresh shuffles drawn from a generator seeded with both), so a resumed run sees the same
images. Call :meth:`ClassAwareSampler.set_epoch` before each epoch. The reference's ``drop_last=True`` is
a property of the batch loader, not of the sampler.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["ClassAwareSampler", "class_index_lists"]


def class_index_lists(labels: Any, num_classes: int | None = None) -> list[np.ndarray]:
    """Per class, the indices of the samples that carry it.

    ``labels`` is a (N,) tensor/array of class indices, a (N, C) multi-hot tensor/array, or a sequence of
    per-sample collections of class indices.
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    if isinstance(labels, np.ndarray):
        if labels.ndim == 1:
            if labels.size and (not np.issubdtype(labels.dtype, np.integer)):
                raise TypeError(f"labels must hold integer class indices, got dtype {labels.dtype}")
            c = (
                num_classes
                if num_classes is not None
                else (int(labels.max()) + 1 if labels.size else 0)
            )
            if labels.size and (labels.min() < 0 or labels.max() >= c):
                raise ValueError(
                    f"labels must be class indices in [0, {c - 1}], got values in "
                    f"[{labels.min()}, {labels.max()}]"
                )
            return [np.flatnonzero(labels == k) for k in range(c)]
        if labels.ndim == 2:
            if not np.isin(labels, (0, 1)).all():
                raise ValueError("multi-hot labels must hold only 0 and 1")
            if num_classes is not None and labels.shape[1] != num_classes:
                raise ValueError(
                    f"labels have {labels.shape[1]} columns but num_classes is {num_classes}"
                )
            return [np.flatnonzero(labels[:, k]) for k in range(labels.shape[1])]
        raise ValueError(
            f"labels must be 1-D (class indices) or 2-D (multi-hot), got shape {labels.shape}"
        )
    if isinstance(labels, Sequence) and not isinstance(labels, str | bytes):
        sets = [list(s) if isinstance(s, Sequence | set | frozenset) else [s] for s in labels]
        flat = [k for s in sets for k in s]
        if any(isinstance(k, bool) or not isinstance(k, int | np.integer) for k in flat):
            raise TypeError("labels must be sequences of int class indices")
        c = num_classes if num_classes is not None else (max(flat) + 1 if flat else 0)
        if flat and (min(flat) < 0 or max(flat) >= c):
            raise ValueError(
                f"labels must be class indices in [0, {c - 1}], got {min(flat)}..{max(flat)}"
            )
        out: list[list[int]] = [[] for _ in range(c)]
        for i, s in enumerate(sets):
            for k in set(s):
                out[k].append(i)
        return [np.asarray(v, dtype=np.int64) for v in out]
    raise TypeError(f"labels must be a tensor, an array or a sequence, got {type(labels).__name__}")


class ClassAwareSampler(Sampler[int]):
    """Seeded class-aware sampler (see the module docstring for the reference behaviour).

    Args:
        labels: (N,) class indices, (N, C) multi-hot, or per-sample collections of class indices.
        num_samples_cls: consecutive images taken per class visit, >= 1 (default 3).
        reduce: epoch length divisor, > 0 (default 4); the epoch has ``int(max_c n_c * C / reduce)`` images.
        num_samples: explicit epoch length (overrides ``reduce``), >= 1.
        seed: int seed; epoch ``e`` uses a generator seeded with ``(seed, e)``.
        num_classes: number of classes (default: inferred from ``labels``).

    Classes with no image are never visited (they still count in C for the epoch length, as in the
    reference). :meth:`indices` returns the whole epoch as a tensor for tensor-resident loaders.
    """

    def __init__(
        self,
        labels: Any,
        num_samples_cls: int = 3,
        reduce: float = 4,
        num_samples: int | None = None,
        seed: int = 0,
        num_classes: int | None = None,
    ) -> None:
        for name, value in (("num_samples_cls", num_samples_cls), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
        if num_samples_cls < 1:
            raise ValueError(f"num_samples_cls must be >= 1, got {num_samples_cls}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if isinstance(reduce, bool) or not isinstance(reduce, int | float) or not reduce > 0:
            raise ValueError(f"reduce must be a number > 0, got {reduce!r}")
        self.class_lists = class_index_lists(labels, num_classes)
        self.num_classes = len(self.class_lists)
        self.nonempty = [k for k, v in enumerate(self.class_lists) if len(v) > 0]
        if not self.nonempty:
            raise ValueError("labels contain no positive label for any class; nothing to sample")
        if num_samples is None:
            max_n = max(len(v) for v in self.class_lists)
            num_samples = int(max_n * self.num_classes / reduce)
            if num_samples < 1:
                raise ValueError(
                    f"the epoch length int(max_c n_c * C / reduce) = int({max_n} * {self.num_classes} "
                    f"/ {reduce}) is 0; lower reduce or give num_samples"
                )
        elif isinstance(num_samples, bool) or not isinstance(num_samples, int):
            raise TypeError(f"num_samples must be an int or None, got {num_samples!r}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples
        self.num_samples_cls = num_samples_cls
        self.reduce = reduce
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the 0-indexed epoch whose indices the next iteration yields."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = epoch

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        """The sample indices of ``epoch`` (default: the current one), int64 tensor of length ``len(self)``."""
        if epoch is None:
            epoch = self.epoch
        elif isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        rng = np.random.default_rng([self.seed, epoch])
        classes = np.asarray(self.nonempty)
        class_order = rng.permutation(classes)
        class_pos = 0
        lists = {k: rng.permutation(self.class_lists[k]) for k in self.nonempty}
        pos = dict.fromkeys(self.nonempty, 0)
        out = np.empty(self.num_samples, dtype=np.int64)
        i = 0
        while i < self.num_samples:
            if class_pos == len(class_order):
                class_order = rng.permutation(classes)
                class_pos = 0
            k = int(class_order[class_pos])
            class_pos += 1
            for _ in range(self.num_samples_cls):
                if i == self.num_samples:
                    break
                if pos[k] == len(lists[k]):
                    lists[k] = rng.permutation(self.class_lists[k])
                    pos[k] = 0
                out[i] = lists[k][pos[k]]
                pos[k] += 1
                i += 1
        return torch.from_numpy(out)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples
