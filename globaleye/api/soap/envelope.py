"""SOAP 1.1 envelopes over lxml: parse safely, build responses and Faults.  Pure: bytes in, bytes out.

Clients are phones on hostile networks, so the parser trusts nothing: any DOCTYPE
or entity declaration is refused before lxml sees the bytes (billion laughs, XXE),
the parser itself never loads a DTD, resolves an entity or touches the network,
and the size and the nesting depth are bounded.  Only UTF-8 is accepted (SOAP 1.1
clients all send it), which also means a UTF-16 document cannot smuggle a
``<!DOCTYPE`` past the byte check.
"""

from __future__ import annotations

import re

import attrs
from lxml import etree

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MAX_ENVELOPE = 65536
MAX_DEPTH = 16

_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.IGNORECASE)
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                          huge_tree=False, remove_comments=True, remove_pis=True)


@attrs.frozen
class SoapFault(Exception):
    """A SOAP 1.1 Fault: ``code`` is ``Client`` (the request is wrong) or ``Server``."""

    code: str
    string: str
    detail: str = ""

    def __str__(self) -> str:
        return f"soap:{self.code}: {self.string}"


def client_fault(string: str, detail: str = "") -> SoapFault:
    return SoapFault("Client", string, detail)


def parse_envelope(data: bytes, max_size: int = MAX_ENVELOPE) -> etree._Element:
    """Return the one element inside ``soap:Body``, or raise a Client :class:`SoapFault`."""
    if len(data) > max_size:
        raise client_fault(f"envelope larger than {max_size} bytes")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise client_fault("only UTF-8 envelopes are accepted")
    if _DECLARATION.search(data):
        raise client_fault("DOCTYPE and entity declarations are not allowed")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as e:
        raise client_fault(f"not well-formed XML: {e}") from None
    if root.getroottree().docinfo.internalDTD is not None:  # belt and braces
        raise client_fault("DOCTYPE and entity declarations are not allowed")
    if _depth(root) > MAX_DEPTH:
        raise client_fault(f"nesting deeper than {MAX_DEPTH}")
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise SoapFault("VersionMismatch" if etree.QName(root).localname == "Envelope" else "Client",
                        "not a SOAP 1.1 Envelope (namespace http://schemas.xmlsoap.org/soap/envelope/)")
    body = None
    for child in root:
        if not isinstance(child.tag, str):
            continue
        if child.tag == f"{{{SOAP_ENV}}}Header":
            for entry in child:
                if isinstance(entry.tag, str) and entry.get(f"{{{SOAP_ENV}}}mustUnderstand") in ("1", "true"):
                    raise SoapFault("MustUnderstand", f"header {etree.QName(entry).localname} is not understood")
        elif child.tag == f"{{{SOAP_ENV}}}Body":
            body = child
    if body is None:
        raise client_fault("the Envelope has no Body")
    elements = [child for child in body if isinstance(child.tag, str)]
    if len(elements) != 1:
        raise client_fault(f"the Body must hold exactly one request element, found {len(elements)}")
    return elements[0]


def build_envelope(payload: etree._Element) -> bytes:
    """``payload`` wrapped in an Envelope and Body, as UTF-8 with a declaration."""
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    body.append(payload)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def build_fault(fault: SoapFault) -> bytes:
    """A SOAP 1.1 Fault envelope (to be sent with HTTP 500, SOAP 1.1 §6.2)."""
    element = etree.Element(f"{{{SOAP_ENV}}}Fault", nsmap={"soap": SOAP_ENV})
    etree.SubElement(element, "faultcode").text = f"soap:{fault.code}"
    etree.SubElement(element, "faultstring").text = _printable(fault.string)
    if fault.detail:
        etree.SubElement(element, "detail").text = _printable(fault.detail)
    return build_envelope(element)


def _printable(text: str) -> str:
    """Text lxml can serialize (parser messages may quote control characters)."""
    return "".join(c if c in "\t\n" or " " <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd" else "?" for c in text)


def _depth(element: etree._Element) -> int:
    deepest, stack = 0, [(element, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in node)
    return deepest
