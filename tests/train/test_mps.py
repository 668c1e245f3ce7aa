"""MPS for concurrent runs on one GPU (lpl_train.engine.mps): the daemon's start, probe and stop, against a
stand-in ``nvidia-cuda-mps-control`` (a script that keeps its state in files, as the real daemon keeps it in
its pipe folder), so the logic runs on any machine."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lpl_train.engine.mps import MPSError, MPSStatus, mps_server

FAKE = """#!{python}
import os, sys, time
# like the real program: the pipe folder from the environment, else the system's default
pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or os.environ["FAKE_MPS_SYSTEM"]
calls = os.environ["FAKE_MPS_LOG"]
with open(calls, "a") as f:
    f.write(" ".join(sys.argv[1:]) + "|" + pipe + "\\n")
if sys.argv[1:] == ["-d"]:
    if os.environ.get("FAKE_MPS_FAIL"):
        sys.stderr.write("cannot start: device busy\\n")
        sys.exit(3)
    open(os.path.join(pipe, "running"), "w").close()
    time.sleep(float(os.environ.get("FAKE_MPS_SLOW", "0")))  # a start that does not return
    sys.exit(0)
command = sys.stdin.read().strip()
with open(calls, "a") as f:
    f.write("stdin:" + command + "\\n")
running = os.path.join(pipe, "running")
if command == "quit" and os.path.exists(running):
    os.remove(running)
if command == "get_server_list" and os.path.exists(running) and not os.environ.get("FAKE_MPS_NO_SERVER"):
    print(4242)
"""

# prints what the real probe prints only while the stand-in daemon runs in the pipe folder it was given
PROBE_CODE = (
    "import os; p = os.environ.get('CUDA_MPS_PIPE_DIRECTORY') or os.environ['FAKE_MPS_SYSTEM']; "
    "print('mps-probe 16.0' if os.path.exists(os.path.join(p, 'running')) else 'no server')"
)
PROBE = [sys.executable, "-c", PROBE_CODE]
#: the stand-in's calls for a daemon started, checked (its server list) and stopped
STARTED_CHECKED_STOPPED = ["-d", "", "stdin:get_server_list", "", "stdin:quit"]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    exe = tmp_path / "bin" / "nvidia-cuda-mps-control"
    exe.parent.mkdir()
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_MPS_LOG", str(log))
    monkeypatch.setenv("FAKE_MPS_SYSTEM", str(tmp_path / "nvidia-mps"))
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
    for k in ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY", "FAKE_MPS_FAIL", "FAKE_MPS_SLOW",
              "FAKE_MPS_NO_SERVER"):  # fmt: skip
        monkeypatch.delenv(k, raising=False)

    def calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    return calls


def _server(mode, tmp_path, **kw):
    lines: list[str] = []
    kw.setdefault("probe", PROBE)
    kw.setdefault("system_pipe_dir", tmp_path / "no-system-daemon")
    return mps_server(mode, log=lines.append, **kw), lines


def test_a_private_daemon_serves_the_processes_started_inside_and_is_stopped_after(fake, tmp_path):
    cm, lines = _server("auto", tmp_path)
    with cm as st:
        assert st == MPSStatus(True, True, st.reason) and "private daemon" in st.reason
        pipe = Path(os.environ["CUDA_MPS_PIPE_DIRECTORY"])
        assert (pipe / "running").exists() and Path(os.environ["CUDA_MPS_LOG_DIRECTORY"]).is_dir()
        # a child started inside inherits the daemon's folders (a sweep's workers are spawned here)
        child = subprocess.run(PROBE, capture_output=True, text=True, check=True)
        assert child.stdout.strip() == "mps-probe 16.0"
    assert lines[0].startswith("MPS: on (a private daemon in /")
    got = fake()
    assert got[0] == f"-d|{pipe}" and [c.split("|")[0] for c in got] == STARTED_CHECKED_STOPPED
    assert (
        "CUDA_MPS_PIPE_DIRECTORY" not in os.environ and "CUDA_MPS_LOG_DIRECTORY" not in os.environ
    )
    assert not pipe.parent.exists()  # its temporary folder is gone


def test_the_daemon_is_stopped_and_the_environment_restored_when_the_runs_fail(fake, tmp_path):
    cm, _ = _server("on", tmp_path)
    with pytest.raises(KeyError, match="a run failed"), cm:
        pipe = Path(os.environ["CUDA_MPS_PIPE_DIRECTORY"])
        raise KeyError("a run failed")
    assert fake()[-1] == "stdin:quit" and not pipe.parent.exists()
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ


def test_a_daemon_that_does_not_serve_is_stopped_and_auto_goes_on_without_it(fake, tmp_path):
    bad = [sys.executable, "-c", "import sys; sys.exit('RuntimeError: no CUDA GPUs are available')"]
    cm, lines = _server("auto", tmp_path, probe=bad)
    with cm as st:
        assert not st.active and not st.started
        assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ
    assert lines == ["MPS: off (a CUDA process could not compute through it "
                     "(RuntimeError: no CUDA GPUs are available))"]  # fmt: skip
    assert [c.split("|")[0] for c in fake()] == ["-d", "", "stdin:quit"]  # started, probed, stopped
    cm, _ = _server("on", tmp_path, probe=bad)
    with pytest.raises(MPSError, match="--mps on: a CUDA process could not compute through it"), cm:
        pytest.fail("the context must not be entered")


def test_a_daemon_that_does_not_start_is_reported(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MPS_FAIL", "1")
    cm, lines = _server("auto", tmp_path)
    with cm as st:
        assert not st.active
    assert lines == ["MPS: off (nvidia-cuda-mps-control -d exited 3: cannot start: device busy)"]
    assert [c.split("|")[0] for c in fake()] == ["-d"]  # nothing to stop
    cm, _ = _server("on", tmp_path)
    with pytest.raises(MPSError, match="exited 3: cannot start: device busy"), cm:
        pass


def test_without_the_control_program_auto_time_slices_and_on_refuses(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    cm, lines = _server("auto", tmp_path, control="no-such-mps-control")
    with cm as st:
        assert not st.active
    assert lines == ["MPS: off (no-such-mps-control is not on PATH; the runs time-slice the GPU)"]
    cm, _ = _server("on", tmp_path, control="no-such-mps-control")
    with pytest.raises(MPSError, match="--mps on: no-such-mps-control is not on PATH"), cm:
        pass


def test_a_running_daemon_is_checked_and_used_as_it_is(fake, tmp_path, monkeypatch):
    """A daemon named by CUDA_MPS_PIPE_DIRECTORY, or the system's, is used when a CUDA process runs and the
    daemon then lists a server; it is neither started nor stopped. A folder or a variable left behind by a
    daemon that is gone is not taken for one: ``auto`` goes on without MPS and ``on`` refuses."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "running").touch()
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(theirs))
    cm, lines = _server("on", tmp_path)
    with cm as st:
        assert st.active and not st.started
        assert os.environ["CUDA_MPS_PIPE_DIRECTORY"] == str(theirs)
    assert lines == [f"MPS: on (the daemon at CUDA_MPS_PIPE_DIRECTORY={theirs} serves)"]
    assert [c.split("|")[0] for c in fake()] == ["", "stdin:get_server_list"]  # checked only
    assert os.environ["CUDA_MPS_PIPE_DIRECTORY"] == str(theirs) and (theirs / "running").exists()
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY")
    system = tmp_path / "nvidia-mps"  # where the stand-in, like the real program, looks by default
    system.mkdir()
    cm, lines = _server("auto", tmp_path, system_pipe_dir=system)
    with cm as st:  # the folder is there, no daemon runs in it
        assert not st.active
    assert lines == [f"MPS: off (the daemon at {system} does not serve: a CUDA process could not "
                     "compute through it (no server))"]  # fmt: skip
    (system / "running").touch()
    monkeypatch.setenv("FAKE_MPS_NO_SERVER", "1")  # the probe ran, but not through a server
    cm, _ = _server("on", tmp_path, system_pipe_dir=system)
    with pytest.raises(MPSError, match="does not serve: it lists no MPS server"), cm:
        pass
    monkeypatch.delenv("FAKE_MPS_NO_SERVER")
    cm, lines = _server("auto", tmp_path, system_pipe_dir=system)
    with cm as st:
        assert st.active and not st.started
    assert lines == [f"MPS: on (the daemon at {system} serves)"] and (system / "running").exists()


def test_a_started_daemon_that_lists_no_server_is_stopped(fake, tmp_path, monkeypatch):
    """The probe computed, but the daemon lists no server: the probe ran without MPS (as a CUDA client
    that cannot reach the daemon does), so MPS is off and the daemon is stopped."""
    monkeypatch.setenv("FAKE_MPS_NO_SERVER", "1")
    cm, lines = _server("auto", tmp_path)
    with cm as st:
        assert not st.active and "CUDA_MPS_PIPE_DIRECTORY" not in os.environ
    assert lines[0].startswith("MPS: off (it lists no MPS server after a CUDA process ran")
    assert [c.split("|")[0] for c in fake()] == STARTED_CHECKED_STOPPED


def test_a_start_that_hangs_or_is_interrupted_leaves_no_daemon(fake, tmp_path, monkeypatch):
    """``-d`` past its timeout may have started a daemon: it is told to quit and its folder removed. A
    Ctrl-C while the new daemon is probed stops it too, and the interrupt goes on."""
    monkeypatch.setenv("FAKE_MPS_SLOW", "30")
    cm, lines = _server("auto", tmp_path, timeout_s=1.0)
    with cm as st:
        assert not st.active
    assert lines[0].startswith("MPS: off (nvidia-cuda-mps-control -d did not start: Command")
    assert "timed out after" in lines[0]
    assert [c.split("|")[0] for c in fake()] == ["-d", "", "stdin:quit"]
    pipe = Path(fake()[0].split("|")[1])
    assert not pipe.parent.exists()
    monkeypatch.delenv("FAKE_MPS_SLOW")
    interrupt = [sys.executable, "-c", "import os, signal; os.kill(os.getppid(), signal.SIGINT)"]
    log_before = len(fake())
    cm, lines = _server("auto", tmp_path, probe=interrupt)
    with pytest.raises(KeyboardInterrupt), cm:
        pytest.fail("the context must not be entered")
    calls = fake()[log_before:]
    assert [c.split("|")[0] for c in calls] == ["-d", "", "stdin:quit"] and lines == []
    assert not Path(calls[0].split("|")[1]).parent.exists()
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ


def test_off_one_run_at_a_time_and_a_bad_mode(fake, tmp_path):
    for mode, needed, why in (("off", True, "--mps off"),
                              ("on", False, "one run at a time: nothing to share")):  # fmt: skip
        cm, lines = _server(mode, tmp_path, needed=needed)
        with cm as st:
            assert st == MPSStatus(False, False, why)
        assert lines == [f"MPS: off ({why})"]
    assert fake() == []
    with pytest.raises(ValueError, match="MPS mode must be one of off, auto, on; got 'yes'"):
        with mps_server("yes"):
            pass


def test_every_mps_option_offers_the_modes_of_the_module():
    """``lpl-train sweep --mps`` spells the modes out (its parser is built without importing the engine):
    they must stay those that :func:`mps_server` takes."""
    import argparse

    from lpl_train.__main__ import _parser
    from lpl_train.engine.mps import MPS_MODES

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    mps = next(a for a in sub.choices["sweep"]._actions if a.dest == "mps")
    assert tuple(mps.choices) == MPS_MODES and mps.default in MPS_MODES


def test_sweep_runs_its_workers_under_mps_and_stops_the_daemon(fake, tmp_path, monkeypatch, capsys):
    """``lpl-train sweep --jobs 2 --mps on``: the daemon starts before the workers, is stopped after them;
    ``--mps on`` without a working daemon is a one-line error before anything trains; one run at a time
    starts nothing."""
    import lpl_train.engine.mps as M
    from lpl_train.__main__ import main
    from tests.train.test_cli import gaussian_config

    monkeypatch.setattr(M, "PROBE", PROBE[2])  # the stand-in daemon's probe, run by this Python
    monkeypatch.setattr(M, "SYSTEM_PIPE_DIR", tmp_path / "no-system-daemon")
    cfg = gaussian_config(tmp_path, epochs=1)
    args = ["sweep", str(cfg), "--seeds", "2", "--quiet", "--jobs", "2"]
    assert main([*args, "--out", str(tmp_path / "mps"), "--mps", "on"]) == 0
    out = capsys.readouterr().out
    assert "MPS: on (a private daemon in /" in out and "2 runs, 2 trained now" in out
    assert [c.split("|")[0] for c in fake()] == STARTED_CHECKED_STOPPED
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ
    monkeypatch.setenv("FAKE_MPS_FAIL", "1")
    assert main([*args, "--out", str(tmp_path / "refused"), "--mps", "on"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lpl-train: error: --mps on: nvidia-cuda-mps-control -d exited 3")
    assert not (tmp_path / "refused").exists()
    assert main([*args[:-2], "--out", str(tmp_path / "one"), "--mps", "on"]) == 0
    assert "MPS: off (one run at a time: nothing to share)" in capsys.readouterr().out
    # a dry run starts nothing, even with --mps on and a daemon that would fail
    assert main([*args, "--out", str(tmp_path / "dry"), "--mps", "on", "--dry-run"]) == 0
    assert "MPS" not in capsys.readouterr().out and not (tmp_path / "dry").exists()


def test_sigterm_inside_stops_the_daemon_on_the_way_out(fake, tmp_path):
    import signal

    cm, _ = _server("auto", tmp_path)
    with pytest.raises(SystemExit) as exc, cm:
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("SIGTERM must end the block")
    assert exc.value.code == 128 + signal.SIGTERM
    assert fake()[-1] == "stdin:quit" and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_second_sigterm_does_not_cut_the_way_out_short(fake, tmp_path):
    """``timeout`` signals the process it runs and then that process's group: a second SIGTERM can arrive
    while the first one's clean-up runs (a sweep's pool ending its workers). Raised again there, it cut
    the clean-up short, and the pool's close and join then waited forever for workers that were gone."""
    import signal

    cm, _ = _server("auto", tmp_path)
    cleaned: list[str] = []
    with pytest.raises(SystemExit) as exc, cm:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("SIGTERM must end the block")
        except SystemExit:
            os.kill(os.getpid(), signal.SIGTERM)  # the group's copy, during the clean-up
            cleaned.append("pool ended")
            raise
    assert cleaned == ["pool ended"] and exc.value.code == 128 + signal.SIGTERM
    assert fake()[-1] == "stdin:quit" and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
