"""Every XML message between a device and the platforms (spec §5, §7.2, §7.5).

The classes are declarative tables in the style of aioice's ``stun.py``: each
message declares its elements once, in the order of the specification, as attrs
fields whose metadata carries the XML element name, accepted aliases, kind and
range.  A single generic pair of routines (:func:`_decode` / :func:`_encode`)
reads and writes all of them, so a fix to the codec fixes every message.

Field names are the mechanical snake_case of the element names (``DevID`` ->
``dev_id``, ``PTZFlag`` -> ``ptz_flag``, ``EAccount`` -> ``e_account``,
``WifiSSID`` -> ``wifi_ssid``); repeated sub-elements keep the singular element
name (``Video`` -> ``video``, ``WeekPolicy`` -> ``week_policy``, ``File`` ->
``file``) and hold tuples.  The only deliberate departure from "int defaults to
0" is the set-commands 60H and 6AH, where the spec says a missing element means
"leave unchanged": their settable fields are ``int | None`` and None is omitted.

Decisions on the spec's gaps and contradictions are written down in
docs/protocol-messages.md.  Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, ClassVar, Literal, Self

import attrs
from lxml import etree  # type: ignore[import-untyped]

from globaleye.device.protocol.xmlcodec import (
    MessageError,
    check_xml_text,
    element_text,
    iter_children,
    parse_document,
    parse_int,
    serialize,
)

__all__ = [
    "ALL_MESSAGES",
    "MESSAGES_BY_ROOT",
    "REQUESTS",
    "RESPONSES",
    "Message",
    "MessageError",
    "Request",
    "Response",
    "XmlField",
    "parse",
    "response_type",
]

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
PORT_MAX = 65535

_META = "globaleye.xml"

Kind = Literal["str", "int", "list", "one"]


@attrs.frozen
class XmlField:
    """How one attrs field maps onto XML; kept in the field's metadata."""

    name: str
    kind: Kind
    aliases: tuple[str, ...] = ()
    item: type | None = None
    maximum: int = INT32_MAX
    optional: bool = False

    @property
    def names(self) -> frozenset[str]:
        return frozenset(n.casefold() for n in (self.name, *self.aliases))


def _tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


def text(name: str, *aliases: str) -> Any:
    """A string element; missing or empty reads as ""."""
    return attrs.field(default="", metadata={_META: XmlField(name, "str", aliases)})


def integer(name: str, *aliases: str, maximum: int = INT32_MAX, optional: bool = False) -> Any:
    """A non-negative decimal element (codes, flags, counts, results)."""
    spec = XmlField(name, "int", aliases, maximum=maximum, optional=optional)
    return attrs.field(default=None if optional else 0, metadata={_META: spec})


def port(name: str, *aliases: str) -> Any:
    """A TCP/UDP port: 0..65535 (0 when unknown)."""
    return integer(name, *aliases, maximum=PORT_MAX)


def many(name: str, item: type, *aliases: str) -> Any:
    """A repeated sub-element, as a tuple of small attrs objects."""
    spec = XmlField(name, "list", aliases, item=item)
    return attrs.field(default=(), converter=_tuple, metadata={_META: spec})


def one(name: str, item: type, *aliases: str) -> Any:
    """An optional single sub-element; None means absent."""
    return attrs.field(default=None, metadata={_META: XmlField(name, "one", aliases, item=item)})


def xml_fields(cls: type) -> Iterable[tuple[attrs.Attribute[Any], XmlField]]:
    for f in attrs.fields(cls):
        yield f, f.metadata[_META]


# --------------------------------------------------------------------------- codec


def _decode(cls: type, element: etree._Element) -> Any:
    children = list(iter_children(element))
    kwargs: dict[str, Any] = {}
    for f, spec in xml_fields(cls):
        names = spec.names
        found = [c for c in children if str(c.tag).casefold() in names]
        if spec.kind == "list":
            assert spec.item is not None
            # "<Video>.....</Video>" copied from the spec carries nothing: skip it.
            kwargs[f.name] = tuple(
                _decode(spec.item, c) for c in found if next(iter_children(c), None) is not None
            )
        elif not found:
            continue
        elif spec.kind == "one":
            assert spec.item is not None
            kwargs[f.name] = _decode(spec.item, found[0])
        else:
            value = element_text(found[0])
            if not value:
                continue
            if spec.kind == "int":
                kwargs[f.name] = parse_int(spec.name, value, 0, spec.maximum)
            else:
                kwargs[f.name] = value
    return cls(**kwargs)


def _encode(obj: Any, element: etree._Element) -> None:
    for f, spec in xml_fields(type(obj)):
        value = getattr(obj, f.name)
        if spec.kind == "list":
            assert spec.item is not None
            for item in value:
                if not isinstance(item, spec.item):
                    raise MessageError(f"{spec.name}: expected {spec.item.__name__}, got {item!r}")
                _encode(item, etree.SubElement(element, spec.name))
        elif spec.kind == "one":
            assert spec.item is not None
            if value is None:
                continue
            if not isinstance(value, spec.item):
                raise MessageError(f"{spec.name}: expected {spec.item.__name__}, got {value!r}")
            _encode(value, etree.SubElement(element, spec.name))
        elif spec.kind == "int":
            if value is None and spec.optional:
                continue
            if not isinstance(value, int):
                raise MessageError(f"{spec.name}: {value!r} is not an integer")
            if not 0 <= value <= spec.maximum:
                raise MessageError(f"{spec.name}: {value!r} is out of range 0..{spec.maximum}")
            etree.SubElement(element, spec.name).text = str(int(value))
        else:
            if not isinstance(value, str):
                raise MessageError(f"{spec.name}: {value!r} is not a string")
            check_xml_text(spec.name, value)
            etree.SubElement(element, spec.name).text = value


# --------------------------------------------------------------------------- bases


@attrs.frozen
class Message:
    """Base of every message: strict ``to_xml``, liberal ``from_xml``."""

    CMD: ClassVar[int | None] = None
    ROOT: ClassVar[str] = ""
    IS_RESPONSE: ClassVar[bool] = False
    #: True when the device starts the exchange (31H-36H, 74H, and §5/§7.2 HTTP).
    DEVICE_INITIATED: ClassVar[bool] = False

    def to_xml(self) -> bytes:
        root = etree.Element(self.ROOT)
        _encode(self, root)
        return serialize(root)

    @classmethod
    def from_xml(cls, data: bytes) -> Self:
        root = parse_document(data)
        tag = str(root.tag)
        if tag.casefold() != cls.ROOT.casefold():
            raise MessageError(f"expected root element <{cls.ROOT}>, got <{tag}>")
        result: Self = _decode(cls, root)
        return result


@attrs.frozen
class Request(Message):
    """A request (…_REQ)."""


@attrs.frozen
class Response(Message):
    """A response (…_RES): every one starts with Result and DevID.

    Result is given to all responses, including the three the spec prints
    without one (ABILITYUP_RES, HEARTBEAT_RES, NOTIFY_PICTURE_RES): a missing
    Result reads as 0 (success), which is what those examples mean.
    """

    IS_RESPONSE = True

    result: int = integer("Result", maximum=255)
    dev_id: str = text("DevID")


# --------------------------------------------------------------------------- enumerations


class DevType(enum.IntEnum):
    """§5/§7.2 DevType."""

    IPCAM = 1
    DVR = 2
    NVR = 3


class NetType(enum.IntEnum):
    """§7.5.1 NetType."""

    WIRED = 0
    WIFI = 1
    CELLULAR_3G = 2


class StreamType(enum.IntEnum):
    MAIN = 1
    SUB = 2


class FrameSize(enum.IntEnum):
    """The §7.5.6/§7.5.7 *tables* (the examples and §8 use 1=720P, 2=D1, 3=CIF)."""

    P720 = 1
    VGA = 2
    D1 = 3
    CIF = 4
    QVGA = 5


class RateType(enum.IntEnum):
    CBR = 1
    VBR = 2


#: §7.5.6 BitRate code -> kbit/s.
BIT_RATES_KBPS = {
    1: 96, 2: 128, 3: 196, 4: 256, 5: 384, 6: 512, 7: 768,
    8: 1024, 9: 1536, 10: 2048, 11: 2560, 12: 3072, 13: 4096,
}  # fmt: skip


class WifiSecurity(enum.IntEnum):
    """§7.5.8/§7.5.9 Security."""

    NONE = 0
    WEP = 1
    WPA_PSK = 2
    WPA_WPA2_PSK = 3
    WPA2_PSK = 4
    OTHER = 5


class PtzDirection(enum.IntEnum):
    """§7.5.10 PtzDirection."""

    STOP = 0
    UP = 1
    DOWN = 2
    LEFT = 3
    RIGHT = 4


class ExceptionType(enum.IntEnum):
    """§7.5.4 ExceptionType (0 = unknown, see ExceptionDesc)."""

    UNKNOWN = 0
    ESTORE_LOGIN_FAILED = 1
    ESTORE_MKDIR_FAILED = 2
    ESTORE_DELETE_FAILED = 3
    ESTORE_UPLOAD_FAILED = 4
    ESTORE_FULL = 5
    DISK_ERROR = 6
    POWER_ERROR = 7
    LENS_ERROR = 8
    ILLEGAL_ACCESS = 9
    POLICY_IGNORED_MANUAL_RECORDING = 10
    UPGRADE_FAILED = 11
    UPNP_MAPPING_FAILED = 12


class RecordStoreType(enum.IntEnum):
    """§7.5.13 StoreType of recordings."""

    LOCAL = 0
    ESTORE = 1


class PictureStoreType(enum.IntEnum):
    """§7.5.24 StoreType of pictures."""

    FTP = 0
    ESTORE = 1


class Result(enum.IntEnum):
    """Result codes common to all responses; per-message extras are in docstrings."""

    OK = 0
    OTHER_ERROR = 255


# --------------------------------------------------------------------------- nested items


@attrs.frozen
class VideoAbility:
    """§7.5.2 ``<Video>``: one encoding capability of the device."""

    stream_type: int = integer("StreamType")
    frame_size: int = integer("FrameSize")


@attrs.frozen
class OnvifAccess:
    """§7.5.2 ``<Onvif>``: how an NVR reaches this IPC over ONVIF."""

    port: int = port("Port")
    account: str = text("Account")
    password: str = text("Password")


@attrs.frozen
class WifiHotspot:
    """§7.5.8 ``<WifiSSID>`` (InUser of §8.13 accepted as an alias of InUse)."""

    ssid: str = text("SSID")
    signal: int = integer("Signal")
    security: int = integer("Security")
    in_use: int = integer("InUse", "InUser")


@attrs.frozen
class RecordPolicy:
    """§7.5.13 ``<WeekPolicy>`` as added (no PolicyID: the device assigns it)."""

    store_type: int = integer("StoreType")
    stream_type: int = integer("StreamType")
    week: int = integer("Week")
    start_time: str = text("StartTime")
    end_time: str = text("EndTime")


@attrs.frozen
class RecordPolicyEntry:
    """§7.5.14 ``<WeekPolicy>`` as stored on the device, with its PolicyID."""

    policy_id: int = integer("PolicyID")
    store_type: int = integer("StoreType")
    stream_type: int = integer("StreamType")
    week: int = integer("Week")
    start_time: str = text("StartTime")
    end_time: str = text("EndTime")


@attrs.frozen
class PicturePolicy:
    """§7.5.24 ``<DayPolicy>`` as added."""

    interval: int = integer("Interval")
    start_time: str = text("StartTime")
    end_time: str = text("EndTime")


@attrs.frozen
class PicturePolicyEntry:
    """§7.5.25 ``<DayPolicy>`` as stored on the device, with its PolicyID."""

    policy_id: int = integer("PolicyID")
    interval: int = integer("Interval")
    start_time: str = text("StartTime")
    end_time: str = text("EndTime")


@attrs.frozen
class IpcamBinding:
    """§7.5.21 ``<Channel>``: which IPC an NVR channel records."""

    channel_no: int = integer("ChannelNo")
    ipcam_dev_id: str = text("IpcamDevID")


@attrs.frozen
class RecordFile:
    """§7.5.22 ``<File>``: one recording; times are YYYYMMDDHHMM strings."""

    file_name: str = text("FileName")
    file_size: int = integer("FileSize", maximum=INT64_MAX)
    start_time: str = text("StartTime")
    end_time: str = text("EndTime")


NESTED_TYPES: tuple[type, ...] = (
    VideoAbility,
    OnvifAccess,
    WifiHotspot,
    RecordPolicy,
    RecordPolicyEntry,
    PicturePolicy,
    PicturePolicyEntry,
    IpcamBinding,
    RecordFile,
)


# --------------------------------------------------------------------------- §5, §7.2 (HTTP)


@attrs.frozen
class RedirectRequest(Request):
    """§5, device -> group platform (HTTP POST): where is my province platform?

    DevType: 1 IPCAM, 2 DVR, 3 NVR.  ManufacturerNo is kept as text: it is an
    identifier (the first three digits of DevID, table in §7.2), not a quantity.
    """

    ROOT = "REDIRECT_REQ"
    DEVICE_INITIATED = True

    manufacturer_no: str = text("ManufacturerNo")
    mode: str = text("Mode", "Model")
    dev_type: int = integer("DevType")
    dev_id: str = text("DevID")
    dev_key: str = text("DevKey")


@attrs.frozen
class RedirectResponse(Response):
    """§5, group platform -> device.  Result: 0 ok, 1 address unknown, 255 other."""

    ROOT = "REDIRECT_RES"
    DEVICE_INITIATED = True

    lcms_url: str = text("LcmsUrl")


@attrs.frozen
class RegisterRequest(Request):
    """§7.2, device -> province platform (HTTP POST): fields as REDIRECT_REQ."""

    ROOT = "REGISTER_REQ"
    DEVICE_INITIATED = True

    manufacturer_no: str = text("ManufacturerNo")
    mode: str = text("Mode", "Model")
    dev_type: int = integer("DevType")
    dev_id: str = text("DevID")
    dev_key: str = text("DevKey")


@attrs.frozen
class RegisterResponse(Response):
    """§7.2, province platform -> device: primary/backup gateway, TURN, FTP.

    Result: 0 ok, 1 no such device, 2 wrong key, 3 firmware not supported, 255
    other.  The Ftp* elements appear in the example only, not the table; kept.
    """

    ROOT = "REGISTER_RES"
    DEVICE_INITIATED = True

    nat_ip: str = text("NatIP")
    nat_port: int = port("NatPort")
    backup_nat_ip: str = text("BackupNatIP")
    backup_nat_port: int = port("BackupNatPort")
    turn_ip: str = text("TurnIP")
    turn_port: int = port("TurnPort")
    backup_turn_ip: str = text("BackupTurnIP")
    backup_turn_port: int = port("BackupTurnPort")
    ftp_ip: str = text("FtpIP")
    ftp_port: int = port("FtpPort")
    ftp_account: str = text("FtpAccount")
    ftp_password: str = text("FtpPassword")
    time: str = text("Time")


# ------------------------------------------------------------ 31H-36H (device -> platform)


@attrs.frozen
class LoginRequest(Request):
    """§7.5.1 (31H), device -> platform: first frame on the TCP session.

    UpnpIP is "0.0.0.0" when the UPnP mapping failed.  NetType: 0 wired, 1 Wi-Fi,
    2 3G.  RtspUpnpPort/RtspLocalPort also accept the example's UpnpPort/LocalPort.
    """

    CMD = 0x31
    ROOT = "LOGIN_REQ"
    DEVICE_INITIATED = True

    dev_ver: str = text("DevVer")
    dev_id: str = text("DevID")
    dev_key: str = text("DevKey")
    upnp_ip: str = text("UpnpIP")
    rtsp_upnp_port: int = port("RtspUpnpPort", "UpnpPort")
    local_ip: str = text("LocalIP")
    rtsp_local_port: int = port("RtspLocalPort", "LocalPort")
    turn_relay_ip: str = text("TurnRelayIP")
    rtsp_turn_relay_port: int = port("RtspTurnRelayPort", "TurnRelayPort")
    net_type: int = integer("NetType")


@attrs.frozen
class LoginResponse(Response):
    """§7.5.1 (31H), platform -> device: cloud-storage credentials and clock.

    Result: 0 ok, 1 no such device, 2 wrong key, 3 protocol version not
    supported, 255 other.  Time is YYYYMMDDHHMMSS.
    """

    CMD = 0x31
    ROOT = "LOGIN_RES"
    DEVICE_INITIATED = True

    eurl: str = text("EURL")
    e_account: str = text("EAccount")
    e_password: str = text("EPassword")
    time: str = text("Time")


@attrs.frozen
class AbilityUpRequest(Request):
    """§7.5.2 (32H), device -> platform: capabilities.

    Flags are 1 yes / 0 no.  ``video`` lists encoding capabilities (StreamType 1
    main / 2 sub, FrameSize code); ``onvif`` is reported by IPCs only.
    """

    CMD = 0x32
    ROOT = "ABILITYUP_REQ"
    DEVICE_INITIATED = True

    dev_id: str = text("DevID")
    channel_num: int = integer("ChannelNum")
    ptz_flag: int = integer("PTZFlag")
    e_store_flag: int = integer("EStoreFlag")
    local_store_flag: int = integer("LocalStoreFlag")
    video: tuple[VideoAbility, ...] = many("Video", VideoAbility)
    onvif: OnvifAccess | None = one("Onvif", OnvifAccess)


@attrs.frozen
class AbilityUpResponse(Response):
    """§7.5.2 (32H), platform -> device (Result added, see Response)."""

    CMD = 0x32
    ROOT = "ABILITYUP_RES"
    DEVICE_INITIATED = True

    time: str = text("Time")


@attrs.frozen
class HeartbeatRequest(Request):
    """§7.5.3 (33H), device -> platform, every 120 s; refreshes the addresses.

    The table omits TurnRelayIP/RtspTurnRelayPort that the example carries; kept.
    """

    CMD = 0x33
    ROOT = "HEARTBEAT_REQ"
    DEVICE_INITIATED = True

    dev_id: str = text("DevID")
    cur_video_num: int = integer("CurVideoNum")
    upnp_ip: str = text("UpnpIP")
    rtsp_upnp_port: int = port("RtspUpnpPort", "UpnpPort")
    local_ip: str = text("LocalIP")
    rtsp_local_port: int = port("RtspLocalPort", "LocalPort")
    turn_relay_ip: str = text("TurnRelayIP")
    rtsp_turn_relay_port: int = port("RtspTurnRelayPort", "TurnRelayPort")


@attrs.frozen
class HeartbeatResponse(Response):
    """§7.5.3 (33H), platform -> device (Result added, see Response)."""

    CMD = 0x33
    ROOT = "HEARTBEAT_RES"
    DEVICE_INITIATED = True

    time: str = text("Time")


@attrs.frozen
class ExceptionReportRequest(Request):
    """§7.5.4 (34H), device -> platform: an exception (see ExceptionType).

    1 cloud login failed, 2 cloud mkdir failed, 3 cloud delete failed, 4 cloud
    upload failed, 5 cloud full, 6 SD card/disk, 7 power, 8 lens/no image,
    9 illegal access (bad URL), 10 policy ignored (manual recording), 11 upgrade
    failed, 12 UPnP mapping failed; 0 unknown (ExceptionDesc says).  Also used
    to report Wi-Fi (63H) and upgrade (6DH) outcomes.
    """

    CMD = 0x34
    ROOT = "EXCEPTION_NOTIFY_REQ"
    DEVICE_INITIATED = True

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    exception_type: int = integer("ExceptionType")
    exception_desc: str = text("ExceptionDesc")


@attrs.frozen
class ExceptionReportResponse(Response):
    """§7.5.4 (34H), platform -> device.  Result 0 ok, other error."""

    CMD = 0x34
    ROOT = "EXCEPTION_NOTIFY_RES"
    DEVICE_INITIATED = True


@attrs.frozen
class TokenVerifyRequest(Request):
    """§7.5.5 (35H), device -> platform: is this live-view HashToken valid?

    Sent when a client opens rtsp://…/realplay?devid&channelno&streamtype&hashtoken.
    """

    CMD = 0x35
    ROOT = "VIDEO_PLAY_REQ"
    DEVICE_INITIATED = True

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    stream_type: int = integer("StreamType")
    hash_token: str = text("HashToken")


@attrs.frozen
class TokenVerifyResponse(Response):
    """§7.5.5 (35H), platform -> device.  Result 0 valid, other invalid."""

    CMD = 0x35
    ROOT = "VIDEO_PLAY_RES"
    DEVICE_INITIATED = True


@attrs.frozen
class FtpPictureNoticeRequest(Request):
    """§7.5.27 (36H), device -> platform: a snapshot was uploaded to FTP.

    FileName is DevID_ChannelNo_YYYYMMDDHHMMSS.JPG; Time is YYYYMMDDHHMMSS.
    """

    CMD = 0x36
    ROOT = "NOTIFY_PICTURE_REQ"
    DEVICE_INITIATED = True

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    file_name: str = text("FileName")
    time: str = text("Time")


@attrs.frozen
class FtpPictureNoticeResponse(Response):
    """§7.5.27 (36H), platform -> device (table 2 names no confirmation; the
    section prints DevID only; Result added, see Response)."""

    CMD = 0x36
    ROOT = "NOTIFY_PICTURE_RES"
    DEVICE_INITIATED = True


# ------------------------------------------------------------ 60H-7BH (platform -> device)


@attrs.frozen
class SetVideoParamsRequest(Request):
    """§7.5.6 (60H), platform -> device: set encoding of one stream.

    An absent element means "leave unchanged", so the settable fields are
    ``int | None`` (None = not sent).  FrameSize 1 720P, 2 VGA, 3 D1, 4 CIF,
    5 QVGA; FrameRate 2..25; RateType 1 CBR, 2 VBR; BitRate 1..13 (see
    BIT_RATES_KBPS); AudioInput 0 off, 1 on.  ChannelNo counts from 0.
    """

    CMD = 0x60
    ROOT = "SET_CHANNEL_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    stream_type: int = integer("StreamType")
    frame_size: int | None = integer("FrameSize", optional=True)
    frame_rate: int | None = integer("FrameRate", optional=True)
    rate_type: int | None = integer("RateType", optional=True)
    bit_rate: int | None = integer("BitRate", optional=True)
    audio_input: int | None = integer("AudioInput", optional=True)


@attrs.frozen
class SetVideoParamsResponse(Response):
    """§7.5.6 (60H), device -> platform.  Result 0 ok, other error."""

    CMD = 0x60
    ROOT = "SET_CHANNEL_RES"


@attrs.frozen
class GetVideoParamsRequest(Request):
    """§7.5.7 (61H), platform -> device: read encoding of one stream."""

    CMD = 0x61
    ROOT = "GET_CHANNEL_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    stream_type: int = integer("StreamType")


@attrs.frozen
class GetVideoParamsResponse(Response):
    """§7.5.7 (61H), device -> platform; codes as SetVideoParamsRequest."""

    CMD = 0x61
    ROOT = "GET_CHANNEL_RES"

    frame_size: int = integer("FrameSize")
    frame_rate: int = integer("FrameRate")
    rate_type: int = integer("RateType")
    bit_rate: int = integer("BitRate")
    audio_input: int = integer("AudioInput")


@attrs.frozen
class QueryWifiRequest(Request):
    """§7.5.8 (62H), platform -> device: list visible Wi-Fi networks."""

    CMD = 0x62
    ROOT = "GET_WIFI_REQ"

    dev_id: str = text("DevID")


@attrs.frozen
class QueryWifiResponse(Response):
    """§7.5.8 (62H), device -> platform: the 10 strongest hotspots.

    Signal 0..100; Security 0 none, 1 WEP, 2 WPA-PSK, 3 WPA-PSK/WPA2-PSK,
    4 WPA2-PSK, 5 other; InUse 1 = connected to it.
    """

    CMD = 0x62
    ROOT = "GET_WIFI_RES"

    wifi_ssid: tuple[WifiHotspot, ...] = many("WifiSSID", WifiHotspot)


@attrs.frozen
class SetWifiRequest(Request):
    """§7.5.9 (63H), platform -> device: join a Wi-Fi network (Security as 62H).

    The device answers at once and reports the outcome later through 34H.
    """

    CMD = 0x63
    ROOT = "SET_WIFI_REQ"

    dev_id: str = text("DevID")
    ssid: str = text("SSID")
    security: int = integer("Security")
    password: str = text("Password")


@attrs.frozen
class SetWifiResponse(Response):
    """§7.5.9 (63H), device -> platform.  Result 0 ok, other error."""

    CMD = 0x63
    ROOT = "SET_WIFI_RES"


@attrs.frozen
class PtzRequest(Request):
    """§7.5.10 (64H), platform -> device: PtzDirection 0 stop, 1 up, 2 down,
    3 left, 4 right."""

    CMD = 0x64
    ROOT = "VIDEO_PTZ_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    ptz_direction: int = integer("PtzDirection")


@attrs.frozen
class PtzResponse(Response):
    """§7.5.10 (64H), device -> platform.  Result 0 ok, other error."""

    CMD = 0x64
    ROOT = "VIDEO_PTZ_RES"


@attrs.frozen
class SetCloudAccountRequest(Request):
    """§7.5.11 (65H), platform -> device: 天翼云 (cloud storage) account."""

    CMD = 0x65
    ROOT = "SET_ESTORE_REQ"

    dev_id: str = text("DevID")
    url: str = text("URL", "EURL")
    account: str = text("Account", "EAccount")
    password: str = text("Password", "EPassword")


@attrs.frozen
class SetCloudAccountResponse(Response):
    """§7.5.11 (65H), device -> platform.  Result 0 ok, other error."""

    CMD = 0x65
    ROOT = "SET_ESTORE_RES"


@attrs.frozen
class GetCloudAccountRequest(Request):
    """§7.5.12 (66H), platform -> device."""

    CMD = 0x66
    ROOT = "GET_ESTORE_REQ"

    dev_id: str = text("DevID")


@attrs.frozen
class GetCloudAccountResponse(Response):
    """§7.5.12 (66H), device -> platform."""

    CMD = 0x66
    ROOT = "GET_ESTORE_RES"

    url: str = text("URL", "EURL")
    account: str = text("Account", "EAccount")
    password: str = text("Password", "EPassword")


@attrs.frozen
class AddRecordPolicyRequest(Request):
    """§7.5.13 (67H), platform -> device: weekly recording windows.

    StoreType 0 local, 1 cloud; StreamType 1 main, 2 sub (NVR: main only);
    Week 1..7; Start/EndTime "HH:MM".  At most 4 windows a day; the platform
    checks overlaps.
    """

    CMD = 0x67
    ROOT = "ADD_RECORD_POLICY_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    week_policy: tuple[RecordPolicy, ...] = many("WeekPolicy", RecordPolicy)


@attrs.frozen
class AddRecordPolicyResponse(Response):
    """§7.5.13 (67H), device -> platform.  Result 0 ok, other error."""

    CMD = 0x67
    ROOT = "ADD_RECORD_POLICY_RES"


@attrs.frozen
class GetRecordPolicyRequest(Request):
    """§7.5.14 (68H), platform -> device."""

    CMD = 0x68
    ROOT = "QUERY_RECORD_POLICY_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")


@attrs.frozen
class GetRecordPolicyResponse(Response):
    """§7.5.14 (68H), device -> platform: policies with device-assigned IDs."""

    CMD = 0x68
    ROOT = "QUERY_RECORD_POLICY_RES"

    week_policy: tuple[RecordPolicyEntry, ...] = many("WeekPolicy", RecordPolicyEntry)


@attrs.frozen
class DeleteRecordPolicyRequest(Request):
    """§7.5.15 (69H), platform -> device: a running recording of it stops."""

    CMD = 0x69
    ROOT = "DEL_RECORD_POLICY_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    policy_id: int = integer("PolicyID")


@attrs.frozen
class DeleteRecordPolicyResponse(Response):
    """§7.5.15 (69H), device -> platform.  Result 0 ok, other error."""

    CMD = 0x69
    ROOT = "DEL_RECORD_POLICY_RES"


@attrs.frozen
class SetRecordParamsRequest(Request):
    """6AH (named in table 2, not defined by the spec; our definition),
    platform -> device: how a channel records.

    StreamType 1 main / 2 sub (the stream recorded); StoreType 0 local / 1
    cloud (where full-day recordings go); AudioInput 0 no audio / 1 audio;
    FileDuration minutes per file (§7.1 says 5).  As in 60H, an absent element
    means "leave unchanged" (None).
    """

    CMD = 0x6A
    ROOT = "SET_RECORD_PARAM_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    stream_type: int | None = integer("StreamType", optional=True)
    store_type: int | None = integer("StoreType", optional=True)
    audio_input: int | None = integer("AudioInput", optional=True)
    file_duration: int | None = integer("FileDuration", optional=True)


@attrs.frozen
class SetRecordParamsResponse(Response):
    """6AH, device -> platform (our definition).  Result 0 ok, 1 no such
    channel, 2 value not supported, 255 other."""

    CMD = 0x6A
    ROOT = "SET_RECORD_PARAM_RES"


@attrs.frozen
class GetRecordParamsRequest(Request):
    """6BH (our definition), platform -> device."""

    CMD = 0x6B
    ROOT = "GET_RECORD_PARAM_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")


@attrs.frozen
class GetRecordParamsResponse(Response):
    """6BH (our definition), device -> platform; fields as 6AH.  Result 0 ok,
    1 no such channel, 255 other."""

    CMD = 0x6B
    ROOT = "GET_RECORD_PARAM_RES"

    stream_type: int = integer("StreamType")
    store_type: int = integer("StoreType")
    audio_input: int = integer("AudioInput")
    file_duration: int = integer("FileDuration")


@attrs.frozen
class RebootRequest(Request):
    """§7.5.16 (6CH), platform -> device."""

    CMD = 0x6C
    ROOT = "REBOOT_REQ"

    dev_id: str = text("DevID")


@attrs.frozen
class RebootResponse(Response):
    """§7.5.16 (6CH), device -> platform.  Result 0 ok, other error."""

    CMD = 0x6C
    ROOT = "REBOOT_RES"


@attrs.frozen
class UpgradeRequest(Request):
    """§7.5.17 (6DH), platform -> device: fetch firmware by FTP.

    The device checks the parameters, answers at once, and reports the
    outcome later through 34H (ExceptionType 11 on failure).
    """

    CMD = 0x6D
    ROOT = "UPGRADE_REQ"

    dev_id: str = text("DevID")
    new_dev_ver: str = text("NewDevVer")
    ftp_ip: str = text("FtpIP")
    ftp_port: int = port("FtpPort")
    ftp_account: str = text("FtpAccount")
    ftp_password: str = text("FtpPassword")
    ftp_file_name: str = text("FtpFileName")


@attrs.frozen
class UpgradeResponse(Response):
    """§7.5.17 (6DH), device -> platform.  Result 0 accepted, other: bad
    upgrade parameters."""

    CMD = 0x6D
    ROOT = "UPGRADE_RES"


@attrs.frozen
class NvrBindRequest(Request):
    """§7.5.18 (6EH), platform -> NVR: record this IPC on this channel."""

    CMD = 0x6E
    ROOT = "NVR_LINK_IPCAM_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    ipcam_dev_id: str = text("IpcamDevID")
    ipcam_local_ip: str = text("IpcamLocalIP")
    onvif_port: int = port("OnvifPort")
    onvif_account: str = text("OnvifAccount")
    onvif_password: str = text("OnvifPassword")


@attrs.frozen
class NvrBindResponse(Response):
    """§7.5.18 (6EH), NVR -> platform.  Result 0 ok, other error."""

    CMD = 0x6E
    ROOT = "NVR_LINK_IPCAM_RES"


@attrs.frozen
class NvrModifyBindingRequest(Request):
    """§7.5.19 (6FH), platform -> NVR: the IPC (by IpcamDevID) moved."""

    CMD = 0x6F
    ROOT = "NVR_MODIFY_IPCAM_REQ"

    dev_id: str = text("DevID")
    ipcam_dev_id: str = text("IpcamDevID")
    ipcam_local_ip: str = text("IpcamLocalIP")
    onvif_port: int = port("OnvifPort")
    onvif_account: str = text("OnvifAccount")
    onvif_password: str = text("OnvifPassword")


@attrs.frozen
class NvrModifyBindingResponse(Response):
    """§7.5.19 (6FH), NVR -> platform.  Result 0 ok, other error."""

    CMD = 0x6F
    ROOT = "NVR_MODIFY_IPCAM_RES"


@attrs.frozen
class NvrUnbindRequest(Request):
    """§7.5.20 (70H), platform -> NVR: free a channel (its policies go too)."""

    CMD = 0x70
    ROOT = "NVR_DEL_IPCAM_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")


@attrs.frozen
class NvrUnbindResponse(Response):
    """§7.5.20 (70H), NVR -> platform.  Result 0 ok, other error."""

    CMD = 0x70
    ROOT = "NVR_DEL_IPCAM_RES"


@attrs.frozen
class NvrQueryBindingRequest(Request):
    """§7.5.21 (71H), platform -> NVR."""

    CMD = 0x71
    ROOT = "NVR_QUERY_IPCAM_REQ"

    dev_id: str = text("DevID")


@attrs.frozen
class NvrQueryBindingResponse(Response):
    """§7.5.21 (71H), NVR -> platform: bound channels only."""

    CMD = 0x71
    ROOT = "NVR_QUERY_IPCAM_RES"

    channel: tuple[IpcamBinding, ...] = many("Channel", IpcamBinding)


@attrs.frozen
class RecordSearchRequest(Request):
    """§7.5.22 (72H), platform -> device: recordings between two
    YYYYMMDDHHMM times, PageNo from 1, 10 files a page."""

    CMD = 0x72
    ROOT = "FILE_QUERY_REQ"
    PAGE_SIZE: ClassVar[int] = 10

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    start_time: str = text("StartTime")
    end_time: str = text("EndTime")
    page_no: int = integer("PageNo")


@attrs.frozen
class RecordSearchResponse(Response):
    """§7.5.22 (72H), device -> platform: TotalRecordNum over all pages and
    at most 10 files of the requested page."""

    CMD = 0x72
    ROOT = "FILE_QUERY_RES"

    total_record_num: int = integer("TotalRecordNum")
    file: tuple[RecordFile, ...] = many("File", RecordFile)


@attrs.frozen
class RecordDeleteRequest(Request):
    """73H (named in table 2, not defined by the spec; our definition),
    platform -> device: delete one recording, by a FileName of 72H."""

    CMD = 0x73
    ROOT = "FILE_DEL_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    file_name: str = text("FileName")


@attrs.frozen
class RecordDeleteResponse(Response):
    """73H, device -> platform (our definition).  Result 0 deleted, 1 no such
    file, 2 file in use (recording or playing back), 255 other."""

    CMD = 0x73
    ROOT = "FILE_DEL_RES"


@attrs.frozen
class PlaybackVerifyRequest(Request):
    """§7.5.23 (74H), device -> platform: is this playback HashToken valid?

    Device-initiated like 35H (table 2 says so, rightly): sent when a client
    opens rtsp://…/realplay?devid&channelno&filename&hashtoken.
    """

    CMD = 0x74
    ROOT = "RECORD_PLAY_REQ"
    DEVICE_INITIATED = True

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    file_name: str = text("FileName")
    hash_token: str = text("HashToken")


@attrs.frozen
class PlaybackVerifyResponse(Response):
    """§7.5.23 (74H), platform -> device.  Result 0 valid, other invalid."""

    CMD = 0x74
    ROOT = "RECORD_PLAY_RES"
    DEVICE_INITIATED = True


@attrs.frozen
class AddPicturePolicyRequest(Request):
    """§7.5.24 (75H), platform -> device: snapshot windows.

    StoreType 0 FTP, 1 cloud; Interval in seconds; times "HH:MM".  For FTP the
    platform sets start == end and Interval 0 (a timed single snapshot).
    """

    CMD = 0x75
    ROOT = "ADD_PICTURE_POLICY_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    store_type: int = integer("StoreType")
    day_policy: tuple[PicturePolicy, ...] = many("DayPolicy", PicturePolicy)


@attrs.frozen
class AddPicturePolicyResponse(Response):
    """§7.5.24 (75H), device -> platform.  Result 0 ok, other error."""

    CMD = 0x75
    ROOT = "ADD_PICTURE_POLICY_RES"


@attrs.frozen
class GetPicturePolicyRequest(Request):
    """§7.5.25 (76H), platform -> device: StoreType 0 FTP, 1 cloud."""

    CMD = 0x76
    ROOT = "QUERY_PICTURE_POLICY_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    store_type: int = integer("StoreType")


@attrs.frozen
class GetPicturePolicyResponse(Response):
    """§7.5.25 (76H), device -> platform: policies with device-assigned IDs."""

    CMD = 0x76
    ROOT = "QUERY_PICTURE_POLICY_RES"

    day_policy: tuple[PicturePolicyEntry, ...] = many("DayPolicy", PicturePolicyEntry)


@attrs.frozen
class DeletePicturePolicyRequest(Request):
    """§7.5.26 (77H), platform -> device."""

    CMD = 0x77
    ROOT = "DEL_PICTURE_POLICY_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    policy_id: int = integer("PolicyID")


@attrs.frozen
class DeletePicturePolicyResponse(Response):
    """§7.5.26 (77H), device -> platform.  Result 0 ok, other error."""

    CMD = 0x77
    ROOT = "DEL_PICTURE_POLICY_RES"


@attrs.frozen
class SetFullDayRecordRequest(Request):
    """§7.5.28 (78H), platform -> device: RecordFull 1 all day, 0 by policy."""

    CMD = 0x78
    ROOT = "SET_RECORD_FULL_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")
    record_full: int = integer("RecordFull")


@attrs.frozen
class SetFullDayRecordResponse(Response):
    """§7.5.28 (78H), device -> platform.  Result 0 ok, other error."""

    CMD = 0x78
    ROOT = "SET_RECORD_FULL_RES"


@attrs.frozen
class GetFullDayRecordRequest(Request):
    """§7.5.29 (79H), platform -> device."""

    CMD = 0x79
    ROOT = "GET_RECORD_FULL_REQ"

    dev_id: str = text("DevID")
    channel_no: int = integer("ChannelNo")


@attrs.frozen
class GetFullDayRecordResponse(Response):
    """§7.5.29 (79H), device -> platform: RecordFull 1 all day, 0 by policy."""

    CMD = 0x79
    ROOT = "GET_RECORD_FULL_RES"

    record_full: int = integer("RecordFull")


@attrs.frozen
class SetLoopRecordRequest(Request):
    """§7.5.30 (7AH), platform -> device (device-wide): RecordLoop 1 overwrite
    the oldest files when full, 0 stop."""

    CMD = 0x7A
    ROOT = "SET_RECORD_LOOP_REQ"

    dev_id: str = text("DevID")
    record_loop: int = integer("RecordLoop")


@attrs.frozen
class SetLoopRecordResponse(Response):
    """§7.5.30 (7AH), device -> platform.  Result 0 ok, other error."""

    CMD = 0x7A
    ROOT = "SET_RECORD_LOOP_RES"


@attrs.frozen
class GetLoopRecordRequest(Request):
    """§7.5.31 (7BH), platform -> device."""

    CMD = 0x7B
    ROOT = "GET_RECORD_LOOP_REQ"

    dev_id: str = text("DevID")


@attrs.frozen
class GetLoopRecordResponse(Response):
    """§7.5.31 (7BH), device -> platform: RecordLoop 1 loop, 0 no loop."""

    CMD = 0x7B
    ROOT = "GET_RECORD_LOOP_RES"

    record_loop: int = integer("RecordLoop")


# --------------------------------------------------------------------------- registries

_PAIRS: tuple[tuple[type[Message], type[Message]], ...] = (
    (RedirectRequest, RedirectResponse),
    (RegisterRequest, RegisterResponse),
    (LoginRequest, LoginResponse),
    (AbilityUpRequest, AbilityUpResponse),
    (HeartbeatRequest, HeartbeatResponse),
    (ExceptionReportRequest, ExceptionReportResponse),
    (TokenVerifyRequest, TokenVerifyResponse),
    (FtpPictureNoticeRequest, FtpPictureNoticeResponse),
    (SetVideoParamsRequest, SetVideoParamsResponse),
    (GetVideoParamsRequest, GetVideoParamsResponse),
    (QueryWifiRequest, QueryWifiResponse),
    (SetWifiRequest, SetWifiResponse),
    (PtzRequest, PtzResponse),
    (SetCloudAccountRequest, SetCloudAccountResponse),
    (GetCloudAccountRequest, GetCloudAccountResponse),
    (AddRecordPolicyRequest, AddRecordPolicyResponse),
    (GetRecordPolicyRequest, GetRecordPolicyResponse),
    (DeleteRecordPolicyRequest, DeleteRecordPolicyResponse),
    (SetRecordParamsRequest, SetRecordParamsResponse),
    (GetRecordParamsRequest, GetRecordParamsResponse),
    (RebootRequest, RebootResponse),
    (UpgradeRequest, UpgradeResponse),
    (NvrBindRequest, NvrBindResponse),
    (NvrModifyBindingRequest, NvrModifyBindingResponse),
    (NvrUnbindRequest, NvrUnbindResponse),
    (NvrQueryBindingRequest, NvrQueryBindingResponse),
    (RecordSearchRequest, RecordSearchResponse),
    (RecordDeleteRequest, RecordDeleteResponse),
    (PlaybackVerifyRequest, PlaybackVerifyResponse),
    (AddPicturePolicyRequest, AddPicturePolicyResponse),
    (GetPicturePolicyRequest, GetPicturePolicyResponse),
    (DeletePicturePolicyRequest, DeletePicturePolicyResponse),
    (SetFullDayRecordRequest, SetFullDayRecordResponse),
    (GetFullDayRecordRequest, GetFullDayRecordResponse),
    (SetLoopRecordRequest, SetLoopRecordResponse),
    (GetLoopRecordRequest, GetLoopRecordResponse),
)

ALL_MESSAGES: tuple[type[Message], ...] = tuple(c for pair in _PAIRS for c in pair)
REQUESTS: dict[int, type[Message]] = {r.CMD: r for r, _ in _PAIRS if r.CMD is not None}
RESPONSES: dict[int, type[Message]] = {s.CMD: s for _, s in _PAIRS if s.CMD is not None}
MESSAGES_BY_ROOT: dict[str, type[Message]] = {c.ROOT.casefold(): c for c in ALL_MESSAGES}
_RESPONSE_OF: dict[type[Message], type[Message]] = dict(_PAIRS)


def response_type(request_cls: type[Message]) -> type[Message]:
    """The class that answers ``request_cls``; TypeError for a non-request."""
    try:
        return _RESPONSE_OF[request_cls]
    except KeyError:
        raise TypeError(f"{request_cls!r} is not a request message class") from None


def parse(data: bytes) -> Message:
    """Decode any message, choosing the class from the (normalised) root element."""
    root = parse_document(data)
    tag = str(root.tag)
    cls = MESSAGES_BY_ROOT.get(tag.casefold())
    if cls is None:
        raise MessageError(f"unknown root element <{tag}>")
    message: Message = _decode(cls, root)
    return message


def _check_tables() -> None:
    """Import-time sanity: a typo in the tables must fail loudly, not on the wire."""
    assert len(MESSAGES_BY_ROOT) == len(ALL_MESSAGES), "duplicate ROOT"
    for cls in ALL_MESSAGES:
        assert cls.ROOT.endswith("_RES" if cls.IS_RESPONSE else "_REQ"), cls
        for f in attrs.fields(cls):
            assert _META in f.metadata, (cls, f.name)


_check_tables()
