"""Experiment tools: sweeps, layer probes, feature extraction and plugin scaffolding."""
