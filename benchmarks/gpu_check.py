"""Training throughput on a GPU, side by side in one run: bare PyTorch loop vs the engine, CE vs LPL, eager vs
the captured step (``train.capture``), and one run vs N concurrent runs on the same device.

ResNet-32, ResNet-110 and WRN-28-10 at batch 128 on synthetic CIFAR-format data (uint8 3x32x32 on the device,
long-tailed labels; there is no CIFAR on the GPU machine), bf16 autocast and channels_last (the engine's CUDA
defaults), each in the settings of its shipped LPL config (:data:`SHIPPED`: the network and its parameters,
the class count, LPL's parameters and the loss-variation measurement); the CE rows train the same network in
the same settings with cross-entropy, so LPL/CE is the loss's cost in that config. Every variant of a model is
measured ``--repeats`` times, the variants interleaved within each repeat; the table gives the median
images/s of the last (steady) epoch and the ratios. The bare loop crops and flips its batches on the device
as the engine's loader does, so engine/bare is the engine's own cost. For the first network, one run (in
this process, as the sweep's executor runs a single run) and N runs at once (N worker processes through the
same executor), 10 epochs each, are rated by their images/s together over the window in which every run
was past its first epoch and before the end of its last (``lpl_train.experiment_throughput.overlap_throughput``, from
the runs' ``train_end`` records; evaluations between epochs count as time), so start-up and runs that did
not overlap inflate nothing; their aggregate over the whole wall time, start-up included, is reported beside
it. (The check of 2026-11-29 summed the runs' last
epochs' rates instead, whether or not those epochs overlapped in time.)
The runs' folders go into a fresh ``runs-*`` folder under ``--out``, so the check can be run again into it.

    python benchmarks/gpu_check.py [--quick] [--out DIR] [--repeats R] [--jobs N] [--models a,b] [--compile]
                                   [--compile-loss] [--fused-loop] [--mps off|auto|on]

``--compile`` adds the step under ``train.capture = "compile"`` (``torch.compile(mode="reduce-overhead")`` of
network and loss, which fuses each step of LPL's inner loop) for CE and LPL; its compilation is not timed
(the last epoch is), but it takes minutes of the run's wall time, so it is off by default.

``--compile-loss`` adds LPL in the captured step with ``train.compile_loss = true`` (the loss alone through
``torch.compile``, its inner loop fused, inside the recorded step) and the ratio LPL/CE with it; each run
compiles its loss in its warm-up steps (untimed, seconds to a minute of wall time).

``--fused-loop`` adds LPL with ``fused_loop = true`` (its inner loop as one kernel, one program or thread per
class: Triton on a GPU, C++ on a CPU; ``lpl_train.perturbation_fused``), eager and in the captured step, and the
ratios LPL/CE with it; where the kernel cannot run (no Triton on the GPU, no compiler on the CPU) the rows say
so instead of timing the default loop again.

``--mps`` (default ``auto``): after the N concurrent runs, the same N runs again as clients of a private NVIDIA
MPS daemon (``lpl_train.engine.mps``, as ``lpl-train sweep --mps``), where one starts and a CUDA process
computes through it; the JSON's ``info.mps`` says which.

``--quick`` (the default off CUDA): tiny data, ResNet-32 only, one repeat, two concurrent runs; on a CPU the
captured step falls back to eager (the ``mode`` column says what ran). Writes ``gpu_check.json`` and
``gpu_check.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

#: the shipped LPL config whose settings each network's rows use
SHIPPED = {
    "resnet32": "tiv_cifar10_lt100_lpl_varied",  # Table IV: the LA ResNet-32, index split
    "resnet110": "tii_cifar100_resnet110_lpl_varied",  # Table II: CIFAR-100, mean split, 20 loop steps
    "wrn28_10": "ti_cifar10_wrn28_10_lpl_varied",  # Table I
}
NO_OVERLAP = "the runs did not all train at one time"
# any other network (--models): the long-tail configs' LPL (step-normalised loop, 8 steps), 10 classes
LPL = {"split": "index", "tau": 0.5, "epsilon": 0.0, "delta_epsilon": 2.0, "alpha": 0.25,
       "validate": False}  # fmt: skip


def synthetic(
    n: int, classes: int = 10, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    g = torch.Generator().manual_seed(seed)
    prior = torch.tensor([0.01 ** (c / (classes - 1)) for c in range(classes)])
    targets = torch.multinomial(prior / prior.sum(), n, replacement=True, generator=g)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return images, targets, torch.bincount(targets, minlength=classes).clamp_min(1).tolist()


@dataclass
class Setting:
    """One measurement's shape; picklable (concurrent runs go to worker processes)."""

    model: str
    loss: str
    n_train: int
    batch: int
    epochs: int
    device: str
    amp: str
    model_params: dict[str, Any]
    classes: int = 10
    lpl: dict[str, Any] = field(default_factory=lambda: dict(LPL))
    # train.loss_variation(_every) as the shipped config has them; empty: the config defaults
    loss_variation: dict[str, Any] = field(default_factory=dict)
    config: str = ""  # the shipped config these settings come from

    def loss_spec(self) -> tuple[str, dict[str, Any]]:
        return ("ce", {}) if self.loss == "ce" else ("lpl", self.lpl)


def shipped_setting(key: str, loss: str, n_train: int, batch: int, epochs: int, device: str, amp: str,
                    model_params: dict[str, Any]) -> Setting:  # fmt: skip
    """The measured setting of network ``key``: from its shipped config (:data:`SHIPPED`) when it has one,
    with ``model_params`` over the config's; else ``key`` itself with :data:`LPL` and 10 classes."""
    if key not in SHIPPED:
        return Setting(key, loss, n_train, batch, epochs, device, amp, dict(model_params))
    from lpl_train.config import load_config
    from lpl_train.engine.components import _placeholder_shape

    name = SHIPPED[key]
    cfg = load_config(name)
    classes, _, _ = _placeholder_shape(cfg["data"], LookupError(name))  # known without the files
    tr = cfg["train"]
    return Setting(
        cfg["model"]["name"], loss, n_train, batch, epochs, device, amp,
        {**cfg["model"]["params"], **model_params}, classes, dict(cfg["loss"]["params"]),
        {"loss_variation": tr["loss_variation"], "loss_variation_every": tr["loss_variation_every"]},
        name,
    )  # fmt: skip


# ------------------------------------------------------------------------------------- bare loop
def bare_loop(s: Setting) -> dict[str, Any]:
    """A plain PyTorch step (autocast, channels_last, SGD) on device-resident batches, no engine: each batch
    cropped and flipped on the device (the same op as the engine's loader), normalised, stepped; CE is
    ``F.cross_entropy`` itself (no input checks: the registered loss reads the targets' range on the host
    in every eager call)."""
    from lpl_train.data.transforms import batch_crop_flip
    from lpl_train.losses import build_loss
    from lpl_train.models import build_model

    dev = torch.device(s.device)
    images, targets, counts = synthetic(s.n_train, s.classes)
    images, targets = images.to(dev), targets.to(dev)
    torch.manual_seed(0)
    model = build_model(s.model, num_classes=s.classes, **s.model_params).to(dev)
    cl = dev.type == "cuda"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    reg, params = s.loss_spec()
    loss_fn = (
        torch.nn.functional.cross_entropy
        if s.loss == "ce"
        else build_loss(reg, num_classes=s.classes, class_counts=counts, **params).to(dev)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    mean = torch.tensor([0.49, 0.48, 0.45], device=dev).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.20, 0.20, 0.20], device=dev).view(1, 3, 1, 1) * 255
    ac = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=s.amp == "bf16")
    gen = torch.Generator().manual_seed(0)
    steps = s.n_train // s.batch
    times = []
    for _epoch in range(s.epochs):
        _sync(dev)
        t0 = time.perf_counter()
        for i in range(steps):
            x = batch_crop_flip(images[i * s.batch : (i + 1) * s.batch], gen, pad=4)
            x = (x.float() - mean) / std
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            y = targets[i * s.batch : (i + 1) * s.batch]
            with ac:
                out = model(x)
            value = loss_fn(out.float(), y)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return {
        "images_per_s": steps * s.batch / times[-1],
        "mode": "bare",
        "loss": float(value.detach()),
        "epoch_s": times,
    }


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# ----------------------------------------------------------------------------------------- engine
def engine_run(s: Setting, capture: str, out: Path, compile_loss: bool = False) -> dict[str, Any]:
    """``engine.fit`` with ``train.capture = capture``, ``train.compile_loss`` and the setting's
    loss-variation measurement; images/s of the last epoch, and the step mode the engine chose (its log
    line; ``+loss compiled`` where the loss was compiled)."""
    from lpl_train.config import validate_config
    from lpl_train.data import TensorData, make_loader
    from lpl_train.engine import Components, fit, read_metrics
    from lpl_train.losses import build_loss
    from lpl_train.models import build_model

    dev = torch.device(s.device)
    images, targets, counts = synthetic(s.n_train, s.classes)
    train = TensorData(images, targets, (0.49, 0.48, 0.45), (0.2, 0.2, 0.2))
    test = TensorData(images[:256], targets[:256], train.mean, train.std)
    reg, params = s.loss_spec()
    cfg = validate_config({
        "name": out.name, "data": {"name": "synthetic", "batch_size": s.batch, "drop_last": True},
        "model": {"name": s.model, "params": s.model_params}, "loss": {"name": reg, "params": params},
        "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 2e-4},
        "schedule": {"epochs": s.epochs, "kind": "cosine"},
        "train": {"device": s.device, "amp": s.amp if s.amp == "bf16" else "off", "capture": capture,
                  "compile_loss": compile_loss, "progress": False, "eval_every": s.epochs,
                  **s.loss_variation},
    })  # fmt: skip
    torch.manual_seed(0)
    comps = Components(
        model=build_model(s.model, num_classes=s.classes, **s.model_params),
        loss=build_loss(reg, num_classes=s.classes, class_counts=counts, **params),
        train_loader=make_loader(train, s.batch, True, "crop_flip", dev, 0, drop_last=True),
        test_loader=make_loader(test, 256, False, "none", dev, 0),
        num_classes=s.classes,
        class_counts=counts,
    )
    lines: list[str] = []
    fit(cfg, out, components=comps, log=lines.append)
    recs = read_metrics(out)
    mode = next((ln.split("step: ", 1)[1].split(" ", 1)[0] for ln in lines if "step: " in ln), "?")
    if any("; loss compiled" in ln for ln in lines):
        mode += "+loss compiled"
    return {"images_per_s": recs[-1]["images_per_s"], "mode": mode, "loss": recs[-1]["train_loss"],
            "images": sum(r["images_per_s"] * r["train_time_s"] for r in recs)}  # fmt: skip


@dataclass
class SyntheticRunner:
    """The executor's runner (``lpl_train.experiment``) for concurrent engine runs on synthetic data."""

    setting: Setting
    capture: str

    def finished(self, run: Any) -> bool:
        return False

    def load(self, run: Any) -> dict[str, Any]:
        raise AssertionError("never finished")

    def train(self, run: Any, resume: bool) -> dict[str, Any]:
        return engine_run(self.setting, self.capture, run.out)


def concurrent(s: Setting, capture: str, jobs: int, out: Path) -> dict[str, Any]:
    """``jobs`` engine runs at once, one process each (``experiment.execute``, as ``lpl-train sweep --jobs``),
    sharing the device (``jobs = 1``: one run through the same executor, which runs it in this process;
    the figure N runs are compared with). ``images_per_s``: their images/s together over the window in
    which every run was past its first epoch and before the end of its last
    (:func:`lpl_train.experiment_throughput.overlap_throughput`, from the runs' ``train_end`` records; evaluations
    between epochs count as time), NaN where the runs did not overlap; ``overlap_s``: that window;
    ``wall_images_per_s``: training images of all runs / the whole wall time, start-up included."""
    from lpl_train.experiment import PlannedRun, execute
    from lpl_train.experiment_throughput import throughput

    runs = [PlannedRun(f"job{j}", out / f"job{j}", None, j) for j in range(jobs)]
    t0 = time.perf_counter()
    done = execute(runs, SyntheticRunner(s, capture), jobs=jobs, log=lambda _s: None)
    wall = time.perf_counter() - t0
    tp = throughput(done, wall)
    modes = {o.result["mode"] for o in done if o.result}
    rate, mode = tp["overlap_images_per_s"], "/".join(sorted(modes))
    if rate is None:
        mode += f" ({NO_OVERLAP})"
    return {"images_per_s": float("nan") if rate is None else rate, "mode": mode,
            "overlap_s": tp["overlap_s"], "wall_images_per_s": tp["aggregate_images_per_s"],
            "per_run_images_per_s": tp["mean_run_images_per_s"], "wall_s": wall}  # fmt: skip


def fused_run(s: Setting, kind: str, out: Path) -> dict[str, Any]:
    """:func:`engine_run` with LPL's ``fused_loop = true``; a failed row that says why where the kernel
    cannot run on this device (the loss would silently take its default loop)."""
    from lpl_train.perturbation_fused import fused_loop_unavailable

    why = fused_loop_unavailable(torch.empty(1, s.classes, device=s.device))
    if why is not None:
        return {"images_per_s": float("nan"), "mode": f"failed: fused loop unavailable: {why}"}
    fused = dataclasses.replace(s, lpl={**s.lpl, "fused_loop": True})
    res = engine_run(fused, {"engine eager": "off"}.get(kind, "graph"), out)
    return {**res, "mode": res["mode"] + "+fused loop"}


# ------------------------------------------------------------------------------------------- main
def _measure(s: Setting, kind: str, out: Path, jobs: int = 1) -> dict[str, Any]:
    """One measurement; a failure (a capture that does not record, say) is reported in the table as
    ``failed: ...`` with NaN images/s instead of ending the whole check."""
    try:
        if kind == "bare":
            return bare_loop(s)
        if kind.startswith("x"):
            return concurrent(s, "graph", jobs, out)
        if kind == "engine graph, loss compiled":
            return engine_run(s, "graph", out, compile_loss=True)
        if kind.endswith(", fused loop"):
            return fused_run(s, kind.removesuffix(", fused loop"), out)
        return engine_run(
            s, {"engine eager": "off", "engine compile": "compile"}.get(kind, "graph"), out
        )
    except Exception as exc:  # noqa: BLE001 - the check goes on and says what failed
        import traceback

        traceback.print_exc(limit=4)
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        return {"images_per_s": float("nan"), "mode": f"failed: {msg}"}


def main(argv: list[str] | None = None) -> int:
    from lpl_train.engine.mps import MPS_MODES, MPSError, mps_server

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", default=None)
    p.add_argument("--out", default="gpu_check")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--jobs", type=int, default=None, help="concurrent runs for the last row")
    p.add_argument(
        "--models", default=None, help="comma-separated (default: resnet32,resnet110,wrn28_10)"
    )
    p.add_argument("--model-params", default="{}", help="JSON keyword arguments for every model")
    p.add_argument(
        "--compile", action="store_true", help='also the step under train.capture = "compile"'
    )
    p.add_argument(
        "--compile-loss",
        action="store_true",
        help="also LPL in the captured step with train.compile_loss = true",
    )
    p.add_argument(
        "--fused-loop",
        action="store_true",
        help="also LPL with fused_loop = true (one kernel: Triton on a GPU, C++ on a CPU), eager and "
        "captured",
    )
    p.add_argument("--mps", choices=MPS_MODES, default="auto",
                   help="the N concurrent runs again as clients of a private MPS daemon (auto: where it "
                   "starts and works; lpl_train.engine.mps)")  # fmt: skip
    a = p.parse_args(argv)

    torch.set_flush_denormal(True)
    cuda = torch.cuda.is_available()
    quick = (not cuda) if a.quick is None else a.quick
    device = "cuda" if cuda else "cpu"
    models = (a.models or ("resnet32" if quick else "resnet32,resnet110,wrn28_10")).split(",")
    repeats = a.repeats or (1 if quick else 2)
    jobs = a.jobs or (2 if quick else 4)
    n_train, batch, epochs = (32, 16, 1) if quick else (7680, 128, 2)
    conc_epochs = 3 if quick else 10  # the concurrent runs: long enough to overlap after start-up
    if a.repeats is not None and a.repeats < 1 or a.jobs is not None and a.jobs < 1:
        p.error("--repeats and --jobs must be >= 1")
    amp = "bf16" if cuda else "off"
    try:
        model_params = json.loads(a.model_params)
    except ValueError as exc:
        p.error(f"--model-params {a.model_params!r} is not JSON: {exc}")
    if not isinstance(model_params, dict):
        p.error(
            f"--model-params must be a JSON object of keyword arguments, got {a.model_params!r}"
        )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    # a fresh folder for the runs: a finished run folder is never rewritten
    runs = Path(tempfile.mkdtemp(prefix="runs-", dir=out))
    info = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
            "quick": quick, "batch": batch, "n_train": n_train, "epochs": epochs,
            "concurrent_epochs": conc_epochs, "repeats": repeats,
            "amp": amp, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "settings": {}}  # fmt: skip
    print(f"# gpu_check {json.dumps(info)}", flush=True)
    rows: list[dict[str, Any]] = []
    kinds = ("bare", "engine eager", "engine graph") + (("engine compile",) if a.compile else ())
    for model in models:
        variants = [(f"{loss} {kind}", loss, kind) for loss in ("ce", "lpl") for kind in kinds]
        if a.fused_loop:  # before the compiled loss, whose compilation takes minutes of the run
            variants += [(f"lpl {kind}, fused loop", "lpl", f"{kind}, fused loop")
                         for kind in ("engine eager", "engine graph")]  # fmt: skip
        if a.compile_loss:  # CE's loss is two kernels: only LPL's is worth compiling alone
            variants.append(
                ("lpl engine graph, loss compiled", "lpl", "engine graph, loss compiled")
            )
        got: dict[str, list[dict[str, Any]]] = {v[0]: [] for v in variants}
        setting = {loss: shipped_setting(model, loss, n_train, batch, epochs, device, amp, model_params)
                   for loss in ("ce", "lpl")}  # fmt: skip
        s = setting["lpl"]
        info["settings"][model] = {"config": s.config or None, "network": s.model,
                                   "network_params": s.model_params, "classes": s.classes,
                                   "lpl": s.lpl, **s.loss_variation}  # fmt: skip
        print(f"# {model}: {json.dumps(info['settings'][model])}", flush=True)
        for r in range(repeats):
            for name, loss, kind in variants:
                s = setting[loss]
                tag = kind.replace(",", "").replace(" ", "_")
                res = _measure(s, kind, runs / f"{model}_{loss}_{tag}_r{r}")
                got[name].append(res)
                print(f"{model:9s} {name:31s} r{r} {res['images_per_s']:9.0f} img/s ({res['mode']})",
                      flush=True)  # fmt: skip
        s = setting["lpl"]
        if model == models[0]:
            # one run, then N at once through the same executor, for more epochs than the rows above
            # (their rate is taken over the time all of them trained: see concurrent()); time-slicing
            # first, then, where a daemon starts (its workers inherit its environment), the same runs
            # as MPS clients, their kernels overlapping on the device
            c = dataclasses.replace(s, epochs=conc_epochs)
            names = []
            for n in (1, jobs) if jobs > 1 else (1,):
                names.append(f"lpl graph x{n}")
                got[names[-1]] = [_measure(c, f"x{n}", runs / f"{model}_jobs{n}", n)]
            said: list[str] = []  # the daemon's start line, and a failed stop
            try:
                with mps_server(a.mps, needed=jobs > 1, log=said.append) as mps:
                    print(f"# {mps.line()}", flush=True)
                    if mps.active:
                        names.append(f"lpl graph x{jobs} MPS")
                        got[names[-1]] = [
                            _measure(c, f"x{jobs}", runs / f"{model}_jobs{jobs}_mps", jobs)
                        ]
            except MPSError as exc:  # --mps on without MPS: a failed row, the rest is kept
                said.append(f"MPS: failed ({exc})")
                names.append(f"lpl graph x{jobs} MPS")
                got[names[-1]] = [{"images_per_s": float("nan"), "mode": f"failed: {exc}"}]
            info["mps"] = "; ".join(said)
            for name in names:
                res = got[name][0]
                print(f"{model:9s} {name} {res['images_per_s']:9.0f} img/s (together, over the "
                      f"{res.get('overlap_s', 0.0):.1f} s in which every run was past its first epoch; "
                      f"{res.get('wall_images_per_s', float('nan')):.0f} over the whole wall time, "
                      "start-up included)", flush=True)  # fmt: skip
        med = {k: statistics.median(x["images_per_s"] for x in v) for k, v in got.items()}
        for k, v in got.items():
            row = {"model": model, "variant": k, "images_per_s": med[k], "mode": v[0]["mode"],
                   "runs": [x["images_per_s"] for x in v]}  # fmt: skip
            # runs through the executor: also their window and their rate over the whole wall time
            if "wall_images_per_s" in v[0]:
                row["overlap_s"] = v[0]["overlap_s"]
                row["wall_images_per_s"] = v[0]["wall_images_per_s"]
            rows.append(row)
        ratios = {
            "engine/bare (CE, eager)": med["ce engine eager"] / med["ce bare"],
            "LPL/CE step time (eager)": med["ce engine eager"] / med["lpl engine eager"],
            "LPL/CE step time (graph)": med["ce engine graph"] / med["lpl engine graph"],
            "graph/eager (CE)": med["ce engine graph"] / med["ce engine eager"],
            "graph/eager (LPL)": med["lpl engine graph"] / med["lpl engine eager"],
        }
        if a.fused_loop:
            for kind in ("eager", "graph"):
                ratios[f"LPL/CE step time ({kind}, fused loop)"] = (
                    med[f"ce engine {kind}"] / med[f"lpl engine {kind}, fused loop"]
                )
        if a.compile_loss:
            ratios["LPL/CE step time (graph, LPL's loss compiled)"] = (
                med["ce engine graph"] / med["lpl engine graph, loss compiled"]
            )
        if a.compile:
            ratios["LPL/CE step time (compile)"] = (
                med["ce engine compile"] / med["lpl engine compile"]
            )
            ratios["compile/graph (LPL)"] = med["lpl engine compile"] / med["lpl engine graph"]
        if jobs > 1 and f"lpl graph x{jobs}" in med:
            ratios[f"{jobs} concurrent/one (LPL graph)"] = (
                med[f"lpl graph x{jobs}"] / med["lpl graph x1"]
            )
        if f"lpl graph x{jobs} MPS" in med:
            ratios[f"{jobs} concurrent/one (LPL graph, MPS)"] = (
                med[f"lpl graph x{jobs} MPS"] / med["lpl graph x1"]
            )
        rows.append({"model": model, "ratios": ratios})
    lines = [f"{info['device']}, torch {info['torch']}, batch {batch}, {amp}, {info['date']}", ""]
    for key, st in info["settings"].items():
        lv = st.get("loss_variation_every") if st.get("loss_variation", True) else None
        lines.append(
            f"- {key}: {st['config'] or 'no shipped config'} ({st['network']} "
            f"{json.dumps(st['network_params'])}, {st['classes']} classes; LPL {json.dumps(st['lpl'])}; "
            + (
                f"loss variation every {lv}th step)"
                if lv
                else "loss variation as the config defaults)"
            )
        )
    lines += ["", "| model | variant | step | images/s (median) |", "|---|---|---|---|"]
    for r in rows:
        if "variant" in r:
            lines.append(
                f"| {r['model']} | {r['variant']} | {r['mode']} | {r['images_per_s']:.0f} |"
            )
    lines += ["", "| model | ratio | value |", "|---|---|---|"]
    for r in rows:
        for k, v in r.get("ratios", {}).items():
            lines.append(f"| {r['model']} | {k} | {v:.2f} |")
    table = "\n".join(lines)
    print("\n" + table, flush=True)
    (out / "gpu_check.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1) + "\n")
    (out / "gpu_check.md").write_text(table + "\n")
    # a measurement that failed; in the shortened mode, runs of a few milliseconds per epoch that did not
    # overlap after their start-up are expected
    bad = [r for r in rows if "images_per_s" in r and not r["images_per_s"] > 0
           and not (quick and NO_OVERLAP in r["mode"])]  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
