"""The WSDL 1.1 (with its XSD) of an endpoint, generated from :mod:`globaleye.api.soap.operations`.

Generated rather than hand-written so that the schema a client compiles is, by
construction, what the server decodes and encodes.  The document is built once
per endpoint; only ``soap:address`` changes with the Host the client used, so that
a client that fetched ``http://host:port/soap/mcu?wsdl`` posts back to the same
address (behind NAT or a proxy the platform does not know its own public name).
"""

from __future__ import annotations

import copy

from lxml import etree

from globaleye.api.soap.operations import Field, Operation, Struct

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP_BIND_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
HTTP_TRANSPORT = "http://schemas.xmlsoap.org/soap/http"

_W, _S, _X = f"{{{WSDL_NS}}}", f"{{{SOAP_BIND_NS}}}", f"{{{XSD_NS}}}"


class Wsdl:
    """One endpoint's WSDL: ``document(location)`` returns the bytes for that address."""

    def __init__(self, service_name: str, namespace: str, operations: tuple[Operation, ...]) -> None:
        self.namespace = namespace
        self._tree = build_wsdl(service_name, namespace, operations)

    def document(self, location: str) -> bytes:
        tree = copy.deepcopy(self._tree)
        for address in tree.iter(f"{_S}address"):
            address.set("location", location)
        return bytes(etree.tostring(tree, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def build_wsdl(service_name: str, namespace: str, operations: tuple[Operation, ...]) -> etree._Element:
    nsmap = {"wsdl": WSDL_NS, "soap": SOAP_BIND_NS, "xs": XSD_NS, "tns": namespace}
    root = etree.Element(f"{_W}definitions", nsmap=nsmap, name=service_name, targetNamespace=namespace)
    types = etree.SubElement(root, f"{_W}types")
    schema = etree.SubElement(types, f"{_X}schema", targetNamespace=namespace, elementFormDefault="qualified")

    structs: dict[str, Struct] = {}
    for operation in operations:
        for field in (*operation.request, *operation.response):
            _collect(field, structs)
    for struct in structs.values():
        complex_type = etree.SubElement(schema, f"{_X}complexType", name=struct.name)
        _sequence(complex_type, struct.fields, response=True)
    for operation in operations:
        for name, fields, response in ((operation.request_element, operation.request, False),
                                       (operation.response_element, operation.response, True)):
            element = etree.SubElement(schema, f"{_X}element", name=name)
            _documentation(element, _describe(operation, response))
            _sequence(etree.SubElement(element, f"{_X}complexType"), fields, response)

    for operation in operations:
        for name in (operation.request_element, operation.response_element):
            message = etree.SubElement(root, f"{_W}message", name=name)
            etree.SubElement(message, f"{_W}part", name="parameters", element=f"tns:{name}")

    port_type = etree.SubElement(root, f"{_W}portType", name=f"{service_name}PortType")
    for operation in operations:
        op = etree.SubElement(port_type, f"{_W}operation", name=operation.name)
        etree.SubElement(op, f"{_W}documentation").text = f"§{operation.section}: {operation.doc}"
        etree.SubElement(op, f"{_W}input", message=f"tns:{operation.request_element}")
        etree.SubElement(op, f"{_W}output", message=f"tns:{operation.response_element}")

    binding = etree.SubElement(root, f"{_W}binding", name=f"{service_name}Binding", type=f"tns:{service_name}PortType")
    etree.SubElement(binding, f"{_S}binding", style="document", transport=HTTP_TRANSPORT)
    for operation in operations:
        op = etree.SubElement(binding, f"{_W}operation", name=operation.name)
        etree.SubElement(op, f"{_S}operation", soapAction=f"{namespace}#{operation.name}", style="document")
        for direction in ("input", "output"):
            etree.SubElement(etree.SubElement(op, f"{_W}{direction}"), f"{_S}body", use="literal")

    service = etree.SubElement(root, f"{_W}service", name=service_name)
    port = etree.SubElement(service, f"{_W}port", name=f"{service_name}Port", binding=f"tns:{service_name}Binding")
    etree.SubElement(port, f"{_S}address", location="http://localhost/")
    return root


def _collect(field: Field, structs: dict[str, Struct]) -> None:
    if field.struct is not None and field.struct.name not in structs:
        structs[field.struct.name] = field.struct
        for inner in field.struct.fields:
            _collect(inner, structs)


def _sequence(parent: etree._Element, fields: tuple[Field, ...], response: bool) -> None:
    sequence = etree.SubElement(parent, f"{_X}sequence")
    for field in fields:
        kind = f"tns:{field.struct.name}" if field.struct is not None else f"xs:{field.type}"
        # Responses omit what does not apply (a failed Login has no LoginSession); only Result is always there.
        optional = (response and field.name != "Result") or not field.required
        attributes = {"name": field.name, "type": kind, "minOccurs": "0" if optional else "1"}
        if field.many:
            attributes["maxOccurs"] = "unbounded"
        element = etree.SubElement(sequence, f"{_X}element", attributes)
        if field.doc:
            _documentation(element, field.doc)


def _describe(operation: Operation, response: bool) -> str:
    if not response:
        return f"§{operation.section} {operation.name}: {operation.doc}"
    codes = "; ".join(f"{code}: {meaning}" for code, meaning in operation.results.items())
    return f"§{operation.section} {operation.name} answer. Result {codes}."


def _documentation(element: etree._Element, text: str) -> None:
    annotation = etree.SubElement(element, f"{_X}annotation")
    etree.SubElement(annotation, f"{_X}documentation").text = text
