"""MCP sessions (`Mcp-Session-Id`): which protocol revision a client negotiated.

A session is bound to the user who opened it: another caller presenting its id is told it
does not exist (404), so an id is never a credential. The table is bounded (the least
recently used session goes first) and idle sessions expire. Sessions live in the worker
process that opened them.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass

MAX_SESSIONS = 10_000
IDLE_EXPIRY = 3600.0  # seconds without a request after which a session is forgotten


@dataclass(slots=True)
class McpSession:
    id: str
    user: str
    connection: str
    protocol_version: str
    last_used: float


class SessionTable:
    def __init__(self, *, max_sessions: int = MAX_SESSIONS, idle_expiry: float = IDLE_EXPIRY):
        self._sessions: OrderedDict[str, McpSession] = OrderedDict()
        self._max = max_sessions
        self._idle = idle_expiry

    def open(self, user: str, connection: str, protocol_version: str, now: float) -> McpSession:
        while len(self._sessions) >= self._max:
            self._sessions.popitem(last=False)
        session = McpSession(secrets.token_urlsafe(24), user, connection, protocol_version, now)
        self._sessions[session.id] = session
        return session

    def find(self, session_id: str, user: str, connection: str, now: float) -> McpSession | None:
        session = self._sessions.get(session_id)
        if session is None or (session.user, session.connection) != (user, connection):
            return None
        if now - session.last_used > self._idle:
            del self._sessions[session_id]
            return None
        session.last_used = now
        self._sessions.move_to_end(session_id)
        return session

    def close(self, session: McpSession) -> None:
        self._sessions.pop(session.id, None)
