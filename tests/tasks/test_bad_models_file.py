"""A models file with errors: the CLI exits 2 and a worker fails each turn, naming the field.

Its own module, so no other test's worker (with a valid models file) is consuming the queues.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import TEST_REDIS_URL
from tests.harness import WorkerProcess
from tests.tasks.test_bad_input import WAIT, good_turn, run, session
from tokenwindow.client import TokenManagementClient
from tokenwindow.constants import TASK_INGEST_TURN
from tokenwindow.producer import TaskProducer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_models_file_with_errors(tmp_path: Path, redis_client: redis.Redis) -> None:
    """The CLI exits 2 naming the entry and field; a worker fails each turn with that message."""
    bad = tmp_path / "models.yaml"
    bad.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": "broken",
                        "litellm_params": {"model": "openai/gpt-4o"},
                        "model_info": {"max_input_tokens": "lots"},
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    env = {"REDIS_URL": TEST_REDIS_URL, "TOKENWINDOW_MODELS_FILE": str(bad)}
    cli = subprocess.run(  # noqa: PLW1510 (the exit code is the assertion)
        [sys.executable, "-m", "tokenwindow.cli", "models"],
        env={**WorkerProcess(env).env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 2
    assert "model_list[0].model_info.max_input_tokens" in cli.stderr
    worker = WorkerProcess(env, log_path=tmp_path / "worker.log").start()
    try:
        producer = TaskProducer(TEST_REDIS_URL)
        sid = session()
        producer.send(TASK_INGEST_TURN, good_turn(sid, "t1"))
        producer.close()

        async def scenario() -> dict[str, Any]:
            async with TokenManagementClient() as client:
                return await client.wait_for_turn(sid, "t1", timeout=WAIT)

        failed = run(scenario())
    finally:
        worker.stop()
    assert failed["code"] == "configuration_error"
    assert "max_input_tokens" in failed["message"]
