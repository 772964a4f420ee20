"""A small SOAP 1.1 client for the §8 client API: treq + the platform's own envelope codec.

No zeep at run time: the operations are declared once in
:mod:`globaleye.api.soap.operations`, which gives element names and types both ways,
so requests are built and answers decoded (ints as ints, repeated structs as lists)
from the same table the server uses.
"""

from __future__ import annotations

from typing import Any

import treq
from lxml import etree

from globaleye.api.soap.envelope import SoapFault, build_envelope, parse_envelope
from globaleye.api.soap.operations import MCU_NS, MCU_OPERATIONS, Field, Operation
from globaleye.media.rtsp.paths import PlayUrls
from globaleye.util.urls import request_url

OPERATIONS = {op.name: op for op in MCU_OPERATIONS}
RESULT_OK = 0


class ApiError(Exception):
    """A Result other than 0, or a Fault; ``result`` is the §8 code (None for a Fault)."""

    def __init__(self, operation: str, result: int | None, meaning: str) -> None:
        super().__init__(f"{operation}: {meaning}" + (f" (Result {result})" if result is not None else ""))
        self.result = result


def build_request(operation: Operation, values: dict[str, Any]) -> bytes:
    element = etree.Element(f"{{{MCU_NS}}}{operation.request_element}", nsmap={None: MCU_NS})
    for field in operation.request:
        value = values.get(field.name)
        if value is None:
            continue
        etree.SubElement(element, f"{{{MCU_NS}}}{field.name}").text = str(value)
    return build_envelope(element)


def _decode(fields: tuple[Field, ...], element: etree._Element) -> dict[str, Any]:
    by_name = {f.name: f for f in fields}
    values: dict[str, Any] = {f.name: [] for f in fields if f.many}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        field = by_name.get(name)
        if field is None:
            continue
        if field.struct is not None:
            value: Any = _decode(field.struct.fields, child)
        elif field.type == "int":
            value = int((child.text or "0").strip())
        else:
            value = child.text or ""
        if field.many:
            values[name].append(value)
        else:
            values[name] = value
    return values


def decode_response(operation: Operation, body: bytes) -> dict[str, Any]:
    element = parse_envelope(body, max_size=1 << 20)
    if etree.QName(element).localname == "Fault":
        code = element.findtext("faultcode") or "?"
        raise SoapFault(code.split(":")[-1], element.findtext("faultstring") or "", element.findtext("detail") or "")
    return _decode(operation.response, element)


class McuClient:
    """One account's conversation with the province's client API (``/soap/mcu``)."""

    def __init__(self, url: str, http: Any = None, version: str = "1.0") -> None:
        self.url = url
        self.http = http or treq
        self.version = version
        self.account = ""
        self.session = ""

    async def call(self, name: str, **values: Any) -> dict[str, Any]:
        operation = OPERATIONS[name]
        if any(f.name == "LoginSession" for f in operation.request):
            values.setdefault("Account", self.account)
            values.setdefault("LoginSession", self.session)
        response = await self.http.post(request_url(self.url), data=build_request(operation, values),
                                        headers={"Content-Type": ["text/xml; charset=utf-8"],
                                                 "SOAPAction": [f'"{MCU_NS}#{name}"']})
        body = await response.content()
        try:
            answer = decode_response(operation, body)
        except SoapFault as fault:
            raise ApiError(name, None, str(fault)) from None
        result = answer.get("Result")
        if result != RESULT_OK:
            raise ApiError(name, result, operation.results.get(int(result or -1), "error"))
        return answer

    async def login(self, account: str, password: str) -> list[dict[str, Any]]:
        answer = await self.call("Login", Account=account, Password=password, Version=self.version)
        self.account, self.session = account, answer["LoginSession"]
        return list(answer.get("Device", []))

    async def devices(self) -> list[dict[str, Any]]:
        return list((await self.call("GetDeviceList")).get("Device", []))

    async def play_urls(self, dev_id: str, channel_no: int, stream_type: int) -> PlayUrls:
        answer = await self.call("GetPlayUrl", DevID=dev_id, ChannelNo=channel_no, StreamType=stream_type)
        return PlayUrls(answer.get("LocalPlayUrl") or "", answer.get("UpnpPlayUrl") or "",
                        answer.get("TurnPlayUrl") or "", answer.get("StunIP") or "", answer.get("StunPort") or 0)

    async def logout(self) -> None:
        if self.session:
            try:
                await self.call("Logout")
            except ApiError:
                pass
            self.session = ""
