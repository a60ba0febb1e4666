"""Deprecated alias of :mod:`aqa_framework.experiments.scaffold`; import that instead.

The module moved in 0.2. Importing this path warns once and binds the same module object,
so every name (private ones included) and monkeypatching keep working.
"""

from __future__ import annotations

import sys
import warnings

from aqa_framework.experiments import scaffold as _moved
from aqa_framework.experiments.scaffold import *  # noqa: F403

warnings.warn(
    "aqa_framework.scaffold moved to aqa_framework.experiments.scaffold",
    DeprecationWarning,
    stacklevel=2,
)

sys.modules[__name__] = _moved
