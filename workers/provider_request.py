"""Provider HTTP requests built by litellm's own per-provider config classes, without a call.

``litellm.acompletion`` spends several milliseconds of CPU per call on logging objects, callback
plumbing and its stream wrapper before any byte leaves. The request itself (URL, headers, body)
comes from small per-provider pieces that this module calls directly: ``get_optional_params``
maps OpenAI parameters to the provider's names, and the provider's config class supplies
``validate_environment`` (auth headers), the URL and ``transform_request`` (the body). The
result is byte-for-byte the request litellm sends itself (the tests compare them).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from tokenwindow.messages import Message
from tokenwindow.models import ModelSpec
from tokenwindow.settings import Settings
from workers.llm import api_key_for, load_litellm

Wire = Literal["openai", "anthropic", "gemini"]
FAST_WIRES: frozenset[str] = frozenset(("openai", "anthropic", "gemini"))
"""litellm providers whose streams this service reads itself; others go through litellm."""
ANTHROPIC_TOOL_NAME_MAP = "_anthropic_tool_name_map"
"""Where litellm's Anthropic transform leaves sanitized tool names (its
``ANTHROPIC_TOOL_NAME_REVERSE_MAP_KEY``), for reading ``tool_use`` blocks back."""
PARAMS_CACHE_SIZE = 1024
"""Distinct (model, parameter set) mappings kept per process."""


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """One ready-to-send streaming request and what is needed to read its answer."""

    wire: Wire
    url: str
    headers: dict[str, str]
    body: bytes
    config: Any
    """litellm's config object for the provider (its error class builds refusals)."""
    tool_names: Mapping[str, str]
    """Provider tool name -> the caller's, when litellm had to sanitize names."""


def fast_wire(spec: ModelSpec, params: Mapping[str, Any]) -> Wire | None:
    """The wire format this service parses itself for ``spec``, or None to let litellm stream.

    Anthropic ``response_format`` is emulated by litellm with a hidden tool whose arguments it
    turns back into text; that rewrite stays with litellm.
    """
    provider = spec.litellm_model.split("/", 1)[0]
    if provider not in FAST_WIRES:
        return None
    if provider == "anthropic" and params.get("response_format") is not None:
        return None
    return provider  # type: ignore[return-value]


@functools.lru_cache(maxsize=PARAMS_CACHE_SIZE)
def _provider_params(model: str, provider: str, params_json: str) -> dict[str, Any]:
    """litellm's mapping of OpenAI parameters to the provider's (``get_optional_params``).

    It reads only the model, the provider and the parameters (plus litellm's static model
    map), yet spends 0.1-0.4 ms per call on capability lookups; a worker sends the same few
    parameter sets over and over, so the mapping is kept per set.
    """
    mapped: dict[str, Any] = load_litellm().get_optional_params(
        model=model, custom_llm_provider=provider, **json.loads(params_json)
    )
    return mapped


@dataclass
class _Call:
    """One request on its way through litellm's pieces (which edit ``messages`` in place)."""

    config: Any
    provider: str
    model: str
    base: str | None
    key: str | None
    messages: list[Any] = field(default_factory=list)
    optional: dict[str, Any] = field(default_factory=dict)
    litellm_params: dict[str, Any] = field(default_factory=dict)

    def prepare(self, messages: list[Message], params: Mapping[str, Any]) -> None:
        """Apply what ``litellm.completion`` does to every call before the provider's own
        transform (``None`` fields dropped, developer role mapped, tool choice normalised),
        then map the OpenAI parameters to the provider's."""
        from litellm.utils import (
            validate_and_fix_openai_messages,
            validate_and_fix_openai_tools,
            validate_chat_completion_tool_choice,
        )

        fixed = validate_and_fix_openai_messages(messages=[dict(m) for m in messages])
        self.messages = list(
            self.config.translate_developer_role_to_system_role(
                messages=fixed,
                model=self.model,
                custom_llm_provider=self.provider,
                api_base=self.base,
                model_info=None,
            )
        )
        prepared: dict[str, Any] = {**params, "stream": True}
        if self.provider == "openai":
            prepared["stream_options"] = {"include_usage": True}
        if "tools" in prepared:
            prepared["tools"] = validate_and_fix_openai_tools(tools=prepared["tools"])
        if "tool_choice" in prepared:
            prepared["tool_choice"] = validate_chat_completion_tool_choice(
                tool_choice=prepared["tool_choice"], model=self.model
            )
        mapped = _provider_params(self.model, self.provider, json.dumps(prepared, sort_keys=True))
        self.optional = copy.deepcopy(mapped)  # the transforms edit it

    def common(self) -> dict[str, Any]:
        return {"model": self.model, "messages": self.messages, "litellm_params": {}}


Built = tuple[str, Mapping[str, Any], Mapping[str, Any]]
"""URL, headers, JSON body."""


async def _openai(call: _Call) -> Built:
    """As litellm's OpenAI streaming path: the synchronous transform (media stay URLs)."""
    config, optional = call.config, call.optional
    headers = config.validate_environment(
        headers={}, optional_params=optional, api_key=call.key, api_base=call.base, **call.common()
    )
    url = config.get_complete_url(
        api_base=call.base,
        api_key=call.key,
        model=call.model,
        optional_params=optional,
        litellm_params={},
        stream=True,
    )
    body = config.transform_request(optional_params=optional, headers=headers, **call.common())
    body.update(body.pop("extra_body", None) or {})  # the OpenAI SDK merges it the same way
    return url, headers, body


async def _anthropic(call: _Call) -> Built:
    """As litellm's Anthropic path: the async transform, which fetches remote media (image
    URLs Anthropic cannot read itself) without blocking the event loop."""
    from litellm.anthropic_beta_gated_fields import strip_beta_gated_request_body
    from litellm.anthropic_beta_headers_manager import update_request_with_filtered_beta
    from litellm.litellm_core_utils.url_utils import ensure_api_route

    url = ensure_api_route(call.base or "https://api.anthropic.com", "v1/messages")
    call.optional.pop("stream", None)
    optional = {**call.optional, "is_vertex_request": False}
    shared = {**call.common(), "litellm_params": call.litellm_params}
    headers = call.config.validate_environment(
        headers={}, optional_params=optional, api_key=call.key, api_base=url, **shared
    )
    body = await call.config.async_transform_request(
        optional_params=optional, headers=headers, **shared
    )
    headers, body = update_request_with_filtered_beta(
        headers=headers, request_data=body, provider="anthropic", api_base=url
    )
    gated = strip_beta_gated_request_body(
        body, headers, drop_params=None, model=call.model, provider="anthropic"
    )
    return url, headers, {**gated, "stream": True}


async def _gemini(call: _Call) -> Built:
    """As litellm's Gemini streaming path, with the async body transform (remote media)."""
    from litellm.llms.vertex_ai.gemini.transformation import async_transform_request_body
    from litellm.llms.vertex_ai.vertex_llm_base import VertexBase

    auth, url = VertexBase()._get_token_and_url(
        model=call.model,
        auth_header=None,
        gemini_api_key=call.key,
        vertex_project=None,
        vertex_location=None,
        vertex_credentials=None,
        stream=True,
        custom_llm_provider="gemini",
        api_base=call.base,
    )
    call.optional.pop("stream", None)
    headers = call.config.validate_environment(
        api_key=auth, headers=None, optional_params=call.optional, **call.common()
    )
    body = await async_transform_request_body(
        gemini_api_key=call.key,
        api_base=call.base,
        client=None,
        timeout=None,
        extra_headers=None,
        optional_params=call.optional,
        logging_obj=cast(Any, None),  # read only to create a context cache, which is off
        context_caching=False,
        custom_llm_provider="gemini",
        vertex_project=None,
        vertex_location=None,
        vertex_auth_header=None,
        **call.common(),
    )
    return url, headers, body


BUILDERS: dict[Wire, Callable[[_Call], Awaitable[Built]]] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "gemini": _gemini,
}


async def build_request(
    wire: Wire,
    spec: ModelSpec,
    messages: list[Message],
    params: Mapping[str, Any],
    settings: Settings,
) -> ProviderRequest:
    """The streaming request litellm would send for this call (URL, headers, JSON body)."""
    litellm = load_litellm()  # first: it sets the offline defaults litellm reads on import
    from litellm.types.utils import LlmProviders
    from litellm.utils import ProviderConfigManager

    model, provider, _, base = litellm.get_llm_provider(
        model=spec.litellm_model, api_base=spec.api_base
    )
    config = ProviderConfigManager.get_provider_chat_config(
        model=model, provider=LlmProviders(provider)
    )
    call = _Call(config, provider, model, base, api_key_for(spec, settings))
    call.prepare(messages, params)
    url, headers, body = await BUILDERS[wire](call)
    names = call.litellm_params.get(ANTHROPIC_TOOL_NAME_MAP) or {}
    return ProviderRequest(
        wire=wire,
        url=url,
        headers={str(k): str(v) for k, v in headers.items()},
        body=json.dumps(body).encode(),
        config=config,
        tool_names=dict(names),
    )
