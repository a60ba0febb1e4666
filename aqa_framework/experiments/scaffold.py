"""``aqa plugins new``: scaffold a plugin package that installs and passes its tests as is.

The package has a ``pyproject.toml`` with the ``aqa`` entry point, a plugin module with the
hook implementations, a small synthetic dataset, a score head, an example spec, tests written
with :mod:`aqa_framework.testing`, and a README. Torch-free. The templates are files of the
package, ``aqa_framework/resources/scaffold/*.tmpl``, with ``string.Template`` placeholders
(``${name}``, ``${dist}``, ``${package}``, ``${core_version}``).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

from aqa_framework import __version__
from aqa_framework.errors import AQAError

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*([_-][a-z0-9]+)*$")
_RESERVED = {"builtin", "aqa", "aqa_framework", "testing"}

TEMPLATES: dict[str, str] = {
    "pyproject.toml": "pyproject.toml.tmpl",
    "README.md": "README.md.tmpl",
    "spec.yaml": "spec.yaml.tmpl",
    "src/${package}/__init__.py": "__init__.py.tmpl",
    "src/${package}/plugin.py": "plugin.py.tmpl",
    "src/${package}/dataset.py": "dataset.py.tmpl",
    "src/${package}/head.py": "head.py.tmpl",
    "tests/test_${package}.py": "test_package.py.tmpl",
}
"""Relative path in the new package (a ``string.Template``) -> its template file in
:data:`TEMPLATE_DIR`."""

TEMPLATE_DIR = ("resources", "scaffold")
"""Folder of the template files inside the ``aqa_framework`` package."""


def template(resource: str) -> str:
    """The text of one template file (``string.Template`` placeholders).

    Args:
        resource: File name in :data:`TEMPLATE_DIR`, e.g. ``plugin.py.tmpl``.

    Returns:
        The template, read from the installed package.
    """
    path = resources.files("aqa_framework")
    for part in (*TEMPLATE_DIR, resource):
        path = path.joinpath(part)
    return path.read_text(encoding="utf-8")


def package_names(name: str) -> dict[str, str]:
    """The names a plugin called ``name`` uses.

    Args:
        name: Plugin name (the entry-point name and component prefix), e.g. ``skating``.

    Returns:
        ``name``, ``dist`` (``aqa-skating``), ``package`` (``aqa_skating``) and
        ``core_version``.

    Raises:
        AQAError: If the name is not a lower-case identifier or is reserved.
    """
    if not _NAME_RE.match(name):
        raise AQAError(
            f"plugin name {name!r} must be lower case letters and digits, optionally joined "
            "by '-' or '_', starting with a letter (e.g. 'skating' or 'figure-skating')"
        )
    if name in _RESERVED:
        raise AQAError(f"plugin name {name!r} is reserved; choose another")
    return {
        "name": name,
        "dist": f"aqa-{name.replace('_', '-')}",
        "package": f"aqa_{name.replace('-', '_')}",
        "core_version": __version__,
    }


def render(name: str) -> dict[str, str]:
    """The files of a new plugin package, without writing them.

    Args:
        name: Plugin name.

    Returns:
        Relative path -> file content.
    """
    names = package_names(name)
    return {
        Template(path).substitute(names): Template(template(resource)).substitute(names)
        for path, resource in TEMPLATES.items()
    }


def create_plugin(name: str, parent: str | Path = ".") -> Path:
    """Write a new plugin package ``<parent>/aqa-<name>``.

    Args:
        name: Plugin name: the entry-point name and the prefix of its components.
        parent: Folder to create the package in.

    Returns:
        The package folder.

    Raises:
        AQAError: If the name is invalid or the folder exists.
    """
    files = render(name)
    root = Path(parent) / package_names(name)["dist"]
    if root.exists():
        raise AQAError(f"{root} already exists; choose another name or --dir")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
