"""Bearer-token auth: each key stands for a tenant (or an admin); none configured is refused.

OpenAI clients send their ``api_key`` as ``Authorization: Bearer ...``; Anthropic clients send
it as ``x-api-key``. Either header is accepted on every route.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Header
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.errors import ApiError
from gateway.state import GatewayDep
from gateway.tenants import ADMIN, Caller, KeyTable
from tokenwindow.errors import ConfigurationError
from tokenwindow.settings import Settings

logger = logging.getLogger(__name__)

bearer = HTTPBearer(auto_error=False, description="A key of TOKENWINDOW_GATEWAY_API_KEYS.")

NO_KEYS = (
    "no API keys configured: set TOKENWINDOW_GATEWAY_API_KEYS (tenant:key,...) or "
    "TOKENWINDOW_GATEWAY_ADMIN_KEYS, or TOKENWINDOW_GATEWAY_ALLOW_OPEN=true to serve anyone"
)
OPEN_WARNING = (
    "TOKENWINDOW_GATEWAY_ALLOW_OPEN=true and no API keys: the gateway serves anyone, "
    "with every session visible to every caller"
)


def key_table(settings: Settings) -> KeyTable:
    """The keys, or a ``ConfigurationError`` for a gateway that would be open by accident."""
    keys = KeyTable.from_settings(settings)
    if keys.open and not settings.gateway_allow_open:
        raise ConfigurationError(NO_KEYS)
    if keys.open:
        logger.warning(OPEN_WARNING)
    return keys


async def require_key(
    gateway: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Caller:
    """Dependency of every protected route: who is calling (everyone is admin when open)."""
    if gateway.keys.open:
        return ADMIN
    token = credentials.credentials if credentials is not None else x_api_key
    caller = gateway.keys.caller(token) if token else None
    if caller is None:
        raise ApiError(
            401,
            "a valid API key is required as 'Authorization: Bearer <key>' or 'x-api-key'",
            type="authentication_error",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return caller


CallerDep = Annotated[Caller, Depends(require_key)]
