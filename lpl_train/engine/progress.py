"""What a run shows: a progress bar on a terminal only, and one summary line per epoch always."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["epoch_line", "progress_bar", "wants_bar"]


def wants_bar(requested: bool) -> bool:
    """A bar is drawn only when asked for and stderr is a terminal (a log file gets the epoch lines only)."""
    return bool(requested) and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def progress_bar(it: Any, total: int, show: bool, desc: str) -> Any:
    if not show:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def epoch_line(rec: dict[str, Any], epochs: int, eta_s: float | None = None) -> str:
    """``epoch 3/200 loss 1.2345 lr 0.1 | test top-1 error 45.12% (many 30.1, medium 50.2, few 70.3)
    | val ... | 1234 img/s | eta 1h02m``."""
    parts = [f"epoch {rec['epoch'] + 1}/{epochs}", f"loss {rec['train_loss']:.4f}",
             f"lr {rec['lr']:.4g}"]  # fmt: skip
    for split in ("val", "test"):
        if f"{split}_top1_error" in rec and rec[f"{split}_top1_error"] is not None:
            groups = [(g, rec.get(f"{split}_acc_{g}")) for g in ("many", "medium", "few")]
            txt = ", ".join(f"{g} {v:.1f}" for g, v in groups if v is not None)
            parts.append(f"{split} top-1 error {rec[f'{split}_top1_error']:.2f}%"
                         + (f" (acc {txt})" if txt else ""))  # fmt: skip
        if f"{split}_map" in rec and rec[f"{split}_map"] is not None:
            groups = [(g, rec.get(f"{split}_map_{g}")) for g in ("head", "medium", "tail")]
            txt = ", ".join(f"{g} {v:.1f}" for g, v in groups if v is not None)
            parts.append(f"{split} mAP {rec[f'{split}_map']:.2f}%" + (f" ({txt})" if txt else ""))
    if rec.get("images_per_s"):
        parts.append(f"{rec['images_per_s']:.0f} img/s")
    if eta_s is not None:
        parts.append(f"eta {_duration(eta_s)}")
    return " | ".join([" ".join(parts[:3]), *parts[3:]])
