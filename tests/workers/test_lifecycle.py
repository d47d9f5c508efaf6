"""A worker loads what its queues need before its first task, and nothing more."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.forkserver import ROOT
from tokenwindow.constants import QUEUE_COMPLETIONS, QUEUE_FAST, QUEUE_SUMMARIZATION

pytestmark = pytest.mark.long

BUILD_WORKER = """
import sys
from workers.app import app
worker = app.WorkController(queues={queues!r}, pool_cls="solo", hostname="lifecycle@test")
print("litellm" in sys.modules, sorted(worker.app.amqp.queues.consume_from))
"""


def loads_litellm(queues: list[str]) -> bool:
    """Build a worker (which runs ``worker_init``) in a fresh interpreter; did it load litellm?"""
    done = subprocess.run(
        [sys.executable, "-c", BUILD_WORKER.format(queues=queues)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded, _, consumed = done.stdout.strip().partition(" ")
    assert consumed == repr(sorted(queues)), done.stdout
    return loaded == "True"


@pytest.mark.parametrize(
    ("queues", "expected"),
    [([QUEUE_FAST], False), ([QUEUE_COMPLETIONS], True), ([QUEUE_SUMMARIZATION], True)],
)
def test_litellm_is_loaded_only_where_tasks_call_providers(
    queues: list[str], expected: bool
) -> None:
    assert loads_litellm(queues) is expected
