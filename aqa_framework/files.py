"""Files the framework writes: atomic writes and markdown tables.

Every file a run, a sweep, the feature cache or the frame cache writes goes through
:func:`atomic_file` (or its shorthands :func:`write_text_atomic`, :func:`write_bytes_atomic` and
:func:`write_json_atomic`): the content is written to a temporary file next to the target,
flushed and ``fsync``-ed, then moved over the target with ``os.replace``. A crash at any moment
leaves either the old file or the new one, never half of one. The temporary file's name
(``.<name>.<pid>-<random>.tmp``) is unique to the writing process and call, so two writers
never share one; it is removed if writing fails, and :func:`is_temporary` recognises the ones a
killed process left behind (the run folder clears them under its lock).

:func:`markdown_table` builds the GitHub-flavoured markdown tables of ``report.md``, sweep
results and probe tables.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Literal

from aqa_framework import jsonio

__all__ = [
    "atomic_file",
    "is_temporary",
    "markdown_table",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def is_temporary(name: str) -> bool:
    """Whether a file name is one of the temporaries of an atomic write.

    Args:
        name: A file or folder name (no directory).

    Returns:
        ``True`` for the names :func:`atomic_file` and the checkpoint writer use (and those
        of older versions).
    """
    return name.startswith(".") and (name.endswith(".tmp") or ".tmp-" in name)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: Literal["w", "wb"] = "w") -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` when the block ends without an error.

    For writers that need a file object (``np.save``, ``Figure.savefig``, ``csv.writer``).
    The parent folder is created if missing. Text mode writes UTF-8 without newline
    translation.

    Args:
        path: The file to write.
        mode: ``"w"`` for text, ``"wb"`` for bytes.

    Yields:
        The open temporary file.

    Raises:
        ValueError: If ``mode`` is neither ``"w"`` nor ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        text = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with open(tmp, mode, **text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file atomically (see :func:`atomic_file`).

    Args:
        path: The file to write.
        text: Its content (written as is, no newline translation).
    """
    with atomic_file(path, "w") as f:
        f.write(text)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write a binary file atomically (see :func:`atomic_file`).

    Args:
        path: The file to write.
        data: Its content.
    """
    with atomic_file(path, "wb") as f:
        f.write(data)


def write_json_atomic(
    path: str | Path, doc: Any, *, indent: int | None = 2, newline: bool = True, **kwargs: Any
) -> None:
    """Write a strict JSON document (:func:`aqa_framework.jsonio.dumps`) atomically.

    Args:
        path: The file to write.
        doc: The document; NaN and infinite numbers become ``null`` listed under
            ``nonfinite``.
        indent: Indentation, or ``None`` for one line.
        newline: Whether to end the file with a newline.
        **kwargs: Passed on to :func:`aqa_framework.jsonio.dumps` (``default=str``).
    """
    text = jsonio.dumps(doc, indent=indent, **kwargs)
    write_text_atomic(path, text + "\n" if newline else text)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    headers: Sequence[Any],
    rows: Sequence[Sequence[Any]],
    *,
    align: Sequence[Literal["left", "right"]] | None = None,
) -> str:
    """A GitHub-flavoured markdown table.

    Cells are written with ``str``; pipes are escaped and line breaks become spaces, so any
    text stays in its cell. Format numbers before passing them.

    Args:
        headers: Column titles.
        rows: One sequence of cells per row, as many as ``headers``.
        align: ``"left"`` or ``"right"`` per column; default all left (unmarked).

    Returns:
        The table, one line per row, without a trailing newline.

    Raises:
        ValueError: If ``align`` or a row has another length than ``headers``.
    """
    align = ["left"] * len(headers) if align is None else list(align)
    if len(align) != len(headers):
        raise ValueError(f"{len(align)} alignments for {len(headers)} columns")
    marks = {"left": "---", "right": "--:"}
    lines = [
        "| " + " | ".join(_cell(h) for h in headers) + " |",
        "|" + "|".join(marks[a] for a in align) + "|",
    ]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"a row of {len(row)} cells in a table of {len(headers)} columns")
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)
