"""The model registry: window sizes, tokenizer and endpoint for every model we can serve.

Sources, later ones winning: litellm's local model map, the seed's built-in table, and the
operator's ``TOKENWINDOW_MODELS_FILE`` (LiteLLM proxy ``model_list`` YAML; JSON loads too).
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tiktoken
import yaml

from tokenwindow.errors import ConfigurationError, UnknownModelError
from tokenwindow.offline import litellm_tokenizer_dir
from tokenwindow.settings import Settings, get_settings

OFFLINE_MODEL = "tokenwindow-offline"
"""Built-in model that needs no key and no network: used by the demo and by keyless users."""

O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4")
CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "gpt-35")
ESTIMATE_ENCODING = "o200k_base"
"""Used to estimate models whose own tokenizer is not available offline."""
EXACT_PROVIDERS = frozenset(("openai", "azure"))
"""Providers whose models use the tiktoken encodings, so their counts are exact."""


@dataclass(frozen=True)
class ModelSpec:
    """What the service needs to know about one model."""

    name: str
    litellm_model: str
    provider: str
    max_input_tokens: int
    max_output_tokens: int
    encoding: str
    exact: bool
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    source: str = "builtin"

    def public_dict(self) -> dict[str, Any]:
        """The spec as callers see it: never the key."""
        return {
            "name": self.name,
            "provider": self.provider,
            "litellm_model": self.litellm_model,
            "max_input_tokens": self.max_input_tokens,
            "max_output_tokens": self.max_output_tokens,
            "encoding": self.encoding,
            "exact": self.exact,
            "api_base": self.api_base,
            "source": self.source,
        }


def openai_encoding(model: str) -> str | None:
    """tiktoken encoding for an OpenAI model name, or None if it is not an OpenAI chat model.

    Azure serves the same models with the same tokenizers, so ``azure/`` names count exactly too
    (``azure/eu/gpt-4o-mini`` included); other routes (``openrouter/openai/...``) do not.
    """
    provider, _, rest = model.partition("/") if "/" in model else ("openai", "", model)
    if provider not in EXACT_PROVIDERS:
        return None
    bare = rest.rsplit("/", 1)[-1]
    if bare.startswith(O200K_PREFIXES):
        return "o200k_base"
    if bare.startswith(CL100K_PREFIXES):
        return "cl100k_base"
    return None


BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("gpt-4o", "openai/gpt-4o", "openai", 128_000, 4_096, "o200k_base", True),
    ModelSpec(
        "claude-3-5-sonnet",
        "anthropic/claude-3-5-sonnet-20241022",
        "anthropic",
        200_000,
        8_192,
        ESTIMATE_ENCODING,
        False,
    ),
    ModelSpec(
        "gemini-1.5-pro",
        "gemini/gemini-1.5-pro",
        "gemini",
        1_000_000,
        8_192,
        ESTIMATE_ENCODING,
        False,
    ),
    ModelSpec(OFFLINE_MODEL, "tokenwindow/offline", "offline", 4_096, 512, "o200k_base", True),
)


def _litellm_map_path() -> Path:
    return litellm_tokenizer_dir().parent.parent / "model_prices_and_context_window_backup.json"


def _from_litellm_map(raw: Mapping[str, Any]) -> Iterable[ModelSpec]:
    for name, info in raw.items():
        if not isinstance(info, dict) or info.get("mode") != "chat":
            continue
        max_in = info.get("max_input_tokens") or info.get("max_tokens")
        max_out = info.get("max_output_tokens") or info.get("max_tokens")
        if not isinstance(max_in, int) or not isinstance(max_out, int):
            continue
        provider = str(info.get("litellm_provider", "custom"))
        encoding = openai_encoding(name) if provider in EXACT_PROVIDERS else None
        litellm_model = name if "/" in name else f"{provider}/{name}"
        yield ModelSpec(
            name=name,
            litellm_model=litellm_model,
            provider=provider,
            max_input_tokens=max_in,
            max_output_tokens=max_out,
            encoding=encoding or ESTIMATE_ENCODING,
            exact=encoding is not None,
            source="litellm",
        )


def _window(info: Mapping[str, Any], key: str, where: str, base: ModelSpec | None) -> int:
    value = info.get(key, getattr(base, key, None))
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(
            f"{where}.model_info.{key}: must be a positive integer, got {value!r}"
        )
    return value


def _encoding_field(info: Mapping[str, Any], where: str, default: str) -> str:
    value = info.get("encoding", info.get("tokenizer", default))
    if value not in tiktoken.list_encoding_names():
        known = ", ".join(sorted(tiktoken.list_encoding_names()))
        raise ConfigurationError(f"{where}.model_info.encoding: {value!r} is not one of {known}")
    return str(value)


def _entry_spec(entry: object, where: str, known: Mapping[str, ModelSpec]) -> ModelSpec:
    """One ``model_list`` entry; windows missing from ``model_info`` come from litellm's map."""
    if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str):
        raise ConfigurationError(f"{where}.model_name: must be a string")
    params = entry.get("litellm_params") or {}
    info = entry.get("model_info") or {}
    if not isinstance(params, dict) or not isinstance(params.get("model"), str):
        raise ConfigurationError(f"{where}.litellm_params.model: must be a string")
    if not isinstance(info, dict):
        raise ConfigurationError(f"{where}.model_info: must be a mapping")
    litellm_model: str = params["model"]
    base = known.get(litellm_model) or known.get(litellm_model.split("/", 1)[-1])
    exact_encoding = openai_encoding(litellm_model)
    encoding = _encoding_field(info, where, exact_encoding or ESTIMATE_ENCODING)
    exact = info.get("exact", encoding == exact_encoding)
    if not isinstance(exact, bool):
        raise ConfigurationError(f"{where}.model_info.exact: must be true or false, got {exact!r}")
    for key in ("api_base", "api_key"):
        if params.get(key) is not None and not isinstance(params[key], str):
            raise ConfigurationError(f"{where}.litellm_params.{key}: must be a string")
    return ModelSpec(
        name=entry["model_name"],
        litellm_model=litellm_model,
        provider=litellm_model.split("/", 1)[0] if "/" in litellm_model else "openai",
        max_input_tokens=_window(info, "max_input_tokens", where, base),
        max_output_tokens=_window(info, "max_output_tokens", where, base),
        encoding=encoding,
        exact=exact,
        api_base=params.get("api_base"),
        api_key=params.get("api_key"),
        source="file",
    )


def parse_models_file(path: Path, known: Mapping[str, ModelSpec] | None = None) -> list[ModelSpec]:
    """Read a LiteLLM-proxy ``model_list`` file; errors name the file, the entry and the field.

    ``known`` (litellm's map by name) fills windows an entry leaves out, as the proxy does.
    Several deployments under one ``model_name`` share the smallest windows, so a request that
    fits one fits any of them.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"TOKENWINDOW_MODELS_FILE: cannot read {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(
            f"TOKENWINDOW_MODELS_FILE: {path} is not YAML/JSON: {exc}"
        ) from None
    entries = data.get("model_list") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ConfigurationError(f"TOKENWINDOW_MODELS_FILE: {path} needs a 'model_list' list")
    specs: dict[str, ModelSpec] = {}
    for i, entry in enumerate(entries):
        spec = _entry_spec(entry, f"{path.name}: model_list[{i}]", known or {})
        earlier = specs.get(spec.name)
        if earlier is not None:
            spec = replace(
                earlier,
                max_input_tokens=min(earlier.max_input_tokens, spec.max_input_tokens),
                max_output_tokens=min(earlier.max_output_tokens, spec.max_output_tokens),
            )
        specs[spec.name] = spec
    return list(specs.values())


class ModelRegistry:
    """Looks models up by name; an unknown name is an error that suggests close ones.

    Later specs replace earlier ones of the same name. A model is also found by its litellm
    name (``openai/gpt-4o``), but a real name always wins over such an alias.
    """

    def __init__(self, specs: Iterable[ModelSpec], *, fallback_encoding: str | None = None):
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            self._specs[spec.name] = spec
        self._aliases = {s.litellm_model: s for s in self._specs.values()}
        self.fallback_encoding = fallback_encoding

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        """litellm's local map, then the built-in table, then the operator's models file."""
        with _litellm_map_path().open(encoding="utf-8") as f:
            specs = list(_from_litellm_map(json.load(f)))
        specs.extend(BUILTIN_MODELS)
        if settings.models_file is not None:
            known = {s.name: s for s in specs}
            specs.extend(parse_models_file(settings.models_file, known))
        return cls(specs, fallback_encoding=settings.fallback_encoding)

    def get(self, name: str) -> ModelSpec:
        spec = self._specs.get(name) or self._aliases.get(name)
        if spec is not None:
            return spec
        if self.fallback_encoding is not None:
            return ModelSpec(
                name, name, "custom", 8_192, 1_024, self.fallback_encoding, False, source="fallback"
            )
        close = difflib.get_close_matches(name, list(self._specs), n=3, cutoff=0.5)
        raise UnknownModelError(name, close)

    def all(self) -> list[ModelSpec]:
        """Every model, sorted by name."""
        return sorted(self._specs.values(), key=lambda s: s.name)


@functools.cache
def get_registry() -> ModelRegistry:
    """The process-wide registry, loaded on first use."""
    return ModelRegistry.from_settings(get_settings())
