"""The captured training step (train.capture), device-side epoch metrics, and the loss-variation frequency.

CUDA graphs need a GPU; here the capture path runs on the CPU through a stand-in graph API that records the
step's closure and runs it on every replay (recording itself leaves no trace, as a real recording executes
nothing). That exercises everything but the CUDA calls: static input buffers, the learning rate as a tensor
the fused optimiser reads, per-epoch re-recording, eager steps for batches of another shape, and the fallback
of ``"auto"`` when recording fails.
"""

from __future__ import annotations

import copy
import math
import sys
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from lpl_train.config import ConfigError, validate_config
from lpl_train.engine import capture as CAP
from lpl_train.engine import fit, load_checkpoint, read_metrics
from lpl_train.engine import trainer as TR

from .test_engine import make_cfg, make_components

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")


# ------------------------------------------------------------------------------------------- config
def test_capture_and_loss_variation_every_keys_validate():
    cfg = make_cfg()
    assert cfg["train"]["capture"] == "auto" and cfg["train"]["loss_variation_every"] == 10
    with pytest.raises(
        ConfigError, match=r"'train.capture'.*'cudagraph'.*auto, off, graph, compile"
    ):
        make_cfg(capture="cudagraph")
    with pytest.raises(ConfigError, match=r"'train.loss_variation_every' has value 0"):
        make_cfg(loss_variation_every=0)
    with pytest.raises(ConfigError, match=r"'train.loss_variation_every'.*expected integer"):
        make_cfg(loss_variation_every=2.5)


# ------------------------------------------------------------------------------------------ choices
def choose(requested, device=CUDA, world=1, precision="bf16", loss="lpl", features=False,
           compiled=False, float64=False):  # fmt: skip
    return CAP.choose_capture(requested, device, world=world, precision=precision, loss_name=loss,
                              needs_features=features, compiled=compiled, float64=float64)  # fmt: skip


@pytest.mark.parametrize("requested", CAP.CAPTURE_MODES)
def test_every_mode_runs_eagerly_off_cuda(requested):
    c = choose(requested, device=CPU)
    assert c.mode == "eager"
    assert (
        "turned off" if requested == "off" else "need a CUDA device; this run is on cpu"
    ) in c.reason


@pytest.mark.parametrize("requested", ["auto", "graph", "compile"])
def test_every_mode_runs_eagerly_on_an_apple_gpu(requested):
    """CUDA graphs need a CUDA device, not merely a device other than the CPU: on an Apple GPU (``mps``)
    every mode runs eagerly too, and says why."""
    c = choose(requested, device=torch.device("mps"))
    assert c.mode == "eager" and "need a CUDA device; this run is on mps" in c.reason


def test_capture_decisions_on_cuda():
    assert choose("auto").mode == "graph"
    assert choose("auto", loss="la_lpl", precision="fp32").mode == "graph"
    assert choose("graph", loss="center").mode == "graph"  # asked for: tried
    assert choose("compile", precision="fp16").mode == "compile"
    for kw, why in (
        ({"loss": "center"}, "not known to be graph-safe"),
        ({"precision": "fp16"}, "gradient scaler"),
        ({"world": 2}, "2 processes"),
        ({"loss": "isda", "features": True}, "works on features"),
        ({"compiled": True}, "train.compile = true"),
    ):
        c = choose("auto", **kw)
        assert c.mode == "eager" and why in c.reason, (kw, c)
    assert choose("off").mode == "eager"
    with pytest.raises(ValueError, match="train.capture has value 'on'"):
        choose("on")


def test_a_float64_network_is_not_recorded_on_cuda():
    """The recorded step reads its learning rate from a float32 device tensor (CUDA's fused SGD reads no
    other), so a float64 network's steps would take lr rounded to float32: they stay eager, and say why.
    run_capture reads the dtype from the model; without one (or float32) the choice is unchanged."""
    for requested in ("auto", "graph"):
        c = choose(requested, precision="fp32", float64=True)
        assert c.mode == "eager" and "float64 parameters" in c.reason, (requested, c)
    cfg = make_cfg(capture="graph")
    loss = nn.CrossEntropyLoss()
    for model, mode in (
        (nn.Linear(3, 2).double(), "eager"),
        (nn.Linear(3, 2), "graph"),
        (None, "graph"),
    ):
        assert CAP.run_capture(cfg, CUDA, 1, loss, "fp32", model).mode == mode


# ------------------------------------------------------------------ the recorded step reads no value
def _recorded_losses():
    """(config, loss) of every shipped config whose step ``"auto"`` records on one CUDA device, the loss
    built as the run builds it (the data's class count and long-tail counts, without the data)."""
    from lpl_train.config import list_configs, load_config
    from lpl_train.engine.components import _loss_without_data

    for name in list_configs():
        cfg = load_config(name)
        lo, tr = cfg["loss"], cfg["train"]
        loss, c = _loss_without_data(cfg)
        precision = {"auto": "bf16", "off": "fp32"}.get(
            tr["amp"], tr["amp"]
        )  # "auto" on a bf16 GPU
        mode = choose(tr["capture"], loss=lo["name"], precision=precision, compiled=tr["compile"],
                      features=bool(getattr(loss, "needs_features", False))).mode  # fmt: skip
        if mode == "graph":
            yield name, loss, c


RECORDED = list(_recorded_losses())


def test_the_recorded_configs_cover_every_graph_safe_loss():
    assert {type(loss).__name__ for _, loss, _ in RECORDED} >= {"CrossEntropyLoss", "LPLLoss",
                                                              "LALPLLoss", "LDAMLoss"}  # fmt: skip
    names = {n for n, _, _ in RECORDED}
    assert len(names) >= 60 and any("_ce" in n for n in names)
    # the premise of the next test: a host read fails on meta
    with pytest.raises(NotImplementedError):
        torch.zeros(2, device="meta").tolist()


class _CopiesFromTheHost(TorchDispatchMode):
    """Where the code under it puts host data on a device (here: meta). On a GPU each such copy is a
    blocking ``cudaMemcpy`` that a CUDA graph cannot record. Tensors built from Python data
    (``torch.tensor``, ``torch.as_tensor``, ``Tensor.new_tensor``) are made on the device without a
    dispatched copy, so those three are wrapped too; fills (``new_full``, ``torch.full``) and Python
    scalars in arithmetic copy nothing."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__()
        self.seen: list[str] = []
        for owner, name in ((torch, "tensor"), (torch, "as_tensor"), (torch.Tensor, "new_tensor")):
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name), name))

    def _wrap(self, make, name):
        def made_from_host_data(*args, **kwargs):
            out = make(*args, **kwargs)
            data = args[1] if name == "new_tensor" else args[0]
            on_device = isinstance(data, torch.Tensor) and data.device == out.device
            if out.device.type != "cpu" and not on_device:
                self.seen.append(f"{name} at {_caller()}")
            return out

        return made_from_host_data

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            src = args[1] if func is torch.ops.aten.copy_.default else args[0]
            if src.device.type == "cpu" and out.device.type != "cpu":
                self.seen.append(f"{func} at {_caller()}")
        return out


def _caller() -> str:
    import traceback

    frames = [f for f in traceback.extract_stack() if "lpl_train" in f.filename]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def test_the_host_copy_watch_sees_each_way_of_copying_and_no_fill(monkeypatch):
    x, watch = torch.empty(3, device="meta"), _CopiesFromTheHost(monkeypatch)
    for copies, n in ((lambda: x.new_tensor(2.0), 1), (lambda: torch.tensor([1.0], device="meta"), 1),
                      (lambda: torch.as_tensor([1.0], device="meta"), 1),
                      (lambda: torch.ones(2).to("meta"), 1), (lambda: x.copy_(torch.ones(3)), 1),
                      (lambda: x.new_full((), 2.0), 0), (lambda: torch.as_tensor(x), 0),
                      (lambda: torch.where(x > 0, -1.0, 1.0) * 2.0, 0)):  # fmt: skip
        watch.seen = []
        with watch:
            copies()
        assert len(watch.seen) == n, watch.seen


@pytest.mark.parametrize("split", ["mean", "value", "index"])
def test_every_category_split_puts_no_host_data_on_the_device(split, monkeypatch):
    from lpl_train.perturbation import split_signs

    qbar, present = torch.empty(10, device="meta"), torch.empty(10, dtype=torch.bool, device="meta")
    rank = torch.empty(10, dtype=torch.long, device="meta")
    with _CopiesFromTheHost(monkeypatch) as watch:
        sign, tau = split_signs(qbar, present, split=split, tau=0.5, rank=rank, head=3)
    assert watch.seen == [] and sign.shape == (10,) and tau.shape == ()


@pytest.mark.parametrize("validate", [True, False], ids=["as-built", "validate-off"])
@pytest.mark.parametrize("name,loss,c", RECORDED, ids=[n for n, _, _ in RECORDED])
def test_recorded_losses_read_no_value_on_the_host(name, loss, c, validate, monkeypatch):
    """A CUDA graph records no host read and no copy from the host (either fails the recording, and
    ``"auto"`` falls back to eager). On the meta device no value can be read either (any read raises) and
    the losses' data-dependent checks skip the same way as while capturing (``_can_read_back``): forward
    and backward of every recorded loss run there, with its checks on and off, and put no host data on
    the device."""
    loss = copy.deepcopy(loss).to("meta").train()
    if hasattr(loss, "validate"):
        loss.validate = validate
    logits = torch.empty(64, c, device="meta", requires_grad=True)
    with _CopiesFromTheHost(monkeypatch) as watch:
        value = loss(logits, torch.empty(64, dtype=torch.long, device="meta"))
        value.backward()
    assert value.shape == () and logits.grad.shape == (64, c)
    assert watch.seen == []


@pytest.mark.parametrize("name,loss,c", RECORDED, ids=[n for n, _, _ in RECORDED])
def test_the_loss_variation_of_recorded_losses_reads_no_value_on_the_host(
    name, loss, c, monkeypatch
):
    """Between replays the engine measures l' every k-th step: for every recorded config's loss (the
    validation it runs with, as built) that measurement reads no value either, so it never waits for
    the device."""
    from lpl_train.engine.step import _LossVariation

    loss = copy.deepcopy(loss).to("meta").train()
    lv = _LossVariation(loss, c, multi_label=False)
    assert lv.ok
    with _CopiesFromTheHost(monkeypatch) as watch:
        lv.update(torch.empty(64, c, device="meta"), torch.empty(64, dtype=torch.long, device="meta"),
                  None, nn.Identity())  # fmt: skip
    assert watch.seen == []
    assert (
        lv.acc._all.count.device.type == "meta"
    )  # summed where the logits are, read once per epoch


@pytest.mark.parametrize("ignore_index", [None, -100])
@pytest.mark.parametrize("preset", ["authors_balanced_fixed", "authors_balanced_varied",
                                    "authors_balanced_varied_isda", "authors_longtail"])  # fmt: skip
def test_presets_are_recordable_without_ignore_index(preset, ignore_index):
    """The authors'-code presets read no value either, unless ``ignore_index`` is set: they drop the
    ignored rows (their scripts know no weights) through a data-dependent index, which a CUDA graph cannot
    record (``"auto"`` then runs eagerly and the log says why)."""
    from lpl_train.losses import build_loss

    extra = {"tau": 4, "iterations": 50} if preset == "authors_longtail" else {}
    loss = build_loss("lpl", num_classes=10, class_counts=[500 // (k + 1) for k in range(10)],
                      preset=preset, ignore_index=ignore_index, **extra).to("meta")  # fmt: skip
    logits = torch.empty(32, 10, device="meta", requires_grad=True)
    target = torch.empty(32, dtype=torch.long, device="meta")
    if ignore_index is not None:
        with pytest.raises(NotImplementedError, match="nonzero"):
            loss(logits, target)
        return
    loss(logits, target).backward()
    assert logits.grad.shape == (32, 10)


def test_no_host_reads_turns_every_value_read_off_and_back_on():
    from lpl_train.perturbation import _can_read_back, no_host_reads

    t = torch.zeros(3)
    assert _can_read_back(t)
    with no_host_reads():
        assert not _can_read_back(t)
        with no_host_reads():
            assert not _can_read_back(t)
        assert not _can_read_back(t)
    assert _can_read_back(t)
    with pytest.raises(RuntimeError, match="inside"), no_host_reads():
        raise RuntimeError("inside")
    assert _can_read_back(t)
    # inside it the checks are skipped: an out-of-range label is not read
    from lpl_train.losses import build_loss

    ce = build_loss("ce")
    bad = torch.tensor([0, 7])
    with pytest.raises(ValueError, match="class indices"):
        ce(torch.zeros(2, 3), bad)
    with no_host_reads():
        assert ce(torch.zeros(2, 3), torch.tensor([0, 2])).item() == pytest.approx(math.log(3))


class _SpyLoss(nn.Module):
    """Records whether values could be read while the loss variation called it."""

    def __init__(self):
        super().__init__()
        self.reduction, self.readable = "mean", []

    def forward(self, logits, target):
        from lpl_train.perturbation import _can_read_back

        self.readable.append(_can_read_back(torch.zeros(1)))
        return nn.functional.cross_entropy(logits, target, reduction=self.reduction)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_loss_variation_reads_no_value_off_the_cpu(device):
    """Between captured steps the loss variation calls the loss as a recording would (no value checks, LPL's
    static loop), so it never waits for an accelerator; on the CPU it keeps the early-stopping loop. The
    meta device stands in for an accelerator here; on CUDA, tests/train/test_cuda_steps.py measures."""
    from lpl_train.engine.step import _LossVariation

    spy = _SpyLoss()
    lv = _LossVariation(spy, 3, multi_label=False)
    logits = torch.zeros(4, 3, device=device)
    lv.update(logits, torch.zeros(4, dtype=torch.long, device=device), None, nn.Identity())
    assert spy.readable == [device == "cpu"] and spy.reduction == "mean"


# ------------------------------------------------------------------------------------- device meter
def test_device_meter_matches_host_side_counts():
    g = torch.Generator().manual_seed(0)
    meter = CAP.DeviceMeter(CPU)
    loss_sum, correct, seen = 0.0, 0, 0
    for bs in (7, 7, 3):
        logits, y = torch.randn(bs, 5, generator=g), torch.randint(0, 5, (bs,), generator=g)
        value = torch.rand((), generator=g)
        meter.update(value, logits, y)
        loss_sum += value.item()
        correct += sum(int(max(range(5), key=lambda c: row[c])) == t for row, t in
                       zip(logits.tolist(), y.tolist(), strict=True))  # fmt: skip
        seen += bs
    total, hits, n = meter.read()
    assert total == pytest.approx(loss_sum, rel=1e-6) and hits == correct and n == seen == 17
    multi = CAP.DeviceMeter(CPU)
    multi.update(torch.tensor(1.0), torch.randn(4, 3), torch.ones(4, 3))
    assert multi.read() == (1.0, 0, 4)


def test_device_meter_sums_the_losses_in_float64_on_the_cpu():
    """A float32 sum lost the second step's loss (ln 2) next to the first's 1e8, and rounded a float64
    run's losses to float32; the sum is float64, as the evaluation's."""
    meter = CAP.DeviceMeter(CPU)
    y = torch.tensor([0])
    meter.update(torch.tensor(1e8), torch.zeros(1, 2), y)
    meter.update(torch.tensor(math.log(2)), torch.zeros(1, 2), y)
    assert meter.read()[0] - 1e8 == pytest.approx(math.log(2), rel=1e-6)
    exact = CAP.DeviceMeter(CPU)
    for v in (0.1, 0.2, 0.3):
        exact.update(torch.tensor(v, dtype=torch.float64), torch.zeros(1, 2), y)
    assert exact.read()[0] == 0.1 + 0.2 + 0.3


# ----------------------------------------------------------------------------- stand-in graph API
class FakeGraphAPI:
    """record(fn): run fn on a copy of every piece of state, so the recording leaves no trace (a CUDA
    recording executes nothing), keep fn; replay: run fn, writing into the recorded outputs. Gradients as a
    CUDA graph treats them: a backward recorded while the gradients are None allocates them in the graph
    and writes them at every replay; one recorded over existing gradients adds into them at every replay."""

    def __init__(self, module: nn.Module, opt: torch.optim.Optimizer, fail: str | None = None,
                 fail_check: str | None = None):  # fmt: skip
        self.module, self.opt, self.fail, self.fail_check = module, opt, fail, fail_check
        self.recorded = self.checks = 0

    def new_graph(self):
        return {}

    def record(self, graph, fn):
        if self.fail:
            raise RuntimeError(self.fail)
        saved = (copy.deepcopy(self.module.state_dict()), copy.deepcopy(self.opt.state_dict()),
                 torch.get_rng_state())  # fmt: skip
        fresh = all(p.grad is None for g in self.opt.param_groups for p in g["params"])
        out = tuple(None if t is None else t.clone() for t in fn())  # (None: a loss without δ)
        self.module.load_state_dict(saved[0])
        self.opt.load_state_dict(saved[1])
        CAP._capturable_optimizer(self.opt, CPU)
        torch.set_rng_state(saved[2])
        graph.update(fn=fn, out=out, fresh=fresh)
        self.recorded += 1
        return out

    def replay(self, graph):
        if graph["fresh"]:  # the recorded backward writes (not adds) the gradients
            self.opt.zero_grad(set_to_none=True)
        for dst, src in zip(graph["out"], graph["fn"](), strict=True):
            if dst is not None:
                dst.copy_(src)

    def side_stream(self):
        return _Null()

    def no_sync(self):
        self.checks += 1
        if self.fail_check:
            raise RuntimeError(self.fail_check)
        return _Null()


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _train(graph: bool, batches, epochs=2):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 4))
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3
    )

    def fb(x, y):
        value = nn.functional.cross_entropy(model(x), y)
        value.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        return value.detach(), model(x).detach()

    step = (
        CAP.GraphStep(fb, opt, CPU, warmup=2, graph_api=FakeGraphAPI(model, opt)) if graph else None
    )
    torch.manual_seed(1)
    losses = []
    for e in range(epochs):
        if step is not None:
            step.new_epoch()
        for i, (x, y) in enumerate(batches):
            lr = 0.1 * (0.5**e) * (1 - 0.1 * i)
            if step is not None:
                step.set_lr([lr])
                value, _ = step(x.clone(), y.clone())  # a new tensor each step, as a loader gives
            else:
                opt.param_groups[0]["lr"] = lr
                opt.zero_grad(set_to_none=True)
                value, _ = fb(x, y)
                opt.step()
            losses.append(float(value))
    return model, losses, step


def test_graph_step_replays_the_eager_training_with_odd_batches_eager():
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(bs, 6, generator=g), torch.randint(0, 4, (bs,), generator=g))
               for bs in (8, 8, 8, 8, 5)]  # fmt: skip
    eager, l_eager, _ = _train(False, batches)
    graphed, l_graph, step = _train(True, batches)
    assert step.recordings == 2  # once per epoch
    # the warm-up, one checked step before the first recording, then the 5-sample batch of each epoch
    assert step.eager_steps == 2 + 1 + 2 and step.api.checks == 1
    assert step.replays == 2 * 5 - step.eager_steps
    assert l_graph == pytest.approx(l_eager, rel=1e-5)  # fused SGD with a tensor lr vs foreach
    for a, b in zip(eager.parameters(), graphed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_graph_step_reads_the_new_batch_through_its_static_buffers():
    g = torch.Generator().manual_seed(4)
    batches = [
        (torch.randn(8, 6, generator=g), torch.randint(0, 4, (8,), generator=g)) for _ in range(5)
    ]
    _, l_graph, step = _train(True, batches, epochs=1)
    _, l_eager, _ = _train(False, batches, epochs=1)
    assert step.replays == 2 and l_graph == pytest.approx(l_eager, rel=1e-5)
    assert len(set(l_graph)) == 5  # each replay saw its own batch


def test_capturable_optimizer_and_float_lrs_round_trip():
    p = nn.Parameter(torch.randn(3))
    opt = torch.optim.AdamW([p], lr=0.01)
    p.grad = torch.ones(3)
    opt.step()
    CAP._capturable_optimizer(opt, CPU)
    g = opt.param_groups[0]
    assert isinstance(g["lr"], torch.Tensor) and g["capturable"] is True
    assert float(g["lr"]) == pytest.approx(0.01)
    st = CAP.float_lrs(opt.state_dict())
    assert st["param_groups"][0]["lr"] == pytest.approx(0.01)
    sgd = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    CAP._capturable_optimizer(sgd, CPU)
    fused = CAP._fused_sgd_runs_on(CPU)  # torch >= 2.4
    assert bool(sgd.param_groups[0]["fused"]) is fused
    assert not (fused and sgd.param_groups[0]["foreach"])  # fused replaces the foreach form


def test_capturable_adam_keeps_its_step_counts_on_the_device_as_float32():
    """A captured Adam step reads its step count from a device tensor: a restored (CPU, any dtype) count
    is moved there; the meta device stands in for a GPU."""
    p = nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([p], lr=0.01)
    p.grad = torch.ones(3)
    opt.step()
    opt.state[p]["step"] = torch.tensor(
        7, dtype=torch.float64
    )  # as an older checkpoint may hold it
    CAP._capturable_optimizer(opt, torch.device("meta"))
    step = opt.state[p]["step"]
    assert step.device.type == "meta" and step.dtype == torch.float32
    assert opt.param_groups[0]["lr"].device.type == "meta"


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_a_captured_runs_checkpoint_resumes_eagerly_as_an_eager_run(tmp_path, name):
    """``train.capture`` and ``train.device`` may differ on --resume: a checkpoint of a run whose steps
    were captured carries the optimiser made capturable (fused SGD, capturable Adam with float32 step
    counts), which an eager step on a CPU must not inherit (capturable Adam refused to step there). The
    checkpoint is made here as a captured run writes it (the CPU standing in for the GPU)."""
    from lpl_train.engine import atomic_save

    cfg = make_cfg(epochs=2)
    cfg["optim"]["name"] = name
    cfg = validate_config(cfg)
    fit(cfg, tmp_path / "whole", components=make_components(), log=print)
    out = tmp_path / "resumed"
    fit(cfg, out, components=make_components(), stop_after_epoch=1, log=print)
    ck = load_checkpoint(out / "checkpoint.pt")
    opt = TR._optimizer(list(make_components().model.parameters()), cfg["optim"])
    opt.load_state_dict(ck["optimizer"])
    CAP._capturable_optimizer(opt, CPU)
    ck["optimizer"] = CAP.float_lrs(opt.state_dict())
    atomic_save(ck, out / "checkpoint.pt")
    fit(cfg, out, components=make_components(), resume=True, log=print)
    a, b = (load_checkpoint(tmp_path / k / "checkpoint.pt")["model"] for k in ("whole", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_smaller_batch_is_never_the_recorded_shape():
    """The warm-up ends on an epoch's last, smaller batch: it runs eagerly and the next full batch records
    (a recording of the small shape would leave every full batch eager); after ``new_epoch`` a smaller
    first batch does not record either."""
    g = torch.Generator().manual_seed(5)
    full = [(torch.randn(8, 6, generator=g), torch.randint(0, 4, (8,), generator=g))
            for _ in range(2)]  # fmt: skip
    odd = (torch.randn(5, 6, generator=g), torch.randint(0, 4, (5,), generator=g))
    _, _, step = _train(True, [*full, odd], epochs=1)  # warm-up 2: its end meets the 5-row batch
    assert (step.recordings, step.eager_steps) == (0, 3) and step.graph is None
    step(*full[0])  # the full batch first runs the checked eager step
    assert (step.checked, step.recordings, step.eager_steps) == (True, 0, 4)
    step(*full[1])
    assert step.recordings == 1 and step.static[0].shape == (8, 6)
    step(*full[0])
    assert step.replays == 2
    step.new_epoch()
    step(*odd)
    assert (step.recordings, step.eager_steps) == (1, 5) and step.graph is None
    step(*full[0])
    assert step.recordings == 2 and step.static[0].shape == (8, 6)


def test_sgd_is_fused_wherever_torch_has_the_fused_form(monkeypatch):
    """CUDA always has fused SGD (a captured step needs it: its foreach form reads the lr on the host);
    a CPU without it (torch 2.3) keeps the foreach form, which reads a tensor lr there."""
    assert CAP._fused_sgd_runs_on(torch.device("cuda"))
    assert CAP._fused_sgd_runs_on(CPU) is (
        tuple(map(int, torch.__version__.split(".")[:2])) >= (2, 4)
    )
    monkeypatch.setattr(CAP, "_fused_sgd_runs_on", lambda device: False)
    p = nn.Parameter(torch.ones(3))
    sgd = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    CAP._capturable_optimizer(sgd, CPU)
    assert not sgd.param_groups[0]["fused"] and isinstance(sgd.param_groups[0]["lr"], torch.Tensor)
    p.grad = torch.ones(3)
    sgd.step()
    assert torch.allclose(p.detach(), torch.full((3,), 0.9))


# -------------------------------------------------------------------------------- through fit (CPU)
def _force_graph(monkeypatch, fail=None, fail_check=None):
    """Make the trainer take its captured path on the CPU, with the stand-in graph API."""
    monkeypatch.setattr(TR, "run_capture",
                        lambda *a, **k: CAP.CaptureChoice("graph", "forced by the test"))  # fmt: skip

    made = []  # the steps the trainer builds, for the tests to inspect

    class CpuGraphStep(CAP.GraphStep):
        def __init__(self, fb, opt, device, **kw):
            module = fb.__closure__ and next(
                c.cell_contents for c in fb.__closure__ if isinstance(c.cell_contents, TR._Trainer)
            )
            super().__init__(fb, opt, device, warmup=1,
                             graph_api=FakeGraphAPI(module.runner, opt, fail=fail,
                                                    fail_check=fail_check))  # fmt: skip
            made.append(self)

    monkeypatch.setattr(TR, "GraphStep", CpuGraphStep)
    return made


class _PythonEpochLoss(nn.Module):
    """A user's loss whose epoch hook changes a Python number: a recorded graph would freeze it."""

    def __init__(self):
        super().__init__()
        self.scale = 1.0

    def set_epoch(self, epoch, total_epochs):
        self.scale = 1.0 + epoch

    def forward(self, logits, target):
        return self.scale * nn.functional.cross_entropy(logits, target)


def test_records_once_where_the_epoch_state_lives_in_buffers():
    from lpl_train.losses import build_loss
    from lpl_train.losses.feature_losses import ISDALoss

    counts = [40, 20, 10, 5]
    assert CAP.records_once(nn.CrossEntropyLoss()) and CAP.records_once(build_loss("ce"))
    for name in ("lpl", "la_lpl", "ldam"):
        assert CAP.records_once(build_loss(name, num_classes=4, class_counts=counts, drw_epoch=2))
    assert not CAP.records_once(_PythonEpochLoss())
    assert not CAP.records_once(ISDALoss(4, lambda0=0.5))  # λ is a Python number
    flagged = _PythonEpochLoss()
    flagged.epoch_state_in_buffers = 1  # only True itself counts
    assert not CAP.records_once(flagged)


@pytest.mark.parametrize("name", ["lpl", "la_lpl", "ldam"])
def test_the_epoch_hooks_of_losses_recorded_once_rewrite_buffers_in_place(name):
    """What ``epoch_state_in_buffers`` promises: after the first ``set_epoch`` (the graph is recorded after
    it), later ones change no Python attribute and no buffer's storage, only buffer values (the DRW switch,
    so the check is not vacuous)."""
    from lpl_train.losses import build_loss

    loss = build_loss(name, num_classes=4, class_counts=[40, 20, 10, 5], drw_epoch=2)
    assert loss.epoch_state_in_buffers is True

    def plain(v):  # a comparable snapshot of a Python value (objects by their fields)
        if isinstance(v, torch.Tensor):
            return ("tensor", v.tolist())
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if hasattr(v, "__dict__"):
            return (type(v).__name__, plain(vars(v)))
        return v

    def python_state(m):
        return plain({k: v for k, v in vars(m).items()
                      if not k.startswith("_") and not isinstance(v, torch.Tensor)})  # fmt: skip

    loss.set_epoch(0, 4)
    before = (python_state(loss), {k: (b.data_ptr(), b.clone()) for k, b in loss.named_buffers()})
    changed = set()
    for epoch in (1, 2, 3):
        loss.set_epoch(epoch, 4)
        assert python_state(loss) == before[0]
        for k, b in loss.named_buffers():
            assert b.data_ptr() == before[1][k][0], k
            if not torch.equal(b, before[1][k][1]):
                changed.add(k)
    assert changed == {"weight"}


@pytest.mark.parametrize("case", ["ce", "lpl_drw", "python_epoch_state"])
def test_fit_records_the_step_once_per_run_where_it_may(tmp_path, monkeypatch, case):
    """Three epochs through the captured path: one recording for the whole run where the loss keeps its
    epoch state in buffers (no hook, DRW weights), one per epoch otherwise; the run trains as the eager
    one does either way."""
    from lpl_train.losses import build_loss

    def loss():
        if case == "ce":
            return nn.CrossEntropyLoss()
        if case == "lpl_drw":
            return build_loss("lpl", num_classes=4, class_counts=[24, 24, 24, 24], drw_epoch=1,
                              epsilon=0.3, alpha=0.1)  # fmt: skip
        return _PythonEpochLoss()

    cfg = make_cfg(epochs=3, capture="graph")
    fit(cfg, tmp_path / "eager", components=make_components(loss=loss(), dropout=0.0), log=print)
    made = _force_graph(monkeypatch)
    fit(cfg, tmp_path / "graph", components=make_components(loss=loss(), dropout=0.0), log=print)
    assert len(made) == 1
    assert made[0].recordings == (3 if case == "python_epoch_state" else 1)
    a, b = (read_metrics(tmp_path / k) for k in ("eager", "graph"))
    for ra, rb in zip(a, b, strict=True):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)
    wa, wb = (load_checkpoint(tmp_path / k / "checkpoint.pt")["model"] for k in ("eager", "graph"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


def test_fit_logs_its_step_mode_on_cpu(tmp_path):
    lines = []
    fit(
        make_cfg(epochs=1, capture="graph"),
        tmp_path,
        components=make_components(),
        log=lines.append,
    )
    assert any("step: eager (train.capture = 'graph': CUDA graphs need a CUDA device; this run is on cpu)"
               in s for s in lines), lines  # fmt: skip


def test_fit_through_the_captured_path_matches_eager(tmp_path, monkeypatch):
    cfg = make_cfg(epochs=2)
    fit(cfg, tmp_path / "eager", components=make_components(batch_size=20, dropout=0.0), log=print)
    _force_graph(monkeypatch)
    lines = []
    fit(cfg, tmp_path / "graph", components=make_components(batch_size=20, dropout=0.0),
        log=lines.append)  # fmt: skip
    assert any("step: graph (train.capture = 'auto': forced by the test)" in s for s in lines)
    a, b = (read_metrics(tmp_path / k) for k in ("eager", "graph"))
    for ra, rb in zip(a, b, strict=True):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)
        assert rb["train_top1_error"] == ra["train_top1_error"]
        assert rb["lr"] == ra["lr"]  # a float in the record, not a tensor
    wa, wb = (load_checkpoint(tmp_path / k / "checkpoint.pt")["model"] for k in ("eager", "graph"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)
    ck = load_checkpoint(tmp_path / "graph" / "checkpoint.pt")
    assert all(isinstance(g["lr"], float) for g in ck["optimizer"]["param_groups"])


@pytest.mark.parametrize(
    "fail,fail_check,why,counts",
    [
        (
            "operation not permitted when stream is capturing",
            None,
            "operation not permitted",
            (1, 0, 0),
        ),
        # the checked eager step (host synchronisation made an error) fails first: no recording starts
        ("never reached", "called a synchronizing op", "called a synchronizing op", (1, 0, 0)),
    ],
    ids=["recording-fails", "check-fails"],
)
def test_auto_falls_back_to_eager_when_the_check_or_the_recording_fails(
    tmp_path, monkeypatch, fail, fail_check, why, counts
):
    """``"auto"`` runs eagerly from the failure on, says why once, and trains as an eager run does;
    ``"graph"`` raises. (checks, recordings kept, recordings counted) of the step object tell which
    stage failed."""
    cfg = make_cfg(epochs=2)
    fit(cfg, tmp_path / "eager", components=make_components(dropout=0.0), log=print)
    made = _force_graph(monkeypatch, fail=fail, fail_check=fail_check)
    lines = []
    fit(cfg, tmp_path / "auto", components=make_components(dropout=0.0), log=lines.append)
    assert sum(f"step: eager (recording the CUDA graph failed: {why}" in s for s in lines) == 1, (
        lines
    )
    assert [(m.api.checks, m.api.recorded, m.recordings) for m in made] == [counts]
    wa, wb = (load_checkpoint(tmp_path / k / "checkpoint.pt")["model"] for k in ("eager", "auto"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match=why):
        fit(make_cfg(epochs=1, capture="graph"), tmp_path / "graph",
            components=make_components(dropout=0.0), log=print)  # fmt: skip


def test_auto_raises_a_recording_that_fails_after_the_first(tmp_path, monkeypatch):
    """``"auto"`` falls back to eager only before the step was ever recorded: a later recording that
    fails (here the second epoch's, of a loss recorded again every epoch) is raised, not hidden."""
    made = _force_graph(monkeypatch)
    real_record = FakeGraphAPI.record

    def record(self, graph, fn):
        if self.recorded >= 1:
            raise RuntimeError("the second recording failed")
        return real_record(self, graph, fn)

    monkeypatch.setattr(FakeGraphAPI, "record", record)
    lines = []
    with pytest.raises(RuntimeError, match="the second recording failed"):
        fit(make_cfg(epochs=2), tmp_path, log=lines.append,
            components=make_components(loss=_PythonEpochLoss(), dropout=0.0))  # fmt: skip
    assert made[0].recordings == 1 and not any("step: eager (recording" in s for s in lines)


def test_the_cuda_check_forbids_synchronisation_and_host_reads_then_restores_both(monkeypatch):
    """``no_sync()`` on CUDA: sync debug mode "error" and the losses' recording form inside, the previous
    mode and the checks back after it, also when the step raised (the CUDA calls are stood in for)."""
    from lpl_train.perturbation_checks import _can_read_back

    modes = [1]  # "warn", as a user may have set it
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: modes[-1])
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    t = torch.zeros(2)
    with pytest.raises(ValueError, match="step failed"):
        with CAP._CudaGraphAPI(CUDA).no_sync():
            assert modes[-1] == "error" and not _can_read_back(t)
            raise ValueError("step failed")
    assert modes == [1, "error", 1] and _can_read_back(t)


def test_a_failed_recording_puts_the_stream_and_the_allocator_back(monkeypatch):
    """``torch.cuda.graph`` skips its stream restore when ``capture_end`` raises, and the allocator keeps
    sending allocations to the graph's pool: the API restores the caller's stream, ends the pool (a
    failure there is dropped) and raises the recording's error. The CUDA calls are stood in for."""
    calls = []

    class Graph:
        def pool(self):
            return (0, 7)

    class FailingCapture:
        def __init__(self, graph, capture_error_mode):
            calls.append(("capture", capture_error_mode))

        def __enter__(self):
            calls.append(("set_stream", "capture stream"))

        def __exit__(self, *exc):
            raise RuntimeError(
                "CUDA error: operation failed due to a previous error during capture"
            )

    def end_pool(device, pool):
        calls.append(("end_pool", device, pool))
        raise RuntimeError("endAllocatePool: not currently recording to mempool_id")

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: "caller's stream")
    monkeypatch.setattr(torch.cuda, "graph", FailingCapture)
    monkeypatch.setattr(torch.cuda, "set_stream", lambda s: calls.append(("set_stream", s)))
    monkeypatch.setattr(torch._C, CAP._pool_ender().__name__, end_pool)
    api = CAP._CudaGraphAPI(torch.device("cuda", 2))
    with pytest.raises(RuntimeError, match="during capture"):
        api.record(Graph(), lambda: calls.append(("step",)))
    assert calls == [("capture", "thread_local"), ("set_stream", "capture stream"), ("step",),
                     ("set_stream", "caller's stream"), ("end_pool", 2, (0, 7))]  # fmt: skip


def test_every_supported_torch_has_the_binding_that_ends_a_graphs_pool():
    """The binding was renamed (torch 2.3 has ``_cuda_endAllocateCurrentStreamToPool``, later ones
    ``_cuda_endAllocateToPool``); the cleanup after a failed recording finds it in the installed torch."""
    assert CAP._pool_ender().__name__ in (
        "_cuda_endAllocateToPool",
        "_cuda_endAllocateCurrentStreamToPool",
    )


# ----------------------------------------------------------------------------------- loss variation
def test_loss_variation_every_kth_step_of_each_epoch(tmp_path, monkeypatch):
    calls = []
    orig = TR._make_loss_variation

    def counting(loss, comps):
        lv = orig(loss, comps)
        inner = lv.update
        lv.update = lambda *a: (calls.append(1), inner(*a))
        return lv

    monkeypatch.setattr(TR, "_make_loss_variation", counting)
    # 96 samples / batch 16 = 6 steps per epoch: steps 0 and 4 of each epoch with every = 4
    fit(make_cfg(epochs=2, loss_variation=True, loss_variation_every=4), tmp_path / "k4",
        components=make_components(), log=print)  # fmt: skip
    assert len(calls) == 4
    calls.clear()
    fit(make_cfg(epochs=2, loss_variation=True, loss_variation_every=1), tmp_path / "k1",
        components=make_components(), log=print)  # fmt: skip
    assert len(calls) == 12
    a, b = (read_metrics(tmp_path / k) for k in ("k4", "k1"))
    assert all(r["loss_variation"]["relative_variation"] for r in a)
    wa, wb = (load_checkpoint(tmp_path / k / "checkpoint.pt")["model"] for k in ("k4", "k1"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the measurement never changes the training
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]


@pytest.mark.parametrize("path", ["eager", "graph"])
@pytest.mark.parametrize("name", ["lpl", "la_lpl", "lpl_scaled_drw"])
def test_the_loss_variation_reuses_the_step_s_perturbed_logits(tmp_path, monkeypatch, path, name):
    """LPL's loss variation is measured from the perturbed logits the step's own loss computed: the inner
    loop runs once per step, not once more on every measured step (6 of the 12 steps here), and the run
    records what running the loss again records: the same variation, losses and weights, bit for bit,
    eager and through the captured path."""
    from lpl_train.losses import build_loss
    from lpl_train.losses.lpl import LPLLoss

    def loss(reuse: bool) -> nn.Module:
        kw = {"num_classes": 4, "class_counts": [24, 24, 24, 24], "epsilon": 0.3, "alpha": 0.1}
        if name == "lpl_scaled_drw":
            kw.update(scale=4.0, drw_epoch=1)
        built = build_loss("la_lpl" if name == "la_lpl" else "lpl", **kw)
        if not reuse:  # the step calls the loss as any other; the measurement runs it again
            built.forward_with_perturbed = None
        return built

    loops = []
    inner = LPLLoss._perturbed
    monkeypatch.setattr(LPLLoss, "_perturbed", lambda self, *a, **k: (loops.append(1),
                                                                        inner(self, *a, **k))[1])  # fmt: skip
    cfg = make_cfg(epochs=2, loss_variation=True, loss_variation_every=2, capture="graph")
    counts = {}
    for reuse in (True, False):
        if path == "graph":
            _force_graph(monkeypatch)
        loops.clear()
        fit(cfg, tmp_path / str(reuse), components=make_components(loss=loss(reuse), dropout=0.0),
            log=print)  # fmt: skip
        counts[reuse] = len(loops)
    assert counts[False] - counts[True] == 6  # steps 0, 2 and 4 of each epoch's 6
    a, b = (read_metrics(tmp_path / k) for k in ("True", "False"))
    drop = ("train_time_s", "images_per_s", "train_end")
    assert [{k: v for k, v in r.items() if k not in drop} for r in a] == [
        {k: v for k, v in r.items() if k not in drop} for r in b
    ]
    assert all(r["loss_variation"]["relative_variation"] for r in a)
    wa, wb = (load_checkpoint(tmp_path / k / "checkpoint.pt")["model"] for k in ("True", "False"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# (torch.jit's deprecation warnings, on importing torch.compile)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_step_calls_the_loss_as_a_module_unless_that_is_exactly_lpl_s_forward():
    """The step takes LPL's perturbed logits through ``forward_with_perturbed`` only where calling the
    loss would run exactly ``LPLLoss.forward``: a loss with a hook (its own or global), a subclass or an
    instance that overrides ``forward``, and a compiled loss are called as modules."""
    from lpl_train.engine.step import _perturbed_fast_path
    from lpl_train.losses import build_loss
    from lpl_train.losses.lpl import LPLLoss

    def lpl():
        return build_loss("lpl", num_classes=4)

    assert _perturbed_fast_path(lpl()) is not None
    assert _perturbed_fast_path(build_loss("la_lpl", num_classes=4, class_counts=[4, 3, 2, 1]))
    assert _perturbed_fast_path(nn.CrossEntropyLoss()) is None
    hooked = lpl()
    handle = hooked.register_forward_hook(lambda *a: None)
    assert _perturbed_fast_path(hooked) is None
    handle.remove()
    assert _perturbed_fast_path(hooked) is not None
    pre = lpl()
    pre.register_forward_pre_hook(lambda *a: None)
    assert _perturbed_fast_path(pre) is None
    handle = nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:
        assert _perturbed_fast_path(lpl()) is None
    finally:
        handle.remove()

    class Override(LPLLoss):
        def forward(self, logits, target):
            return super().forward(logits, target) + 1.0

    assert _perturbed_fast_path(Override(num_classes=4)) is None
    inst = lpl()
    inst.forward = lambda logits, target: LPLLoss.forward(inst, logits, target)
    assert _perturbed_fast_path(inst) is None
    assert (
        _perturbed_fast_path(torch.compile(lpl())) is None
    )  # (compiled lazily: nothing runs here)


def test_hooks_and_overrides_of_the_loss_act_in_training(tmp_path):
    """Through fit, a forward hook on an LPL loss sees every training step (the ablation's δ recorder
    records every epoch), and a subclass's ``forward`` is what trains."""
    from lpl_train.ablation import attach_delta_recorder
    from lpl_train.losses import build_loss
    from lpl_train.losses.lpl import LPLLoss

    comps = make_components(loss=build_loss("lpl", num_classes=4), dropout=0.0)
    calls = []
    comps.loss.register_forward_hook(lambda *a: calls.append(1))
    rec = attach_delta_recorder(comps.loss, comps.train_loader, tmp_path / "a")
    fit(make_cfg(epochs=2), tmp_path / "a", components=comps, log=print)
    assert len(calls) == 12  # 6 steps in each of 2 epochs (the loss variation is off)
    assert rec is not None and len(rec.close()) == 2

    class Shifted(LPLLoss):
        def forward(self, logits, target):
            return super().forward(logits, target) + 10.0

    fit(make_cfg(epochs=1), tmp_path / "b", log=print,
        components=make_components(loss=Shifted(num_classes=4), dropout=0.0))  # fmt: skip
    assert read_metrics(tmp_path / "b")[0]["train_loss"] > 10.0


def test_study_runs_keep_the_loss_variation_at_every_step():
    from lpl_train.study_runs import engine_config

    study = {"datasets": {"d": {"name": "fmnist_lt"}}, "model": {"name": "fmnist_cnn"}, "epochs": 2}
    spec = {"key": "d/lpl/seed0", "dataset": "d", "model_params": {}, "loss": "lpl", "seed": 0}
    cfg = validate_config(engine_config(study, spec, {}))
    assert cfg["train"]["loss_variation_every"] == 1


# --------------------------------------------------------------------------- the GPU check, shortened
def load_benchmark(name: str, monkeypatch):
    """The script ``benchmarks/<name>.py`` as a module, registered in ``sys.modules`` for the test
    (dataclasses and pickling look the module up)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("key", ["resnet32", "resnet110", "wrn28_10"])
def test_gpu_check_measures_each_network_in_its_shipped_configs_settings(key, monkeypatch):
    """The device check's LPL/CE ratio is the loss's cost in the shipped config of that network: its LPL
    parameters (20 loop steps in Tables I/II, not the long-tail configs' 8), class count, network and
    loss-variation measurement; CE runs the same network and measurement."""
    from lpl_train.config import load_config
    from lpl_train.engine import check_config

    gc = load_benchmark("gpu_check", monkeypatch)
    name = gc.SHIPPED[key]
    cfg = load_config(name, ["train.device='cpu'"])
    lpl = gc.shipped_setting(key, "lpl", 64, 32, 1, "cpu", "off", {"dropout": 0.0})
    ce = gc.shipped_setting(key, "ce", 64, 32, 1, "cpu", "off", {"dropout": 0.0})
    assert lpl.config == name and cfg["loss"]["name"] == "lpl"
    assert lpl.loss_spec() == ("lpl", cfg["loss"]["params"]) and ce.loss_spec() == ("ce", {})
    assert lpl.classes == ce.classes == check_config(cfg)["num_classes"]
    assert lpl.model == ce.model == cfg["model"]["name"]
    assert lpl.model_params == ce.model_params == {**cfg["model"]["params"], "dropout": 0.0}
    assert lpl.loss_variation == ce.loss_variation == {"loss_variation": True,
                                                       "loss_variation_every": 10}  # fmt: skip
    assert gc.shipped_setting("fmnist_cnn", "lpl", 64, 32, 1, "cpu", "off", {}).lpl == gc.LPL


def test_gpu_check_ratios_are_of_medians_and_a_failed_measurement_fails_the_check(
    tmp_path, monkeypatch
):
    """The table's arithmetic on stand-in measurements: each variant's median over the repeats, the ratios
    as named (step time = 1 / images/s), the capture mode each variant asks for, exit 1 on a failure."""
    import json

    gc = load_benchmark("gpu_check", monkeypatch)
    rates = {("ce", "bare"): 100.0, ("ce", "off"): 50.0, ("ce", "graph"): 80.0, ("ce", "compile"): 90.0,
             ("lpl", "bare"): 90.0, ("lpl", "off"): 40.0, ("lpl", "graph"): 76.0, ("lpl", "compile"): 81.0,
             ("lpl", "graph+cl"): 78.0}  # fmt: skip
    calls: list = []

    def measured(s, what):
        calls.append((s.loss, what))
        if what == "compile" and s.loss == "lpl" and fail:
            raise RuntimeError("no recording")
        rep = sum(c == (s.loss, what) for c in calls)  # 1st, 2nd, 3rd repeat: x1, x6, x2
        return {"images_per_s": rates[s.loss, what] * (1, 6, 2)[rep - 1], "mode": what}

    monkeypatch.setattr(gc, "bare_loop", lambda s: measured(s, "bare"))
    monkeypatch.setattr(gc, "engine_run", lambda s, capture, out, compile_loss=False: measured(
        s, capture + ("+cl" if compile_loss else "")))  # fmt: skip
    import contextlib
    import os

    import lpl_train.engine.mps as M

    # one run through the executor, 3 at once, 3 at once under MPS (whose workers inherit its folder)
    def concurrent(s, capture, jobs, out):
        assert s.epochs == 3  # the concurrent runs' own length (quick mode)
        mps = bool(os.environ.get("CUDA_MPS_PIPE_DIRECTORY"))
        return {"images_per_s": {1: 100.0, 3: 912.0 if mps else 456.0}[jobs], "mode": capture}

    @contextlib.contextmanager
    def mps_server(mode, needed, log):
        assert needed and mode == "auto"
        with monkeypatch.context() as m:
            m.setenv("CUDA_MPS_PIPE_DIRECTORY", "/stand-in")
            status = M.MPSStatus(True, True, "a stand-in daemon")
            log(status.line())  # as mps_server says what it did
            yield status

    monkeypatch.setattr(gc, "concurrent", concurrent)
    monkeypatch.setattr(M, "mps_server", mps_server)
    args = ["--quick", "--models", "fmnist_cnn", "--repeats", "3", "--jobs", "3", "--compile",
            "--compile-loss"]  # fmt: skip
    fail = False
    assert gc.main([*args, "--out", str(tmp_path / "ok")]) == 0
    res = json.loads((tmp_path / "ok" / "gpu_check.json").read_text())
    med = {r["variant"]: r["images_per_s"] for r in res["rows"] if "variant" in r}
    assert med["ce engine graph"] == 160.0 and med["lpl bare"] == 180.0  # the median: x2 (mean: x3)
    ratios = next(r["ratios"] for r in res["rows"] if "ratios" in r)
    assert ratios == pytest.approx({
        "engine/bare (CE, eager)": 0.5, "LPL/CE step time (eager)": 50 / 40,
        "LPL/CE step time (graph)": 80 / 76, "graph/eager (CE)": 1.6, "graph/eager (LPL)": 1.9,
        "LPL/CE step time (compile)": 90 / 81, "compile/graph (LPL)": 81 / 76,
        "LPL/CE step time (graph, LPL's loss compiled)": 80 / 78,
        "3 concurrent/one (LPL graph)": 456 / 100,
        "3 concurrent/one (LPL graph, MPS)": 912 / 100})  # fmt: skip
    assert res["info"]["mps"] == "MPS: on (a stand-in daemon)"
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ
    fail = True
    assert gc.main([*args, "--out", str(tmp_path / "failed")]) == 1
    assert "| fmnist_cnn | lpl engine compile | failed: RuntimeError: no recording | nan |" in (
        tmp_path / "failed" / "gpu_check.md").read_text()  # fmt: skip
    # --mps on where MPS does not start: that row fails, every other measurement is kept and written
    fail = False

    @contextlib.contextmanager
    def refused(mode, needed, log):
        raise M.MPSError(f"--mps {mode}: a stand-in refusal")
        yield

    monkeypatch.setattr(M, "mps_server", refused)
    calls.clear()  # the stand-in measurements' repeats count again
    assert gc.main([*args, "--mps", "on", "--out", str(tmp_path / "no-mps")]) == 1
    res = json.loads((tmp_path / "no-mps" / "gpu_check.json").read_text())
    assert res["info"]["mps"] == "MPS: failed (--mps on: a stand-in refusal)"
    rows = {r["variant"]: r for r in res["rows"] if "variant" in r}
    assert rows["lpl graph x3 MPS"]["mode"] == "failed: --mps on: a stand-in refusal"
    assert rows["lpl graph x3"]["images_per_s"] == 456.0 and len(rows) == 12
    assert all(r["images_per_s"] > 0 for k, r in rows.items() if k != "lpl graph x3 MPS")


def test_gpu_check_concurrent_runs_are_rated_over_the_time_they_all_trained(tmp_path, monkeypatch):
    """N concurrent runs: ``images_per_s`` is their rate together over the window in which every run was
    past its first epoch (from the runs' ``train_end`` records), not the sum of their last epochs' rates
    (which counts runs that did not overlap as if they had); ``wall_images_per_s`` is every run's
    training images over the whole wall time, and runs that never overlapped give NaN and say so."""
    import json
    import types

    import lpl_train.experiment as X

    gc = load_benchmark("gpu_check", monkeypatch)
    # (start, end) of each run's epochs of 100 images; job0 pauses 0.5 s after each epoch (evaluation)
    spans = {"job0": [(0.0, 1.0), (1.5, 2.5), (3.0, 4.0)],
             "job1": [(0.5, 1.5), (1.5, 2.5), (2.5, 3.5), (3.5, 4.5)]}  # fmt: skip

    def execute(runs, runner, jobs, log):
        assert jobs == 2 and [r.key for r in runs] == list(spans)
        done = []
        for r in runs:
            r.out.mkdir(parents=True)
            recs = [{"epoch": i, "images_per_s": 100.0 / (e - b), "train_time_s": e - b, "train_end": e}
                    for i, (b, e) in enumerate(spans[r.key])]  # fmt: skip
            (r.out / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in recs))
            done.append(X.Outcome(r, "trained", {"images_per_s": 100.0, "mode": "eager"}))
        return done

    clock = iter([10.0, 20.0, 30.0, 40.0])  # each call's wall time: 10 s
    monkeypatch.setattr(X, "execute", execute)
    monkeypatch.setattr(gc, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    s = gc.Setting("fmnist_cnn", "lpl", 32, 16, 3, "cpu", "off", {})
    res = gc.concurrent(s, "graph", 2, tmp_path / "a")
    # window: from 1.5 (both second epochs start) to 4.0 (job0's last ends), 2.5 s: job0 trained 200
    # images in it (its pauses count as time), job1 250 (its last epoch half inside): 180 images/s.
    # Summing the last epochs' rates would give 200 (100 + 100), as if job0 never paused.
    assert res["overlap_s"] == 2.5 and res["images_per_s"] == pytest.approx(450 / 2.5)
    assert res["wall_images_per_s"] == pytest.approx(700 / 10.0) and res["mode"] == "eager"
    spans["job1"] = [(b + 5, e + 5) for b, e in spans["job1"]]  # they never trained at one time
    res = gc.concurrent(s, "graph", 2, tmp_path / "b")
    assert res["images_per_s"] != res["images_per_s"] and gc.NO_OVERLAP in res["mode"]


def test_gpu_check_times_the_last_epoch_after_the_device_finished(tmp_path, monkeypatch):
    from lpl_train.engine import read_metrics

    gc = load_benchmark("gpu_check", monkeypatch)
    synced: list = []
    monkeypatch.setattr(gc, "_sync", synced.append)
    s = gc.Setting("fmnist_cnn", "lpl", 64, 16, 2, "cpu", "off", {"in_channels": 3, "width": 2})
    bare = gc.bare_loop(s)
    assert len(bare["epoch_s"]) == 2 and bare["images_per_s"] == 64 / bare["epoch_s"][-1]
    assert len(synced) == 4  # before and after each timed epoch
    engine = gc.engine_run(s, "graph", tmp_path / "run")
    recs = read_metrics(tmp_path / "run")
    assert len(recs) == 2 and engine["images_per_s"] == recs[-1]["images_per_s"]


def test_gpu_check_quick_mode_runs_every_comparison(tmp_path, monkeypatch):
    """benchmarks/gpu_check.py's shortened mode (what benchmarks/gpu_check.sh runs with GPU_CHECK_QUICK=1),
    on a tiny CIFAR-format network, so the device script cannot rot between GPU sessions."""
    import json
    import pickle

    gc = load_benchmark("gpu_check", monkeypatch)
    args = ["--quick", "--out", str(tmp_path), "--models", "fmnist_cnn", "--jobs", "1",
            "--model-params", '{"in_channels": 3, "width": 2}']  # fmt: skip
    assert gc.main(args) == 0
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = {r["variant"]: r for r in res["rows"] if "variant" in r}
    assert set(rows) == {"ce bare", "ce engine eager", "ce engine graph", "lpl bare",
                         "lpl engine eager", "lpl engine graph", "lpl graph x1"}  # fmt: skip
    assert all(r["images_per_s"] > 0 for r in rows.values())
    assert rows["lpl engine graph"]["mode"] == "eager"  # the captured path falls back on a CPU
    assert res["info"]["mps"].startswith("MPS: off (")  # no GPU: the MPS row is left out, and why
    ratios = next(r["ratios"] for r in res["rows"] if "ratios" in r)
    assert {"engine/bare (CE, eager)", "LPL/CE step time (graph)",
            "graph/eager (LPL)"} <= set(ratios)  # fmt: skip
    assert rows["lpl graph x1"]["overlap_s"] > 0  # one run's steady epochs, through the executor
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| fmnist_cnn | lpl engine graph | eager |" in md
    assert "- fmnist_cnn: no shipped config (fmnist_cnn" in md
    assert res["info"]["settings"]["fmnist_cnn"]["lpl"] == gc.LPL
    # --compile adds the compiled step (on a CPU it falls back to eager, and says so); --compile-loss the
    # captured step with the loss compiled alone (on a CPU: eager, and the loss really compiled)
    args += ["--compile", "--compile-loss", "--out", str(tmp_path / "compiled")]
    assert gc.main(args) == 0
    res = json.loads((tmp_path / "compiled" / "gpu_check.json").read_text())
    rows = {r["variant"]: r for r in res["rows"] if "variant" in r}
    assert {"ce engine compile", "lpl engine compile", "lpl engine graph, loss compiled"} <= set(
        rows
    )
    assert (
        rows["lpl engine compile"]["mode"] == "eager"
        and rows["lpl engine compile"]["images_per_s"] > 0
    )
    assert rows["lpl engine graph, loss compiled"]["mode"] == "eager+loss compiled"
    ratios = next(r["ratios"] for r in res["rows"] if "ratios" in r)
    assert {"LPL/CE step time (compile)", "compile/graph (LPL)",
            "LPL/CE step time (graph, LPL's loss compiled)"} <= set(ratios)  # fmt: skip
    s = gc.Setting("fmnist_cnn", "lpl", 32, 16, 1, "cpu", "off", {})
    assert (
        pickle.loads(pickle.dumps(gc.SyntheticRunner(s, "graph"))).setting == s
    )  # worker processes


def test_gpu_check_fused_loop_rows_run_the_kernel_or_say_why_not(tmp_path, monkeypatch):
    """``--fused-loop`` adds LPL with ``fused_loop = true``, eager and captured, and its ratios; the rows
    run the kernel (here the C++ kernel, on a CPU), and where it cannot run they fail with the reason
    instead of timing the default loop under the fused loop's name."""
    import json
    import shutil

    from lpl_train import _cpu_pgd as CP
    from lpl_train import perturbation as P
    from lpl_train import perturbation_fused as PF

    if shutil.which("c++") is None:
        pytest.skip("no C++ compiler to build the fused loop's C++ kernel")
    monkeypatch.setattr(PF, "_interpreter_on", lambda: False)
    gc = load_benchmark("gpu_check", monkeypatch)
    launches = []
    real = P.pgd_fused
    monkeypatch.setattr(P, "pgd_fused", lambda *a, **k: launches.append(1) or real(*a, **k))
    args = ["--quick", "--models", "fmnist_cnn", "--jobs", "1", "--fused-loop",
            "--model-params", '{"in_channels": 3, "width": 2}']  # fmt: skip
    assert gc.main([*args, "--out", str(tmp_path / "ok")]) == 0
    res = json.loads((tmp_path / "ok" / "gpu_check.json").read_text())
    rows = {r["variant"]: r for r in res["rows"] if "variant" in r}
    for kind in ("eager", "graph"):
        row = rows[f"lpl engine {kind}, fused loop"]
        assert row["mode"] == "eager+fused loop" and row["images_per_s"] > 0
    assert launches  # the rows ran the kernel
    ratios = next(r["ratios"] for r in res["rows"] if "ratios" in r)
    assert {"LPL/CE step time (eager, fused loop)", "LPL/CE step time (graph, fused loop)"} <= set(
        ratios
    )
    launches.clear()
    monkeypatch.setattr(
        CP, "unavailable", lambda: "its C++ kernel could not be built (no compiler)"
    )
    assert gc.main([*args, "--out", str(tmp_path / "none")]) == 1
    res = json.loads((tmp_path / "none" / "gpu_check.json").read_text())
    rows = {r["variant"]: r for r in res["rows"] if "variant" in r}
    mode = rows["lpl engine graph, fused loop"]["mode"]
    want = "failed: fused loop unavailable: its C++ kernel could not be built"
    assert mode.startswith(want), mode
    assert not launches


def test_resume_measures_the_same_steps_bit_exact(tmp_path):
    """The k-th-step schedule counts from each epoch's first step, so a resumed run records the same loss
    variation (and weights) as an uninterrupted one."""
    cfg = make_cfg(epochs=3, loss_variation=True, loss_variation_every=4)
    fit(cfg, tmp_path / "whole", components=make_components(), log=print)
    fit(cfg, tmp_path / "cut", components=make_components(), stop_after_epoch=1, log=print)
    fit(cfg, tmp_path / "cut", components=make_components(), resume=True, log=print)
    a, b = (read_metrics(tmp_path / k) for k in ("whole", "cut"))
    drop = ("train_time_s", "images_per_s", "train_end")
    assert [{k: v for k, v in r.items() if k not in drop} for r in a] == [
        {k: v for k, v in r.items() if k not in drop} for r in b
    ]
    wa, wb = (load_checkpoint(tmp_path / k / "checkpoint.pt")["model"] for k in ("whole", "cut"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bench_lpl_counts_the_captured_loss_of_the_shipped_configs(monkeypatch):
    """benchmarks/bench_lpl.py (g), the command behind docs/lpl.md's operation counts of the whole loss:
    each config's loss runs on meta in the static form, so its count grows with the loop's fixed length
    (Tables I/II varied: 20 steps, fixed: 10) and not with the data; the perturbation is detached, so
    backward is the cross-entropy's few operations."""
    bench = load_benchmark("bench_lpl", monkeypatch)
    rows = {r["config"]: r for r in bench.bench_captured_ops()}
    assert set(rows) == set(bench.CAPTURED_CONFIGS)
    fixed, varied = (rows[f"tii_cifar100_resnet110_lpl_{k}"] for k in ("fixed", "varied"))
    per_step = (varied["non-view ops"] - fixed["non-view ops"]) / 10
    assert 9 <= per_step <= 20, per_step
    for r in rows.values():
        assert r["C"] == (10 if r["config"].startswith("tiv_") else 100)
        assert r["ops"] >= r["non-view ops"] > r["non-view ops, forward"]
        assert r["non-view ops"] - r["non-view ops, forward"] <= 6, r
    assert rows["tix_cifar100_lt100_la_lpl"]["loss"] == "la_lpl"
    # the engine's loss-variation measurement: running the loss again costs its whole forward; from the
    # step's perturbed logits, a few operations whatever the loop's length
    reused = {r["loss variation, from the step's δ"] for r in rows.values()}
    assert len(reused) == 1 and max(reused) <= 20, reused
    for r in rows.values():
        assert r["loss variation, loss run again"] >= r["non-view ops, forward"], r
    assert all("kernels, loss compiled" not in r for r in rows.values())  # only with --compile
    # with the fused loop, the loop is one launch whatever its length: fixed and varied bounds cost the same
    # few operations, far fewer than the static loop's (here under Triton's interpreter)
    fused = {k: r["launches, fused loop"] for k, r in rows.items()}
    if all(isinstance(v, int) for v in fused.values()):
        assert (
            abs(
                fused["tii_cifar100_resnet110_lpl_varied"]
                - fused["tii_cifar100_resnet110_lpl_fixed"]
            )
            <= 3
        )
        for k, r in rows.items():
            assert 10 <= fused[k] < r["non-view ops"] / 2, (k, fused[k])
    else:  # no Triton, or a CPU without its interpreter: the column says why
        assert all(str(v).startswith("n/a: ") for v in fused.values()), fused


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bench_lpl_counts_the_kernels_of_the_loss_compiled_alone(monkeypatch):
    """(g) with ``--compile``: the loss compiled as ``train.compile_loss`` compiles it runs as fewer
    kernels than its eager operations (inductor fuses each loop step's element-wise work and reductions),
    and at least one per loop step (a step's softmax needs the previous step's class means), both as a CPU
    compiles it (the masked steps in ``torch.cond`` blocks) and with every step run (as a GPU compiles it)."""
    bench = load_benchmark("bench_lpl", monkeypatch)
    (row,) = bench.bench_captured_ops(("tiv_cifar10_lt100_lpl_varied",),
                                      compiled_on=torch.device("cpu"))  # fmt: skip
    steps = 8  # Δε / α = 2 / 0.25
    assert steps <= row["kernels, loss compiled"] < row["non-view ops"], row
    assert steps <= row["kernels, loss compiled, every step"] < row["non-view ops"], row


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bench_lpl_times_lpl_inside_a_compiled_step(monkeypatch, capsys):
    """(h): the linear head and LPL compiled as one step agree with the eager loss (checked inside, before
    timing), the batch's K with a fixed bound is ⌊ε/α⌋ = 10, and without ``--compile`` the part says it
    was skipped."""
    bench = load_benchmark("bench_lpl", monkeypatch)
    row = bench._in_step_row(torch.device("cpu"), 10, 0.0, calls=1, repeats=1)
    assert row["C"] == 10 and row["batch K (mean)"] == 10
    times = ("K softmaxes [ms]", "CE step, compiled [ms]", "LPL step, compiled [ms]")
    assert all(row[k] > 0 for k in times), row
    assert bench.main(["--only", "instep"])["in_step"] is None
    assert "(h) skipped: it times compiled steps; add --compile" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["bench_lpl", "bench_loader"])
def test_benchmarks_on_cuda_without_a_cuda_device_are_one_line(name, monkeypatch, capsys):
    """``--device cuda`` where torch has no CUDA device: the argument is refused in one line (status 2),
    not a traceback from inside torch after the work has started."""
    bench = load_benchmark(name, monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    extra = ["--only", "captured"] if name == "bench_lpl" else ["--synthetic"]
    with pytest.raises(SystemExit) as exc:
        bench.main(["--device", "cuda", *extra])
    assert exc.value.code == 2
    assert "--device 'cuda': no CUDA device here" in capsys.readouterr().err


# ------------------------------------------------------------------ the compiled loss (compile_loss)
def _lpl(name: str = "lpl", alpha: float = 0.1, **params: Any) -> nn.Module:
    from lpl_train.losses import build_loss

    return build_loss(
        name, num_classes=4, class_counts=[24, 24, 24, 24], epsilon=0.3, alpha=alpha, **params
    )


def _spy_steps(monkeypatch) -> list:
    """The trainer's ``_Step`` objects, kept for the test to inspect."""
    made = []

    class Spy(TR._Step):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    monkeypatch.setattr(TR, "_Step", Spy)
    return made


def test_compile_loss_key_validates():
    assert make_cfg()["train"]["compile_loss"] is False
    assert make_cfg(compile_loss=True)["train"]["compile_loss"] is True
    for bad in ("yes", 1):
        with pytest.raises(ConfigError, match=r"'train.compile_loss' has value .*expected boolean"):
            make_cfg(compile_loss=bad)


def test_compile_loss_refuses_a_feature_level_loss_and_keeps_the_state_dict_keys(tmp_path):
    """A loss of features and classifier (ISDA) is refused when the step is built, naming the key; a
    loss of logits gets its compiled callable outside the registered modules (compiled lazily: nothing
    is compiled here), so checkpoints keep their keys."""
    from lpl_train.engine.step import _Step
    from lpl_train.losses import build_loss

    from .test_engine import TinyNet

    isda = build_loss("isda", num_classes=4)
    with pytest.raises(ValueError, match=r"'train.compile_loss' is true but the loss ISDALoss"):
        _Step(TinyNet(), isda, compiled=False, compile_loss=True)
    with pytest.raises(ValueError, match=r"'train.compile_loss' is true but the loss ISDALoss"):
        fit(make_cfg(epochs=1, compile_loss=True), tmp_path / "isda", log=print,
            components=make_components(loss=build_loss("isda", num_classes=4)))  # fmt: skip
    assert not (tmp_path / "isda").exists()  # refused before the run folder was written
    # DisturbLabel draws each step's labels from a generator seeded on the host: it cannot be traced
    with pytest.raises(ValueError, match=r"the loss DisturbLabelLoss cannot be compiled whole"):
        fit(make_cfg(epochs=1, compile_loss=True), tmp_path / "disturb", log=print,
            components=make_components(loss=build_loss("disturb_label", num_classes=4)))  # fmt: skip
    assert not (tmp_path / "disturb").exists()
    for loss in (_lpl(), nn.CrossEntropyLoss()):
        plain, compiled = (_Step(TinyNet(), loss, compiled=False, compile_loss=c)
                           for c in (False, True))  # fmt: skip
        assert compiled.compile_loss and not plain.compile_loss
        assert list(compiled.state_dict()) == list(plain.state_dict())
        assert [n for n, _ in compiled.named_modules()] == [n for n, _ in plain.named_modules()]
    fast = _Step(TinyNet(), _lpl(), compiled=False, compile_loss=True)
    assert fast._loss_call is None and fast._with_perturbed is not None  # LPL: the reuse path
    ce = _Step(TinyNet(), nn.CrossEntropyLoss(), compiled=False, compile_loss=True)
    assert ce._loss_call is not None and ce._with_perturbed is None


def test_capture_compile_compiles_network_and_loss_together_without_a_second_loss_compilation(
    tmp_path, monkeypatch
):
    """Under ``train.capture = "compile"`` the step's whole forward is compiled (``compile_step``, stood
    in for here): ``compile_loss`` adds no separate compilation and the log line does not claim one; the
    run trains as one without the key, bit for bit."""
    cfg = make_cfg(epochs=1, compile_loss=True)
    fit(make_cfg(epochs=1), tmp_path / "plain", components=make_components(loss=_lpl()), log=print)
    made = _spy_steps(monkeypatch)
    wrapped = []
    monkeypatch.setattr(TR, "run_capture",
                        lambda *a, **k: CAP.CaptureChoice("compile", "forced by the test"))  # fmt: skip
    monkeypatch.setattr(TR, "compile_step", wrapped.append)
    lines = []
    fit(cfg, tmp_path / "compile", components=make_components(loss=_lpl()), log=lines.append)
    assert wrapped == made and len(made) == 1 and not made[0].compile_loss
    assert lines[0].endswith("step: compile (train.capture = 'auto': forced by the test)"), lines[0]
    wa, wb = (load_checkpoint(tmp_path / k / "checkpoint.pt")["model"] for k in
              ("plain", "compile"))  # fmt: skip
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def _assert_trained_alike(eager, compiled):
    """Two run folders trained the same within float tolerance: losses, loss variation, weights; and
    their checkpoints hold the same keys."""
    for ra, rb in zip(read_metrics(eager), read_metrics(compiled), strict=True):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)
        va, vb = ra["loss_variation"], rb["loss_variation"]
        assert vb["count"] == va["count"]
        for key in ("relative_variation", "loss", "perturbed_loss"):
            assert vb[key] == pytest.approx(va[key], rel=1e-5, abs=1e-6), key
    ca, cb = (load_checkpoint(d / "checkpoint.pt") for d in (eager, compiled))
    assert list(cb["loss"]) == list(ca["loss"]) and list(cb["model"]) == list(ca["model"])
    for k in ca["model"]:
        torch.testing.assert_close(cb["model"][k], ca["model"][k], rtol=1e-5, atol=1e-6)


# (torch.jit's deprecation warnings, on importing torch.compile)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_compiled_loss_trains_as_the_eager_one_in_the_eager_and_the_captured_step(
    tmp_path, monkeypatch
):
    """``train.compile_loss``: LPL through the eager step and LA + LPL through the captured path (the
    stand-in graph API) with the loss compiled train as the eager loss does: the same losses, loss
    variation (from the compiled loss's perturbed logits) and weights within float tolerance, not bit
    for bit (the compiled loss runs the static inner loop, its arithmetic fused; with the varied bound
    used here its masked steps go in ``torch.cond`` blocks on a CPU, through inductor). Both compile
    the same ``forward_with_perturbed``; with dynamo's limit at one entry per code object they would
    collide (a hard error under fullgraph) unless each step compiles through a code object of its own,
    as a sweep's runs in one process need."""
    import torch._dynamo.config as dynamo_config
    from torch._dynamo.utils import counters

    made = _spy_steps(monkeypatch)
    cfg = make_cfg(epochs=2, loss_variation=True, loss_variation_every=2)
    compiled = make_cfg(epochs=2, loss_variation=True, loss_variation_every=2, compile_loss=True)
    graphs = []
    # dynamo's limit of compiled entries per code object (named cache_size_limit before torch 2.6)
    limit = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
    # a varied bound: 6 steps at most, the first 3 unmasked, then one block of masked steps
    varied = {"delta_epsilon": 0.3}
    for name in ("lpl", "la_lpl"):
        fit(cfg, tmp_path / f"{name}-eager", log=print,
            components=make_components(loss=_lpl(name, **varied), dropout=0.0))  # fmt: skip
        if name == "la_lpl":  # through the captured path from here on
            graphs = _force_graph(monkeypatch)
        before, lines = counters["stats"]["unique_graphs"], []
        with dynamo_config.patch(**{limit: 1}):
            fit(compiled, tmp_path / f"{name}-compiled", log=lines.append,
                components=make_components(loss=_lpl(name, **varied), dropout=0.0))  # fmt: skip
        assert counters["stats"]["unique_graphs"] > before  # compiled when first called
        assert made[-1].compile_loss and made[-1]._with_perturbed is not None
        assert lines[0].endswith("; loss compiled (torch.compile, fullgraph)"), lines[0]
        _assert_trained_alike(tmp_path / f"{name}-eager", tmp_path / f"{name}-compiled")
    assert "step: graph (train.capture = 'auto': forced by the test); loss compiled" in lines[0]
    assert len(graphs) == 1 and graphs[0].recordings == 1
    assert graphs[0].replays == 2 * 6 - graphs[0].eager_steps


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_run_with_the_compiled_loss_resumes_bit_exact_and_only_with_it(tmp_path):
    """Killed after an epoch and resumed, a run with the compiled loss ends as the uninterrupted one, bit
    for bit; resuming it with ``train.compile_loss = false`` (which changes the rounding) is refused,
    naming the key."""
    from lpl_train.engine import ConfigMismatch

    cfg = make_cfg(epochs=3, loss_variation=True, loss_variation_every=4, compile_loss=True)
    fit(cfg, tmp_path / "whole", components=make_components(loss=_lpl()), log=print)
    fit(cfg, tmp_path / "cut", components=make_components(loss=_lpl()), stop_after_epoch=1,
        log=print)  # fmt: skip
    with pytest.raises(ConfigMismatch, match=r"train\.compile_loss \(True → False\)"):
        fit(make_cfg(epochs=3, loss_variation=True, loss_variation_every=4), tmp_path / "cut",
            components=make_components(loss=_lpl()), resume=True, log=print)  # fmt: skip
    fit(cfg, tmp_path / "cut", components=make_components(loss=_lpl()), resume=True, log=print)
    a, b = (read_metrics(tmp_path / k) for k in ("whole", "cut"))
    drop = ("train_time_s", "images_per_s", "train_end")
    assert len(a) == 3 and [{k: v for k, v in r.items() if k not in drop} for r in a] == [
        {k: v for k, v in r.items() if k not in drop} for r in b
    ]
    wa, wb = (load_checkpoint(tmp_path / k / "checkpoint.pt")["model"] for k in ("whole", "cut"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_an_eager_step_after_the_recording_keeps_the_recorded_gradient_tensors():
    """An eager (smaller) batch after a recording reuses the gradient tensors the graph writes
    (``zero_grad(set_to_none=False)``): fresh tensors would leave ``p.grad`` apart from the graph's memory
    (stale gradients read on the host after later replays, and a second copy of every gradient)."""
    torch.manual_seed(0)
    model = nn.Linear(6, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def fb(x, y):
        v = nn.functional.cross_entropy(model(x), y)
        v.backward()
        return v.detach(), model(x).detach()

    step = CAP.GraphStep(fb, opt, CPU, warmup=1, graph_api=FakeGraphAPI(model, opt))
    g = torch.Generator().manual_seed(1)

    def batch(n):
        return torch.randn(n, 6, generator=g), torch.randint(0, 4, (n,), generator=g)

    for _ in range(3):  # warm-up, the checked eager step, the recording
        step(*batch(8))
    assert step.recordings == 1
    held = [p.grad for p in model.parameters()]  # held, so a fresh tensor cannot reuse their memory
    step(*batch(5))  # the smaller last batch runs eagerly
    assert step.eager_steps == 3
    assert all(p.grad is t for p, t in zip(model.parameters(), held, strict=True))


def test_a_network_with_any_float64_parameter_is_not_recorded_on_cuda():
    """One float64 parameter is enough: in the recorded fused step it would take a float32-rounded lr."""
    model = nn.Sequential(
        nn.Linear(3, 2), nn.Linear(2, 2).double()
    )  # float32 and float64 parameters
    c = CAP.run_capture(make_cfg(capture="graph"), torch.device("cuda"), 1, nn.CrossEntropyLoss(),
                        "fp32", model)  # fmt: skip
    assert c.mode == "eager" and "float64 parameters" in c.reason
