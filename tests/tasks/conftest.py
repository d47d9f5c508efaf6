"""The tasks tests run against a real pipeline (see ``tests.pipeline``)."""

from tests.pipeline import Pipeline, pipeline
from tests.stack import (
    BIG_MODEL,
    CLAUDE_MODEL,
    TINY_MODEL,
    TINY_WINDOW,
    write_models_file,
)

__all__ = [
    "BIG_MODEL",
    "CLAUDE_MODEL",
    "TINY_MODEL",
    "TINY_WINDOW",
    "Pipeline",
    "pipeline",
    "write_models_file",
]
