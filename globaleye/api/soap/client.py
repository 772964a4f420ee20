"""The client side of our SOAP codec: request envelopes out, response envelopes (or Faults) in.  Pure.

The province calls the group (§6) with the same declarations the group serves
(:mod:`globaleye.api.soap.operations`), so the two ends cannot disagree on an element
name.  The answer is parsed by the same safe parser as requests
(:func:`~globaleye.api.soap.envelope.parse_envelope`): a group is a peer, not a
trusted party, and its answer crosses a network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from globaleye.api.soap.envelope import SOAP_ENV, SoapFault, build_envelope, parse_envelope
from globaleye.api.soap.operations import Operation, decode_response, encode_request


def request_envelope(operation: Operation, values: Mapping[str, Any], namespace: str) -> bytes:
    """The POST body that calls *operation* with *values*."""
    return build_envelope(encode_request(operation, values, namespace))


def parse_response(operation: Operation, data: bytes, namespace: str, max_size: int = 65536) -> dict[str, Any]:
    """The response's values by element name; a Fault (or a wrong answer) raises :class:`SoapFault`."""
    element = parse_envelope(data, max_size)
    name = etree.QName(element)
    if element.tag == f"{{{SOAP_ENV}}}Fault":
        fields = {etree.QName(child).localname: (child.text or "").strip()
                  for child in element if isinstance(child.tag, str)}
        code = fields.get("faultcode", "soap:Server").rpartition(":")[2] or "Server"
        raise SoapFault(code, fields.get("faultstring", ""), fields.get("detail", ""))
    if name.localname != operation.response_element or name.namespace not in (None, namespace):
        raise SoapFault("Client", f"expected <{operation.response_element}>, got <{name.localname}>")
    return decode_response(operation, element)
