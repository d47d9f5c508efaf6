"""kombu's Redis transport, with one client per channel instead of one per command.

kombu builds a new ``redis.Redis`` for every message it publishes (tasks, and task events for
Flower), every unacked-message record and every ack. redis-py copies its reply-callback table
into each new client: half the CPU of a producer's ``send_task``, and at a few hundred turns a
second a fifth of a worker's. A client is only a thread-safe handle on the channel's connection
pool, so one per channel serves every thread. BRPOP and pub/sub keep their own, as in kombu.

The service's processes (celeryconfig) take it for every ``redis://`` and ``rediss://`` URL, so
logs and Flower still show the URL's own scheme; a producer embedded in another service names it
for its own app only (``transport_for``) and changes nothing else in that process.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

TRANSPORT = "tokenwindow.broker:Transport"
REDIS_SCHEMES = ("redis", "rediss")


def transport_for(broker_url: str) -> str | None:
    """Celery's ``broker_transport`` for ``broker_url``: this one for a plain Redis broker,
    else None (the URL's own: RabbitMQ, Sentinel)."""
    return TRANSPORT if urlsplit(broker_url).scheme in REDIS_SCHEMES else None


def use_for_redis_urls() -> None:
    """Resolve the ``redis`` and ``rediss`` schemes to this transport in this process."""
    TRANSPORT_ALIASES.update(dict.fromkeys(REDIS_SCHEMES, TRANSPORT))


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        if self._shared_client is None:
            self._shared_client = super()._create_client()  # type: ignore[no-untyped-call]
        return self._shared_client


class Transport(kombu_redis.Transport):
    Channel = Channel
