"""API authentication: a cache in front of the token lookup (who may do what: :mod:`gis.policy`).

Users, tokens and the audit log live in the database layer (:mod:`gis.accounts`); they are
re-exported here for the API's routes and dependencies.
"""

from __future__ import annotations

import threading
import time

from gis.accounts import (
    ROLES,
    TOKEN_PREFIX,
    User,
    UserError,
    UserRow,
    add_user,
    hash_token,
    issue_token,
    list_users,
    lookup_token,
    new_token,
    revoke_token,
    revoke_user,
    write_audit,
)

__all__ = [
    "ROLES", "TOKEN_PREFIX", "TokenCache", "User", "UserError", "UserRow", "add_user", "hash_token",
    "issue_token", "list_users", "lookup_token", "new_token", "revoke_token", "revoke_user", "write_audit",
]

class TokenCache:
    """Token hash → user, remembered for ``ttl_s`` so most requests skip the lookup query."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, User | None]] = {}
        self._lock = threading.Lock()

    def get(self, token_hash: str) -> tuple[bool, User | None]:
        entry = self._entries.get(token_hash)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, token_hash: str, user: User | None) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[token_hash] = (time.monotonic() + self.ttl_s, user)

    def drop(self, token_hash: str) -> None:
        with self._lock:
            self._entries.pop(token_hash, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
