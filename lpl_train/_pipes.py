"""Standard output meeting a closed pipe (``lpl-train list | head``, ``python -m lpl_theory ... | head``): the
one helper both command lines use. It imports nothing heavy, so ``lpl_theory``'s command line may use it."""

from __future__ import annotations

import os
import sys


def flush_stdout() -> bool:
    """Flush stdout now, so that a reader gone away (``... | head``) shows here and not as "Exception
    ignored ... BrokenPipeError" at the interpreter's exit. False when it has gone away; what is left of
    the output then goes to /dev/null."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
        return False
    return True


def print_line(line: str) -> None:
    """``print(line)`` for what a long command says as it goes (a run's epoch lines, a sweep's runs): a
    reader gone away (``lpl-train run ... | head``) does not stop the command, whose runs train on to their
    end (their lines also go to each run's ``train.log``); what is left of the output goes to /dev/null."""
    try:
        print(line)
    except BrokenPipeError:
        _stdout_to_devnull()


def _stdout_to_devnull() -> None:
    """Point stdout's file descriptor at /dev/null: the reader has gone away."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
