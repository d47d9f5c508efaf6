"""Keys, request size and overload, on a gateway that no worker serves.

With no worker on the test database every turn stays queued, so the queue grows past the
admission limit and no worker answers the health check. This module starts no pipeline, so no
worker of another module runs meanwhile.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from gateway.auth import OPEN_WARNING
from tests.gateway.conftest import GatewayProcess, workerless

pytestmark = pytest.mark.slow

API_KEYS = ("key-one", "key-two")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway with API keys of the default tenant and small limits."""
    env = {
        "TOKENWINDOW_GATEWAY_API_KEYS": ",".join(API_KEYS),
        "TOKENWINDOW_MAX_QUEUE_DEPTH": "1",
        "TOKENWINDOW_MAX_REQUEST_BYTES": "4096",
    }
    with workerless(env, tmp_path_factory.mktemp("secured") / "gateway.log") as process:
        yield process


def session() -> str:
    return f"lim-{uuid.uuid4().hex[:10]}"


def test_api_keys_size_limit_and_overload(secured: GatewayProcess) -> None:
    url = secured.url
    assert httpx.get(f"{url}/models").status_code == 401
    wrong = httpx.get(f"{url}/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    auth = {"Authorization": f"Bearer {API_KEYS[1]}"}
    assert httpx.get(f"{url}/models", headers=auth).status_code == 200
    assert OPEN_WARNING not in secured.log

    huge = {"session_id": session(), "messages": [{"role": "user", "content": "x" * 5000}]}
    assert httpx.post(f"{url}/chat/completions", json=huge, headers=auth).status_code == 413
    too_large = httpx.post(f"{url}/v1/messages", json={"pad": "x" * 5000}, headers=auth)
    assert too_large.status_code == 413 and too_large.json()["type"] == "error"

    codes = []
    for _ in range(3):
        body = {
            "session_id": session(),
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
        }
        with httpx.stream(
            "POST", f"{url}/chat/completions", json=body, headers=auth, timeout=30
        ) as answer:
            codes.append(answer.status_code)
            retry_after = answer.headers.get("retry-after")
    assert codes == [200, 200, 503] and retry_after is not None and int(retry_after) > 0

    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 503
