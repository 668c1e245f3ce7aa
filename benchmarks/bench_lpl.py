"""Speed of the LPL loss, side by side in one run.

(a) the loss alone, forward + backward, B = 128, C ∈ {10, 100, 1000}, 40 steps: plain cross-entropy,
    the vectorised LPL loss, and a straightforward reference with a Python loop over classes;
(b) one ResNet-32 training step (B = 128, C = 100, SGD) with LPL versus cross-entropy;
(c) one LPL call (forward + backward, B = 128, C ∈ {10, 100, 1000}, fixed and varied bound) against
    its arithmetic floor (the K softmaxes of the inner loop plus the cross-entropy, K = the batch's
    largest K_c) and against the previous implementation of the inner loop, ``reference_pgd`` (a
    static loop of ⌊(ε + Δε)/α⌋ masked per-sample steps); also the inner loop alone (no autograd, as the
    loss runs it) against its K softmaxes alone, the share of each step that is not the softmax, the loss
    with ``fused_loop=True`` (one kernel: C++ on a CPU, Triton on a GPU) where it can run, and
    with ``--compile`` the loss under ``torch.compile`` (its static loop; on a CPU the masked steps past
    the batch's largest K_c skipped in ``torch.cond`` blocks) and, side by side, compiled with every
    step run (as before the blocks, and as on a GPU);
(d) the authors'-code presets' perturbation against their previous implementation;
(e) the inner loop with ignored rows and with probability targets (mixup pairs), no autograd, against the
    per-sample loop that took them before (``reference_pgd_masked``);
(f) the static inner loop (what a captured CUDA graph or torch.compile runs) for the shipped configs'
    settings, every step masked against the first ⌊ε/α⌋ steps unmasked: operations per call and time;
(g) the whole LPL loss (forward + backward) of shipped configs as their captured GPU step runs it,
    counted on the meta device (the static loop, matrix class means, no value read): operations per
    call, and those of the engine's loss-variation measurement (eager, every k-th step) running the
    loss again against reading the step's perturbed logits; and the launches of the same loss with
    ``fused_loop = true`` (its operations plus the kernel's one launch; on a CPU only under Triton's
    interpreter, ``TRITON_INTERPRET=1``: otherwise a CPU runs the C++ kernel). No time (nothing runs on
    meta); on a GPU each operation that is not a view is one kernel. With ``--compile``, also the kernels of the loss
    compiled alone (``train.compile_loss``), as this device compiles it and with every step of its
    static loop run (without a CPU's ``torch.cond`` blocks, the loop a GPU compiles).
(h) with ``--compile``: LPL compiled inside a whole step (a linear head and the loss through one
    ``torch.compile``), where the compiled call's own cost is paid once per step: what LPL adds to the
    step over cross-entropy, against the batch's K softmaxes, beside the loss compiled alone.

The previous implementations are the literal reference in ``lpl_train/perturbation_reference.py``, which
the tests also check the current code against. The LPL losses of (a)-(f) run Algorithm 1 read literally
(``normalize_step=False``, the raw class-mean step), the loop these comparisons were made for; (a) also
times the loss's default (each class step scaled to length α), and (g) the shipped configs' own losses.

Each configuration is timed ``--repeats`` times, the measurements of the compared variants interleaved;
the table gives medians and ratios. On CPU with one thread (``--threads 1``) the times are the thread's
CPU time (``time.thread_time``), which other processes on a busy machine do not inflate. Usage::

    python benchmarks/bench_lpl.py [--quick] [--device cuda] [--only loop] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from lpl_train import perturbation as P
from lpl_train import perturbation_fused as PF
from lpl_train.engine.devices import parse_device
from lpl_train.losses.lpl import LPLLoss
from lpl_train.perturbation_reference import (
    ReferenceLPLLoss,
    loop_reference_loss,
    pipeline_inputs,
    reference_authors_balanced_fixed,
    reference_authors_balanced_varied,
    reference_authors_longtail,
    reference_pgd_masked,
)

ALPHA, EPSILON = 0.01, 0.1  # the paper's smallest grid values: K = 10 steps per class


def _preset_cases(logits, target, step_index, sign) -> dict:
    """name -> (previous, current, with gradients) for the three presets' perturbations."""
    leaf = logits.clone().requires_grad_(True)  # authors_longtail back-propagates through the loop
    lt = dict(alpha=0.2, iterations=50)
    return {
        "authors_balanced_fixed (α 0.005, 20 steps)": (
            lambda: reference_authors_balanced_fixed(logits, target, alpha=0.005, steps=20),
            lambda: P.authors_balanced_fixed_perturbation(logits, target, alpha=0.005, steps=20),
            False,
        ),
        "authors_balanced_varied (α 0.01, 44 iterations)": (
            lambda: reference_authors_balanced_varied(logits, target, alpha=0.01, steps=40),
            lambda: P.authors_balanced_varied_perturbation(logits, target, alpha=0.01, steps=40),
            False,
        ),
        "authors_longtail (α 0.2, 50 iterations, + backward)": (
            lambda: reference_authors_longtail(leaf, target, step_index, sign, **lt),
            lambda: P.authors_longtail_perturbation(leaf, target, step_index, sign, **lt),
            True,
        ),
    }


def bench_presets(device: torch.device, classes: list[int], repeats: int) -> list[dict]:
    """(d) the authors'-code presets' perturbation (B = 128, the presets' defaults), previous vs current;
    ``authors_longtail`` with gradients (forward + backward), as the scripts do."""
    rows = []
    for c in classes:
        g = torch.Generator().manual_seed(c)
        logits = (torch.randn(128, c, generator=g) * 2).to(device)
        target = torch.randint(0, c, (128,), generator=g).to(device)
        step_index = (torch.arange(c) % 50).to(device)
        sign = torch.where(torch.arange(c) < c // 3, -1.0, 1.0).to(device)
        for name, (old, new, grad) in _preset_cases(logits, target, step_index, sign).items():
            with torch.set_grad_enabled(grad):
                assert torch.equal(old(), new()), (c, name)

            def run(fn, grad=grad) -> None:
                with torch.set_grad_enabled(grad):
                    out = fn()
                    if grad:
                        out.sum().backward()

            med = _medians({"previous": old, "current": new}, run, device, repeats)
            rows.append(
                {
                    "C": c,
                    "preset": name,
                    "previous [ms]": 1e3 * med["previous"],
                    "current [ms]": 1e3 * med["current"],
                    "speed-up": med["previous"] / med["current"],
                }
            )
    return rows


def _masked_cases(c: int, device: torch.device) -> dict:
    """name -> (inputs of pgd_like_perturbation, keyword arguments, the rows to compare)."""
    g = torch.Generator().manual_seed(c + 1)
    logits = (torch.randn(128, c, generator=g) * 2).to(device)
    target = torch.randint(0, c, (128,), generator=g).to(device)
    keep = (torch.rand(128, generator=g) > 0.2).to(device)  # about 20% of the rows ignored
    # mixup pairs: each sample is two (sample, class) rows of masses λ and 1 − λ
    partner = torch.randperm(128, generator=g).to(device)
    lam = torch.rand(128, generator=g).to(device)
    pair_logits = torch.cat((logits, logits))
    pair_target = torch.cat((target, target[partner]))
    mass = torch.cat((lam, 1 - lam))
    kw = dict(alpha=ALPHA, epsilon=EPSILON, delta_epsilon=0.2)
    cases = {}
    for name, u, y, extra in (
        ("ignore_index (20% of 128 rows)", logits, torch.where(keep, target, 0), {"keep": keep}),
        ("probability targets (mixup, 256 pairs)", pair_logits, pair_target, {"weight": mass}),
    ):
        with torch.no_grad():
            r = P.single_label_perturbation(u, y, **kw, **extra)
        args = (u, y, r.sign, r.bounds, r.steps)
        cases[name] = (args, dict(alpha=ALPHA, max_steps=P.fixed_step_count(0.3, ALPHA), **extra))
    return cases


def bench_masked(device: torch.device, classes: list[int], calls: int, repeats: int) -> list[dict]:
    """(e) the inner loop with ignored rows and with probability targets (mixup pairs), no autograd,
    Δε = 0.2: the previous per-sample loop (the reference) against the current per-class loop."""
    rows = []
    for c in classes:
        for name, (args, kw) in _masked_cases(c, device).items():
            with torch.no_grad():
                old = reference_pgd_masked(*args, **kw)
                new = P.pgd_like_perturbation(*args, **kw)
            if "keep" in kw:  # kept rows: identical; ignored rows: 0 now
                keep = kw["keep"]
                assert torch.equal(old[keep], new[keep]), (c, name)
                assert not new[~keep].any(), (c, name)
            else:  # the class masses are summed in another order: equal to rounding
                torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-6)
            variants = {
                "previous": lambda args=args, kw=kw: reference_pgd_masked(*args, **kw),
                "current": lambda args=args, kw=kw: P.pgd_like_perturbation(*args, **kw),
            }
            run = _calls_without_grad(calls)
            med = _medians(variants, run, device, repeats, per=calls)
            rows.append(
                {
                    "C": c,
                    "case": name,
                    "previous [ms]": 1e3 * med["previous"],
                    "current [ms]": 1e3 * med["current"],
                    "speed-up": med["previous"] / med["current"],
                }
            )
    return rows


#: Configurations of the shipped LPL configs: Tables I/II fixed and varied, Tables III/IV (index split).
STATIC_CONFIGS = {
    "Tables I/II, fixed (ε 0.1, α 0.01)": dict(
        split="mean", epsilon=0.1, delta_epsilon=0.0, alpha=0.01
    ),
    "Tables I/II, varied (ε 0.1, Δε 0.1, α 0.01)": dict(
        split="mean", epsilon=0.1, delta_epsilon=0.1, alpha=0.01
    ),
    "Tables III/IV (ε 0, Δε 2, α 0.25)": dict(
        split="index", epsilon=0.0, delta_epsilon=2.0, alpha=0.25
    ),
}
#: Operations that only make views or read metadata (no kernel on a GPU).
_VIEW_OPS = {"select", "unsqueeze", "unbind", "t", "transpose", "view", "expand", "slice", "detach"}


class _CountOps(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the aten operations dispatched, and those that are not views."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = self.kernels = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        self.kernels += func.overloadpacket.__name__ not in _VIEW_OPS
        return func(*args, **(kwargs or {}))


def bench_static(device: torch.device, classes: list[int], calls: int, repeats: int) -> list[dict]:
    """(f) the static inner loop, as a captured CUDA graph or torch.compile runs it (``early_stop=False``,
    every row passed with ``keep``, as the loss does with validation off), no autograd, B = 128: every
    step masked (``min_steps=0``) against the first ⌊ε/α⌋ steps unmasked (``min_steps``, what
    :func:`~lpl_train.perturbation.single_label_perturbation` passes); values checked identical first.
    Operations per call (those that are not views launch a kernel each on a GPU) and time."""
    rows = []
    for c in classes:
        g = torch.Generator().manual_seed(c + 2)
        logits = (torch.randn(128, c, generator=g) * 2).to(device)
        target = torch.randint(0, c, (128,), generator=g).to(device)
        keep = torch.ones(128, dtype=torch.bool, device=device)
        rank = torch.randperm(c, generator=g).to(device)
        for name, cfg in STATIC_CONFIGS.items():
            split = dict(rank=rank, head=c // 2) if cfg["split"] == "index" else {}
            kw = dict(
                alpha=cfg["alpha"], epsilon=cfg["epsilon"], delta_epsilon=cfg["delta_epsilon"]
            )
            with torch.no_grad():
                r = P.single_label_perturbation(logits, target, split=cfg["split"], **split, **kw)
            floor = P.moving_step_floor(cfg["epsilon"], cfg["alpha"], logits.dtype)
            for class_mean in ("index", "matmul"):
                args = (logits, target, r.sign, r.bounds, r.steps)
                base = dict(
                    alpha=cfg["alpha"],
                    max_steps=P.fixed_step_count(
                        cfg["epsilon"] + cfg["delta_epsilon"], cfg["alpha"]
                    ),
                    keep=keep,
                    early_stop=False,
                    class_mean=class_mean,
                )
                variants = {
                    "all masked": lambda args=args, base=base: P.pgd_like_perturbation(
                        *args, **base
                    ),
                    "unmasked first": lambda args=args, base=base, floor=floor: (
                        P.pgd_like_perturbation(*args, min_steps=floor, **base)
                    ),
                }
                counts = {}
                with torch.no_grad():
                    values = []
                    for key, fn in variants.items():
                        with _CountOps() as count:
                            values.append(fn())
                        counts[key] = count
                    assert torch.equal(values[0], values[1]), (c, name, class_mean)

                med = _medians(variants, _calls_without_grad(calls), device, repeats, per=calls)
                a, b = counts["all masked"], counts["unmasked first"]
                rows.append(
                    {
                        "C": c,
                        "config": name,
                        "class means": class_mean,
                        "steps (unmasked)": f"{base['max_steps']} ({floor})",
                        "ops, all masked": a.ops,
                        "ops, unmasked first": b.ops,
                        "non-view ops, all masked": a.kernels,
                        "non-view ops, unmasked first": b.kernels,
                        "all masked [ms]": 1e3 * med["all masked"],
                        "unmasked first [ms]": 1e3 * med["unmasked first"],
                        "speed-up": med["all masked"] / med["unmasked first"],
                    }
                )
    return rows


#: Shipped configs whose loss (g) counts: Table IV's varied bound at C = 10 (gpu_check's ResNet-32), Tables
#: I/II fixed and varied, Tables III/IV fixed and varied (index split), Table IX (LA + LPL) at C = 100.
CAPTURED_CONFIGS = (
    "tiv_cifar10_lt100_lpl_varied",  # gpu_check's ResNet-32 settings (C = 10)
    "tii_cifar100_resnet110_lpl_fixed",
    "tii_cifar100_resnet110_lpl_varied",
    "tiii_cifar100_lt100_lpl_fixed",
    "tiii_cifar100_lt100_lpl_varied",
    "tix_cifar100_lt100_la_lpl",
)


def bench_captured_ops(
    names: tuple[str, ...] = CAPTURED_CONFIGS,
    batch: int = 128,
    compiled_on: torch.device | None = None,
) -> list[dict]:
    """(g) Operations of one call of each config's loss, forward and backward, built as a run builds it
    (the data's class count and long-tail counts, without the data) and run on the meta device: there
    no value can be read, so the loss takes the form a CUDA graph records (the static inner loop with
    matrix class means, the checks that read values skipped). With ``compiled_on`` (``--compile``), also
    the kernels of the same call with the loss compiled alone as ``train.compile_loss`` compiles it, on
    that device: those inductor generates (the loop is unrolled: each launched at most once per call;
    on a CPU those in the ``torch.cond`` blocks past the batch's largest K_c are skipped) plus the matrix
    products it leaves to the library (counted in a profile of a second call), and the same with every
    step run (without the blocks: the loop a GPU compiles)."""
    from lpl_train.config import load_config
    from lpl_train.engine.components import _loss_without_data

    rows = []
    for name in names:
        cfg = load_config(name)
        lo = cfg["loss"]
        loss, c = _loss_without_data(cfg)
        loss = loss.to("meta").train()
        logits = torch.empty(batch, c, device="meta", requires_grad=True)
        target = torch.empty(batch, dtype=torch.long, device="meta")
        with _CountOps() as count:
            forward = count.kernels
            value = loss(logits, target)
            forward = count.kernels - forward
            value.backward()
        again, reused = _loss_variation_ops(loss, logits.detach(), target, c)
        fused_ops = _fused_loop_ops(cfg, batch)
        params = lo["params"]
        fused = {}
        if compiled_on is not None:
            fused["kernels, loss compiled"] = _compiled_kernels(cfg, batch, compiled_on)
            # without the CPU's torch.cond blocks: every step of the static loop, as a GPU compiles it
            with _blocks_off():
                fused["kernels, loss compiled, every step"] = _compiled_kernels(
                    cfg, batch, compiled_on
                )
        rows.append(
            {
                "config": name,
                "loss": lo["name"],
                "C": c,
                "settings": ", ".join(
                    f"{k} {params[k]}"
                    for k in ("split", "epsilon", "delta_epsilon", "alpha", "tau")
                    if k in params
                ),
                "ops": count.ops,
                "non-view ops": count.kernels,
                "non-view ops, forward": forward,
                "loss variation, loss run again": again,
                "loss variation, from the step's δ": reused,
                "launches, fused loop": fused_ops,
                **fused,
            }
        )
    return rows


def _fused_loop_ops(cfg: dict, batch: int) -> int | str:
    """Launches of one forward + backward of ``cfg``'s loss with ``fused_loop = true`` (validation off, as
    the captured step runs it): its operations that are not views, plus the kernel's one launch, counted
    on a CUDA device or, on a CPU, under Triton's interpreter (``TRITON_INTERPRET=1``; the interpreter's
    own work inside the launch is not counted). A string that says why where the kernel cannot run."""
    from torch.utils._python_dispatch import _disable_current_modes

    from lpl_train.engine.components import _loss_without_data

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if PF.fused_loop_kernel(device) == "C++":
        return "n/a: a CPU runs the C++ kernel (no launches; counted on a GPU or under TRITON_INTERPRET=1)"
    cfg = {**cfg, "loss": {**cfg["loss"], "params": {**cfg["loss"]["params"], "fused_loop": True}}}
    loss, c = _loss_without_data(cfg)
    loss = loss.to(device).train()
    loss.validate = False
    why = PF.fused_loop_unavailable(torch.zeros(1, c, device=device))
    if why is not None:
        return f"n/a: {why}"
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(batch, c, generator=g) * 2).to(device).requires_grad_()
    target = torch.randint(0, c, (batch,), generator=g).to(device)
    launches, launch = [], PF._launch

    def counted(*args, **kwargs):
        launches.append(1)
        with _disable_current_modes():
            return launch(*args, **kwargs)

    PF._launch = counted
    try:
        with _CountOps() as count:
            loss(logits, target).backward()
    finally:
        PF._launch = launch
    return count.kernels + len(launches)


def _compiled_kernels(cfg: dict, batch: int, device: torch.device) -> int:
    """Kernels of one forward + backward of ``cfg``'s loss compiled as ``train.compile_loss`` compiles it
    (the engine's own ``_compiled_loss``), on ``device``: generated by inductor, plus the library's matrix
    products."""
    import torch._inductor.metrics as metrics
    from torch.profiler import profile

    from lpl_train.engine.components import _loss_without_data
    from lpl_train.engine.step import _compiled_loss, _perturbed_fast_path

    loss, c = _loss_without_data(cfg)
    loss = loss.to(device).train()
    loss.validate = False  # as the engine sets it for the captured step
    fn = _compiled_loss(_perturbed_fast_path(loss) or loss)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, c, generator=g).to(device).requires_grad_()
    target = torch.randint(0, c, (batch,), generator=g).to(device)

    def call() -> None:
        out = fn(logits, target)
        (out[0] if isinstance(out, tuple) else out).backward()

    metrics.reset()
    call()  # compiles forward and backward
    generated = metrics.generated_kernel_count
    with profile() as prof:
        call()
    library = sum(e.name in ("aten::mm", "aten::addmm", "aten::bmm") for e in prof.events())
    return generated + library


def _loss_variation_ops(
    loss: torch.nn.Module, logits: torch.Tensor, target: torch.Tensor, c: int
) -> tuple[int, int]:
    """Non-view operations of one loss-variation measurement of the training engine (every
    ``train.loss_variation_every``-th step, eager, after the captured step): running the loss again
    (``LossVariation.update_with``, what it did before) against using the perturbed logits the step's
    loss returned (``forward_with_perturbed``)."""
    from lpl_train.engine.step import _LossVariation

    lv = _LossVariation(loss, c, multi_label=False)
    perturbed = loss.forward_with_perturbed(logits, target)[1]
    counts = []
    for given in (None, perturbed):
        with _CountOps() as count:
            lv.update(logits, target, None, torch.nn.Identity(), given)
        counts.append(count.kernels)
    return counts[0], counts[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(device: torch.device) -> Callable[[], float]:
    """The thread's CPU time on CPU with one thread (unaffected by other processes), else wall time."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time
    return time.perf_counter


def _time(fn: Callable[[], None], device: torch.device) -> float:
    clock = _clock(device)
    _sync(device)
    t0 = clock()
    fn()
    _sync(device)
    return clock() - t0


def _interleaved_times(
    variants: dict[str, Callable], run: Callable, device: torch.device, repeats: int, per: int = 1
) -> dict[str, list[float]]:
    """Each variant run once to warm up, then ``run(fn)`` timed ``repeats`` times per variant, the
    variants interleaved; the times divided by ``per`` (the calls in one run)."""
    for fn in variants.values():
        run(fn)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(_time(lambda fn=fn: run(fn), device) / per)
    return times


def _medians(
    variants: dict[str, Callable], run: Callable, device: torch.device, repeats: int, per: int = 1
) -> dict[str, float]:
    """The median of each variant's :func:`_interleaved_times`."""
    times = _interleaved_times(variants, run, device, repeats, per)
    return {k: statistics.median(v) for k, v in times.items()}


def _calls_without_grad(calls: int) -> Callable:
    """``run(fn)``: ``calls`` calls of ``fn`` without autograd."""

    def run(fn: Callable) -> None:
        with torch.no_grad():
            for _ in range(calls):
                fn()

    return run


def _value_and_grad(fn: Callable, logits: torch.Tensor, target: torch.Tensor) -> tuple:
    """``fn(u, target)`` and its gradient with respect to ``u``, a leaf copy of ``logits``."""
    u = logits.clone().requires_grad_(True)
    value = fn(u, target)
    value.backward()
    return value.detach(), u.grad


@contextlib.contextmanager
def _blocks_off() -> Iterator[None]:
    """The compiled loop without its ``torch.cond`` blocks: every step run (the static loop as a GPU runs
    it). Dynamo guards on the function, so a loss compiled inside keeps its own compiled entry."""
    real = P._skip_finished
    P._skip_finished = lambda *args: False
    try:
        yield
    finally:
        P._skip_finished = real


def bench_inner_loop(
    device: torch.device, classes: list[int], calls: int, repeats: int, compiled: bool = False
) -> list[dict]:
    """(c) one LPL call, forward + backward, B = 128: floor, previous and current inner loop (and, with
    ``compiled``, the loss under ``torch.compile(fullgraph=True)``: its static loop of ⌊(ε + Δε)/α⌋
    masked steps)."""
    rows = []
    for c in classes:
        for delta_epsilon in (0.0, 0.2):
            g = torch.Generator().manual_seed(c)
            logits = (torch.randn(calls, 128, c, generator=g) * 2).to(device)
            target = torch.randint(0, c, (calls, 128), generator=g).to(device)
            kw = dict(
                alpha=ALPHA, epsilon=EPSILON, delta_epsilon=delta_epsilon, normalize_step=False
            )
            new, old = LPLLoss(c, **kw), ReferenceLPLLoss(c, **kw)
            k_batch, loop_inputs = [], []
            for i in range(calls):
                sign, bounds, steps, max_steps = pipeline_inputs(
                    logits[i],
                    target[i],
                    alpha=new.alpha,
                    epsilon=new.epsilon,
                    delta_epsilon=new.delta_epsilon,
                    split=new.split,
                    tau=new.tau,
                )
                k_batch.append(int(steps[target[i]].max()))
                loop_inputs.append((sign, bounds, steps, max_steps))
                # the current loss gives exactly the previous one's value and gradient
                (v_old, g_old), (v_new, g_new) = (
                    _value_and_grad(fn, logits[i], target[i]) for fn in (old, new)
                )
                assert torch.equal(v_old, v_new), (c, delta_epsilon, i)
                assert torch.equal(g_old, g_new), (c, delta_epsilon, i)

            def floor(u, y, i, k_batch=k_batch):
                with torch.no_grad():
                    for _ in range(k_batch[i]):
                        torch.softmax(u, dim=1)
                return F.cross_entropy(u, y)

            def softmaxes(u, y, i, k_batch=k_batch):
                with torch.no_grad():
                    for _ in range(k_batch[i]):
                        torch.softmax(u, dim=1)

            def loop(u, y, i, inputs=loop_inputs):
                sign, bounds, steps, max_steps = inputs[i]
                with torch.no_grad():
                    P.pgd_like_perturbation(
                        u, y, sign, bounds, steps, alpha=ALPHA, max_steps=max_steps
                    )

            variants = {
                "floor": floor,
                "previous": lambda u, y, i, old=old: old(u, y),
                "current": lambda u, y, i, new=new: new(u, y),
                "softmaxes": softmaxes,  # the K softmaxes alone, no autograd
                "loop": loop,  # the inner loop alone (K softmaxes and the rest of each step)
            }
            fused = None
            if PF.fused_loop_unavailable(logits[0]) is None:  # the fused loop: one kernel
                fused = LPLLoss(c, fused_loop=True, **kw)
                for i in range(calls):  # it agrees with the default loss to rounding
                    v_new, g_new = _value_and_grad(new, logits[i], target[i])
                    v_fused, g_fused = _value_and_grad(fused, logits[i], target[i])
                    torch.testing.assert_close(v_fused, v_new, rtol=1e-5, atol=1e-6)
                    torch.testing.assert_close(g_fused, g_new, rtol=1e-5, atol=1e-6)
                variants["fused loop"] = lambda u, y, i, fused=fused: fused(u, y)
            if compiled:
                torch._dynamo.reset()  # two entries per configuration: stay under the limit
                fast = torch.compile(new, fullgraph=True)
                # the same loss compiled without skipping the blocks past the batch's largest K_c
                # (every one of the ⌊(ε + Δε)/α⌋ steps, as before the blocks; as on a GPU)
                every = torch.compile(LPLLoss(c, **kw), fullgraph=True)

                def every_step(u, y, i, every=every):
                    with _blocks_off():
                        return every(u, y)

                for i in range(calls):  # the compiled losses agree with the eager one
                    v_new, g_new = _value_and_grad(new, logits[i], target[i])
                    for fn in (fast, functools.partial(every_step, i=i)):
                        v_fast, g_fast = _value_and_grad(fn, logits[i], target[i])
                        torch.testing.assert_close(v_fast, v_new)
                        torch.testing.assert_close(g_fast, g_new)
                variants["compiled"] = lambda u, y, i, fast=fast: fast(u, y)
                variants["compiled, every step"] = every_step

            def run(fn: Callable, logits=logits, target=target) -> None:
                for i in range(calls):
                    u = logits[i].clone().requires_grad_(True)
                    out = fn(u, target[i], i)
                    if out is not None:
                        out.backward()

            med = _medians(variants, run, device, repeats, per=calls)
            rows.append(
                {
                    "C": c,
                    "Δε": delta_epsilon,
                    "loop length before": max_steps,
                    "batch K (mean)": sum(k_batch) / calls,
                    "floor [ms]": 1e3 * med["floor"],
                    "previous [ms]": 1e3 * med["previous"],
                    "current [ms]": 1e3 * med["current"],
                    "previous / floor": med["previous"] / med["floor"],
                    "current / floor": med["current"] / med["floor"],
                    "speed-up": med["previous"] / med["current"],
                    "loop alone [ms]": 1e3 * med["loop"],
                    "loop / its softmaxes": med["loop"] / med["softmaxes"],
                    **(
                        {
                            f"fused loop ({PF.fused_loop_kernel(device)}) [ms]": 1e3
                            * med["fused loop"],
                            "fused / floor": med["fused loop"] / med["floor"],
                        }
                        if fused is not None
                        else {}
                    ),
                    **(
                        {
                            "compiled [ms]": 1e3 * med["compiled"],
                            "compiled / floor": med["compiled"] / med["floor"],
                            "compiled, every step [ms]": 1e3 * med["compiled, every step"],
                            "every step / compiled": med["compiled, every step"] / med["compiled"],
                        }
                        if compiled
                        else {}
                    ),
                }
            )
    return rows


def bench_in_step(device: torch.device, classes: list[int], calls: int, repeats: int) -> list[dict]:
    """(h) LPL compiled inside a whole step, where the compiled call's own cost (guards, wrappers, the
    autograd function) is paid once per step rather than once for the loss: a linear head (64 → C,
    B = 128) and its loss through one ``torch.compile(fullgraph=True)``, forward and backward, with
    cross-entropy and with LPL; the difference is what the perturbation adds to a compiled step, set
    against its floor, the batch's K softmaxes (eager, as in (c)). Beside it the same with the loss
    compiled alone (``train.compile_loss``) after an eager head."""
    return [
        _in_step_row(device, c, delta_epsilon, calls, repeats)
        for c in classes
        for delta_epsilon in (0.0, 0.2)
    ]


def _in_step_row(
    device: torch.device, c: int, delta_epsilon: float, calls: int, repeats: int
) -> dict:
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(c)
    x = torch.randn(calls, 128, 64, generator=g).to(device)
    target = torch.randint(0, c, (calls, 128), generator=g).to(device)
    head = torch.nn.Linear(64, c)
    # logits of std 2, as the random logits of (c) (a fresh head's are near 0)
    with torch.no_grad():
        head.weight.normal_(0.0, 2.0 / 8.0, generator=g)
        head.bias.zero_()
    head = head.to(device)
    kw = dict(alpha=ALPHA, epsilon=EPSILON, delta_epsilon=delta_epsilon, normalize_step=False)
    lpl = LPLLoss(c, **kw)
    alone = torch.compile(LPLLoss(c, **kw), fullgraph=True, dynamic=False)

    def whole(loss: Callable) -> Callable:
        return torch.compile(lambda u, y: loss(head(u), y), fullgraph=True, dynamic=False)

    steps = {
        "CE, whole step compiled": whole(torch.nn.CrossEntropyLoss()),
        "LPL, whole step compiled": whole(lpl),
        "LPL compiled alone": lambda u, y: alone(head(u), y),
        "CE, eager": lambda u, y: F.cross_entropy(head(u), y),
    }
    k_batch, logits = [], []
    with torch.no_grad():
        for i in range(calls):  # the compiled steps agree with the eager loss; K of each batch
            u = head(x[i])
            eager = lpl(u, target[i])
            for name in ("LPL, whole step compiled", "LPL compiled alone"):
                torch.testing.assert_close(steps[name](x[i], target[i]), eager)
            _, _, k, _ = pipeline_inputs(
                u, target[i], alpha=ALPHA, epsilon=EPSILON, delta_epsilon=delta_epsilon,
                split="mean", tau=None,
            )  # fmt: skip
            k_batch.append(int(k[target[i]].max()))
            logits.append(u)

    def softmaxes(i: int) -> None:
        with torch.no_grad():
            for _ in range(k_batch[i]):
                torch.softmax(logits[i], dim=1)

    variants: dict[str, Callable] = {
        name: lambda i, fn=fn: fn(x[i], target[i]) for name, fn in steps.items()
    }
    variants["K softmaxes"] = softmaxes

    def run(fn: Callable) -> None:
        for i in range(calls):
            out = fn(i)
            if out is not None:
                head.zero_grad(set_to_none=True)
                out.backward()

    med = _medians(variants, run, device, repeats, per=calls)
    in_step = med["LPL, whole step compiled"] - med["CE, whole step compiled"]
    alone_added = med["LPL compiled alone"] - med["CE, eager"]
    return {
        "C": c,
        "Δε": delta_epsilon,
        "batch K (mean)": sum(k_batch) / calls,
        "K softmaxes [ms]": 1e3 * med["K softmaxes"],
        "CE step, compiled [ms]": 1e3 * med["CE, whole step compiled"],
        "LPL step, compiled [ms]": 1e3 * med["LPL, whole step compiled"],
        "added in the step / K softmaxes": in_step / med["K softmaxes"],
        "compiled alone: added / K softmaxes": alone_added / med["K softmaxes"],
    }


def bench_loss(
    device: torch.device, classes: list[int], steps: int, repeats: int, compiled: bool = False
) -> list[dict]:
    rows = []
    for c in classes:
        g = torch.Generator().manual_seed(c)
        logits = (torch.randn(steps, 128, c, generator=g) * 2).to(device)
        target = torch.randint(0, c, (steps, 128), generator=g).to(device)
        lpl = LPLLoss(c, alpha=ALPHA, epsilon=EPSILON, normalize_step=False)
        # sanity: the two LPL implementations give the same loss on one batch
        a = float(lpl(logits[0], target[0]))
        loop_loss = functools.partial(loop_reference_loss, alpha=ALPHA, epsilon=EPSILON)
        b = float(loop_loss(logits[0], target[0]))
        assert abs(a - b) < 1e-4 * max(1.0, abs(a)), (c, a, b)
        variants: dict[str, Callable] = {
            "cross-entropy": lambda u, y: F.cross_entropy(u, y),
            "LPL (vectorised)": lpl,
            "LPL (per-class loop)": loop_loss,
            # the loss's default: each class step scaled to length α
            "LPL default (step-normalised)": LPLLoss(c, alpha=ALPHA, epsilon=EPSILON),
        }
        if compiled:
            variants["LPL (torch.compile)"] = torch.compile(
                LPLLoss(c, alpha=ALPHA, epsilon=EPSILON, normalize_step=False, validate=False),
                fullgraph=True,
            )

        def run(fn: Callable, logits=logits, target=target) -> None:
            for i in range(steps):
                u = logits[i].clone().requires_grad_(True)
                fn(u, target[i]).backward()

        med = _medians(variants, run, device, repeats)
        rows.append(
            {
                "C": c,
                **{f"{k} [ms / {steps} steps]": 1e3 * v for k, v in med.items()},
                "LPL / CE": med["LPL (vectorised)"] / med["cross-entropy"],
                "loop / LPL (speed-up)": med["LPL (per-class loop)"] / med["LPL (vectorised)"],
                "normalised / raw step": med["LPL default (step-normalised)"]
                / med["LPL (vectorised)"],
                **(
                    {"compiled LPL / CE": med["LPL (torch.compile)"] / med["cross-entropy"]}
                    if compiled
                    else {}
                ),
            }
        )
    return rows


def bench_resnet(
    device: torch.device, steps: int, repeats: int, compiled: bool = False
) -> dict | None:
    try:
        from lpl_train.models import build_model
    except ImportError as err:  # the models package is not there
        print(f"(b) skipped: {err}")
        return None
    torch.manual_seed(0)
    model = build_model("resnet32", 100).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 100, (128,), generator=g).to(device)
    losses = {
        "cross-entropy": torch.nn.CrossEntropyLoss(),
        "LPL": LPLLoss(100, alpha=ALPHA, epsilon=EPSILON, normalize_step=False),
    }
    if compiled:
        losses["LPL compiled"] = torch.compile(
            LPLLoss(100, alpha=ALPHA, epsilon=EPSILON, normalize_step=False, validate=False),
            fullgraph=True,
        )

    def run(loss_fn) -> None:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()

    times = _interleaved_times(losses, run, device, repeats, per=steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "CE [ms / step]": 1e3 * med["cross-entropy"],
        "LPL [ms / step]": 1e3 * med["LPL"],
        "overhead [%]": 100 * (med["LPL"] / med["cross-entropy"] - 1),
    }
    if compiled:
        out["compiled LPL [ms / step]"] = 1e3 * med["LPL compiled"]
        out["compiled overhead [%]"] = 100 * (med["LPL compiled"] / med["cross-entropy"] - 1)
    out.update({f"all {k} [ms]": [1e3 * t for t in v] for k, v in times.items()})
    return out


def bench_compile(device: torch.device) -> str:
    """Check that the vectorised loss compiles as one graph and gives the eager values."""
    loss = LPLLoss(
        100, alpha=ALPHA, epsilon=EPSILON, normalize_step=False, delta_epsilon=0.2, validate=False
    )
    try:
        compiled = torch.compile(loss, fullgraph=True)
        g = torch.Generator().manual_seed(3)
        u = torch.randn(128, 100, generator=g).to(device)
        y = torch.randint(0, 100, (128,), generator=g).to(device)
        diff = abs(float(compiled(u, y)) - float(loss(u, y)))
        return f"torch.compile(fullgraph=True): ok, |compiled - eager| = {diff:.2e}"
    except Exception as err:  # report, do not hide
        return f"torch.compile(fullgraph=True): FAILED: {type(err).__name__}: {err}"


def _table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys)
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and ResNet steps")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also time the loss under torch.compile(fullgraph=True)",
    )
    ap.add_argument("--json", default=None, help="write the results to this file")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    ap.add_argument(
        "--only",
        choices=("loss", "resnet", "loop", "presets", "masked", "static", "captured", "instep"),
        action="append",
        default=None,
        help="run only these parts: loss (a), resnet (b), loop (c), presets (d), masked (e), static (f), "
        "captured (g), instep (h, with --compile); "
        "repeatable (default: all)",
    )
    args = ap.parse_args(argv)
    for flag, value in (("--repeats", args.repeats), ("--threads", args.threads)):
        if value is not None and value < 1:  # 0 is refused, not taken for the default
            ap.error(f"{flag} must be at least 1, got {value}")
    try:
        parse_device(args.device)
    except ValueError as exc:
        ap.error(f"--device {exc}")
    parts = set(
        args.only or ("loss", "resnet", "loop", "presets", "masked", "static", "captured", "instep")
    )
    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 7)
    if args.compile:
        # every section compiles LPLLoss.forward again for each C and setting, one code object past
        # dynamo's default of 8 recompilations (a hard error with fullgraph=True); they are not timed
        import torch._dynamo.config as dynamo

        dynamo.recompile_limit = 256
    desc = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu"
    )
    print(
        f"device: {device} ({desc}), torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {repeats}"
    )
    clock = "thread CPU time" if _clock(device) is time.thread_time else "wall time"
    print(f"times: {clock}")
    rows = res = loop = None
    if "loss" in parts:
        rows = bench_loss(device, [10, 100, 1000], steps=40, repeats=repeats, compiled=args.compile)
        print("\n(a) loss alone, forward + backward, B = 128, 40 steps, medians\n")
        print(_table(rows))
    if "resnet" in parts:
        res = bench_resnet(
            device, steps=3 if args.quick else 5, repeats=repeats, compiled=args.compile
        )
        if res is not None:
            print("\n(b) ResNet-32 training step, B = 128, C = 100, medians\n")
            print(_table([{k: v for k, v in res.items() if not k.startswith("all")}]))
    if "loop" in parts:
        loop = bench_inner_loop(
            device,
            [10, 100, 1000],
            calls=10 if args.quick else 40,
            repeats=repeats,
            compiled=args.compile,
        )
        print(
            "\n(c) one LPL call (forward + backward, B = 128, α = 0.01, ε = 0.1, mean split) against "
            "its floor\n    (K softmaxes + cross-entropy) and the previous inner loop; the inner loop "
            "alone (no autograd)\n    against its K softmaxes alone; medians per call\n"
        )
        print(_table(loop))
    presets = None
    if "presets" in parts:
        presets = bench_presets(device, [100, 1000], repeats=repeats)
        print("\n(d) the authors'-code presets' perturbation, B = 128, medians per call\n")
        print(_table(presets))
    masked = None
    if "masked" in parts:
        masked = bench_masked(device, [100, 1000], calls=10 if args.quick else 40, repeats=repeats)
        print(
            "\n(e) the inner loop with ignored rows and with probability targets, no autograd, B = 128, "
            "Δε = 0.2,\n    medians per call\n"
        )
        print(_table(masked))
    static = None
    if "static" in parts:
        static = bench_static(device, [10, 100], calls=10 if args.quick else 40, repeats=repeats)
        print(
            "\n(f) the static inner loop (as captured or compiled; every row passed with keep), no "
            "autograd, B = 128:\n    every step masked against the first ⌊ε/α⌋ steps unmasked; "
            "operations and medians per call\n"
        )
        print(_table(static))
    captured = None
    if "captured" in parts:
        captured = bench_captured_ops(compiled_on=device if args.compile else None)
        print(
            "\n(g) the whole loss (forward + backward) as the captured GPU step runs it, counted on the "
            "meta device,\n    B = 128: operations per call (those that are not views: one kernel each "
            "on a GPU)\n"
        )
        print(_table(captured))
    in_step = None
    if "instep" in parts and args.compile:
        in_step = bench_in_step(
            device, [10, 100, 1000], calls=10 if args.quick else 40, repeats=repeats
        )
        print(
            "\n(h) LPL in a compiled step (a linear head and the loss, forward + backward, B = 128, "
            "α = 0.01, ε = 0.1):\n    what LPL adds over cross-entropy, against the batch's K "
            "softmaxes; medians per step\n"
        )
        print(_table(in_step))
    elif "instep" in parts and args.only:
        print("\n(h) skipped: it times compiled steps; add --compile")
    out = {
        "device": str(device),
        "device_name": desc,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "clock": clock,
        "repeats": repeats,
        "loss": rows,
        "resnet32": res,
        "inner_loop": loop,
        "presets": presets,
        "masked": masked,
        "static": static,
        "captured": captured,
        "in_step": in_step,
    }
    if args.compile:
        out["compile"] = bench_compile(device)
        print("\n" + out["compile"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
