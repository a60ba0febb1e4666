"""mkdocs hooks: generate the reference pages from the code at build time.

The spec reference, CLI reference, component catalog, hook reference and API pages come from
:func:`docgen.generated_pages` (the package ``docs/docgen/``, next to this file, which is not
part of the installed ``aqa_framework``); they are added as in-memory files, so nothing
generated is ever written into ``docs/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
API_TITLE = "API reference"

if str(ROOT) not in sys.path:  # build from a checkout without installing it
    sys.path.insert(0, str(ROOT))

# mkdocs puts this folder on sys.path only while it loads the hooks: import docgen now.
import docgen  # noqa: E402


def on_config(config):
    """Resolve snippets from the repository root and list the API pages in the nav."""
    snippets = config.mdx_configs.setdefault("pymdownx.snippets", {})
    snippets["base_path"] = [str(ROOT)]
    api = [{"Overview": "api/index.md"}, *docgen.api_nav()]
    for i, item in enumerate(config.nav or []):
        if isinstance(item, dict) and API_TITLE in item:
            config.nav[i] = {API_TITLE: api}
    return config


def on_files(files, config):
    """Add the generated pages (replacing any file of the same name)."""
    for src_uri, content in docgen.generated_pages(root=ROOT).items():
        existing = files.get_file_from_path(src_uri)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, src_uri, content=content))
    return files
