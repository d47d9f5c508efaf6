"""The tasks tests run against a real pipeline (see ``tests.pipeline``)."""

from tests.pipeline import (
    BIG_MODEL,
    CLAUDE_MODEL,
    TINY_MODEL,
    TINY_WINDOW,
    Pipeline,
    models_file,
    pipeline,
)

__all__ = [
    "BIG_MODEL",
    "CLAUDE_MODEL",
    "TINY_MODEL",
    "TINY_WINDOW",
    "Pipeline",
    "models_file",
    "pipeline",
]
