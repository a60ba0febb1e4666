"""aqa-gymnastics: an aqa-framework plugin that scores gymnastics vaults (D + E - penalty)."""

__version__ = "0.1.0"
