"""The training step's parts: network and loss as one module (so DDP sees every parameter), the optimiser,
the RNG state a checkpoint carries, and the per-class loss-variation measurement of Figs. 1, 2, 11."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lpl_train.perturbation import _work_dtype

from .components import Components


class _Step(nn.Module):
    """Network + loss as one module, so DDP sees every parameter used in the loss (ISDA, LC).

    ``compiled``: the network through ``torch.compile`` (``train.compile``). ``compile_loss``: the loss
    alone through ``torch.compile(fullgraph=True, dynamic=False)`` (``train.compile_loss``; LPL and LA + LPL
    through their ``forward_with_perturbed``, any other loss of logits as the module call); refused for a
    feature-level loss and for a loss marked ``compilable = False`` (DisturbLabel). Neither compiled
    callable is a registered submodule: the state_dict keys are those of the plain network and loss."""

    def __init__(
        self, model: nn.Module, loss: nn.Module, compiled: bool, compile_loss: bool = False
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.needs_features = bool(getattr(loss, "needs_features", False))
        if compile_loss:
            check_loss_compiles(loss)
        self.compile_loss = compile_loss
        # decided once, outside any compiled or recorded region (a hook registered on the loss after the
        # run has started is not seen here; a recorded step would not run it either)
        fast = _perturbed_fast_path(loss)
        loss_call: Callable[..., Any] | None = None
        if compile_loss:
            fast = None if fast is None else _compiled_loss(fast)
            loss_call = _compiled_loss(loss) if fast is None else None
        object.__setattr__(self, "_with_perturbed", fast)
        object.__setattr__(self, "_loss_call", loss_call)  # None: the loss module is called
        fwd: Callable[..., torch.Tensor] = model.forward_features if self.needs_features else model
        if compiled:
            fwd = torch.compile(fwd)
        object.__setattr__(
            self, "_fwd", fwd
        )  # not a registered submodule: state_dict keys unchanged

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, autocast: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Returns (loss value, logits, features or None, perturbed logits or None). The perturbed logits
        are those a loss with ``forward_with_perturbed`` (LPL, LA + LPL) took its cross-entropy of, detached,
        so the loss-variation measurement need not run the loss again."""
        with autocast:
            out = self._fwd(x)
        out = _work_dtype(out)
        if self.needs_features:
            value = self.loss(out, y, self.model.classifier)
            return value, self.model.classifier(out), out, None
        if self._with_perturbed is not None:
            value, perturbed = self._with_perturbed(out, y)
            return value, out, None, perturbed
        if self._loss_call is not None:
            return self._loss_call(out, y), out, None, None
        return self.loss(out, y), out, None, None


def check_loss_compiles(loss: nn.Module) -> None:
    """Refuse ``train.compile_loss`` for a loss that cannot be compiled alone: a feature-level loss (it
    works on the features and the classifier) or one marked ``compilable = False`` (DisturbLabel)."""
    if getattr(loss, "needs_features", False):
        raise ValueError(
            f"config key 'train.compile_loss' is true but the loss {type(loss).__name__} works on "
            "the features and the classifier (needs_features): only a loss of logits is compiled "
            "alone; set train.compile_loss = false"
        )
    if getattr(loss, "compilable", True) is False:
        raise ValueError(
            f"config key 'train.compile_loss' is true but the loss {type(loss).__name__} cannot be "
            "compiled whole (it reads values on the host every step); set train.compile_loss = false"
        )


def _compiled_loss(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(logits, target)`` through ``torch.compile(fullgraph=True, dynamic=False)``, called through a
    function with a code object of its own. Dynamo keeps its compiled entries per code object, and counts
    those of every loss instance against one limit (``recompile_limit``, 8, ``cache_size_limit`` in older
    releases; with ``fullgraph`` a hard error past it): compiled directly,
    ``LPLLoss.forward_with_perturbed`` would collect the entries of every run in a process (each setting
    and batch shape of a sweep's or a study's runs), and the ninth entry would fail its run. Here each
    step's entries (a run's one or two batch shapes) are its own and go with it."""

    def call(logits: torch.Tensor, target: torch.Tensor) -> Any:
        return fn(logits, target)

    own = types.FunctionType(call.__code__.replace(), call.__globals__, call.__name__,
                             call.__defaults__, call.__closure__)  # fmt: skip
    return torch.compile(own, fullgraph=True, dynamic=False)


def _perturbed_fast_path(loss: nn.Module) -> Callable[..., Any] | None:
    """``loss.forward_with_perturbed`` where calling ``loss`` would run exactly ``LPLLoss.forward`` (an LPL
    or LA + LPL loss whose ``forward`` is not overridden, by a subclass or on the instance, with no module
    hook, its own or global, that a call would run); else None, and the step calls the loss itself, so
    hooks (the ablation's δ recorder), overrides and a ``torch.compile``d loss keep working."""
    from lpl_train.losses.lpl import LPLLoss

    method = getattr(loss, "forward_with_perturbed", None)
    if method is None or not isinstance(loss, LPLLoss) or "forward" in vars(loss):
        return None
    if type(loss).forward is not LPLLoss.forward:
        return None
    own = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    if any(getattr(loss, name, None) for name in own):
        return None
    from torch.nn.modules import module as M

    glob = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
            "_global_backward_pre_hooks")  # fmt: skip
    if any(getattr(M, name, None) for name in glob):
        return None
    return method


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)


def _optimizer(params: list[nn.Parameter], o: dict[str, Any]) -> torch.optim.Optimizer:
    if o["name"] == "sgd":
        return torch.optim.SGD(
            params,
            lr=o["lr"],
            momentum=o["momentum"],
            nesterov=o["nesterov"],
            weight_decay=o["weight_decay"],
        )
    cls = torch.optim.Adam if o["name"] == "adam" else torch.optim.AdamW
    return cls(params, lr=o["lr"], weight_decay=o["weight_decay"])


def _rng_state() -> dict[str, Any]:
    st: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


# ----------------------------------------------------------------------------------- loss variation
class _LossVariation:
    """Per-class relative loss variation (l' − l)/l of the trained loss against plain CE/BCE (Figs. 1, 2, 11).

    l' is the loss's own per-sample value (``reduction="none"``) on the detached logits of the step, through
    :meth:`LossVariation.update_with` (LDAM is compared on its scaled logits s·u), or, for LPL and LA + LPL
    trained through their ``forward_with_perturbed``, from the perturbed logits the step computed
    (:meth:`LossVariation.update_from_perturbed`, the same values); for a feature-level loss (ISDA) it is
    CE on its ``augmented_logits``. The loss's buffers are restored after the measurement, so
    it changes neither the gradient nor any loss state (counters, statistics).
    """

    def __init__(self, loss: nn.Module, num_classes: int, multi_label: bool) -> None:
        from lpl_train import loss_variation as LV

        self.loss = loss
        self.features = bool(getattr(loss, "needs_features", False))
        self.acc = LV.LossVariation(num_classes, multi_label=multi_label, validate=False)
        self.ok = hasattr(loss, "augmented_logits") if self.features else hasattr(loss, "reduction")

    @torch.no_grad()
    def update(
        self,
        logits: torch.Tensor,
        y: torch.Tensor,
        features: torch.Tensor | None,
        classifier: nn.Module | None,
        perturbed: torch.Tensor | None = None,
    ) -> None:
        if self.features:  # augmented_logits reads the statistics without updating them
            aug = self.loss.augmented_logits(features, y, classifier)
            self.acc.update(logits, y, perturbed_logits=_work_dtype(aug))
            return
        if perturbed is not None and y.dim() == 1 and not self.acc.multi_label:
            # the perturbed logits the step's loss already computed (LPL, LA + LPL): what update_with
            # would compute by running the loss again, without the second run
            self.acc.update_from_perturbed(self.loss, logits, y, perturbed)
            return
        # update_with restores the loss's reduction and buffers, and measures LDAM on its own scale (s·u).
        # On an accelerator the loss runs as a CUDA graph records it (no value checks, LPL's static loop:
        # the form the captured step trains with), so measuring does not wait for the device.
        with _no_host_reads_off_cpu(logits.device):
            self.acc.update_with(self.loss, logits, y)

    def result(self) -> dict[str, Any]:
        res = self.acc.compute()
        self.acc.reset()
        return res


def _no_host_reads_off_cpu(device: torch.device) -> Any:
    """:func:`~lpl_train.perturbation.no_host_reads` on an accelerator; nothing on the CPU, where a host
    read costs no waiting and the LPL loop's early stop saves work."""
    from lpl_train.perturbation_checks import no_host_reads

    return contextlib.nullcontext() if device.type == "cpu" else no_host_reads()


def _make_loss_variation(loss: nn.Module, comps: Components) -> _LossVariation | None:
    try:
        lv = _LossVariation(loss, comps.num_classes, comps.multi_label)
    except (ImportError, AttributeError):
        return None
    return lv if lv.ok else None
