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

from twisted.logger import Logger
from twisted.web import resource

#: Shortest operator token accepted by the configuration.
MIN_TOKEN_LENGTH = 16
#: Seconds between two log lines about refusals from one source address.
LOG_INTERVAL = 60.0
#: Source addresses whose refusals are summarised at once (oldest forgotten beyond).
MAX_LOGGED_PEERS = 1024


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
        #: source address -> (time of the last log line, refusals since)
        self._refusals: dict[str, tuple[float, int]] = {}

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
        now = self.clock.seconds()
        last, since = self._refusals.get(host, (float("-inf"), 0))
        if now - last < LOG_INTERVAL:
            self._refusals[host] = (last, since + 1)
            return
        if len(self._refusals) >= MAX_LOGGED_PEERS and host not in self._refusals:
            self._refusals.pop(next(iter(self._refusals)))
        self._refusals[host] = (now, 0)
        self.log.warn("operator page {path}: refused {host}: no or wrong operator token"
                      "{more}", path=request.uri.decode("latin-1", "replace")[:200], host=host,
                      more=f" ({since} more refusals since the last line)" if since else "")


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
