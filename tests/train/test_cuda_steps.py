"""On a CUDA device: the steady training step never makes the host wait for the device.

A synchronising call (a value read, a blocking host→device copy) holds the host until every queued kernel has
run, so the GPU idles while the next batch is prepared; ``torch.cuda.set_sync_debug_mode("error")`` turns each
such call into an error. These tests need a GPU (``benchmarks/gpu_device_run.sh`` runs them first); on a CPU
they are skipped. What they check that a CPU can check is tested elsewhere: the loader's values
(``test_data_loader.py``), the losses' freedom from host reads on the meta device (``test_capture.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lpl_train.data import TensorData, make_loader

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _data(n: int = 256, seed: int = 0) -> TensorData:
    """Random images; labels long-tailed (class 9 takes 7/16 of the samples) so DRW weights differ."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    targets = (torch.arange(n) % 16).clamp_max(9)
    return TensorData(images, targets, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


class _NoSyncAfter:
    """The loader's batches, with synchronisations made errors from batch ``after`` to the epoch's end
    (the batches before it warm up and record the captured step; the trainer's step on batch k runs
    between yielding batch k and asking for batch k + 1)."""

    def __init__(self, inner, after: int) -> None:
        self.inner, self.after, self.checked = inner, after, 0

    def __len__(self) -> int:
        return len(self.inner)

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __iter__(self):
        try:
            for k, batch in enumerate(self.inner):
                if k == self.after:
                    torch.cuda.set_sync_debug_mode("error")
                yield batch
                self.checked += k >= self.after
        finally:
            torch.cuda.set_sync_debug_mode(0)


def test_cuda_tensor_loader_batches_do_not_synchronise():
    data = _data()
    cpu = make_loader(data, 32, True, "crop_flip", "cpu", seed=3, drop_last=True)
    gpu = make_loader(data, 32, True, "crop_flip", "cuda", seed=3, drop_last=True)
    batches = iter(gpu)
    first = next(batches)  # the epoch's order goes to the device once, before the first batch
    try:
        torch.cuda.set_sync_debug_mode("error")
        rest = list(batches)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    for (xc, yc), (xg, yg) in zip(cpu, [first, *rest], strict=True):  # device-independent batches
        torch.testing.assert_close(xg.cpu(), xc, rtol=0, atol=1e-6)
        assert torch.equal(yc, yg.cpu())


@pytest.mark.parametrize("multi_label", [False, True])
def test_cuda_evaluation_sums_on_the_device_and_reads_once(multi_label: bool):
    from lpl_train.engine.evaluate import _EvalMeter, evaluate

    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(50, 6, generator=g), torch.randint(0, 6, (50,), generator=g))
               for _ in range(4)]  # fmt: skip
    if multi_label:
        batches = [(x, torch.nn.functional.one_hot(y, 6)) for x, y in batches]
    meter = _EvalMeter(6, multi_label, torch.device("cuda"))
    cuda = [(x.cuda(), y.cuda()) for x, y in batches]
    try:
        torch.cuda.set_sync_debug_mode("error")
        for x, y in cuda:
            meter.update(x, y)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    on_gpu = meter.read()
    cpu = _EvalMeter(6, multi_label, torch.device("cpu"))
    for x, y in batches:
        cpu.update(x, y)
    for a, b in zip(on_gpu, cpu.read(), strict=True):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        else:  # the loss sum; None for the scores and targets of single-label data
            assert a == (b if b is None else pytest.approx(b, rel=1e-6))
    counts = [100] * 6
    ident = torch.nn.Identity()
    on_gpu, on_cpu = (evaluate(ident, b, 6, counts, multi_label) for b in (cuda, batches))
    assert on_gpu.keys() == on_cpu.keys()
    for k, v in on_cpu.items():
        assert on_gpu[k] == (v if v is None else pytest.approx(v, rel=1e-6)), k


@pytest.mark.parametrize("case", ["ce", "ldam", "lpl", "lpl_compiled", "lpl_fused"])
def test_cuda_captured_training_steps_do_not_synchronise(tmp_path: Path, case: str):
    """Two epochs through ``fit`` with the captured step: after the warm-up and the recording, no step of
    either epoch (loader, copy into the static buffers, replay, device-side metrics, the loss variation of
    every 3rd step) synchronises. The step
    is recorded once, so LDAM's DRW weights, switched on for the 2nd epoch, must reach the replays through
    their buffer: the run's losses follow an eager run's. ``lpl_compiled``: LPL with
    ``train.compile_loss`` (inductor's kernels recorded in the step), against the eager uncompiled loss.
    ``lpl_fused``: LPL with ``fused_loop=True`` (its Triton kernel recorded in the step), against the eager
    default loop."""
    from lpl_train.config import validate_config
    from lpl_train.engine import Components, fit, read_metrics
    from lpl_train.losses import build_loss
    from lpl_train.models import build_model

    if case == "lpl_fused":
        pytest.importorskip("triton", reason="the fused loop is a Triton kernel")
    loss_name = case.removesuffix("_compiled").removesuffix("_fused")
    compiled, fused = case.endswith("_compiled"), case.endswith("_fused")
    data = _data(n=384)
    counts = torch.bincount(data.targets, minlength=10).tolist()
    # LDAM with DRW from the 2nd epoch: its weights change between epochs of one recording
    params = {"lpl": {"epsilon": 0.0, "delta_epsilon": 2.0, "alpha": 0.25, "split": "index",
                      "tau": 0.5, "validate": False},
              "ldam": {"drw_epoch": 1}}.get(loss_name, {})  # fmt: skip
    cfg = validate_config({
        "name": loss_name, "data": {"name": "synthetic", "batch_size": 32, "drop_last": True},
        "model": {"name": "resnet32", "params": {"use_norm": loss_name == "ldam"}},
        "loss": {"name": loss_name, "params": params},
        "optim": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
        "schedule": {"epochs": 2, "kind": "cosine"},
        "train": {"device": "cuda", "amp": "bf16", "capture": "graph", "progress": False,
                  "loss_variation": True, "loss_variation_every": 3, "compile_loss": compiled},
    })  # fmt: skip

    def components(train, fused_loop=fused):
        torch.manual_seed(0)
        extra = {"fused_loop": True} if fused_loop else {}
        return Components(
            model=build_model("resnet32", num_classes=10, use_norm=loss_name == "ldam"),
            loss=build_loss(loss_name, num_classes=10, class_counts=counts, **params, **extra),
            train_loader=train,
            test_loader=make_loader(data, 128, False, "none", "cuda"),
            num_classes=10,
            class_counts=counts,
        )

    train = _NoSyncAfter(make_loader(data, 32, True, "crop_flip", "cuda", drop_last=True), 5)
    lines: list[str] = []
    fit(cfg, tmp_path / "graph", components=components(train), log=lines.append)
    assert any("step: graph" in s for s in lines), lines
    assert any("; loss compiled" in s for s in lines) == compiled, lines
    # the kernel ran in the recorded step (not the default loop under the fused loop's name)
    assert any("fused_loop: LPL's inner loop is one Triton kernel" in s for s in lines) == fused, (
        lines
    )
    assert train.checked == 2 * (len(train) - 5)  # every step after the warm-up of both epochs
    graphed = [r["train_loss"] for r in read_metrics(tmp_path / "graph")]
    eager_cfg = {**cfg, "train": {**cfg["train"], "capture": "off", "compile_loss": False}}
    loader = make_loader(data, 32, True, "crop_flip", "cuda", drop_last=True)
    fit(eager_cfg, tmp_path / "eager", components=components(loader, False), log=lines.append)
    eager = [r["train_loss"] for r in read_metrics(tmp_path / "eager")]
    assert graphed == pytest.approx(eager, rel=2e-2), (graphed, eager)
    assert all(r["loss_variation"]["count"] for r in read_metrics(tmp_path / "graph"))
