"""Every operation of the client API, declared once: §8.1–§8.17, one extension, and §9.1.

A declaration gives the request and response elements of an operation (names from
the spec's parameter tables), which of them are optional, and the Result codes the
spec lists.  :func:`decode_request`, :func:`encode_response` and the WSDL's XSD
(:mod:`globaleye.soap.wsdl`) are all derived from it.  Pure: no I/O.

Element names: the request of operation ``Login`` is ``<LoginRequest>``, its answer
``<LoginResponse>``, both in the namespace of the endpoint (:data:`MCU_NS` or
:data:`GROUP_NS`), children qualified (``elementFormDefault="qualified"``).  Children
are matched by local name on input, so a client that leaves them unqualified is
understood too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs
from lxml import etree

from globaleye.soap.envelope import _printable, client_fault

MCU_NS = "urn:globaleye:soap:mcu:1"
GROUP_NS = "urn:globaleye:soap:group:1"

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
_INT = re.compile(r"^[+-]?[0-9]{1,10}$")


@attrs.frozen
class Struct:
    """A complex type of repeated items (a device list entry, a Wi-Fi hotspot, a video encoding)."""

    name: str
    fields: tuple[Field, ...]


@attrs.frozen
class Field:
    name: str
    type: str = "string"  # "string" or "int"; ignored when struct is set
    required: bool = True  # requests: minOccurs=1; responses: always optional but Result
    many: bool = False
    struct: Struct | None = None
    strip: bool = True  # passwords keep their spaces
    doc: str = ""


@attrs.frozen
class Operation:
    name: str
    section: str
    doc: str
    request: tuple[Field, ...]
    response: tuple[Field, ...]
    results: Mapping[int, str]

    @property
    def request_element(self) -> str:
        return f"{self.name}Request"

    @property
    def response_element(self) -> str:
        return f"{self.name}Response"


def _s(name: str, required: bool = True, doc: str = "", strip: bool = True) -> Field:
    return Field(name, "string", required, strip=strip, doc=doc)


def _i(name: str, required: bool = True, doc: str = "") -> Field:
    return Field(name, "int", required, doc=doc)


RESULT = _i("Result")
ACCOUNT, SESSION = _s("Account", doc="mobile number"), _s("LoginSession")
DEV_ID = _s("DevID")
AUTH = (ACCOUNT, SESSION)
VIDEO = Struct("Video", (_i("StreamType", False, "1 main, 2 sub"), _i("FrameSize", False, "1=720P, 2=D1, 3=CIF")))
DEVICE = Struct("Device", (
    _s("DevID", False), _i("ChannelNo", False), _s("Name", False), _i("OnLine", False, "0 offline, 1 online"),
    _i("PtzFlag", False), _i("ShareFlag", False, "0 own, 1 shared"),
    Field("Video", required=False, many=True, struct=VIDEO),
))
WIFI = Struct("Wifi", (_s("SSID", False), _i("Signal", False), _i("Security", False), _i("InUser", False)))
DEVICES = Field("Device", required=False, many=True, struct=DEVICE)

SESSION_RESULTS = {0: "success", 1: "account does not exist", 2: "session expired"}
DEVICE_RESULTS = {**SESSION_RESULTS, 3: "device does not exist (not on this account, unknown channel, or offline)"}

MCU_OPERATIONS: tuple[Operation, ...] = (
    Operation("GetSmsCode", "8.1", "Send a verification code by SMS to a mobile number.",
              (_s("MobileTel"), _i("Type", doc="0: password (registration)")), (RESULT,),
              {0: "code sent", 2: "SMS could not be sent (bad number, too many requests, gateway failure)"}),
    Operation("RegisterUser", "8.2", "Self-registration with the SMS code.",
              (_s("MobileTel"), _s("Password", strip=False), _s("SmsKey")), (RESULT,),
              {0: "registered", 1: "already registered", 2: "wrong or expired SMS code",
               3: "this number cannot subscribe (not a mobile number, or the password is not 6-32 characters)"}),
    Operation("Login", "8.3", "Authenticate; returns the LoginSession and the device list.",
              (ACCOUNT, _s("Password", strip=False), _s("Version", doc="MCU version, e.g. 1.0")),
              (RESULT, _s("UpdateUrl", False), _s("LoginSession", False), _i("DevNum", False), DEVICES),
              {0: "authenticated", 1: "account does not exist", 2: "wrong password (or account locked)",
               3: "MCU version too old: see UpdateUrl"}),
    Operation("Logout", "8.4", "End a LoginSession.", AUTH, (RESULT,),
              {0: "logged out (also when the session had already ended)", 1: "account does not exist"}),
    Operation("GetDeviceList", "8.5", "Refresh the device list.", AUTH, (RESULT, DEVICES), SESSION_RESULTS),
    Operation("AddDevice", "8.6", "Bind a device to the account.", (*AUTH, DEV_ID, _s("DevKey")), (RESULT,),
              {**SESSION_RESULTS, 3: "unknown device: power it on first", 4: "wrong device key",
               5: "binding limit (DevNum) reached", 255: "other error (the device belongs to another account)"}),
    Operation("RemoveDevice", "8.7", "Release an own device (shared ones cannot be removed).",
              (*AUTH, DEV_ID, _s("DevKey")), (RESULT,),
              {**SESSION_RESULTS, 3: "device does not exist (not owned by this account, or wrong key)"}),
    Operation("CloseAccount", "8.8", "Close the account: bindings released, sessions ended.", AUTH, (RESULT,),
              SESSION_RESULTS),
    Operation("GetPlayUrl", "8.9", "Live-view URLs with one-time HashTokens (valid 60 s).",
              (*AUTH, DEV_ID, _i("ChannelNo"), _i("StreamType")),
              (RESULT, _s("LocalPlayUrl", False), _s("UpnpPlayUrl", False), _s("TurnPlayUrl", False),
               _s("StunIP", False), _i("StunPort", False)), DEVICE_RESULTS),
    Operation("PtzControl", "8.10", "Move the camera head (64H).",
              (*AUTH, DEV_ID, _i("ChannelNo"), _i("PtzDirection", doc="0 stop, 1 up, 2 down, 3 left, 4 right")),
              (RESULT,), {**DEVICE_RESULTS, 3: "device does not exist", 4: "device offline"}),
    Operation("GetVideoParams", "8.11", "Query a stream's encoding (61H).",
              (*AUTH, DEV_ID, _i("ChannelNo"), _i("StreamType")),
              (RESULT, _s("DevID", False), _i("FrameSize", False), _i("FrameRate", False), _i("RateType", False),
               _i("BitRate", False), _i("AudioInput", False)), DEVICE_RESULTS),
    Operation("SetVideoParams", "8.12", "Change a stream's encoding (60H); absent fields stay unchanged.",
              (*AUTH, DEV_ID, _i("ChannelNo"), _i("StreamType"), _i("FrameSize", False), _i("FrameRate", False),
               _i("RateType", False), _i("BitRate", False), _i("AudioInput", False)), (RESULT,), DEVICE_RESULTS),
    Operation("QueryWifi", "8.13", "The strongest Wi-Fi networks the device sees (62H).", (*AUTH, DEV_ID),
              (RESULT, Field("Wifi", required=False, many=True, struct=WIFI)), DEVICE_RESULTS),
    Operation("SetWifi", "8.14", "Join a Wi-Fi network (63H).",
              (*AUTH, DEV_ID, _s("SSID", strip=False), _i("Security"), _s("Password", strip=False)), (RESULT,),
              DEVICE_RESULTS),
    Operation("RebootDevice", "8.15", "Reboot the device (6CH).", (*AUTH, DEV_ID), (RESULT,), DEVICE_RESULTS),
    Operation("GetFirmwareVersion", "8.16", "Current and newest firmware versions.", (*AUTH, DEV_ID),
              (RESULT, _s("CurDevVer", False), _s("NewDevVer", False)),
              {**SESSION_RESULTS, 3: "device does not exist"}),
    Operation("UpgradeDevice", "8.17", "Tell the device to upgrade to the newest firmware (6DH).", (*AUTH, DEV_ID),
              (RESULT,), DEVICE_RESULTS),
    Operation("ChangePassword", "ext", "Change the password (§4 item 7); every session of the account ends.",
              (*AUTH, _s("OldPassword", strip=False), _s("NewPassword", strip=False)), (RESULT,),
              {**SESSION_RESULTS, 3: "wrong old password, or the new one is not 6-32 characters"}),
)

GROUP_OPERATIONS: tuple[Operation, ...] = (
    Operation("GetMcuUrl", "9.1", "The province platform's client API address for a mobile number.",
              (_s("MobileTel"),), (RESULT, _s("McuUrl", False), _s("CmsName", False)),
              {0: "success", 1: "no province platform serves this number", 255: "other error (not a mobile number)"}),
)


def decode_request(operation: Operation, element: etree._Element) -> dict[str, Any]:
    """The request's values by element name; a missing or malformed value is a Client fault."""
    children: dict[str, etree._Element] = {}
    for child in element:
        if isinstance(child.tag, str):
            children.setdefault(etree.QName(child).localname, child)
    values: dict[str, Any] = {}
    for field in operation.request:
        child = children.get(field.name)
        if child is None or (field.type == "int" and not (child.text or "").strip()):
            if field.required:
                raise client_fault(f"{operation.request_element}: {field.name} is missing")
            values[field.name] = None
            continue
        text = "".join(child.itertext())
        values[field.name] = _int(operation, field, text) if field.type == "int" else (
            text.strip() if field.strip else text)
    return values


def _int(operation: Operation, field: Field, text: str) -> int:
    text = text.strip()
    if not _INT.match(text) or not INT_MIN <= int(text) <= INT_MAX:
        raise client_fault(f"{operation.request_element}: {field.name}: {text[:40]!r} is not an xs:int")
    return int(text)


def encode_response(operation: Operation, values: Mapping[str, Any], namespace: str) -> etree._Element:
    """``<{Op}Response>`` with the declared children in order; None and absent values are omitted."""
    element = etree.Element(f"{{{namespace}}}{operation.response_element}", nsmap={None: namespace})
    _encode_fields(element, operation.response, values, namespace)
    return element


def _encode_fields(parent: etree._Element, fields: tuple[Field, ...], values: Mapping[str, Any],
                   namespace: str) -> None:
    for field in fields:
        value = values.get(field.name)
        if value is None:
            continue
        items = value if field.many else [value]
        for item in items:
            child = etree.SubElement(parent, f"{{{namespace}}}{field.name}")
            if field.struct is not None:
                _encode_fields(child, field.struct.fields, item, namespace)
            else:
                child.text = str(int(item)) if field.type == "int" else _printable(str(item))
