"""Optional experiment tracking beside the run folder's own records: TensorBoard scalars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .files import RunFolderError

__all__ = ["TensorBoardScalars"]

#: record fields that are not curves: the epoch is the step, and TensorBoard keeps each event's wall time
SKIP = ("epoch", "train_end")


class TensorBoardScalars:
    """Optional TensorBoard scalars (``train.tensorboard = true``; the ``tensorboard`` package, extra
    ``lpl-torch[tensorboard]``): every numeric field of an epoch record but :data:`SKIP`, at step = epochs
    completed. Events of epochs after the one being written (a resumed run redoing them) are purged by
    TensorBoard itself."""

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RunFolderError(
                "train.tensorboard = true needs the tensorboard package: pip install tensorboard "
                "(or the extra lpl-torch[tensorboard]), or set train.tensorboard = false"
            ) from None
        self._cls, self.log_dir, self._writer = SummaryWriter, log_dir, None

    def add(self, record: dict[str, Any], step: int) -> None:
        # opened at the first record: purge what a killed run wrote past it
        if self._writer is None:
            self._writer = self._cls(log_dir=str(self.log_dir), purge_step=step)
        for key, value in record.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and key not in SKIP:
                self._writer.add_scalar(key, value, step)
            elif key in ("best", "best_val") and isinstance(value, dict):
                for k, v in value.items():
                    if isinstance(v, int | float) and not isinstance(v, bool) and k != "epoch":
                        self._writer.add_scalar(f"{key}/{k}", v, step)
        self._writer.flush()

    def close(self) -> None:
        """Close the writer (its events are flushed); a later :meth:`add` opens another."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
