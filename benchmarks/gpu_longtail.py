"""The long-tail protocol of Tables III/IV on real data, on one GPU: Fashion-MNIST-LT 100:1 (the full training
set subsampled with LDAM's exponential profile, data seed 0, images zero-padded to 32x32), LDAM's ResNet-32,
200 epochs of LDAM's schedule (batch 128, SGD lr 0.1, momentum 0.9, weight decay 2e-4, 5-epoch linear
warm-up, lr x0.01 from epoch 160 and x0.0001 from 180), for CE, LA, LDAM-DRW, LPL and LA + LPL x 3 seeds.

The losses' parameters are those of the shipped Fashion-MNIST-LT configs (``fmnist_lt100_<method>``), with
LDAM-DRW's re-weighting switched on at epoch 160 as in LDAM's schedule. The runs train 5 at a time
(``--jobs``; :data:`JOBS`), one process each on the same device (``lpl_train.experiment.execute``, as ``lpl-train sweep --jobs``), with the engine's
defaults (captured step on CUDA where safe, bf16).

Sizing: the script first trains every run for ``--probe-epochs`` epochs (3), estimates the rest of the
protocol's time from that (:func:`estimate_rest`: the probe's fixed costs, paid again on resuming, plus the
remaining images at the rate the concurrent runs reached together while they all trained), and starts the
rest only if the estimate fits
``--budget-s`` together with the probe's own time (the runs then resume from their checkpoints); otherwise it
stops and says so. Results (one JSON with every run's final.json, and a Markdown table of mean ± std over the
seeds) go to ``--summary-dir`` (default ``--out``), rewritten as each run finishes, so a script that is cut
short keeps what finished. A run that raises (a diverged loss, a device error) is recorded with its error
and the others go on; the exit status is then 1.

    python benchmarks/gpu_longtail.py [--quick] [--data DIR] [--out DIR] [--summary-dir DIR] [--jobs N]
                                      [--budget-s S] [--seeds N] [--first-seed K] [--include JSON ...]
                                      [--mps off|auto|on]

``--mps`` (default ``auto``): the concurrent runs as clients of a private NVIDIA MPS daemon
(``lpl_train.engine.mps``, as ``lpl-train sweep --mps``) where one starts and works, so that their kernels
overlap on the device; the summary's ``info.mps`` says whether they did.

The protocol can be spread over several calls, one wave of seeds each: ``--first-seed 1 --seeds 1`` trains
seed 1 only, and ``--include`` adds the finished runs of earlier calls' ``gpu_longtail.json`` to this call's
summary and table (a run that is in two of them is refused), so the last call's table is over every seed.

The data folder (``--data``, default ``$LPL_LONGTAIL_DATA``, else ``.carry/fashion-mnist``) holds the four
Fashion-MNIST idx files. ``--quick``: 1 epoch, 512 training images, a tiny network, 1 seed (CPU check).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METHODS = ("ce", "la", "ldam_drw", "lpl", "la_lpl")
SCHEDULE = {"kind": "step", "milestones": [160, 180], "factors": [0.01, 0.0001], "warmup_epochs": 5}
#: Runs at once on the GPU by default. On an H200 (2026-11-29, without MPS) 5 ResNet-32 runs trained the
#: 200-epoch protocol in 514 s, 29,000 images/s together over the whole call, start-up included; the
#: probe of 15 at once gave a slower steady epoch per run (6.4 s against 1.4 s for 5), so 15 runs go in
#: waves of 5. Processes without MPS time-slice the device.
JOBS = 5
OPTIM = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 2e-4}


def method_loss(method: str, epochs: int) -> tuple[str, dict[str, Any]]:
    """The loss of ``method`` from the shipped ``fmnist_lt100_<method>`` config; DRW at LDAM's epoch 160;
    LPL alone in the best reading of the long-tail ablation (docs/study.md): the step-normalised inner loop
    (``normalize_step=True``, index split, Δε = 2, α = 0.25)."""
    from lpl_train.config import load_config

    lo = load_config(f"fmnist_lt100_{method}")["loss"]
    params = dict(lo["params"])
    if method == "lpl":
        params.update(normalize_step=True, delta_epsilon=2.0, alpha=0.25)
    if method == "ldam_drw":
        params.update(drw_epoch=min(160, epochs - 1) if epochs > 1 else 0, drw_beta=0.9999)
    return lo["name"], params


@dataclass
class Protocol:
    data: str
    epochs: int
    quick: bool
    device: str
    stop_after: int | None = None  # the probe: train this many epochs, then return

    def config(self, method: str, seed: int) -> dict[str, Any]:
        from lpl_train.config import validate_config

        name, params = method_loss(method, self.epochs)
        norm = method == "ldam_drw"  # LDAM's cosine head
        model = {"name": "fmnist_cnn", "params": {"width": 4, "use_norm": norm}} if self.quick else {
            "name": "resnet32", "params": {"in_channels": 1, "use_norm": norm}}  # fmt: skip
        return validate_config({
            "name": f"fmnist32_lt100_{method}", "data": {"name": "fmnist_lt", "batch_size": 128},
            "model": model, "loss": {"name": name, "params": params}, "optim": dict(OPTIM),
            "schedule": {"epochs": self.epochs, **SCHEDULE},
            "train": {"seed": seed, "device": self.device, "progress": False, "eval_every": 10,
                      "loss_variation": False},
        })  # fmt: skip


@dataclass
class LongtailRunner:
    """The executor's runner: a run is finished when its final.json exists."""

    protocol: Protocol

    def finished(self, run: Any) -> bool:
        return (run.out / "final.json").is_file()

    def load(self, run: Any) -> dict[str, Any]:
        return json.loads((run.out / "final.json").read_text(encoding="utf-8"))

    def train(self, run: Any, resume: bool) -> dict[str, Any]:
        import torch

        from lpl_train.data import make_loader
        from lpl_train.engine import Components, fit
        from lpl_train.losses import build_loss
        from lpl_train.models import build_model

        p, cfg = self.protocol, run.cfg
        dev = torch.device(p.device)
        train, test, counts = padded_fmnist_lt(p.data, p.quick)
        torch.manual_seed(cfg["train"]["seed"])
        comps = Components(
            model=build_model(cfg["model"]["name"], num_classes=10, **cfg["model"]["params"]),
            loss=build_loss(
                cfg["loss"]["name"], num_classes=10, class_counts=counts, **cfg["loss"]["params"]
            ),  # fmt: skip
            train_loader=make_loader(train, 128, True, "crop_flip", dev, cfg["train"]["seed"]),
            test_loader=make_loader(test, 1024, False, "none", dev, 0),
            num_classes=10,
            class_counts=counts,
        )
        try:  # one failing run must not end the others (the pool would re-raise it and stop them)
            return fit(cfg, run.out, components=comps, resume=resume, stop_after_epoch=p.stop_after,
                       log=lambda s: None)  # fmt: skip
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}


def padded_fmnist_lt(root: str, quick: bool) -> Any:
    """Fashion-MNIST-LT 100:1 (data seed 0), 28x28 zero-padded to 32x32; the quick check keeps 512 images."""
    import torch
    import torch.nn.functional as F

    from lpl_train.data import TensorData, build_datasets

    b = build_datasets("fmnist_lt", root=root, seed=0, imbalance_ratio=100.0)

    def pad(split: Any, n: int | None) -> Any:
        keep = torch.randperm(len(split.targets), generator=torch.Generator().manual_seed(0))[:n]
        x, y = (
            (split.images, split.targets)
            if n is None
            else (split.images[keep], split.targets[keep])
        )
        return TensorData(F.pad(x, (2, 2, 2, 2)), y, split.mean, split.std)

    train, test = pad(b.train, 512 if quick else None), pad(b.test, 512 if quick else None)
    counts = torch.bincount(train.targets, minlength=10).tolist()
    return train, test, counts


def estimate_rest(
    run_dirs: list[Path], spent: float, probe: int, epochs: int, jobs: int, margin: float = 1.15
) -> dict[str, Any]:
    """Wall time of the protocol's remaining epochs, from the probe's run folders.

    The runs train in ``waves = ceil(runs / jobs)`` waves of ``jobs`` at once. The rate of a wave is that
    of the probe's first ``jobs`` runs (by start) together over the time they all trained steadily
    (:func:`lpl_train.experiment_throughput.overlap_throughput`: after each run's first epoch, which warms up and
    records the captured step; evaluations between epochs count as time). Where they had no such time in
    common, the rate is the fastest single epoch of the probe, as if the runs took turns on the device
    (no gain from running them at once). Each wave also pays a fixed part again when it resumes (process
    start, data, model, checkpoint: the probe's wall time per wave not spent in its slowest run's training
    epochs). The estimate is ``waves × fixed + images left / rate × margin``. Summing each run's own
    epoch times instead (as this did before) counts epochs that overlapped less than the long runs will:
    on 2026-11-29 it gave 321 s for a protocol that took 514 s."""
    from lpl_train.engine import read_metrics
    from lpl_train.experiment_throughput import epoch_spans, overlap_throughput

    records = [read_metrics(d)[:probe] for d in run_dirs]
    if not records or any(len(r) < probe for r in records):
        raise ValueError(f"the probe left fewer than {probe} epoch records in a run folder")
    spans = [epoch_spans(r) for r in records]
    if any(len(sp) < probe for sp in spans):
        raise ValueError("a probe record lacks train_end, train_time_s or images_per_s")
    waves = -(-len(run_dirs) // jobs)
    trained = max(sum(x["train_time_s"] for x in r) for r in records)
    fixed = max(spent / waves - trained, 0.0)
    first_wave = sorted(spans, key=lambda sp: sp[0][0])[:jobs]
    rate, window = overlap_throughput(first_wave)
    source = f"{len(first_wave)} runs together over {window:.1f} s"
    if rate is None:
        steady = [n / (e - b) for sp in spans for b, e, n in (sp[1:] or sp) if e > b]
        rate, source = max(steady), "the fastest epoch, as if the runs took turns"
    left = sum((epochs - probe) * sp[-1][2] for sp in spans)
    rest = waves * fixed + left / rate * margin
    return {"rate_images_per_s": rate, "rate_from": source, "images_left": left, "fixed_s": fixed,
            "waves": waves, "estimate_rest_s": rest}  # fmt: skip


def included_runs(paths: list[str], epochs: int, quick: bool) -> dict[str, dict[str, Any]]:
    """The finished runs (those with a ``final`` record) of earlier calls' ``gpu_longtail.json`` files, by
    run key; a key in two of them, or a file of another protocol (epochs, quick mode), raises."""
    runs: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            found, info = data["runs"], data["info"]
            theirs = (int(info["epochs"]), bool(info["quick"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"--include {path}: not a gpu_longtail.json ({exc})") from None
        if theirs != (epochs, quick):
            raise ValueError(
                f"--include {path}: its runs trained {theirs[0]} epochs (quick {theirs[1]}), this call "
                f"{epochs} (quick {quick}): not the same protocol"
            )
        for key, result in found.items():
            if "final" not in result:
                continue
            if key in runs:
                raise ValueError(f"--include: run {key} is in more than one of {paths}")
            runs[key] = result
    return runs


def summarise(results: dict[str, dict[str, Any]]) -> str:
    rows = ["| method | seeds | test top-1 error (%) | acc many | acc medium | acc few |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for m in METHODS:
        fins = [r["final"] for k, r in sorted(results.items()) if k.startswith(f"{m}/")]
        if not fins:
            continue

        def ms(key: str, fins: list[dict[str, Any]] = fins) -> str:
            v = [f[key] for f in fins if f.get(key) is not None]
            if not v:
                return "—"
            return (
                f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}"
                if len(v) > 1
                else f"{v[0]:.2f}"
            )

        rows.append(f"| {m} | {len(fins)} | {ms('top1_error')} | {ms('acc_many')} | {ms('acc_medium')} | "
                    f"{ms('acc_few')} |")  # fmt: skip
    return "\n".join(rows)


class Summary:
    """The JSON (run info and every run's final.json or error) and the Markdown table, rewritten in
    ``folder`` as runs finish."""

    def __init__(self, folder: Path, info: dict[str, Any], quick: bool) -> None:
        self.folder, self.info, self.quick = folder, info, quick
        self.results: dict[str, dict[str, Any]] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, outcome: Any) -> str:
        """``execute``'s ``describe``: keep a finished run's result, rewrite the files."""
        self.results[outcome.run.key] = outcome.result or {}
        self.write()
        err = (outcome.result or {}).get("error")
        return f"FAILED: {err}" if err else "trained"

    def finished(self) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.results.items() if "final" in r}

    def errors(self) -> dict[str, str]:
        return {k: r["error"] for k, r in sorted(self.results.items()) if "error" in r}

    def write(self, wall_s: float | None = None) -> str:
        if wall_s is not None:
            self.info["wall_s"] = wall_s
        info = self.info
        net = "a tiny CNN (quick check)" if self.quick else "ResNet-32"
        wall = f"{info['wall_s']:.0f} s wall" if "wall_s" in info else "in progress"
        epochs = f"{info['epochs']} epoch{'' if info['epochs'] == 1 else 's'}"
        head = (f"Fashion-MNIST-LT 100:1 (32x32), {net}, {epochs}, LDAM schedule; "
                f"{info['device']}, torch {info['torch']}, {info['date']}, {wall}")  # fmt: skip
        table = summarise(self.finished())
        failed = "".join(f"\n- {k}: {e}" for k, e in self.errors().items())
        text = head + "\n\n" + table + (f"\n\nFailed runs:{failed}" if failed else "")
        runs = dict(sorted(self.results.items()))
        (self.folder / "gpu_longtail.json").write_text(
            json.dumps({"info": info, "runs": runs}, indent=1) + "\n"
        )
        (self.folder / "gpu_longtail.md").write_text(text + "\n")
        return text


def main(argv: list[str] | None = None) -> int:
    import torch

    from lpl_train.engine.mps import MPS_MODES, MPSError, mps_server
    from lpl_train.experiment import PlannedRun

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", default=None)
    ap.add_argument("--data", default=os.environ.get("LPL_LONGTAIL_DATA", ".carry/fashion-mnist"))
    ap.add_argument("--out", default="gpu_longtail", help="the run folders (and the summaries)")
    ap.add_argument(
        "--summary-dir", default=None, help="where gpu_longtail.{json,md} go (default --out)"
    )
    ap.add_argument("--seeds", type=int, default=None, help="seeds per method (default 3; 1 quick)")
    ap.add_argument("--first-seed", type=int, default=0, help="train seeds K, K+1, ... (default 0)")
    ap.add_argument("--include", action="append", default=[], metavar="JSON",
                    help="an earlier call's gpu_longtail.json: its finished runs join this summary")  # fmt: skip
    ap.add_argument("--jobs", type=int, default=None, help=f"concurrent runs (default {JOBS})")
    ap.add_argument("--budget-s", type=float, default=540.0, help="start the full runs only if the "
                    "probe's time plus the estimate fits (default 540 s)")  # fmt: skip
    ap.add_argument("--probe-epochs", type=int, default=3,
                    help="epochs of every run before the estimate (default 3: two after the first)")  # fmt: skip
    ap.add_argument("--mps", choices=MPS_MODES, default="auto",
                    help="the concurrent runs as clients of a private MPS daemon (auto: where it starts "
                    "and works; lpl_train.engine.mps)")  # fmt: skip
    ap.add_argument("--epochs", type=int, default=None, help="default: 200 (1 with --quick)")
    a = ap.parse_args(argv)
    # before anything is written: a count of 0 is refused, not taken for the default
    for flag, value in (
        ("--epochs", a.epochs),
        ("--jobs", a.jobs),
        ("--probe-epochs", a.probe_epochs),
    ):
        if value is not None and value < 1:
            ap.error(f"{flag} must be at least 1, got {value}")
    if not a.budget_s >= 0:  # NaN too
        ap.error(f"--budget-s must be a number of seconds >= 0, got {a.budget_s}")
    cuda = torch.cuda.is_available()
    quick = (not cuda) if a.quick is None else a.quick
    epochs = a.epochs if a.epochs is not None else (1 if quick else 200)
    seeds = a.seeds if a.seeds is not None else (1 if quick else 3)
    if a.seeds is not None and a.seeds < 1 or a.first_seed < 0:
        ap.error("--seeds must be at least 1 and --first-seed at least 0")
    try:
        earlier = included_runs(a.include, epochs, quick)
    except (OSError, ValueError) as exc:
        ap.error(str(exc))
    device = "cuda" if cuda else "cpu"
    if not Path(a.data).is_dir():
        ap.error(f"--data {a.data!r} is not a folder; copy the four Fashion-MNIST idx files there "
                 "(e.g. from /usr/share/datasets/fashion-mnist) or set LPL_LONGTAIL_DATA")  # fmt: skip
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    protocol = Protocol(a.data, epochs, quick, device)
    runs = [PlannedRun(f"{m}/seed{s}", out / "runs" / m / f"seed{s}", protocol.config(m, s), s)
            for m in METHODS for s in range(a.first_seed, a.first_seed + seeds)]  # fmt: skip
    again = sorted({r.key for r in runs} & set(earlier))
    if again:
        ap.error(f"--include already holds {', '.join(again)}; train other seeds (--first-seed)")
    jobs = (
        a.jobs
        if a.jobs is not None
        else (1 if quick else min(len(runs), JOBS, max(1, (os.cpu_count() or 2) - 1)))
    )
    info = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
            "epochs": epochs, "runs": len(runs), "jobs": jobs, "quick": quick,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
    print(f"# gpu_longtail {json.dumps(info)}", flush=True)
    if a.include:
        info["included"] = list(a.include)
    summary = Summary(Path(a.summary_dir) if a.summary_dir else out, info, quick)
    summary.results.update(earlier)
    # the workers are spawned inside: under MPS their kernels overlap on the device
    said: list[str] = []  # the daemon's start line, and a failed stop
    try:
        with mps_server(a.mps, needed=jobs > 1, log=said.append) as mps:
            info["mps"] = mps.line()
            print(f"# {info['mps']}", flush=True)
            status = _train(runs, protocol, jobs, summary, info, a.probe_epochs, a.budget_s)
    except MPSError as exc:  # --mps on without a working MPS: refused before any run trains
        ap.error(str(exc))
    if len(said) > 1:  # the daemon did not stop cleanly: the summary says so
        info["mps"] = "; ".join(said)
        print(f"# {said[-1]}", flush=True)
        summary.write()
    return status


def _train(runs: list[Any], protocol: Protocol, jobs: int, summary: Summary, info: dict[str, Any],
           probe_epochs: int, budget_s: float) -> int:  # fmt: skip
    """The probe, the estimate against the budget, then the rest of the protocol; the exit status."""
    from lpl_train.experiment import execute

    epochs = protocol.epochs
    t0 = time.perf_counter()
    probe = min(probe_epochs, epochs)
    if probe < epochs:
        protocol.stop_after = probe
        done = execute(runs, LongtailRunner(protocol), jobs=jobs, log=lambda s: None)
        spent = time.perf_counter() - t0
        failed = {o.run.key: o.result["error"] for o in done if o.result and "error" in o.result}
        if failed:
            info["probe"] = {"epochs": probe, "wall_s": spent, "failed": failed}
            for k, e in sorted(failed.items()):
                print(f"probe: {k} FAILED: {e}", flush=True)
            print("not started: runs failed in the probe", flush=True)
            summary.write()
            return 1
        est = estimate_rest([r.out for r in runs], spent, probe, epochs, jobs)
        estimate = est["estimate_rest_s"]
        info["probe"] = {"epochs": probe, "wall_s": spent, **est}
        print(f"probe: {probe} epochs of {len(runs)} runs ({jobs} at once) in {spent:.0f} s "
              f"({est['rate_images_per_s']:.0f} images/s: {est['rate_from']}; fixed costs "
              f"{est['fixed_s']:.0f} s per wave); the remaining {epochs - probe} epochs need about "
              f"{estimate:.0f} s", flush=True)  # fmt: skip
        if spent + estimate > budget_s:
            print(f"not started: the probe's {spent:.0f} s and the estimate {estimate:.0f} s exceed "
                  f"--budget-s {budget_s:.0f}; the probe's checkpoints stay in the run folders",
                  flush=True)  # fmt: skip
            summary.write()
            return 3
        protocol.stop_after = None
        summary.write()  # the probe's figures and the included runs, should the rest be stopped
    done = execute(runs, LongtailRunner(protocol), jobs=jobs, log=print, describe=summary.add)
    for o in done:  # runs finished by an earlier call are read back, not trained (no describe)
        summary.results.setdefault(o.run.key, o.result or {})
    text = summary.write(wall_s=time.perf_counter() - t0)
    print("\n" + text, flush=True)
    return 0 if all(r.key in summary.finished() for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
