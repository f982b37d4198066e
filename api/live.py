"""The live stream: one PostgreSQL LISTEN per process, fanned out to many SSE clients.

* One asyncio task holds a psycopg 3 ``AsyncConnection`` listening on ``settings.stream.sse_channel``
  (the PostGIS layer NOTIFYs JSON with a ``type``: ``event``, ``event_status``, ``alarm``,
  ``position``). It reconnects with exponential back-off when the database goes away; after a
  reconnect every client gets a ``resync`` message (notifications sent meanwhile are lost, so
  clients should re-read what they show).
* Every message gets an id from a process-wide counter that starts at the current time in
  microseconds, so ids only ever increase, even across restarts.
* A ring buffer keeps the last ``sse_ring_size`` messages; a client reconnecting with
  ``Last-Event-ID`` gets every newer message replayed (or ``resync`` if it fell out of the ring).
* Each client has a bounded queue; a client that falls ``sse_client_queue`` messages behind is
  disconnected (its EventSource reconnects and resumes from the ring).
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
    ) -> None:
        self._conninfo = conninfo
        self.channel = channel
        self.ring: deque[Message] = deque(maxlen=ring_size)
        self.client_queue = client_queue
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.poll_s = poll_s
        self.clients: set[Client] = set()
        self._next_id = time.time_ns() // 1000
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
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect
                self.connected.clear()
                log.warning("live listener lost the database (%s); retrying in %.1fs",
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max_s)

    def _on_notify(self, payload: str) -> None:
        self.received += 1
        try:
            data = orjson.loads(payload)
            kind = str(data.get("type", "message")) if isinstance(data, dict) else "message"
        except orjson.JSONDecodeError:
            log.warning("ignoring non-JSON notification: %.80s", payload)
            return
        self._publish_raw(kind, payload)

    # -- fan-out ----------------------------------------------------------------------------------
    def publish(self, kind: str, data: dict[str, object]) -> Message:
        return self._publish_raw(kind, orjson.dumps({"type": kind, **data}).decode())

    def _publish_raw(self, kind: str, payload: str) -> Message:
        self._next_id += 1
        msg = Message(self._next_id, kind, sse_frame(kind, payload, self._next_id))
        self.ring.append(msg)
        for client in list(self.clients):
            client.offer(msg)
        return msg

    def subscribe(self, types: Iterable[str], last_event_id: int | None = None) -> Client:
        client = Client(frozenset(types), asyncio.Queue(maxsize=self.client_queue))
        if last_event_id is not None:
            self._replay(client, last_event_id)
        self.clients.add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        self.clients.discard(client)

    def _replay(self, client: Client, last_event_id: int) -> None:
        if self.ring and last_event_id < self.ring[0].id - 1:
            # Some messages after last_event_id are no longer in the ring.
            client.offer(Message(self.ring[0].id - 1, "resync", sse_frame(
                "resync", '{"type": "resync", "reason": "messages missed; reload current state"}')))
        elif last_event_id > self._next_id:
            return  # an id from the future (another process): nothing to replay
        for msg in self.ring:
            if msg.id > last_event_id:
                client.offer(msg)


def heartbeat_frame() -> bytes:
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return sse_frame("heartbeat", orjson.dumps({"t": now}).decode())
