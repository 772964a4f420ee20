"""The twisted.web face of a SOAP endpoint: POST an envelope, GET ``?wsdl``.

The resource knows HTTP and SOAP, nothing of accounts or cameras: it decodes the
request element of a declared operation and awaits ``handler(name, values, peer)``,
which returns the response values.  A :class:`SoapFault` from anywhere becomes a
Fault envelope with HTTP 500 (SOAP 1.1 §6.2); any other exception is logged and
becomes a ``soap:Server`` Fault that reveals nothing of the platform's inside.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.server import Request

from globaleye.api.soap.envelope import (
    SoapFault,
    build_envelope,
    build_fault,
    client_fault,
    parse_envelope,
)
from globaleye.api.soap.operations import Operation, decode_request, encode_response
from globaleye.api.soap.wsdl import Wsdl
from globaleye.util.urls import host_port

Handler = Callable[[str, dict[str, Any], str], Awaitable[Mapping[str, Any]]]

_HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$")


class SoapResource(resource.Resource):
    """One SOAP 1.1 endpoint (``/soap/mcu`` or ``/soap/group``)."""

    isLeaf = True
    log = Logger()

    def __init__(self, service_name: str, namespace: str, operations: tuple[Operation, ...], handler: Handler,
                 max_body: int = 65536, fallback_host: str = "127.0.0.1") -> None:
        super().__init__()
        self.namespace = namespace
        self.operations = {op.request_element: op for op in operations}
        self.handler = handler
        self.max_body = max_body
        self.fallback_host = fallback_host
        self.wsdl = Wsdl(service_name, namespace, operations)

    def render_GET(self, request: Request) -> bytes:
        query = request.uri.partition(b"?")[2].lower().split(b"&")
        if not any(part == b"wsdl" or part.startswith(b"wsdl=") for part in query):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"POST")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"POST SOAP 1.1 envelopes here; the WSDL is at ?wsdl\n"
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        return self.wsdl.document(self.location(request))

    def location(self, request: Request) -> str:
        """This endpoint's URL as the client named it (a Host header we cannot trust falls back)."""
        host = (request.getHeader(b"host") or b"").decode("ascii", "replace")
        if not _HOST.match(host):
            host = host_port(self.fallback_host, request.getHost().port)
        scheme = "https" if request.isSecure() else "http"
        return f"{scheme}://{host}{request.path.decode('ascii', 'replace')}"

    def render_POST(self, request: Request) -> Any:
        peer = _peer(request)
        body = request.content.read(self.max_body + 1) if request.content is not None else b""
        try:
            element = parse_envelope(body, self.max_body)
            operation = self._operation(element)
            values = decode_request(operation, element)
        except SoapFault as fault:
            self.log.warn("{peer}: SOAP fault for {path}: {fault}", peer=peer, path=request.path, fault=fault)
            return self._fault(request, fault)
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))
        d = Deferred.fromCoroutine(self._call(operation, values, peer))

        def reply(payload: bytes) -> None:
            if not finished[0]:
                request.setHeader(b"content-type", b"text/xml; charset=utf-8")
                request.write(payload)
                request.finish()

        def failed(failure: Failure) -> None:
            if isinstance(failure.value, SoapFault):
                fault = failure.value
                self.log.warn("{peer}: {op}: {fault}", peer=peer, op=operation.name, fault=fault)
            else:
                self.log.failure("{peer}: error in {op}", failure, peer=peer, op=operation.name)
                fault = SoapFault("Server", "internal error")
            if not finished[0]:
                request.write(self._fault(request, fault))
                request.finish()

        d.addCallbacks(reply, failed)
        return server.NOT_DONE_YET

    async def _call(self, operation: Operation, values: dict[str, Any], peer: str) -> bytes:
        result = await self.handler(operation.name, values, peer)
        return build_envelope(encode_response(operation, result, self.namespace))

    def _operation(self, element: etree._Element) -> Operation:
        name = etree.QName(element)
        operation = self.operations.get(name.localname)
        if operation is None or name.namespace not in (None, self.namespace):
            raise client_fault(f"unknown operation {{{name.namespace or ''}}}{name.localname}",
                               f"operations are the *Request elements of namespace {self.namespace}")
        return operation

    @staticmethod
    def _fault(request: Request, fault: SoapFault) -> bytes:
        request.setResponseCode(500)
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        return build_fault(fault)


def _peer(request: Request) -> str:
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return f"{host}:{getattr(address, 'port', 0)}" if host else str(address)
