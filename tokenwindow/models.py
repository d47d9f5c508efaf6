"""The model registry: window sizes, tokenizer and endpoint for every model we can serve.

Sources, later ones winning: litellm's local model map, the seed's built-in table, and the
operator's ``TOKENWINDOW_MODELS_FILE``: a LiteLLM proxy config (YAML; JSON loads too) read the
way the proxy reads it, so one file serves both. ``os.environ/VAR`` values are resolved, every
``litellm_params`` key is kept for the call, several deployments under one ``model_name``
share the turns and take over a failed call (``ModelSpec.deployment``), and
``context_window_fallbacks`` names the larger model a turn moves to. Whatever the service does
not use is named in one warning, never silently dropped.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import tiktoken
import yaml

from tokenwindow.errors import ConfigurationError, UnknownModelError
from tokenwindow.offline import litellm_tokenizer_dir
from tokenwindow.settings import Settings, environment, get_settings

log = logging.getLogger(__name__)

OFFLINE_MODEL = "tokenwindow-offline"
"""Built-in model that needs no key and no network: used by the demo and by keyless users."""

O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4")
CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "gpt-35")
ESTIMATE_ENCODING = "o200k_base"
"""Used to estimate models whose own tokenizer is not available offline."""
EXACT_PROVIDERS = frozenset(("openai", "azure"))
"""Providers whose models use the tiktoken encodings, so their counts are exact."""
ENV_PREFIX = "os.environ/"
"""A ``litellm_params`` value ``os.environ/VAR`` stands for the variable's value (LiteLLM)."""
OWN_PARAMS = frozenset(("model", "api_base", "api_key"))
"""``litellm_params`` with a field of their own on ``ModelSpec``."""
ROUTER_ONLY_PARAMS = frozenset(("rpm", "tpm", "weight", "order", "max_parallel_requests"))
"""``litellm_params`` that steer the LiteLLM proxy's Router, not the call: a turn picks its
deployment itself (``ModelSpec.deployment``), so these are named in a warning and not sent."""
SECTIONS = frozenset(("model_list", "router_settings", "litellm_settings"))
ENTRY_KEYS = frozenset(("model_name", "litellm_params", "model_info"))
MODEL_INFO_KEYS = frozenset(
    ("max_input_tokens", "max_output_tokens", "encoding", "tokenizer", "exact")
)
FALLBACKS = "context_window_fallbacks"


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
    litellm_params: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, hash=False
    )
    """Every ``litellm_params`` key of the first deployment, ``os.environ/`` resolved."""
    deployments: tuple[Mapping[str, Any], ...] = field(default=(), repr=False, hash=False)
    """The ``litellm_params`` of every deployment under this name (``deployment``)."""
    context_window_fallbacks: tuple[str, ...] = ()
    """Larger models, in order, for a turn that cannot fit this one (LiteLLM's setting)."""

    @property
    def call_params(self) -> dict[str, Any]:
        """``litellm_params`` a call passes on as they are (api_version, extra_headers, ...)."""
        skip = OWN_PARAMS | ROUTER_ONLY_PARAMS
        return {k: v for k, v in self.litellm_params.items() if k not in skip}

    def deployment(self, index: int) -> ModelSpec:
        """The spec of deployment ``index`` (modulo their number): same name and windows, that
        deployment's model, endpoint, key and params. Turns spread over deployments by turn
        and move to the next one when a call fails."""
        if len(self.deployments) < 2:
            return self
        params = self.deployments[index % len(self.deployments)]
        model = str(params.get("model") or self.litellm_model)
        return replace(
            self,
            litellm_model=model,
            provider=model.split("/", 1)[0] if "/" in model else "openai",
            api_base=params.get("api_base"),
            api_key=params.get("api_key"),
            litellm_params=params,
        )

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
            "deployments": len(self.deployments) or 1,
            "context_window_fallbacks": list(self.context_window_fallbacks),
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


class _Warnings:
    """One warning per unused section or key, however many entries carry it."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.seen: set[str] = set()

    def unused(self, where: str, keys: Iterable[str], used: frozenset[str]) -> None:
        for key in sorted(set(keys) - used):
            name = f"{where}.{key}" if where else key
            if name not in self.seen:
                self.seen.add(name)
                log.warning("TOKENWINDOW_MODELS_FILE: %s: %s is not used; ignored", self.file, name)


def _resolve(params: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """``litellm_params`` with every ``os.environ/VAR`` value replaced by the variable's value."""
    resolved = {}
    for key, value in params.items():
        resolved[str(key)] = value
        if isinstance(value, str) and value.startswith(ENV_PREFIX):
            variable = value.removeprefix(ENV_PREFIX)
            if variable not in environ:
                raise ConfigurationError(
                    f"{where}.litellm_params.{key}: environment variable {variable} is not set"
                )
            resolved[str(key)] = environ[variable]
    return resolved


def _entry_spec(
    entry: object,
    where: str,
    known: Mapping[str, ModelSpec],
    environ: Mapping[str, str],
    warnings: _Warnings,
) -> ModelSpec:
    """One ``model_list`` entry; windows missing from ``model_info`` come from litellm's map."""
    if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str):
        raise ConfigurationError(f"{where}.model_name: must be a string")
    raw_params = entry.get("litellm_params") or {}
    info = entry.get("model_info") or {}
    if not isinstance(raw_params, dict) or not isinstance(raw_params.get("model"), str):
        raise ConfigurationError(f"{where}.litellm_params.model: must be a string")
    if not isinstance(info, dict):
        raise ConfigurationError(f"{where}.model_info: must be a mapping")
    warnings.unused("model_list[*]", entry, ENTRY_KEYS)
    warnings.unused("model_list[*].model_info", info, MODEL_INFO_KEYS)
    router_only = raw_params.keys() & ROUTER_ONLY_PARAMS
    warnings.unused("model_list[*].litellm_params", router_only, frozenset())
    params = _resolve(raw_params, where, environ)
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
    frozen = MappingProxyType(params)
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
        litellm_params=frozen,
        deployments=(frozen,),
    )


def _fallbacks(section: Mapping[str, Any], where: str) -> dict[str, tuple[str, ...]]:
    """LiteLLM's ``[{"small": ["big", ...]}, ...]`` as ``{"small": ("big", ...)}``."""
    value = section.get(FALLBACKS)
    if value is None:
        return {}
    if not isinstance(value, list):
        raise ConfigurationError(f"{where}.{FALLBACKS}: must be a list like [{{small: [big]}}]")
    found: dict[str, tuple[str, ...]] = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigurationError(
                f"{where}.{FALLBACKS}[{i}]: must be a mapping {{small: [big]}}"
            )
        for small, bigger in item.items():
            names = [bigger] if isinstance(bigger, str) else bigger
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ConfigurationError(
                    f"{where}.{FALLBACKS}[{i}].{small}: must be a model name or a list of them"
                )
            found[str(small)] = tuple(names)
    return found


def _section(data: Mapping[str, Any], name: str, file: str) -> Mapping[str, Any]:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigurationError(f"TOKENWINDOW_MODELS_FILE: {file}: {name} must be a mapping")
    return value


@dataclass(frozen=True)
class ModelsFile:
    """What a LiteLLM proxy config gives the service."""

    specs: list[ModelSpec]
    context_window_fallbacks: Mapping[str, tuple[str, ...]]


def _read(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"TOKENWINDOW_MODELS_FILE: cannot read {path}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(
            f"TOKENWINDOW_MODELS_FILE: {path} is not YAML/JSON: {exc}"
        ) from None


def parse_models_file(
    path: Path,
    known: Mapping[str, ModelSpec] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ModelsFile:
    """Read a LiteLLM proxy config; errors name the file, the entry and the field.

    ``known`` (litellm's map by name) fills windows an entry leaves out, as the proxy does.
    Several deployments under one ``model_name`` share the smallest windows, so a request that
    fits one fits any of them. ``environ`` (default: the process environment) resolves
    ``os.environ/VAR`` values; a variable that is not set is a ``ConfigurationError``.
    """
    data = _read(path)
    if isinstance(data, list):  # a bare model_list, as earlier versions accepted
        data = {"model_list": data}
    entries = data.get("model_list") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(entries, list):
        raise ConfigurationError(f"TOKENWINDOW_MODELS_FILE: {path} needs a 'model_list' list")
    warnings = _Warnings(path.name)
    warnings.unused("", data, SECTIONS)
    litellm_settings = _section(data, "litellm_settings", path.name)
    router_settings = _section(data, "router_settings", path.name)
    warnings.unused("litellm_settings", litellm_settings, frozenset((FALLBACKS,)))
    warnings.unused("router_settings", router_settings, frozenset((FALLBACKS,)))
    specs: dict[str, ModelSpec] = {}
    for i, entry in enumerate(entries):
        where = f"{path.name}: model_list[{i}]"
        spec = _entry_spec(entry, where, known or {}, environ or environment(), warnings)
        earlier = specs.get(spec.name)
        if earlier is not None:
            spec = replace(
                earlier,
                max_input_tokens=min(earlier.max_input_tokens, spec.max_input_tokens),
                max_output_tokens=min(earlier.max_output_tokens, spec.max_output_tokens),
                deployments=earlier.deployments + spec.deployments,
            )
        specs[spec.name] = spec
    fallbacks = _fallbacks(litellm_settings, f"{path.name}: litellm_settings")
    fallbacks.update(_fallbacks(router_settings, f"{path.name}: router_settings"))
    return ModelsFile(
        specs=list(specs.values()),
        context_window_fallbacks=fallbacks,
    )


class ModelRegistry:
    """Looks models up by name; an unknown name is an error that suggests close ones.

    Later specs replace earlier ones of the same name. A model is also found by its litellm
    name (``openai/gpt-4o``), but a real name always wins over such an alias.
    """

    def __init__(
        self,
        specs: Iterable[ModelSpec],
        *,
        fallback_encoding: str | None = None,
    ):
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
        if settings.models_file is None:
            return cls(specs, fallback_encoding=settings.fallback_encoding)
        known = {s.name: s for s in specs}
        models_file = parse_models_file(settings.models_file, known)
        registry = cls(
            specs + models_file.specs,
            fallback_encoding=settings.fallback_encoding,
        )
        registry._set_fallbacks(models_file.context_window_fallbacks, settings.models_file.name)
        return registry

    def _set_fallbacks(self, fallbacks: Mapping[str, tuple[str, ...]], file: str) -> None:
        """Attach ``context_window_fallbacks``; every model they name must be known."""
        for small, bigger in fallbacks.items():
            for name in (small, *bigger):
                if name not in self._specs and name not in self._aliases:
                    close = difflib.get_close_matches(name, list(self._specs), n=3, cutoff=0.5)
                    hint = f"; did you mean {', '.join(close)}?" if close else ""
                    raise ConfigurationError(
                        f"TOKENWINDOW_MODELS_FILE: {file}: {FALLBACKS}: unknown model "
                        f"{name!r}{hint}"
                    )
            spec = self.get(small)
            self._specs[spec.name] = replace(spec, context_window_fallbacks=bigger)
        self._aliases = {s.litellm_model: s for s in self._specs.values()}

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
