"""GPU checks of the plug-in loss API (not a timed benchmark): torch.compile (inductor) with the default
validate=True and fullgraph with validate=False against eager, ignore_index and probability targets on CUDA
(matmul class means), timm's Mixup into LPLLoss (ε = 0 against timm's SoftTargetCrossEntropy), and a
Lightning fit whose validation loss is the plain cross-entropy. Needs a CUDA device; timm and lightning
are optional (their checks say so when missing). Usage: ``python benchmarks/gpu_loss_check.py``."""

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from lpl_train.losses import LPLLoss

argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help; no options
if not torch.cuda.is_available():
    sys.exit("gpu_loss_check.py: error: needs a CUDA device (torch.cuda.is_available() is False)")
dev = torch.device("cuda")
print("torch", torch.__version__, torch.cuda.get_device_name(0), "python", sys.version.split()[0])
g = torch.Generator().manual_seed(0)
C = 100
u = (torch.randn(256, C, generator=g) * 2).to(dev)
y = torch.randint(C, (256,), generator=g).to(dev)

# 1. torch.compile with the default validate=True, and fullgraph with validate=False
for kw in ({"alpha": 0.01, "epsilon": 0.1}, {"alpha": 0.02, "epsilon": 0.1, "delta_epsilon": 0.5}):
    loss = LPLLoss(C, **kw).to(dev)
    eager = loss(u, y)
    t0 = time.time()
    comp = torch.compile(loss)(u, y)
    print(
        "compile validate=True", kw, "diff", float((comp - eager).abs()), f"{time.time() - t0:.1f}s"
    )
    nv = LPLLoss(C, validate=False, **kw).to(dev)
    full = torch.compile(nv, fullgraph=True)(u, y)
    print("compile fullgraph validate=False diff", float((full - eager).abs()))
# 2. ignore_index and probability targets on CUDA vs the kept subset / class indices
loss = LPLLoss(C, alpha=0.01, epsilon=0.1, reduction="none").to(dev)
y2 = y.clone()
y2[:20] = -100
a = loss(u, y2)[20:]
b = loss(u[20:], y[20:])
print("ignore_index cuda max diff", float((a - b).abs().max()))
nv = LPLLoss(C, alpha=0.01, epsilon=0.1, reduction="none", validate=False).to(dev)
print("ignore_index cuda validate=False max diff", float((nv(u, y2)[20:] - b).abs().max()))
print(
    "one-hot vs index cuda max diff",
    float((loss(u, F.one_hot(y, C).float()) - loss(u, y)).abs().max()),
)
# 3. timm Mixup -> LPLLoss
try:
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=C)
    x = torch.randn(256, 3, 8, 8, device=dev)
    xm, ym = mix(x, y)
    net = nn.Sequential(nn.Flatten(), nn.Linear(192, C)).to(dev)
    crit = LPLLoss(C, alpha=0.01, epsilon=0.1).to(dev)
    out = crit(net(xm), ym)
    out.backward()
    ref = SoftTargetCrossEntropy()(net(xm).detach(), ym)
    plain = LPLLoss(C, epsilon=0.0).to(dev)(net(xm).detach(), ym)
    print(
        "timm Mixup: LPL",
        float(out),
        "eps=0 vs SoftTargetCrossEntropy diff",
        float((plain - ref).abs()),
    )
except Exception as exc:  # noqa: BLE001
    print("timm check failed:", type(exc).__name__, exc)
# 4. Lightning train/validate
try:
    import lightning as L

    class M(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(20, 10)
            self.criterion = LPLLoss(num_classes=10, alpha=0.01, epsilon=0.1)
            self.vals = []

        def training_step(self, batch, i):
            x, t = batch
            return self.criterion(self.net(x), t)

        def validation_step(self, batch, i):
            x, t = batch
            v = self.criterion(self.net(x), t)
            self.vals.append((float(v), float(F.cross_entropy(self.net(x), t))))
            return v

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    ds = torch.utils.data.TensorDataset(torch.randn(256, 20), torch.randint(10, (256,)))
    dl = torch.utils.data.DataLoader(ds, batch_size=64)
    m = M()
    tr = L.Trainer(
        max_epochs=1,
        accelerator="gpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    tr.fit(m, dl, dl)
    print(
        "lightning validation (criterion, plain CE):",
        m.vals[-1],
        "equal:",
        all(abs(a - b) < 1e-6 for a, b in m.vals),
    )
except Exception as exc:  # noqa: BLE001
    print("lightning check failed:", type(exc).__name__, exc)
