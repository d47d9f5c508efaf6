"""The gateway end to end: HTTP clients -> uvicorn -> client -> real worker -> fake provider."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth import OPEN_WARNING
from tests.fakes.behaviour import Fault, default_reply
from tests.gateway.conftest import GatewayProcess
from tests.pipeline import Pipeline
from tests.stack import BIG_MODEL
from tests.tokenwindow.test_counting import (
    COOKBOOK_MESSAGES,
    COOKBOOK_TOOL_MESSAGES,
    COOKBOOK_TOOLS,
)
from tokenwindow.counting import count_request

pytestmark = pytest.mark.slow


def session() -> str:
    return f"gw-{uuid.uuid4().hex[:10]}"


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def reply_to(text: str, messages: int = 1) -> str:
    """What the fake provider answers when ``text`` is the last of ``messages`` messages."""
    return default_reply([user("")] * (messages - 1) + [user(text)])


def sdk(gateway: GatewayProcess, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, **options)


def sse_events(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """Server-Sent Events as dicts of their fields (``data`` lines joined)."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if fields:
                yield fields
            fields = {}
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        fields[name] = f"{fields[name]}\n{value}" if name in fields else value


def metric_samples(
    gateway: GatewayProcess, path: str = "/metrics"
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``path`` through Prometheus's own parser, as {(sample name, labels): value}."""
    response = httpx.get(f"{gateway.url}{path}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


# --- OpenAI SDK -------------------------------------------------------------------------------
def test_openai_sdk_streams_a_reply_with_usage(gateway: GatewayProcess) -> None:
    sid = session()
    messages: list[Any] = [user("stream this to me please")]
    stream = sdk(gateway).chat.completions.create(
        model=BIG_MODEL,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Session-Id": sid},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply_to("stream this to me please")
    assert sum(bool(c.choices and c.choices[0].delta.content) for c in chunks) > 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    assert usage.prompt_tokens == count_request(BIG_MODEL, messages=messages)["tokens"]
    assert usage.completion_tokens == count_request(BIG_MODEL, text=text)["tokens"]
    transcript = httpx.get(f"{gateway.url}/sessions/{sid}/messages").json()
    assert transcript == [*messages, {"role": "assistant", "content": text}]


def test_openai_sdk_non_streaming_with_resent_history(gateway: GatewayProcess) -> None:
    """``X-Session-Id`` names the session; the resent history is not stored twice."""
    sid = session()
    client = sdk(gateway, default_headers={"X-Session-Id": sid})
    history: list[Any] = [{"role": "system", "content": "be brief"}, user("first question")]
    first = client.chat.completions.create(model=BIG_MODEL, messages=history, user="end-user-7")
    assert first.object == "chat.completion"
    answer = first.choices[0].message.content
    assert answer == reply_to("first question", messages=2)
    assert first.usage is not None and first.usage.total_tokens > 0
    assert first.choices[0].finish_reason == "stop"
    history += [{"role": "assistant", "content": answer}, user("second question")]
    raw = client.chat.completions.with_raw_response.create(model=BIG_MODEL, messages=history)
    second = raw.parse()
    assert raw.headers["x-session-id"] == sid
    assert f"chatcmpl-{raw.headers['x-turn-id']}" == second.id
    assert second.choices[0].message.content == reply_to("second question", messages=4)
    roles = [m["role"] for m in httpx.get(f"{gateway.url}/sessions/{sid}/messages").json()]
    assert roles == ["system", "user", "assistant", "user", "assistant"]


def test_user_is_an_end_user_and_no_header_is_stateless(
    gateway: GatewayProcess, pipeline: Pipeline
) -> None:
    client, other = sdk(gateway), session()
    pipeline.provider.reset()
    raw = client.chat.completions.with_raw_response.create(
        model=BIG_MODEL, messages=[user("hi")], user=other
    )
    assert "x-session-id" not in raw.headers
    assert raw.parse().choices[0].message.content == reply_to("hi")
    assert httpx.get(f"{gateway.url}/sessions/{other}").status_code == 404
    assert eventually(lambda: not stateless_sessions(gateway)), "the throwaway session is gone"


def stateless_sessions(gateway: GatewayProcess) -> list[str]:
    listed = httpx.get(f"{gateway.url}/sessions").json()
    return [s["session_id"] for s in listed if s["session_id"].startswith("stateless-")]


def eventually(check: Callable[[], bool], seconds: float = 20.0) -> bool:
    """Poll ``check`` until it holds (work that finishes after the answer, not a timing)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_openai_sdk_sees_errors_in_openai_shape(
    gateway: GatewayProcess, pipeline: Pipeline
) -> None:
    client = sdk(gateway)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="fake-gpt-4oo", messages=[user("x")])
    assert "fake-gpt-4o" in missing.value.message
    with pytest.raises(openai.BadRequestError) as invalid:
        client.chat.completions.create(
            model=BIG_MODEL,
            messages=[{"role": "robot", "content": "x"}],  # type: ignore[misc,list-item]
        )
    assert "messages.0.role" in invalid.value.message
    pipeline.provider.reset()
    pipeline.provider.inject(Fault.error(401))
    stream = client.chat.completions.create(model=BIG_MODEL, messages=[user("x")], stream=True)
    with pytest.raises(openai.APIError) as failed:
        list(stream)
    assert isinstance(failed.value.body, dict) and failed.value.body["code"] == "provider_auth"


# --- the original API over plain HTTP ---------------------------------------------------------
def test_plain_sse_stream_resumes_with_last_event_id(
    gateway: GatewayProcess, pipeline: Pipeline
) -> None:
    pipeline.provider.reset()
    pipeline.provider.configure(token_delay=0.02)
    sid, said = session(), " ".join(["word"] * 30)
    body = {"session_id": sid, "messages": [user(said)], "stream": True}
    try:
        with httpx.stream("POST", f"{gateway.url}/chat/completions", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            turn_id = response.headers["x-turn-id"]
            first = []
            for event in sse_events(response.iter_lines()):
                first.append(event)
                if sum(e["event"] == "token" for e in first) == 3:
                    break  # the connection drops here
        resumed = httpx.stream(
            "GET",
            f"{gateway.url}/sessions/{sid}/events",
            params={"turn_id": turn_id},
            headers={"Last-Event-ID": first[-1]["id"]},
            timeout=30,
        )
        with resumed as response:
            rest = list(sse_events(response.iter_lines()))
    finally:
        pipeline.provider.configure(token_delay=0.0)
    events = [json.loads(e["data"]) for e in first + rest]
    assert all(e["id"] == json.loads(e["data"])["id"] for e in first + rest)
    assert len({e["id"] for e in events}) == len(events), "no event twice"
    assert events[0]["type"] == "turn_queued" and events[-1]["type"] == "turn_completed"
    text = "".join(e["text"] for e in events if e["type"] == "token")
    assert text == reply_to(said)


def test_plain_post_answers_once_done(gateway: GatewayProcess) -> None:
    sid = session()
    body = {"session_id": sid, "messages": [user("hello")], "model": BIG_MODEL}
    answer = httpx.post(f"{gateway.url}/chat/completions", json=body, timeout=30).json()
    assert answer["content"] == reply_to("hello")
    assert answer["session_id"] == sid and answer["model"] == BIG_MODEL
    assert answer["finish_reason"] == "stop" and answer["usage"]["completion_tokens"] > 0
    listed = httpx.get(f"{gateway.url}/sessions").json()
    assert sid in [s["session_id"] for s in listed]
    assert httpx.get(f"{gateway.url}/sessions/{sid}").json()["messages"] == 2
    assert httpx.delete(f"{gateway.url}/sessions/{sid}").status_code == 204
    assert httpx.get(f"{gateway.url}/sessions/{sid}").status_code == 404


def test_validation_names_the_field(gateway: GatewayProcess) -> None:
    bad_id = {"session_id": "bad*id", "messages": [user("x")]}
    response = httpx.post(f"{gateway.url}/chat/completions", json=bad_id)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "session_id"
    no_content = {"session_id": session(), "messages": [{"role": "user"}]}
    response = httpx.post(f"{gateway.url}/chat/completions", json=no_content)
    assert response.status_code == 400
    assert "messages[0].content" in response.json()["error"]["message"]


def test_an_offset_past_redis_range_is_a_400_naming_it(gateway: GatewayProcess) -> None:
    response = httpx.get(f"{gateway.url}/sessions", params={"offset": 2**63})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "offset"


@pytest.mark.parametrize(
    ("model", "body", "expected"),
    [
        ("gpt-4", {"messages": COOKBOOK_MESSAGES}, 129),
        ("gpt-4o", {"messages": COOKBOOK_MESSAGES}, 124),
        ("gpt-4o-mini", {"messages": COOKBOOK_TOOL_MESSAGES, "tools": COOKBOOK_TOOLS}, 101),
    ],
)
def test_tokens_count_matches_published_counts(
    gateway: GatewayProcess, model: str, body: dict[str, Any], expected: int
) -> None:
    response = httpx.post(f"{gateway.url}/tokens/count", json={"model": model, **body})
    assert response.status_code == 200
    assert response.json() == count_request(model, **body)
    assert response.json()["tokens"] == expected and response.json()["exact"] is True


def test_models_in_both_shapes(gateway: GatewayProcess) -> None:
    names = {m["name"] for m in httpx.get(f"{gateway.url}/models").json()}
    assert {BIG_MODEL, "gpt-4o"} <= names
    listed = {m.id for m in sdk(gateway).models.list()}
    assert listed == names


# --- operations -------------------------------------------------------------------------------
def test_metrics_parse_and_move_as_turns_are_served(gateway: GatewayProcess) -> None:
    completed = ("tokenwindow_turns_completed_total", ())
    route = (("method", "POST"), ("route", "/v1/chat/completions"), ("status", "200"))
    served = ("tokenwindow_gateway_requests_total", route)
    before, shared_before = metric_samples(gateway), metric_samples(gateway, "/metrics/shared")
    sdk(gateway).chat.completions.create(model=BIG_MODEL, messages=[user("count me")])
    after, shared = metric_samples(gateway), metric_samples(gateway, "/metrics/shared")
    assert shared[completed] == shared_before[completed] + 1
    assert after[served] == before.get(served, 0) + 1
    assert ("tokenwindow_first_token_latency_seconds_count", ()) in shared
    assert ("tokenwindow_queue_depth", (("queue", "completions"),)) in shared
    # Per process and Redis-wide figures apart: summing /metrics over replicas counts once.
    assert not any(name.startswith("tokenwindow_gateway_") for name, _ in shared)
    assert completed not in after


def test_gateway_logs_in_the_services_logfmt(gateway: GatewayProcess) -> None:
    httpx.get(f"{gateway.url}/healthz", timeout=10)
    lines = gateway.log.splitlines()
    assert any(line.startswith("ts=") and 'msg="Started server process' in line for line in lines)
    access = [line for line in lines if "logger=uvicorn.access" in line]
    assert access and all(line.startswith("ts=") for line in access)
    # uvicorn's own format ("INFO:     ...") would mean a line skipped the service's format.
    assert not [line for line in lines if line.split(":", 1)[0] in ("INFO", "WARNING", "ERROR")]


def test_health_and_open_gateway_warning(gateway: GatewayProcess) -> None:
    health = httpx.get(f"{gateway.url}/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json()["redis"] is True and health.json()["workers"]
    assert health.json()["open"] is True
    assert OPEN_WARNING in gateway.log
