"""Wall-clock time of the theory CLI: `figures` (budget 30 s) and `verify` (budget 60 s).

Usage: python benchmarks/bench_theory.py [--repeats 3] [--json]

Each command runs in a fresh interpreter (imports included), as `make figures` runs it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

BUDGETS = {"figures": 30.0, "verify": 60.0}


def time_command(args: list[str], repeats: int) -> list[float]:
    """Seconds taken by ``python -m lpl_theory *args`` in ``repeats`` fresh processes."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lpl_theory", *args], check=True, capture_output=True)
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["figures"] = time_command(["figures", "--out", tmp], args.repeats)
    results["verify"] = time_command(["verify"], args.repeats)
    if args.json:
        print(json.dumps({k: {"seconds": v, "budget": BUDGETS[k]} for k, v in results.items()}))
        return 0
    print(f"{'command':<10} {'min s':>8} {'median s':>9} {'max s':>8} {'budget s':>9}")
    for name, secs in results.items():
        print(
            f"{name:<10} {min(secs):>8.2f} {statistics.median(secs):>9.2f} {max(secs):>8.2f} "
            f"{BUDGETS[name]:>9.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
