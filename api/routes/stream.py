"""``GET /stream``: Server-Sent Events (see :mod:`api.live`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from api.auth import User
from api.deps import check, resolve_user
from api.errors import BadRequest, Unauthorized
from api.live import Broker, Client, heartbeat_frame
from gis import policy
from gis.policy import Permission

router = APIRouter(tags=["live"])



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
    client = broker.subscribe(policy.stream_types(user.role), resume_id)
    heartbeat_s = state.settings.stream.sse_heartbeat_s
    return StreamingResponse(
        _events(broker, client, heartbeat_s),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _events(broker: Broker, client: Client, heartbeat_s: float) -> AsyncIterator[bytes]:
    try:
        yield b"retry: 3000\n: connected\n\n"
        while not client.overflowed:
            try:
                msg = await asyncio.wait_for(client.queue.get(), timeout=heartbeat_s)
            except TimeoutError:
                yield heartbeat_frame()
                continue
            yield msg.frame
        # Too slow: close; the EventSource reconnects with Last-Event-ID and replays from the ring.
    finally:
        broker.unsubscribe(client)
