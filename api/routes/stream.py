"""``GET /stream``: Server-Sent Events (see :mod:`api.live`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from api.auth import User
from api.deps import AppState, check, resolve_user
from api.errors import BadRequest, Unauthorized
from api.live import Broker, Client, heartbeat_frame
from gis import live, policy
from gis.policy import Permission

router = APIRouter(tags=["live"])
log = logging.getLogger(__name__)

#: the stream's token is re-checked at least this far apart (s), even with auth_cache_s = 0
MIN_RECHECK_S = 1.0


@router.get(
    "/stream",
    summary="Live events, status changes, alarms and positions (text/event-stream)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id_q: Annotated[str | None, Query(alias="lastEventId")] = None,
    access_token: Annotated[
        str | None, Query(description="Bearer token (EventSource cannot send headers)")] = None,
) -> StreamingResponse:
    state = request.app.state.onemap
    header = request.headers.get("authorization")
    token = access_token
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
        token = value.strip()
    user: User | None = await run_in_threadpool(resolve_user, state, token)
    user = check(user, Permission.READ)  # message types per role: gis.policy.STREAM_MESSAGES
    resume = last_event_id or last_event_id_q
    resume_id: int | None = None
    if resume:
        try:
            resume_id = int(resume)
        except ValueError:
            raise BadRequest(f"Last-Event-ID must be an integer, got {resume!r}") from None
    broker: Broker = state.broker
    broker.start()
    client = broker.subscribe(policy.stream_types(user.role))
    if resume_id is not None:
        # from the database, after subscribing (nothing falls between); any process can answer
        try:
            rows, oldest = await run_in_threadpool(_stored_since, state, resume_id, broker.replay_limit)
        except BaseException:
            broker.unsubscribe(client)
            raise
        broker.replay(client, resume_id, rows, oldest)
    heartbeat_s = state.settings.stream.sse_heartbeat_s
    recheck = TokenRecheck(state, token, max(state.settings.api.auth_cache_s, MIN_RECHECK_S))
    return StreamingResponse(
        _events(broker, client, heartbeat_s, recheck),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


class TokenRecheck:
    """Whether the stream's token still works: re-read (uncached) every ``every_s`` seconds, and
    expiry checked on every wake-up, so revocation or expiry ends the stream within
    ``auth_cache_s`` (at least :data:`MIN_RECHECK_S`)."""

    def __init__(self, state: AppState, token: str | None, every_s: float) -> None:
        self.state, self.token, self.every_s = state, token, every_s
        self.next_at = time.monotonic() + every_s

    def wait_s(self) -> float:
        return max(0.0, self.next_at - time.monotonic())

    async def still_valid(self) -> bool:
        if time.monotonic() < self.next_at:
            return True
        self.next_at = time.monotonic() + self.every_s
        try:
            await run_in_threadpool(resolve_user, self.state, self.token, fresh=True)
        except Unauthorized:
            return False
        except Exception:  # noqa: BLE001 - database briefly away: keep streaming, check again later
            log.warning("stream token re-check failed; trying again in %.0f s", self.every_s, exc_info=True)
        return True


def _stored_since(state, last_id: int, limit: int):  # noqa: ANN001, ANN202 - AppState
    with state.engine.connect() as conn:
        return live.messages_since(conn, last_id, limit)


async def _events(broker: Broker, client: Client, heartbeat_s: float, recheck: TokenRecheck) -> AsyncIterator[bytes]:
    try:
        yield b"retry: 3000\n: connected\n\n"
        next_beat = time.monotonic() + heartbeat_s
        while not client.overflowed:
            if not await recheck.still_valid():
                # Revoked or expired: say so and end the response (the client's reconnect gets 401).
                yield b'event: auth\ndata: {"detail": "token revoked or expired"}\n\n'
                return
            timeout = max(0.0, min(next_beat - time.monotonic(), recheck.wait_s()))
            try:
                msg = await asyncio.wait_for(client.queue.get(), timeout=timeout)
            except TimeoutError:
                if time.monotonic() >= next_beat:
                    yield heartbeat_frame()
                    next_beat = time.monotonic() + heartbeat_s
                continue
            yield msg.frame
        # Too slow: close; the EventSource reconnects with Last-Event-ID and replays from the database.
    finally:
        broker.unsubscribe(client)
