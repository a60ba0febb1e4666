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


@hookimpl
def register_callbacks(register):
    """Register the podium callback (writes gymnastics/podium.json at the end of a run)."""
    from aqa_gymnastics.callbacks import PodiumCallback

    register(PodiumCallback)


@hookimpl
def register_commands(register):
    """Add ``aqa gymnastics`` (imported only when it runs)."""
    register("gymnastics", "aqa_gymnastics.cli:app", help="Gymnastics tools: podium of a run.")
