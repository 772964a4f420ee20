"""twisted.web resources for the devices' HTTP calls: ``/register`` (§7.2) and ``/redirect`` (§5).

Devices POST ``text/xml``.  A body that is not a well-formed request of the right
kind gets HTTP 400 with a plain-text reason an engineer can read in a packet
capture; a well-formed request always gets HTTP 200 with a Result code, as the
spec's devices expect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.server import Request as IRequest

from globaleye.device.protocol import messages as m


class XMLPostResource(resource.Resource):
    """POST one XML message of *request_type*, get one XML message back."""

    isLeaf = True
    log = Logger()

    def __init__(self, request_type: type[m.Message],
                 handler: Callable[[Any, str], Awaitable[m.Message]], max_body: int = 65536) -> None:
        super().__init__()
        self.request_type = request_type
        self.handler = handler
        self.max_body = max_body

    def render_GET(self, request: IRequest) -> bytes:
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return f"POST a <{self.request_type.ROOT}> document as text/xml\n".encode()

    def render_POST(self, request: IRequest) -> Any:
        peer = _peer(request)
        body = request.content.read(self.max_body + 1) if request.content is not None else b""
        if len(body) > self.max_body:
            return self._bad(request, peer, 413, f"request body larger than {self.max_body} bytes")
        try:
            message = self.request_type.from_xml(body)
        except m.MessageError as e:
            return self._bad(request, peer, 400, f"malformed <{self.request_type.ROOT}>: {e}")
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))
        d = Deferred.fromCoroutine(_call(self.handler, message, peer))

        def reply(response: m.Message) -> None:
            if finished[0]:
                return
            request.setHeader(b"content-type", b"text/xml; charset=UTF-8")
            request.write(response.to_xml())
            request.finish()

        def failed(failure: Failure) -> None:
            self.log.failure("{peer}: error handling <{root}>", failure, peer=peer, root=self.request_type.ROOT)
            if not finished[0]:
                request.setResponseCode(500)
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                request.write(b"internal error\n")
                request.finish()

        d.addCallbacks(reply, failed)
        return server.NOT_DONE_YET

    def _bad(self, request: IRequest, peer: str, code: int, reason: str) -> bytes:
        self.log.warn("{peer}: HTTP {code} for {path}: {reason}", peer=peer, code=code,
                      path=request.uri.decode("ascii", "replace"), reason=reason)
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return (reason + "\n").encode("utf-8")


async def _call(handler: Callable[[Any, str], Awaitable[m.Message]], message: Any, peer: str) -> m.Message:
    return await handler(message, peer)


def _peer(request: IRequest) -> str:
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return f"{host}:{getattr(address, 'port', 0)}" if host else str(address)
