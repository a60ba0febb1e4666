"""Built-in datasets: ``mtl-aqa`` (release format), ``aqa-7`` and ``synthetic-diving``."""
