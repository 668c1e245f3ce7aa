"""The run folder: the only code that writes one, and the owner of what it promises.

Layout::

    RUNNING                    the lock (held while a process trains here; gone with that process)
    config.toml                the config as run (plus ``[run]`` provenance at the end)
    metrics.jsonl              one JSON record per completed epoch, appended and fsynced
    metrics.csv                the same records flat (scalars only), for pandas and spreadsheets
    checkpoint.pt              the last completed epoch (written to a temporary file, then renamed)
    checkpoint.prev.pt         the epoch before: kept until a newer checkpoint is complete
    best.pt                    the weights of the best *validation* epoch (only with a validation split)
    best.next.pt               a new best epoch's weights, renamed to best.pt once that epoch's checkpoint
                               is written (a crash in between cannot leave best.pt of an epoch that the
                               resumed run trains again)
    classes.json               the classes trained on (number, training counts, names, kind of labels),
                               written when the run starts or resumes: an unfinished run's plots read it
    final.json                 the result, written once at the end; a finished run is never overwritten
    train.log                  every line the run printed
    diverged.json              why a run stopped on a non-finite loss

Guarantees: one process at a time (an OS lock on ``RUNNING``, released when the process ends, even on
``kill -9``); a finished run is never overwritten; a resumed run uses the config of its checkpoint (a
different one is refused, naming the keys); every checkpoint is verified (the archive's CRCs, then a
``weights_only`` load) before use; ``metrics.jsonl`` never loses an intact record (the checkpoint carries
the records up to its epoch and repairs a damaged file; lines it replaces are moved aside to
``metrics.superseded.jsonl``, never deleted).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from lpl_train.config import VOLATILE_KEYS

from .files import (
    _CKPT_KEYS,
    BEST,
    BEST_PENDING,
    CHECKPOINT,
    CLASSES,
    CONFIG_COPY,
    CONFIG_SUPERSEDED,
    DIVERGED,
    FINAL,
    LOCK,
    LOG,
    METRICS,
    METRICS_CSV,
    PREVIOUS,
    SUPERSEDED,
    TENSORBOARD,
    ConfigMismatch,
    CorruptCheckpoint,
    RunFolderError,
    RunLocked,
    _atomic_write,
    _fsync_dir,
    _parse_lines,
    _write_failed,
    _write_json_atomic,
    _write_text_atomic,
    atomic_save,
    config_differences,
    finite_or_none,
    load_checkpoint,
    read_metrics,
)
from .lock import _Lock
from .tracking import TensorBoardScalars

__all__ = [
    "BEST",
    "BEST_PENDING",
    "CHECKPOINT",
    "CONFIG_COPY",
    "FINAL",
    "LOCK",
    "LOG",
    "METRICS",
    "METRICS_CSV",
    "PREVIOUS",
    "ConfigMismatch",
    "CorruptCheckpoint",
    "RunFolder",
    "RunFolderError",
    "RunLocked",
    "atomic_save",
    "config_differences",
    "finite_or_none",
    "load_checkpoint",
    "read_metrics",
]


class RunFolder:
    """The run folder ``path``. Only the main process (rank 0) writes; every rank may read.

    Use as ``with RunFolder(path).locked(): ...``; then :meth:`start` (a fresh run) or :meth:`resume`,
    :meth:`end_epoch` once per epoch, :meth:`finish` once.
    """

    def __init__(self, path: str | Path, main: bool = True, tensorboard: bool = False) -> None:
        if not isinstance(path, str | Path):
            raise TypeError(f"out_dir must be a path, got {type(path).__name__}")
        self.path, self.main = Path(path), main
        self._records: list[str] = []
        self._tb = TensorBoardScalars(self.path / TENSORBOARD) if tensorboard and main else None

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- creation and lock
    def create(self) -> None:
        """Create the folder (and its parents); one-line errors for a path under a file, a read-only file
        system or a folder without write permission, naming the OS's reason."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"run folder {str(self.path)!r} exists and is not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise RunFolderError(
                f"cannot create run folder {str(self.path)!r}: a part of the path is a file"
            ) from None
        except OSError as exc:
            raise _write_failed(self.path, "run folder", exc) from None
        check_writable(self.path)

    def unwritable(self) -> int | None:
        """Why this existing folder cannot be written, as an errno (``EROFS``: a read-only file system,
        ``EACCES``: no write permission), found without writing; None when it can be, or does not exist."""
        return _unwritable(self.path) if self.path.is_dir() else None

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunFolder]:
        """Create the folder and hold its lock (main process only) for the duration of the block. A block
        that fails before anything is written (a bad loss parameter, missing data) leaves no folder
        behind: the folders this call created are removed again if they are still empty."""
        if not self.main:
            yield self
            return
        made = _missing_folders(self.path)
        self.create()
        lock = _Lock(self / LOCK)
        try:
            lock.acquire()
        except PermissionError as exc:
            raise _write_failed(self / LOCK, "lock file", exc) from None
        except RunLocked:
            raise
        except (OSError, RunFolderError) as exc:
            # no lock was taken (another process holds none): the lock file and folders this call made
            # are removed again, as after a block that fails before writing
            with contextlib.suppress(OSError):
                if (self / LOCK).stat().st_size == 0:
                    (self / LOCK).unlink()
            _remove_if_empty(made)
            if isinstance(exc, RunFolderError):
                raise
            raise _write_failed(self / LOCK, "lock file", exc) from None
        try:
            yield self
        except BaseException:
            self._close_tracking()
            lock.release()
            _remove_if_empty(made)
            raise
        self._close_tracking()
        lock.release()

    def _close_tracking(self) -> None:
        """Close the TensorBoard writer (and its thread) of the run that held the lock: a sweep or a study
        trains many runs in one process."""
        if self._tb is not None:
            self._tb.close()

    # -- state
    def finished(self) -> dict[str, Any] | None:
        """The content of ``final.json`` (None when the run is not finished)."""
        path = self / FINAL
        if not path.is_file():
            return None
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            obj = None
        if not isinstance(obj, dict):
            raise ValueError(f"result file {str(path)!r} is not a JSON object")
        return obj

    def check_fresh(self, cfg_text: str | None = None) -> None:
        """A fresh run may start here: nothing finished, no checkpoint, no epoch records to lose, and no
        ``config.toml`` of another config (a run stopped before its first checkpoint restarts freely)."""
        if (self / FINAL).exists():
            raise FileExistsError(
                f"run folder {str(self.path)!r} holds a finished run ({FINAL}); a finished run is never "
                "overwritten: choose another --out, or delete the folder to train it again"
            )
        for name in (CHECKPOINT, PREVIOUS):
            if (self / name).exists():
                diff = self._stored_differences(cfg_text)
                if diff:  # --resume would be refused: do not suggest it
                    raise FileExistsError(
                        f"run folder {str(self.path)!r} already holds a checkpoint ({name}) of another "
                        f"config (its {CONFIG_COPY} differs in {', '.join(diff)}); choose another --out, "
                        "or delete the folder to start afresh"
                    )
                raise FileExistsError(
                    f"run folder {str(self.path)!r} already holds a checkpoint ({name}); pass --resume "
                    "to continue it, or choose another --out"
                )
        if (self / METRICS).is_file() and (self / METRICS).stat().st_size > 0:
            raise FileExistsError(
                f"run folder {str(self.path)!r} holds epoch records ({METRICS}) but no checkpoint; "
                "they are not overwritten: choose another --out, or delete the folder to start afresh"
            )
        inner = self._inner_run()
        if inner is not None:
            raise FileExistsError(
                f"run folder {str(self.path)!r} holds another run in {str(inner)!r}; a run is not "
                "written over others (--out names the run's own folder, not a parent): choose another --out"
            )
        outer = self._outer_run()
        if outer is not None:
            raise FileExistsError(
                f"run folder {str(self.path)!r} lies inside the run folder {str(outer)!r}; runs are not "
                "nested (a report of either would mix them): choose another --out"
            )
        diff = self._stored_differences(cfg_text)
        if diff:
            raise FileExistsError(
                f"run folder {str(self.path)!r} holds the {CONFIG_COPY} of another config (it "
                f"differs in {', '.join(diff)}); it is not overwritten: choose another --out, or "
                "delete the folder to start afresh"
            )

    def _stored_differences(self, cfg_text: str | None) -> list[str]:
        """The keys in which this folder's ``config.toml`` differs from ``cfg_text`` ([] when either is
        missing or they agree)."""
        stored = self / CONFIG_COPY
        if cfg_text is None or not stored.is_file():
            return []
        try:
            return config_differences(stored.read_text(encoding="utf-8"), cfg_text)
        except (UnicodeDecodeError, ValueError):
            return ["(it is not a config)"]

    def _inner_run(self) -> Path | None:
        """A run folder (a ``config.toml`` or ``final.json``) at any depth below this one (a sweep's layout
        is ``NAME-sweep/KEY=VALUE/seedN``, a study's ``OUT/runs/DATASET/METHOD/POINT/seedN``), or this
        folder itself when it is a study's output folder (``study.json``); else None."""
        if (self / "study.json").is_file():
            return self.path
        names = (CONFIG_COPY, FINAL)  # one walk of the tree for both
        hit = next(
            (p for p in self.path.rglob("*") if p.name in names and p.parent != self.path), None
        )
        return None if hit is None else hit.parent

    def _outer_run(self) -> Path | None:
        """The nearest folder above this one that is a run folder: ``final.json``, or ``config.toml`` with
        ``metrics.jsonl`` (another tool's ``config.toml`` in a project folder alone does not count)."""
        for parent in self.path.resolve().parents:
            if (parent / FINAL).is_file() or (
                (parent / CONFIG_COPY).is_file() and (parent / METRICS).is_file()
            ):
                return parent
        return None

    def finished_config(self) -> str | None:
        """The config (TOML text) a finished run was trained with, as ``final.json`` keeps it; None when
        the run is not finished or its ``final.json`` was written before results kept their config."""
        done = self.finished()
        kept = None if done is None else done.get("config")
        return kept if isinstance(kept, str) else None

    def check_finished(self, cfg_text: str) -> dict[str, Any] | None:
        """For ``--resume`` of a finished run: its config must equal ``cfg_text``. Compared with the config
        ``final.json`` keeps (what the result was trained with: an edited ``config.toml`` does not count);
        for a ``final.json`` without one, with the checkpoint's own config while the checkpoint remains,
        else with ``config.toml``. Returns the verified checkpoint; None when it is gone. A damaged one
        raises ``CorruptCheckpoint`` saying that the result is intact and the last weights are lost (an
        earlier checkpoint renamed into its place would not be the result's)."""
        kept = self.finished_config()
        if kept is not None:
            self.check_config(kept, cfg_text, repr(str(self / FINAL)))
        if (self / CHECKPOINT).is_file():
            try:
                return self.resume_checkpoint(cfg_text, previous_hint=False)
            except CorruptCheckpoint as exc:
                if kept is None:  # the checkpoint's config is unreadable: config.toml's instead
                    self._check_config_copy(cfg_text)
                raise CorruptCheckpoint(
                    f"{exc}; the run is finished and its result ({FINAL}) is intact, but its last "
                    "weights are lost"
                ) from None
        if kept is None:
            self._check_config_copy(cfg_text)
        return None

    def _check_config_copy(self, cfg_text: str) -> None:
        """``cfg_text`` against ``config.toml``, where there is one."""
        stored = self / CONFIG_COPY
        if stored.is_file():
            self.check_config(stored.read_text(encoding="utf-8"), cfg_text, repr(str(stored)))

    def resume_checkpoint(self, cfg_text: str, previous_hint: bool = True) -> dict[str, Any]:
        """The verified checkpoint to resume from, after checking its config against ``cfg_text``; a damaged
        one is refused saying whether ``checkpoint.prev.pt`` is intact to resume from
        (``previous_hint``)."""
        path = self / CHECKPOINT
        if not path.is_file():
            hint = (
                f"; the previous checkpoint {str(self / PREVIOUS)!r} exists: rename it to {CHECKPOINT} "
                "to resume from it"
                if (self / PREVIOUS).is_file()
                else ""
            )
            raise FileNotFoundError(f"--resume: no checkpoint at {str(path)!r}{hint}")
        try:
            ckpt = load_checkpoint(path)
        except CorruptCheckpoint as exc:
            more = self._previous_hint() if previous_hint else ""
            raise CorruptCheckpoint(f"--resume: {exc}{more}") from None
        missing = [k for k in _CKPT_KEYS if k not in ckpt]
        if missing:
            raise CorruptCheckpoint(
                f"--resume: checkpoint {str(path)!r} lacks {', '.join(missing)}: it is not a training "
                "checkpoint of lpl_train.engine"
            )
        self.check_config(ckpt["config"], cfg_text, f"checkpoint {str(path)!r}")
        return ckpt

    def _previous_hint(self) -> str:
        prev = self / PREVIOUS
        if not prev.is_file():
            return "; no earlier checkpoint is left: start a fresh run in another --out"
        try:
            ep = load_checkpoint(prev)["epoch"]
        except (CorruptCheckpoint, OSError):
            return f"; the previous checkpoint {str(prev)!r} is damaged too"
        return (
            f"; the previous checkpoint {str(prev)!r} (after epoch {ep}) is intact: rename it to "
            f"{CHECKPOINT} to resume from there"
        )

    @staticmethod
    def check_config(stored: str, requested: str, where: str) -> None:
        diff = config_differences(stored, requested)
        if diff:
            raise ConfigMismatch(
                f"--resume: the config differs from the one of {where} in {', '.join(diff)}; resume "
                "with the same config (and --epochs), or start a fresh run in another --out "
                f"({', '.join(VOLATILE_KEYS[:-1])} and {VOLATILE_KEYS[-1]} may differ)"
            )

    # -- writing a run
    def _drop_stale_temporaries(self) -> None:
        """Remove the half-written files of a process killed mid-write (``.checkpoint.pt.new<pid>`` is a
        whole checkpoint's size); called under the folder's lock, so no live writer owns them."""
        for pattern in (".*.new[0-9]*", ".*.tmp[0-9]*"):
            for p in self.path.glob(pattern):
                if p.is_file():
                    p.unlink(missing_ok=True)

    def start(self, cfg_text: str) -> None:
        """A fresh run: the config copy and an empty metrics file."""
        self._records = []
        if self.main:
            self._drop_stale_temporaries()
            _write_text_atomic(cfg_text, self / CONFIG_COPY, "config copy")
            _write_text_atomic("", self / METRICS, "metrics file")
            for name in (METRICS_CSV, LOG):
                (self / name).unlink(missing_ok=True)

    def repair_finished_records(self, ckpt: dict[str, Any]) -> list[str]:
        """A finished run's ``metrics.jsonl`` restored to the records its final checkpoint carries when it
        differs from them (a damaged or missing line; nothing else is rewritten); returns what was
        repaired. A checkpoint without records (older runs) leaves the file as it is."""
        records = ckpt.get("records")
        if not self.main or records is None:
            return []
        path = self / METRICS
        lines = _parse_lines(path) if path.is_file() else []
        if [t for _n, t, _r in lines] == list(records):
            return []
        self._records = list(records)  # what metrics.csv is written from
        return self._restore_records(lines, list(records), ckpt["epoch"])

    def resume(self, ckpt: dict[str, Any], cfg_text: str) -> list[str]:
        """Restore ``metrics.jsonl`` to the records of the checkpoint's epochs; returns what was repaired."""
        start = ckpt["epoch"]
        records = ckpt.get("records")
        if not self.main:
            self._records = list(records or [])
            return []
        self._drop_stale_temporaries()
        notes = self._restore_config_copy(ckpt.get("config"), cfg_text)
        lines = _parse_lines(self / METRICS) if (self / METRICS).is_file() else []
        if records is None:  # a checkpoint from before records were carried: keep what is intact
            records = self._records_from_file(lines, start)
        self._records = list(records)
        return (
            notes
            + self._settle_best(ckpt)
            + self._restore_records(lines, list(self._records), start)
        )

    def _settle_best(self, ckpt: dict[str, Any]) -> list[str]:
        """``best.next.pt`` left by a process that stopped after a new best epoch: made ``best.pt`` when the
        checkpoint resumed from is that epoch's (it stopped after the checkpoint, before the rename), else
        removed (it stopped before: the resumed run trains that epoch again, and its weights may differ)."""
        pending = self / BEST_PENDING
        if not pending.is_file():
            return []
        try:
            best = load_checkpoint(pending)
        except CorruptCheckpoint:
            best = {}
        epoch = (best.get("best_val") or {}).get("epoch")
        ckpt_best = (ckpt.get("best_val") or {}).get("epoch")
        if best.get("epoch") == ckpt["epoch"] and epoch == ckpt_best:
            self._promote_best()
            return [f"{BEST_PENDING} (epoch {epoch}, the checkpoint's best) made {BEST}"]
        pending.unlink()
        return [
            f"{BEST_PENDING} removed: not of the checkpoint's epoch, which the run trains on from"
        ]

    def _promote_best(self) -> None:
        """``best.next.pt`` renamed ``best.pt``, durably."""
        os.replace(self / BEST_PENDING, self / BEST)
        _fsync_dir(self.path)

    def _restore_records(self, lines: list, keep: list[str], start: int) -> list[str]:
        """``metrics.jsonl`` made the checkpoint's records ``keep`` (of epochs 0..start-1): lines that
        match none of them moved to ``metrics.superseded.jsonl``, the missing ones written back, the file
        rewritten only where that changes it; returns what was done."""
        notes = []
        unmatched = Counter(keep)  # each record of the checkpoint matches one identical line
        aside = []
        for _n, text, _r in lines:
            if unmatched[text] > 0:
                unmatched[text] -= 1
            else:
                aside.append(text)
        in_order = [t for _n, t, _r in lines if t not in aside] == keep
        if aside:
            with open(self / SUPERSEDED, "a", encoding="utf-8") as fh:
                fh.write("".join(t + "\n" for t in aside))
            notes.append(
                f"{len(aside)} line(s) of {METRICS} not matching the checkpoint's records (damaged, or "
                f"of epochs after epoch {start}) moved to {SUPERSEDED}"
            )
        missing = sum(unmatched.values())
        if missing:
            notes.append(f"{missing} record(s) restored from the checkpoint")
        if aside or missing or not in_order:
            _write_text_atomic("".join(t + "\n" for t in keep), self / METRICS, "metrics file")
        self._write_csv()
        return notes

    def _restore_config_copy(self, trained: str | None, cfg_text: str) -> list[str]:
        """``config.toml`` states the config the run trains with: written when missing, and rewritten from
        the checkpoint's own config when it differs from it (edited by hand, or damaged), the old file
        kept as ``config.superseded.toml``; returns what was done."""
        path = self / CONFIG_COPY
        if not path.is_file():
            _write_text_atomic(cfg_text, path, "config copy")
            return []
        if trained is None:  # a checkpoint without its config: nothing to compare with
            return []
        try:
            diff = config_differences(path.read_text(encoding="utf-8"), trained)
        except (UnicodeDecodeError, ValueError):  # TOMLDecodeError is a ValueError
            diff = ["(it is not a config)"]
        if not diff:
            return []
        os.replace(path, self / CONFIG_SUPERSEDED)
        _write_text_atomic(trained, path, "config copy")
        return [
            f"{CONFIG_COPY} differed from the checkpoint's config in {', '.join(diff)}; moved to "
            f"{CONFIG_SUPERSEDED} and written again from the checkpoint's config"
        ]

    def _records_from_file(self, lines: list, start: int) -> list[str]:
        """The records of epochs 0..start-1 from ``metrics.jsonl``, for a checkpoint that does not carry
        them. Of two lines of one epoch the last written is kept: a line is appended right after its
        checkpoint, so a second line of an epoch comes from a run resumed from an earlier checkpoint,
        and the checkpoint now resumed (the newest) continues that run, not the abandoned one."""
        out = []
        for epoch in range(start):
            hit = [t for _n, t, r in lines if r is not None and r.get("epoch") == epoch]
            if not hit:
                bad = [n for n, _t, r in lines if r is None]
                where = f" (damaged line {bad[0]})" if bad else ""
                raise ValueError(
                    f"--resume: {str(self / METRICS)!r} lacks the record of epoch {epoch}{where} and "
                    "the checkpoint does not carry its records; it cannot be resumed without losing it"
                )
            out.append(hit[-1])
        return out

    def end_epoch(self, record: dict[str, Any], state: dict[str, Any]) -> None:
        """Checkpoint (carrying every record so far), then ``best.next.pt`` renamed ``best.pt`` (a new best
        epoch), then append the record; the previous checkpoint is kept as ``checkpoint.prev.pt`` until
        the new one is complete."""
        line = json.dumps(record, allow_nan=False)
        self._records.append(line)
        if not self.main:
            return
        self.save_checkpoint({**state, "records": list(self._records)})
        # this epoch is the best so far: its checkpoint is complete
        if (self / BEST_PENDING).is_file():
            self._promote_best()
        try:
            with open(self / METRICS, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise _write_failed(self / METRICS, "metrics file", exc) from None
        self._write_csv()
        if self._tb is not None:
            self._tb.add(record, len(self._records))

    def save_checkpoint(self, state: dict[str, Any], name: str = CHECKPOINT) -> None:
        path = self / name
        tmp = self / f".{name}.new{os.getpid()}"
        try:
            _atomic_write(tmp, lambda fh: torch.save(state, fh), "checkpoint")
        except RunFolderError as exc:
            raise RunFolderError(
                f"{str(exc).replace(str(tmp), str(path))}; {CHECKPOINT} is kept as it was"
            ) from None
        try:
            if name == CHECKPOINT and path.is_file():
                link = self / f".{PREVIOUS}.tmp{os.getpid()}"
                link.unlink(missing_ok=True)
                try:
                    os.link(path, link)
                except OSError:  # no hard links on this file system: copy
                    import shutil

                    shutil.copyfile(path, link)
                os.replace(link, self / PREVIOUS)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _write_failed(path, "checkpoint", exc) from None
        _fsync_dir(self.path)

    def discard_checkpoints(self) -> None:
        """Remove ``checkpoint.pt`` and ``checkpoint.prev.pt`` of a run whose results are kept elsewhere."""
        if self.main:
            for name in (CHECKPOINT, PREVIOUS):
                (self / name).unlink(missing_ok=True)

    def write_final(self, final: dict[str, Any]) -> None:
        if self.main:
            _write_json_atomic(final, self / FINAL)

    def write_classes(self, info: dict[str, Any]) -> None:
        """``classes.json``: the classes the run trains on (see the module docstring)."""
        if self.main:
            _write_json_atomic(info, self / CLASSES)

    def write_diverged(self, info: dict[str, Any]) -> None:
        if self.main:
            _write_json_atomic(info, self / DIVERGED)

    def log(self, line: str) -> None:
        """Append one line to ``train.log`` (main process; a failure to log never stops a run)."""
        if self.main and self.path.is_dir():
            with contextlib.suppress(OSError), open(self / LOG, "a", encoding="utf-8") as fh:
                fh.write(line.rstrip("\n") + "\n")

    def _write_csv(self) -> None:
        """``metrics.csv``: one row per epoch, the scalar fields of the records (lists and tables left out,
        the ``best``/``best_val`` tables flattened to ``best_*``/``best_val_*``)."""
        rows = []
        for text in self._records:
            rec = json.loads(text)
            row = {k: v for k, v in rec.items() if isinstance(v, int | float | str | None)}
            for table in ("best", "best_val"):
                for k, v in (rec.get(table) or {}).items():
                    row[f"{table}_{k}"] = v
            rows.append(row)
        cols: list[str] = []
        for row in rows:
            cols.extend(k for k in row if k not in cols)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        with contextlib.suppress(RunFolderError):  # derived data: never stops a run
            _write_text_atomic(buf.getvalue(), self / METRICS_CSV, "metrics table")


def _unwritable(folder: Path) -> int | None:
    """Why the existing ``folder`` cannot be written, as an errno, without writing to it: ``EROFS`` on a
    read-only file system (which ``os.access`` reports as a missing permission), ``EACCES`` without write
    permission; None when it can be written."""
    if hasattr(os, "statvfs") and os.statvfs(folder).f_flag & os.ST_RDONLY:
        return errno.EROFS
    if not os.access(folder, os.W_OK):
        return errno.EACCES
    return None


def check_writable(path: Path) -> None:
    """What :meth:`RunFolder.create` would refuse for the run folder ``path``, found without writing (for
    dry runs and a sweep's checks before it starts): a file in its place or on its way, a read-only file
    system, no write permission where it is or would be made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"run folder {str(path)!r} exists and is not a folder")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise RunFolderError(
            f"cannot create run folder {str(path)!r}: a part of the path is a file"
        )
    reason = _unwritable(existing)
    if reason is not None:
        err = RunFolderError(f"cannot write run folder {str(path)!r}: {os.strerror(reason)}")
        err.errno = reason  # type: ignore[attr-defined]
        raise err


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            break
        missing.append(p)
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is empty; stop at the first that is not."""
    for p in folders:
        try:
            p.rmdir()  # only ever removes an empty folder
        except OSError:
            return
