"""The ``aqa`` command line (typer). Command modules import heavy libraries lazily."""
