"""Label tables: one row per video, a key column and named score columns.

Many long-video datasets ship their labels as a text table (rhythmic gymnastics'
``train.txt``: ``Video_Name  Difficulty_Score  Execution_Score  Total_Score  Penalty
Video_length``). :class:`TableLayout` says how to read such a file (separator, header,
which column holds the key and which hold the scores, a scale per score, which keys to keep),
and :func:`read_label_table` reads it, checking every row: a missing column, a value that is
not a finite number, an empty or repeated key is a bad row, reported with the file, the line
number and the fix. Under ``on_error: raise`` the bad rows raise one
:class:`~aqa_framework.errors.DataError`; under ``on_error: skip`` they are left out with one
warning that lists them.

Torch-free: the CLI may import it at startup.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aqa_framework.errors import DataError

__all__ = [
    "BadRowWarning",
    "LabelRow",
    "LabelTable",
    "LabelTableParams",
    "TableLayout",
    "read_label_table",
]

_MAX_LISTED = 5

Column = str | int
"""A column by its header name or by its 0-based position."""


class BadRowWarning(UserWarning):
    """Rows of a label table were left out (``on_error: skip``)."""


class LabelTableParams(BaseModel):
    """How a label table is laid out: the params of datasets that read one.

    A dataset's ``Params`` may inherit these fields; :meth:`layout` turns them into a
    :class:`TableLayout`.
    """

    model_config = ConfigDict(extra="forbid")

    separator: str | None = Field(
        None,
        description="Field separator: null for any run of whitespace (tabs and spaces alike), "
        "or a string such as ',', ';' or a tab.",
    )
    header: Literal["names", "skip", "none"] = Field(
        "names",
        description="'names': the first line names the columns (rows must have as many "
        "fields); 'skip': the first line is ignored and columns are 0-based positions; "
        "'none': every line is a row.",
    )
    key_column: Column = Field(
        0, description="Column holding the video key (a header name or a 0-based position)."
    )
    score_columns: dict[str, Column] = Field(
        default_factory=dict,
        description="Score target name -> its column (header name or 0-based position), e.g. "
        "{total: Total_Score}.",
    )
    score_scale: dict[str, float] = Field(
        default_factory=dict,
        description="Score name -> factor the read value is multiplied by, to bring a column "
        "to points (default 1).",
    )
    key_filter: str | None = Field(
        None,
        description="Regular expression; only rows whose key matches it (re.search) are used, "
        "e.g. '^Ball_' for one apparatus.",
    )
    comment: str | None = Field(
        "#", description="Lines starting with this string are ignored (null: none)."
    )

    def layout(self) -> TableLayout:
        """The :class:`TableLayout` these params describe."""
        return TableLayout(
            columns=dict(self.score_columns),
            key_column=self.key_column,
            separator=self.separator,
            header=self.header,
            scale=dict(self.score_scale),
            key_filter=self.key_filter,
            comment=self.comment,
        )


@dataclass(frozen=True)
class TableLayout:
    """How to read a label table.

    Attributes:
        columns: Score name -> column (header name, or 0-based position).
        key_column: Column of the video key.
        separator: ``None`` for any whitespace, else the separator string.
        header: ``names``, ``skip`` or ``none`` (see :class:`LabelTableParams`).
        scale: Score name -> factor applied to the read value.
        key_filter: Regular expression the keys of used rows match.
        comment: Prefix of ignored lines.
    """

    columns: dict[str, Column]
    key_column: Column = 0
    separator: str | None = None
    header: Literal["names", "skip", "none"] = "names"
    scale: dict[str, float] = field(default_factory=dict)
    key_filter: str | None = None
    comment: str | None = "#"


@dataclass(frozen=True)
class LabelRow:
    """One video's labels.

    Attributes:
        key: The video key.
        line: 1-based line number in the file.
        scores: Score name -> value (scaled).
    """

    key: str
    line: int
    scores: dict[str, float]


@dataclass
class LabelTable:
    """The good rows of a label table and what was left out.

    Attributes:
        path: The file.
        rows: Rows in file order (only those passing ``key_filter``).
        bad: ``"file:line: problem"`` for each row left out (``on_error: skip``).
    """

    path: Path
    rows: list[LabelRow]
    bad: list[str] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        """Keys of the rows, in file order."""
        return [r.key for r in self.rows]


def _split(line: str, separator: str | None) -> list[str]:
    fields = line.split() if separator is None else line.split(separator)
    return [f.strip() for f in fields]


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"label file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read label file {path}: {exc}") from exc
    return [(i, line.rstrip("\r\n")) for i, line in enumerate(text.splitlines(), start=1)]


def _positions(
    path: Path, layout: TableLayout, header: list[str] | None
) -> tuple[int, dict[str, int]]:
    """0-based positions of the key column and of each score column."""
    wanted: dict[str, Column] = {"<key>": layout.key_column, **layout.columns}
    out: dict[str, int] = {}
    for name, col in wanted.items():
        what = "the key column" if name == "<key>" else f"score '{name}'"
        if isinstance(col, int):
            if col < 0:
                raise DataError(f"{path}: {what} is column {col}; positions start at 0")
            out[name] = col
        elif header is None:
            raise DataError(
                f"{path}: {what} names column {col!r}, but the table has no header "
                f"(header: {layout.header}); give its 0-based position instead"
            )
        elif col not in header:
            raise DataError(
                f"{path}:1: no column {col!r} for {what} in the header (columns: "
                f"{', '.join(header)}); fix the column name, or use header: skip with 0-based "
                "positions"
            )
        else:
            out[name] = header.index(col)
    key = out.pop("<key>")
    return key, out


def _row_problem(
    fields: list[str], key_pos: int, positions: dict[str, int], header: list[str] | None
) -> tuple[str, dict[str, float]] | str:
    """``(key, raw scores)`` of a row, or what is wrong with it."""
    if header is not None and len(fields) != len(header):
        return (
            f"{len(fields)} fields, but the header names {len(header)} "
            f"({', '.join(header)}): the header and the rows are not split alike; use "
            "separator: null (any whitespace), or header: skip with 0-based positions"
        )
    needed = max([key_pos, *positions.values()])
    if len(fields) <= needed:
        return (
            f"{len(fields)} fields, but column {needed} (0-based) is needed; fix the row "
            "or the column settings"
        )
    key = fields[key_pos]
    if not key:
        return "empty key"
    values = {}
    for name, pos in positions.items():
        text = fields[pos]
        try:
            value = float(text)
        except ValueError:
            return f"{name} {text!r} (column {pos}) is not a number"
        if not math.isfinite(value):
            return f"{name} is {text} (column {pos}), not a finite number"
        values[name] = value
    return key, values


def read_label_table(
    path: str | Path,
    layout: TableLayout,
    *,
    on_error: Literal["raise", "skip"] = "raise",
) -> LabelTable:
    """Read a label table, checking every row.

    Args:
        path: The file (UTF-8, a byte-order mark and CRLF line ends are accepted).
        layout: How it is laid out.
        on_error: ``raise``: bad rows raise one error listing them; ``skip``: they are left
            out with one :class:`BadRowWarning`.

    Returns:
        The rows whose key passes ``layout.key_filter``.

    Raises:
        DataError: If the file cannot be read, a named column is missing, a row is bad
            (``on_error: raise``) or no row is left.
    """
    path = Path(path)
    lines = [
        (n, text)
        for n, text in _lines(path)
        if text.strip() and not (layout.comment and text.lstrip().startswith(layout.comment))
    ]
    header = None
    if layout.header != "none" and lines:
        first = lines.pop(0)
        if layout.header == "names":
            header = _split(first[1], layout.separator)
    key_pos, positions = _positions(path, layout, header)
    pattern = re.compile(layout.key_filter) if layout.key_filter else None
    rows: list[LabelRow] = []
    bad: list[str] = []
    seen: dict[str, int] = {}
    for number, text in lines:
        found = _row_problem(_split(text, layout.separator), key_pos, positions, header)
        if isinstance(found, str):
            bad.append(f"{path}:{number}: {found}")
            continue
        key, values = found
        if pattern is not None and not pattern.search(key):
            continue
        if key in seen:
            bad.append(f"{path}:{number}: key {key!r} repeats line {seen[key]}; remove one")
            continue
        seen[key] = number
        scores = {n: v * layout.scale.get(n, 1.0) for n, v in values.items()}
        rows.append(LabelRow(key, number, scores))
    _report(path, bad, on_error)
    if not rows:
        which = f" matching {layout.key_filter!r}" if layout.key_filter else ""
        raise DataError(f"{path}: no usable row{which}")
    return LabelTable(path, rows, bad)


def _report(path: Path, bad: list[str], on_error: str) -> None:
    if not bad:
        return
    listed = bad[:_MAX_LISTED] + (
        [f"... and {len(bad) - _MAX_LISTED} more"] if len(bad) > _MAX_LISTED else []
    )
    body = "\n  ".join(listed)
    if on_error == "raise":
        if len(bad) == 1:
            raise DataError(f"bad row in label file {bad[0]} (or set on_error: skip)")
        raise DataError(
            f"label file {path}: {len(bad)} bad rows:\n  {body}\n(fix the file, or set "
            "on_error: skip to leave such rows out)"
        )
    warnings.warn(
        f"label file {path}: left out {len(bad)} bad row(s):\n  {body}",
        BadRowWarning,
        stacklevel=3,
    )
