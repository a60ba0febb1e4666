"""Generate a synthetic dataset into its folder on first use, and check it on every later use.

The synthetic datasets (``synthetic-diving``, ``synthetic-jigsaws``, ``synthetic-routines``)
all work the same way: the first time a split is opened, the generator writes the data into
``root`` (atomically: several processes may race, one wins); afterwards the folder's marker
file must exist and record the settings the spec asks for, so that data made with other
settings is never read as if it were this.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aqa_framework.errors import DataError

__all__ = ["ensure_generated"]


def ensure_generated(
    root: Path,
    marker: str,
    wanted: Mapping[str, Any],
    generate: Callable[[], Any],
    announce: str,
) -> None:
    """Generate the data into ``root`` unless it exists, then check its marker's settings.

    Args:
        root: The data folder.
        marker: Name of the file the generator writes last, holding its settings (JSON).
        wanted: The settings the marker must record (only these keys are compared).
        generate: Writes the data into ``root``; raises :class:`DataError` if another
            process created it first.
        announce: What is generated, for the line printed on first use
            (``"600 synthetic dives (64x48, seed 0)"``).

    Raises:
        DataError: If ``root`` holds something else, or data made with other settings.
    """
    marker_path = root / marker
    if not root.exists():
        print(f"Generating {announce} in {root} (first use) ...", file=sys.stderr, flush=True)
        try:
            generate()
        except DataError:
            if not marker_path.is_file():  # not merely another process finishing first
                raise
    if not marker_path.is_file():
        raise DataError(
            f"{root} exists but is not a synthetic dataset (no {marker}); choose another root"
        )
    try:
        meta = json.loads(marker_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {marker_path}: {exc}") from exc
    found = {k: meta.get(k) for k in wanted}
    if found != dict(wanted):
        raise DataError(
            f"{root} holds synthetic data made with other settings ({found}, wanted "
            f"{dict(wanted)}); delete it or choose another root"
        )
