"""Optional bearer-token auth: on when ``TOKENWINDOW_GATEWAY_API_KEYS`` lists keys.

OpenAI clients send their ``api_key`` as ``Authorization: Bearer ...``, so one of these keys is
what a caller passes as its API key.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.errors import ApiError
from gateway.state import GatewayDep
from tokenwindow.settings import Settings

logger = logging.getLogger(__name__)

bearer = HTTPBearer(auto_error=False, description="One of TOKENWINDOW_GATEWAY_API_KEYS.")


def warn_if_open(settings: Settings) -> None:
    if not settings.gateway_api_keys:
        logger.warning(
            "TOKENWINDOW_GATEWAY_API_KEYS is not set: the gateway accepts requests from anyone"
        )


def _known(token: str, settings: Settings) -> bool:
    """Constant-time against every key, so timing does not reveal a near match."""
    given = token.encode()
    matches = [
        hmac.compare_digest(given, k.get_secret_value().encode()) for k in settings.gateway_api_keys
    ]
    return any(matches)


async def require_key(
    gateway: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Dependency of every protected route; a no-op when no keys are configured."""
    if not gateway.settings.gateway_api_keys:
        return
    if credentials is None or not _known(credentials.credentials, gateway.settings):
        raise ApiError(
            401,
            "a valid API key is required as 'Authorization: Bearer <key>'",
            type="authentication_error",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
