"""A pure STUN codec: RFC 5389/8489 messages, classic RFC 3489 messages, TURN attributes.

Bytes in, attrs objects out; no I/O and no Twisted, so the STUN server, the TURN
server and the tests can all share it and it can be fuzzed in isolation.

Design notes (why it looks like this):

* Attributes are *table driven* (``ATTRIBUTES``: type -> (name, pack, unpack)), in the
  style of aioice's ``stun.py``: adding an attribute is one table row, and the decoder
  cannot grow special cases per attribute.
* A message without the magic cookie is a classic RFC 3489 message; its transaction id
  is the full 16 bytes after the length.  XOR-* attributes are XORed with the 16 bytes
  after the length in both cases, which is exactly RFC 5389's "cookie + transaction id".
* Decoding is strict (length multiple of 4, attributes within the message, the two top
  bits of the type zero, known address families, ERROR-CODE class 3..6) because the
  decoder faces the Internet; everything malformed raises :class:`StunDecodeError`,
  and nothing else (hypothesis checks this).
* Attributes after MESSAGE-INTEGRITY other than FINGERPRINT are ignored (RFC 5389
  §15.4); anything after FINGERPRINT is an error (it "MUST be the last attribute").
* Duplicate attributes: the first one goes into ``Message.attributes`` (RFC 5389 §15:
  "only the first one needs to be processed"), the rest are kept in
  ``Message.repeated`` because TURN CreatePermission legitimately carries several
  XOR-PEER-ADDRESS attributes (RFC 5766 §9.1); ``Message.values()`` returns all.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import ipaddress
import os
import stringprep
import struct
import unicodedata
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import attrs

__all__ = [
    "ATTRIBUTES",
    "Attr",
    "Class",
    "FINGERPRINT_XOR",
    "HEADER_LENGTH",
    "MAGIC_COOKIE",
    "Message",
    "Method",
    "StunDecodeError",
    "check_fingerprint",
    "check_integrity",
    "comprehension_required_unknown",
    "decode",
    "decode_channel_data",
    "encode",
    "encode_channel_data",
    "is_channel_data",
    "is_stun",
    "long_term_key",
    "message_length",
    "new_transaction_id",
    "saslprep",
]

MAGIC_COOKIE = 0x2112A442
FINGERPRINT_XOR = 0x5354554E
HEADER_LENGTH = 20
_COOKIE_BYTES = struct.pack("!I", MAGIC_COOKIE)


class Method(IntEnum):
    """STUN/TURN methods (RFC 3489, 5389, 5766/8656, 6062)."""

    BINDING = 0x001
    SHARED_SECRET = 0x002
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009
    CONNECT = 0x00A
    CONNECTION_BIND = 0x00B
    CONNECTION_ATTEMPT = 0x00C


class Class(IntEnum):
    """The two class bits of the message type."""

    REQUEST = 0
    INDICATION = 1
    SUCCESS = 2
    ERROR = 3


class Attr(IntEnum):
    """Attribute types a STUN/TURN server or client meets."""

    MAPPED_ADDRESS = 0x0001
    RESPONSE_ADDRESS = 0x0002
    CHANGE_REQUEST = 0x0003
    SOURCE_ADDRESS = 0x0004
    CHANGED_ADDRESS = 0x0005
    USERNAME = 0x0006
    PASSWORD = 0x0007
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    REFLECTED_FROM = 0x000B
    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    DATA = 0x0013
    REALM = 0x0014
    NONCE = 0x0015
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    EVEN_PORT = 0x0018
    REQUESTED_TRANSPORT = 0x0019
    DONT_FRAGMENT = 0x001A
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    RESERVATION_TOKEN = 0x0022
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    PADDING = 0x0026
    RESPONSE_PORT = 0x0027
    CONNECTION_ID = 0x002A
    ADDITIONAL_ADDRESS_FAMILY = 0x8000
    ADDRESS_ERROR_CODE = 0x8001
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003
    ICMP = 0x8004
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    CACHE_TIMEOUT = 0x8027
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A
    RESPONSE_ORIGIN = 0x802B
    OTHER_ADDRESS = 0x802C


class StunDecodeError(ValueError):
    """Raised for any malformed STUN message, ChannelData message or attribute."""


@attrs.define
class Message:
    """One STUN message.

    ``transaction_id`` is 12 bytes for RFC 5389 messages, 16 bytes for classic RFC 3489
    messages (no magic cookie); ``cookie`` tells which.  ``attributes`` maps attribute
    type to its first value, in wire order; ``repeated`` holds the further values of
    attributes that occur more than once (see ``values``).
    """

    method: int
    msg_class: int
    transaction_id: bytes
    attributes: dict[int, Any] = attrs.field(factory=dict)
    repeated: dict[int, list[Any]] = attrs.field(factory=dict)

    @property
    def cookie(self) -> bool:
        """True for an RFC 5389 message (magic cookie + 12-byte transaction id)."""
        return len(self.transaction_id) == 12

    def values(self, attr_type: int) -> list[Any]:
        """All values of ``attr_type`` in wire order (e.g. several XOR-PEER-ADDRESS)."""
        if attr_type not in self.attributes:
            return []
        return [self.attributes[attr_type], *self.repeated.get(attr_type, [])]

    def add(self, attr_type: int, value: Any) -> None:
        """Add a value; a second value of the same type becomes a repeated attribute."""
        if attr_type in self.attributes:
            self.repeated.setdefault(attr_type, []).append(value)
        else:
            self.attributes[attr_type] = value


def new_transaction_id() -> bytes:
    """12 random bytes (RFC 5389 §6: cryptographically random)."""
    return os.urandom(12)


# --------------------------------------------------------------------------- type word


def _type_word(method: int, msg_class: int) -> int:
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((msg_class & 1) << 4)
        | ((msg_class & 2) << 7)
    )


def _split_type(word: int) -> tuple[int, int]:
    method = (word & 0x000F) | ((word & 0x00E0) >> 1) | ((word & 0x3E00) >> 2)
    msg_class = ((word >> 4) & 1) | ((word >> 7) & 2)
    return method, msg_class


# --------------------------------------------------------------------------- attribute packers
# Every unpacker receives (value_bytes, xor_key) where xor_key is the 16 bytes after the
# length field (cookie + transaction id, or the classic 16-byte id); every packer receives
# (value, xor_key) and returns the unpadded value bytes.

Packer = Callable[[Any, bytes], bytes]
Unpacker = Callable[[bytes, bytes], Any]


def _fail(reason: str) -> StunDecodeError:
    return StunDecodeError(reason)


@functools.lru_cache(maxsize=4096)
def _packed_ip(host: str) -> tuple[int, bytes]:
    """(STUN family, packed address); cached because servers answer the same
    clients over and over and ``ipaddress`` parsing dominated Binding encoding."""
    ip = ipaddress.ip_address(host)
    return (1 if ip.version == 4 else 2), ip.packed


def _pack_address(value: tuple[str, int], _key: bytes) -> bytes:
    host, port = value
    family, packed = _packed_ip(host)
    return struct.pack("!BBH", 0, family, port) + packed


def _unpack_address(data: bytes, _key: bytes) -> tuple[str, int]:
    if len(data) < 4:
        raise _fail(f"address attribute too short ({len(data)} bytes)")
    _reserved, family, port = struct.unpack("!BBH", data[:4])
    if family == 1:
        if len(data) != 8:
            raise _fail(f"IPv4 address attribute of length {len(data)}")
        return str(ipaddress.IPv4Address(data[4:8])), port
    if family == 2:
        if len(data) != 20:
            raise _fail(f"IPv6 address attribute of length {len(data)}")
        return str(ipaddress.IPv6Address(data[4:20])), port
    raise _fail(f"unknown address family {family:#x}")


def _xor(data: bytes, key: bytes) -> bytes:
    n = min(len(data), len(key))
    return (int.from_bytes(data[:n], "big") ^ int.from_bytes(key[:n], "big")).to_bytes(n, "big")


def _pack_xor_address(value: tuple[str, int], key: bytes) -> bytes:
    raw = _pack_address(value, key)
    return raw[:2] + _xor(raw[2:4], key[:2]) + _xor(raw[4:], key)


def _unpack_xor_address(data: bytes, key: bytes) -> tuple[str, int]:
    if len(data) < 4:
        raise _fail(f"address attribute too short ({len(data)} bytes)")
    return _unpack_address(data[:2] + _xor(data[2:4], key[:2]) + _xor(data[4:], key), key)


def _uint_codec(fmt: str, size: int) -> tuple[Packer, Unpacker]:
    def pack(value: int, _key: bytes) -> bytes:
        return struct.pack(fmt, value)

    def unpack(data: bytes, _key: bytes) -> int:
        if len(data) != size:
            raise _fail(f"integer attribute of length {len(data)}, expected {size}")
        return int(struct.unpack(fmt, data)[0])

    return pack, unpack


def _high_uint_codec(fmt: str, size: int, total: int) -> tuple[Packer, Unpacker]:
    """An integer in the first ``size`` bytes followed by RFFU bytes up to ``total``."""

    def pack(value: int, _key: bytes) -> bytes:
        return struct.pack(fmt, value) + bytes(total - size)

    def unpack(data: bytes, _key: bytes) -> int:
        if len(data) != total:
            raise _fail(f"attribute of length {len(data)}, expected {total}")
        return int(struct.unpack(fmt, data[:size])[0])

    return pack, unpack


def _pack_str(value: str, _key: bytes) -> bytes:
    return value.encode("utf-8")


def _unpack_str(data: bytes, _key: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(f"invalid UTF-8 in text attribute: {exc.reason}") from None


def _pack_bytes(value: bytes, _key: bytes) -> bytes:
    return bytes(value)


def _unpack_bytes(data: bytes, _key: bytes) -> bytes:
    return data


def _fixed_bytes(size: int) -> tuple[Packer, Unpacker]:
    def unpack(data: bytes, _key: bytes) -> bytes:
        if len(data) != size:
            raise _fail(f"attribute of length {len(data)}, expected {size}")
        return data

    return _pack_bytes, unpack


def _pack_none(_value: None, _key: bytes) -> bytes:
    return b""


def _unpack_none(data: bytes, _key: bytes) -> None:
    if data:
        raise _fail(f"flag attribute with {len(data)} value bytes")
    return None


def _pack_error_code(value: tuple[int, str], _key: bytes) -> bytes:
    code, reason = value
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode("utf-8")


def _unpack_error_code(data: bytes, _key: bytes) -> tuple[int, str]:
    if len(data) < 4:
        raise _fail("ERROR-CODE too short")
    _reserved, klass, number = struct.unpack("!HBB", data[:4])
    klass &= 0x07
    if not 3 <= klass <= 6:
        raise _fail(f"ERROR-CODE class {klass} outside 3..6")
    if number > 99:
        raise _fail(f"ERROR-CODE number {number} > 99")
    return klass * 100 + number, _unpack_str(data[4:], _key)


def _pack_unknown_attributes(value: tuple[int, ...], _key: bytes) -> bytes:
    return struct.pack(f"!{len(value)}H", *value)


def _unpack_unknown_attributes(data: bytes, _key: bytes) -> tuple[int, ...]:
    if len(data) % 2:
        raise _fail("UNKNOWN-ATTRIBUTES of odd length")
    return tuple(struct.unpack(f"!{len(data) // 2}H", data))


def _pack_even_port(value: bool, _key: bytes) -> bytes:
    return b"\x80" if value else b"\x00"


def _unpack_even_port(data: bytes, _key: bytes) -> bool:
    if len(data) != 1:
        raise _fail(f"EVEN-PORT of length {len(data)}")
    return bool(data[0] & 0x80)


def _pack_address_error_code(value: tuple[int, int, str], _key: bytes) -> bytes:
    family, code, reason = value
    return struct.pack("!BBBB", family, 0, code // 100, code % 100) + reason.encode("utf-8")


def _unpack_address_error_code(data: bytes, key: bytes) -> tuple[int, int, str]:
    """ADDRESS-ERROR-CODE (RFC 8656 §18.11): family, then an ERROR-CODE body."""
    if len(data) < 4:
        raise _fail("ADDRESS-ERROR-CODE too short")
    code, reason = _unpack_error_code(b"\x00\x00" + data[2:], key)
    return data[0], code, reason


def _pack_icmp(value: tuple[int, int, int], _key: bytes) -> bytes:
    icmp_type, icmp_code, error_data = value
    return struct.pack("!HBBI", 0, icmp_type, icmp_code, error_data)


def _unpack_icmp(data: bytes, _key: bytes) -> tuple[int, int, int]:
    if len(data) != 8:
        raise _fail(f"ICMP attribute of length {len(data)}")
    _reserved, icmp_type, icmp_code, error_data = struct.unpack("!HBBI", data)
    return icmp_type, icmp_code, error_data


def _pack_algorithm_list(value: tuple[tuple[int, bytes], ...], _key: bytes) -> bytes:
    out = b""
    for algorithm, params in value:
        out += struct.pack("!HH", algorithm, len(params)) + params + _padding(len(params))
    return out


def _unpack_algorithm_list(data: bytes, _key: bytes) -> tuple[tuple[int, bytes], ...]:
    result = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise _fail("truncated password algorithm")
        algorithm, length = struct.unpack("!HH", data[pos : pos + 4])
        end = pos + 4 + length
        if end > len(data):
            raise _fail("password algorithm parameters overrun the attribute")
        result.append((algorithm, data[pos + 4 : end]))
        pos = end + (-length % 4)
    return tuple(result)


def _pack_algorithm(value: tuple[int, bytes], key: bytes) -> bytes:
    return _pack_algorithm_list((value,), key)


def _unpack_algorithm(data: bytes, key: bytes) -> tuple[int, bytes]:
    algorithms = _unpack_algorithm_list(data, key)
    if len(algorithms) != 1:
        raise _fail("PASSWORD-ALGORITHM must hold exactly one algorithm")
    return algorithms[0]


_ADDRESS = (_pack_address, _unpack_address)
_XOR_ADDRESS = (_pack_xor_address, _unpack_xor_address)
_STR = (_pack_str, _unpack_str)
_BYTES = (_pack_bytes, _unpack_bytes)
_U32 = _uint_codec("!I", 4)
_U64 = _uint_codec("!Q", 8)
_FLAG = (_pack_none, _unpack_none)

#: attribute type -> (name, pack, unpack).  Value types are in the API contract
#: (.handoff/txturn-api.md); the rarer ones: ADDRESS_ERROR_CODE (family, code, reason),
#: ICMP (type, code, error data), PASSWORD_ALGORITHM (algorithm, params),
#: PASSWORD_ALGORITHMS a tuple of those, ICE_CONTROLL* / PRIORITY / CACHE_TIMEOUT /
#: RESPONSE_PORT / ADDITIONAL_ADDRESS_FAMILY int, PASSWORD / USERHASH / PADDING /
#: MESSAGE_INTEGRITY_SHA256 bytes, ALTERNATE_DOMAIN str.
ATTRIBUTES: dict[int, tuple[str, Packer, Unpacker]] = {
    Attr.MAPPED_ADDRESS: ("MAPPED-ADDRESS", *_ADDRESS),
    Attr.RESPONSE_ADDRESS: ("RESPONSE-ADDRESS", *_ADDRESS),
    Attr.CHANGE_REQUEST: ("CHANGE-REQUEST", *_U32),
    Attr.SOURCE_ADDRESS: ("SOURCE-ADDRESS", *_ADDRESS),
    Attr.CHANGED_ADDRESS: ("CHANGED-ADDRESS", *_ADDRESS),
    Attr.USERNAME: ("USERNAME", *_STR),
    Attr.PASSWORD: ("PASSWORD", *_BYTES),
    Attr.MESSAGE_INTEGRITY: ("MESSAGE-INTEGRITY", *_fixed_bytes(20)),
    Attr.ERROR_CODE: ("ERROR-CODE", _pack_error_code, _unpack_error_code),
    Attr.UNKNOWN_ATTRIBUTES: (
        "UNKNOWN-ATTRIBUTES",
        _pack_unknown_attributes,
        _unpack_unknown_attributes,
    ),
    Attr.REFLECTED_FROM: ("REFLECTED-FROM", *_ADDRESS),
    Attr.CHANNEL_NUMBER: ("CHANNEL-NUMBER", *_high_uint_codec("!H", 2, 4)),
    Attr.LIFETIME: ("LIFETIME", *_U32),
    Attr.XOR_PEER_ADDRESS: ("XOR-PEER-ADDRESS", *_XOR_ADDRESS),
    Attr.DATA: ("DATA", *_BYTES),
    Attr.REALM: ("REALM", *_STR),
    Attr.NONCE: ("NONCE", *_STR),
    Attr.XOR_RELAYED_ADDRESS: ("XOR-RELAYED-ADDRESS", *_XOR_ADDRESS),
    Attr.REQUESTED_ADDRESS_FAMILY: ("REQUESTED-ADDRESS-FAMILY", *_high_uint_codec("!B", 1, 4)),
    Attr.EVEN_PORT: ("EVEN-PORT", _pack_even_port, _unpack_even_port),
    Attr.REQUESTED_TRANSPORT: ("REQUESTED-TRANSPORT", *_high_uint_codec("!B", 1, 4)),
    Attr.DONT_FRAGMENT: ("DONT-FRAGMENT", *_FLAG),
    Attr.MESSAGE_INTEGRITY_SHA256: ("MESSAGE-INTEGRITY-SHA256", *_BYTES),
    Attr.PASSWORD_ALGORITHM: ("PASSWORD-ALGORITHM", _pack_algorithm, _unpack_algorithm),
    Attr.USERHASH: ("USERHASH", *_fixed_bytes(32)),
    Attr.XOR_MAPPED_ADDRESS: ("XOR-MAPPED-ADDRESS", *_XOR_ADDRESS),
    Attr.RESERVATION_TOKEN: ("RESERVATION-TOKEN", *_fixed_bytes(8)),
    Attr.PRIORITY: ("PRIORITY", *_U32),
    Attr.USE_CANDIDATE: ("USE-CANDIDATE", *_FLAG),
    Attr.PADDING: ("PADDING", *_BYTES),
    Attr.RESPONSE_PORT: ("RESPONSE-PORT", *_high_uint_codec("!H", 2, 4)),
    Attr.CONNECTION_ID: ("CONNECTION-ID", *_U32),
    Attr.ADDITIONAL_ADDRESS_FAMILY: (
        "ADDITIONAL-ADDRESS-FAMILY",
        *_high_uint_codec("!B", 1, 4),
    ),
    Attr.ADDRESS_ERROR_CODE: (
        "ADDRESS-ERROR-CODE",
        _pack_address_error_code,
        _unpack_address_error_code,
    ),
    Attr.PASSWORD_ALGORITHMS: (
        "PASSWORD-ALGORITHMS",
        _pack_algorithm_list,
        _unpack_algorithm_list,
    ),
    Attr.ALTERNATE_DOMAIN: ("ALTERNATE-DOMAIN", *_STR),
    Attr.ICMP: ("ICMP", _pack_icmp, _unpack_icmp),
    Attr.SOFTWARE: ("SOFTWARE", *_STR),
    Attr.ALTERNATE_SERVER: ("ALTERNATE-SERVER", *_ADDRESS),
    Attr.CACHE_TIMEOUT: ("CACHE-TIMEOUT", *_U32),
    Attr.FINGERPRINT: ("FINGERPRINT", *_U32),
    Attr.ICE_CONTROLLED: ("ICE-CONTROLLED", *_U64),
    Attr.ICE_CONTROLLING: ("ICE-CONTROLLING", *_U64),
    Attr.RESPONSE_ORIGIN: ("RESPONSE-ORIGIN", *_ADDRESS),
    Attr.OTHER_ADDRESS: ("OTHER-ADDRESS", *_ADDRESS),
}


def attribute_name(attr_type: int) -> str:
    """Human-readable name for logs."""
    entry = ATTRIBUTES.get(attr_type)
    return entry[0] if entry else f"0x{attr_type:04X}"


def _padding(length: int, pad_byte: int = 0) -> bytes:
    return bytes([pad_byte]) * (-length % 4)


# --------------------------------------------------------------------------- decode


def _header(data: bytes) -> tuple[int, int, bytes, bytes]:
    """Validate the header; return (type word, length, xor key, transaction id)."""
    if len(data) < HEADER_LENGTH:
        raise _fail(f"message of {len(data)} bytes is shorter than the 20-byte header")
    word, length = struct.unpack("!HH", data[:4])
    if word & 0xC000:
        raise _fail(f"top bits of the message type {word:#06x} are not zero")
    if length % 4:
        raise _fail(f"message length {length} is not a multiple of 4")
    if len(data) != HEADER_LENGTH + length:
        raise _fail(f"message length field {length} but {len(data) - HEADER_LENGTH} bytes follow")
    key = data[4:20]
    tid = data[8:20] if data[4:8] == _COOKIE_BYTES else key
    return word, length, key, tid


def _walk(data: bytes) -> list[tuple[int, int, int]]:
    """(type, value offset, value length) of each attribute; bounds-checked."""
    result = []
    pos = HEADER_LENGTH
    while pos < len(data):
        if pos + 4 > len(data):
            raise _fail("truncated attribute header")
        attr_type, length = struct.unpack("!HH", data[pos : pos + 4])
        end = pos + 4 + length
        if end > len(data):
            raise _fail(f"attribute {attribute_name(attr_type)} overruns the message")
        result.append((attr_type, pos + 4, length))
        pos = end + (-length % 4)
    if pos != len(data):
        raise _fail("padding of the last attribute overruns the message")
    return result


def decode(data: bytes) -> Message:
    """Decode one whole STUN message; raise StunDecodeError on anything malformed."""
    data = bytes(data)
    word, _length, key, tid = _header(data)
    method, msg_class = _split_type(word)
    msg = Message(method, msg_class, tid)
    after_integrity = False
    seen_fingerprint = False
    for attr_type, offset, length in _walk(data):
        if seen_fingerprint:
            raise _fail("attribute after FINGERPRINT")
        if after_integrity and attr_type != Attr.FINGERPRINT:
            continue  # RFC 5389 §15.4: ignored
        raw = data[offset : offset + length]
        entry = ATTRIBUTES.get(attr_type)
        if entry is None:
            value: Any = raw
        else:
            try:
                value = entry[2](raw, key)
            except StunDecodeError as exc:
                raise _fail(f"{entry[0]}: {exc}") from None
            except (ValueError, struct.error) as exc:  # pragma: no cover - defensive
                raise _fail(f"{entry[0]}: {exc}") from None
        msg.add(attr_type, value)
        if attr_type == Attr.MESSAGE_INTEGRITY:
            after_integrity = True
        elif attr_type == Attr.FINGERPRINT:
            seen_fingerprint = True
    return msg


def is_stun(data: bytes) -> bool:
    """Cheap demultiplexing test: two top bits zero and a plausible length."""
    return len(data) >= HEADER_LENGTH and data[0] < 0x40 and (data[3] & 3) == 0


# --------------------------------------------------------------------------- encode


def encode(
    msg: Message,
    *,
    integrity_key: bytes | None = None,
    fingerprint: bool = False,
    pad_byte: int = 0,
) -> bytes:
    """Encode ``msg``; append MESSAGE-INTEGRITY and/or FINGERPRINT when asked.

    MESSAGE-INTEGRITY / FINGERPRINT values found in ``msg.attributes`` are never
    written where they stand: a stale MESSAGE-INTEGRITY is written at the end only when
    no ``integrity_key`` is given (pass-through), and a FINGERPRINT present in the
    message is recomputed (a stale CRC is never useful).  ``pad_byte`` exists because
    RFC 5389 allows any padding value and RFC 5769's vectors use 0x20.
    """
    tid = msg.transaction_id
    if len(tid) == 12:
        key = _COOKIE_BYTES + tid
    elif len(tid) == 16:
        key = tid
    else:
        raise ValueError(f"transaction id must be 12 or 16 bytes, not {len(tid)}")
    body = bytearray()
    for attr_type, first in msg.attributes.items():
        if attr_type in (Attr.MESSAGE_INTEGRITY, Attr.FINGERPRINT):
            continue
        for value in (first, *msg.repeated.get(attr_type, ())):
            body += _pack_attribute(attr_type, value, key, pad_byte)
    header = struct.pack("!HH", _type_word(msg.method, msg.msg_class), 0) + key
    if integrity_key is not None:
        length = len(body) + 24
        digest = hmac.new(
            integrity_key, header[:2] + struct.pack("!H", length) + header[4:] + body, "sha1"
        ).digest()
        body += struct.pack("!HH", Attr.MESSAGE_INTEGRITY, 20) + digest
    elif Attr.MESSAGE_INTEGRITY in msg.attributes:
        body += _pack_attribute(
            Attr.MESSAGE_INTEGRITY, msg.attributes[Attr.MESSAGE_INTEGRITY], key, pad_byte
        )
    if fingerprint or Attr.FINGERPRINT in msg.attributes:
        length = len(body) + 8
        crc = _crc(header[:2] + struct.pack("!H", length) + header[4:] + body)
        body += struct.pack("!HHI", Attr.FINGERPRINT, 4, crc)
    return header[:2] + struct.pack("!H", len(body)) + header[4:] + bytes(body)


def _pack_attribute(attr_type: int, value: Any, key: bytes, pad_byte: int) -> bytes:
    entry = ATTRIBUTES.get(attr_type)
    raw = entry[1](value, key) if entry is not None else bytes(value)
    if len(raw) > 0xFFFF:
        raise ValueError(f"{attribute_name(attr_type)} value too long ({len(raw)} bytes)")
    return struct.pack("!HH", attr_type, len(raw)) + raw + _padding(len(raw), pad_byte)


def _crc(data: bytes) -> int:
    return (binascii.crc32(data) ^ FINGERPRINT_XOR) & 0xFFFFFFFF


# --------------------------------------------------------------------------- integrity


def _find(data: bytes, attr_type: int) -> tuple[int, int, int] | None:
    try:
        _header(data)
        attributes = _walk(data)
    except StunDecodeError:
        return None
    for entry in attributes:
        if entry[0] == attr_type:
            return entry
    return None


def check_integrity(data: bytes, key: bytes) -> bool:
    """Verify MESSAGE-INTEGRITY (HMAC-SHA1, RFC 5389 §15.4) of the raw message.

    The HMAC covers everything before the attribute with the length field rewritten to
    end just after MESSAGE-INTEGRITY, so a FINGERPRINT after it does not matter.
    """
    data = bytes(data)
    found = _find(data, Attr.MESSAGE_INTEGRITY)
    if found is None or found[2] != 20:
        return False
    _type, offset, _length = found
    signed = data[:2] + struct.pack("!H", offset + 20 - HEADER_LENGTH) + data[4 : offset - 4]
    expected = hmac.new(key, signed, "sha1").digest()
    return hmac.compare_digest(expected, data[offset : offset + 20])


def check_fingerprint(data: bytes) -> bool:
    """Verify FINGERPRINT (CRC-32 xor 0x5354554E, RFC 5389 §15.5); it must be last."""
    data = bytes(data)
    found = _find(data, Attr.FINGERPRINT)
    if found is None or found[2] != 4 or found[1] + 4 != len(data):
        return False
    offset = found[1]
    (value,) = struct.unpack("!I", data[offset : offset + 4])
    return _crc(data[: offset - 4]) == value


# --------------------------------------------------------------------------- credentials


def saslprep(text: str) -> str:
    """SASLprep (RFC 4013) with the stdlib's stringprep tables.

    Needed for long-term credentials (RFC 5389 §15.4); for ASCII it is the identity.
    Raises ValueError for prohibited characters.
    """
    if text.isascii() and text.isprintable():
        return text
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    result = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
    )
    for ch in result:
        if any(check(ch) for check in prohibited):
            raise ValueError(f"SASLprep: prohibited character {ch!r}")
    if any(stringprep.in_table_d1(ch) for ch in result):
        if any(stringprep.in_table_d2(ch) for ch in result):
            raise ValueError("SASLprep: mixed bidirectional text")
        if not (stringprep.in_table_d1(result[0]) and stringprep.in_table_d1(result[-1])):
            raise ValueError("SASLprep: RandALCat text must start and end with RandALCat")
    return result


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """MD5(username ":" realm ":" SASLprep(password)) (RFC 5389 §15.4)."""
    return hashlib.md5(
        f"{username}:{realm}:{saslprep(password)}".encode(), usedforsecurity=False
    ).digest()


def comprehension_required_unknown(msg: Message) -> tuple[int, ...]:
    """Unknown attribute types < 0x8000: the server must answer 420 listing them."""
    return tuple(t for t in msg.attributes if t < 0x8000 and t not in ATTRIBUTES)


# --------------------------------------------------------------------------- ChannelData


def is_channel_data(first_byte: int) -> bool:
    """ChannelData messages start with a channel number 0x4000..0x7FFF."""
    return 0x40 <= first_byte <= 0x7F


def encode_channel_data(channel: int, data: bytes, *, pad: bool) -> bytes:
    """ChannelData (RFC 5766 §11.4); ``pad`` must be True over TCP/TLS."""
    if not 0x4000 <= channel <= 0x7FFF:
        raise ValueError(f"channel number {channel:#x} outside 0x4000..0x7FFF")
    if len(data) > 0xFFFF:
        raise ValueError("ChannelData payload too long")
    out = struct.pack("!HH", channel, len(data)) + data
    return out + _padding(len(data)) if pad else out


def decode_channel_data(data: bytes) -> tuple[int, bytes]:
    """(channel, payload); accepts up to 3 padding bytes after the payload."""
    data = bytes(data)
    if len(data) < 4:
        raise _fail("ChannelData shorter than its 4-byte header")
    channel, length = struct.unpack("!HH", data[:4])
    if not 0x4000 <= channel <= 0x7FFF:
        raise _fail(f"channel number {channel:#x} outside 0x4000..0x7FFF")
    extra = len(data) - 4 - length
    if extra < 0:
        raise _fail(f"ChannelData length {length} but {len(data) - 4} bytes follow")
    if extra > 3:
        raise _fail(f"{extra} bytes after the ChannelData payload")
    return channel, data[4 : 4 + length]


def message_length(buffer: bytes | bytearray) -> int | None:
    """Bytes the next STUN/ChannelData message occupies in a TCP stream.

    None while fewer than 4 bytes are buffered.  Over TCP, ChannelData is padded to a
    multiple of 4 (RFC 5766 §11.5).  Raises StunDecodeError when the stream is neither
    STUN nor ChannelData, so a stream protocol can drop the connection.
    """
    if len(buffer) < 4:
        return None
    first = buffer[0]
    length = (buffer[2] << 8) | buffer[3]
    if first < 0x40:
        if length % 4:
            raise _fail(f"STUN length {length} is not a multiple of 4")
        return HEADER_LENGTH + length
    if is_channel_data(first):
        return 4 + length + (-length % 4)
    raise _fail(f"stream byte {first:#04x} starts neither STUN nor ChannelData")
