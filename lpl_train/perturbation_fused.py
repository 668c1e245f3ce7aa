"""The inner loop of Algorithm 1 as one kernel (``fused_loop=True`` of the LPL losses): Triton on a GPU,
C++ on the CPU.

On a GPU the torch loop of :func:`lpl_train.perturbation.pgd_like_perturbation` launches about ten small
kernels per step, for every step of the loop (⌊(ε + Δε)/α⌋ of them in a captured step, which cannot stop
early): on small networks those launches, not the arithmetic, are LPL's cost. Here the whole loop is one
Triton kernel with one program per class. The classes are independent: class c's step reads only the samples
of class c (they all carry δ_c), so program c keeps δ_c in registers, runs its own K_c steps over its own
rows and writes δ_c to them. A sort of the labels on the device groups the rows; the step counts are read
on the device, so nothing waits for the host and the call can be recorded in a CUDA graph.

On the CPU the same per-class algorithm is a C++ kernel (:mod:`lpl_train._cpu_pgd`, built on first use,
about half a minute once per machine): each class is one thread's work from start to end (so the values do
not depend on the number of threads), in ATen's vector arithmetic, with no tensor made per step. There the
torch loop's cost is its ~11 operator calls per step, each with its own dispatch and allocation.

The values are those of the torch loop up to rounding: the same operations, with the sums (softmax, class
sums, norms) taken in another order, and, in float32, faster elementary functions: on a GPU Triton's fast
exponential, division and square root (a few ulp each), on the CPU ATen's ``exp_u20`` (within 20 ulp);
float64 is rounded as the torch loop rounds it. Where it does not apply (gradients through δ with
``differentiable=True``, half-precision working logits, while ``torch.compile`` traces, a GPU without Triton
or more than :data:`MAX_CLASSES` classes there, a CPU where the C++ kernel cannot be built) the torch loop
runs instead, with the same values. Row weights (the (sample, class) pairs
of probability targets) and rows left out (``keep``) take it as they take the torch loop.

With ``TRITON_INTERPRET=1`` set before Triton is imported, the Triton kernel runs on CPU tensors under
Triton's interpreter (slowly: NumPy on the host) instead of the C++ kernel; the tests run both.
"""

from __future__ import annotations

import functools
import importlib.util

import torch
from torch import Tensor

from . import _cpu_pgd
from .perturbation_checks import _TINY, _compiling

__all__ = ["fused_loop_fallback", "fused_loop_unavailable", "pgd_fused"]

#: Devices on which the torch loop is expected (nothing to warn of): the data-less meta device.
QUIET_DEVICES = ("meta",)

#: Labels a program reads at once while it looks for its rows.
_SCAN = 256

#: Largest number of classes of the Triton kernel (a program holds δ_c, padded to a power of two, in
#: registers; past 8192 the compiled kernel spills kilobytes of them per thread). iNaturalist 2018's 8142
#: classes fit. The C++ kernel has no such limit.
MAX_CLASSES = 1 << 13

#: The C++ kernel's "no row weights".
_EMPTY = torch.empty(0)


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


@functools.cache
def _interpreter_on() -> bool:
    """Whether the Triton kernel runs under Triton's interpreter (``TRITON_INTERPRET=1``): then it, not the
    C++ kernel, takes CPU tensors. Fixed when Triton is imported, so asked once per process (the loss asks
    at every call)."""
    if not _triton_installed():
        return False
    from . import _triton_pgd

    return _triton_pgd.interpreted()


def _on_cpu_kernel(device: torch.device | str) -> bool:
    """Whether tensors on ``device`` take the C++ kernel (the CPU, unless Triton's interpreter takes it)."""
    return torch.device(device).type == "cpu" and not _interpreter_on()


def fused_loop_kernel(device: torch.device | str) -> str:
    """What runs the fused loop on ``device`` when it runs: ``"C++"`` or ``"Triton"``."""
    return "C++" if _on_cpu_kernel(device) else "Triton"


def fused_loop_unavailable(logits: Tensor) -> str | None:
    """Why the fused loop cannot run on these working logits (N, C), or None when it can (on the CPU, the
    first call builds the C++ kernel)."""
    if _compiling():
        return "torch.compile is tracing (the compiled loop fuses the steps itself)"
    if logits.dtype not in (torch.float32, torch.float64):
        return f"it works in float32 or float64; the working logits are {logits.dtype}"
    if logits.dim() != 2:
        return f"it takes logits (N, C), got shape {tuple(logits.shape)}"
    if _on_cpu_kernel(logits.device):
        return _cpu_pgd.unavailable()
    if not _triton_installed():
        return "Triton is not installed (CUDA builds of torch bring it: pip install triton)"
    if logits.device.type not in ("cuda", "cpu"):
        return f"it needs a CUDA device or the CPU; the logits are on {logits.device.type}"
    if logits.shape[1] > MAX_CLASSES:
        return (
            f"its Triton kernel takes C <= {MAX_CLASSES} classes, got shape {tuple(logits.shape)}"
        )
    return None


def fused_loop_fallback(logits: Tensor) -> str | None:
    """Why ``fused_loop=True`` runs the torch loop where a kernel was expected (a GPU without Triton, a CPU
    without a C++ compiler, say), or None: None also on :data:`QUIET_DEVICES` and while ``torch.compile``
    traces, where the torch loop is the documented behaviour."""
    if logits.device.type in QUIET_DEVICES or _compiling():
        return None
    return fused_loop_unavailable(logits)


def _launch_config(n: int, c: int) -> tuple[int, int, int]:
    """``(ROWS, BLOCK_C, num_warps)`` for N rows and C classes: the rows a program reads at once, the padded
    class count and the warps per program. The program of the largest class in the batch reads its rows
    ROWS at a time at every step and is the last to finish, so ROWS is as large as the batch allows (2 to
    32) with at most 4096 values of a block in flight (2·BLOCK_C past C = 2048). A program holds δ_c and its
    step, BLOCK_C values each: the warps grow with BLOCK_C (4 up to 2048 classes, 16 from 8192). Compiled
    for sm_90 by Triton 3.9 (B = 128), the float32 kernel without weights then spills no register up to
    :data:`MAX_CLASSES`; the weighted and float64 variants spill under 1 KB per thread at most."""
    block_c = 1 << max(c - 1, 0).bit_length()
    batch = 1 << max(n - 1, 0).bit_length()
    rows = max(2, min(batch, 32, 4096 // block_c))
    return rows, block_c, min(16, max(4, block_c // 512))


def pgd_fused(
    logits: Tensor,
    target: Tensor,
    sign: Tensor,
    bounds: Tensor,
    steps: Tensor,
    *,
    alpha: float,
    max_steps: int,
    normalize_step: bool = False,
    weight: Tensor | None = None,
    keep: Tensor | None = None,
) -> Tensor:
    """δ per sample (N, C) from one kernel launch; the arguments are those of
    :func:`~lpl_train.perturbation.pgd_like_perturbation` (no gradients). Check
    :func:`fused_loop_unavailable` first."""
    n, c = logits.shape
    if n == 0 or max_steps <= 0:
        return torch.zeros(n, c, dtype=logits.dtype, device=logits.device)
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    dev, dtype = logits.device, logits.dtype
    key = target if keep is None else torch.where(keep, target, c)  # rows not kept: class c, last
    k = steps.detach()
    if k.is_floating_point():  # class c moves at the steps k < K_c
        k = k.ceil().long()
    scale = alpha * sign.detach().to(dtype)  # α·s_c
    if _on_cpu_kernel(dev):  # the C++ kernel groups the rows itself
        return _cpu_pgd.build().pgd_class_loop(
            logits,
            key.long().contiguous(),
            k.long().contiguous(),
            scale.contiguous(),
            bounds.detach().to(dtype).contiguous(),
            _EMPTY if weight is None else weight.detach().to(dtype).contiguous(),
            max_steps,
            _TINY,
            bool(normalize_step),
        )
    out = torch.zeros(n, c, dtype=dtype, device=dev)
    order = torch.sort(key, stable=True).indices  # rows by class, batch order within a class
    rows, block_c, warps = _launch_config(n, c)
    _launch(
        c,
        logits,
        out,
        key.contiguous(),
        order,
        k.to(dev).contiguous(),
        scale.to(dev).contiguous(),
        bounds.detach().to(dev).contiguous(),
        logits if weight is None else weight.detach().to(device=dev, dtype=dtype).contiguous(),
        n,
        c,
        logits.stride(0),
        max_steps,
        _TINY,
        NORMALIZE=bool(normalize_step),
        WEIGHTED=weight is not None,
        ROWS=rows,
        BLOCK_C=block_c,
        SCAN=_SCAN,
        num_warps=warps,
        enable_fp_fusion=False,  # each operation rounded on its own (Triton's default is to change)
    )
    return out


def _launch(programs: int, *args: object, **meta: object) -> None:
    """The kernel's one launch, ``programs`` programs (one per class)."""
    from . import _triton_pgd

    _triton_pgd.kernel[(programs,)](*args, **meta)
