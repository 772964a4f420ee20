"""Every SOAP operation, declared once: §8.1–§8.17 and the web client's extensions, §9.1 and §6.1–§6.5.

A declaration gives the request and response elements of an operation (names from
the spec's parameter tables), which of them are optional, and the Result codes the
spec lists.  :func:`decode_request`, :func:`encode_response` and the WSDL's XSD
(:mod:`globaleye.api.soap.wsdl`) are all derived from it, and so are the client side's
:func:`encode_request` and :func:`decode_response` (the province calling the group).
Pure: no I/O.

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

from globaleye.api.soap.envelope import _printable, client_fault

MCU_NS = "urn:globaleye:soap:mcu:1"
GROUP_NS = "urn:globaleye:soap:group:1"

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
_INT_OR_LONG = re.compile(r"^[+-]?[0-9]{1,19}$")


@attrs.frozen
class Struct:
    """A complex type of repeated items (a device list entry, a Wi-Fi hotspot, a video encoding)."""

    name: str
    fields: tuple[Field, ...]


@attrs.frozen
class Field:
    name: str
    type: str = "string"  # "string", "int" or "long"; ignored when struct is set
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

# Extensions for the web client of §4 (recording, playback, alarms, sharing); see docs/protocol.md.
EXT_DEVICE_RESULTS = {**SESSION_RESULTS,
                      3: "device does not exist (not on this account, not owned where settings change, no such channel)",
                      4: "device offline (or it did not answer in time)"}
CHANNEL = _i("ChannelNo")
RECORD_POLICY = Struct("RecordPolicy", (
    _i("PolicyID", False, "assigned by the device; absent when adding"), _i("StoreType", False, "0 local, 1 cloud"),
    _i("StreamType", False, "1 main, 2 sub"), _i("Week", False, "1 Monday ... 7 Sunday"),
    _s("StartTime", False, "HH:MM"), _s("EndTime", False, "HH:MM (24:00 allowed), after StartTime"),
))
PICTURE_POLICY = Struct("PicturePolicy", (
    _i("PolicyID", False, "assigned by the device; absent when adding"),
    _i("StoreType", False, "0 FTP, 1 cloud (answers only: a request names it once)"),
    _i("Interval", False, "seconds between pictures; FTP 0 (or absent)"), _s("StartTime", False, "HH:MM"),
    _s("EndTime", False, "HH:MM (24:00 allowed); FTP: StartTime (or absent)"),
))
STREAM = Struct("Stream", (
    _s("Kind", False, "live or playback"), _i("ChannelNo", False), _i("StreamType", False, "1 main, 2 sub (live)"),
    _s("FileName", False, "playback only"),
    _s("State", False, "running, recovering (the camera dropped it; viewers kept), starting or stopped"),
    _s("Path", False, "the §15 path that won: local, upnp, turn-udp or turn-tcp; empty when none"),
    _s("Attempts", False, "each path tried, in order, with its outcome: 'local=failed (TCP connect ... refused); "
                          "upnp=ok (first RTP 3 ms after PLAY)'"),
    _i("Viewers", False, "players watching through the proxy now"),
    _i("Recoveries", False, "times the proxy got this stream back after the camera dropped it"),
    _s("LastStopReason", False),
))
RECORD_FILE = Struct("RecordFile", (
    _s("FileName", False), Field("FileSize", "long", False, doc="bytes"),
    _s("StartTime", False, "YYYYMMDDHHMM"), _s("EndTime", False, "YYYYMMDDHHMM"),
))
ALARM = Struct("Alarm", (
    _i("ChannelNo", False), _i("ExceptionType", False, "§7.5.4 codes"), _s("ExceptionDesc", False),
    _s("Time", False, "YYYYMMDDHHMMSS, Beijing time, when the platform received it"),
))
CLOUD_FILE = Struct("CloudFile", (
    _s("FileName", False, "the object's name, DevID_ChannelNo_YYYYMMDDHHMMSS.ts or .jpg (§7.1.1)"),
    _s("Type", False, "record or picture"), _i("ChannelNo", False),
    _s("StartTime", False, "YYYYMMDDHHMMSS, Beijing time (the name's)"),
    _i("Duration", False, "seconds, from the recording's own timestamps (0 for a picture)"),
    Field("FileSize", "long", False, doc="bytes"),
))
CLOUD_RESULTS = {**SESSION_RESULTS, 3: "device does not exist (not on this account, or no such channel)"}
PLAY_URLS = (RESULT, _s("LocalPlayUrl", False), _s("UpnpPlayUrl", False), _s("TurnPlayUrl", False),
             _s("StunIP", False), _i("StunPort", False))

EXT_OPERATIONS: tuple[Operation, ...] = (
    Operation("AddRecordPolicy", "ext 67H", "Add weekly recording windows to a channel, all or none (owner only).",
              (*AUTH, DEV_ID, CHANNEL, Field("RecordPolicy", many=True, struct=RECORD_POLICY)), (RESULT,),
              {**EXT_DEVICE_RESULTS, 5: "refused by §7.5.13's rules: more than 4 windows on one weekday, or "
                                        "windows overlapping each other or the channel's stored ones"}),
    Operation("GetRecordPolicy", "ext 68H", "The channel's recording windows (owner only).",
              (*AUTH, DEV_ID, CHANNEL), (RESULT, Field("RecordPolicy", required=False, many=True, struct=RECORD_POLICY)),
              EXT_DEVICE_RESULTS),
    Operation("DeleteRecordPolicy", "ext 69H", "Delete one recording window (owner only).",
              (*AUTH, DEV_ID, CHANNEL, _i("PolicyID")), (RESULT,),
              {**EXT_DEVICE_RESULTS, 5: "no such PolicyID on this channel"}),
    Operation("SetFullDayRecord", "ext 78H", "Record the channel all day (1) or by its windows (0) (owner only).",
              (*AUTH, DEV_ID, CHANNEL, _i("RecordFull", doc="1 all day, 0 by policy")), (RESULT,), EXT_DEVICE_RESULTS),
    Operation("GetFullDayRecord", "ext 79H", "The channel's full-day recording flag (owner only).",
              (*AUTH, DEV_ID, CHANNEL), (RESULT, _i("RecordFull", False)), EXT_DEVICE_RESULTS),
    Operation("SetLoopRecord", "ext 7AH", "Overwrite the oldest recordings when full (1) or stop (0) (owner only).",
              (*AUTH, DEV_ID, _i("RecordLoop", doc="1 loop, 0 stop when full")), (RESULT,), EXT_DEVICE_RESULTS),
    Operation("GetLoopRecord", "ext 7BH", "The device's loop recording flag (owner only).",
              (*AUTH, DEV_ID), (RESULT, _i("RecordLoop", False)), EXT_DEVICE_RESULTS),
    Operation("SearchRecords", "ext 72H", "Recordings on the device between two times, 10 a page.",
              (*AUTH, DEV_ID, CHANNEL, _s("StartTime", doc="YYYYMMDDHHMM"), _s("EndTime", doc="YYYYMMDDHHMM"),
               _i("PageNo", False, "from 1 (default 1)")),
              (RESULT, _i("TotalRecordNum", False), _i("PageNo", False),
               Field("RecordFile", required=False, many=True, struct=RECORD_FILE)), EXT_DEVICE_RESULTS),
    Operation("GetPlaybackUrl", "ext 74H", "Playback URLs of one recorded file, one single-use HashToken each.",
              (*AUTH, DEV_ID, CHANNEL, _s("FileName", doc="a FileName of SearchRecords")), PLAY_URLS,
              EXT_DEVICE_RESULTS),
    Operation("SearchAlarms", "ext 34H", "Exceptions and alarms the device reported, newest first, 10 a page.",
              (*AUTH, DEV_ID, _s("StartTime", False, "YYYYMMDDHHMMSS"), _s("EndTime", False, "YYYYMMDDHHMMSS"),
               _i("PageNo", False, "from 1 (default 1)")),
              (RESULT, _i("TotalNum", False), Field("Alarm", required=False, many=True, struct=ALARM)),
              {**SESSION_RESULTS, 3: "device does not exist (not on this account)"}),
    Operation("ShareDevice", "ext", "Let another account view an own device (ShareFlag 1; not counted in DevNum).",
              (*AUTH, DEV_ID, _s("ShareAccount", doc="the guest's mobile number")), (RESULT,),
              {**SESSION_RESULTS, 3: "device does not exist (not owned by this account)",
               5: "ShareAccount is not a registered account, or is the owner"}),
    Operation("UnshareDevice", "ext", "Revoke a share (owner only).",
              (*AUTH, DEV_ID, _s("ShareAccount")), (RESULT,),
              {**SESSION_RESULTS, 3: "device does not exist (not owned by this account)",
               5: "the device is not shared with ShareAccount"}),
    Operation("GetStreamStatus", "ext §15", "How the platform's RTSP proxy reaches the device now: for each "
              "stream it relays (and the last stopped ones), the path that won and why the others failed.",
              (*AUTH, DEV_ID), (RESULT, Field("Stream", required=False, many=True, struct=STREAM)),
              {**SESSION_RESULTS, 3: "device does not exist (not on this account)",
               5: "this platform runs no RTSP proxy"}),
    Operation("GetShareList", "ext", "The accounts an own device is shared with.", (*AUTH, DEV_ID),
              (RESULT, Field("ShareAccount", required=False, many=True)),
              {**SESSION_RESULTS, 3: "device does not exist (not owned by this account)"}),
    # --- picture policies ---
    Operation("AddPicturePolicy", "ext 75H", "Add daily picture (snapshot) policies of one storage to a channel, "
              "all or none (owner only).",
              (*AUTH, DEV_ID, CHANNEL, _i("StoreType", doc="0 FTP, 1 cloud"),
               Field("PicturePolicy", many=True, struct=PICTURE_POLICY)), (RESULT,),
              {**EXT_DEVICE_RESULTS, 5: "refused by the rules (docs/protocol.md item 25): FTP not one snapshot "
                                        "(EndTime = StartTime, Interval 0) or two at one time; cloud Interval not "
                                        "1..86400 or windows overlapping; more than 8 per storage"}),
    Operation("GetPicturePolicy", "ext 76H", "The channel's picture policies, FTP and cloud (owner only).",
              (*AUTH, DEV_ID, CHANNEL),
              (RESULT, Field("PicturePolicy", required=False, many=True, struct=PICTURE_POLICY)), EXT_DEVICE_RESULTS),
    Operation("DeletePicturePolicy", "ext 77H", "Delete one picture policy (owner only).",
              (*AUTH, DEV_ID, CHANNEL, _i("PolicyID")), (RESULT,),
              {**EXT_DEVICE_RESULTS, 5: "no such PolicyID on this channel"}),
    # --- cloud storage (§7.1.2): what the cameras stored, searched in the platform's index ---
    Operation("SearchCloudFiles", "ext §7.1.2", "Recordings or pictures of one channel stored in the cloud that "
              "overlap a time range (a file that began before StartTime and runs into it is included), by start "
              "time (owner or guest).",
              (*AUTH, DEV_ID, CHANNEL, _s("Type", doc="record or picture"),
               _s("StartTime", doc="YYYYMMDDHHMMSS, Beijing time"), _s("EndTime", doc="YYYYMMDDHHMMSS, after StartTime"),
               _i("PageNo", False, "from 1 (default 1)"), _i("PageSize", False, "1..200 (default 20)")),
              (RESULT, _i("TotalNum", False), _i("PageNo", False),
               Field("CloudFile", required=False, many=True, struct=CLOUD_FILE)), CLOUD_RESULTS),
    Operation("GetCloudFileUrl", "ext §7.1.2", "A short-lived download URL of one stored file (owner or guest): "
              "the store checks its signature, no credential is given away.",
              (*AUTH, DEV_ID, _s("FileName", doc="a FileName of SearchCloudFiles")),
              (RESULT, _s("Url", False), _i("Expires", False, "seconds the URL stays valid")),
              {**CLOUD_RESULTS, 5: "no such stored file of this device, or no cloud storage on this platform"}),
    Operation("DeleteCloudFiles", "ext §7.1.2", "Delete one stored file (FileName), or every file of one channel "
              "and Type that overlaps StartTime-EndTime (at most 5000 a call), object and index entry (owner only).",
              (*AUTH, DEV_ID, _s("FileName", False, "one file; else the range below"), _i("ChannelNo", False),
               _s("Type", False, "record or picture"), _s("StartTime", False, "YYYYMMDDHHMMSS"),
               _s("EndTime", False, "YYYYMMDDHHMMSS")),
              (RESULT, _i("DeletedNum", False)),
              {**SESSION_RESULTS, 3: "device does not exist (not owned by this account, or no such channel)",
               5: "no such stored file of this device, or no cloud storage on this platform"}),
    Operation("GetCloudRetention", "ext §7.1.1", "How many days this account's stored files are kept.",
              AUTH, (RESULT, _i("RetentionDays", False, "days (0: for ever)"),
                     _i("OwnChoice", False, "1: set by this account, 0: the platform's default")),
              {**SESSION_RESULTS, 5: "no cloud storage on this platform"}),
    Operation("SetCloudRetention", "ext §7.1.1", "Keep this account's stored files so many days (counted from their "
              "upload), or the platform's default again.",
              (*AUTH, _i("RetentionDays", False, "1..3650; absent: the platform's default")),
              (RESULT,), {**SESSION_RESULTS, 5: "no cloud storage on this platform"}),
)
MCU_OPERATIONS = MCU_OPERATIONS + EXT_OPERATIONS

# §6 (province -> group).  Every call carries the province's identity and the shared CmsPassword.
CMS = (_s("ProvinceNo", doc="first 4 digits of the GB/T 2260 division code"), _s("CmsNo", doc="two digits, e.g. 01"),
       _s("CmsPassword", strip=False, doc="assigned by the group"))
CMS_RESULTS = {0: "success", 1: "platform does not exist (ProvinceNo/CmsNo unknown to the group)",
               2: "CmsPassword wrong"}

GROUP_OPERATIONS: tuple[Operation, ...] = (
    Operation("GetMcuUrl", "9.1", "The province platform's client API address for a mobile number.",
              (_s("MobileTel"),), (RESULT, _s("McuUrl", False), _s("CmsName", False)),
              {0: "success", 1: "no province platform serves this number", 255: "other error (not a mobile number)"}),
    Operation("ReportAddress", "6.1", "A province reports its client API and device registration addresses.",
              (*CMS, _s("CmsVer", doc="platform version, 1.0"), _s("McuUrl"), _s("DevUrl")),
              (RESULT, _s("McuAndroidUrl", False), _s("McuAndroidVer", False), _s("McuIosUrl", False),
               _s("McuIosVer", False)), {**CMS_RESULTS, 255: "other error (a URL is not http(s))"}),
    Operation("OpenService", "6.2", "A user opened the service in the province.",
              (*CMS, _s("MobileTel"), _i("IpcamNum", doc="monitoring points (DevNum)")), (RESULT,),
              {**CMS_RESULTS, 255: "other error (not a mobile number, or open in another province)"}),
    Operation("ChangeService", "6.3", "A user's number of monitoring points changed.",
              (*CMS, _s("MobileTel"), _i("IpcamNum")), (RESULT,),
              {**CMS_RESULTS, 3: "mobile user does not exist (in this province)", 255: "other error"}),
    Operation("CancelService", "6.4", "A user closed the service.", (*CMS, _s("MobileTel")), (RESULT,),
              {**CMS_RESULTS, 3: "mobile user does not exist (in this province)", 255: "other error"}),
    Operation("NotifyDeviceUsage", "6.5", "Claim a device the province does not know for this province (§6.6).",
              (*CMS, DEV_ID, _s("DevKey")),
              (RESULT, _s("ManufacturerNo", False), _s("Mode", False), _i("DevType", False)),
              {**CMS_RESULTS, 3: "device unknown to the group: power it on first", 4: "wrong DevKey",
               255: "other error (claimed by another province, or this province has not reported its DevUrl)"}),
)


def decode_request(operation: Operation, element: etree._Element) -> dict[str, Any]:
    """The request's values by element name; a missing or malformed value is a Client fault."""
    return _decode_fields(operation.request_element, operation.request, element, check_required=True)


def decode_response(operation: Operation, element: etree._Element) -> dict[str, Any]:
    """A response's values (the client side, e.g. the province calling the group); absent ones are None."""
    return _decode_fields(operation.response_element, operation.response, element, check_required=False)


def _decode_fields(where: str, fields: tuple[Field, ...], element: etree._Element,
                   check_required: bool) -> dict[str, Any]:
    children: dict[str, list[etree._Element]] = {}
    for child in element:
        if isinstance(child.tag, str):
            children.setdefault(etree.QName(child).localname, []).append(child)
    values: dict[str, Any] = {}
    for field in fields:
        found = children.get(field.name, [])
        if field.struct is not None:
            # Repeated items (a weekly recording window): each decoded like a small request, but
            # inside the item every child is optional; the operation's handler checks what it needs.
            items = [_decode_fields(f"{where}/{field.name}", field.struct.fields, item, False)
                     for item in (found if field.many else found[:1])]
            if check_required and field.required and not items:
                raise client_fault(f"{where}: {field.name} is missing")
            values[field.name] = items if field.many else (items[0] if items else None)
            continue
        child = found[0] if found else None
        if child is None or (field.type != "string" and not (child.text or "").strip()):
            if field.required and check_required:
                raise client_fault(f"{where}: {field.name} is missing")
            values[field.name] = None
            continue
        text = "".join(child.itertext())
        values[field.name] = _int(where, field, text) if field.type != "string" else (
            text.strip() if field.strip else text)
    return values


def _int(where: str, field: Field, text: str) -> int:
    text = text.strip()
    low, high = (INT_MIN, INT_MAX) if field.type == "int" else (-(2**63), 2**63 - 1)
    if not _INT_OR_LONG.match(text) or not low <= int(text) <= high:
        raise client_fault(f"{where}: {field.name}: {text[:40]!r} is not an xs:{field.type}")
    return int(text)


def encode_request(operation: Operation, values: Mapping[str, Any], namespace: str) -> etree._Element:
    """``<{Op}Request>`` (the client side); None and absent values are omitted."""
    element = etree.Element(f"{{{namespace}}}{operation.request_element}", nsmap={None: namespace})
    _encode_fields(element, operation.request, values, namespace)
    return element


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
                child.text = str(int(item)) if field.type != "string" else _printable(str(item))
