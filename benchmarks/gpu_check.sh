#!/usr/bin/env bash
# Training throughput of the engine on a GPU: ResNet-32 (LDAM's, 0.46M parameters) on synthetic
# CIFAR-shaped data (uint8 3x32x32 on the device, long-tailed labels), CE vs LPL, eager vs torch.compile,
# bf16 autocast and channels_last (the engine's GPU defaults). Prints a Markdown table of images/s and
# writes gpu_check.json. Finishes in a few minutes on one GPU (each compile takes about a minute).
#
#   benchmarks/gpu_check.sh [OUT_DIR]        # full check (GPU), OUT_DIR defaults to ./gpu_check
#   GPU_CHECK_QUICK=1 benchmarks/gpu_check.sh # shortened run (tiny data, eager only): what CPU CI runs
#
# Environment: GPU_CHECK_QUICK=1 (shortened), GPU_CHECK_COMPILE=0/1 (default: 1 on CUDA, 0 otherwise),
# PYTHON (default: .venv/bin/python if present, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-gpu_check}"
PY="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
mkdir -p "$OUT_DIR"
exec "$PY" - "$OUT_DIR" <<'EOF'
import json
import os
import sys
import time
from pathlib import Path

import torch

from lpl_train.config import validate_config
from lpl_train.data import TensorData, make_loader
from lpl_train.engine import Components, fit, read_metrics, select_device
from lpl_train.losses import build_loss
from lpl_train.models import build_model

torch.set_flush_denormal(True)
out_dir = Path(sys.argv[1])
device = select_device("auto")
cuda = device.type == "cuda"
quick = os.environ.get("GPU_CHECK_QUICK", "0" if cuda else "1") == "1"
compile_default = "1" if cuda and not quick else "0"
modes = ["eager"] + (["compiled"] if os.environ.get("GPU_CHECK_COMPILE", compile_default) == "1" else [])
n_train, batch, epochs = (16, 8, 2) if quick else (25_600, 128, 2)
C = 10

# long-tailed synthetic labels (CIFAR-10-LT-like frequencies), fixed seed
g = torch.Generator().manual_seed(0)
prior = torch.tensor([0.01 ** (c / (C - 1)) for c in range(C)])
targets = torch.multinomial(prior / prior.sum(), n_train, replacement=True, generator=g)
images = torch.randint(0, 256, (n_train, 3, 32, 32), dtype=torch.uint8, generator=g)
counts = torch.bincount(targets, minlength=C).clamp_min(1).tolist()
train = TensorData(images, targets, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
n_test = 16 if quick else 2048
test = TensorData(images[:n_test], targets[:n_test], train.mean, train.std)

LOSSES = {
    "ce": ("ce", {}),
    "lpl": ("lpl", {"split": "index", "tau": 0.5, "epsilon": 0.0, "delta_epsilon": 2.0, "alpha": 0.25,
                    "validate": False}),
}
rows = []
info = {"device": str(device), "torch": torch.__version__, "quick": quick, "n_train": n_train,
        "batch": batch, "epochs": epochs}
if cuda:
    info["gpu"] = torch.cuda.get_device_name(device)
print(f"# gpu_check: {info}", flush=True)
for loss_name, (reg, params) in LOSSES.items():
    for mode in modes:
        cfg = validate_config({
            "name": f"gpu_check_{loss_name}_{mode}",
            "data": {"name": "synthetic", "batch_size": batch},
            "model": {"name": "resnet32"},
            "loss": {"name": reg, "params": params},
            "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 2e-4},
            "schedule": {"epochs": epochs, "kind": "cosine"},
            "train": {"device": device.type, "amp": "auto", "compile": mode == "compiled",
                      "progress": False, "loss_variation": False},
        })
        torch.manual_seed(0)
        comps = Components(
            model=build_model("resnet32", C),
            loss=build_loss(reg, num_classes=C, class_counts=counts, **params),
            train_loader=make_loader(train, batch, True, "crop_flip", device, 0, drop_last=True),
            test_loader=make_loader(test, 512, False, "none", device, 0),
            num_classes=C,
            class_counts=counts,
        )
        run = out_dir / cfg["name"]
        t0 = time.perf_counter()
        fit(cfg, run, components=comps, log=lambda s: None, resume=(run / "checkpoint.pt").exists())
        wall = time.perf_counter() - t0
        recs = read_metrics(run)
        steady = recs[-1]["images_per_s"]  # last epoch: after compilation and warm-up
        rows.append({"loss": loss_name, "mode": mode, "amp": "bf16" if cuda else "off",
                     "images_per_s": steady, "first_epoch_s": recs[0]["train_time_s"], "wall_s": wall,
                     "final_train_loss": recs[-1]["train_loss"]})
        print(f"{loss_name:4s} {mode:9s} {steady:10.0f} img/s  (first epoch {recs[0]['train_time_s']:.1f} s, "
              f"total {wall:.1f} s)", flush=True)

base = {r["loss"]: r["images_per_s"] for r in rows if r["mode"] == "eager"}
lines = ["| loss | mode | autocast | images/s | vs eager | first epoch (s) |", "|---|---|---|---|---|---|"]
for r in rows:
    lines.append(f"| {r['loss']} | {r['mode']} | {r['amp']} | {r['images_per_s']:.0f} | "
                 f"{r['images_per_s'] / base[r['loss']]:.2f}x | {r['first_epoch_s']:.1f} |")
table = "\n".join(lines)
print(f"\nResNet-32, synthetic CIFAR-shaped data, batch {batch}, device {info.get('gpu', device)}\n")
print(table)
(out_dir / "gpu_check.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1) + "\n")
(out_dir / "gpu_check.md").write_text(table + "\n")
bad = [r for r in rows if not r["final_train_loss"] == r["final_train_loss"]]
sys.exit(1 if bad else 0)
EOF
