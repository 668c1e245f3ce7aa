"""Command line: ``lpl-train list | run | sweep | study | report | plot`` (also ``python -m lpl_train``).

``run CONFIG [--epochs N] [--set key=value ...] [--out DIR] [--resume] [--dry-run] [--quiet]``
    Train one config (a shipped name, see ``list``, or a path to a TOML file). ``--dry-run`` builds the
    model and the loss and loads the data (or says which path is missing and how to get it), then stops.
``sweep CONFIG [--grid key=v1,v2 ...] [--seeds N] [--first-seed S] [--jobs N] [--mps off|auto|on] [--keep-going]
[--out DIR] [--epochs N] [--set ...]``
    One run folder per grid point and seed (``train.seed`` = S..S+N-1, S = 0 by default),
    ``OUT/<point>/seed<k>``; finished
    runs are skipped (after checking their config), half-done ones resumed, and a folder being trained by
    another process (lock file) is left alone, so several sweeps (or a job array) can run the same command
    in parallel. A diverged run is reported and the others go on (exit status 1 at the end); so is a run
    that fails with an error, with ``--keep-going`` (without it the error stops the sweep). ``--mps``:
    with ``--jobs N`` on one GPU, the N workers as clients of a private NVIDIA MPS daemon
    (``lpl_train.engine.mps``), so that their kernels overlap.
``study [FILE] [--quick] [--jobs N] [--out DIR] [--figures DIR] [--records FILE] [--report-only]``
    A study file (datasets × methods × grids × seeds, selection on a validation split; default: the shipped
    Fashion-MNIST study) run through the same run folders as ``sweep``, then its tables and figures.
``report DIR [--format md|csv] [--write] [--groups counts|ranks]``
    Mean ± std over distinct seeds of every finished run under DIR, beside the paper's number (Tables I-X);
    many/medium/few by the paper's count thresholds unless ``--groups ranks``.
``plot RUN [RUN ...] [--out FILE.png|.pdf]``
    Training curves, per-class accuracy and per-class loss variation (head → tail) of runs, overlaid.
``data convert-la SRC_DIR DEST_DIR [--dtype uint8|float32] [--force]``
    Convert the Logit Adjustment CIFAR-LT TFRecords in SRC_DIR to the ``.npz`` files of the
    ``cifar_lt_npz`` dataset in DEST_DIR, without TensorFlow.

Errors are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from lpl_train import __version__
from lpl_train._pipes import flush_stdout
from lpl_train._warning_lines import one_line_warnings
from lpl_train.config import (
    ConfigError,
    list_configs,
    load_config,
    schedule_warnings,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lpl-train", description="Train and report LPL experiments.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    ls = sub.add_parser("list", help="list the shipped configs")
    ls.add_argument("filter", nargs="*", default=[],
                    help="words that must all occur in a config's name, table, dataset or loss "
                         "(e.g. `lpl-train list IV la`)")  # fmt: skip

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("config", help="shipped config name (see `lpl-train list`) or a .toml path")
        sp.add_argument("--epochs", type=int, default=None, help="override schedule.epochs")
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set optim.lr=0.05 (value parsed as TOML)")  # fmt: skip
        sp.add_argument("--quiet", action="store_true", help="no progress bar")

    r = sub.add_parser("run", help="train one config")
    common(r)
    r.add_argument("--out", default=None, help="run folder (default: runs/<name>)")
    r.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    r.add_argument(
        "--dry-run", action="store_true", help="build model and loss, check the data, stop"
    )

    s = sub.add_parser("sweep", help="run a grid of configs over seeds, skipping finished runs")
    common(s)
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a config key and its values (repeatable; the product is swept; empty values, "
                   "as in 1,,2, are dropped)")  # fmt: skip
    s.add_argument("--seeds", type=int, default=1, help="train seeds S..S+N-1 per grid point")
    s.add_argument("--first-seed", type=int, default=0, metavar="S",
                   help="the first train seed (default 0): split the seeds of one sweep between machines, "
                   "e.g. --seeds 2 on one and --seeds 3 --first-seed 2 on another, into the same --out")  # fmt: skip
    s.add_argument("--out", default=None, help="sweep folder (default: runs/<name>-sweep)")
    s.add_argument("--dry-run", action="store_true", help="list the run folders, train nothing")
    s.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train N runs at once, one process each (on one GPU they share the device; "
                   "each holds its own copy of the data); the aggregate images/s is printed at the end")  # fmt: skip
    s.add_argument("--keep-going", action="store_true",
                   help="a run that fails with an error is reported (its traceback appended to its "
                   "train.log) and the other runs go on; the exit status is 1 at the end (a diverging "
                   "loss is always reported this way)")  # fmt: skip
    # lpl_train.engine.mps.MPS_MODES, written out: importing the engine would slow every command's start
    s.add_argument("--mps", choices=("off", "auto", "on"), default="off",
                   help="with --jobs N > 1 on a GPU: run the workers as clients of a private NVIDIA MPS daemon, "
                   "so their kernels overlap instead of time-slicing the device (auto: where it starts and "
                   "works, else without; on: or fail); started for the sweep and stopped after")  # fmt: skip

    from lpl_train.study_cli import add_arguments

    add_arguments(sub.add_parser("study", help="run a study file (grids × seeds, selection on validation)"),
                  positional=True)  # fmt: skip

    rp = sub.add_parser("report", help="mean ± std over seeds beside the paper's numbers")
    rp.add_argument("dir", help="folder holding run folders")
    rp.add_argument("--format", choices=("md", "csv"), default="md")
    rp.add_argument(
        "--write", action="store_true", help="also write report.md / report.csv into DIR"
    )
    rp.add_argument("--groups", default="counts", metavar="counts|ranks",
                    help="many/medium/few: the paper's count thresholds (counts, default; counts:MANY,FEW) "
                         "or by rank, 30%%/40%%/30%% (ranks; ranks:F_MANY,F_FEW)")  # fmt: skip

    pl = sub.add_parser("plot", help="plot run folders: curves, per-class accuracy, loss variation")
    pl.add_argument("runs", nargs="+", help="run folders (overlaid)")
    pl.add_argument(
        "--out", default=None, help="output file .png/.pdf/.svg (default RUN/plots.png)"
    )

    d = sub.add_parser("data", help="prepare datasets")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    la = dsub.add_parser(
        "convert-la",
        help="convert the Logit Adjustment CIFAR-LT TFRecords to .npz (no TensorFlow needed)",
        description="Read cifar10-lt_train, cifar10_test, cifar100-lt_train and cifar100_test "
        "(.tfrecord) from SRC_DIR, as downloaded from "
        "storage.googleapis.com/gresearch/logit_adjustment/, and write <name>.npz into DEST_DIR "
        "for the cifar_lt_npz dataset (data.root = DEST_DIR).",
    )
    la.add_argument("src_dir", metavar="SRC_DIR", help="folder holding the .tfrecord files")
    la.add_argument("dest_dir", metavar="DEST_DIR", help="folder to write the .npz files into")
    la.add_argument("--dtype", choices=("uint8", "float32"), default="uint8",
                    help="uint8 images (default, lossless) or float32 x/255-0.5 as the authors' converter")  # fmt: skip
    la.add_argument("--force", action="store_true", help="replace existing .npz files")
    return p


def _cmd_data(a: argparse.Namespace) -> int:
    from lpl_train.data.tfrecord import LA_FILES, convert_la

    for src, out, counts in convert_la(a.src_dir, a.dest_dir, dtype=a.dtype, overwrite=a.force):
        n, expected = int(counts.sum()), LA_FILES[out.stem][1]
        note = "" if n == expected else f" (the LA release has {expected})"
        print(f"{src} -> {out}: {n} images{note}, {len(counts)} classes, "
              f"{int(counts.max())} .. {int(counts.min())} per class")  # fmt: skip
    return 0


def _cmd_list(words: list[str] | tuple[str, ...] = ()) -> int:
    from lpl_train.config import SCHEMA, find_config

    wanted = [w.lower() for w in words]
    # a table numeral names its table only: III is no part of VIII (nor of the name tviii_...)
    numerals = {t.lower() for t in SCHEMA["paper"]["table"][2]}
    for name in list_configs():
        cfg = load_config(find_config(name))
        cell = cfg.get("paper")
        where = (
            f"Table {cell['table']}: {cell['row']} / {cell['column']}"
            if cell
            else cfg["description"]
        )
        text = f"{where} {cfg['data']['name']} {cfg['loss']['name']}".lower()
        tokens = set(re.split(r"[^a-z0-9_+.:-]+", text)) | set(name.split("_"))
        table = cell["table"].lower() if cell else None
        if wanted and not all(
            w == table if w in numerals else w in tokens or w in name for w in wanted
        ):
            continue
        print(f"{name:44s} {where}")
    return 0


def _run_one(cfg: dict[str, Any], out: Path, resume: bool, quiet: bool) -> dict[str, Any]:
    from lpl_train.engine import fit

    return fit(cfg, out, resume=resume, progress=False if quiet else None)


def _check_out(cfg: dict[str, Any], out: Path, resume: bool) -> str:
    """What ``run`` would do with its folder ``out``, checked without writing anything: the refusals of
    a fresh run (a finished run, a checkpoint, records, another config, a run above or below it), the
    checkpoint and config of a resume, a read-only file system, and the tensorboard package."""
    from lpl_train.config import dumps_toml
    from lpl_train.engine.distributed import DistInfo, check_checkpoint_world
    from lpl_train.engine.run_folder import RunFolder, check_writable
    from lpl_train.engine.tracking import TensorBoardScalars

    if cfg["train"]["tensorboard"]:
        # raises when the package is missing; writes nothing
        TensorBoardScalars(out / "tensorboard")
    check_writable(out)  # a file in its place, a read-only file system, no permission
    folder, text = RunFolder(out), dumps_toml(cfg)
    if resume and folder.finished() is not None:
        from lpl_train.engine.files import CorruptCheckpoint

        try:
            folder.check_finished(text)  # the config check of fit's --resume of a finished run
        except CorruptCheckpoint as exc:  # fit notes it and trains nothing: the result stands
            return f"run folder {out}: finished; --resume would train nothing ({exc})"
        return f"run folder {out}: finished; --resume would train nothing"
    if resume:
        ckpt = folder.resume_checkpoint(text)
        # on as many processes as wrote it: torchrun's WORLD_SIZE (one without it)
        check_checkpoint_world(ckpt, DistInfo.from_env().world)
        what = f"would resume after epoch {ckpt['epoch']}"
    else:
        folder.check_fresh(text)  # also where it does not exist yet: a run folder above it
        what = "would start a fresh run"
    return f"run folder {out}: {what}"


def _dry_run(cfg: dict[str, Any], out: Path, resume: bool) -> int:
    import torch

    from lpl_train.engine import check_config, select_device

    device = select_device(cfg["train"]["device"])
    folder = _check_out(cfg, out, resume)
    info = check_config(cfg, device=device)
    built = (
        f"model {cfg['model']['name']} ({info['model_params'] / 1e6:.3f}M parameters, "
        f"{info['num_classes']} classes) and loss {cfg['loss']['name']} ({info['loss']}) build"
    )
    missing = [e for e in (info["data_error"], info["weights_error"]) if e]
    main_rank = _main_rank()  # under torchrun every rank checks, and rank 0 reports
    if missing:
        what = " and ".join(
            w
            for w, e in (("data", info["data_error"]), ("model weights", info["weights_error"]))
            if e
        )
        if main_rank:
            print(f"{cfg['name']}: {built}; {what} MISSING")
        raise FileNotFoundError(" | ".join(missing))
    if main_rank:
        print(
            f"{cfg['name']}: data {cfg['data']['name']} ok ({info['train_size']} train / {info['test_size']} test"
            f"{', multi-label' if info['multi_label'] else ''}); {built}; device {device}; torch {torch.__version__}; "
            f"{folder}"
        )
    return 0


def _main_rank() -> bool:
    """Whether this process is rank 0 of a torchrun launch (or the only process), as the run reads the
    environment (``DistInfo``: RANK counts only with WORLD_SIZE > 1, and is an int, "00" is rank 0). An
    environment the run refuses: True (every process then reports its error line, after the warnings)."""
    from lpl_train.engine.distributed import DistInfo

    try:
        return DistInfo.from_env().main
    except ValueError:
        return True


def _warn(cfg: dict[str, Any]) -> None:
    if not _main_rank():  # the config is every rank's: its warnings once
        return
    for msg in schedule_warnings(cfg):
        print(f"lpl-train: warning: {cfg['name']}: {msg}", file=sys.stderr)


def _warn_points(runs: list[Any]) -> None:
    """The schedule warnings of a sweep, from each grid point's own config (a ``--grid`` of
    ``schedule.epochs`` or ``loss.params.drw_epoch`` decides them point by point): a warning of every
    point once, as ``run`` gives it, the others naming their grid point."""
    from lpl_train.experiment import _point_text, point_warnings

    points: dict[str, list[str]] = {}  # the seeds of a point share its schedule
    for run in runs:
        points.setdefault(_point_text(run.point), schedule_warnings(run.cfg))
    said = point_warnings(list(points.items()))
    for where, msg in said:
        if where is not None:
            print(f"lpl-train: warning: {where}: {msg}", file=sys.stderr)
    for where, msg in said:
        if where is None:
            print(f"lpl-train: warning: {runs[0].cfg['name']}: {msg}", file=sys.stderr)


def _cmd_run(a: argparse.Namespace) -> int:
    cfg = load_config(a.config, a.overrides, a.epochs)
    _warn(cfg)
    out = Path(a.out) if a.out else Path("runs") / cfg["name"]
    if a.dry_run:
        return _dry_run(cfg, out, a.resume)
    a.run_folder = out  # for the message after Ctrl-C
    final = _run_one(cfg, out, a.resume, a.quiet)
    if not _main_rank():  # under torchrun only rank 0 reports
        return 0
    fin = final.get("final", {})
    shown = ", ".join(
        f"{k} {v:.2f}" for k, v in fin.items() if isinstance(v, float) and "loss" not in k
    )
    print(f"{cfg['name']}: done, {shown}; run folder {out}")
    return 0


def _describe_sweep_run(o: Any) -> str:
    why = (o.result or {}).get("diverged")
    return f"DIVERGED ({why})" if why else "trained"


def _cmd_sweep(a: argparse.Namespace) -> int:
    from lpl_train.engine.mps import mps_server
    from lpl_train.experiment import (
        ConfigRunner,
        check_runs,
        execute,
        parse_grid,
        plan_sweep,
    )
    from lpl_train.experiment_throughput import throughput

    if a.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {a.seeds}")
    if a.first_seed < 0:
        raise ConfigError(f"--first-seed must be >= 0, got {a.first_seed}")
    if a.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {a.jobs}")
    grid = parse_grid(a.grid)
    base = load_config(a.config, a.overrides, a.epochs)
    root = Path(a.out) if a.out else Path("runs") / f"{base['name']}-sweep"
    runs = plan_sweep(
        a.config, a.overrides, grid, range(a.first_seed, a.first_seed + a.seeds), a.epochs, root
    )
    _warn_points(runs)
    t0 = time.perf_counter()
    runner = ConfigRunner(
        quiet=a.quiet or a.jobs > 1
    )  # no interleaved progress bars from N processes
    # what a run folder would refuse (another config's run, a run folder around --out) stops the sweep
    # before the MPS daemon starts and before any run trains; a dry run reports it the same way
    check_runs(runs, runner)
    # a dry run trains nothing: no daemon to start (and no MPS line to print)
    with contextlib.nullcontext() if a.dry_run else mps_server(a.mps, needed=a.jobs > 1):
        done = execute(
            runs, runner, jobs=a.jobs, dry_run=a.dry_run, describe=_describe_sweep_run, check=False,
            keep_going=a.keep_going,
        )  # fmt: skip
    if a.dry_run:
        return 0
    wall = time.perf_counter() - t0
    diverged = [o for o in done if o.status == "trained" and o.result and o.result.get("diverged")]
    failed = [o for o in done if o.status == "failed"]
    trained = sum(o.status == "trained" for o in done) - len(diverged)
    locked = sum(o.status == "locked" for o in done)
    print(
        f"sweep {root}: {len(runs)} runs, {trained} trained now, {locked} locked by another process"
        + (f", {len(diverged)} diverged" if diverged else "")
        + (f", {len(failed)} failed" if failed else "")
    )
    for o in diverged:
        print(f"sweep {root}: {o.run.key} diverged: {o.result['diverged']}", file=sys.stderr)
    for o in failed:
        where = f"; traceback in {o.result['log']}" if o.result.get("log") else ""
        print(f"sweep {root}: {o.run.key} failed: {o.result['error']}{where}", file=sys.stderr)
    if failed:
        print(
            f"sweep {root}: the same command retries the failed runs (from their checkpoints where "
            "they have one) and reads the finished ones back",
            file=sys.stderr,
        )
    tp = throughput(done, wall)
    if tp["runs"]:
        print(
            f"sweep {root}: throughput {tp['aggregate_images_per_s']:.0f} images/s in all "
            f"({tp['images']} training images of {tp['runs']} run(s) in {wall:.1f} s wall, "
            f"--jobs {a.jobs}); one run trained at {tp['mean_run_images_per_s']:.0f} images/s on average"
            + (
                f"; {tp['overlap_images_per_s']:.0f} images/s together over the {tp['overlap_s']:.1f} s "
                "in which all of them trained at once (after their first epochs)"
                if tp["overlap_images_per_s"] and a.jobs > 1
                else ""
            )
        )
    return 1 if diverged or failed else 0


def _cmd_report(a: argparse.Namespace) -> int:
    from lpl_train.report import make_report

    text = make_report(a.dir, a.format, a.groups)
    print(text, end="")
    if a.write:
        path = Path(a.dir) / f"report.{a.format}"
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OSError(exc.errno, f"cannot write report {str(path)!r}: {exc.strerror}") from None
    return 0


def _command(args: argparse.Namespace) -> int:
    if args.cmd == "list":
        return _cmd_list(args.filter)
    if args.cmd == "run":
        return _cmd_run(args)
    if args.cmd == "sweep":
        return _cmd_sweep(args)
    if args.cmd == "data":
        return _cmd_data(args)
    if args.cmd == "study":
        from lpl_train.study_cli import run as run_study

        return run_study(args)
    if args.cmd == "plot":
        from lpl_train.plot import main as plot_main

        return plot_main(args.runs, args.out)
    return _cmd_report(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lpl-train`` console script; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        check_paths_given(parser, args)
    except SystemExit:  # --help, --version or a usage error: its text may meet a closed pipe too
        flush_stdout()
        raise
    errors = command_errors()
    try:
        with one_line_warnings():  # (and in the worker processes of a sweep)
            status = _command(args)
        flush_stdout()  # a reader gone away changes nothing of what the command did: its status stands
        return status
    except BrokenPipeError:  # `lpl-train list | head`: the reader went away; nothing left to say
        flush_stdout()
        return 0
    except errors as exc:
        print(f"lpl-train: error{_rank_tag()}: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lpl-train: interrupted{_how_to_continue(args)}", file=sys.stderr)
        return 130


def _rank_tag() -> str:
    """`` (rank R)`` under torchrun with more than one process, whose ranks each print their error (they can
    differ: one rank's data or device fails), else nothing."""
    world, rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK")
    return f" (rank {rank})" if rank is not None and world.isdigit() and int(world) > 1 else ""


def check_paths_given(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse an empty path option (``--out ''``, ``--figures ''``, ``--records ''``): it read as "not given"
    (the default folder) or as the current folder."""
    for name in ("out", "figures", "records"):
        if getattr(args, name, None) == "":
            parser.error(f"--{name} is empty: give a path, or leave --{name} out for its default")


def command_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a command reports as one line with exit status 2 (bad input, a file or folder it cannot
    use, a refused run folder, a diverged run, a missing package); also those of ``python -m lpl_train.study``."""
    from lpl_train.engine import RunFolderError, TrainingDiverged
    from lpl_train.engine.mps import MPSError

    return (ConfigError, ValueError, TypeError, KeyError, OSError, RunFolderError, TrainingDiverged,
            ImportError, MPSError)  # fmt: skip


def _how_to_continue(args: argparse.Namespace) -> str:
    """What to do after Ctrl-C: ``--resume`` only where a checkpoint exists to resume from."""
    if args.cmd == "run":
        out = getattr(args, "run_folder", None)
        if out is not None and (Path(out) / "checkpoint.pt").is_file():
            return "; resume the run: the same command with --resume"
        return (
            "; no epoch had finished (no checkpoint): run the same command again without --resume"
        )
    if args.cmd in ("sweep", "study"):
        return (
            "; run the same command again: finished runs are kept, the others resume from their "
            "checkpoints"
        )
    return ""


def _one_line(exc: BaseException) -> str:
    """The error as one line; an OS error names its file (``[Errno 28] ...`` prefixes dropped)."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {str(exc.filename)!r}" if exc.filename else ""
        extra = f" -> {str(exc.filename2)!r}" if getattr(exc, "filename2", None) else ""
        msg = f"{exc.strerror}:{where}{extra}" if where else exc.strerror
        if type(exc).__name__ in ("URLError", "HTTPError") or "urlopen" in str(exc):
            msg = f"network: {msg}"
    else:
        msg = _worker_message(exc, str(exc))
    msg = " ".join(msg.split()) or type(exc).__name__
    if isinstance(exc, KeyError):
        msg = msg.strip("'\"")
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in _TRAIN_EXTRA:
        msg += " (part of the [train] extra: pip install 'lpl-torch[train]')"
    return msg


def _worker_message(exc: BaseException, text: str) -> str:
    """An error re-raised from a DataLoader worker carries torch's "Caught X in DataLoader worker process
    N" and the worker's whole traceback in its message: keep the original message and say where."""
    if "\nOriginal Traceback (most recent call last):" not in text:
        return text
    # its first line: "Caught BadFile in DataLoader worker process 0."
    head = text.split("\n", 1)[0].strip().rstrip(".")
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    cls = type(exc)
    for prefix in (f"{cls.__module__}.{cls.__qualname__}: ", f"{cls.__name__}: "):
        if last.startswith(prefix):
            last = last[len(prefix) :]
            break
    where = head.split(" in ", 1)[1] if " in " in head else "a DataLoader worker"
    return f"{last} (in {where})"


#: Import names of the [train] extra's packages (pyproject.toml).
_TRAIN_EXTRA = ("scipy", "sympy", "matplotlib", "tqdm", "PIL")


if __name__ == "__main__":
    sys.exit(main())
