"""The Triton kernel of the fused inner loop (:mod:`lpl_train.perturbation_fused`); imported only where
Triton is installed.

One program per class c runs that class's K_c steps of Algorithm 1 on its own rows: every sample of class c
carries the same δ_c, and the step of class c reads only the samples of class c, so the classes never wait
for one another. The program finds its rows in the batch's rows sorted by class (counting the labels before
its own, ``SCAN`` at a time), keeps δ_c in registers, reads its rows from the logits at every step (``ROWS``
at a time) and stops at its own K_c, read from device memory: no host synchronisation, one launch for the
whole loop.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _class_rows(order_ptr, first, r0, n_c, ROWS: tl.constexpr):
    """Rows ``r0 … r0 + ROWS − 1`` of class c (batch indices, 0 past its last) and which of them exist."""
    r = r0 + tl.arange(0, ROWS)
    in_r = r < n_c
    return tl.load(order_ptr + first + r, mask=in_r, other=0), in_r


def pgd_class_kernel(
    logits_ptr,  # (N, C), row stride ``stride``, column stride 1
    out_ptr,  # (N, C) zeros, contiguous: δ_{y_i} is written to the kept rows
    key_ptr,  # (N,) int64: the class of each row, C for a row not kept
    order_ptr,  # (N,) int64: the rows sorted by ``key`` (batch order within a class)
    steps_ptr,  # (C,) K_c (integers)
    scale_ptr,  # (C,) α·s_c, in the logits' dtype
    bounds_ptr,  # (C,) ε_c
    weight_ptr,  # (N,) the rows' masses w_i, in the logits' dtype (read only with WEIGHTED)
    num_rows,
    num_classes,
    stride,
    max_steps,
    tiny,
    NORMALIZE: tl.constexpr,
    WEIGHTED: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_C: tl.constexpr,
    SCAN: tl.constexpr,
):
    c = tl.program_id(0)
    dtype = logits_ptr.dtype.element_ty
    # where class c's rows lie in ``order``: after the rows of the classes before it
    first = tl.full([], 0, tl.int32)
    n_c = tl.full([], 0, tl.int32)
    for i0 in range(0, num_rows, SCAN):
        i = i0 + tl.arange(0, SCAN)
        key = tl.load(key_ptr + i, mask=i < num_rows, other=num_classes)
        first += tl.sum((key < c).to(tl.int32), axis=0)
        n_c += tl.sum((key == c).to(tl.int32), axis=0)
    k_c = tl.minimum(tl.maximum(tl.load(steps_ptr + c), 0), max_steps)
    scale = tl.load(scale_ptr + c)
    radius = tl.maximum(tl.load(bounds_ptr + c).to(dtype), tiny)
    cols = tl.arange(0, BLOCK_C)
    in_c = cols < num_classes
    onehot = tl.where(cols == c, 1.0, 0.0).to(dtype)
    if WEIGHTED:  # the class mass Σ_{y_i=c} w_i (1 for a mass of 0, as the torch loop takes it)
        mass = tl.full([], 0.0, dtype)
        for r0 in range(0, n_c, ROWS):
            rows, in_r = _class_rows(order_ptr, first, r0, n_c, ROWS)
            mass += tl.sum(tl.load(weight_ptr + rows, mask=in_r, other=0.0), axis=0)
        size = tl.where(mass > 0, mass, 1.0)
    else:
        size = tl.maximum(n_c, 1).to(dtype)  # N_c (an absent class never steps)
    mean_scale = scale / size  # α·s_c / N_c
    delta = tl.zeros([BLOCK_C], dtype=dtype)
    for _ in range(k_c):
        total = tl.zeros([BLOCK_C], dtype=dtype)  # Σ_{y_i=c} (w_i·) softmax(u_i + δ_c)
        for r0 in range(0, n_c, ROWS):
            rows, in_r = _class_rows(order_ptr, first, r0, n_c, ROWS)
            u = tl.load(
                logits_ptr + rows[:, None] * stride + cols[None, :],
                mask=in_r[:, None] & in_c[None, :],
                other=0.0,
            )
            z = tl.where(in_c[None, :], u + delta[None, :], float("-inf"))
            e = tl.exp(z - tl.max(z, axis=1)[:, None])
            p = e / tl.sum(e, axis=1)[:, None]
            if WEIGHTED:  # w_i·p_i
                p = p * tl.load(weight_ptr + rows, mask=in_r, other=0.0)[:, None]
            total += tl.sum(tl.where(in_r[:, None], p, 0.0), axis=0)
        if NORMALIZE:  # δ_c += α·s_c·g/‖g‖, g = class mean of the probabilities − e_c
            g = tl.where(in_c, total / size - onehot, 0.0)
            g_norm = tl.sqrt(tl.sum(g * g, axis=0))
            delta = delta + scale * (g / tl.maximum(g_norm, tiny))
        else:  # δ_c += α·s_c·(class mean of the probabilities − e_c)
            delta = (delta - scale * onehot) + mean_scale * total
        d_norm = tl.sqrt(tl.sum(delta * delta, axis=0))
        delta = delta * (radius / tl.maximum(d_norm, radius))  # projection onto ‖δ_c‖ ≤ ε_c
    block = tl.zeros([ROWS, BLOCK_C], dtype=dtype) + delta[None, :]
    for r0 in range(0, n_c, ROWS):
        rows, in_r = _class_rows(order_ptr, first, r0, n_c, ROWS)
        tl.store(
            out_ptr + rows[:, None] * num_classes + cols[None, :],
            block,
            mask=in_r[:, None] & in_c[None, :],
        )


#: Triton's JIT of the kernel; with ``TRITON_INTERPRET=1`` set before Triton is imported, its interpreter
#: (NumPy on the host, for CPU tensors: the tests run it so)
kernel = triton.jit(pgd_class_kernel)


def interpreted() -> bool:
    """Whether :data:`kernel` runs under Triton's interpreter."""
    return type(kernel).__name__ == "InterpretedFunction"
