"""Test-session setup. On a machine without CUDA, Triton's kernels (the fused LPL loop) run under Triton's
interpreter, on CPU tensors: it reads ``TRITON_INTERPRET`` when Triton is first imported, so it is set here,
before any test imports it. A value already set is kept."""

import os

import torch

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
