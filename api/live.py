"""The live stream: one PostgreSQL LISTEN per process, fanned out to many SSE clients.

* One asyncio task holds a psycopg 3 ``AsyncConnection`` listening on ``settings.stream.sse_channel``
  (the PostGIS layer NOTIFYs JSON with a ``type``: ``event``, ``event_status``, ``alarm``,
  ``position``). It reconnects with exponential back-off when the database goes away; after a
  reconnect every client gets a ``resync`` message (clients should re-read what they show).
* Every message is stored by ``onemap_notify()`` in the table ``stream_messages`` before it is
  sent; the NOTIFY carries its id (``stream_id``), which is the SSE ``id``. So ids are the same in
  every server process, and a client reconnecting with ``Last-Event-ID`` — to any process of
  ``onemap serve --workers N`` — gets the newer messages replayed from the database
  (:meth:`Broker.replay`, rows read by :func:`gis.live.messages_since`), or ``resync`` when they
  were pruned (older than ``retention_s``) or more than ``ring_size`` are missing.
* Each client has a bounded queue; a client that falls ``sse_client_queue`` messages behind is
  disconnected (its EventSource reconnects and resumes from the database).

Limitation: ids are allocated when a transaction stores its message, and transactions commit in
their own order; a message of a transaction that allocated a smaller id but committed after a
client's ``Last-Event-ID`` was sent is not replayed to that client (it was delivered live to
every connected one). Writes commit within milliseconds of their insert, so the window is small.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

log = logging.getLogger(__name__)

MESSAGE_TYPES = ("event", "event_status", "alarm", "position")


@dataclass(frozen=True)
class Message:
    id: int
    type: str
    frame: bytes  # the complete SSE frame


def sse_frame(event: str, data: str, msg_id: int | None = None) -> bytes:
    lines = [f"id: {msg_id}"] if msg_id is not None else []
    lines.append(f"event: {event}")
    lines += [f"data: {line}" for line in data.splitlines() or [""]]
    return ("\n".join(lines) + "\n\n").encode()


@dataclass(eq=False)
class Client:
    types: frozenset[str]
    queue: asyncio.Queue[Message]
    overflowed: bool = False
    connected_at: float = field(default_factory=time.monotonic)

    def offer(self, msg: Message) -> None:
        if msg.type not in self.types and msg.type != "resync":
            return
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.overflowed = True


class Broker:
    def __init__(
        self,
        conninfo: Callable[[], str],
        *,
        channel: str = "onemap",
        ring_size: int = 5000,
        client_queue: int = 1000,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        poll_s: float = 15.0,
        retention_s: float = 86400.0,
        prune_every_s: float = 300.0,
    ) -> None:
        self._conninfo = conninfo
        self.channel = channel
        self.ring: deque[Message] = deque(maxlen=min(ring_size, 100))  # the latest, for diagnostics
        self.replay_limit = ring_size
        self.retention_s = retention_s
        self.prune_every_s = prune_every_s
        self._pruned_at = 0.0
        self.client_queue = client_queue
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.poll_s = poll_s
        self.clients: set[Client] = set()
        self.last_id = 0  # the newest database id seen
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.connects = 0
        self.received = 0

    # -- listener -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the listener task (idempotent; call from the event loop)."""
        if self._task is None or self._task.done():
            self.connected = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="onemap-listen")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        import psycopg

        delay = self.reconnect_min_s
        while True:
            try:
                conninfo = self._conninfo()
                async with await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True, connect_timeout=5, application_name="onemap-listen",
                    keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
                ) as conn:
                    await conn.execute(f'LISTEN "{self.channel}"')
                    self.connects += 1
                    if self.connects > 1:
                        self.publish("resync", {"reason": "database reconnected; reload current state"})
                    self.connected.set()
                    delay = self.reconnect_min_s
                    log.info("listening on channel %r", self.channel)
                    while True:
                        async for note in conn.notifies(timeout=self.poll_s):
                            self._on_notify(note.payload)
                        await conn.execute("SELECT 1")  # idle: prove the connection is alive
                        await self._prune(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect
                self.connected.clear()
                log.warning("live listener lost the database (%s); retrying in %.1fs",
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max_s)

    async def _prune(self, conn: object) -> None:
        """Delete stream messages older than the retention window (every ``prune_every_s``)."""
        now = time.monotonic()
        if now - self._pruned_at < self.prune_every_s:
            return
        self._pruned_at = now
        try:
            await conn.execute("SELECT prune_stream_messages(make_interval(secs => %s))",  # type: ignore[attr-defined]
                               (self.retention_s,))
        except Exception as exc:  # noqa: BLE001 - pruning is housekeeping; the stream goes on
            log.warning("could not prune stream_messages: %s", exc)

    def _on_notify(self, payload: str) -> None:
        self.received += 1
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("ignoring non-JSON notification: %.80s", payload)
            return
        kind = str(data.get("type", "message")) if isinstance(data, dict) else "message"
        sid = data.get("stream_id") if isinstance(data, dict) else None
        self._publish_raw(kind, payload, sid if isinstance(sid, int) else None)

    # -- fan-out ----------------------------------------------------------------------------------
    def publish(self, kind: str, data: dict[str, object]) -> Message:
        """A process-local message (``resync``): no id, never replayed."""
        return self._publish_raw(kind, orjson.dumps({"type": kind, **data}).decode(), None)

    def _publish_raw(self, kind: str, payload: str, msg_id: int | None) -> Message:
        msg = Message(msg_id if msg_id is not None else self.last_id, kind, sse_frame(kind, payload, msg_id))
        if msg_id is not None:
            self.last_id = max(self.last_id, msg_id)
            self.ring.append(msg)
        for client in list(self.clients):
            client.offer(msg)
        return msg

    def subscribe(self, types: Iterable[str]) -> Client:
        """A new client receiving live messages from now on (see :meth:`replay` for the past)."""
        client = Client(frozenset(types), asyncio.Queue(maxsize=self.client_queue))
        self.clients.add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        self.clients.discard(client)

    def replay(self, client: Client, last_event_id: int, rows: list[tuple[int, str, str]] | None,
               oldest_id: int | None) -> None:
        """Put the stored messages after ``last_event_id`` (``rows``: (id, type, payload JSON) in id
        order, read from the database after the client subscribed) before the live ones already
        queued, without duplicates. ``resync`` first when some of them are gone: pruned (older
        than ``oldest_id``) or beyond the replay limit (``rows`` is None)."""
        queued: list[Message] = []
        while not client.queue.empty():
            queued.append(client.queue.get_nowait())
        if rows is None or (oldest_id is not None and last_event_id < oldest_id - 1):
            client.offer(Message(last_event_id, "resync", sse_frame(
                "resync", '{"type": "resync", "reason": "messages missed; reload current state"}')))
        replayed: set[int] = set()
        for msg_id, kind, payload in rows or ():
            replayed.add(msg_id)
            client.offer(Message(msg_id, kind, sse_frame(kind, payload, msg_id)))
        for msg in queued:
            if msg.type == "resync" or msg.id not in replayed:
                client.offer(msg)


def heartbeat_frame() -> bytes:
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return sse_frame("heartbeat", orjson.dumps({"t": now}).decode())
