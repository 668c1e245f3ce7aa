"""Concurrent runs on one GPU whose kernels overlap: NVIDIA's Multi-Process Service (MPS) for the duration
of a sweep.

N training processes on one GPU share it by time slicing: the device runs one process's kernels at a time and
switches between them, so N small networks (a ResNet-32 at batch 128 fills a fraction of a large GPU) train
together little faster than one does. Under MPS the processes are clients of one server, and kernels of
different processes run on the device at the same time.

:func:`mps_server` starts a private MPS control daemon (``nvidia-cuda-mps-control -d``, its pipe and log
folders in a fresh temporary folder, named to the child processes by ``CUDA_MPS_PIPE_DIRECTORY`` and
``CUDA_MPS_LOG_DIRECTORY`` in ``os.environ``), checks it (a CUDA process computes, and the daemon then
lists a running server: a client that cannot reach a daemon runs without MPS, so the computation alone
proves nothing), and stops it (``quit``) when the context ends: normally, on an error, on Ctrl-C or SIGTERM,
also while it is being started or checked. It changes no setting of the device (compute mode, clocks, MIG):
the daemon is an ordinary user process, in a session of its own, and processes outside the context are not
its clients. Where an MPS daemon already serves this environment (``CUDA_MPS_PIPE_DIRECTORY`` set, or the
system's default pipe folder ``/tmp/nvidia-mps`` present), it is checked the same way and the runs are its
clients: nothing is started or stopped (a folder or a variable left by a daemon that is gone counts as no
daemon).

Modes: ``"off"`` (nothing), ``"auto"`` (MPS where it starts and works, else the runs time-slice and the
reason is logged), ``"on"`` (MPS or an error). Worker processes must be started inside the context (the
sweep's are spawned there) and must not have initialised CUDA before it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpl_train._pipes import print_line

__all__ = ["MPS_MODES", "MPSError", "MPSStatus", "mps_server"]

MPS_MODES = ("off", "auto", "on")
CONTROL = "nvidia-cuda-mps-control"
SYSTEM_PIPE_DIR = Path("/tmp/nvidia-mps")  # where a system-wide daemon listens by default
ENV_KEYS = ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY")
#: a CUDA process that computes one value through the server (the server starts on its first client)
PROBE = "import torch; x = torch.ones(8, device='cuda'); print('mps-probe', float((x * 2).sum()))"
PROBE_OUT = "mps-probe 16.0"


@dataclass(frozen=True)
class MPSStatus:
    """What :func:`mps_server` did: ``active`` (processes started inside the context are MPS clients),
    ``started`` (this context started the daemon and stops it at its end), and why."""

    active: bool
    started: bool
    reason: str

    def line(self) -> str:
        return f"MPS: {'on' if self.active else 'off'} ({self.reason})"


class MPSError(RuntimeError):
    """``mode = "on"`` and MPS could not be started or does not work."""


@contextlib.contextmanager
def mps_server(
    mode: str = "auto",
    *,
    needed: bool = True,
    control: str = CONTROL,
    probe: Sequence[str] | None = None,
    timeout_s: float = 60.0,
    log: Callable[[str], None] = print_line,
    system_pipe_dir: Path | None = None,
) -> Iterator[MPSStatus]:
    """MPS for the processes started inside this context (see the module's text).

    Args:
        mode: ``"off"``, ``"auto"`` or ``"on"``.
        needed: False where nothing would gain (one run at a time): then nothing is started in any mode.
        control: the control daemon's executable (a name on ``PATH`` or a path).
        probe: the command that must print :data:`PROBE_OUT` through the server (default: this Python
            running :data:`PROBE`); it fails where there is no CUDA device, or the server cannot start.
        timeout_s: how long the daemon's start, the probe and the daemon's stop may each take.
        log: where the one status line goes.
        system_pipe_dir: a system-wide daemon's pipe folder, its presence meaning that MPS already serves
            (default :data:`SYSTEM_PIPE_DIR`).
    """
    if mode not in MPS_MODES:
        raise ValueError(f"MPS mode must be one of {', '.join(MPS_MODES)}; got {mode!r}")
    system = SYSTEM_PIPE_DIR if system_pipe_dir is None else system_pipe_dir
    # SIGTERM raises SystemExit from here on, so a daemon being started or probed is stopped too
    term = _exit_on_sigterm() if mode != "off" and needed else None
    status: MPSStatus | None = None
    env: dict[str, str] = {}
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    try:
        status, env = _start(mode, needed, control, probe, timeout_s, system)
        log(status.line())
        if status.started:
            os.environ.update({k: env[k] for k in ENV_KEYS})
        yield status
    finally:
        if term is not None:
            signal.signal(signal.SIGTERM, term)
        if status is not None and status.started:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            stopped = _stop(control, env, timeout_s)
            if stopped:
                log(f"MPS: {stopped}")
            shutil.rmtree(env["_LPL_MPS_TMP"], ignore_errors=True)


def _start(
    mode: str,
    needed: bool,
    control: str,
    probe: Sequence[str] | None,
    timeout_s: float,
    system_pipe_dir: Path,
) -> tuple[MPSStatus, dict[str, str]]:
    """(status, the started daemon's environment, with its temporary folder under ``_LPL_MPS_TMP``)."""
    if mode == "off":
        return MPSStatus(False, False, "--mps off"), {}
    if not needed:
        return MPSStatus(False, False, "one run at a time: nothing to share"), {}
    exe = shutil.which(control)
    theirs = os.environ.get("CUDA_MPS_PIPE_DIRECTORY")
    if theirs or system_pipe_dir.exists():
        # a daemon that serves this environment already: its clients are ours; checked, not started
        where = f"CUDA_MPS_PIPE_DIRECTORY={theirs}" if theirs else str(system_pipe_dir)
        if exe is None:
            return _refused(mode, f"a daemon at {where} cannot be checked: {control} is not on "
                            "PATH"), {}  # fmt: skip
        failed = _check(exe, dict(os.environ), probe, timeout_s)
        if failed:
            return _refused(mode, f"the daemon at {where} does not serve: {failed}"), {}
        return MPSStatus(True, False, f"the daemon at {where} serves"), {}
    if exe is None:
        return _refused(mode, f"{control} is not on PATH; the runs time-slice the GPU"), {}
    # a short folder: the daemon's pipes are Unix sockets, whose paths may not exceed ~100 bytes
    tmp = Path(tempfile.mkdtemp(prefix="lpl-mps-", dir="/tmp" if Path("/tmp").is_dir() else None))
    env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(tmp / "pipe"),
           "CUDA_MPS_LOG_DIRECTORY": str(tmp / "log"), "_LPL_MPS_CONTROL": exe,
           "_LPL_MPS_TMP": str(tmp)}  # fmt: skip
    for k in ENV_KEYS:
        Path(env[k]).mkdir()
    started = False
    try:
        # the daemon forks and keeps running: its output goes to a file, never to a pipe this process
        # would wait on, and it leaves this process's session (a Ctrl-C here does not reach it)
        with open(tmp / "log" / "start.txt", "w+") as out:
            try:
                res = subprocess.run([exe, "-d"], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=out, timeout=timeout_s, start_new_session=True)  # fmt: skip
            except (OSError, subprocess.TimeoutExpired) as exc:
                started = isinstance(exc, subprocess.TimeoutExpired)  # it may be running: stop it
                raise _StartFailed(f"{control} -d did not start: {_one_line(exc)}") from None
            out.seek(0)
            if res.returncode != 0:
                why = f"{control} -d exited {res.returncode}: {_one_line(out.read())}"
                raise _StartFailed(why)
        started = True
        failed = _check(exe, env, probe, timeout_s)
        if failed:
            raise _StartFailed(failed)
    except _StartFailed as exc:
        _clean_up(started, control, env, tmp, timeout_s)
        return _refused(mode, str(exc)), {}
    except BaseException:  # Ctrl-C, SIGTERM: stop what was started, then go on stopping
        _clean_up(started, control, env, tmp, timeout_s)
        raise
    return MPSStatus(True, True, f"a private daemon in {tmp}, stopped when the runs end"), env


class _StartFailed(Exception):
    """The daemon did not start or does not serve (the message says why)."""


def _clean_up(
    started: bool, control: str, env: dict[str, str], tmp: Path, timeout_s: float
) -> None:
    if started:
        _stop(control, env, timeout_s)
    shutil.rmtree(tmp, ignore_errors=True)


def _check(exe: str, env: dict[str, str], probe: Sequence[str] | None, timeout_s: float) -> str:
    """ "" where a CUDA process computes with ``env`` and the daemon then lists a running MPS server (a
    client that cannot reach the daemon runs without MPS, so the probe alone proves nothing); else why
    not."""
    cmd = list(probe) if probe is not None else [sys.executable, "-c", PROBE]
    try:
        got = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        detail = "" if PROBE_OUT in got.stdout else _one_line(got.stderr or got.stdout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        detail = _one_line(exc)
    if detail:
        return f"a CUDA process could not compute through it ({detail})"
    try:
        listed = subprocess.run([exe], input="get_server_list\n", env=env, capture_output=True,
                                text=True, timeout=timeout_s)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"get_server_list failed ({_one_line(exc)})"
    if listed.returncode != 0 or not any(w.isdigit() for w in listed.stdout.split()):
        return (f"it lists no MPS server after a CUDA process ran "
                f"({_one_line(listed.stderr or listed.stdout)})")  # fmt: skip
    return ""


def _exit_on_sigterm() -> Any:
    """While a daemon is started, checked or serving, SIGTERM (``timeout``, a job scheduler) ends this
    process through ``SystemExit`` instead of at once, so the daemon is stopped on the way out; a further
    SIGTERM during that way out is ignored. Returns the handler to put back, or None where another handler
    is installed or this is not the main thread (nothing changed)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None

    def stop(signum: int, _frame: Any) -> None:
        # once: ``timeout`` signals this process and then its process group, so a second SIGTERM can
        # arrive during the clean-up the first one started (a sweep's pool ending its workers, the
        # daemon's stop); raised there, it cut that short and left the pool's join waiting forever
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)


def _refused(mode: str, why: str) -> MPSStatus:
    if mode == "on":
        raise MPSError(f"--mps on: {why}")
    return MPSStatus(False, False, why)


def _stop(control: str, env: dict[str, str], timeout_s: float) -> str:
    """Stop the daemon of ``env`` (``quit``: it ends its servers once their clients have gone); returns ""
    or what went wrong."""
    exe = env.get("_LPL_MPS_CONTROL", control)
    try:
        res = subprocess.run(
            [exe], input="quit\n", env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the daemon did not stop: {_one_line(exc)}"
    if res.returncode != 0:
        return f"quit exited {res.returncode}: {_one_line(res.stderr or res.stdout)}"
    return ""


def _one_line(x: object, limit: int = 200) -> str:
    text = " ".join(str(x).split())
    return text[:limit] if text else "no output"
