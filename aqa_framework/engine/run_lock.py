"""An exclusive lock on a run folder, held for the whole run (and resume).

Two ``aqa run`` processes must never write into one run folder: both would fail, or both would
finish and one would report the other's metrics. The process that trains a run holds an
``flock`` on ``<run folder>/.lock`` from the moment it claims the folder until it exits (the
operating system drops the lock when the process dies, however it dies). The lock file records
the holder's pid, host, start time and command line, so a second process is told who holds it.
Under ``torchrun`` only rank 0 takes the lock.

Where ``fcntl`` does not exist (Windows) the folder is not locked.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from aqa_framework.errors import CheckpointError

LOCK_FILE = ".lock"
"""Name of the lock file inside a run folder."""

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def _holder_description(text: str) -> str:
    try:
        info = json.loads(text)
    except ValueError:
        return "another process"
    if not isinstance(info, dict):
        return "another process"
    parts = [f"pid {info.get('pid', '?')} on {info.get('host', '?')}"]
    if info.get("started"):
        parts.append(f"since {info['started']}")
    desc = ", ".join(parts)
    command = info.get("command")
    if isinstance(command, list) and command:
        desc += f" ({' '.join(str(c) for c in command)})"
    return desc


class RunLock:
    """An exclusive, non-blocking lock on a run folder.

    Args:
        folder: The run folder (must exist when :meth:`acquire` is called).

    Example:
        >>> with RunLock(folder):  # doctest: +SKIP
        ...     train()
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock and record this process in the lock file.

        Returns:
            ``self``.

        Raises:
            CheckpointError: If another process holds the lock; the message names it (pid,
                host, start time, command).
        """
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                try:
                    holder = os.pread(fd, 1 << 16, 0).decode("utf-8", "replace")
                finally:
                    os.close(fd)
                raise CheckpointError(
                    f"run folder {self.folder} is in use by {_holder_description(holder)}; "
                    "wait for that run to end, or use another --run-dir"
                ) from None
        info: dict[str, Any] = {
            "pid": os.getpid(),
            "host": platform.node(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
        }
        data = (json.dumps(info) + "\n").encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the file stays; only the lock itself matters)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
