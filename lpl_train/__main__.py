"""Command line: ``lpl-train list | run | sweep | report`` (also ``python -m lpl_train``).

``run CONFIG [--epochs N] [--set key=value ...] [--out DIR] [--resume] [--dry-run] [--quiet]``
    Train one config (a shipped name, see ``list``, or a path to a TOML file). ``--dry-run`` builds the
    model and the loss and loads the data (or says which path is missing and how to get it), then stops.
``sweep CONFIG --grid key=v1,v2 [--grid ...] --seeds N [--out DIR] [--epochs N] [--set ...]``
    One run folder per grid point and seed (``train.seed`` = 0..N-1), ``OUT/<point>/seed<k>``; finished
    runs are skipped, half-done ones resumed, and a folder being trained by another process (lock file) is
    left alone, so several sweeps (or a job array) can run the same command in parallel.
``report DIR [--format md|csv] [--write]``
    Mean ± std over seeds of every finished run under DIR, beside the paper's number (Tables I-X).

Errors are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path
from typing import Any

from lpl_train import __version__
from lpl_train.config import (
    ConfigError,
    list_configs,
    load_config,
    parse_value,
    schedule_warnings,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lpl-train", description="Train and report LPL experiments.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    sub.add_parser("list", help="list the shipped configs")

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
                   help="a config key and its values (repeatable; the product is swept)")  # fmt: skip
    s.add_argument("--seeds", type=int, default=1, help="train seeds 0..N-1 per grid point")
    s.add_argument("--out", default=None, help="sweep folder (default: runs/<name>-sweep)")
    s.add_argument("--dry-run", action="store_true", help="list the run folders, train nothing")

    rp = sub.add_parser("report", help="mean ± std over seeds beside the paper's numbers")
    rp.add_argument("dir", help="folder holding run folders")
    rp.add_argument("--format", choices=("md", "csv"), default="md")
    rp.add_argument(
        "--write", action="store_true", help="also write report.md / report.csv into DIR"
    )
    return p


def _cmd_list() -> int:
    from lpl_train.config import find_config

    for name in list_configs():
        cfg = load_config(find_config(name))
        cell = cfg.get("paper")
        where = (
            f"Table {cell['table']}: {cell['row']} / {cell['column']}"
            if cell
            else cfg["description"]
        )
        print(f"{name:44s} {where}")
    return 0


def _run_one(cfg: dict[str, Any], out: Path, resume: bool, quiet: bool) -> dict[str, Any]:
    from lpl_train.engine import fit

    return fit(cfg, out, resume=resume, progress=False if quiet else None)


def _dry_run(cfg: dict[str, Any]) -> int:
    import torch

    from lpl_train.engine import check_config, select_device

    device = select_device(cfg["train"]["device"])
    info = check_config(cfg)
    built = (
        f"model {cfg['model']['name']} ({info['model_params'] / 1e6:.3f}M parameters, "
        f"{info['num_classes']} classes) and loss {cfg['loss']['name']} ({info['loss']}) build"
    )
    missing = [e for e in (info["data_error"], info["weights_error"]) if e]
    if missing:
        what = " and ".join(
            w
            for w, e in (("data", info["data_error"]), ("model weights", info["weights_error"]))
            if e
        )
        print(f"{cfg['name']}: {built}; {what} MISSING")
        raise FileNotFoundError(" | ".join(missing))
    print(
        f"{cfg['name']}: data {cfg['data']['name']} ok ({info['train_size']} train / {info['test_size']} test"
        f"{', multi-label' if info['multi_label'] else ''}); {built}; device {device}; torch {torch.__version__}"
    )
    return 0


def _warn(cfg: dict[str, Any]) -> None:
    for msg in schedule_warnings(cfg):
        print(f"lpl-train: warning: {cfg['name']}: {msg}", file=sys.stderr)


def _cmd_run(a: argparse.Namespace) -> int:
    cfg = load_config(a.config, a.overrides, a.epochs)
    _warn(cfg)
    if a.dry_run:
        return _dry_run(cfg)
    out = Path(a.out) if a.out else Path("runs") / cfg["name"]
    final = _run_one(cfg, out, a.resume, a.quiet)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    fin = final.get("final", {})
    shown = ", ".join(
        f"{k} {v:.2f}" for k, v in fin.items() if isinstance(v, float) and "loss" not in k
    )
    print(f"{cfg['name']}: done, {shown}; run folder {out}")
    return 0


def _parse_grid(items: list[str]) -> list[tuple[str, list[Any]]]:
    grid = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r} must look like key=v1,v2")
        key, vals = item.split("=", 1)
        values = [parse_value(v.strip()) for v in vals.split(",") if v.strip()]
        if not key.strip() or not values:
            raise ConfigError(f"--grid {item!r} must name a key and at least one value")
        grid.append((key.strip(), values))
    return grid


def _point_name(point: list[tuple[str, Any]]) -> str:
    if not point:
        return "default"
    safe = "".join(
        c if c.isalnum() or c in "._-=," else "_" for c in ",".join(f"{k}={v}" for k, v in point)
    )
    return safe


def _cmd_sweep(a: argparse.Namespace) -> int:
    if a.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {a.seeds}")
    grid = _parse_grid(a.grid)
    base = load_config(a.config, a.overrides, a.epochs)
    _warn(base)
    root = Path(a.out) if a.out else Path("runs") / f"{base['name']}-sweep"
    keys = [k for k, _ in grid]
    points = list(itertools.product(*[v for _, v in grid])) or [()]
    jobs = []
    for values in points:
        point = list(zip(keys, values, strict=True))
        sets = [f"{k}={_toml_literal(v)}" for k, v in point]
        for seed in range(a.seeds):
            cfg = load_config(a.config, [*a.overrides, *sets, f"train.seed={seed}"], a.epochs)
            jobs.append((cfg, root / _point_name(point) / f"seed{seed}"))
    done = skipped = 0
    for cfg, out in jobs:
        if (out / "final.json").is_file():
            print(f"skip (finished): {out}")
            continue
        if a.dry_run:
            print(f"would run: {out}")
            continue
        out.mkdir(parents=True, exist_ok=True)
        lock = out / "RUNNING"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            print(f"skip (locked by another process; delete {lock} if none runs): {out}")
            skipped += 1
            continue
        try:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            resume = (out / "checkpoint.pt").is_file()
            print(f"{'resume' if resume else 'run'}: {out}")
            _run_one(cfg, out, resume, a.quiet)
            done += 1
        finally:
            lock.unlink(missing_ok=True)
    print(
        f"sweep {root}: {len(jobs)} runs, {done} trained now, {skipped} locked by another process"
    )
    return 0


def _toml_literal(v: Any) -> str:
    from lpl_train.config import _toml_value

    return _toml_value(v)


def _cmd_report(a: argparse.Namespace) -> int:
    from lpl_train.report import make_report

    text = make_report(a.dir, a.format)
    print(text, end="")
    if a.write:
        (Path(a.dir) / f"report.{a.format}").write_text(text, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lpl-train`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    from lpl_train.engine import TrainingDiverged

    try:
        if args.cmd == "list":
            return _cmd_list()
        if args.cmd == "run":
            return _cmd_run(args)
        if args.cmd == "sweep":
            return _cmd_sweep(args)
        return _cmd_report(args)
    except (ConfigError, ValueError, TypeError, KeyError, FileNotFoundError, FileExistsError,
            TrainingDiverged, ImportError) as exc:  # fmt: skip
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, KeyError):
            msg = msg.strip("'\"")
        print(f"lpl-train: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lpl-train: interrupted; resume with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
