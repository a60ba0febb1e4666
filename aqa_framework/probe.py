"""Deprecated alias of :mod:`aqa_framework.experiments.probe`; import that instead.

The module moved in 0.2. Importing this path warns once and binds the same module object,
so every name (private ones included) and monkeypatching keep working.
"""

from aqa_framework._moved import alias_moved_module

alias_moved_module(__name__, "aqa_framework.experiments.probe")
