"""Provider faults through the whole pipeline: transient ones are retried to completion, an auth
error fails fast with a clear code, a context-length error is compressed harder and retried once.

The faults take turns on one stack (its own Redis, fake provider and worker), as ``make chaos``
runs them: each starts once the last one's tasks are done, with the fake reset.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos import scenarios
from tests.fakes.server import FakeProviderServer
from tests.redis_server import RedisServer
from tests.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def fault_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack[FakeProviderServer], str]]:
    with RedisServer() as server:
        url = server.url()
        with scenarios.provider_fault_stack(tmp_path_factory.mktemp("faults"), url) as s:
            yield s, url


@pytest.mark.parametrize("fault", sorted(scenarios.PROVIDER_FAULTS))
def test_provider_fault(fault: str, fault_stack: tuple[Stack[FakeProviderServer], str]) -> None:
    spec = scenarios.PROVIDER_FAULTS[fault]
    row = scenarios.provider_fault(*fault_stack, fault, **spec)
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
