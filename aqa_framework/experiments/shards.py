"""Data work in shards: ``--shard i/n`` for ``aqa data cache`` and ``aqa features extract``.

``n`` processes (on one machine or on several nodes sharing a file system) fill one folder
without overlap: shard ``i`` (numbered ``0`` to ``n - 1``) takes the items at positions
``i, i + n, i + 2n, ...`` of the ordered list of work that every shard computes alike from the
same spec. Each shard records its progress in the folder's manifest (a JSON file updated
under an exclusive file lock, so concurrent writers never lose each other's entries); the
manifest says which shards finished and whether the whole job is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aqa_framework.errors import AQAError
from aqa_framework.files import write_json_atomic

__all__ = ["Shard", "locked_json_update", "manifest_lock", "parse_shard", "shard_entry"]

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """One of ``count`` disjoint parts of a job.

    Attributes:
        index: This part, ``0 <= index < count``.
        count: How many parts the job is split into.
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise AQAError(
                f"shard {self.index}/{self.count}: expected i/n with n >= 1 and 0 <= i < n "
                "(shards are numbered 0 to n-1, e.g. --shard 0/4 ... --shard 3/4)"
            )

    @property
    def label(self) -> str:
        """``"i/n"``."""
        return f"{self.index}/{self.count}"

    def select(self, items: Sequence[T]) -> list[T]:
        """This shard's items: positions ``index, index + count, ...`` of ``items``."""
        return list(items[self.index :: self.count])

    def owns(self, position: int) -> bool:
        """Whether the item at ``position`` of the ordered work belongs to this shard."""
        return position % self.count == self.index


def parse_shard(text: str | None) -> Shard:
    """Parse ``--shard i/n`` (``None`` or empty: the whole job, ``0/1``).

    Raises:
        AQAError: If the text is not ``i/n`` with ``0 <= i < n``.
    """
    if not text:
        return Shard()
    parts = text.split("/")
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        raise AQAError(
            f"--shard {text!r}: expected i/n such as 0/4 (shard i of n, numbered 0 to n-1)"
        ) from None
    return Shard(index, count)


@contextlib.contextmanager
def manifest_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (POSIX ``flock``) for a read-modify-write.

    On a system without ``fcntl`` the block runs unlocked (one process per folder there).
    """
    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def locked_json_update(
    path: str | Path,
    update: Callable[[dict[str, Any]], T],
    *,
    default: dict[str, Any] | None = None,
) -> T:
    """Read a JSON object, let ``update`` change it in place, write it back, all under the lock.

    Args:
        path: The JSON file (missing: ``default`` or ``{}``).
        update: Changes the document; its return value is returned.
        default: The document when the file does not exist yet.

    Raises:
        AQAError: If the file exists but is not a JSON object.
    """
    path = Path(path)
    with manifest_lock(path):
        if path.is_file():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise AQAError(
                    f"{path}: unreadable manifest ({exc}); delete it to start over"
                ) from exc
            if not isinstance(doc, dict):
                raise AQAError(f"{path}: expected a JSON object; delete it to start over")
        else:
            doc = json.loads(json.dumps(default or {}))
        result = update(doc)
        write_json_atomic(path, doc)
    return result


def shard_entry(status: str, **counts: Any) -> dict[str, Any]:
    """A manifest's record of one shard: status, counts, host, process and time."""
    return {
        "status": status,
        **counts,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
