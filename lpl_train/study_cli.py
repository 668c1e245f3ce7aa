"""``lpl-train study [FILE]`` and its alias ``python -m lpl_train.study [--study FILE]``.

Runs a study (resumable), then writes its records, tables and loss-variation figures; ``--report-only``
rebuilds tables and figures from recorded runs without training; ``--fig11-live`` draws one Fig. 11 panel
from a short live run. Where things go:

* run folders: ``--out`` (default ``runs/study`` for the shipped study, ``runs/<name>`` for another; the
  quick mode adds ``-quick``);
* tables and figures: ``--figures`` (default ``figures`` for the shipped study; another study and the quick
  mode write into the ``--out`` folder, so that neither rewrites the committed study's tables and figures);
* records: ``--records`` (default ``FIGURES/study-runs.jsonl``, ``study-quick-runs.jsonl`` in quick mode).
  ``--report-only`` reads ``--records``, else ``FIGURES/study-runs.jsonl`` if it exists, else the records
  shipped with the package beside the study file (``fmnist-runs.jsonl``: the committed study).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["add_arguments", "main", "run"]


def add_arguments(ap: argparse.ArgumentParser, positional: bool) -> None:
    """The study options, on ``lpl-train study`` (``positional``: FILE) or on the module's parser."""
    if positional:
        ap.add_argument("study", nargs="?", default=None,
                        help="study file (a .toml path or a shipped study name; default: fmnist)")  # fmt: skip
    else:
        ap.add_argument(
            "--study", default=None, help="study definition TOML (default: the shipped one)"
        )
    ap.add_argument("--quick", action="store_true",
                    help="the file's [quick] settings: small sets, few epochs, first grid point (minutes)")  # fmt: skip
    ap.add_argument("--out", default=None,
                    help="folder of the run folders (default runs/study for the shipped study, "
                         "runs/<name> for another; -quick appended in quick mode)")  # fmt: skip
    ap.add_argument("--jobs", type=int, default=None,
                    help="parallel runs, one CPU thread each (default 1; not with --report-only or "
                    "--fig11-live, which train no runs in parallel)")  # fmt: skip
    ap.add_argument("--figures", default=None,
                    help="where tables and figures go (default figures for the shipped study; another study "
                         "or the quick mode: the --out folder)")  # fmt: skip
    ap.add_argument(
        "--records", default=None, help="the records JSONL to write (or read with --report-only)"
    )
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild tables and figures from recorded runs, no training")  # fmt: skip
    ap.add_argument("--fig11-live", action="store_true",
                    help="only the short live Fig. 11 run (FIGURES/fig11-live.png)")  # fmt: skip


def _paths(a: argparse.Namespace, study: dict) -> tuple[Path, Path, str]:
    from lpl_train.study import DEFAULT_STUDY

    default = Path(study["path"]).resolve() == DEFAULT_STUDY.resolve()
    base = "study" if default else study["name"]
    out = Path(a.out or f"runs/{base}{'-quick' if a.quick else ''}")
    # only the shipped study's full run writes into figures/ by default: another study (or the quick mode)
    # reports into its --out folder, so that it never overwrites the committed study's tables
    figures = (
        Path(a.figures) if a.figures else (Path("figures") if default and not a.quick else out)
    )
    return out, figures, "study-quick" if a.quick else "study"


def _path_args(a: argparse.Namespace) -> str:
    """The ``--out`` and ``--figures`` options as given, for the commands a table header prints."""
    import shlex

    given = (("--out", a.out), ("--figures", a.figures))
    return "".join(f" {flag} {shlex.quote(str(v))}" for flag, v in given if v)


def _records_to_read(a: argparse.Namespace, study: dict, figures: Path, prefix: str) -> Path:
    from lpl_train.study import shipped_records

    if a.records:
        return Path(a.records)
    here = figures / f"{prefix}-runs.jsonl"
    shipped = shipped_records(study)
    if here.is_file() or a.quick or not shipped.is_file():
        return here
    return shipped


def run(a: argparse.Namespace) -> int:
    """Carry out parsed study options; returns the exit status."""
    from lpl_train import study as S

    if a.jobs is not None and (a.report_only or a.fig11_live):
        mode = "--report-only" if a.report_only else "--fig11-live"
        raise ValueError(
            f"--jobs has no effect with {mode}, which trains no runs in parallel: drop it"
        )
    jobs = 1 if a.jobs is None else a.jobs
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    import torch

    torch.set_num_threads(1)  # every study run uses one CPU thread, here as in the workers
    if a.fig11_live:
        print(S.fig11_live(Path(a.figures or "figures")))
        return 0
    study = S.load_study(a.study, quick=a.quick)
    out, figures, prefix = _paths(a, study)
    if a.report_only:
        source = _records_to_read(a, study, figures, prefix)
        records = S.read_records(source)
        print(f"{len(records)} records from {source}")
        print(S.write_tables(records, study, figures, prefix, records_path=source,
                             path_args=_path_args(a)))  # fmt: skip
    else:
        try:
            records = S.run_study(study, out, jobs)
        except S.SelectionIncomplete as exc:  # another study process shares --out: it selects
            print(f"study: {exc}", file=sys.stderr)
            return 3
        path = Path(a.records) if a.records else figures / f"{prefix}-runs.jsonl"
        print(S.write_outputs(records, study, figures, prefix, records_path=path,
                              path_args=_path_args(a)))  # fmt: skip
        print(path)
    for p in S.loss_variation_figures(records, study, figures, "study-quick-" if a.quick else ""):
        print(p)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m lpl_train.study") -> int:
    """Parse ``argv`` with the module's options (``--study FILE``) and run; errors are one line, status 2."""
    from lpl_train.study import __doc__ as doc

    ap = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0])
    add_arguments(ap, positional=False)
    from lpl_train.__main__ import _how_to_continue, _one_line, check_paths_given, command_errors

    a = ap.parse_args(argv)
    check_paths_given(ap, a)
    # the errors of `lpl-train study`, reported the same way: a --figures or --out under a file, a folder
    # without write permission or a refused run folder is one line, not a traceback; Ctrl-C says how to go on
    try:
        return run(a)
    except command_errors() as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        how = _how_to_continue(argparse.Namespace(cmd="study"))
        print(f"{prog}: interrupted{how}", file=sys.stderr)
        return 130
