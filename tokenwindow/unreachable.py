"""Turn "nothing answers at that address" into one line naming the URL and its setting.

Commands and the dev stack catch ``CONNECTION_ERRORS`` around their work and raise
``unreachable(...)`` instead, so a stopped Redis or broker gives a sentence, not a traceback.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import kombu.exceptions
import redis.exceptions

from tokenwindow.errors import UnreachableError
from tokenwindow.settings import Settings
from tokenwindow.topology import celery_broker

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
    ConnectionError,
)
"""What a client library raises when the server at a URL is down, refuses or times out."""


def hide_password(url: str) -> str:
    """``url`` with any password replaced by ``***`` (user names are kept: they help)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def redis_unreachable(settings: Settings) -> UnreachableError:
    return UnreachableError(
        f"Redis does not answer at {hide_password(settings.redis_url)}: start it, "
        "or set REDIS_URL to a Redis that runs"
    )


def broker_unreachable(settings: Settings) -> UnreachableError:
    setting = "BROKER_URL" if settings.broker_url else "BROKER_URL (unset, so REDIS_URL)"
    return UnreachableError(
        f"the broker does not answer at {hide_password(celery_broker(settings).url)}: "
        f"start it, or set {setting} to a broker that runs"
    )


def unreachable(error: BaseException, settings: Settings) -> UnreachableError:
    """The one-line error for a connection failure raised by a Redis or a broker client."""
    if isinstance(error, kombu.exceptions.OperationalError):
        return broker_unreachable(settings)
    return redis_unreachable(settings)
