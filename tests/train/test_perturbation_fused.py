"""The fused inner loop (``fused_loop=True``: one Triton kernel on a GPU, one C++ kernel on the CPU, one
program or thread per class) against the literal per-sample loop of Algorithm 1
(:func:`~lpl_train.perturbation_reference.reference_pgd`) and the default loop, to rounding: the kernels
take their sums in another order.

The tests that take the ``kernel`` fixture run twice: with the C++ kernel (built on first use: a C++
compiler is needed, and a machine that has one and cannot build it fails them) and with the Triton kernel on
CPU tensors under Triton's interpreter (``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` without CUDA;
skipped where Triton is not installed). The interpreter computes exactly where a GPU runs fast float32
operations, so the CUDA check,
``tests/train/test_lpl_loss.py::test_cuda_fused_loop_matches_the_torch_loop``, allows more. The compiled
Triton kernel is checked here too, through Triton's own compiler, which needs no GPU.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F

from lpl_train import _cpu_pgd as CP
from lpl_train import perturbation as P
from lpl_train import perturbation_fused as PF
from lpl_train.losses import LALPLLoss, LPLLoss, build_loss
from lpl_train.perturbation_reference import pipeline_inputs, reference_pgd

HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CXX = shutil.which(os.environ.get("CXX", "c++")) is not None


@pytest.fixture(params=["C++", "Triton"])
def kernel(request, monkeypatch):
    """The kernel CPU tensors take in the test: ``"C++"`` or ``"Triton"`` (under the interpreter)."""
    if request.param == "Triton":
        if not HAS_TRITON or not PF._interpreter_on():
            pytest.skip(
                "the Triton kernel takes CPU tensors only under its interpreter (TRITON_INTERPRET=1)"
            )
    else:
        if not HAS_CXX:
            pytest.skip("no C++ compiler to build the C++ kernel")
        monkeypatch.setattr(PF, "_interpreter_on", lambda: False)
        assert PF.fused_loop_unavailable(torch.zeros(1, 2)) is None  # built, or the test fails here
    assert PF.fused_loop_kernel("cpu") == request.param
    return request.param


TOL = {torch.float64: 1e-12, torch.float32: 2e-6}


def _batch(n, c, seed, dtype, scale=2.0, prior=None):
    g = torch.Generator().manual_seed(seed)
    u = (torch.randn(n, c, generator=g, dtype=torch.float64) * scale).to(dtype)
    if prior is None:
        y = torch.randint(0, c, (n,), generator=g)
    else:  # long-tailed labels: class 0 holds most rows (several of the kernel's row blocks)
        y = torch.multinomial(torch.tensor(prior, dtype=torch.float64), n, True, generator=g)
    return u, y


def _spy(monkeypatch):
    """Count the kernel's calls (through the name pgd_like_perturbation calls)."""
    calls = []
    real = P.pgd_fused

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(P, "pgd_fused", spy)
    return calls


CASES = [  # n, c, epsilon, delta_epsilon, alpha, split, prior
    (128, 10, 0.1, 0.2, 0.01, "mean", None),
    (96, 7, 0.3, 0.0, 0.02, "mean", None),  # C not a power of two, a fixed bound
    (64, 100, 0.1, 0.2, 0.01, "mean", None),  # most classes absent, one row for many
    (200, 5, 1.5, 1.0, 0.25, "index", [0.8, 0.1, 0.05, 0.03, 0.02]),  # class 0: ~160 rows
    (40, 300, 0.1, 0.1, 0.02, "mean", None),  # a block of 512 classes, 8 rows at a time
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("normalize_step", [False, True])
@pytest.mark.parametrize(
    "case", CASES, ids=["c10-varied", "c7-fixed", "c100-sparse", "c5-lt-index", "c300"]
)
def test_fused_loop_matches_the_per_sample_loop(case, normalize_step, dtype, kernel):
    n, c, eps, de, alpha, split, prior = case
    u, y = _batch(n, c, seed=n + c, dtype=dtype, prior=prior)
    kw = {"split": split, "head": 2} if split == "index" else {"split": split}
    if split == "index":
        kw["rank"] = torch.arange(c)
    sign, bounds, steps, max_steps = pipeline_inputs(
        u, y, alpha=alpha, epsilon=eps, delta_epsilon=de, **kw
    )
    assert int(steps.max()) > 0 and (sign != 0).sum() >= 2  # the loop has work to do
    ref = reference_pgd(
        u, y, sign, bounds, steps, alpha=alpha, max_steps=max_steps, normalize_step=normalize_step
    )
    got = PF.pgd_fused(
        u, y, sign, bounds, steps, alpha=alpha, max_steps=max_steps, normalize_step=normalize_step
    )
    assert got.dtype == dtype and got.shape == (n, c)
    torch.testing.assert_close(got, ref, rtol=0, atol=TOL[dtype])
    assert float(ref.abs().max()) > 0.05  # δ moved
    # every sample of a class carries its class's δ
    for k in y.unique():
        rows = got[y == k]
        assert torch.equal(rows, rows[:1].expand_as(rows))


def test_fused_loop_leaves_rows_not_kept_at_zero_and_reads_no_other_row(kernel):
    u, y = _batch(80, 6, seed=3, dtype=torch.float64)
    keep = torch.rand(80, generator=torch.Generator().manual_seed(1)) > 0.3
    kw = dict(alpha=0.01, epsilon=0.1, delta_epsilon=0.2, split="mean")
    want = P.single_label_perturbation(u, y, keep=keep, **kw)
    got = P.single_label_perturbation(u, y, keep=keep, fused=True, **kw)
    assert torch.equal(got.delta[~keep], torch.zeros_like(got.delta[~keep]))
    torch.testing.assert_close(got.delta, want.delta, rtol=0, atol=1e-12)
    # the kept rows alone give the same δ: the rows left out enter no class
    alone = PF.pgd_fused(
        u[keep], y[keep], want.sign, want.bounds, want.steps, alpha=0.01, max_steps=30
    )
    torch.testing.assert_close(got.delta[keep], alone, rtol=0, atol=1e-12)
    # no row kept, an empty batch, no step: δ = 0
    none = torch.zeros(80, dtype=torch.bool)
    zero = PF.pgd_fused(
        u, y, want.sign, want.bounds, want.steps, alpha=0.01, max_steps=30, keep=none
    )
    assert torch.equal(zero, torch.zeros_like(u))
    empty = PF.pgd_fused(u[:0], y[:0], want.sign, want.bounds, want.steps, alpha=0.01, max_steps=30)
    assert empty.shape == (0, 6)
    still = PF.pgd_fused(u, y, want.sign, want.bounds, want.steps, alpha=0.01, max_steps=0)
    assert torch.equal(still, torch.zeros_like(u))


@pytest.mark.parametrize("normalize_step", [False, True])
def test_fused_loop_weights_rows_as_the_torch_loop_does(normalize_step, kernel):
    """Row masses (probability targets' pairs): each row's softmax counts with its mass, the class mean
    divides by the class mass; rows of mass 0 follow their class without moving it. A class of mass 0
    gets sign 0 from the statistics and stays at δ = 0; with a sign given, it moves by −α·s·e_c per step
    (its class sums are 0, its divisor 1) in both loops."""
    u, y = _batch(90, 8, seed=4, dtype=torch.float64)
    g = torch.Generator().manual_seed(6)
    w = torch.rand(90, generator=g, dtype=torch.float64)
    w[torch.rand(90, generator=g) < 0.2] = 0.0
    w[y == 3] = 0.0  # a class of mass 0
    kw = dict(alpha=0.01, epsilon=0.1, delta_epsilon=0.2, normalize_step=normalize_step)
    want = P.single_label_perturbation(u, y, weight=w, **kw)
    got = P.single_label_perturbation(u, y, weight=w, fused=True, **kw)
    torch.testing.assert_close(got.delta, want.delta, rtol=0, atol=1e-12)
    assert float(got.delta[w > 0].abs().max()) > 0.05
    assert torch.equal(got.delta[y == 3], torch.zeros_like(got.delta[y == 3]))
    # masses of 1 give the unweighted loop
    ones = P.single_label_perturbation(u, y, weight=torch.ones_like(w), fused=True, **kw)
    plain = P.single_label_perturbation(u, y, fused=True, **kw)
    torch.testing.assert_close(ones.delta, plain.delta, rtol=0, atol=1e-15)
    # a class of mass 0 with a sign: the step's constant part alone, as the torch loop takes it
    sign = torch.zeros(8, dtype=torch.float64)
    sign[3] = 1.0
    bounds, steps = torch.full((8,), 0.5, dtype=torch.float64), torch.full((8,), 5)
    loop = dict(alpha=0.05, max_steps=5, weight=w, normalize_step=normalize_step)
    want = P.pgd_like_perturbation(u, y, sign, bounds, steps, **loop)
    got = P.pgd_like_perturbation(u, y, sign, bounds, steps, fused=True, **loop)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert float(got[y == 3][:, 3].max()) == pytest.approx(-0.25)


def test_fused_loop_caps_and_rounds_step_counts_as_the_torch_loop_does(kernel):
    u, y = _batch(60, 4, seed=5, dtype=torch.float64)
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    bounds = torch.tensor([0.3, 0.2, 0.05, 0.4], dtype=torch.float64)
    for steps in (
        torch.tensor([40, 3, 0, 25]),
        torch.tensor([2.5, 3.0, 0.2, 7.9], dtype=torch.float64),
    ):
        for max_steps in (30, 5):
            kw = dict(alpha=0.02, max_steps=max_steps)
            want = P.pgd_like_perturbation(u, y, sign, bounds, steps, **kw)
            got = PF.pgd_fused(u, y, sign, bounds, steps, **kw)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


_COMPILE = """
import json
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from lpl_train import _triton_pgd
from lpl_train.perturbation_fused import MAX_CLASSES, _launch_config

assert type(_triton_pgd.kernel).__name__ == "JITFunction"
variants = [(90, c, True, False, "fp32") for c in (2, 10, 1000, MAX_CLASSES)]  # the shapes of each C
variants += [(90, 100, norm, weighted, dt) for norm in (False, True) for weighted in (False, True)
             for dt in ("fp32", "fp64")]  # every variant
variants += [(80, 100, True, False, "fp32"), (80, 100, False, True, "fp64")]
done = []
for arch, c, norm, weighted, dt in variants:
    rows, block_c, warps = _launch_config(128, c)
    floats = ("logits_ptr", "out_ptr", "scale_ptr", "bounds_ptr", "weight_ptr")
    sig = {"key_ptr": "*i64", "order_ptr": "*i64", "steps_ptr": "*i64", "num_rows": "i32",
           "num_classes": "i32", "stride": "i32", "max_steps": "i32", "tiny": "fp32"}
    sig.update({k: "*" + dt for k in floats})
    meta = {"NORMALIZE": norm, "WEIGHTED": weighted, "ROWS": rows, "BLOCK_C": block_c, "SCAN": 256}
    sig.update(dict.fromkeys(meta, "constexpr"))
    src = ASTSource(_triton_pgd.kernel, sig, constexprs=meta)
    options = {"num_warps": warps, "enable_fp_fusion": False}
    k = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    done.append([arch, c, norm, weighted, dt, len(k.asm["cubin"])])
print(json.dumps(done))
"""


@pytest.mark.skipif(not HAS_TRITON, reason="Triton is not installed")
def test_kernel_compiles_for_hopper_and_ampere_with_tritons_own_compiler(tmp_path):
    """The interpreter is lenient where the compiler is not (types of loop-carried values, say): the
    kernel goes through Triton's real compiler down to a cubin for sm_90 (H100/H200), in the launch shape
    the loss picks for C = 2 to MAX_CLASSES and in every variant (step, weights, dtype), and for sm_80
    (A100), with a fresh cache; no GPU is needed for that, only Triton's bundled ptxas."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", _COMPILE], capture_output=True, text=True, env=env,
                       timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    done = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(done) == 14 and all(size > 1000 for *_, size in done), done


def test_launch_config_covers_the_classes_within_the_kernels_block():
    for n, c in [(1, 2), (128, 10), (128, 100), (512, 3), (128, 1000), (64, 8142), (2, 8192)]:
        rows, block_c, warps = PF._launch_config(n, c)
        assert block_c >= c and block_c & (block_c - 1) == 0 and block_c < 2 * max(c, 1)
        assert rows & (rows - 1) == 0 and 2 <= rows <= 32
        assert rows * block_c <= max(4096, 2 * block_c)
        assert rows == 32 or rows >= n or rows * block_c * 2 > 4096  # as many rows as fit
        assert warps == (16 if block_c >= 8192 else 4 if block_c <= 2048 else block_c // 512)


@pytest.mark.parametrize("loss_cls", [LPLLoss, LALPLLoss])
def test_loss_with_fused_loop_runs_the_kernel_and_matches_the_default_loss(
    loss_cls, monkeypatch, kernel
):
    counts = [60, 30, 15, 8, 5, 3, 2, 1, 1, 1]
    kw = dict(class_counts=counts, epsilon=0.3, delta_epsilon=0.3, alpha=0.05)
    if loss_cls is LPLLoss:
        kw.update(split="index", tau=0.5)
    ref, fused = loss_cls(10, **kw), loss_cls(10, fused_loop=True, **kw)
    assert "fused_loop=True" in repr(fused) and "fused_loop" not in repr(ref)
    u, y = _batch(64, 10, seed=7, dtype=torch.float32)
    y[:5] = -100  # ignored rows go through the kernel's row selection
    calls = _spy(monkeypatch)
    ua, ub = u.clone().requires_grad_(True), u.clone().requires_grad_(True)
    va, vb = ref(ua, y), fused(ub, y)
    assert len(calls) == 1
    torch.testing.assert_close(fused.last_delta, ref.last_delta, rtol=0, atol=2e-6)
    torch.testing.assert_close(vb, va, rtol=1e-6, atol=0)
    va.backward()
    vb.backward()
    torch.testing.assert_close(ub.grad, ua.grad, rtol=0, atol=1e-6)
    # probability targets: their (sample, class) pairs go through the kernel as weighted rows
    soft = F.softmax(torch.randn(64, 10, generator=torch.Generator().manual_seed(2)) * 3, 1)
    soft[soft < 0.05] = 0.0
    soft = soft / soft.sum(1, keepdim=True)
    torch.testing.assert_close(fused(u, soft), ref(u, soft), rtol=1e-6, atol=0)
    assert len(calls) == 2
    # the registry builds it from a config's parameters
    built = build_loss(
        loss_cls is LPLLoss and "lpl" or "la_lpl", num_classes=10, fused_loop=True, **kw
    )
    assert built.fused_loop is True


def _no_cpu_kernel(monkeypatch):
    """A CPU on which the C++ kernel cannot be built (no compiler, say)."""
    monkeypatch.setattr(PF, "_interpreter_on", lambda: False)
    monkeypatch.setattr(
        CP, "unavailable", lambda: "its C++ kernel could not be built (no compiler)"
    )


def test_fused_loop_is_refused_where_it_cannot_apply(monkeypatch):
    with pytest.raises(ValueError, match="excludes differentiable=True"):
        LPLLoss(10, fused_loop=True, differentiable=True)
    with pytest.raises(ValueError, match="does not apply to preset 'authors_balanced_fixed'"):
        LPLLoss(10, fused_loop=True, preset="authors_balanced_fixed")
    with pytest.raises(TypeError, match="fused_loop"):
        LPLLoss(10, fused_loop="yes")
    u, _ = _batch(48, 10, seed=9, dtype=torch.float32)
    for interpreted in (False, True):  # the C++ kernel and the Triton kernel refuse the same inputs
        monkeypatch.setattr(PF, "_interpreter_on", lambda interpreted=interpreted: interpreted)
        assert "float32 or float64" in PF.fused_loop_unavailable(u.half())
        assert "logits (N, C)" in PF.fused_loop_unavailable(u[0])
    # the Triton kernel holds at most MAX_CLASSES classes; the C++ kernel has no such limit
    wide = torch.zeros(2, PF.MAX_CLASSES + 1)
    assert f"C <= {PF.MAX_CLASSES}" in PF.fused_loop_unavailable(wide)
    assert PF.fused_loop_unavailable(wide[:, : PF.MAX_CLASSES]) is None
    monkeypatch.setattr(PF, "_triton_installed", lambda: False)
    assert "Triton is not installed" in PF.fused_loop_unavailable(u)
    assert PF._interpreter_on() is True  # (patched above; unpatched it is False without Triton)
    monkeypatch.setattr(PF, "_interpreter_on", lambda: False)
    assert PF.fused_loop_kernel("cpu") == "C++" and PF.fused_loop_kernel("meta") == "Triton"
    monkeypatch.setattr(PF, "_triton_installed", lambda: True)
    assert "the logits are on meta" in PF.fused_loop_unavailable(u.to("meta"))
    _no_cpu_kernel(monkeypatch)
    assert "C++ kernel could not be built" in PF.fused_loop_unavailable(u)


@pytest.mark.skipif(not HAS_CXX, reason="no C++ compiler to build the C++ kernel")
def test_cpp_kernel_runs_past_the_triton_class_limit_and_on_any_thread_count(monkeypatch):
    """Every class is one thread's work from start to end: the values do not depend on the number of
    threads, bit for bit. Past the Triton kernel's MAX_CLASSES the C++ kernel still runs."""
    monkeypatch.setattr(PF, "_interpreter_on", lambda: False)
    u, y = _batch(512, 300, seed=12, dtype=torch.float32)
    sign, bounds, steps, max_steps = pipeline_inputs(
        u, y, alpha=0.01, epsilon=0.1, delta_epsilon=0.2, split="mean"
    )
    threads = torch.get_num_threads()
    got = []
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            got.append(PF.pgd_fused(u, y, sign, bounds, steps, alpha=0.01, max_steps=max_steps))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(got[0], got[1]) and torch.equal(got[0], got[2])
    assert float(got[0].abs().max()) > 0.05
    c = PF.MAX_CLASSES + 3
    u, y = _batch(24, c, seed=13, dtype=torch.float64)
    y[:12] = c - 1  # the last class, beyond the Triton kernel's reach, moves
    kw = dict(alpha=0.01, epsilon=0.1, delta_epsilon=0.2)
    want = P.single_label_perturbation(u, y, **kw)
    got = P.single_label_perturbation(u, y, fused=True, **kw)
    torch.testing.assert_close(got.delta, want.delta, rtol=0, atol=1e-12)
    assert float(got.delta[:12, c - 1].abs().max()) > 0.01


@pytest.mark.skipif(not HAS_CXX, reason="no C++ compiler to build the C++ kernel")
def test_cpp_kernel_checks_its_arguments(monkeypatch):
    """The kernel's own checks (the loss never passes such arguments): a clear error, not a crash."""
    monkeypatch.setattr(PF, "_interpreter_on", lambda: False)
    fn = CP.build().pgd_class_loop
    u = torch.zeros(4, 3)
    key, steps = torch.tensor([0, 1, 2, 3]), torch.ones(3, dtype=torch.long)
    scale, bounds, none = torch.ones(3), torch.ones(3), torch.empty(0)
    assert torch.equal(fn(u, key, steps, scale, bounds, none, 5, 1e-30, False)[3], torch.zeros(3))
    with pytest.raises(RuntimeError, match=r"key holds 4 outside \[0, C\]"):
        fn(u, torch.tensor([0, 1, 2, 4]), steps, scale, bounds, none, 5, 1e-30, False)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        fn(u.half(), key, steps, scale, bounds, none, 5, 1e-30, False)
    with pytest.raises(RuntimeError, match="scale and bounds must be"):
        fn(u, key, steps, scale.double(), bounds, none, 5, 1e-30, False)
    with pytest.raises(RuntimeError, match="weight must be empty or"):
        fn(u, key, steps, scale, bounds, torch.ones(3), 5, 1e-30, False)
    with pytest.raises(RuntimeError, match="columns must be contiguous"):
        fn(torch.zeros(3, 4).t(), key, steps, scale, bounds, none, 5, 1e-30, False)


def test_cpp_kernel_that_cannot_be_built_says_why(monkeypatch):
    """A failed build (a compiler error, no compiler, no ninja) is a reason, cached for the process, not
    an exception: the default loop runs."""
    from torch.utils import cpp_extension

    def fail(**kwargs):
        raise RuntimeError("Ninja is required to load C++ extensions\n(more lines)")

    monkeypatch.setattr(cpp_extension, "load_inline", fail)
    CP._built.cache_clear()
    try:
        why = CP.unavailable()
        assert why.startswith("its C++ kernel could not be built (Ninja is required")
        assert "pip install ninja" in why and "more lines" not in why
        with pytest.raises(RuntimeError, match="could not be built"):
            CP.build()
    finally:
        CP._built.cache_clear()  # the next call builds (or loads) the real kernel


def test_cpp_kernel_build_finds_the_ninja_pip_installed(monkeypatch):
    """The builder runs ``ninja`` by name: during the build, the ninja of ``pip install ninja`` and the
    interpreter's scripts are on PATH even where the environment is not activated; PATH is restored."""
    import sys
    from pathlib import Path

    from torch.utils import cpp_extension

    seen = []

    def record(**kwargs):
        seen.append(os.environ["PATH"].split(os.pathsep))
        raise RuntimeError("stop here")

    monkeypatch.setenv("PATH", "/nowhere")
    monkeypatch.setattr(cpp_extension, "load_inline", record)
    CP._built.cache_clear()
    try:
        assert CP.unavailable().startswith("its C++ kernel could not be built (stop here)")
    finally:
        CP._built.cache_clear()
    assert os.environ["PATH"] == "/nowhere"
    (path,) = seen
    assert path[-1] == "/nowhere" and str(Path(sys.executable).parent) in path
    if importlib.util.find_spec("ninja") is not None:
        import ninja

        assert path[0] == str(ninja.BIN_DIR)
        assert (Path(ninja.BIN_DIR) / "ninja").exists()


def test_fused_loop_warns_once_where_it_falls_back_to_the_torch_loop(monkeypatch):
    """Where the kernel was expected (a GPU without Triton, a CPU that cannot build the C++ kernel), the
    loss says once, at the caller's line, that the default loop runs, and gives its values."""
    _no_cpu_kernel(monkeypatch)
    u, y = _batch(48, 10, seed=10, dtype=torch.float32)
    loss = LPLLoss(10, fused_loop=True)
    calls = _spy(monkeypatch)
    with pytest.warns(
        UserWarning, match="C\\+\\+ kernel could not be built.*the default inner loop runs"
    ) as rec:
        value = loss(u, y)
    assert [w.filename for w in rec] == [__file__]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(loss(u, y), value)  # once per loss
    assert torch.equal(value, LPLLoss(10)(u, y)) and not calls
    # the data-less meta device expects the torch loop: nothing to warn of
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LPLLoss(10, fused_loop=True, validate=False)(u.to("meta"), y.to("meta"))


def test_a_run_says_what_its_fused_loop_runs(tmp_path, monkeypatch, kernel):
    """The first line of a run with ``fused_loop = true`` says which kernel runs, or that the default loop
    runs and why; the records of the two agree to rounding."""
    from lpl_train.engine import fit, read_metrics
    from tests.train.test_engine import make_cfg, make_components

    calls = _spy(monkeypatch)
    cfg = make_cfg(epochs=2)
    lines = {}
    for name in ("kernel", "default"):
        if name == "default":
            _no_cpu_kernel(monkeypatch)
        said = lines[name] = []
        loss = LPLLoss(4, fused_loop=True, delta_epsilon=0.2)
        with warnings.catch_warnings(record=True):  # the default loop's fallback warning
            warnings.simplefilter("always")
            fit(
                cfg,
                tmp_path / name,
                components=make_components(loss=loss, dropout=0.0),
                log=said.append,
            )
    assert lines["kernel"][0].endswith(f"; fused_loop: LPL's inner loop is one {kernel} kernel")
    assert lines["default"][0].endswith(
        "; fused_loop: the default inner loop runs (its C++ kernel could not be built (no compiler))"
    )
    assert calls  # the first run took the kernel at every step
    kernel_run, default = (read_metrics(tmp_path / n) for n in ("kernel", "default"))
    assert [r["train_loss"] for r in kernel_run] == pytest.approx(
        [r["train_loss"] for r in default], rel=1e-5
    )


def test_compiled_loss_with_fused_loop_takes_the_torch_loop(monkeypatch, kernel):
    """While torch.compile traces, the loop is left to the compiler (fused there): the loss compiles whole
    and gives the eager loss's value."""
    u, y = _batch(48, 10, seed=11, dtype=torch.float32)
    loss = LPLLoss(10, fused_loop=True, validate=False, delta_epsilon=0.2)
    calls = _spy(monkeypatch)
    compiled = torch.compile(loss, fullgraph=True, backend="eager")(u, y)
    assert not calls
    torch.testing.assert_close(compiled, loss(u, y), rtol=1e-6, atol=0)
    assert len(calls) == 1  # the eager call took the kernel
