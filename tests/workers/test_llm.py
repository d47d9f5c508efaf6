"""The LLM gateway against fake providers over real HTTP, through litellm's own code path."""

from __future__ import annotations

import email.utils
import json
import subprocess
import sys
import time
from typing import Any

import pytest
from pydantic import SecretStr

from strategies.summary import SUMMARY_PROMPT
from tests.fakes import (
    FakeProviderProcess,
    FakeProviderServer,
    Fault,
    ToolCall,
    anthropic_spec,
    gemini_spec,
    openai_spec,
)
from tests.fakes.behaviour import count_prompt, default_reply
from tests.fakes.remote import PROJECT_ROOT
from tokenwindow.errors import (
    ContextWindowExceededError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderRateLimitError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    SummarizerError,
)
from tokenwindow.messages import Message
from tokenwindow.models import BUILTIN_MODELS, OFFLINE_MODEL, ModelSpec
from tokenwindow.settings import load_settings
from workers import llm

SECRET = "the vault code is 4471 and the courier is Marisol Quintero"
MESSAGES: list[Message] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Where do we meet?"},
    {"role": "assistant", "content": "At the harbour."},
    {"role": "user", "content": SECRET},
]
OFFLINE = next(spec for spec in BUILTIN_MODELS if spec.name == OFFLINE_MODEL)
APIS = ["openai", "anthropic", "gemini"]


def spec_for(api: str, server: FakeProviderServer | FakeProviderProcess) -> ModelSpec:
    if api == "openai":
        return openai_spec(server.openai_base)
    if api == "gemini":
        return gemini_spec(server.gemini_base)
    return anthropic_spec(server.anthropic_base)


def as_sent(api: str) -> list[dict[str, Any]]:
    """MESSAGES as the provider receives them: litellm folds the system prompt into the first
    user turn for Gemini models missing from its model map, as gemini-1.5-pro now is."""
    sent: list[dict[str, Any]] = [{"role": m["role"], "content": m["content"]} for m in MESSAGES]
    if api != "gemini":
        return sent
    system, first, *rest = sent
    return [{"role": "user", "content": f"{system['content']}{first['content']}"}, *rest]


def sampling(api: str, body: dict[str, Any]) -> dict[str, Any]:
    """Where each API carries max_tokens and temperature (Gemini nests them)."""
    if api == "gemini":
        config = body["generationConfig"]
        return {"max_tokens": config["max_output_tokens"], "temperature": config["temperature"]}
    return {"max_tokens": body["max_tokens"], "temperature": body["temperature"]}


def call(spec: ModelSpec, *, stream: bool, timeout: float | None = None) -> str:
    if stream:
        return "".join(llm.stream_completion(spec, MESSAGES, max_tokens=200, timeout=timeout))
    return llm.generate(spec, MESSAGES, max_tokens=200, timeout=timeout).text


# --- happy paths ---------------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_complete_returns_the_reply_and_sends_the_request(
    api: str, fake_provider: FakeProviderServer
) -> None:
    text = llm.generate(
        spec_for(api, fake_provider), MESSAGES, max_tokens=200, temperature=0.2
    ).text

    assert text == default_reply(as_sent(api))
    [request] = fake_provider.requests
    assert request.api == api
    assert request.stream is False
    assert request.api_key == "sk-fake-test-key"
    assert sampling(api, request.body) == {"max_tokens": 200, "temperature": 0.2}
    assert request.prompt_tokens == count_prompt(as_sent(api))


@pytest.mark.parametrize("api", APIS)
def test_stream_yields_deltas_then_usage(api: str, fake_provider: FakeProviderServer) -> None:
    stream = llm.stream_completion(spec_for(api, fake_provider), MESSAGES, max_tokens=200)
    deltas = list(stream)

    assert len(deltas) > 5
    assert "".join(deltas) == default_reply(as_sent(api))
    assert stream.finish_reason == "stop"
    [request] = fake_provider.requests
    assert request.stream is True
    assert stream.usage is not None
    assert stream.usage.prompt_tokens == request.prompt_tokens
    assert stream.usage.completion_tokens > 0


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.mark.parametrize("api", APIS)
def test_generate_returns_parallel_tool_calls(api: str, fake_provider: FakeProviderServer) -> None:
    fake_provider.queue_tool_calls(
        ToolCall("get_weather", {"city": "Lisbon"}), ToolCall("get_weather", {"city": "Porto"})
    )
    result = llm.generate(
        spec_for(api, fake_provider), MESSAGES, params={"tools": [WEATHER_TOOL], "top_p": 0.5}
    )

    assert result.finish_reason == "tool_calls"
    assert [c["function"]["name"] for c in result.tool_calls] == ["get_weather"] * 2
    assert [json.loads(c["function"]["arguments"]) for c in result.tool_calls] == [
        {"city": "Lisbon"},
        {"city": "Porto"},
    ]
    assert all(c["id"] for c in result.tool_calls)
    [request] = fake_provider.requests
    assert request.tools and "get_weather" in json.dumps(request.tools)
    assert "0.5" in json.dumps(request.params)


def test_anthropic_request_goes_to_the_messages_route(fake_provider: FakeProviderServer) -> None:
    llm.generate(anthropic_spec(fake_provider.anthropic_base), MESSAGES, max_tokens=50)

    [request] = fake_provider.requests
    assert request.path == "/v1/messages"
    assert request.body["system"]
    assert all(m["role"] != "system" for m in request.body["messages"])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_gemini_request_goes_to_the_generate_content_route(
    fake_provider: FakeProviderServer, stream: bool
) -> None:
    call(gemini_spec(fake_provider.gemini_base), stream=stream)

    [request] = fake_provider.requests
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    assert request.path == f"/v1beta/models/gemini-1.5-pro:{method}"
    assert request.model == "gemini-1.5-pro"
    assert request.api_key == "sk-fake-test-key"
    assert request.body["contents"][0]["parts"][0] == {"text": MESSAGES[0]["content"]}
    assert [c["role"] for c in request.body["contents"]] == ["user", "model", "user"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_gemini_max_tokens_cut_is_reported(fake_provider: FakeProviderServer, stream: bool) -> None:
    fake_provider.queue_replies("word " * 50)
    spec = gemini_spec(fake_provider.gemini_base)
    if stream:
        streamed = llm.stream_completion(spec, MESSAGES, max_tokens=5)
        text, finish, usage = "".join(streamed), streamed.finish_reason, streamed.usage
    else:
        result = llm.generate(spec, MESSAGES, max_tokens=5)
        text, finish, usage = result.text, result.finish_reason, result.usage

    assert text and ("word " * 50).startswith(text)
    assert finish == "length"
    assert usage is not None and 0 < usage.completion_tokens <= 5


def test_canned_replies_are_served_in_order(fake_provider: FakeProviderServer) -> None:
    fake_provider.queue_replies("first canned", "second canned")
    spec = openai_spec(fake_provider.openai_base)

    assert llm.generate(spec, MESSAGES).text == "first canned"
    assert "".join(llm.stream_completion(spec, MESSAGES)) == "second canned"
    assert llm.generate(spec, MESSAGES).text == default_reply(as_sent("openai"))


def test_max_tokens_cut_is_reported(fake_provider: FakeProviderServer) -> None:
    fake_provider.queue_replies("word " * 50)
    result = llm.generate(openai_spec(fake_provider.openai_base), MESSAGES, max_tokens=5)

    assert result.finish_reason == "length"
    assert result.usage is not None and result.usage.completion_tokens <= 5


def test_key_comes_from_settings_when_the_spec_has_none(
    fake_provider: FakeProviderServer,
) -> None:
    spec = ModelSpec(
        "bare", "openai/gpt-4o", "openai", 128_000, 4_096, "o200k_base", True,
        api_base=fake_provider.openai_base,
    )  # fmt: skip
    settings = load_settings(openai_api_key=SecretStr("sk-from-settings"))
    llm.generate(spec, MESSAGES, settings=settings)

    assert fake_provider.requests[0].api_key == "sk-from-settings"


# --- error mapping -------------------------------------------------------------------------------
ERROR_CASES = [
    pytest.param(Fault.error(429, retry_after=7), ProviderRateLimitError, id="429"),
    pytest.param(Fault.error(500), ProviderUnavailableError, id="500"),
    pytest.param(Fault.error(503), ProviderUnavailableError, id="503"),
    pytest.param(Fault.error(529), ProviderUnavailableError, id="529"),
    pytest.param(Fault.error(401), ProviderAuthError, id="401"),
    pytest.param(Fault.error(403), ProviderAuthError, id="403"),
    pytest.param(Fault.error(400), ProviderBadRequestError, id="400"),
    pytest.param(Fault.drop(after_chunks=2), ProviderUnavailableError, id="dropped"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(("fault", "expected"), ERROR_CASES)
def test_provider_failures_map_to_the_error_tree(
    fake_provider: FakeProviderServer,
    api: str,
    stream: bool,
    fault: Fault,
    expected: type[ProviderError],
) -> None:
    fake_provider.inject(fault)
    with pytest.raises(ProviderError) as caught:
        call(spec_for(api, fake_provider), stream=stream)

    assert type(caught.value) is expected
    assert caught.value.retryable is expected.retryable
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None
    if fault.retry_after is not None:
        assert caught.value.retry_after == fault.retry_after


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        pytest.param(
            Fault.error(400, message="API key not valid. Please pass a valid API key."),
            ProviderAuthError,
            id="400-bad-key",
        ),
        pytest.param(Fault.error(404), ProviderBadRequestError, id="404"),
    ],
)
def test_gemini_specific_refusals(
    fake_provider: FakeProviderServer, stream: bool, fault: Fault, expected: type[ProviderError]
) -> None:
    """Gemini answers a bad API key with 400 INVALID_ARGUMENT, not 401."""
    fake_provider.inject(fault)
    with pytest.raises(ProviderError) as caught:
        call(gemini_spec(fake_provider.gemini_base), stream=stream)

    assert type(caught.value) is expected


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_gemini_retry_delay_comes_from_the_error_body(
    fake_provider: FakeProviderServer, stream: bool
) -> None:
    """Gemini sends no Retry-After header; the delay is a RetryInfo detail in the body."""
    fake_provider.inject(Fault.error(429, retry_after=37))
    with pytest.raises(ProviderRateLimitError) as caught:
        call(gemini_spec(fake_provider.gemini_base), stream=stream)

    assert caught.value.retry_after == 37
    assert "exceeded your current quota" in str(caught.value)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_context_overflow_is_not_retryable(
    fake_provider: FakeProviderServer, api: str, stream: bool
) -> None:
    fake_provider.configure(context_limit=20)
    with pytest.raises(ContextWindowExceededError) as caught:
        call(spec_for(api, fake_provider), stream=stream)

    assert not caught.value.retryable
    assert "20" in str(caught.value)
    assert fake_provider.max_prompt_tokens > 20


def test_plain_400_mentioning_context_length_is_an_overflow(
    fake_provider: FakeProviderServer,
) -> None:
    fake_provider.inject(Fault.error(400, message="Input is too long for requested model."))
    with pytest.raises(ContextWindowExceededError):
        llm.generate(openai_spec(fake_provider.openai_base), MESSAGES)


@pytest.mark.parametrize("api", APIS)
def test_stream_broken_midway_is_retryable_after_partial_output(
    fake_provider: FakeProviderServer, api: str
) -> None:
    fake_provider.inject(Fault.drop(after_chunks=3))
    received = []
    with pytest.raises(ProviderUnavailableError) as caught:
        for delta in llm.stream_completion(spec_for(api, fake_provider), MESSAGES):
            received.append(delta)

    assert len(received) == 3
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("api", "stream", "after_chunks"),
    [
        ("openai", False, 0),
        ("anthropic", True, 0),
        ("openai", True, 2),
        ("gemini", False, 0),
        ("gemini", True, 0),
        ("gemini", True, 2),
    ],
)
def test_hang_past_the_timeout_is_a_timeout(
    fake_provider: FakeProviderServer, api: str, stream: bool, after_chunks: int
) -> None:
    fake_provider.inject(Fault.hang(seconds=30, after_chunks=after_chunks))
    with pytest.raises(ProviderTimeoutError) as caught:
        call(spec_for(api, fake_provider), stream=stream, timeout=1)

    assert caught.value.retryable


def test_provider_message_quoting_the_prompt_is_withheld(
    fake_provider: FakeProviderServer,
) -> None:
    fake_provider.inject(Fault.error(400, message=f"Invalid content in message 3: '{SECRET}'"))
    with pytest.raises(ProviderBadRequestError) as caught:
        llm.generate(openai_spec(fake_provider.openai_base), MESSAGES)

    assert "4471" not in str(caught.value)
    assert "Marisol" not in str(caught.value)
    assert "withheld" in str(caught.value)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "12"}, 12.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    assert llm.retry_after_seconds(headers) == expected


def test_retry_after_as_http_date() -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    seconds = llm.retry_after_seconds({"retry-after": when})

    assert seconds is not None and 100 < seconds <= 120


# --- fake provider in another process ------------------------------------------------------------
def test_faults_injected_into_a_provider_process(
    remote_fake_provider: FakeProviderProcess,
) -> None:
    remote_fake_provider.inject(Fault.error(429, retry_after=3))
    remote_fake_provider.queue_replies("from the other process")
    spec = openai_spec(remote_fake_provider.openai_base)

    with pytest.raises(ProviderRateLimitError) as caught:
        llm.generate(spec, MESSAGES)
    assert caught.value.retry_after == 3
    assert llm.generate(spec, MESSAGES).text == "from the other process"
    assert len(remote_fake_provider.requests) == 2
    assert remote_fake_provider.max_prompt_tokens == count_prompt(list(MESSAGES))  # type: ignore[arg-type]


def test_tool_calls_scripted_in_a_provider_process(
    remote_fake_provider: FakeProviderProcess,
) -> None:
    remote_fake_provider.queue_tool_calls(ToolCall("get_weather", {"city": "Oslo"}), text="On it.")
    spec = anthropic_spec(remote_fake_provider.anthropic_base)

    result = llm.generate(spec, MESSAGES, params={"tools": [WEATHER_TOOL]})

    assert result.text == "On it."
    assert [json.loads(c["function"]["arguments"]) for c in result.tool_calls] == [{"city": "Oslo"}]
    [request] = remote_fake_provider.requests
    assert request["tools"][0]["name"] == "get_weather"
    assert request["params"]["max_tokens"] > 0


# --- offline model -------------------------------------------------------------------------------
def test_offline_model_streams_a_labelled_deterministic_reply() -> None:
    stream = llm.stream_completion(OFFLINE, MESSAGES)
    deltas = list(stream)
    text = "".join(deltas)

    assert len(deltas) > 10
    assert text.startswith("[offline model]")
    assert "4 messages" in text
    assert "4471" in text and "Marisol" in text
    assert stream.finish_reason == "stop"
    assert stream.usage is not None and stream.usage.completion_tokens > 0
    assert llm.generate(OFFLINE, MESSAGES).text == text


def test_offline_model_honours_max_tokens() -> None:
    result = llm.generate(OFFLINE, MESSAGES, max_tokens=8)

    assert result.finish_reason == "length"
    assert result.usage is not None and result.usage.completion_tokens <= 8


# --- summarizer ----------------------------------------------------------------------------------
def test_summarizer_sends_the_strategy_prompt(fake_provider: FakeProviderServer) -> None:
    fake_provider.queue_replies("  Courier Marisol; code 4471.  ")
    summarize = llm.LLMSummarizer(openai_spec(fake_provider.openai_base))

    summary = summarize(MESSAGES[1:], previous_summary="Met at noon.", max_tokens=100)

    assert summary == "Courier Marisol; code 4471."
    [request] = fake_provider.requests
    assert request.messages[0]["content"] == SUMMARY_PROMPT.format(max_tokens=100)
    assert "Met at noon." in request.messages[1]["content"]
    assert request.body["max_tokens"] == 100


@pytest.mark.parametrize("reply", ["word " * 200, ""], ids=["cut", "empty"])
def test_summarizer_rejects_partial_or_empty_summaries(
    fake_provider: FakeProviderServer, reply: str
) -> None:
    fake_provider.queue_replies(reply)
    summarize = llm.LLMSummarizer(openai_spec(fake_provider.openai_base))

    with pytest.raises(SummarizerError):
        summarize(MESSAGES, previous_summary=None, max_tokens=20)


# --- import cost ---------------------------------------------------------------------------------
def test_importing_the_gateway_does_not_load_litellm() -> None:
    code = "import sys, workers.llm; assert 'litellm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True)
