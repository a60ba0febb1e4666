"""Dataset-independent data utilities (reproducible subsets and validation splits)."""
