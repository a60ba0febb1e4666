"""Training and evaluation engine: the loop, checkpoints, run folders, reports and DDP.

The entry point is :func:`aqa_framework.engine.runner.run_training` (``aqa run``); models
trained by it are loaded back with :func:`aqa_framework.engine.inference.load_trained_model`
(``aqa evaluate`` and ``aqa predict``). Submodules import torch; this package does not.
"""
