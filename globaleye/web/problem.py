"""RFC 9457 problem details (``application/problem+json``) and how application errors become them.

Every error the API answers is one :class:`Problem`: a ``type`` (a relative URI naming the kind,
stable for programs), a ``title`` (the kind, for people), the HTTP ``status`` and a ``detail``
about this occurrence.  :func:`from_app_error` is the one map from the application layer's
:class:`~globaleye.app.errors.AppError` subclasses to statuses, as :mod:`globaleye.api.clientapi` is
for §8 Result codes.  A camera the caller may not use answers exactly as one that does not exist
(404 ``no-such-device``): the application layer already raises the same
:class:`~globaleye.app.errors.NoSuchDevice` for both, so no route can tell them apart.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.iweb import IRequest

from globaleye.app.devices import ADD_LIMIT, ADD_UNKNOWN, ADD_WRONG_KEY
from globaleye.app.errors import (
    AddRefused,
    AppError,
    DeviceOffline,
    DeviceRefused,
    InvalidRequest,
    NoSuchDevice,
    NotFound,
    RuleViolation,
    SessionExpired,
)

PROBLEM_JSON = b"application/problem+json"
#: Problem types are relative URI references under the API (RFC 9457 §3.1.1).
TYPE_BASE = "/api/v1/problems/"


class Problem(Exception):
    """One RFC 9457 problem; raise it from a route, :meth:`write` answers it."""

    def __init__(self, status: int, kind: str, title: str, detail: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {kind}: {detail or title}")
        self.status, self.kind, self.title, self.detail = status, kind, title, detail
        #: Seconds the client should wait (``Retry-After``), when known (429, 423, 503).
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": TYPE_BASE + self.kind, "title": self.title, "status": self.status}
        if self.detail:
            out["detail"] = self.detail
        return out

    def write(self, request: IRequest) -> bytes:
        """Set the status and headers on *request*; the body to write."""
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", PROBLEM_JSON)
        request.setHeader(b"cache-control", b"no-store")
        if self.retry_after is not None:
            request.setHeader(b"retry-after", str(max(1, int(self.retry_after + 0.999))).encode())
        return json.dumps(self.body(), ensure_ascii=False).encode()


def from_app_error(error: AppError) -> Problem:
    """The problem an application-layer error is answered with (the §8 Result it carries chooses
    among AddDevice's refusals, §8.6)."""
    detail = str(error)
    if isinstance(error, SessionExpired):
        return Problem(401, "session-expired", "Session expired", "log in again")
    if isinstance(error, NoSuchDevice):
        # Never the internal message (it names the account): the same words for absent and foreign.
        return Problem(404, "no-such-device", "No such camera", "no camera with this DevID in your list")
    if isinstance(error, DeviceOffline):
        return Problem(503, "camera-offline", "Camera offline", "the camera is offline or did not answer")
    if isinstance(error, DeviceRefused):
        return Problem(502, "camera-refused", "The camera refused", detail)
    if isinstance(error, InvalidRequest):
        return Problem(400, "invalid-request", "Invalid request", detail)
    if isinstance(error, AddRefused):
        if error.result == ADD_UNKNOWN:
            return Problem(422, "unknown-camera", "Unknown camera", "no camera with this DevID is known")
        if error.result == ADD_WRONG_KEY:
            return Problem(422, "wrong-dev-key", "Wrong DevKey", "the DevKey does not match the camera")
        if error.result == ADD_LIMIT:
            return Problem(409, "too-many-cameras", "Too many cameras", "the account has its most cameras")
        return Problem(409, "camera-taken", "Camera not available", "the camera belongs to another account")
    if isinstance(error, NotFound):
        return Problem(404, "not-found", "Not found", detail)
    if isinstance(error, RuleViolation):
        return Problem(422, "rule-violation", "Not allowed by the platform's rules", detail)
    return Problem(500, "internal", "Internal error", "")


def bad_request(detail: str) -> Problem:
    return Problem(400, "invalid-request", "Invalid request", detail)


#: Every problem kind the API answers with (documented in the OpenAPI document).
KINDS = ("session-expired", "no-such-device", "camera-offline", "camera-refused", "invalid-request",
         "unknown-camera", "wrong-dev-key", "too-many-cameras", "camera-taken", "not-found", "rule-violation",
         "internal", "csrf", "origin", "login-failed", "account-locked", "too-many-attempts", "sms-not-sent",
         "wrong-sms-code", "already-registered", "cannot-subscribe", "wrong-password", "live-unavailable",
         "no-route", "method-not-allowed",
         "not-supported",
         # --- alarms (live events) ---
         "not-acceptable", "too-many-streams",
         # --- cloud storage ---
         "cloud-unavailable")
