"""SMGP 3.0 (China Telecom Short Message Gateway Protocol) PDU codec.

The §2 item 6 "短信网关接口" of the spec is, on a China Telecom network, an SMGP 3.0
gateway: TCP, big-endian binary PDUs behind a 12-byte header
``Length(4) | RequestID(4) | SequenceID(4)`` where Length counts the header too.

This module is pure: bytes in, attrs objects out, no I/O and no Twisted, so the
client, the test fixture and the fuzz tests all share one definition of the wire.
It is strict where being liberal would hide a broken or hostile peer (a Length
below 12 or above :data:`MAX_LENGTH`, a body of the wrong size, a TLV running past
the end, a field that is not ASCII) and reports every refusal as :class:`SMGPError`
with a reason a human can act on.  A well-framed PDU whose RequestID we do not
implement (Query, Forward, route updates...) is *not* an error: it comes out as
:class:`UnknownPDU` because the framing is intact and the session can carry on.

Field sizes (octets) and their sources are tabulated in ``docs/sms-crm.md``.
"""

from __future__ import annotations

import datetime
import hashlib
import struct
from collections.abc import Iterable
from enum import IntEnum
from typing import Any

import attrs

HEADER = struct.Struct("!III")
HEADER_SIZE = HEADER.size  # 12
#: No PDU we send or expect is near this (a Submit to one number with 255 octets of
#: content and a few TLVs is ~430 octets); a larger Length means a desynchronised or
#: hostile stream and must not make us buffer megabytes.
MAX_LENGTH = 4096
VERSION = 0x30  # SMGP 3.0, the ClientVersion/ServerVersion octet
MAX_DEST_TERM_IDS = 100  # SMGP 3.0 §6.2.3: DestTermIDCount ≤ 100
MAX_CONTENT = 255  # MsgLength is one octet


class SMGPError(ValueError):
    """A PDU that cannot be encoded or decoded, or a stream that lost its framing."""


class RequestID(IntEnum):
    LOGIN = 0x00000001
    SUBMIT = 0x00000002
    DELIVER = 0x00000003
    ACTIVE_TEST = 0x00000004
    EXIT = 0x00000006
    LOGIN_RESP = 0x80000001
    SUBMIT_RESP = 0x80000002
    DELIVER_RESP = 0x80000003
    ACTIVE_TEST_RESP = 0x80000004
    EXIT_RESP = 0x80000006


class LoginMode(IntEnum):
    SEND = 0
    RECEIVE = 1
    TRANSMIT = 2


class MsgFormat(IntEnum):
    ASCII = 0
    BINARY = 4
    UCS2 = 8
    GB18030 = 15


class Tag(IntEnum):
    """Optional-parameter (TLV) tags of SMGP 3.0 §6.3."""

    TP_PID = 0x0001
    TP_UDHI = 0x0002
    LINK_ID = 0x0003
    CHARGE_USER_TYPE = 0x0004
    CHARGE_TERM_TYPE = 0x0005
    CHARGE_TERM_PSEUDO = 0x0006
    DEST_TERM_TYPE = 0x0007
    DEST_TERM_PSEUDO = 0x0008
    PK_TOTAL = 0x0009
    PK_NUMBER = 0x000A
    SUBMIT_MSG_TYPE = 0x000B
    SP_DEAL_RESULT = 0x000C
    SRC_TERM_TYPE = 0x000D
    SRC_TERM_PSEUDO = 0x000E
    NODES_COUNT = 0x000F
    MSG_SRC = 0x0010
    SRC_TYPE = 0x0011
    M_SERVICE_ID = 0x0012


#: TLVs whose value is a one-octet Integer; any other length is a malformed PDU.
ONE_OCTET_TAGS = frozenset(
    {
        Tag.TP_PID,
        Tag.TP_UDHI,
        Tag.CHARGE_USER_TYPE,
        Tag.CHARGE_TERM_TYPE,
        Tag.DEST_TERM_TYPE,
        Tag.PK_TOTAL,
        Tag.PK_NUMBER,
        Tag.SUBMIT_MSG_TYPE,
        Tag.SP_DEAL_RESULT,
        Tag.SRC_TERM_TYPE,
        Tag.NODES_COUNT,
        Tag.SRC_TYPE,
    }
)

#: Status codes of SMGP 3.0 §7, for log lines and error messages.
STATUS_TEXT = {
    0: "成功 success",
    1: "系统忙 system busy",
    2: "超过最大连接数 too many connections",
    10: "消息结构错 bad message structure",
    11: "命令字错 bad RequestID",
    12: "序列号重复 duplicate SequenceID",
    20: "IP地址错 IP address refused",
    21: "认证错 authentication failed",
    22: "版本太高 version too high",
    30: "非法消息类型 bad MsgType",
    31: "非法优先级 bad Priority",
    32: "非法资费类型 bad FeeType",
    33: "非法资费代码 bad FeeCode",
    34: "非法短消息格式 bad MsgFormat",
    35: "非法时间格式 bad time format",
    36: "非法短消息长度 bad MsgLength",
    37: "有效期已过 validity expired",
    43: "非法服务代码 bad ServiceID",
    46: "非法发送用户号码 bad SrcTermID",
    47: "非法接收用户号码 bad DestTermID",
    48: "非法计费用户号码 bad ChargeTermID",
    74: "SP禁止下发时段 SP sending forbidden now",
    75: "SP发送超过日流量 SP daily quota exceeded",
}


def status_text(status: int) -> str:
    return f"{status} ({STATUS_TEXT.get(status, 'unknown status')})"


# --------------------------------------------------------------------------- TLV


@attrs.frozen
class TLV:
    tag: int = attrs.field(validator=[attrs.validators.ge(0), attrs.validators.le(0xFFFF)])
    value: bytes = b""


def tlv(tag: int, value: int | bytes) -> TLV:
    """A TLV from an int (one octet, for the Integer tags) or raw bytes."""
    if isinstance(value, int):
        if not 0 <= value <= 0xFF:
            raise SMGPError(f"TLV {tag:#06x} integer value {value} does not fit one octet")
        return TLV(tag, bytes([value]))
    return TLV(tag, value)


def tlv_get(tlvs: Iterable[TLV], tag: int) -> bytes | None:
    for item in tlvs:
        if item.tag == tag:
            return item.value
    return None


def tlv_int(tlvs: Iterable[TLV], tag: int) -> int | None:
    value = tlv_get(tlvs, tag)
    return None if value is None or len(value) != 1 else value[0]


def _encode_tlvs(tlvs: Iterable[TLV]) -> bytes:
    out = bytearray()
    for item in tlvs:
        if len(item.value) > 0xFFFF:
            raise SMGPError(f"TLV {item.tag:#06x} value of {len(item.value)} octets is too long")
        if item.tag in ONE_OCTET_TAGS and len(item.value) != 1:
            raise SMGPError(f"TLV {Tag(item.tag).name} must be one octet, not {len(item.value)}")
        out += struct.pack("!HH", item.tag, len(item.value)) + item.value
    return bytes(out)


def _decode_tlvs(data: bytes) -> tuple[TLV, ...]:
    items: list[TLV] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise SMGPError(f"truncated TLV header: {len(data) - pos} trailing octets")
        tag, length = struct.unpack_from("!HH", data, pos)
        pos += 4
        if length > len(data) - pos:
            raise SMGPError(f"TLV {tag:#06x} claims {length} octets, only {len(data) - pos} left")
        if tag in ONE_OCTET_TAGS and length != 1:
            raise SMGPError(f"TLV {Tag(tag).name} must be one octet, not {length}")
        items.append(TLV(tag, data[pos : pos + length]))
        pos += length
    return tuple(items)


# ------------------------------------------------------------------ field helpers


def _octets(value: str, size: int, name: str) -> bytes:
    """A fixed-size Octet String: ASCII, NUL-padded on the right (SMGP §5.2)."""
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise SMGPError(f"{name} {value!r} is not ASCII") from None
    if b"\0" in raw:
        raise SMGPError(f"{name} {value!r} contains NUL")
    if len(raw) > size:
        raise SMGPError(f"{name} {value!r} is {len(raw)} octets, the field holds {size}")
    return raw.ljust(size, b"\0")


def _fixed(value: bytes, size: int, name: str) -> bytes:
    if len(value) > size:
        raise SMGPError(f"{name} is {len(value)} octets, the field holds {size}")
    return value.ljust(size, b"\0")


def _u8(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFF:
        raise SMGPError(f"{name} {value} does not fit one octet")
    return bytes([value])


def _u32(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise SMGPError(f"{name} {value} does not fit four octets")
    return struct.pack("!I", value)


class _Reader:
    """Cursor over a PDU body that turns every short read into an SMGPError."""

    def __init__(self, data: bytes, pdu: str) -> None:
        self.data = data
        self.pos = 0
        self.pdu = pdu

    def take(self, n: int, name: str) -> bytes:
        if len(self.data) - self.pos < n:
            raise SMGPError(
                f"{self.pdu} truncated at {name}: needs {n} octets, {len(self.data) - self.pos} left"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self, name: str) -> int:
        return self.take(1, name)[0]

    def u32(self, name: str) -> int:
        value: int = struct.unpack("!I", self.take(4, name))[0]
        return value

    def string(self, n: int, name: str) -> str:
        raw = self.take(n, name).split(b"\0", 1)[0]
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise SMGPError(f"{self.pdu} {name} is not ASCII: {raw!r}") from None

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    def end(self) -> None:
        if self.pos != len(self.data):
            raise SMGPError(
                f"{self.pdu} has {len(self.data) - self.pos} unexpected trailing octets"
            )


def _strs(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _tlvs(values: Iterable[TLV]) -> tuple[TLV, ...]:
    return tuple(values)


def _seq_validator(_inst: object, _attr: object, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise SMGPError(f"SequenceID {value} does not fit four octets")


def _seq() -> int:
    """A fresh attrs field for ``sequence_id`` (one per class, never shared)."""
    return attrs.field(default=0, validator=_seq_validator)  # type: ignore[no-any-return]


# -------------------------------------------------------------------------- PDUs


@attrs.frozen(kw_only=True)
class Login:
    """Client → server.  ``authenticator`` is MD5(ClientID + 7×0x00 + secret + Timestamp)."""

    REQUEST_ID = RequestID.LOGIN
    sequence_id: int = _seq()
    client_id: str
    authenticator: bytes
    login_mode: int = LoginMode.SEND
    timestamp: int = 0  # decimal MMDDHHMMSS as an unsigned integer
    client_version: int = VERSION

    def body(self) -> bytes:
        return (
            _octets(self.client_id, 8, "ClientID")
            + _fixed(self.authenticator, 16, "AuthenticatorClient")
            + _u8(self.login_mode, "LoginMode")
            + _u32(self.timestamp, "TimeStamp")
            + _u8(self.client_version, "ClientVersion")
        )

    @classmethod
    def parse(cls, seq: int, r: _Reader) -> Login:
        pdu = cls(
            sequence_id=seq,
            client_id=r.string(8, "ClientID"),
            authenticator=r.take(16, "AuthenticatorClient"),
            login_mode=r.u8("LoginMode"),
            timestamp=r.u32("TimeStamp"),
            client_version=r.u8("ClientVersion"),
        )
        r.end()
        return pdu


@attrs.frozen(kw_only=True)
class LoginResp:
    """Server → client.  ``authenticator`` is MD5(Status + AuthenticatorClient + secret)."""

    REQUEST_ID = RequestID.LOGIN_RESP
    sequence_id: int = _seq()
    status: int = 0
    authenticator: bytes = b""
    server_version: int = VERSION

    def body(self) -> bytes:
        return (
            _u32(self.status, "Status")
            + _fixed(self.authenticator, 16, "AuthenticatorServer")
            + _u8(self.server_version, "ServerVersion")
        )

    @classmethod
    def parse(cls, seq: int, r: _Reader) -> LoginResp:
        pdu = cls(
            sequence_id=seq,
            status=r.u32("Status"),
            authenticator=r.take(16, "AuthenticatorServer"),
            server_version=r.u8("ServerVersion"),
        )
        r.end()
        return pdu


@attrs.frozen(kw_only=True)
class Submit:
    """SP → gateway: one short message (or one part of a long one) to 1..100 numbers."""

    REQUEST_ID = RequestID.SUBMIT
    sequence_id: int = _seq()
    msg_type: int = 6  # MT
    need_report: int = 0
    priority: int = 1
    service_id: str = ""
    fee_type: str = "00"
    fee_code: str = "000000"
    fixed_fee: str = "000000"
    msg_format: int = MsgFormat.UCS2
    valid_time: str = ""
    at_time: str = ""
    src_term_id: str = ""
    charge_term_id: str = ""
    dest_term_ids: tuple[str, ...] = attrs.field(converter=_strs)
    msg_content: bytes = b""
    reserve: bytes = b""
    tlvs: tuple[TLV, ...] = attrs.field(default=(), converter=_tlvs)

    def body(self) -> bytes:
        if not 1 <= len(self.dest_term_ids) <= MAX_DEST_TERM_IDS:
            raise SMGPError(
                f"DestTermIDCount {len(self.dest_term_ids)} is not 1..{MAX_DEST_TERM_IDS}"
            )
        if len(self.msg_content) > MAX_CONTENT:
            raise SMGPError(f"MsgContent of {len(self.msg_content)} octets exceeds {MAX_CONTENT}")
        return b"".join(
            [
                _u8(self.msg_type, "MsgType"),
                _u8(self.need_report, "NeedReport"),
                _u8(self.priority, "Priority"),
                _octets(self.service_id, 10, "ServiceID"),
                _octets(self.fee_type, 2, "FeeType"),
                _octets(self.fee_code, 6, "FeeCode"),
                _octets(self.fixed_fee, 6, "FixedFee"),
                _u8(self.msg_format, "MsgFormat"),
                _octets(self.valid_time, 17, "ValidTime"),
                _octets(self.at_time, 17, "AtTime"),
                _octets(self.src_term_id, 21, "SrcTermID"),
                _octets(self.charge_term_id, 21, "ChargeTermID"),
                _u8(len(self.dest_term_ids), "DestTermIDCount"),
                *(_octets(d, 21, "DestTermID") for d in self.dest_term_ids),
                _u8(len(self.msg_content), "MsgLength"),
                self.msg_content,
                _fixed(self.reserve, 8, "Reserve"),
                _encode_tlvs(self.tlvs),
            ]
        )

    @classmethod
    def parse(cls, seq: int, r: _Reader) -> Submit:
        head = dict(
            msg_type=r.u8("MsgType"),
            need_report=r.u8("NeedReport"),
            priority=r.u8("Priority"),
            service_id=r.string(10, "ServiceID"),
            fee_type=r.string(2, "FeeType"),
            fee_code=r.string(6, "FeeCode"),
            fixed_fee=r.string(6, "FixedFee"),
            msg_format=r.u8("MsgFormat"),
            valid_time=r.string(17, "ValidTime"),
            at_time=r.string(17, "AtTime"),
            src_term_id=r.string(21, "SrcTermID"),
            charge_term_id=r.string(21, "ChargeTermID"),
        )
        count = r.u8("DestTermIDCount")
        if not 1 <= count <= MAX_DEST_TERM_IDS:
            raise SMGPError(f"Submit DestTermIDCount {count} is not 1..{MAX_DEST_TERM_IDS}")
        dests = tuple(r.string(21, f"DestTermID[{i}]") for i in range(count))
        content = r.take(r.u8("MsgLength"), "MsgContent")
        reserve = r.take(8, "Reserve").rstrip(b"\0")
        return cls(
            sequence_id=seq,
            dest_term_ids=dests,
            msg_content=content,
            reserve=reserve,
            tlvs=_decode_tlvs(r.rest()),
            **head,  # type: ignore[arg-type]
        )


@attrs.frozen(kw_only=True)
class SubmitResp:
    REQUEST_ID = RequestID.SUBMIT_RESP
    sequence_id: int = _seq()
    msg_id: bytes = b""  # 10 octets: SMGW code (3, BCD), MMDDHHMM (4, BCD), sequence (3, BCD)
    status: int = 0

    def body(self) -> bytes:
        return _fixed(self.msg_id, 10, "MsgID") + _u32(self.status, "Status")

    @classmethod
    def parse(cls, seq: int, r: _Reader) -> SubmitResp:
        pdu = cls(sequence_id=seq, msg_id=r.take(10, "MsgID"), status=r.u32("Status"))
        r.end()
        return pdu


@attrs.frozen(kw_only=True)
class Deliver:
    """Gateway → SP: a mobile-originated message, or a status report when ``is_report``."""

    REQUEST_ID = RequestID.DELIVER
    sequence_id: int = _seq()
    msg_id: bytes = b""
    is_report: int = 0
    msg_format: int = MsgFormat.ASCII
    recv_time: str = ""  # YYYYMMDDHHMMSS
    src_term_id: str = ""
    dest_term_id: str = ""
    msg_content: bytes = b""
    reserve: bytes = b""
    tlvs: tuple[TLV, ...] = attrs.field(default=(), converter=_tlvs)

    def body(self) -> bytes:
        if len(self.msg_content) > MAX_CONTENT:
            raise SMGPError(f"MsgContent of {len(self.msg_content)} octets exceeds {MAX_CONTENT}")
        return b"".join(
            [
                _fixed(self.msg_id, 10, "MsgID"),
                _u8(self.is_report, "IsReport"),
                _u8(self.msg_format, "MsgFormat"),
                _octets(self.recv_time, 14, "RecvTime"),
                _octets(self.src_term_id, 21, "SrcTermID"),
                _octets(self.dest_term_id, 21, "DestTermID"),
                _u8(len(self.msg_content), "MsgLength"),
                self.msg_content,
                _fixed(self.reserve, 8, "Reserve"),
                _encode_tlvs(self.tlvs),
            ]
        )

    @classmethod
    def parse(cls, seq: int, r: _Reader) -> Deliver:
        msg_id = r.take(10, "MsgID")
        is_report = r.u8("IsReport")
        msg_format = r.u8("MsgFormat")
        recv_time = r.string(14, "RecvTime")
        src = r.string(21, "SrcTermID")
        dest = r.string(21, "DestTermID")
        content = r.take(r.u8("MsgLength"), "MsgContent")
        reserve = r.take(8, "Reserve").rstrip(b"\0")
        return cls(
            sequence_id=seq,
            msg_id=msg_id,
            is_report=is_report,
            msg_format=msg_format,
            recv_time=recv_time,
            src_term_id=src,
            dest_term_id=dest,
            msg_content=content,
            reserve=reserve,
            tlvs=_decode_tlvs(r.rest()),
        )


@attrs.frozen(kw_only=True)
class DeliverResp:
    REQUEST_ID = RequestID.DELIVER_RESP
    sequence_id: int = _seq()
    msg_id: bytes = b""
    status: int = 0

    def body(self) -> bytes:
        return _fixed(self.msg_id, 10, "MsgID") + _u32(self.status, "Status")

    @classmethod
    def parse(cls, seq: int, r: _Reader) -> DeliverResp:
        pdu = cls(sequence_id=seq, msg_id=r.take(10, "MsgID"), status=r.u32("Status"))
        r.end()
        return pdu


class _Empty:
    """Mixin for the body-less PDUs (Active_Test, Exit and their responses)."""

    def body(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, seq: int, r: _Reader):  # type: ignore[no-untyped-def]
        r.end()
        return cls(sequence_id=seq)  # type: ignore[call-arg]


@attrs.frozen(kw_only=True)
class ActiveTest(_Empty):
    REQUEST_ID = RequestID.ACTIVE_TEST
    sequence_id: int = _seq()


@attrs.frozen(kw_only=True)
class ActiveTestResp(_Empty):
    REQUEST_ID = RequestID.ACTIVE_TEST_RESP
    sequence_id: int = _seq()


@attrs.frozen(kw_only=True)
class Exit(_Empty):
    REQUEST_ID = RequestID.EXIT
    sequence_id: int = _seq()


@attrs.frozen(kw_only=True)
class ExitResp(_Empty):
    REQUEST_ID = RequestID.EXIT_RESP
    sequence_id: int = _seq()


@attrs.frozen(kw_only=True)
class UnknownPDU:
    """A well-framed PDU whose RequestID this codec does not implement; body kept raw."""

    request_id: int
    sequence_id: int = _seq()
    raw_body: bytes = b""

    def body(self) -> bytes:
        return self.raw_body


PDU = (
    Login
    | LoginResp
    | Submit
    | SubmitResp
    | Deliver
    | DeliverResp
    | ActiveTest
    | ActiveTestResp
    | Exit
    | ExitResp
    | UnknownPDU
)

_BY_ID: dict[int, Any] = {
    cls.REQUEST_ID: cls
    for cls in (
        Login,
        LoginResp,
        Submit,
        SubmitResp,
        Deliver,
        DeliverResp,
        ActiveTest,
        ActiveTestResp,
        Exit,
        ExitResp,
    )
}

#: Request → the response class that answers it, for matching by SequenceID.
RESPONSE_OF: dict[type, type] = {
    Login: LoginResp,
    Submit: SubmitResp,
    Deliver: DeliverResp,
    ActiveTest: ActiveTestResp,
    Exit: ExitResp,
}


def request_id_of(pdu: PDU) -> int:
    if isinstance(pdu, UnknownPDU):
        return pdu.request_id
    return int(pdu.REQUEST_ID)


def encode(pdu: PDU, *, max_length: int = MAX_LENGTH) -> bytes:
    """Serialise *pdu* with its header; refuses anything our own decoder would refuse."""
    body = pdu.body()
    length = HEADER_SIZE + len(body)
    if length > max_length:
        raise SMGPError(f"PDU of {length} octets exceeds the {max_length}-octet limit")
    request_id = request_id_of(pdu)
    if not 0 <= request_id <= 0xFFFFFFFF:
        raise SMGPError(f"RequestID {request_id} does not fit four octets")
    return HEADER.pack(length, request_id, pdu.sequence_id) + body


def _check_length(length: int, max_length: int) -> None:
    if length < HEADER_SIZE:
        raise SMGPError(f"PDU Length {length} is below the {HEADER_SIZE}-octet header")
    if length > max_length:
        raise SMGPError(f"PDU Length {length} exceeds the {max_length}-octet limit")


def _decode_body(request_id: int, seq: int, body: bytes) -> PDU:
    cls = _BY_ID.get(request_id)
    if cls is None:
        return UnknownPDU(request_id=request_id, sequence_id=seq, raw_body=body)
    reader = _Reader(body, cls.__name__)
    try:
        pdu: PDU = cls.parse(seq, reader)
    except (ValueError, TypeError) as e:  # attrs validators on decoded values
        if isinstance(e, SMGPError):
            raise
        raise SMGPError(f"{cls.__name__}: {e}") from None
    return pdu


def decode(data: bytes, *, max_length: int = MAX_LENGTH) -> PDU:
    """Decode exactly one whole PDU; *data* must be precisely Length octets."""
    if len(data) < HEADER_SIZE:
        raise SMGPError(f"{len(data)} octets is shorter than the {HEADER_SIZE}-octet header")
    length, request_id, seq = HEADER.unpack_from(data)
    _check_length(length, max_length)
    if length != len(data):
        raise SMGPError(f"PDU Length {length} does not match the {len(data)} octets given")
    return _decode_body(request_id, seq, data[HEADER_SIZE:])


class StreamDecoder:
    """Incremental decoder for a TCP byte stream: split and coalesced reads.

    :meth:`next_pdu` returns one PDU, or None while the next one is incomplete.  It
    raises :class:`SMGPError` in two distinct situations, told apart by
    :attr:`broken`:

    - the *body* of a well-framed PDU is malformed: that PDU is consumed and
      dropped, the stream is still in sync, and the caller may keep reading;
    - the *Length* is out of bounds: SMGP has no sync marker to hunt for, so the
      stream cannot be trusted again; ``broken`` is set and every later call raises.
    """

    def __init__(self, max_length: int = MAX_LENGTH) -> None:
        self.max_length = max_length
        self._buffer = bytearray()
        self.broken: SMGPError | None = None

    def feed(self, data: bytes) -> None:
        if self.broken is None:
            self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def next_pdu(self) -> PDU | None:
        if self.broken is not None:
            raise self.broken
        if len(self._buffer) < 4:
            return None
        (length,) = struct.unpack_from("!I", self._buffer)
        try:
            _check_length(length, self.max_length)
        except SMGPError as e:
            self.broken = e
            self._buffer.clear()
            raise
        if len(self._buffer) < length:
            return None
        frame = bytes(self._buffer[:length])
        del self._buffer[:length]
        _, request_id, seq = HEADER.unpack_from(frame)
        return _decode_body(request_id, seq, frame[HEADER_SIZE:])

    def __iter__(self) -> StreamDecoder:
        return self

    def __next__(self) -> PDU:
        pdu = self.next_pdu()
        if pdu is None:
            raise StopIteration
        return pdu


# ------------------------------------------------------------------ authenticators


def timestamp_of(seconds: float, tz: datetime.tzinfo) -> int:
    """The Login TimeStamp: the decimal digits MMDDHHMMSS read as an integer."""
    t = datetime.datetime.fromtimestamp(seconds, tz)
    return int(t.strftime("%m%d%H%M%S"))


def authenticator_client(client_id: str, secret: str, timestamp: int) -> bytes:
    """MD5(ClientID + 7 octets 0x00 + shared secret + Timestamp as 10 ASCII digits)."""
    data = client_id.encode("ascii") + b"\0" * 7 + secret.encode("utf-8") + b"%010d" % timestamp
    return hashlib.md5(data, usedforsecurity=False).digest()


def authenticator_server(status: int, auth_client: bytes, secret: str) -> bytes:
    """MD5(Status as 4 octets big-endian + AuthenticatorClient + shared secret)."""
    data = struct.pack("!I", status) + auth_client + secret.encode("utf-8")
    return hashlib.md5(data, usedforsecurity=False).digest()


# ------------------------------------------------------------------ text and parts

UCS2_SINGLE = 70  # UCS-2 characters in one 140-octet message
UCS2_PART = 67  # with a 6-octet UDH: (140 - 6) / 2
MAX_PARTS = 255  # the UDH counts parts in one octet


def encode_text(text: str, msg_format: int) -> bytes:
    """Text to MsgContent.  UCS-2 is written as UTF-16BE so non-BMP characters survive."""
    codec = {MsgFormat.UCS2: "utf-16-be", MsgFormat.GB18030: "gb18030", MsgFormat.ASCII: "ascii"}
    try:
        return text.encode(codec[MsgFormat(msg_format)])
    except (KeyError, ValueError) as e:
        raise SMGPError(f"cannot encode text as MsgFormat {msg_format}: {e}") from None


def decode_text(content: bytes, msg_format: int) -> str:
    codec = {MsgFormat.UCS2: "utf-16-be", MsgFormat.GB18030: "gb18030", MsgFormat.ASCII: "ascii"}
    try:
        return content.decode(codec[MsgFormat(msg_format)])
    except (KeyError, ValueError) as e:
        raise SMGPError(f"cannot decode MsgContent as MsgFormat {msg_format}: {e}") from None


def _utf16_chunks(text: str, size: int) -> list[bytes]:
    """Cut UTF-16BE into chunks of at most *size* code units, never inside a surrogate pair."""
    raw = text.encode("utf-16-be")
    chunks = []
    pos = 0
    while pos < len(raw):
        end = min(pos + 2 * size, len(raw))
        if end < len(raw) and 0xD8 <= raw[end - 2] <= 0xDB:  # high surrogate at the cut
            end -= 2
        chunks.append(raw[pos:end])
        pos = end
    return chunks


@attrs.frozen
class Part:
    """One Submit's worth of a message: MsgContent and the TLVs that go with it."""

    content: bytes
    tlvs: tuple[TLV, ...] = ()


def split_ucs2(text: str, *, udhi: bool = True, reference: int = 0) -> list[Part]:
    """Split *text* into UCS-2 Submits.

    Up to 70 UTF-16 units go in one Submit.  Longer text is either concatenated
    (``udhi``: 67 units per part behind a 6-octet UDH ``05 00 03 ref total n`` with
    TP_udhi=1, PkTotal, PkNumber, so the handset shows one message) or, without
    ``udhi``, cut into independent 70-unit messages for gateways that reject UDH.
    """
    if len(text.encode("utf-16-be")) <= 2 * UCS2_SINGLE:
        return [Part(text.encode("utf-16-be"))]
    chunks = _utf16_chunks(text, UCS2_PART if udhi else UCS2_SINGLE)
    if len(chunks) > MAX_PARTS:
        raise SMGPError(f"message needs {len(chunks)} parts, at most {MAX_PARTS}")
    if not udhi:
        return [Part(c) for c in chunks]
    total = len(chunks)
    ref = reference & 0xFF
    return [
        Part(
            bytes([5, 0, 3, ref, total, n]) + chunk,
            (tlv(Tag.TP_UDHI, 1), tlv(Tag.PK_TOTAL, total), tlv(Tag.PK_NUMBER, n)),
        )
        for n, chunk in enumerate(chunks, 1)
    ]


@attrs.frozen
class UDH:
    reference: int
    total: int
    number: int


def parse_udh(content: bytes) -> tuple[UDH | None, bytes]:
    """Split a TP_udhi=1 MsgContent into its concatenation header and payload.

    Understands the 8-bit (IEI 0x00) and 16-bit (IEI 0x08) concatenation elements;
    other elements are skipped.  Returns (None, payload) when there is none.
    """
    if not content:
        raise SMGPError("TP_udhi set but MsgContent is empty")
    udhl = content[0]
    if udhl + 1 > len(content):
        raise SMGPError(f"UDH length {udhl} runs past the {len(content)}-octet content")
    header, payload = content[1 : 1 + udhl], content[1 + udhl :]
    pos = 0
    found: UDH | None = None
    while pos + 2 <= len(header):
        iei, iel = header[pos], header[pos + 1]
        value = header[pos + 2 : pos + 2 + iel]
        if len(value) != iel:
            raise SMGPError("UDH information element runs past the header")
        if iei == 0x00 and iel == 3:
            found = UDH(value[0], value[1], value[2])
        elif iei == 0x08 and iel == 4:
            found = UDH((value[0] << 8) | value[1], value[2], value[3])
        pos += 2 + iel
    return found, payload
