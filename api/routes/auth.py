"""Sign-in: ``POST /auth/login`` (password → expiring bearer token), ``POST /auth/logout``
(revokes the presented token) and ``GET /auth/me`` (who the token belongs to).

Passwords are argon2id hashes (:mod:`gis.accounts`); failed logins are limited per user name and
per client address across every server process (:mod:`gis.logins`: 429 + ``Retry-After``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response

from api.auth import hash_token, revoke_token
from api.deps import CurrentUser, State, _bearer, client_addr
from api.errors import Unauthorized
from gis import logins

router = APIRouter(tags=["auth"])


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int | None = Field(description="seconds until the token expires (null: never)")


@router.post("/auth/login", summary="Log in with user name and password; returns a bearer token",
             response_model=TokenOut, responses={
                 401: {"description": "Wrong user name or password."},
                 429: {"description": "Too many failed logins for this user or address; see Retry-After."}})
def login(body: LoginIn, request: Request, state: State) -> JSONResponse:
    api = state.settings.api
    policy = logins.LoginPolicy(ttl_s=api.token_ttl_s or None, max_failures=api.login_max_failures,
                                window_s=api.login_window_s)
    issued = logins.login(state.engine, body.username, body.password, client_addr(request), policy)
    expires_in = None
    if issued.expires_at is not None:
        expires_in = max(0, round((issued.expires_at - datetime.now(UTC)).total_seconds()))
    return JSONResponse({"access_token": issued.token, "token_type": "bearer", "expires_in": expires_in},
                        headers={"cache-control": "no-store"})


@router.post("/auth/logout", status_code=204, summary="Revoke the presented bearer token",
             response_class=Response)
def logout(request: Request, state: State, user: CurrentUser) -> Response:
    token = _bearer(request)
    if user is None or token is None:
        raise Unauthorized()
    revoke_token(state.engine, token, client_addr(request))
    state.tokens.drop(hash_token(token))
    return Response(status_code=204)


@router.get("/auth/me", summary="The signed-in user: name, role, privileged, expiry")
def me(user: CurrentUser) -> JSONResponse:
    if user is None:
        raise Unauthorized()
    return JSONResponse({"name": user.name, "role": user.role, "privileged": user.privileged,
                         "expires_at": user.expires_at.isoformat() if user.expires_at else None})
