"""Built-in task heads: score regression, factorized classification and captioning."""
