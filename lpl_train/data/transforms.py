"""Augmentations written with plain torch ops (no torchvision).

Batch ops (the tensor-resident loader) act on a whole uint8 batch ``B x C x H x W`` on its device:

* :func:`batch_crop_flip`: pad by ``pad`` pixels (zeros, mid-grey with ``pad_mode="mid"``, or mirrored
  with ``pad_mode="reflect"``), take a random
  ``H x W`` window per image, and flip
  each image horizontally with probability 1/2. This is the standard CIFAR augmentation (pad 4); the
  Fashion-MNIST recipe uses pad 2 (28 x 28 items are small, a 4-pixel shift moves 14 % of the image).
* :func:`normalize`: ``(x / 255 - mean) / std`` per channel, to float32.

Per-sample ops (the ``DataLoader`` path, one ``C x H x W`` uint8 image at a time, randomness from an
explicit ``torch.Generator``): :func:`random_resized_crop` (scale 0.08-1, aspect 3/4-4/3, as in ImageNet
training), :func:`resize`, :func:`center_crop`, :func:`crop_flip`, and the composed recipes
:func:`imagenet_train`, :func:`imagenet_eval`, :func:`mlt_train`, :func:`mlt_eval`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=gen)


PAD_MODES = ("zero", "reflect", "mid")
#: The value ``pad_mode="mid"`` pads with: mid-grey, the nearest uint8 to 127.5 (Logit Adjustment's inputs
#: are ``x/255 - 0.5``, padded with 0 before the crop).
MID_GREY = 128


def to_device_async(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host tensor ``t`` on ``device`` without waiting for the device's queue.

    PyTorch copies pageable host memory to a CUDA device with ``cudaMemcpyAsync`` and then
    ``cudaStreamSynchronize``: in a training loop such a copy holds the host until every step queued before
    it has run, so the GPU idles while the next batch is prepared. On CUDA the copy goes through pinned
    memory with ``non_blocking=True`` (the stream orders it before the kernels that read it); elsewhere it
    is ``t.to(device)``."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def batch_crop_flip(
    x: torch.Tensor,
    gen: torch.Generator,
    pad: int = 4,
    crop: bool = True,
    flip: bool = True,
    pad_mode: str = "zero",
    part: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Random shift crop (padding ``pad``) and horizontal flip of a uint8 batch, on ``x``'s device.

    ``pad_mode``: ``"zero"`` (LDAM-DRW), ``"mid"`` (mid-grey, :data:`MID_GREY`: Logit Adjustment and the
    authors' LA-based long-tail code pad their ``x/255 - 0.5`` inputs with 0) or ``"reflect"`` (mirror
    without repeating the edge, as the ISDA code and the authors' balanced-CIFAR code pad before their
    32 x 32 crop). The random numbers come
    from the CPU generator ``gen`` (so results do not depend on the device) and are drawn in a fixed order:
    shifts ``(B, 2)`` then flips ``(B,)``.

    ``part=(start, total)``: ``x`` is rows ``start : start + len(x)`` of a batch of ``total`` images (one
    process's slice of a global batch). The numbers are drawn for the whole batch, as without ``part``, and
    ``x`` gets its own rows' crops and flips: the slices of a batch, augmented one by one, are the slices
    of the batch augmented whole.
    """
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {list(PAD_MODES)}, got {pad_mode!r}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a (B, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be a non-negative int, got {pad!r}")
    b, _, h, w = x.shape
    start, total = (0, b) if part is None else part
    if not (0 <= start and start + b <= total):
        raise ValueError(f"part={part!r} does not hold the {b} rows of x")
    shifts = torch.randint(0, 2 * pad + 1, (total, 2), generator=gen)
    flips = torch.rand(total, generator=gen) < 0.5
    both = torch.cat([shifts, flips[:, None].long()], 1)[start : start + b]
    # both draws in one copy to x's device, which does not wait for the device's queue
    draws = to_device_async(both, x.device)
    shifts, flips = draws[:, :2], draws[:, 2].bool()
    if crop and pad > 0:
        if pad_mode == "reflect" and pad >= min(h, w):
            raise ValueError(f"pad={pad} must be smaller than the image side for reflect padding")
        if pad_mode == "reflect":
            xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        else:
            fill = MID_GREY if pad_mode == "mid" else 0
            xp = F.pad(x, (pad, pad, pad, pad), mode="constant", value=fill)
        rows = shifts[:, 0:1] + torch.arange(h, device=x.device)  # (B, H)
        cols = shifts[:, 1:2] + torch.arange(w, device=x.device)  # (B, W)
        bi = torch.arange(b, device=x.device)[:, None, None]
        x = xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        x = torch.where(flips[:, None, None, None], x.flip(-1), x)
    return x.contiguous()


def normalize(
    x: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None
) -> torch.Tensor:
    """uint8 ``(…, C, H, W)`` → float32 ``(x/255 - mean)/std``; float input is returned as float32 as is.

    ``mean``/``std``: sequences of C numbers, or float32 tensors (C,) on ``x``'s device, which are used as
    they are (a loop that normalises every batch passes these: building them from numbers is a host→device
    copy per call)."""
    if x.dtype != torch.uint8:
        return x.float()
    y = x.float().div_(255.0)
    if mean is None or std is None:
        return y
    c = y.shape[-3]
    if len(mean) != c or len(std) != c:
        raise ValueError(
            f"mean/std must have {c} entries (one per channel), got {len(mean)}/{len(std)}"
        )
    m = torch.as_tensor(mean, dtype=y.dtype, device=y.device).view(c, 1, 1)
    s = torch.as_tensor(std, dtype=y.dtype, device=y.device).view(c, 1, 1)
    return y.sub_(m).div_(s)


# ----------------------------------------------------------------------------------------- per sample


def crop_flip(
    x: torch.Tensor, gen: torch.Generator, pad: int = 4, flip: bool = True, pad_mode: str = "zero"
) -> torch.Tensor:
    """Per-sample version of :func:`batch_crop_flip` for one ``C x H x W`` image (same random order)."""
    return batch_crop_flip(x[None], gen, pad, crop=pad > 0, flip=flip, pad_mode=pad_mode)[0]


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (antialiased when shrinking) of a ``C x H x W`` uint8 image to ``size = (h, w)``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    y = F.interpolate(
        x[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True
    )
    return y[0].round_().clamp_(0, 255).to(torch.uint8)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window (a side shorter than ``size`` is kept whole). Its offset is
    ``round((h - size) / 2)`` with Python's rounding, half to even, as torchvision's ``CenterCrop`` takes
    it, so that an evaluation crop holds the same pixels as the reference pipelines' (an odd margin of
    4k + 3 pixels puts the extra pixel above, not below)."""
    h, w = x.shape[-2:]
    top, left = max(0, round((h - size) / 2)), max(0, round((w - size) / 2))
    return x[..., top : top + size, left : left + size]


def resize_shorter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so that the shorter side is ``size``; the longer side is ``int(size * long / short)``
    (truncated, as torchvision's ``Resize(size)`` computes it)."""
    h, w = x.shape[-2:]
    if h <= w:
        return resize(x, (size, max(1, int(size * w / h))))
    return resize(x, (max(1, int(size * h / w)), size))


def random_resized_crop(
    x: torch.Tensor,
    gen: torch.Generator,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Crop a random area fraction in ``scale`` with aspect ratio in ``ratio`` (log-uniform) and resize
    to ``size x size``; after 10 failed tries, a centre crop of the whole image's admissible aspect."""
    h, w = x.shape[-2:]
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = _rand(gen, 4)
        target = area * (scale[0] + (scale[1] - scale[0]) * float(u[0]))
        ar = math.exp(log_r[0] + (log_r[1] - log_r[0]) * float(u[1]))
        cw, ch = round(math.sqrt(target * ar)), round(math.sqrt(target / ar))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(float(u[2]) * (h - ch + 1))
            left = int(float(u[3]) * (w - cw + 1))
            return resize(x[..., top : top + ch, left : left + cw], (size, size))
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
    return resize(x[..., top : top + ch, left : left + cw], (size, size))


def hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return x.flip(-1) if float(_rand(gen, 1)) < 0.5 else x


def imagenet_train(x: torch.Tensor, gen: torch.Generator, size: int = 224) -> torch.Tensor:
    """Random resized crop to ``size`` + horizontal flip (uint8 out; normalise afterwards)."""
    return hflip(random_resized_crop(x, gen, size), gen)


def imagenet_eval(
    x: torch.Tensor, gen: torch.Generator | None = None, size: int = 224
) -> torch.Tensor:
    """Resize the shorter side to ``size * 8 / 7`` (256 for 224), centre crop ``size``."""
    return center_crop(resize_shorter(x, round(size * 8 / 7)), size)


def mlt_train(x: torch.Tensor, gen: torch.Generator, size: int = 224) -> torch.Tensor:
    """VOC/COCO-MLT recipe: resize to ``size x size`` (aspect not kept), random crop with each side at
    least 0.8 of the image, resized back to ``size``, horizontal flip."""
    x = resize(x, (size, size))
    u = _rand(gen, 4)
    ch = round(size * (0.8 + 0.2 * float(u[0])))
    cw = round(size * (0.8 + 0.2 * float(u[1])))
    top = int(float(u[2]) * (size - ch + 1))
    left = int(float(u[3]) * (size - cw + 1))
    return hflip(resize(x[..., top : top + ch, left : left + cw], (size, size)), gen)


def mlt_eval(x: torch.Tensor, gen: torch.Generator | None = None, size: int = 224) -> torch.Tensor:
    """Resize to ``size x size`` (aspect not kept)."""
    return resize(x, (size, size))


RECIPES = {
    "imagenet": (imagenet_train, imagenet_eval),
    "mlt": (mlt_train, mlt_eval),
}
