"""litellm's Router over the models file's deployments: load balancing and failover.

Several deployments under one ``model_name`` are one model to the service (they share the
smallest window); the Router spreads calls over them and moves a failed call to another. Its
retries only pick another deployment: a deployment that fails is cooled down at once
(``allowed_fails: 0``) so the retry cannot land on it again, and there are as many retries as a
group has other deployments. Transient errors of the whole group are still the tasks' to retry
with backoff. The file's ``router_settings`` (see ``tokenwindow.models.ROUTER_SETTINGS``) win
over these defaults; ``context_window_fallbacks`` is not handed over, since the turn pipeline
moves an oversized turn itself, with an event.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tokenwindow.errors import ConfigurationError
from tokenwindow.models import ModelRegistry, get_registry
from tokenwindow.settings import Settings, get_settings
from workers.llm import load_litellm


def router_options(registry: ModelRegistry, settings: Settings) -> dict[str, Any]:
    """Keyword arguments of ``litellm.Router``: our defaults, then the file's settings."""
    model_list = registry.deployments()
    if not model_list:
        raise ConfigurationError(
            "TOKENWINDOW_MODELS_FILE: no deployments to route; list them under model_list"
        )
    largest = max(Counter(d["model_name"] for d in model_list).values())
    return {
        "model_list": model_list,
        "num_retries": largest - 1,
        "allowed_fails": 0,
        "timeout": settings.provider_timeout_seconds,
        **registry.router_settings,
    }


def build_router(registry: ModelRegistry | None = None, settings: Settings | None = None) -> Any:
    """A ``litellm.Router`` over every models-file deployment; call it by ``model_name``."""
    litellm = load_litellm()
    options = router_options(registry or get_registry(), settings or get_settings())
    return litellm.Router(**options)
