"""Operator-only HTTP resources: the guard that keeps them off the public site.

The platform's HTTP port is public (devices register there, phones call the SOAP
API).  Pages meant for the operator -- today ``/status/streams``, which lists
accounts, DevIDs, viewer addresses and token prefixes -- are mounted only when
``[ops] token`` is set, and then only behind :class:`OperatorGuard`: the request
must carry ``Authorization: Bearer <token>`` or HTTP Basic with any user name and
the token as password.  The comparison is constant time; refusals are 401 with a
challenge for both schemes, logged per source address at most once per
:data:`LOG_INTERVAL` seconds with the number of refusals in between.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from twisted.logger import Logger, LogLevel
from twisted.web import resource

from txturn.logsummary import LogSummary

#: Shortest operator token accepted by the configuration.
MIN_TOKEN_LENGTH = 16
#: Seconds between two log lines about refusals from one source address.
LOG_INTERVAL = 60.0


def operator_token(value: str) -> str:
    """Configuration parser of ``[ops] token``: empty, or at least MIN_TOKEN_LENGTH characters."""
    value = value.strip()
    if value and len(value) < MIN_TOKEN_LENGTH:
        raise ValueError(f"an operator token needs at least {MIN_TOKEN_LENGTH} characters")
    return value


def presented_token(header: bytes | None) -> bytes | None:
    """The token in an ``Authorization`` value (Bearer, or Basic's password), or None."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(b" ")
    if scheme.lower() == b"bearer":
        return rest.strip()
    if scheme.lower() == b"basic":
        try:
            decoded = base64.b64decode(rest.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        _user, sep, password = decoded.partition(b":")
        return password if sep else None
    return None


class OperatorGuard(resource.Resource):
    """Serves *child*'s tree only to requests that present the operator token."""

    log = Logger()

    def __init__(self, child: resource.Resource, token: str, clock: Any, realm: str = "GlobalEye operator") -> None:
        super().__init__()
        if not token:
            raise ValueError("an operator resource needs a token")
        self.child = child
        self.token = token.encode()
        self.clock = clock
        self.realm = realm
        # The first refusal per source address and minute in full, the rest counted (txturn.logsummary).
        self.refusals = LogSummary(self.log, clock, interval=LOG_INTERVAL, level=LogLevel.warn,
                                   name="operator page refusals")

    def authorized(self, request: Any) -> bool:
        given = presented_token(request.getHeader(b"authorization"))
        return given is not None and hmac.compare_digest(given, self.token)

    def getChildWithDefault(self, path: bytes, request: Any) -> resource.Resource:  # noqa: N802
        if not self.authorized(request):
            self._refused(request)
            return _Unauthorized(self.realm)
        return self.child.getChildWithDefault(path, request)

    def render(self, request: Any) -> bytes:
        if not self.authorized(request):
            self._refused(request)
            return _Unauthorized(self.realm).render(request)
        return self.child.render(request)  # type: ignore[no-any-return]

    def _refused(self, request: Any) -> None:
        peer = request.getClientAddress()
        host = getattr(peer, "host", str(peer))
        self.refusals.event(host, f"operator pages refused {host}", "operator page {path}: refused {host}: "
                            "no or wrong operator token", path=request.uri.decode("latin-1", "replace")[:200],
                            host=host)


class _Unauthorized(resource.Resource):
    isLeaf = True

    def __init__(self, realm: str) -> None:
        super().__init__()
        self.realm = realm

    def render(self, request: Any) -> bytes:
        request.setResponseCode(401)
        request.responseHeaders.setRawHeaders(b"www-authenticate", [
            f'Bearer realm="{self.realm}"'.encode(), f'Basic realm="{self.realm}"'.encode()])
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return b"operator authentication required\n"
