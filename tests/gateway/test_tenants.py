"""Tenants by API key: each sees, follows, reads and deletes only its own sessions."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.auth import NO_KEYS
from tests.gateway.conftest import GatewayProcess
from tests.gateway.test_gateway import sse_events
from tests.pipeline import Pipeline
from tests.stack import BIG_MODEL

pytestmark = [pytest.mark.slow, pytest.mark.long]

KEYS = {"acme": "key-acme", "globex": "key-globex"}
ADMIN_KEY = "key-admin"


@pytest.fixture(scope="module")
def tenants(
    pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    env = {
        **pipeline.env,
        "TOKENWINDOW_GATEWAY_API_KEYS": ",".join(f"{t}:{k}" for t, k in KEYS.items()),
        "TOKENWINDOW_GATEWAY_ADMIN_KEYS": ADMIN_KEY,
    }
    process = GatewayProcess(env, tmp_path_factory.mktemp("tenants") / "gateway.log").start()
    try:
        yield process
    finally:
        process.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def turn(gateway: GatewayProcess, key: str, sid: str, text: str) -> str:
    """One turn of a session through the OpenAI SDK; returns its turn id."""
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=BIG_MODEL,
        messages=[{"role": "user", "content": text}],
        extra_headers={"X-Session-Id": sid},
    )
    assert raw.headers["x-session-id"] == sid
    return str(raw.headers["x-turn-id"])


def events_until(gateway: GatewayProcess, key: str, sid: str, turn_id: str) -> list[Any]:
    """A session's events replayed from the start, read until ``turn_id`` completes."""
    seen = []
    url = f"{gateway.url}/sessions/{sid}/events"
    params = {"last_event_id": "0"}
    with httpx.stream("GET", url, params=params, headers=auth(key), timeout=30) as response:
        for item in sse_events(response.iter_lines()):
            if "data" not in item:
                continue
            event = json.loads(item["data"])
            seen.append(event)
            if event["turn_id"] == turn_id and event["type"] == "turn_completed":
                break
    return seen


def test_tenants_cannot_see_or_touch_each_other(tenants: GatewayProcess) -> None:
    url, tag = tenants.url, uuid.uuid4().hex[:6]
    shared, private = f"shared-{tag}", f"private-{tag}"
    acme_turn = turn(tenants, KEYS["acme"], shared, "acme speaking")
    turn(tenants, KEYS["acme"], private, "acme only")
    globex_turn = turn(tenants, KEYS["globex"], shared, "globex speaking")
    acme, globex, admin = auth(KEYS["acme"]), auth(KEYS["globex"]), auth(ADMIN_KEY)

    def listed(headers: dict[str, str]) -> set[str]:
        return {s["session_id"] for s in httpx.get(f"{url}/sessions", headers=headers).json()}

    assert {shared, private} <= listed(acme)
    assert shared in listed(globex) and private not in listed(globex)
    assert {f"acme@{shared}", f"acme@{private}", f"globex@{shared}"} <= listed(admin)

    # The same name is two sessions: each tenant reads only its own turn.
    def transcript(headers: dict[str, str], sid: str) -> httpx.Response:
        return httpx.get(f"{url}/sessions/{sid}/messages", headers=headers)

    assert transcript(acme, shared).json()[0]["content"] == "acme speaking"
    assert transcript(globex, shared).json()[0]["content"] == "globex speaking"
    assert transcript(admin, f"acme@{shared}").json()[0]["content"] == "acme speaking"

    # Another tenant's session is absent by every route.
    assert httpx.get(f"{url}/sessions/{private}", headers=globex).status_code == 404
    assert transcript(globex, private).status_code == 404
    assert httpx.delete(f"{url}/sessions/{private}", headers=globex).status_code == 404
    assert httpx.get(f"{url}/sessions/{private}", headers=acme).status_code == 200
    summary = httpx.get(f"{url}/sessions/{shared}", headers=acme).json()
    assert summary["session_id"] == shared

    followed = events_until(tenants, KEYS["globex"], shared, globex_turn)
    assert {e["turn_id"] for e in followed} == {globex_turn}
    assert {e["session_id"] for e in followed} == {shared}
    assert acme_turn not in {
        e["turn_id"] for e in events_until(tenants, ADMIN_KEY, f"globex@{shared}", globex_turn)
    }

    # The native route is namespaced the same way.
    body = {"session_id": private, "messages": [{"role": "user", "content": "hello"}]}
    answer = httpx.post(f"{url}/chat/completions", json=body, headers=globex, timeout=30)
    assert answer.status_code == 200 and answer.json()["session_id"] == private
    assert len(transcript(acme, private).json()) == 2, "acme's session is untouched"

    assert httpx.delete(f"{url}/sessions/{private}", headers=acme).status_code == 204
    assert httpx.get(f"{url}/sessions/{private}", headers=acme).status_code == 404
    assert httpx.get(f"{url}/sessions/{private}", headers=globex).status_code == 200


def test_keys_are_required_and_checked(tenants: GatewayProcess) -> None:
    assert httpx.get(f"{tenants.url}/sessions").status_code == 401
    wrong = httpx.get(f"{tenants.url}/sessions", headers=auth("key-acm"))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    anthropic_style = httpx.get(f"{tenants.url}/v1/models", headers={"x-api-key": KEYS["acme"]})
    assert anthropic_style.status_code == 200
    assert httpx.get(f"{tenants.url}/healthz", timeout=10).json()["open"] is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, NO_KEYS),
        ({"TOKENWINDOW_GATEWAY_API_KEYS": "bad tenant:key"}, "TOKENWINDOW_GATEWAY_API_KEYS"),
    ],
)
def test_an_open_or_misconfigured_gateway_refuses_to_start(
    pipeline: Pipeline, tmp_path: Any, env: dict[str, str], expected: str
) -> None:
    process = GatewayProcess({**pipeline.env, **env}, tmp_path / "gateway.log")
    with pytest.raises(RuntimeError, match="gateway exited"):
        process.start()
    assert expected in process.log
