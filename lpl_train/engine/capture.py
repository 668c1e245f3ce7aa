"""The whole training step captured once and replayed (CUDA graphs), and the metrics kept on the device.

``train.capture`` chooses how a step runs:

* ``"off"``: eager, as always.
* ``"graph"``: forward, loss, backward, gradient clipping and the optimiser step recorded once into one CUDA
  graph (:class:`GraphStep`) and replayed for every batch of the captured shape; the batch is copied into
  static input buffers, the learning rate is a device tensor the optimiser reads (fused SGD, capturable
  Adam/AdamW), and nothing waits for the host. A batch of another shape (the last, smaller batch of an epoch
  without ``data.drop_last``) runs eagerly on the same parameters, gradients and optimiser state. The graph is
  recorded once per run where the loss keeps its per-epoch state in buffers it rewrites in place (no epoch
  hook, or LPL's and LDAM's DRW weights: :func:`records_once`), else again at the start of every epoch,
  after ``loss.set_epoch``, so a per-epoch change held in a Python value is never frozen into an old graph.
* ``"compile"``: the network and the loss through ``torch.compile(mode="reduce-overhead")`` (inductor's own
  CUDA graphs for forward and backward); the optimiser step stays eager.
* ``"auto"`` (default): ``"graph"`` where it is known to be safe -- one CUDA process, bf16 or fp32 (fp16's
  gradient scaler checks for inf on the host), a loss of logits whose per-step state lives in tensors
  (:data:`GRAPH_SAFE_LOSSES`) -- else eager. Before the first recording one eager step runs with host
  synchronisation forbidden (``torch.cuda.set_sync_debug_mode("error")``), so a step that reads a value
  or copies from the host fails there, before a recording starts. If that check or the recording fails,
  ``"auto"`` falls back to eager and says why; ``"graph"`` raises.

``train.compile_loss`` (the loss alone through ``torch.compile(fullgraph=True)``, in inductor's default mode,
whose kernels launch as eager code's do) changes none of these choices: the loss compiles in the warm-up
steps and the recording takes its kernels with the rest of the step. Under ``"compile"`` it adds nothing.

On anything but a CUDA device every mode runs eagerly (the log line says so): CPU training is unchanged.

:class:`DeviceMeter` sums the training loss, the correct predictions and the samples of an epoch in device
tensors; the host reads them once, at the end of the epoch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["CAPTURE_MODES", "GRAPH_SAFE_LOSSES", "CaptureChoice", "DeviceMeter", "GraphStep",
           "choose_capture", "compiles_loss_alone", "records_once", "run_capture"]  # fmt: skip

CAPTURE_MODES = ("auto", "off", "graph", "compile")

#: Registered losses of logits whose forward keeps no per-step Python state and needs no host
#: synchronisation while it is recorded (their value checks skip themselves then): ``"auto"`` captures
#: these.
GRAPH_SAFE_LOSSES = frozenset({"ce", "la", "ldam", "focal", "cb_ce", "cb_focal", "lpl", "la_lpl"})


def records_once(loss: nn.Module) -> bool:
    """Whether the captured step of a run training ``loss`` is recorded once for the whole run: the loss
    has no epoch hook, or its ``set_epoch`` only rewrites registered buffers in place (the loss says so with
    ``epoch_state_in_buffers = True``; LPL's and LDAM's DRW weights), which a recorded graph reads at every
    replay. Otherwise the step is recorded again at the start of every epoch, after ``set_epoch``, so that a
    per-epoch change held in a Python value is never frozen into the graph."""
    return not hasattr(loss, "set_epoch") or getattr(loss, "epoch_state_in_buffers", False) is True


@dataclass(frozen=True)
class CaptureChoice:
    """How the steps of a run execute: ``mode`` in {"eager", "graph", "compile"}, and why."""

    mode: str
    reason: str

    def line(self, requested: str) -> str:
        return f"step: {self.mode} (train.capture = {requested!r}: {self.reason})"


def choose_capture(
    requested: str,
    device: torch.device,
    *,
    world: int,
    precision: str,
    loss_name: str,
    needs_features: bool,
    compiled: bool = False,
    float64: bool = False,
) -> CaptureChoice:
    """The step mode ``train.capture = requested`` gives on ``device`` for this run (no side effects)."""
    if requested not in CAPTURE_MODES:
        raise ValueError(
            f"train.capture has value {requested!r}; allowed: {', '.join(CAPTURE_MODES)}"
        )
    if requested == "off":
        return CaptureChoice("eager", "capture turned off")
    if device.type != "cuda":
        return CaptureChoice(
            "eager", f"CUDA graphs need a CUDA device; this run is on {device.type}"
        )
    if world > 1:
        return CaptureChoice(
            "eager", f"{world} processes: DistributedDataParallel steps stay eager"
        )
    if requested == "compile":
        return CaptureChoice("compile", 'torch.compile(mode="reduce-overhead") on network and loss')
    if float64:
        return CaptureChoice(
            "eager",
            "float64 parameters: the recorded optimiser step reads its learning rate from a "
            "float32 device tensor (CUDA's fused SGD reads no other), so it stays eager and exact",
        )
    if precision == "fp16":
        return CaptureChoice(
            "eager", "fp16's gradient scaler checks for inf on the host every step"
        )
    if compiled:
        return CaptureChoice(
            "eager", "train.compile = true: the compiled network is not recorded again"
        )
    if needs_features:
        return CaptureChoice("eager", f"loss {loss_name!r} works on features and its classifier")
    if requested == "auto" and loss_name not in GRAPH_SAFE_LOSSES:
        return CaptureChoice(
            "eager",
            f'loss {loss_name!r} is not known to be graph-safe (set train.capture = "graph" to try)',
        )
    return CaptureChoice("graph", "one CUDA process, the whole step recorded and replayed")


def run_capture(
    cfg: dict[str, Any],
    device: torch.device,
    world: int,
    loss: nn.Module,
    precision: str,
    model: nn.Module | None = None,
) -> CaptureChoice:
    """The step mode of a run of ``cfg`` on ``device`` in ``world`` processes, training ``model`` with
    ``loss`` in ``precision``: what the Trainer runs, and what the dry run checks ``train.compile_loss``
    against."""
    tr = cfg["train"]
    float64 = model is not None and any(p.dtype == torch.float64 for p in model.parameters())
    return choose_capture(
        tr["capture"], device, world=world, precision=precision, loss_name=cfg["loss"]["name"],
        compiled=tr["compile"], needs_features=bool(getattr(loss, "needs_features", False)),
        float64=float64,
    )  # fmt: skip


def compiles_loss_alone(cfg: dict[str, Any], capture: CaptureChoice) -> bool:
    """Whether ``train.compile_loss`` compiles the loss alone in a run whose steps run as ``capture``
    says: unless the step mode "compile" compiles network and loss together (it adds nothing there)."""
    return bool(cfg["train"]["compile_loss"]) and capture.mode != "compile"


class DeviceMeter:
    """Training loss sum, correct predictions and samples of an epoch, accumulated on the device.

    :meth:`update` launches a few small kernels and never synchronises; :meth:`read` is the one host read
    of the epoch. ``correct`` counts top-1 hits for single-label targets (class indices); it stays 0 for
    multi-label targets.
    """

    def __init__(self, device: torch.device) -> None:
        # float64 where the device has it (as the evaluation's sums): a float64 run's losses are not
        # rounded to float32, and a float32 run's are summed without a float32 sum's rounding
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.loss_sum = torch.zeros((), dtype=dtype, device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.seen = 0  # batch sizes are known on the host

    def update(self, value: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.loss_sum += value
        if y.dim() == 1 and not y.is_floating_point():
            self.correct += (logits.argmax(1) == y).sum()
        self.seen += int(y.shape[0])

    def read(self) -> tuple[float, int, int]:
        """(loss sum, correct, samples): the epoch's one synchronisation."""
        return float(self.loss_sum), int(self.correct), self.seen


def _fused_sgd_runs_on(device: torch.device) -> bool:
    """Whether SGD's fused form runs on ``device`` (on CUDA always; on CPU from torch 2.4 on)."""
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices
    except ImportError:  # a later torch without this helper: it has the fused CPU form
        return True
    return device.type in _get_fused_kernels_supported_devices()


def _capturable_optimizer(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """Make ``opt`` replayable: learning rates as device tensors (set each step with ``fill_``), SGD fused
    (its foreach form reads a tensor lr on the host), Adam/AdamW capturable with their step counts on the
    device. Works on a freshly built or a just-restored optimiser. On a CPU without fused SGD (torch 2.3),
    where nothing is captured and the replay only runs the step's logic, SGD keeps its foreach form."""
    for g in opt.param_groups:
        lr = g["lr"]
        g["lr"] = (
            lr.to(device)
            if isinstance(lr, torch.Tensor)
            else torch.tensor(float(lr), device=device)
        )
        if isinstance(opt, torch.optim.SGD):
            if _fused_sgd_runs_on(device):
                g["fused"], g["foreach"] = True, False
        elif "capturable" in g:
            g["capturable"] = True
    for st in opt.state.values():
        if isinstance(st.get("step"), torch.Tensor):
            st["step"] = st["step"].to(device=device, dtype=torch.float32)


def float_lrs(state: dict[str, Any]) -> dict[str, Any]:
    """An optimiser ``state_dict`` with tensor learning rates written as floats (checkpoints stay loadable by
    an eager run and JSON-friendly)."""
    for g in state.get("param_groups", []):
        if isinstance(g.get("lr"), torch.Tensor):
            g["lr"] = float(g["lr"])
    return state


class GraphStep:
    """One training step (``forward_backward`` then ``opt.step()``) recorded into a CUDA graph and replayed.

    Args:
        forward_backward: ``(x, y) -> (loss, logits, ...)`` (a tuple of tensors or ``None``; the engine's
            adds the loss's perturbed logits); runs forward, loss, ``backward`` and clipping. The
            gradients it produces must be written, not accumulated: the recording starts from ``None`` grads.
        opt: the optimiser (made capturable here).
        device: the CUDA device.
        warmup: eager steps on a side stream before the first recording (lazy initialisations --
            optimiser state, library handles -- must not happen inside a recording).
        graph_api: ``new_graph()``, ``record(graph, fn) -> fn's outputs`` (recorded, not executed),
            ``replay(graph)``, ``side_stream()`` and ``no_sync()`` (contexts; in the second any host
            synchronisation raises); default: ``torch.cuda``'s. Tests pass a stand-in that keeps ``fn``
            and runs it on each replay, on the CPU.
    """

    def __init__(
        self,
        forward_backward: Callable[[torch.Tensor, torch.Tensor], tuple[Any, ...]],
        opt: torch.optim.Optimizer,
        device: torch.device,
        *,
        warmup: int = 3,
        graph_api: Any = None,
    ) -> None:
        self.fb, self.opt, self.device, self.warmup_left = forward_backward, opt, device, warmup
        self.api = graph_api or _CudaGraphAPI(device)
        _capturable_optimizer(opt, device)
        self.graph: Any = None
        self.static: tuple[torch.Tensor, ...] = ()
        self.out: tuple[Any, ...] | None = None
        self.replays = self.eager_steps = self.recordings = 0
        self.rows = 0  # the largest batch seen: only a batch of that size is recorded
        self.checked = False  # one eager step ran with host synchronisation forbidden

    def set_lr(self, lrs: list[float]) -> None:
        for g, lr in zip(self.opt.param_groups, lrs, strict=True):
            g["lr"].fill_(lr)

    def new_epoch(self) -> None:
        """Drop the recording: the next full batch records again (after ``loss.set_epoch``)."""
        self.graph, self.static, self.out = None, (), None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[Any, ...]:
        """One step on ``(x, y)``; returns ``forward_backward``'s outputs, valid until the next call. The step is recorded
        on the first batch after the warm-up (or after :meth:`new_epoch`) that is as large as any batch
        seen, so the last, smaller batch of an epoch is never the recorded shape. Before the first
        recording, one such batch runs eagerly with host synchronisation forbidden: a step that would fail
        to record fails there, cleanly."""
        rows = int(x.shape[0])
        self.rows = max(self.rows, rows)
        if self.graph is not None and _same(self.static, (x, y)):
            self.static[0].copy_(x)
            self.static[1].copy_(y)
            self.api.replay(self.graph)
            self.replays += 1
            assert self.out is not None
            return self.out
        if self.graph is None and self.warmup_left <= 0 and rows == self.rows:
            if not self.checked:
                out = self._eager(x, y, checked=True)
                self.checked = True
                return out
            return self._record_and_replay(x, y)
        return self._eager(x, y)

    def _eager(self, x: torch.Tensor, y: torch.Tensor, *, checked: bool = False) -> tuple[Any, ...]:
        """A step outside the graph, on the same parameter, gradient and optimiser-state tensors. With
        ``checked``, any host synchronisation in it raises (``api.no_sync()``), before a recording could
        fail on it: a failed recording can leave CUDA's stream, allocator and generator state changed for
        the rest of the process, an error here leaves nothing."""
        with self.api.side_stream(), self.api.no_sync() if checked else contextlib.nullcontext():
            self.opt.zero_grad(set_to_none=self.graph is None)  # keep the recorded grads' memory
            out = self.fb(x, y)
            self.opt.step()
        self.warmup_left -= 1
        self.eager_steps += 1
        return out

    def _record_and_replay(self, x: torch.Tensor, y: torch.Tensor) -> tuple[Any, ...]:
        self.static = (x.clone(), y.clone())
        self.opt.zero_grad(set_to_none=True)  # the recorded backward writes fresh gradients
        self.graph = self.api.new_graph()

        def step() -> tuple[Any, ...]:
            out = self.fb(*self.static)
            self.opt.step()
            return out

        self.out = self.api.record(self.graph, step)
        self.recordings += 1
        self.api.replay(self.graph)  # recording executes nothing: run this batch's step now
        self.replays += 1
        return self.out


def _same(static: tuple[torch.Tensor, ...], batch: tuple[torch.Tensor, torch.Tensor]) -> bool:
    return len(static) == 2 and all(
        s.shape == b.shape and s.dtype == b.dtype and s.stride() == b.stride()
        for s, b in zip(static, batch, strict=True)
    )


class _CudaGraphAPI:
    """``torch.cuda``'s graph calls, behind the five names :class:`GraphStep` uses."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream: Any = None

    def new_graph(self) -> Any:
        return torch.cuda.CUDAGraph()

    def record(self, graph: Any, fn: Callable[[], Any]) -> Any:
        # "thread_local": another thread's CUDA calls (a DataLoader's pin-memory thread allocating pinned
        # memory) cannot invalidate this recording; this thread's unsafe calls still fail it
        stream = torch.cuda.current_stream(self.device)
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                return fn()
        except BaseException:
            _after_failed_recording(graph, stream, self.device)
            raise

    def no_sync(self) -> Any:
        return _no_sync()

    def side_stream(self) -> Any:
        if self.stream is None:
            self.stream = torch.cuda.Stream(self.device)
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        return _StreamThenJoin(self.stream, self.device)

    def replay(self, graph: Any) -> None:
        graph.replay()


def _after_failed_recording(graph: Any, stream: Any, device: torch.device) -> None:
    """Undo what ``torch.cuda.graph`` leaves behind when its ``capture_end`` raises (it then skips the
    rest of its exit): the capture stream stays the current stream and the caching allocator keeps
    sending this thread's allocations to the graph's memory pool. Best effort; errors here are dropped so
    the recording's own error is the one raised."""
    torch.cuda.set_stream(stream)
    index = device.index if device.index is not None else torch.cuda.current_device()
    with contextlib.suppress(Exception):  # raises where capture_end got as far as ending the pool
        _pool_ender()(index, graph.pool())


def _pool_ender() -> Any:
    """torch's binding that stops sending a device's allocations to a graph's memory pool, ``(device
    index, pool id)``: ``_cuda_endAllocateToPool`` (torch 2.11, 2.13), ``_cuda_endAllocateCurrentStreamToPool``
    in older releases (the oldest supported torch, 2.3, has only that one)."""
    for name in ("_cuda_endAllocateToPool", "_cuda_endAllocateCurrentStreamToPool"):
        if hasattr(torch._C, name):
            return getattr(torch._C, name)
    raise AttributeError("this torch has no binding to end a CUDA graph's memory pool")


@contextlib.contextmanager
def _no_sync() -> Iterator[None]:
    """Any host synchronisation raises (``torch.cuda.set_sync_debug_mode("error")``: reads of device
    values, blocking copies from the host), and the losses run as a recording runs them
    (:func:`~lpl_train.perturbation.no_host_reads`); the previous mode is restored after."""
    from lpl_train.perturbation_checks import no_host_reads

    mode = torch.cuda.get_sync_debug_mode()
    with no_host_reads():
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(mode)


class _StreamThenJoin:
    def __init__(self, stream: Any, device: torch.device) -> None:
        self.stream, self.device = stream, device
        self.ctx: Any = None

    def __enter__(self) -> None:
        self.ctx = torch.cuda.stream(self.stream)
        self.ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.ctx.__exit__(*exc)
        torch.cuda.current_stream(self.device).wait_stream(self.stream)


def compile_step(step: nn.Module) -> None:
    """``"compile"`` mode: the network-and-loss forward of :class:`~lpl_train.engine.step._Step` through
    ``torch.compile(mode="reduce-overhead")`` (forward and backward as inductor CUDA graphs)."""
    inner = step.forward
    object.__setattr__(step, "forward", torch.compile(inner, mode="reduce-overhead"))
