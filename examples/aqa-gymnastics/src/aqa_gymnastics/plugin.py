"""The plugin module named by the ``aqa`` entry point: registers the gymnastics components.

Each hook imports its component module inside the function, so listing plugins stays cheap.
Names carry the entry-point name as prefix: ``gymnastics.<name>``.
"""

from __future__ import annotations

from aqa_framework import hookimpl


@hookimpl
def register_datasets(register):
    """Register the synthetic vault dataset."""
    from aqa_gymnastics.vault_dataset import VaultSyntheticDataset

    register(VaultSyntheticDataset)


@hookimpl
def register_heads(register):
    """Register the D + E scoring head."""
    from aqa_gymnastics.d_plus_e_head import DPlusEHead

    register(DPlusEHead)
