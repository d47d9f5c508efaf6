"""Provider faults through the whole pipeline: transient ones are retried to completion, an auth
error fails fast with a clear code, a context-length error is compressed harder and retried once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import scenarios
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.mark.parametrize("fault", sorted(scenarios.PROVIDER_FAULTS))
def test_provider_fault(fault: str, tmp_path: Path, private_redis: RedisServer) -> None:
    spec = scenarios.PROVIDER_FAULTS[fault]
    row = scenarios.provider_fault(tmp_path, private_redis.url(), fault, **spec)
    assert row.problems == []
    assert (row.lost, row.duplicated) == (0, 0)
    turns = spec.get("turns", 3)
    expected_code = scenarios.EXPECTED_FAILURES.get(fault)
    if expected_code:
        assert row.failed == turns and row.note == f"codes: {expected_code}"
        assert row.requests == turns, "an auth error is never retried"
    else:
        assert row.completed == turns
        assert row.requests == turns + len(spec["faults"]) + (turns if "context" in fault else 0)
