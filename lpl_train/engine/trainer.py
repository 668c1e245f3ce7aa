"""One run's training state and its epoch: model, loss, optimiser, precision, the steps of an epoch,
evaluation on the evaluation epochs, the best epochs, and what goes into a checkpoint and ``final.json``."""

from __future__ import annotations

import json
import platform
import time
from typing import Any

import torch
from torch import nn

from lpl_train.perturbation import _work_dtype
from lpl_train.perturbation_fused import fused_loop_kernel, fused_loop_unavailable

from .capture import (
    DeviceMeter,
    GraphStep,
    compile_step,
    compiles_loss_alone,
    float_lrs,
    records_once,
    run_capture,
)
from .components import Components, build_components, check_processes, check_train_batches
from .devices import autocast_for, resolve_precision
from .distributed import DistInfo, check_checkpoint_world, seed_rank_draws
from .evaluate import evaluate
from .progress import progress_bar
from .run_folder import BEST_PENDING, RunFolder
from .schedules import lr_factor
from .step import _make_loss_variation, _optimizer, _rng_state, _set_rng_state, _Step, _unwrap

__all__ = ["TrainingDiverged"]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the run folder keeps the last good checkpoint."""


class _Trainer:
    """The model, loss, optimiser and step of one run, and its position (epoch, global step, best)."""

    def __init__(
        self,
        cfg: dict[str, Any],
        device: torch.device,
        dist: DistInfo,
        components: Components | None,
        show: bool,
    ) -> None:
        tr = cfg["train"]
        self.cfg, self.device, self.dist, self.show = cfg, device, dist, show
        comps = components if components is not None else build_components(cfg, device, dist)
        if not isinstance(comps, Components):
            raise TypeError(f"components must be a Components instance, got {type(comps).__name__}")
        self.comps = comps
        self.model, self.loss = comps.model.to(device), comps.loss.to(device)
        self.channels_last = tr["channels_last"] is True or (
            tr["channels_last"] == "auto" and device.type == "cuda"
        )
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if tr["sync_batchnorm"] and dist.world > 1:  # BatchNorm statistics over the global batch
            check_processes(cfg, dist.world, device)  # on a CUDA device
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.precision = resolve_precision(device, tr["amp"])
        self.capture = run_capture(cfg, device, dist.world, self.loss, self.precision, self.model)
        step_mod = _Step(self.model, self.loss, compiled=tr["compile"],
                         compile_loss=compiles_loss_alone(cfg, self.capture))  # fmt: skip
        self.loss_compiled = step_mod.compile_loss
        self.params = [p for p in step_mod.parameters() if p.requires_grad]
        self.opt = _optimizer(self.params, cfg["optim"])
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.runner: nn.Module = step_mod
        if self.capture.mode == "compile":
            compile_step(step_mod)
        if dist.world > 1:
            if device.type == "cpu" and not self.channels_last:
                _match_cpu_grad_layout(step_mod)
            self.runner = nn.parallel.DistributedDataParallel(
                step_mod,
                device_ids=[device.index] if device.type == "cuda" else None,
            )
        self.autocast = autocast_for(device, self.precision)
        self.scaler = torch.amp.GradScaler(device.type) if self.precision == "fp16" else None
        self.lv = _make_loss_variation(self.loss, comps) if tr["loss_variation"] else None
        self.lv_every = tr["loss_variation_every"]
        self.graph: GraphStep | None = None
        self.notes: list[str] = []  # one-line messages for the run's log (a capture that fell back)
        # (the config's data keys name a loader only where they built it)
        check_train_batches(
            comps.train_loader, None if components is not None else cfg["data"]["batch_size"]
        )
        self.n_iter = len(comps.train_loader)
        self.epoch, self.step, self.best, self.best_val = 0, 0, {}, {}
        # wall-clock seconds the processes before this one trained, up to the checkpoint it resumed from
        self.wall_before = 0.0

    def describe(self) -> str:
        return (
            f"{self.cfg['name']}: device {self.device}, precision {self.precision}, "
            f"{self.dist.world} process(es), torch {torch.__version__}; "
            f"{self.capture.line(self.cfg['train']['capture'])}"
            + ("; loss compiled (torch.compile, fullgraph)" if self.loss_compiled else "")
            + self._fused_loop_note()
        )

    def _fused_loop_note(self) -> str:
        """What LPL's ``fused_loop = true`` runs in this run: its kernel, or the default loop and why."""
        if getattr(self.loss, "fused_loop", False) is not True:
            return ""
        if self.loss_compiled or self.capture.mode == "compile":
            return "; fused_loop: the compiled loss fuses the inner loop itself"
        why = fused_loop_unavailable(torch.empty(0, self.comps.num_classes, device=self.device))
        if why is None:
            return f"; fused_loop: LPL's inner loop is one {fused_loop_kernel(self.device)} kernel"
        return f"; fused_loop: the default inner loop runs ({why})"

    def _graph_step(self) -> GraphStep:
        """The captured step (built on first use, after a checkpoint was restored into the optimiser)."""
        if self.graph is None:
            if hasattr(self.loss, "validate"):
                self.loss.validate = False  # its input checks read values on the host
            autocast = (
                torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
                if self.precision == "bf16"
                else self.autocast
            )

            def forward_backward(x: torch.Tensor, y: torch.Tensor) -> Any:
                value, logits, _, perturbed = self.runner(x, y, autocast)
                value = self._with_l2(value)
                self._backward(value)
                return value.detach(), logits.detach(), perturbed

            self.graph = GraphStep(forward_backward, self.opt, self.device)
        return self.graph

    def _with_l2(self, value: torch.Tensor) -> torch.Tensor:
        l2 = self.cfg["optim"]["l2_all"]
        if l2:
            value = value + l2 * sum((_work_dtype(p) ** 2).sum() for p in self.model.parameters())
        return value

    def restore(self, ck: dict[str, Any]) -> None:
        check_checkpoint_world(ck, self.dist.world)
        self.model.load_state_dict(ck["model"])
        self.loss.load_state_dict(ck["loss"])
        # the step's form as built here: a captured run's checkpoint carries fused SGD or capturable
        # Adam/AdamW, which an eager step (on a CPU: capturable Adam fails) must not inherit; the
        # captured step makes the restored optimiser capturable again. Given to the saved groups
        # before loading, so that the state is placed for them (Adam's step counts on the host for
        # an eager step, not on the device, where each would be read back at every step)
        saved = ck["optimizer"]
        groups = [{**sg, **{k: g[k] for k in ("fused", "foreach", "capturable") if k in g}}
                  for sg, g in zip(saved["param_groups"], self.opt.param_groups, strict=True)]  # fmt: skip
        self.opt.load_state_dict({**saved, "param_groups": groups})
        if self.scaler is not None and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.epoch, self.step = ck["epoch"], ck["step"]
        self.best, self.best_val = ck.get("best", {}), ck.get("best_val", {})
        # (checkpoints from before the wall time was stored carry none: counted as 0)
        self.wall_before = float(ck.get("wall_s", 0.0))
        _set_rng_state(ck["rng"])

    def state(self, epoch: int, cfg_text: str, wall_s: float) -> dict[str, Any]:
        """The checkpoint after ``epoch`` epochs; ``wall_s``: the run's training wall time so far
        (:meth:`wall`), carried so that a resumed run's ``final.json`` counts the earlier processes."""
        st = {
            "format": 1,
            "epoch": epoch,
            "step": self.step,
            "model": _unwrap(self.model).state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": float_lrs(self.opt.state_dict()),
            "rng": _rng_state(),
            "best": dict(self.best),
            "best_val": dict(self.best_val),
            "config": cfg_text,
            "world_size": self.dist.world,
            "wall_s": wall_s,
        }
        if self.scaler is not None:
            st["scaler"] = self.scaler.state_dict()
        return st

    def last_record(self, folder: RunFolder) -> dict[str, Any]:
        return json.loads(folder._records[-1]) if folder._records else {}

    def wall(self, t_run: float) -> float:
        """Wall-clock seconds of training so far: this process's since ``t_run`` (the start of its epoch
        loop) plus those of the processes before it, up to the checkpoint this one resumed from (time a
        killed process spent after its last checkpoint is not known, so not counted)."""
        return self.wall_before + (time.perf_counter() - t_run)

    def eta(self, epoch: int, t_run: float) -> float:
        done = epoch + 1 - self.epoch
        left = self.cfg["schedule"]["epochs"] - epoch - 1
        return (time.perf_counter() - t_run) / done * left

    def train_epoch(self, epoch: int, folder: RunFolder) -> dict[str, Any]:
        """One epoch of steps; returns the epoch's record (training part)."""
        cfg, comps, opt, dist, device = self.cfg, self.comps, self.opt, self.dist, self.device
        E = cfg["schedule"]["epochs"]
        seed_rank_draws(cfg["train"]["seed"], dist, epoch)  # under DDP: the rank's own stream
        comps.train_loader.set_epoch(epoch)
        if hasattr(self.loss, "set_epoch"):
            self.loss.set_epoch(epoch, E)
        self.runner.train()
        graph = self._graph_step() if self.capture.mode == "graph" else None
        if graph is not None and not records_once(self.loss):
            graph.new_epoch()  # recorded again after set_epoch: per-epoch loss changes are not frozen
        t0 = time.perf_counter()
        meter = DeviceMeter(device)  # read once, after the epoch: no host synchronisation per step
        bad_step = torch.full((), -1, dtype=torch.long, device=device)
        lr_now = float(opt.param_groups[0]["lr"])
        bar = progress_bar(
            comps.train_loader, self.n_iter, self.show, f"{cfg['name']} {epoch + 1}/{E}"
        )
        for it, (x, y) in enumerate(bar):
            f = lr_factor(epoch, it, self.n_iter, cfg["schedule"])
            lr_now = self.base_lrs[0] * f  # on the host (a captured step's lr is a float32 tensor)
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            if graph is not None:
                graph.set_lr([lr0 * f for lr0 in self.base_lrs])
                det, logits, perturbed = self._captured(graph, x, y)
                feats = None
                graph, stepped = self.graph, True  # graph None: "auto" fell back to eager
            else:
                stepped = False
                for g, lr0 in zip(opt.param_groups, self.base_lrs, strict=True):
                    g["lr"] = lr0 * f
                value, logits, feats, perturbed = self.runner(x, y, self.autocast)
                value = self._with_l2(value)
                opt.zero_grad(set_to_none=True)
                share = getattr(comps.train_loader, "share", 1.0) if dist.world > 1 else 1.0
                weighted = value if share == 1.0 else value * share  # (uneven last batch)
                self._backward(weighted)
                # recorded as weighted: the ranks' mean of the step's losses is the global batch's mean
                det = weighted.detach()
            finite = torch.isfinite(det)
            bad_step = torch.where(
                ~finite & (bad_step < 0), torch.full_like(bad_step, self.step), bad_step
            )
            if device.type == "cpu" and dist.world == 1 and not bool(finite):
                break  # (under DDP every rank must take the same steps: checked after the epoch)
            if self.lv is not None and it % self.lv_every == 0:
                # before the update: l' with the weights that produced the logits (a captured step has
                # updated already; it only captures losses of logits, which l' does not re-evaluate)
                # (the classifier only for a feature-level loss: a model of one's own may have none)
                self.lv.update(logits.detach(), y, None if feats is None else feats.detach(),
                               None if feats is None else self.model.classifier, perturbed)  # fmt: skip
            if not stepped:
                self._update()
            meter.update(det, logits.detach(), y)
            self.step += 1
            if self.show and it % 20 == 0:
                bar.set_postfix(loss=f"{float(det):.4f}", lr=f"{lr_now:.3g}")
        loss_sum = meter.loss_sum
        if dist.world > 1:  # any rank diverged → all stop; train_loss averaged over the ranks
            # the first bad step of any rank (MIN over the steps, -1 meaning none): a NaN on one rank
            # poisons every rank's weights at the next step, so MAX named that later step
            never = torch.iinfo(bad_step.dtype).max
            first = torch.where(bad_step < 0, torch.full_like(bad_step, never), bad_step)
            torch.distributed.all_reduce(first, op=torch.distributed.ReduceOp.MIN)
            bad_step = torch.where(first == never, torch.full_like(first, -1), first)
            torch.distributed.all_reduce(loss_sum)
            loss_sum /= dist.world
            torch.distributed.all_reduce(meter.correct)  # over the global batch
            seen_all = torch.tensor(meter.seen, dtype=torch.long, device=device)
            torch.distributed.all_reduce(seen_all)  # the ranks' shares may differ in the last batch
            meter.seen = int(seen_all)
        if int(bad_step) >= 0:
            self._diverged(folder, epoch, int(bad_step))
        train_time = time.perf_counter() - t0
        total, correct, seen = meter.read()
        record = {
            "epoch": epoch,
            "lr": lr_now,
            "train_loss": total / self.n_iter,
            "train_time_s": train_time,
            "images_per_s": seen / train_time if train_time > 0 else None,  # seen: every rank's
            # when the training part ended (Unix time): runs trained at once are compared over the
            # time they overlapped (lpl_train.experiment_throughput.throughput)
            "train_end": time.time(),
        }
        if not comps.multi_label and seen:
            record["train_top1_error"] = 100.0 * (1.0 - correct / seen)
        if self.lv is not None:
            record["loss_variation"] = self.lv.result()
        return record

    def _captured(self, graph: GraphStep, x: torch.Tensor, y: torch.Tensor) -> Any:
        """One step through the captured graph; under ``"auto"`` a step that fails the check before the
        first recording, or a graph that cannot be recorded, falls back to eager steps for the rest of the
        run (the reason goes to the log), under ``"graph"`` it raises. The failed step is run again
        eagerly (on CUDA only: a forward that ran before the failure has updated the batch-norm running
        statistics once already)."""
        try:
            return graph(x, y)
        except RuntimeError as exc:
            if self.cfg["train"]["capture"] != "auto" or graph.recordings:
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.notes.append(
                f"{self.cfg['name']}: step: eager (recording the CUDA graph failed: {first})"
            )
            self.graph = None
            self.capture = self.capture.__class__("eager", f"recording failed: {first}")
        lr = [float(g["lr"]) for g in self.opt.param_groups]
        for g, v in zip(self.opt.param_groups, lr, strict=True):
            g["lr"] = v
        value, logits, _, perturbed = self.runner(x, y, self.autocast)
        value = self._with_l2(value)
        self.opt.zero_grad(set_to_none=True)
        self._backward(value)
        self._update()
        return value.detach(), logits, perturbed

    def _backward(self, value: torch.Tensor) -> None:
        clip = self.cfg["optim"]["grad_clip"]
        if self.scaler is None:
            value.backward()
        else:
            self.scaler.scale(value).backward()
            if clip:
                self.scaler.unscale_(self.opt)
        if clip:
            nn.utils.clip_grad_norm_(self.params, clip)

    def _update(self) -> None:
        if self.scaler is None:
            self.opt.step()
        else:
            self.scaler.step(self.opt)
            self.scaler.update()

    def evaluate_into(self, record: dict[str, Any], epoch: int, folder: RunFolder) -> None:
        """Evaluate on the evaluation epochs (validation, then test) and keep the best epochs."""
        E, dist, comps = self.cfg["schedule"]["epochs"], self.dist, self.comps
        if (epoch + 1) % self.cfg["train"]["eval_every"] == 0 or epoch + 1 == E:
            # under DDP with sharded evaluation loaders every rank evaluates its part of each split, with
            # rank 0's BatchNorm statistics (each rank's last forward updated its own), and the sums are
            # combined; otherwise rank 0 evaluates the whole split and the others wait
            sharded = dist.world > 1 and comps.eval_sharded
            if sharded:
                for b in self.model.buffers():
                    torch.distributed.broadcast(b, src=0)
            if dist.main or sharded:
                # evaluated in float32, not under the training autocast: bf16 logits tie often, and
                # argmax breaks a tie towards the lower index, the head class on the long-tail sets
                args = (comps.num_classes, comps.class_counts, comps.multi_label, None,
                        self.channels_last)  # fmt: skip
                if comps.val_loader is not None:
                    val = evaluate(self.model, comps.val_loader, *args, distributed=sharded)
                    record.update({f"val_{k}": v for k, v in val.items()})
                    if dist.main:
                        self._keep_best_val(record, epoch, folder)
                test = evaluate(self.model, comps.test_loader, *args, distributed=sharded)
            if dist.main:
                record.update({f"test_{k}": v for k, v in test.items()})
                self.best = _update_best(self.best, record, epoch, comps.multi_label)
                if self.best_val.get("epoch") == epoch:  # the test score of the epoch chosen on val
                    key = "test_map" if comps.multi_label else "test_top1_error"
                    self.best_val = {**self.best_val, key: record.get(key)}
            if dist.world > 1:
                torch.distributed.barrier()
        record["best"] = dict(self.best)
        if self.best_val:
            record["best_val"] = dict(self.best_val)

    def _keep_best_val(self, record: dict[str, Any], epoch: int, folder: RunFolder) -> None:
        new = _update_best(self.best_val, record, epoch, self.comps.multi_label, split="val")
        if new is not self.best_val:
            self.best_val = new
            # best.next.pt: best.pt once this epoch's checkpoint is written (RunFolder.end_epoch)
            folder.save_checkpoint(
                {"format": 1, "epoch": epoch + 1, "model": _unwrap(self.model).state_dict(),
                 "best_val": dict(new), "config_name": self.cfg["name"]},
                BEST_PENDING,
            )  # fmt: skip

    def _diverged(self, folder: RunFolder, epoch: int, step: int) -> None:
        ckpt = folder / "checkpoint.pt"
        kept = (
            f"the last good checkpoint {str(ckpt)!r} is kept"
            if ckpt.exists()
            else "no checkpoint was written"
        )
        msg = (
            f"training loss became non-finite (NaN/inf) in run {self.cfg['name']!r} in epoch {epoch + 1} "
            f"of {self.cfg['schedule']['epochs']} (global step {step}); {kept}. Lower optim.lr, enable "
            "optim.grad_clip or check the loss parameters."
        )
        # with what `lpl-train report` needs to place the run in its row without final.json
        folder.write_diverged({"epoch": epoch, "step": step, "message": msg,
                               "seed": self.cfg["train"]["seed"], "world_size": self.dist.world,
                               "multi_label": bool(self.comps.multi_label)})  # fmt: skip
        raise TrainingDiverged(msg)

    def classes(self) -> dict[str, Any]:
        """The classes trained on: their number, training counts, names (if known), kind of labels."""
        comps = self.comps
        out = {
            "multi_label": comps.multi_label,
            "num_classes": comps.num_classes,
            "class_counts": list(comps.class_counts),
        }
        if comps.class_names:
            out["class_names"] = list(comps.class_names)
        return out

    def final(self, rec: dict[str, Any], wall: float, cfg_text: str) -> dict[str, Any]:
        """``final.json``'s content; ``cfg_text`` is the config as run (TOML), kept with the result so that
        a later check of the finished run compares with what was trained, not with an editable copy."""
        cfg = self.cfg
        last = {k[len("test_") :]: v for k, v in rec.items() if k.startswith("test_")}
        classes = self.classes()
        names = classes.pop("class_names", None)
        out = {
            "name": cfg["name"],
            "paper": cfg.get("paper"),
            "seed": cfg["train"]["seed"],
            "data_seed": cfg["data"]["seed"],
            "epochs": cfg["schedule"]["epochs"],
            **classes,
            "final": last,
            "best": self.best,
            "wall_s": wall,
        }
        if self.best_val:
            out["best_val"] = self.best_val
        if names:
            out["class_names"] = names
        out["run"] = self.provenance()
        out["config"] = cfg_text
        return out

    def provenance(self) -> dict[str, Any]:
        """What was actually used: resolved device and precision, world size, versions."""
        from lpl_train import __version__ as version

        return {
            "device": str(self.device),
            "precision": self.precision,
            "world_size": self.dist.world,
            "torch": torch.__version__,
            "lpl_train": version,
            "python": platform.python_version(),
            "epochs_run": self.cfg["schedule"]["epochs"],
        }


def _update_best(
    best: dict[str, Any], rec: dict[str, Any], epoch: int, multi_label: bool, split: str = "test"
) -> dict[str, Any]:
    key, better = (f"{split}_map", max) if multi_label else (f"{split}_top1_error", min)
    if (
        key in rec
        and rec[key] is not None
        and (key not in best or better(rec[key], best[key]) != best[key])
    ):
        return {key: rec[key], "epoch": epoch}
    return best


def _match_cpu_grad_layout(module: nn.Module) -> None:
    """Give 4-D weights with one input channel (a first conv on grey images) the channels-last strides
    that the CPU convolution gives their gradients. With a single channel both layouts order the elements
    the same way (values and results are unchanged), but DDP compares strides and warned on every rank
    ("Grad strides do not match bucket view strides")."""
    for p in module.parameters():
        if p.dim() == 4 and p.shape[1] == 1 and p.is_contiguous():
            o, i, h, w = p.shape
            restrided = torch.empty_strided(p.shape, (i * h * w, 1, w * i, i), dtype=p.dtype,
                                            device=p.device)  # fmt: skip
            p.data = restrided.copy_(p.data)
