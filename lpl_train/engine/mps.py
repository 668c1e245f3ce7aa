"""Concurrent runs on one GPU whose kernels overlap: NVIDIA's Multi-Process Service (MPS) for the duration of a
sweep.

N training processes on one GPU share it by time slicing: the device runs one process's kernels at a time and
switches between them, so N small networks (a ResNet-32 at batch 128 fills a fraction of a large GPU) train
together little faster than one does. Under MPS the processes are clients of one server, and kernels of
different processes run on the device at the same time.

:func:`mps_server` starts a private MPS control daemon (``nvidia-cuda-mps-control -d``, its pipe and log
folders in a fresh temporary folder, named to the child processes by ``CUDA_MPS_PIPE_DIRECTORY`` and
``CUDA_MPS_LOG_DIRECTORY`` in ``os.environ``), checks that a CUDA process can compute through it, and stops
it (``quit``) when the context ends, normally, on an error or on SIGTERM. It changes no setting of the device (compute
mode, clocks, MIG): the daemon is an ordinary user process, and processes outside the context are not its
clients. Where an MPS daemon already serves this environment (``CUDA_MPS_PIPE_DIRECTORY`` set, or the
system's default pipe folder ``/tmp/nvidia-mps`` present), the runs are its clients already: nothing is
started or stopped.

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
    log: Callable[[str], None] = print,
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
    status, env, tmp = _start(mode, needed, control, probe, timeout_s, system)
    log(status.line())
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    term = _exit_on_sigterm() if status.started else None
    try:
        if status.started:
            os.environ.update({k: env[k] for k in ENV_KEYS})
        yield status
    finally:
        if term is not None:
            signal.signal(signal.SIGTERM, term)
        if status.started:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            stopped = _stop(control, env, timeout_s)
            if stopped:
                log(f"MPS: {stopped}")
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _start(
    mode: str,
    needed: bool,
    control: str,
    probe: Sequence[str] | None,
    timeout_s: float,
    system_pipe_dir: Path,
) -> tuple[MPSStatus, dict[str, str], Path | None]:
    """(status, the daemon's environment, the temporary folder to remove at the end or None)."""
    if mode == "off":
        return MPSStatus(False, False, "--mps off"), {}, None
    if not needed:
        return MPSStatus(False, False, "one run at a time: nothing to share"), {}, None
    if os.environ.get("CUDA_MPS_PIPE_DIRECTORY"):
        why = f"a daemon serves CUDA_MPS_PIPE_DIRECTORY={os.environ['CUDA_MPS_PIPE_DIRECTORY']}"
        return MPSStatus(True, False, why), {}, None
    if system_pipe_dir.exists():
        return MPSStatus(True, False, f"the system's daemon serves {system_pipe_dir}"), {}, None
    exe = shutil.which(control)
    if exe is None:
        return _refused(mode, f"{control} is not on PATH; the runs time-slice the GPU"), {}, None
    # a short folder: the daemon's pipes are Unix sockets, whose paths may not exceed ~100 bytes
    tmp = Path(tempfile.mkdtemp(prefix="lpl-mps-", dir="/tmp" if Path("/tmp").is_dir() else None))
    env = dict(os.environ)
    env["CUDA_MPS_PIPE_DIRECTORY"] = str(tmp / "pipe")
    env["CUDA_MPS_LOG_DIRECTORY"] = str(tmp / "log")
    for k in ENV_KEYS:
        Path(env[k]).mkdir()
    try:
        res = subprocess.run(
            [exe, "-d"], env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return _refused(mode, f"{control} -d did not start: {_one_line(exc)}"), {}, None
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        why = f"{control} -d exited {res.returncode}: {_one_line(res.stderr or res.stdout)}"
        return _refused(mode, why), {}, None
    env["_LPL_MPS_CONTROL"] = exe
    cmd = list(probe) if probe is not None else [sys.executable, "-c", PROBE]
    try:
        got = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        ok, detail = PROBE_OUT in got.stdout, _one_line(got.stderr or got.stdout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, detail = False, _one_line(exc)
    if not ok:
        _stop(exe, env, timeout_s)
        shutil.rmtree(tmp, ignore_errors=True)
        return _refused(mode, f"a CUDA process could not compute through it ({detail})"), {}, None
    why = f"a private daemon in {tmp}, stopped when the runs end"
    return MPSStatus(True, True, why), env, tmp


def _exit_on_sigterm() -> Any:
    """While a started daemon runs, SIGTERM (``timeout``, a job scheduler) ends this process through
    ``SystemExit`` instead of at once, so the daemon is stopped on the way out. Returns the handler to put
    back, or None where another handler is installed or this is not the main thread (nothing changed)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None

    def stop(signum: int, _frame: Any) -> None:
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
