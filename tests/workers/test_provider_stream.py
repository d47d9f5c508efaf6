"""The event-loop provider streams against fake providers over real HTTP.

The fast path is checked against litellm's own streaming path on the same server: the same
request bytes reach the provider, and text, tool calls, finish reason, usage and error classes
come out the same, on the OpenAI, Anthropic and Gemini wire formats.
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fakes import (
    FakeProviderServer,
    Fault,
    ToolCall,
    anthropic_spec,
    gemini_spec,
    openai_spec,
)
from tests.fakes.behaviour import default_reply
from tokenwindow.errors import (
    ContextWindowExceededError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderRateLimitError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from tokenwindow.messages import Message
from tokenwindow.models import BUILTIN_MODELS, OFFLINE_MODEL, ModelSpec
from tokenwindow.settings import Settings, load_settings
from workers import http_stream
from workers.http_stream import close_pools
from workers.llm import CompletionUsage
from workers.provider_stream import (
    ProviderStream,
    StreamDelta,
    open_litellm_stream,
    open_stream,
)

MESSAGES: list[Message] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the weather in Lisbon and in Porto?"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TOOL_PARAMS: dict[str, Any] = {"tools": [WEATHER_TOOL], "tool_choice": "auto"}
LISBON = ToolCall("get_weather", {"city": "Lisbon", "unit": "celsius"}, id="call_lisbon")
PORTO = ToolCall("get_weather", {"city": "Porto", "unit": "celsius"}, id="call_porto")
APIS = ["openai", "anthropic", "gemini"]
SETTINGS = load_settings(provider_timeout_seconds=5)


def spec_for(api: str, server: FakeProviderServer) -> ModelSpec:
    if api == "openai":
        return openai_spec(server.openai_base)
    if api == "gemini":
        return gemini_spec(server.gemini_base)
    return anthropic_spec(server.anthropic_base)


@dataclass
class Result:
    text: str = ""
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    deltas: int = 0
    finish_reason: str | None = None
    usage: CompletionUsage | None = None

    def call_list(self, *, ids: bool) -> list[dict[str, Any]]:
        """Calls in index order; Gemini sends no ids, so litellm makes random ones."""
        return [
            {k: v for k, v in call.items() if ids or k != "id"}
            for _, call in sorted(self.calls.items())
        ]


async def drain(stream: ProviderStream) -> Result:
    result = Result()

    def take(delta: StreamDelta) -> None:
        result.deltas += 1
        result.text += delta.text
        for piece in delta.tool_calls:
            call = result.calls.setdefault(piece.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = call["id"] or piece.id
            call["name"] = call["name"] or piece.name
            call["arguments"] += piece.arguments

    await stream.pump(take)
    result.finish_reason, result.usage = stream.finish_reason, stream.usage
    return result


async def both_paths(
    server: FakeProviderServer, api: str, params: dict[str, Any], settings: Settings = SETTINGS
) -> tuple[Result, Result]:
    """(fast path, litellm's own path) for the same scripted reply, queued twice."""
    spec = spec_for(api, server)
    fast = await drain(await open_stream(spec, MESSAGES, params, settings=settings))
    reference = await drain(await open_litellm_stream(spec, MESSAGES, params, settings))
    return fast, reference


# --- equivalence with litellm -------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_text_reply_matches_litellm(api: str, fake_provider: FakeProviderServer) -> None:
    fast, reference = asyncio.run(both_paths(fake_provider, api, {"max_tokens": 200}))

    assert fast.text == reference.text
    assert fast.text.startswith("Fake reply to")
    assert fast.deltas > 5
    assert fast.finish_reason == reference.finish_reason == "stop"
    assert fast.usage == reference.usage
    assert fast.usage is not None and fast.usage.completion_tokens > 0
    first, second = fake_provider.requests
    assert first.body == second.body
    assert first.path == second.path


@pytest.mark.parametrize("api", APIS)
def test_cut_at_max_tokens_matches_litellm(api: str, fake_provider: FakeProviderServer) -> None:
    fake_provider.queue_replies("word " * 50, "word " * 50)
    fast, reference = asyncio.run(both_paths(fake_provider, api, {"max_tokens": 5}))

    assert fast.text == reference.text and ("word " * 50).startswith(fast.text)
    assert fast.finish_reason == reference.finish_reason == "length"
    assert fast.usage == reference.usage


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    ("text", "calls"),
    [
        pytest.param("", (LISBON,), id="one-call"),
        pytest.param("Checking both. ", (LISBON, PORTO), id="text-then-parallel-calls"),
    ],
)
def test_tool_calls_match_litellm(
    api: str, text: str, calls: tuple[ToolCall, ...], fake_provider: FakeProviderServer
) -> None:
    for _ in range(2):
        fake_provider.queue_tool_calls(*calls, text=text)
    fast, reference = asyncio.run(both_paths(fake_provider, api, TOOL_PARAMS))

    assert fast.text == reference.text == text
    expected = [
        {"name": c.name, "arguments": json.dumps(c.arguments)} for c in calls
    ]  # whole JSON, whatever the fragments
    assert fast.call_list(ids=False) == expected
    assert fast.call_list(ids=api != "gemini") == reference.call_list(ids=api != "gemini")
    assert all(call["id"] for call in fast.calls.values())
    assert fast.finish_reason == reference.finish_reason == "tool_calls"
    assert fast.usage == reference.usage


def test_openai_arguments_arrive_in_fragments(fake_provider: FakeProviderServer) -> None:
    fake_provider.queue_tool_calls(LISBON, PORTO)

    async def pieces() -> list[Any]:
        stream = await open_stream(
            spec_for("openai", fake_provider), MESSAGES, TOOL_PARAMS, settings=SETTINGS
        )
        deltas: list[StreamDelta] = []
        await stream.pump(deltas.append)
        return [piece for delta in deltas for piece in delta.tool_calls]

    received = asyncio.run(pieces())
    assert [p.index for p in received if p.id] == [0, 1]
    assert sum(1 for p in received if p.index == 0 and not p.id) > 3
    assert all(p.name is None for p in received if not p.id)


@pytest.mark.parametrize("api", APIS)
def test_chat_parameters_reach_the_provider_as_litellm_sends_them(
    api: str, fake_provider: FakeProviderServer
) -> None:
    params: dict[str, Any] = {
        **TOOL_PARAMS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "max_tokens": 300,
    }
    if api != "anthropic":
        params["seed"] = 7
    asyncio.run(both_paths(fake_provider, api, params))
    asyncio.run(both_paths(fake_provider, api, params))  # the mapping is kept per parameter set

    fast, reference, again, _ = fake_provider.requests
    assert fast.body == reference.body == again.body
    assert fast.tools == reference.tools and fast.tools
    assert fast.params == reference.params
    if api == "openai":
        assert fast.params["tool_choice"] == params["tool_choice"]
        assert fast.params["seed"] == 7
    elif api == "anthropic":
        assert fast.params["tool_choice"] == {"type": "tool", "name": "get_weather"}
        assert fast.params["stop_sequences"] == ["END"]
    else:
        assert fast.params["generationConfig"]["stop_sequences"] == ["END"]
        assert fast.params["toolConfig"]["functionCallingConfig"]["mode"] == "ANY"


AGENT_ROUND: list[Message] = [
    *MESSAGES,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{city.lower()}",
                "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
            }
            for city in ("Lisbon", "Porto")
        ],
    },
    {"role": "tool", "tool_call_id": "call_lisbon", "content": "21 C, sunny"},
    {"role": "tool", "tool_call_id": "call_porto", "content": "17 C, rain"},
]


@pytest.mark.parametrize("api", APIS)
def test_tool_results_are_sent_as_litellm_sends_them(
    api: str, fake_provider: FakeProviderServer
) -> None:
    fake_provider.queue_replies("Lisbon is warmer.", "Lisbon is warmer.")
    before = copy.deepcopy(AGENT_ROUND)

    async def main() -> tuple[Result, Result]:
        spec = spec_for(api, fake_provider)
        fast = await open_stream(spec, AGENT_ROUND, TOOL_PARAMS, settings=SETTINGS)
        reference = await open_litellm_stream(spec, AGENT_ROUND, TOOL_PARAMS, SETTINGS)
        return await drain(fast), await drain(reference)

    fast, reference = asyncio.run(main())
    assert fast.text == reference.text == "Lisbon is warmer."
    assert fast.finish_reason == reference.finish_reason == "stop"
    first, second = fake_provider.requests
    assert first.body == second.body
    assert "17 C, rain" in json.dumps(first.body)
    assert before == AGENT_ROUND  # the caller's messages are not edited


PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.mark.parametrize("api", APIS)
def test_image_parts_are_sent_as_litellm_sends_them(
    api: str, fake_provider: FakeProviderServer
) -> None:
    messages: list[Message] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What colour is this pixel?"},
                {"type": "image_url", "image_url": {"url": PIXEL}},
            ],
        }
    ]

    async def main() -> None:
        spec = spec_for(api, fake_provider)
        await drain(await open_stream(spec, messages, {}, settings=SETTINGS))
        await drain(await open_litellm_stream(spec, messages, {}, SETTINGS))

    asyncio.run(main())
    first, second = fake_provider.requests
    assert first.body == second.body
    assert "iVBORw0KGgo" in json.dumps(first.body)


# --- errors -------------------------------------------------------------------------------------
REFUSALS = [
    pytest.param(Fault.error(401), ProviderAuthError, id="401"),
    pytest.param(Fault.error(429, retry_after=7), ProviderRateLimitError, id="429"),
    pytest.param(Fault.error(500), ProviderUnavailableError, id="500"),
    pytest.param(Fault.error(503), ProviderUnavailableError, id="503"),
    pytest.param(Fault.error(529), ProviderUnavailableError, id="529"),
]


async def failure(
    server: FakeProviderServer, api: str, fault: Fault | None, *, fast: bool, timeout: float = 5
) -> tuple[ProviderError, int, bool]:
    """The error, the deltas received before it, and whether opening the stream raised."""
    if fault is not None:
        server.inject(fault)
    settings = load_settings(provider_timeout_seconds=timeout)
    spec = spec_for(api, server)
    received: list[StreamDelta] = []
    try:
        if fast:
            stream = await open_stream(spec, MESSAGES, {}, settings=settings)
        else:
            stream = await open_litellm_stream(spec, MESSAGES, {}, settings)
    except ProviderError as exc:
        return exc, 0, True
    try:
        await stream.pump(received.append)
    except ProviderError as exc:
        return exc, len(received), False
    raise AssertionError("the stream ended without an error")


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(("fault", "expected"), REFUSALS)
def test_refusals_raise_from_open_stream_like_litellm(
    api: str, fault: Fault, expected: type[ProviderError], fake_provider: FakeProviderServer
) -> None:
    error, _, at_open = asyncio.run(failure(fake_provider, api, fault, fast=True))
    reference, _, _ = asyncio.run(failure(fake_provider, api, fault, fast=False))

    assert at_open
    assert type(error) is type(reference) is expected
    assert error.retryable is expected.retryable
    assert error.retry_after == reference.retry_after == fault.retry_after
    assert error.__cause__ is None


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        pytest.param(
            Fault.error(400, message="API key not valid. Please pass a valid API key."),
            ProviderAuthError,
            id="400-bad-key",
        ),
        pytest.param(Fault.error(404), ProviderBadRequestError, id="404"),
        pytest.param(Fault.error(429, retry_after=37), ProviderRateLimitError, id="429-in-body"),
    ],
)
def test_gemini_refusals_are_classified_like_litellm(
    fault: Fault, expected: type[ProviderError], fake_provider: FakeProviderServer
) -> None:
    """Gemini answers a bad key with 400 and puts the retry delay in the body, not a header."""
    error, _, at_open = asyncio.run(failure(fake_provider, "gemini", fault, fast=True))
    reference, _, _ = asyncio.run(failure(fake_provider, "gemini", fault, fast=False))

    assert at_open
    assert type(error) is type(reference) is expected
    assert error.retry_after == reference.retry_after


@pytest.mark.parametrize("api", APIS)
def test_context_overflow_raises_from_open_stream(
    api: str, fake_provider: FakeProviderServer
) -> None:
    fake_provider.configure(context_limit=10)
    error, _, at_open = asyncio.run(failure(fake_provider, api, None, fast=True))
    reference, _, _ = asyncio.run(failure(fake_provider, api, None, fast=False))

    assert at_open
    assert type(error) is type(reference) is ContextWindowExceededError
    assert "10" in str(error)


@pytest.mark.parametrize("api", APIS)
def test_stream_broken_midway_is_retryable(api: str, fake_provider: FakeProviderServer) -> None:
    error, received, at_open = asyncio.run(
        failure(fake_provider, api, Fault.drop(after_chunks=3), fast=True)
    )
    reference, _, _ = asyncio.run(failure(fake_provider, api, Fault.drop(3), fast=False))

    assert not at_open and received == 3
    assert type(error) is type(reference) is ProviderUnavailableError
    assert error.retryable


@pytest.mark.parametrize("api", APIS)
def test_error_event_midway_is_retryable(api: str, fake_provider: FakeProviderServer) -> None:
    """A 200 stream that turns into the provider's error event (Anthropic's overloaded_error,
    an OpenAI-style error chunk, a google.rpc.Status) fails as a provider outage."""
    fault = Fault.error_event(529, after_chunks=3)
    error, received, at_open = asyncio.run(failure(fake_provider, api, fault, fast=True))
    reference, _, _ = asyncio.run(failure(fake_provider, api, fault, fast=False))

    assert not at_open and received == 3
    assert type(error) is type(reference) is ProviderUnavailableError
    assert error.retryable


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("after_chunks", [0, 2])
def test_stall_past_the_timeout_is_a_timeout(
    api: str, after_chunks: int, fake_provider: FakeProviderServer
) -> None:
    stall = Fault.hang(seconds=30, after_chunks=after_chunks)
    error, received, _ = asyncio.run(failure(fake_provider, api, stall, fast=True, timeout=1))

    assert type(error) is ProviderTimeoutError
    assert received == after_chunks
    assert error.retryable


def test_unreachable_provider_is_unavailable() -> None:
    with FakeProviderServer() as server:
        spec = openai_spec(server.openai_base)
    with pytest.raises(ProviderUnavailableError):
        asyncio.run(open_stream(spec, MESSAGES, {}, settings=SETTINGS))


# --- one loop, many streams -----------------------------------------------------------------------
def test_fifty_concurrent_streams_on_one_loop_are_all_exact() -> None:
    prompts = [f"stream number {n} says {'hello ' * (n % 5)}".strip() for n in range(50)]

    async def one(spec: ModelSpec, prompt: str) -> tuple[str, str]:
        messages: list[Message] = [{"role": "user", "content": prompt}]
        result = await drain(await open_stream(spec, messages, {}, settings=SETTINGS))
        assert result.finish_reason == "stop"
        return result.text, default_reply(list(messages))  # type: ignore[arg-type]

    async def main(server: FakeProviderServer) -> list[tuple[str, str]]:
        specs = [spec_for(api, server) for api in APIS]
        return await asyncio.gather(*(one(specs[n % 3], p) for n, p in enumerate(prompts)))

    with FakeProviderServer(token_delay=0.005) as server:
        results = asyncio.run(main(server))
        assert len(server.requests) == 50
    for got, expected in results:
        assert got == expected


@pytest.mark.parametrize("api", APIS)
def test_a_finished_stream_hands_its_connection_back(
    api: str, fake_provider: FakeProviderServer
) -> None:
    async def streams_one_after_another() -> None:
        spec = spec_for(api, fake_provider)
        for _ in range(5):
            await drain(await open_stream(spec, MESSAGES, {}, settings=SETTINGS))

    asyncio.run(streams_one_after_another())
    assert len({r.client_port for r in fake_provider.requests}) == 1


def test_refusals_and_concurrent_streams_reuse_kept_alive_connections(
    fake_provider: FakeProviderServer,
) -> None:
    """A refusal's body is read to its end, so its connection serves again; streams open at
    the same time each take a connection of their own."""
    fake_provider.inject(Fault.error(429, retry_after=1))
    spec = spec_for("openai", fake_provider)

    async def main() -> None:
        with pytest.raises(ProviderRateLimitError):
            await open_stream(spec, MESSAGES, {}, settings=SETTINGS)
        await drain(await open_stream(spec, MESSAGES, {}, settings=SETTINGS))
        fake_provider.configure(token_delay=0.02)  # still streaming when the next one opens
        opened = [await open_stream(spec, MESSAGES, {}, settings=SETTINGS) for _ in range(3)]
        await asyncio.gather(*(drain(stream) for stream in opened))

    asyncio.run(main())
    ports = [r.client_port for r in fake_provider.requests]
    assert ports[0] == ports[1], "the refused request's connection was reused"
    assert len(set(ports[2:])) == 3


def test_each_event_loop_has_its_own_connections(fake_provider: FakeProviderServer) -> None:
    spec = spec_for("openai", fake_provider)

    async def two_then_closed() -> None:
        await drain(await open_stream(spec, MESSAGES, {}, settings=SETTINGS))
        await drain(await open_stream(spec, MESSAGES, {}, settings=SETTINGS))
        close_pools()
        await drain(await open_stream(spec, MESSAGES, {}, settings=SETTINGS))

    asyncio.run(two_then_closed())
    asyncio.run(two_then_closed())
    ports = [r.client_port for r in fake_provider.requests]
    assert ports[0] == ports[1] and len(set(ports)) == 4


def test_closing_early_ends_the_stream(fake_provider: FakeProviderServer) -> None:
    fake_provider.configure(token_delay=0.02)

    async def main() -> tuple[list[StreamDelta], str]:
        spec = spec_for("openai", fake_provider)
        received: list[StreamDelta] = []
        async with await open_stream(spec, MESSAGES, {}, settings=SETTINGS) as stream:
            pumping = asyncio.ensure_future(stream.pump(received.append))
            while not received:
                await asyncio.sleep(0.01)
        with pytest.raises(ProviderUnavailableError):
            await pumping
        fake_provider.configure(token_delay=0)
        return received, (
            await drain(await open_stream(spec, MESSAGES, {}, settings=SETTINGS))
        ).text

    received, text = asyncio.run(main())
    assert 0 < len(received) < len(default_reply(MESSAGES).split())  # type: ignore[arg-type]
    assert text == default_reply(MESSAGES)  # type: ignore[arg-type]


def test_a_sink_that_raises_ends_its_stream_only(fake_provider: FakeProviderServer) -> None:
    class EnoughError(Exception):
        pass

    def refuse(delta: StreamDelta) -> None:
        raise EnoughError

    async def main() -> str:
        spec = spec_for("openai", fake_provider)
        with pytest.raises(EnoughError):
            await (await open_stream(spec, MESSAGES, {}, settings=SETTINGS)).pump(refuse)
        return (await drain(await open_stream(spec, MESSAGES, {}, settings=SETTINGS))).text

    assert asyncio.run(main()) == default_reply(MESSAGES)  # type: ignore[arg-type]


def test_a_cancelled_reader_leaves_the_loop_serving_others(
    fake_provider: FakeProviderServer,
) -> None:
    fake_provider.configure(token_delay=0.05)

    async def main() -> str:
        spec = spec_for("anthropic", fake_provider)

        async def read_forever() -> None:
            async with await open_stream(spec, MESSAGES, {}, settings=SETTINGS) as stream:
                await stream.pump(lambda delta: None)

        task = asyncio.create_task(read_forever())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        fake_provider.configure(token_delay=0)
        return (await drain(await open_stream(spec, MESSAGES, {}, settings=SETTINGS))).text

    assert asyncio.run(main()) == default_reply(MESSAGES)  # type: ignore[arg-type]


# --- fallback through litellm -----------------------------------------------------------------
def test_offline_model_streams_through_litellm_behind_the_same_interface() -> None:
    offline = next(spec for spec in BUILTIN_MODELS if spec.name == OFFLINE_MODEL)

    async def main() -> Result:
        return await drain(await open_stream(offline, MESSAGES, {}, settings=SETTINGS))

    result = asyncio.run(main())

    assert result.text.startswith("[offline model]")
    assert result.deltas > 10
    assert result.finish_reason == "stop"
    assert result.usage is not None and result.usage.completion_tokens > 0


def test_anthropic_response_format_goes_through_litellm(
    fake_provider: FakeProviderServer,
) -> None:
    """litellm emulates it with a hidden tool; its arguments come back as the text."""
    answer = ToolCall("json_tool_call", {"city": "Lisbon"})
    fake_provider.queue_tool_calls(answer)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    params = {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": schema},
        }
    }
    spec = spec_for("anthropic", fake_provider)

    async def main() -> Result:
        return await drain(await open_stream(spec, MESSAGES, params, settings=SETTINGS))

    result = asyncio.run(main())
    assert json.loads(result.text) == {"city": "Lisbon"}
    assert not result.calls


# --- proxies --------------------------------------------------------------------------------------
def test_a_url_the_environment_proxies_streams_through_litellm(
    fake_provider: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our connections do not speak to proxies: such a URL takes litellm's path (whose httpx
    client honours the proxy), and the reply is the same."""
    spec = openai_spec(fake_provider.openai_base)
    taken: list[str] = []
    monkeypatch.setattr(
        "workers.provider_stream.open_litellm_stream",
        lambda *args: taken.append("litellm") or open_litellm_stream(*args),
    )
    direct = asyncio.run(drain_open(spec))
    monkeypatch.setattr(http_stream, "environment_proxies", lambda: {"http": "http://proxy:3128"})
    through_proxy = asyncio.run(drain_open(spec))
    assert taken == ["litellm"]
    assert through_proxy.text == direct.text
    assert through_proxy.text.startswith("Fake reply to")


async def drain_open(spec: ModelSpec) -> Result:
    return await drain(await open_stream(spec, MESSAGES, {}, settings=SETTINGS))
