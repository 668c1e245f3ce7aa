"""Reading a run folder back for inference and analysis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .run_folder import BEST, CHECKPOINT, CONFIG_COPY, FINAL, load_checkpoint

__all__ = ["load_run"]


def load_run(
    run_dir: str | Path, which: str = "last", device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """A run folder → ``(model, config, data info)``, the model in ``eval()`` mode on ``device``.

    Args:
        run_dir: a folder written by :func:`lpl_train.engine.fit` (``lpl-train run``).
        which: ``"last"`` (``checkpoint.pt``, the last completed epoch) or ``"best"`` (``best.pt``, the best
            *validation* epoch; only runs whose data has a validation split have one).
        device: where the model goes.

    Returns:
        the model with the checkpoint's weights; the config (``config.toml``, validated); and a dict with
        ``num_classes``, ``class_counts``, ``multi_label``, ``class_names`` (when known), ``epoch`` (epochs
        completed by those weights) and ``final`` (``final.json``'s content, None for an unfinished run).

    Raises:
        FileNotFoundError: no such folder or file; ValueError: ``which`` unknown or a damaged checkpoint.
    """
    from lpl_train.config import load_config
    from lpl_train.models import build_model

    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {str(run)!r} does not exist")
    if which not in ("last", "best"):
        raise ValueError(f"which must be 'last' or 'best', got {which!r}")
    if which == "best" and not (run / BEST).is_file():
        raise FileNotFoundError(
            f"run folder {str(run)!r} has no {BEST}: it is written only when the data has a validation "
            "split (e.g. data.params.val_fraction > 0); use which='last'"
        )
    cfg = load_config(run / CONFIG_COPY)
    path = run / (CHECKPOINT if which == "last" else BEST)
    ckpt = _load_weights(path) if which == "best" else load_checkpoint(path)
    final = (
        json.loads((run / FINAL).read_text(encoding="utf-8")) if (run / FINAL).is_file() else None
    )
    # the classes: final.json's, or for an unfinished run classes.json's (written when it started), so
    # that its data need not be at hand; a folder older than both rebuilds the dataset
    classes = final if isinstance(final, dict) and "num_classes" in final else _classes(run)
    if classes is not None:
        num_classes, counts = classes["num_classes"], classes["class_counts"]
        multi, names = classes["multi_label"], classes.get("class_names")
    else:
        from lpl_train.data import build_datasets

        d = cfg["data"]
        b = build_datasets(d["name"], root=d["root"], seed=d["seed"], **d["params"])
        num_classes, counts, multi = b.num_classes, list(b.class_counts), b.multi_label
        names = list(b.class_names) or None
    params = {k: v for k, v in cfg["model"]["params"].items() if k != "weights"}
    model = build_model(cfg["model"]["name"], num_classes=num_classes, **params)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    info = {"num_classes": num_classes, "class_counts": counts, "multi_label": multi,
            "class_names": names, "epoch": ckpt["epoch"], "final": final}  # fmt: skip
    return model, cfg, info


def _classes(run: Path) -> dict[str, Any] | None:
    """``classes.json`` of a run folder when it holds what :func:`load_run` needs; else None."""
    from .files import CLASSES

    try:
        info = json.loads((run / CLASSES).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    keys = ("num_classes", "class_counts", "multi_label")
    return info if isinstance(info, dict) and all(k in info for k in keys) else None


def _load_weights(path: Path) -> dict[str, Any]:
    from .run_folder import CorruptCheckpoint

    try:
        return load_checkpoint(path)
    except CorruptCheckpoint as exc:
        if "not a checkpoint written" not in str(exc):
            raise
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or "model" not in ck:
        raise CorruptCheckpoint(f"checkpoint {str(path)!r} holds no model weights")
    return ck
