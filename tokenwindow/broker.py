"""kombu's Redis transport, with one client per channel, and no task lost between pop and record.

kombu builds a new ``redis.Redis`` for every message it publishes (tasks, and task events for
Flower), every unacked-message record and every ack. redis-py copies its reply-callback table
into each new client: half the CPU of a producer's ``send_task``, and at a few hundred turns a
second a fifth of a worker's. A client is only a thread-safe handle on the channel's connection
pool, so one per channel serves every thread. BRPOP and pub/sub keep their own, as in kombu.

kombu takes a task off its queue with ``BRPOP`` and records it as unacknowledged in a second
round trip (celery/celery#7950): a worker killed between the two loses the task. A worker that
consumes one queue (each Procfile worker does) here moves the task atomically onto that queue's
in-flight list (``BLMOVE``), and the unacked record takes it off that list in the same script
call (``RECORD_UNACKED_LUA``: one command for redis-py to pack and parse, where kombu's
transaction is five, and the record is written around the bytes as moved, not encoded again).
Every restore sweep puts back on its queue a task that has sat on an in-flight list
for ``INFLIGHT_GRACE_SECONDS`` (or the visibility timeout, if shorter): its worker died in
between. A worker on several queues, or on a server older than 6.2, keeps kombu's ``BRPOP``.
Message priorities are off (one list per queue): the service sends none, and one list is what
``BLMOVE`` can wait on.

An ack takes the task off the unacked records: kombu sends it at once, a round trip on the
consumer's thread per task. In a worker's event loop (Celery's hub) acks wait up to
``ACK_DELAY_SECONDS`` instead, and go out with the next task's unacked record, in its
script call, or together when that time is up. A worker that dies meanwhile has its finished
tasks delivered again after the visibility timeout, as with a death just before the ack: tasks
are acked late and are idempotent either way.

The service's processes (celeryconfig) take it for every ``redis://`` and ``rediss://`` URL, so
logs and Flower still show the URL's own scheme; a producer embedded in another service names it
for its own app only (``transport_for``) and changes nothing else in that process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from queue import Empty
from typing import Any
from urllib.parse import urlsplit

import kombu.transport
import redis
from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

TRANSPORT = "tokenwindow.broker:Transport"
REDIS_SCHEMES = ("redis", "rediss")
ACK_DELAY_SECONDS = 0.01
"""How long an ack may wait for the next unacked record to ride with."""
INFLIGHT_GRACE_SECONDS = 30.0
"""A live worker records a moved task within milliseconds; one left on an in-flight list this
long (two sweeps apart) belonged to a worker that died."""

RESTORE_INFLIGHT_LUA = """
-- KEYS: in-flight list, first-seen hash, queue. ARGV: now, grace seconds.
-- A task seen on the in-flight list one grace period ago goes back to the head of its queue.
local now, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
local present, restored = {}, 0
for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local id = redis.sha1hex(item)
  local first = tonumber(redis.call('HGET', KEYS[2], id))
  if not first then
    redis.call('HSET', KEYS[2], id, now)
    present[id] = true
  elseif now - first >= grace then
    redis.call('LREM', KEYS[1], 1, item)
    redis.call('RPUSH', KEYS[3], item)
    restored = restored + 1
  else
    present[id] = true
  end
end
for _, id in ipairs(redis.call('HKEYS', KEYS[2])) do
  if not present[id] then redis.call('HDEL', KEYS[2], id) end
end
return restored
"""


RECORD_UNACKED_LUA = """
-- KEYS: unacked index, unacked records[, in-flight list]. With the in-flight list, ARGV starts
-- with: now, delivery tag, record, the bytes moved; the rest are acked tasks' delivery tags.
local first = 1
if #KEYS == 3 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  redis.call('LREM', KEYS[3], 1, ARGV[4])
  first = 5
end
for i = first, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
end
return 0
"""


def inflight_key(queue: str) -> str:
    """The list a worker moves ``queue``'s tasks onto until they are recorded as unacked."""
    return f"_tw.inflight.{queue}"


def transport_for(broker_url: str) -> str | None:
    """Celery's ``broker_transport`` for ``broker_url``: this one for a plain Redis broker,
    else None (the URL's own: RabbitMQ, Sentinel)."""
    return TRANSPORT if urlsplit(broker_url).scheme in REDIS_SCHEMES else None


def use_for_redis_urls() -> None:
    """Resolve the ``redis`` and ``rediss`` schemes to this transport in this process, also
    where a connection made earlier had them resolved (kombu keeps what it resolved)."""
    TRANSPORT_ALIASES.update(dict.fromkeys(REDIS_SCHEMES, TRANSPORT))
    for scheme in REDIS_SCHEMES:
        kombu.transport._transport_cache.pop(scheme, None)


class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._acks: list[str] = []
        """Delivery tags acked in memory whose unacked records are still in Redis."""
        self._acks_lock = threading.Lock()

    def append(self, message: Any, delivery_tag: str) -> None:
        moved = self.channel.moved.pop(delivery_tag, None)
        if moved is None:
            super().append(message, delivery_tag)  # type: ignore[no-untyped-call]
            return
        queue, raw = moved
        delivery = message.delivery_info
        # kombu's record, [message, exchange, routing key], around the bytes as they came.
        record = b"[%s,%s,%s]" % (
            raw,
            json.dumps(delivery["exchange"]).encode(),
            json.dumps(delivery["routing_key"]).encode(),
        )
        self._record(
            [inflight_key(queue)], [time.time(), delivery_tag, record, raw, *self._take_acks()]
        )
        virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]

    def ack(self, delivery_tag: str) -> None:
        """On the hub's thread, the record's removal waits (see the module's docstring)."""
        hub = self.channel.connection.hub
        if hub is None or threading.get_ident() != getattr(hub, "_loop_thread", None):
            super().ack(delivery_tag)  # type: ignore[no-untyped-call]
            return
        with self._acks_lock:
            self._acks.append(delivery_tag)
            first = len(self._acks) == 1
        if first:
            hub.call_later(ACK_DELAY_SECONDS, self.flush_acks)
        virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]

    def flush_acks(self) -> None:
        """Remove the records of every waiting ack now. If Redis cannot be reached, the tasks
        are delivered again after the visibility timeout, as kombu's failed acks are."""
        tags = self._take_acks()
        if not tags:
            return  # they rode with a record
        try:
            self._record([], tags)
        except self.channel.connection_errors as exc:
            log.warning("acks not recorded", extra={"fields": {"error": repr(exc)}})

    def _take_acks(self) -> list[str]:
        with self._acks_lock:
            tags, self._acks = self._acks, []
        return tags

    def _record(self, inflight: list[str], args: list[Any]) -> None:
        """One script call, atomic as kombu's transaction and one command to send and parse."""
        keys = [self.unacked_index_key, self.unacked_key, *inflight]
        self.channel.record_unacked(keys=keys, args=args, client=self.channel.commands)

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        super().restore_visible(start, num, interval)  # type: ignore[no-untyped-call]
        self.channel.restore_inflight(min(INFLIGHT_GRACE_SECONDS, self.visibility_timeout))


class Channel(kombu_redis.Channel):
    QoS = QoS
    priority_steps = [0]  # noqa: RUF012 (kombu's own attribute, read as a list)
    _shared_client: Any = None
    _moving_from: str | None = None
    _can_move = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.moved: dict[str, tuple[str, bytes]] = {}
        """Delivery tag -> (queue, the exact bytes moved), until the unacked record."""
        self._restore_inflight = self.client.register_script(RESTORE_INFLIGHT_LUA)
        self.record_unacked = self.client.register_script(RECORD_UNACKED_LUA)

    @property
    def commands(self) -> Any:
        """The client every thread sends commands with (``client`` is the consumer's own,
        which waits in ``BLMOVE``)."""
        return self._create_client()

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        if self._shared_client is None:
            self._shared_client = super()._create_client()  # type: ignore[no-untyped-call]
        return self._shared_client

    # --- consuming -------------------------------------------------------------------------
    def _brpop_start(self, timeout: float | None = None) -> None:
        if len(self.active_queues) != 1 or self.global_keyprefix or not self._can_move:
            super()._brpop_start(timeout)  # type: ignore[no-untyped-call]
            return
        (queue,) = self.active_queues
        self._moving_from = queue
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()  # type: ignore[assignment]
        wait = self.brpop_timeout if timeout is None else timeout
        self.client.connection.send_command(
            "BLMOVE", queue, inflight_key(queue), "RIGHT", "LEFT", wait or 0
        )

    def _brpop_read(self, **options: Any) -> bool:
        queue = self._moving_from
        if queue is None:
            return bool(super()._brpop_read(**options))  # type: ignore[no-untyped-call]
        try:
            try:
                raw = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            except redis.ResponseError:  # a server older than 6.2: kombu's BRPOP from now on
                log.warning(
                    "the Redis broker has no BLMOVE (6.2+): a killed worker may lose a task"
                )
                self._can_move = False
                raise Empty() from None
            if raw is None:
                raise Empty()
            message = json.loads(raw)
            tag = message["properties"]["delivery_tag"]
            self.moved[tag] = (queue, raw)
            try:
                self.connection._deliver(message, queue)
            except BaseException:
                self.moved.pop(tag, None)  # unrecorded: the restore sweep puts it back
                raise
            if self.moved.pop(tag, None) is not None:  # a no-ack consumer: nothing to record
                self.client.lrem(inflight_key(queue), 1, raw)
            return True
        finally:
            self._moving_from = None
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Waiting acks go out before kombu puts back what this channel still holds."""
        if not self.closed and self._qos is not None:
            self.qos.flush_acks()
        super().close()  # type: ignore[no-untyped-call]

    def restore_inflight(self, grace: float) -> None:
        """Put back tasks whose worker died between moving and recording them."""
        with self.conn_or_acquire() as client:
            for queue in self.active_queues:
                keys = [inflight_key(queue), f"{inflight_key(queue)}.seen", queue]
                restored = self._restore_inflight(
                    keys=keys, args=[time.time(), grace], client=client
                )
                if restored:
                    log.warning(
                        "put back tasks a dead worker had taken off its queue",
                        extra={"fields": {"queue": queue, "tasks": restored}},
                    )


class Transport(kombu_redis.Transport):
    Channel = Channel
    hub: Any = None
    """The event loop consuming through this transport (a Celery worker's), once registered."""

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)  # type: ignore[no-untyped-call]
        self.hub = loop
