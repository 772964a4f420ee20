"""The portal's session cookie and its CSRF defence.

The session is the platform's own :class:`~globaleye.users.accounts.LoginSession` from the accounts
service (§8.3), with its expiry rules (``[soap] session_idle_timeout``, ended at password change
and closure): no second session store.  The cookie ``ge_session`` carries ``account.token``
because the accounts service looks a session up by both (as SOAP's Account + LoginSession).

* The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it),
  Path=/, and Secure when the portal is served over TLS.
* Every state-changing method (POST, PUT, PATCH, DELETE) with a session must carry
  ``X-CSRF-Token``: an HMAC of the session token under a key of this process, given by
  ``GET /api/v1/session``.  A page of another origin cannot read it (same-origin policy), so it
  cannot forge the header; SameSite is the second line.  A restarted process has a new key, and
  no sessions either (they live in memory).
* Any state change whose ``Origin`` header is present and not the portal's own origin is refused
  (login and sign-up too: no login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, cast

from twisted.logger import Logger, LogLevel
from twisted.web.iweb import IRequest

from globaleye.app.accounts import AccountsService
from globaleye.app.errors import SessionExpired
from globaleye.users.accounts import LoginSession
from globaleye.web.problem import Problem
from txturn.logsummary import LogSummary

COOKIE = b"ge_session"
CSRF_HEADER = b"x-csrf-token"
STATE_CHANGING = frozenset({b"POST", b"PUT", b"PATCH", b"DELETE"})

log = Logger(namespace="globaleye.web")
_summary: LogSummary | None = None


def log_refusal(request: IRequest, what: str, format: str, /, **fields: Any) -> None:  # noqa: A002
    """Log a refusal with its peer and reason: the first per source address and minute in full,
    the rest counted in one line (:class:`txturn.logsummary.LogSummary`, the platform's one
    summariser), so a flood of bad requests cannot flood the log."""
    global _summary
    if _summary is None:  # made at first use: importing this module must not import the reactor
        _summary = LogSummary(log, interval=60.0, level=LogLevel.info, name="web refusals")
    host = getattr(request.getClientAddress(), "host", "?")
    _summary.event(host, f"web requests from {host} refused ({what})", format, **fields)


def peer_of(request: IRequest) -> str:
    """``host:port`` of the client, as the SOAP face names peers in the audit log."""
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return f"{host}:{getattr(address, 'port', 0)}" if host else str(address)


def own_origin(request: IRequest) -> str:
    """The origin the page was served from: this request's scheme and Host."""
    scheme = "https" if request.isSecure() else "http"
    host = (request.getHeader(b"host") or b"").decode("latin-1").strip().lower()
    return f"{scheme}://{host}"


def check_origin(request: IRequest) -> None:
    """Refuse a state change sent from another origin (403 ``origin``); no Origin header passes
    (non-browser clients send none; browsers send one on every cross-origin POST)."""
    if request.method not in STATE_CHANGING:
        return
    origin = request.getHeader(b"origin")
    if origin is None:
        return
    if origin.decode("latin-1").strip().lower() != own_origin(request):
        log_refusal(request, "cross-origin", "web: refused {method} {path} from {peer}: Origin {origin} is not {own}",
                 method=request.method.decode(), path=request.path.decode("latin-1"), peer=peer_of(request),
                 origin=origin.decode("latin-1"), own=own_origin(request))
        raise Problem(403, "origin", "Cross-origin request refused",
                      "state changes are accepted only from the portal's own pages")


class Sessions:
    """The session cookie over :class:`AccountsService` sessions, and the CSRF token bound to each."""

    def __init__(self, accounts: AccountsService, key: bytes | None = None) -> None:
        self.accounts = accounts
        #: The per-process CSRF key (tests may give their own).
        self.key = key if key is not None else secrets.token_bytes(32)

    def current(self, request: IRequest) -> LoginSession | None:
        """The request's live session (its idle time restarted), or None."""
        raw = request.getCookie(COOKIE)
        if not raw:
            return None
        account, dot, token = raw.decode("latin-1").partition(".")
        if not dot or not account or not token:
            return None
        try:
            return self.accounts.authenticate(account, token)
        except SessionExpired:
            return None

    def require(self, request: IRequest) -> LoginSession:
        session = self.current(request)
        if session is None:
            raise Problem(401, "session-expired", "Session expired", "log in again")
        return session

    def csrf_token(self, session: LoginSession) -> str:
        return hmac.new(self.key, session.token.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, request: IRequest, session: LoginSession) -> None:
        """A state change must carry the session's token in ``X-CSRF-Token`` (403 ``csrf``)."""
        if request.method not in STATE_CHANGING:
            return
        given = request.getHeader(CSRF_HEADER) or b""
        if not hmac.compare_digest(given, self.csrf_token(session).encode()):
            why = "missing" if not given else "wrong"
            log_refusal(request, "CSRF", "web: refused {method} {path} for {account} from {peer}: {why} CSRF token",
                     method=request.method.decode(), path=request.path.decode("latin-1"), account=session.account,
                     peer=peer_of(request), why=why)
            raise Problem(403, "csrf", "CSRF token missing or wrong",
                          "send the csrfToken of GET /api/v1/session in the X-CSRF-Token header")

    def set_cookie(self, request: IRequest, session: LoginSession) -> None:
        self._cookie(request, f"{session.account}.{session.token}".encode())

    def clear_cookie(self, request: IRequest) -> None:
        self._cookie(request, b"", max_age=b"0")

    def _cookie(self, request: IRequest, value: bytes, **extra: Any) -> None:
        cast(Any, request).addCookie(COOKIE, value, path=b"/", httpOnly=True, sameSite="strict",
                          secure=bool(request.isSecure()), **extra)
