"""Training throughput of the tensor-resident loader versus a standard DataLoader with per-sample
transforms, on Fashion-MNIST with the small CNN (same model, batch, optimiser and augmentation:
random crop with 2-pixel padding + horizontal flip), the throughput of the two loaders alone (batches
produced, no model), the time of one Fashion-MNIST-LT (rho = 100) training epoch, and one DDP rank's
loader (rank 0 of ``--world`` processes): the sharded tensor loader, which reads and augments only the
rank's slice of every global batch, against the whole loader sliced afterwards (``_ShardLoader``, what
every rank did before) and against the whole loader itself (the ideal is 1/``--world`` of its time).

    python benchmarks/bench_loader.py [--batches 40] [--repeats 3] [--batch-size 128] [--workers 0]
                                      [--threads N] [--width W] [--root DIR] [--world W] [--json OUT]

Each repeat times ``--batches`` training steps (forward, CE loss, backward, SGD step) after 3 warm-up
steps; the table reports the median images/s over repeats of each loader, interleaved so that load
changes on a shared machine hit both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from lpl_train.data import TensorData, build_datasets, make_loader
from lpl_train.data.fmnist import FMNIST_MEAN, FMNIST_STD
from lpl_train.data.longtail import long_tail_counts
from lpl_train.engine.devices import parse_device
from lpl_train.models import build_model


def _steps(loader, model, opt, batches: int, device: torch.device) -> float:
    """Seconds for ``batches`` training steps drawn from ``loader`` (3 untimed warm-up steps first)."""
    it = iter(loader)
    t0 = None
    for i in range(batches + 3):
        if i == 3:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:
            loader.set_epoch(loader.epoch + 1)
            it = iter(loader)
            x, y = next(it)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _load_only(loader, batches: int) -> float:
    """Images/s of ``loader`` alone over ``batches`` batches (one untimed warm-up batch)."""
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        x, _ = next(it)
        n += len(x)
    return n / (time.perf_counter() - t0)


def _shard_times(train: TensorData, batch_size: int, world: int, device, repeats: int) -> dict:
    """Seconds per epoch of rank 0's training loader (batches produced, no model), interleaved repeats:
    the whole loader, the whole loader sliced afterwards, and the sharded loader; the sliced and sharded
    batches are checked equal first."""
    from lpl_train.engine import DistInfo, _ShardLoader

    def build(kind: str):
        shard = (0, world) if kind == "sharded" else (0, 1)
        loader = make_loader(train, batch_size, True, "crop_flip", device, seed=0, shard=shard)
        if kind == "sliced":
            loader = _ShardLoader(loader, DistInfo(rank=0, world=world))
        loader.set_epoch(0)
        return loader

    for (xa, ya), (xb, yb) in zip(build("sliced"), build("sharded"), strict=True):
        if not (torch.equal(xa, xb) and torch.equal(ya, yb)):
            raise AssertionError(
                "the sharded loader's batches differ from the sliced whole batches"
            )
    times: dict[str, list[float]] = {"whole": [], "sliced": [], "sharded": []}
    for _ in range(repeats):
        for kind in times:
            loader = build(kind)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _batch in loader:
                pass
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[kind].append(time.perf_counter() - t0)
    return times


def _synthetic(counts: list[int]) -> TensorData:
    """Random 1 x 28 x 28 uint8 images with ``counts[c]`` samples of class ``c`` (fixed seed)."""
    g = torch.Generator().manual_seed(0)
    y = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    x = torch.randint(0, 256, (len(y), 1, 28, 28), generator=g, dtype=torch.uint8)
    return TensorData(x, y, FMNIST_MEAN, FMNIST_STD)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--root", default=None, help="Fashion-MNIST folder (default: the usual places)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--width", type=int, default=32, help="fmnist_cnn width")
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="random uint8 images of Fashion-MNIST's shape and class sizes (for machines without the files)",
    )
    p.add_argument("--world", type=int, default=4, help="DDP processes of the sharded-loader row")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    for flag in ("batches", "repeats", "batch_size", "width", "world"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    for flag in ("workers", "threads"):
        if getattr(args, flag) < 0:
            p.error(f"--{flag} must be at least 0, got {getattr(args, flag)}")
    try:
        parse_device(args.device)
    except ValueError as exc:
        p.error(f"--device {exc}")
    torch.set_flush_denormal(True)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if args.synthetic:
        train, lt_train = _synthetic([6000] * 10), _synthetic(long_tail_counts(10, 6000, 100))
    else:
        train = build_datasets("fmnist", root=args.root).train
        lt_train = build_datasets("fmnist_lt", root=args.root, imbalance_ratio=100).train
    results: dict[str, list[float]] = {"tensor": [], "dataloader": []}
    load_only: dict[str, list[float]] = {"tensor": [], "dataloader": []}
    for r in range(args.repeats):
        for backend in ("tensor", "dataloader"):
            torch.manual_seed(r)
            model = build_model("fmnist_cnn", 10, width=args.width).to(device)
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            loader = make_loader(
                train, args.batch_size, train=True, augment="crop_flip", device=device, seed=r,
                drop_last=True, backend=backend, num_workers=args.workers,
            )  # fmt: skip
            loader.set_epoch(0)
            sec = _steps(loader, model, opt, args.batches, device)
            results[backend].append(args.batches * args.batch_size / sec)
            loader.set_epoch(1)
            load_only[backend].append(_load_only(loader, min(args.batches, len(loader) - 1)))
    med = {k: statistics.median(v) for k, v in results.items()}
    med_load = {k: statistics.median(v) for k, v in load_only.items()}

    torch.manual_seed(0)
    model = build_model("fmnist_cnn", 10, width=args.width).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = make_loader(lt_train, args.batch_size, True, "crop_flip", device, seed=0)
    loader.set_epoch(0)
    t0 = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    epoch_s = time.perf_counter() - t0

    shard = _shard_times(train, args.batch_size, args.world, device, args.repeats)
    shard_med = {k: statistics.median(v) for k, v in shard.items()}

    out = {
        "device": str(device),
        "data": "synthetic" if args.synthetic else "fashion-mnist",
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "width": args.width,
        "batches_per_repeat": args.batches,
        "workers": args.workers,
        "images_per_s": results,
        "median_images_per_s": med,
        "speedup": med["tensor"] / med["dataloader"],
        "loader_only_images_per_s": load_only,
        "loader_only_speedup": med_load["tensor"] / med_load["dataloader"],
        "fmnist_lt100_epoch_s": epoch_s,
        "fmnist_lt100_train_size": len(lt_train),
        "world": args.world,
        "rank0_loader_epoch_s": shard,
        "rank0_loader_median_epoch_s": shard_med,
    }
    print(
        f"device {device}, {torch.get_num_threads()} threads, fmnist_cnn width {args.width}, "
        f"batch {args.batch_size}, {args.repeats} repeats x {args.batches} steps"
    )
    print("| loader | training images/s (median) | repeats | loader alone, images/s (median) |")
    print("|---|---|---|---|")
    for k in ("tensor", "dataloader"):
        reps = ", ".join(f"{v:.0f}" for v in results[k])
        print(f"| {k} | {med[k]:.0f} | {reps} | {med_load[k]:.0f} |")
    print(f"training speed-up (tensor / dataloader): {out['speedup']:.2f}x")
    print(f"loader-alone speed-up: {out['loader_only_speedup']:.2f}x")
    print(f"one Fashion-MNIST-LT (rho=100, {len(lt_train)} images) epoch: {epoch_s:.1f} s")
    print(
        f"rank 0 of {args.world} processes, one epoch of its training loader ({len(train)} images, "
        f"global batch {args.batch_size}), median s: whole batches {shard_med['whole']:.2f}, "
        f"whole batches sliced afterwards {shard_med['sliced']:.2f}, sharded {shard_med['sharded']:.2f} "
        f"({shard_med['sliced'] / shard_med['sharded']:.2f}x faster than sliced; the ideal "
        f"{shard_med['whole'] / args.world:.2f} s is 1/{args.world} of the whole)"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
