"""Shared machinery of the example pipelines: CLI, trainer, methods, metrics (see docs/examples/training-loop.md)."""
