"""The run folder's lock: an OS lock on one file, held while a process trains there."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path

from .files import RunFolderError, RunLocked


class _Lock:
    """An exclusive OS lock (``flock``) on the file ``RUNNING``: released by the kernel when the process
    ends, so a killed run leaves no stale lock. Where ``fcntl`` is missing, an ``O_EXCL`` file is used."""

    def __init__(self, path: Path) -> None:
        self.path, self.fd = path, -1

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self._acquire_excl()
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    # no process holds it: this file system refuses locks (Lustre mounted without
                    # flock: ENOSYS; some NFS, SMB and FUSE mounts: ENOLCK, EOPNOTSUPP)
                    os.close(fd)
                    raise RunFolderError(
                        f"cannot lock {str(self.path)!r}: {exc.strerror or exc}: the run folder's file "
                        "system does not support file locks (flock); put the run folder on one that does"
                    ) from None
                holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown process"
                os.close(fd)
                raise RunLocked(
                    f"run folder {str(self.path.parent)!r} is in use by another process ({holder}); "
                    f"its lock file is {str(self.path)!r}; wait for that run to end",
                    self.path,
                ) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:  # not a file its previous holder unlinked after we opened it
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
                self.fd = fd
                return None
            os.close(fd)
        raise RunLocked(
            f"could not take the lock {str(self.path)!r}: it keeps being replaced", self.path
        )

    def _acquire_excl(self) -> None:  # pragma: no cover - not POSIX
        try:
            self.fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise RunLocked(
                f"run folder {str(self.path.parent)!r} is in use by another process; its lock file is "
                f"{str(self.path)!r} (delete it if no run is using the folder)",
                self.path,
            ) from None
        os.write(self.fd, str(os.getpid()).encode())

    def release(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = -1
