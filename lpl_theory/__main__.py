"""Command line of the theory part: ``python -m lpl_theory {curve,figures,verify}`` (also ``lpl-theory``).

    python -m lpl_theory curve --figure 3 [--rho 0,0.5,1,2] [--gamma G --d D --eta E --sigma S --K K --eps EPS] --json
    python -m lpl_theory figures --out figures
    python -m lpl_theory verify

Bad arguments (an overflowing parameter, an ``--out`` that cannot be a directory) give a one-line error on stderr
and exit code 2; ``verify`` exits 1 when a derived closed form disagrees with the numeric minimisation (adversary
searched), the finite differences, the simulation or sympy, and names the failed checks on stderr (findings about
the paper do not change it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence

from lpl_train._pipes import flush_stdout

from . import __version__
from .task import FIGURES

#: the fewest Monte Carlo samples per class ``verify`` accepts (its tolerances are 4 standard errors at any n)
MIN_VERIFY_SAMPLES = 100_000


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2, no usage block
        raise _UsageError(message)


def _float_list(text: str) -> list[float]:
    items = [t.strip() for t in text.split(",")]
    if not items or any(t == "" for t in items):
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of numbers, got {text!r}"
        )
    try:
        values = [float(t) for t in items]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of numbers, got {text!r}"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if abs(value) > 2**53 and abs(value) <= 1e308 and int(float(value)) != value:
        # the computation is in float64: it would silently use the nearest float
        raise argparse.ArgumentTypeError(
            f"{text} is not exactly representable in float64 (nearest {float(value):.17g}); give an "
            "integer up to 2**53 or a representable one"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m lpl_theory``."""
    parser = _Parser(
        prog="lpl-theory",
        description="Sec. III.B of Class-Level Logit Perturbation, derived and checked.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("curve", help="b* and the natural errors along one of Figs. 3-6")
    c.add_argument("--figure", type=_positive_int, required=True, help="3, 4, 5 or 6")
    c.add_argument(
        "--rho", type=_float_list, default=None, help="comma-separated values of the varied rho"
    )
    c.add_argument(
        "--gamma", type=_finite, default=None, help="override the prior ratio Gamma (> 0)"
    )
    c.add_argument("--d", type=_positive_int, default=None, help="override the dimension d (>= 1)")
    c.add_argument("--eta", type=_finite, default=None, help="override eta (> 0)")
    c.add_argument("--sigma", type=_finite, default=None, help="override sigma (> 0)")
    c.add_argument("--K", type=_finite, default=None, help="override the variance ratio K (>= 1)")
    c.add_argument("--eps", type=_finite, default=None, help="override eps (> 0)")
    c.add_argument("--json", action="store_true", help="print one JSON object")

    f = sub.add_parser("figures", help="write fig3..fig6 as PNG and PDF")
    f.add_argument("--out", required=True, help="output directory")
    f.add_argument(
        "--mc-samples",
        type=_positive_int,
        default=10_000_000,
        help="Monte Carlo samples per class and figure (0: no markers)",
    )
    f.add_argument("--seed", type=_positive_int, default=0)

    v = sub.add_parser(
        "verify", help="numeric, Monte Carlo and symbolic checks, and the paper's claims"
    )
    v.add_argument(
        "--mc-samples",
        type=_positive_int,
        default=1_000_000,
        help=f"Monte Carlo samples per class and setting (>= {MIN_VERIFY_SAMPLES})",
    )
    v.add_argument(
        "--points", type=_positive_int, default=200, help="random points of the numeric check"
    )
    v.add_argument("--seed", type=_positive_int, default=0)
    return parser


def _json_value(x: object) -> object:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _curve(args: argparse.Namespace) -> int:
    from . import figures

    if args.figure not in FIGURES:
        raise ValueError(f"--figure must be one of {sorted(FIGURES)}, got {args.figure}")
    spec = FIGURES[args.figure]
    overrides = {
        "gamma": args.gamma,
        "d": args.d,
        "eta": args.eta,
        "sigma": args.sigma,
        "K": args.K,
    }
    changes = {k: v for k, v in overrides.items() if v is not None}
    if changes:
        spec = dataclasses.replace(spec, task=dataclasses.replace(spec.task, **changes))
    if args.eps is not None:
        if args.eps <= 0:
            raise ValueError(f"--eps must be > 0, got {args.eps}")
        spec = dataclasses.replace(spec, eps=args.eps)
    if spec.fixed_rho * spec.eps >= spec.task.eta:
        raise ValueError(
            f"the fixed rho = {spec.fixed_rho:g} needs eps < eta, got eps = {spec.eps:g}, eta = {spec.task.eta:g}"
        )
    data = figures.curve(args.figure, args.rho, spec=spec)
    if args.json:
        clean = {
            k: ([_json_value(x) for x in v] if isinstance(v, list) else v) for k, v in data.items()
        }
        print(json.dumps(clean, allow_nan=False))
        return 0
    print(f"Fig. {args.figure}: " + ", ".join(f"{k}={v}" for k, v in data["params"].items()))
    print(f"{'rho':>10} {'b_star':>12} {'R_plus':>10} {'R_minus':>10} {'R_total':>10}  global")
    for i, r in enumerate(data["rho"]):
        print(
            f"{r:>10.6g} {data['b_star'][i]:>12.6g} {data['R_plus'][i]:>10.6f} {data['R_minus'][i]:>10.6f} "
            f"{data['R_total'][i]:>10.6f}  {data['b_star_is_global'][i]}"
        )
    return 0


def _figures(args: argparse.Namespace) -> int:
    from .figures import write_figures

    if args.mc_samples < 0:
        raise ValueError(f"--mc-samples must be >= 0, got {args.mc_samples}")
    start = time.perf_counter()
    paths = write_figures(args.out, mc_samples=args.mc_samples, seed=args.seed)
    for p in paths:
        print(p)
    print(f"wrote {len(paths)} files in {time.perf_counter() - start:.1f} s")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .verify import format_report, run_all

    if args.mc_samples < MIN_VERIFY_SAMPLES:
        raise ValueError(f"--mc-samples must be >= {MIN_VERIFY_SAMPLES}, got {args.mc_samples}")
    if args.points < 1:
        raise ValueError(f"--points must be >= 1, got {args.points}")
    start = time.perf_counter()
    report = run_all(mc_samples=args.mc_samples, numeric_points=args.points, seed=args.seed)
    print(format_report(report))
    print(f"verify took {time.perf_counter() - start:.1f} s")
    if not report.passed:
        print("lpl-theory: verify: failed: " + "; ".join(report.failed), file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 a closed-form check failed or a verification cut short
    by its reader going away, 2 bad arguments)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "seed", 0) < 0:
            raise ValueError(f"--seed must be >= 0, got {args.seed}")
        handler = {"curve": _curve, "figures": _figures, "verify": _verify}[args.command]
        status = handler(args)
        if flush_stdout():
            return status
    except SystemExit:  # --help, --version: its text may meet a closed pipe too
        flush_stdout()
        raise
    except BrokenPipeError:  # `... | head`: the reader went away
        flush_stdout()
    except (_UsageError, ValueError, TypeError, OverflowError) as exc:
        message = " ".join(str(exc).split())
        print(f"lpl-theory: error: {message}", file=sys.stderr)
        return 2
    return 1 if args.command == "verify" else 0  # an unfinished verification has not passed


if __name__ == "__main__":
    sys.exit(main())
