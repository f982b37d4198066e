"""``GET /auth/me``: who the bearer token belongs to (the viewer uses it to sign in)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse

from api.deps import CurrentUser
from api.errors import Unauthorized

router = APIRouter(tags=["auth"])


@router.get("/auth/me", summary="The signed-in user: name, role, privileged")
def me(user: CurrentUser) -> JSONResponse:
    if user is None:
        raise Unauthorized()
    return JSONResponse({"name": user.name, "role": user.role, "privileged": user.privileged})
