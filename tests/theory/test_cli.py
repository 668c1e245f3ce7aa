"""The command line: JSON schema and values, one-line errors with exit code 2."""

import json
import subprocess
import sys

import numpy as np
import pytest

from lpl_theory import closed_form as cf
from lpl_theory.__main__ import main

KEYS = {"figure", "params", "rho", "b_star", "R_plus", "R_minus", "R_total", "b_star_is_global"}


def test_curve_json_schema_and_values(capsys):
    assert main(["curve", "--figure", "3", "--rho", "0,0.5,1,2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == KEYS
    assert data["figure"] == 3 and data["rho"] == [0.0, 0.5, 1.0, 2.0]
    for k in KEYS - {"figure", "params", "rho"}:
        assert len(data[k]) == 4
    sol = cf.solve(2.0, 2, 1.0, 1.0, 1.0, 0.2, np.array([0.0, 0.5, 1.0, 2.0]), 1.0)
    assert np.allclose(data["b_star"], sol.b_star, rtol=0, atol=1e-15)
    assert np.allclose(data["R_total"], sol.R_total, rtol=0, atol=1e-15)
    assert data["b_star_is_global"] == [True] * 4
    assert data["params"]["Gamma"] == 2.0 and data["params"]["rho_minus"] == 1.0


def test_curve_default_grid_and_missing_root_is_null(capsys):
    assert main(["curve", "--figure", "6", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["rho"]) == 200 and data["rho"][0] == 0.0 and max(data["rho"]) < 5.0
    assert main(["curve", "--figure", "5", "--gamma", "6", "--rho", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["b_star"] == [None] and data["b_star_is_global"] == [False]


def test_curve_figure5_flags_non_global(capsys):
    assert main(["curve", "--figure", "5", "--rho", "0,5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["b_star_is_global"] == [False, False]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["curve", "--figure", "7"], "figure"),
        (["curve", "--figure", "3", "--rho", "0,5"], "rho"),
        (["curve", "--figure", "3", "--gamma", "0"], "gamma"),
        (["curve", "--figure", "3", "--gamma", "-2"], "gamma"),
        (["curve", "--figure", "5", "--K", "0.5"], "K"),
        (["curve", "--figure", "3", "--d", "0"], "d "),
        (["curve", "--figure", "3", "--rho", "a,b"], "list of numbers"),
        (["curve", "--figure", "3", "--rho", "1,,2"], "list of numbers"),
        (["curve", "--figure", "3", "--eps", "2"], "eps"),
        (["curve"], "--figure"),
        (["nonsense"], "invalid choice"),
        (["verify", "--mc-samples", "10"], "mc-samples"),
        # the documented floor is 10^5 samples per class
        (["verify", "--mc-samples", "99999"], "mc-samples must be >= 100000"),
        # an overflow in the closed form is refused, never reported as "no real b*"
        (["curve", "--figure", "3", "--eta", "1e308"], "overflow"),
        # sigma 1e-200 of eta: its square is lost (an overflow before the closed form was scaled)
        (["curve", "--figure", "3", "--eta", "1e200", "--rho", "1"], "underflow float64"),
        (["curve", "--figure", "3", "--sigma", "1e308", "--rho", "1"], "flow float64"),  # under-
        (["curve", "--figure", "5", "--K", "1e308", "--rho", "1"], "overflow"),
        (["curve", "--figure", "3", "--eta", "1e300", "--eps", "1e-10"], "overflow"),
        # tiny values are refused too (their squares underflowed to a wrong b*), and a huge integer d
        # (subnormal inputs are left out: after torch.set_flush_denormal(True) in the same process they
        # read as 0, a different error)
        (
            ["curve", "--figure", "3", "--eta", "1e-300", "--eps", "1e-301", "--rho", "1"],
            "underflow",
        ),
        (["curve", "--figure", "3", "--rho", "1", "--d", str(10**400)], "too large for float64"),
    ],
)
def test_bad_arguments_one_line_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lpl-theory: error:")
    assert needle in err
    assert "Traceback" not in err


def test_subprocess_error_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "lpl_theory", "curve", "--figure", "3", "--rho", "0,9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_figures_command_writes_files(tmp_path, capsys):
    assert main(["figures", "--out", str(tmp_path), "--mc-samples", "2000"]) == 0
    for n in (3, 4, 5, 6):
        assert (tmp_path / f"fig{n}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / f"fig{n}.pdf").read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize(
    ("option", "value"), [("--eta", "1e150"), ("--sigma", "1e150"), ("--K", "1e150")]
)
def test_large_but_representable_parameters_are_computed(capsys, option, value):
    # b* is representable: the curve is computed, finite, and the flags follow the closed form
    assert main(["curve", "--figure", "3", option, value, "--rho", "0,1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert all(b is not None for b in data["b_star"])
    assert all(0.0 <= r <= 1.0 for r in data["R_plus"] + data["R_minus"])


def test_figures_out_under_a_file_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["figures", "--out", str(blocker / "sub"), "--mc-samples", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lpl-theory: error: out:")
    assert "is a file, not a directory" in err and "Traceback" not in err
    assert main(["figures", "--out", str(blocker), "--mc-samples", "0"]) == 2
    assert "must be a directory" in capsys.readouterr().err


def test_subprocess_overflow_exit_2():
    proc = subprocess.run(
        [sys.executable, "-m", "lpl_theory", "curve", "--figure", "3", "--eta", "1e308", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "overflow" in proc.stderr


def _into_a_closed_pipe(*args: str) -> tuple[int, str]:
    """Run ``python -m lpl_theory ARGS`` with its output going to a pipe nobody reads any more (as in
    ``... | head``), with buffered output (PYTHONUNBUFFERED removed): exit status and stderr."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen([sys.executable, "-m", "lpl_theory", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)  # fmt: skip
    proc.stdout.close()  # the reader is gone before the first write
    err = proc.stderr.read()
    return proc.wait(timeout=120), err


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (("curve", "--figure", "3"), 0),
        (("verify", "--points", "5", "--mc-samples", "100000"), 1),
        (("--help",), 0),
    ],  # fmt: skip
)
def test_output_into_a_closed_pipe_has_no_traceback(args, status):
    """Nothing on stderr; an unfinished verification does not exit 0."""
    assert _into_a_closed_pipe(*args) == (status, "")


def test_curve_table_columns_match_the_json(capsys):
    """The plain-text table prints, column by column under its header, the values of --json (to its digits)."""
    argv = ["curve", "--figure", "5", "--rho", "0,2.5,5,7.5"]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Fig. 5: ")
    header = lines[1].split()
    assert header == ["rho", "b_star", "R_plus", "R_minus", "R_total", "global"]
    rows = [line.split() for line in lines[2:]]
    assert len(rows) == 4
    # the classes' errors differ far beyond the printed digits, so a swapped column cannot pass
    assert all(abs(a - b) > 1e-2 for a, b in zip(data["R_plus"], data["R_minus"], strict=True))
    for i, row in enumerate(rows):
        assert float(row[0]) == pytest.approx(data["rho"][i], rel=1e-4, abs=1e-12)
        assert float(row[1]) == pytest.approx(data["b_star"][i], rel=1e-5)
        for j, key in ((2, "R_plus"), (3, "R_minus"), (4, "R_total")):
            assert float(row[j]) == pytest.approx(data[key][i], abs=6e-7), (i, key)
        assert row[5] == str(data["b_star_is_global"][i])


def test_figures_seed_reaches_every_figure(tmp_path, monkeypatch, capsys):
    """`figures --seed` draws other Monte Carlo markers in every figure, and a seed reproduces them."""
    from lpl_theory import figures

    original = figures.draw_figure
    drawn = {}

    def spy(number, **kw):
        fig = original(number, grid=20, **kw)  # a coarse curve: only the markers are compared
        fig.savefig = lambda path, **_: path.write_bytes(b"")  # no rendering
        drawn[number] = [c.lines[0].get_ydata().copy() for c in fig.axes[0].containers]
        return fig

    monkeypatch.setattr(figures, "draw_figure", spy)
    markers = {}
    for seed in ("5", "6"):
        assert (
            main(["figures", "--out", str(tmp_path), "--mc-samples", "2000", "--seed", seed]) == 0
        )
        markers[seed] = dict(drawn)
    capsys.readouterr()
    for n in (3, 4, 5, 6):
        assert len(markers["5"][n]) == 2
        for a, b in zip(markers["5"][n], markers["6"][n], strict=True):
            assert not np.array_equal(a, b), n
    again = original(3, mc_samples=2000, seed=5, grid=20)
    redrawn = [c.lines[0].get_ydata() for c in again.axes[0].containers]
    for a, b in zip(markers["5"][3], redrawn, strict=True):
        assert np.array_equal(a, b)


def _report_rows(out):
    """{check name: [points, worst, tol, PASS/FAIL]} from the table of ``verify``."""
    from lpl_theory import verify as V

    names = {V.NUMERIC_CHECK, V.DERIVATIVE_CHECK, V.MC_NATURAL_CHECK, V.MC_PERTURBED_CHECK}
    return {
        ln[:54].rstrip(): ln[54:].split() for ln in out.splitlines() if ln[:54].rstrip() in names
    }


def test_verify_points_and_seed_reach_the_checks(monkeypatch, capsys):
    """--points sets the number of random points of the numeric check; --seed the checks' random settings
    (the derivative row is that of the derivative check run with the same seed, and another seed's differs)."""
    import re

    from lpl_theory import verify as V

    # the sympy check and the findings take no seed or points: left out to keep the run short
    monkeypatch.setattr(
        V, "check_symbolic_reduction", lambda: V.CheckResult("sympy", True, 0, 0.0, 0.0, "")
    )
    monkeypatch.setattr(V, "paper_formula_findings", lambda seed: [])
    monkeypatch.setattr(V, "corollary_scans", lambda seed: [])
    assert main(["verify", "--mc-samples", "100000", "--points", "3", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    rows = _report_rows(out)
    used, skipped = re.search(
        r"over (\d+) random points .*?, (\d+) skipped", " ".join(out.split())
    ).groups()
    assert int(used) + int(skipped) == 3 and rows[V.NUMERIC_CHECK][0] == used

    def row(check):
        return [str(check.points), f"{check.worst:.3g}"]

    with_seed = {s: row(V.check_derivatives(seed=s)) for s in (0, 1)}
    assert with_seed[0] != with_seed[1]
    assert rows[V.DERIVATIVE_CHECK][:2] == with_seed[1]


def test_curve_takes_a_tiny_eps_when_rho_is_given_and_prints_rho_as_given(capsys):
    """eta/eps overflows only the default grid's end: with --rho the nearly unperturbed problem is solved
    (it was refused); the text column shows rho to 6 digits (9.99999 was printed as 10, a value the
    command refuses). eta and sigma are large rather than eps subnormal: the suite's torch tests flush
    subnormals to zero, in this process too."""
    big = ["--eta", "1e300", "--sigma", "1e300", "--eps", "1e-10"]
    assert main(["curve", "--figure", "3", *big, "--rho", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    sol = cf.solve(2.0, 2, 1e300, 1e300, 1.0, 1e-10, 1.0, 1.0)
    assert data["b_star"] == [float(sol.b_star)] and data["b_star_is_global"] == [True]
    assert main(["curve", "--figure", "3", *big]) == 2
    assert "give the values of rho" in capsys.readouterr().err
    assert main(["curve", "--figure", "5", "--rho", "9.99999"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[0] == "9.99999"


def test_an_integer_d_float64_cannot_hold_is_refused(capsys):
    assert main(["curve", "--figure", "3", "--d", "99999999999999999"]) == 2
    assert "99999999999999999 is not exactly representable in float64" in capsys.readouterr().err
    assert main(["curve", "--figure", "3", "--d", str(2**53), "--rho", "0"]) == 0  # exact: taken
