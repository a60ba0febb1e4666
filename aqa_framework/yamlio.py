"""Reading YAML that a user wrote: bounded in size, strict about duplicate keys.

PyYAML's ``safe_load`` accepts two things that hurt here. A mapping that repeats a key keeps
the last value without a word (a second ``score:`` head silently replaced the first). And
aliases let a ~1 KB file describe a structure of billions of values ("billion laughs"): the
loaded object shares its parts, but anything that walks or prints it (validation, an error
message) expands it and exhausts memory.

:func:`load_yaml` therefore composes the document into YAML nodes first (aliases are shared
nodes, so this stays as small as the text), checks it, and only then constructs Python
objects:

* the text is at most :data:`MAX_YAML_BYTES`;
* the document, with every alias expanded, has at most :data:`MAX_YAML_VALUES` values and is
  nested at most :data:`MAX_YAML_DEPTH` levels deep, and no alias refers to itself;
* no mapping repeats a key.

Each problem is a :class:`YAMLProblem` with the dotted path of the offending value.
:func:`short_repr` formats a value for a message with bounded size, whatever the value.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_VALUES",
    "YAMLProblem",
    "load_yaml",
    "read_yaml_text",
    "short_repr",
]

MAX_YAML_BYTES = 1_000_000
"""Largest YAML text read (specs and sweep files are a few KB)."""
MAX_YAML_VALUES = 100_000
"""Most values (scalars, lists, mappings) a document may hold with its aliases expanded."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of lists and mappings."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YAMLProblem(ValueError):
    """A YAML text that is not acceptable.

    Args:
        message: What is wrong.
        path: Dotted path of the offending value (empty for the whole text).
        line: 1-based line of the problem, if known.
    """

    def __init__(self, message: str, path: str = "", line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.message = message + (f" (line {line})" if line is not None else "")
        super().__init__(self.message)


_REPR = reprlib.Repr()
_REPR.maxstring = 50
_REPR.maxother = 50
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to at most ``limit`` characters, computed in bounded time and memory.

    Unlike ``repr(value)[:limit]`` it never formats the whole of a large (or alias-shared)
    structure first.

    Args:
        value: Anything.
        limit: Most characters returned.
    """
    try:
        text = _REPR.repr(value)
    except Exception:  # a broken __repr__ of a foreign object
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_yaml_text(path: str | Path, limit: int = MAX_YAML_BYTES) -> str:
    """Read a YAML file as text, refusing one larger than ``limit`` bytes before reading it.

    Raises:
        YAMLProblem: If the file is too large or not UTF-8 text.
        OSError: If it cannot be read.
    """
    p = Path(path)
    size = p.stat().st_size
    if size > limit:
        raise YAMLProblem(f"the file is {size:,} bytes; at most {limit:,} are read")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise YAMLProblem("not a text file") from None


def _line(node: Any) -> int | None:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check(root: Any, max_values: int, max_depth: int) -> None:
    """Count values with aliases expanded, bound the depth, find duplicate keys."""
    _Walker(max_values, max_depth).visit(root, "", 0, set())


class _Walker:
    """Walks a composed YAML node tree, counting values with aliases expanded."""

    def __init__(self, max_values: int, max_depth: int) -> None:
        self.max_values = max_values
        self.max_depth = max_depth
        self.sizes: dict[int, int] = {}  # id(node) -> expanded size, for nodes already counted
        self.total = 0

    def _count(self, n: int, path: str, node: Any) -> None:
        self.total += n
        if self.total > self.max_values:
            raise _too_many(self.max_values, path, node)

    def visit(self, node: Any, path: str, depth: int, active: set[int]) -> int:
        """The expanded size of ``node`` (``active``: the nodes that contain it)."""
        import yaml

        if depth > self.max_depth:
            raise YAMLProblem(f"nested more than {self.max_depth} levels deep", path, _line(node))
        nid = id(node)
        if nid in self.sizes:  # an alias of a node already seen: count its expansion again
            self._count(self.sizes[nid], path, node)
            return self.sizes[nid]
        if nid in active:
            raise YAMLProblem("an alias refers to the value that contains it", path, _line(node))
        self._count(1, path, node)
        size = 1
        if isinstance(node, yaml.SequenceNode | yaml.MappingNode):
            active.add(nid)
            for child, child_path in self._children(node, path):
                size += self.visit(child, child_path, depth + 1, active)
            active.discard(nid)
        self.sizes[nid] = size
        return size

    def _children(self, node: Any, path: str) -> Iterator[tuple[Any, str]]:
        """The nodes a sequence or mapping holds, with their paths (a mapping's keys and values).

        A mapping's keys are checked for duplicates as the walk reaches them.
        """
        import yaml

        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                yield item, _join(path, str(i))
            return
        seen: dict[tuple[str, str], Any] = {}
        for key_node, value_node in node.value:
            name = _key_name(key_node)
            _check_duplicate(key_node, seen, _join(path, name))
            yield key_node, path
            yield value_node, _join(path, name)


def _key_name(key_node: Any) -> str:
    """A mapping key as a path element (shortened)."""
    import yaml

    name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "<key>"
    return name[:37] + "..." if len(name) > 40 else name


def _check_duplicate(key_node: Any, seen: dict[tuple[str, str], Any], path: str) -> None:
    """Raise if a mapping repeats a (non-merge) scalar key; ``seen`` holds the keys so far."""
    import yaml

    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
        return
    ident = (key_node.tag, key_node.value)
    if ident in seen:
        raise YAMLProblem(
            f"duplicate key (first at line {_line(seen[ident])}, again at line "
            f"{_line(key_node)}); each key may appear once in a mapping",
            path,
        )
    seen[ident] = key_node


def _too_many(limit: int, path: str, node: Any) -> YAMLProblem:
    return YAMLProblem(
        f"the document expands to more than {limit:,} values (aliases that repeat aliases?); "
        "a spec is far smaller",
        path,
        _line(node),
    )


def load_yaml(
    text: str,
    *,
    max_bytes: int = MAX_YAML_BYTES,
    max_values: int = MAX_YAML_VALUES,
    max_depth: int = MAX_YAML_DEPTH,
) -> Any:
    """Parse one YAML document like ``yaml.safe_load``, within limits and without duplicate keys.

    Args:
        text: The YAML text.
        max_bytes: Most characters accepted.
        max_values: Most values of the document with aliases expanded.
        max_depth: Deepest nesting accepted.

    Returns:
        The document (``None`` for an empty one).

    Raises:
        YAMLProblem: If a limit is exceeded or a mapping repeats a key.
        yaml.YAMLError: If the text is not valid YAML.
    """
    import yaml

    if len(text) > max_bytes:
        raise YAMLProblem(f"the text is {len(text):,} characters; at most {max_bytes:,} are read")
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YAMLProblem(f"nested more than {max_depth} levels deep") from None
        if node is None:
            return None
        _check(node, max_values, max_depth)
        return loader.construct_document(node)
    finally:
        loader.dispose()
