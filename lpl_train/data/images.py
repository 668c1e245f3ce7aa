"""Map-style datasets of image files, decoded with Pillow and transformed with torch ops.

Used for the sets that do not fit in memory (iNaturalist, VOC-MLT, COCO-MLT). Each item is decoded on
demand; the random augmentation draws from an explicit ``torch.Generator`` that the loader seeds from
``(seed, epoch, index)``, so an epoch's augmentations are reproducible whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .common import BadFile, DatasetBundle, check_choice, check_int
from .transforms import IMAGENET_MEAN, IMAGENET_STD, RECIPES, normalize


def decode_image(path: str | Path) -> torch.Tensor:
    """Decode an image file to a uint8 ``3 x H x W`` RGB tensor; unreadable files raise ValueError."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,  # a header claiming more pixels than Pillow's limit
        OSError,
        SyntaxError,
        ValueError,
    ) as err:
        raise BadFile(f"cannot decode image {path}: {err}") from err
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class ImageFileDataset(torch.utils.data.Dataset):
    """Images from files with int64 (single-label) or float multi-hot targets.

    Args:
        paths: image file paths.
        targets: int64 ``(N,)`` or float ``(N, C)`` tensor.
        recipe: ``"imagenet"`` (random resized crop + flip / resize 256 + centre crop) or ``"mlt"``
            (224 x 224 squash, crop >= 0.8 side + flip / squash).
        size: output side in pixels.
        mean, std: normalisation (ImageNet statistics by default).

    ``dataset[i]`` gives the evaluation transform; ``dataset.get(i, generator, train=True)`` the
    training one.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        targets: torch.Tensor,
        recipe: str = "imagenet",
        size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        check_choice("recipe", recipe, tuple(RECIPES))
        self.size = check_int("size", size, 8)
        if not isinstance(targets, torch.Tensor) or len(targets) != len(paths):
            raise ValueError(
                f"targets must be a tensor with one row per path ({len(paths)}), got "
                f"{getattr(targets, 'shape', type(targets))}"
            )
        self.paths = [Path(p) for p in paths]
        self.targets = targets
        self.recipe = recipe
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __len__(self) -> int:
        return len(self.paths)

    def get(
        self,
        index: int,
        generator: torch.Generator | None = None,
        train: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index`` through the recipe's training (``train``) or evaluation transform, normalised
        with ``mean``/``std`` (default: the dataset's)."""
        x = decode_image(self.paths[index])
        train_fn, eval_fn = RECIPES[self.recipe]
        if train:
            if generator is None:
                generator = torch.Generator().manual_seed(index)
            x = train_fn(x, generator, self.size)
        else:
            x = eval_fn(x, None, self.size)
        m, s = self.mean if mean is None else mean, self.std if std is None else std
        return normalize(x, m, s), self.targets[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get(index)


def multilabel_bundle(
    train: ImageFileDataset, test: ImageFileDataset, names: list[str], size: int, name: str
) -> DatasetBundle:
    """The bundle of a multi-label image set (VOC-MLT, COCO-MLT, MS-COCO): ImageNet normalisation, the
    ``mlt`` augmentation, class counts = positive counts of the training split, no validation split."""
    return DatasetBundle(
        train=train,
        val=None,
        test=test,
        num_classes=len(names),
        class_counts=[int(v) for v in (train.targets > 0.5).sum(0).tolist()],
        multi_label=True,
        input_shape=(3, size, size),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        augment="mlt",
        name=name,
        class_names=list(names),
    )
