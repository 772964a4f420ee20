"""RTSP/1.0 (RFC 2326) messages: a pure, incremental, bounded codec.

One :class:`RtspParser` reads what arrives on an RTSP connection, split anywhere:
requests, responses (the proxy of a later task reads both) and interleaved binary
frames (``$``, channel, 16-bit length, RFC 2326 §10.12) mixed between them.  It
never buffers more than one header block (``max_header``) or one body
(``max_body``); anything malformed or oversized raises :class:`RtspCodecError` and
nothing else, so a protocol can answer 400 and close.  Encoding is strict; parsing
is liberal where real clients are sloppy (bare LF line ends, header case, spaces).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import attrs

RTSP_VERSION = "RTSP/1.0"
MAX_HEADER = 8 * 1024
MAX_BODY = 64 * 1024

REASONS: dict[int, str] = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 408: "Request Timeout",
    413: "Request Entity Too Large", 414: "Request-URI Too Large", 451: "Parameter Not Understood",
    453: "Not Enough Bandwidth", 454: "Session Not Found", 455: "Method Not Valid in This State",
    456: "Header Field Not Valid for Resource", 457: "Invalid Range", 459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable", 505: "RTSP Version Not Supported",
}

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def redact(uri: str) -> str:
    """A URL fit for a log line: its HashToken cut to 4 characters (a bearer credential for a minute)."""
    return re.sub(r"(hashtoken=)([^&/]{0,4})[^&/]*", r"\1\2…", uri, flags=re.IGNORECASE)


class RtspCodecError(ValueError):
    """The peer sent something that is not RTSP, or too much of it."""


class Headers:
    """Ordered, case-insensitive, multi-valued RTSP headers."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(str(k), str(v)) for k, v in items]

    def get(self, name: str, default: str | None = None) -> str | None:
        lname = name.lower()
        for k, v in self._items:
            if k.lower() == lname:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self._items if k.lower() == lname]

    def set(self, name: str, value: str | int) -> None:
        self.remove(name)
        self._items.append((name, str(value)))

    def add(self, name: str, value: str | int) -> None:
        self._items.append((name, str(value)))

    def remove(self, name: str) -> None:
        lname = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != lname]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@attrs.define
class RtspRequest:
    method: str
    uri: str
    headers: Headers = attrs.Factory(Headers)
    body: bytes = b""
    version: str = RTSP_VERSION

    @property
    def cseq(self) -> str | None:
        return self.headers.get("CSeq")

    def encode(self) -> bytes:
        if not _TOKEN.match(self.method) or any(c in self.uri for c in " \r\n") or not self.uri:
            raise RtspCodecError("bad method or URI")
        return _encode(f"{self.method} {self.uri} {self.version}", self.headers, self.body)


@attrs.define
class RtspResponse:
    code: int
    reason: str = ""
    headers: Headers = attrs.Factory(Headers)
    body: bytes = b""
    version: str = RTSP_VERSION

    @property
    def cseq(self) -> str | None:
        return self.headers.get("CSeq")

    def encode(self) -> bytes:
        if not 100 <= self.code <= 999:
            raise RtspCodecError("bad status code")
        reason = self.reason or REASONS.get(self.code, "Unknown")
        return _encode(f"{self.version} {self.code} {reason}", self.headers, self.body)


@attrs.frozen
class InterleavedFrame:
    """RFC 2326 §10.12: ``$``, channel, 16-bit big-endian length, data."""

    channel: int
    data: bytes

    def encode(self) -> bytes:
        return encode_interleaved(self.channel, self.data)


RtspEvent = RtspRequest | RtspResponse | InterleavedFrame


def encode_interleaved(channel: int, data: bytes) -> bytes:
    if not 0 <= channel <= 255 or len(data) > 0xFFFF:
        raise RtspCodecError("interleaved channel or length out of range")
    return b"$" + bytes([channel]) + len(data).to_bytes(2, "big") + data


def _encode(start: str, headers: Headers, body: bytes) -> bytes:
    lines = [start]
    for k, v in headers:
        if not _TOKEN.match(k) or "\r" in v or "\n" in v:
            raise RtspCodecError(f"bad header {k!r}")
        if k.lower() == "content-length":
            continue
        lines.append(f"{k}: {v}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


class RtspParser:
    """Incremental parser for one direction of an RTSP connection.

    ``feed(data)`` returns every complete event so far.  After an
    :class:`RtspCodecError` the stream has no recoverable framing; the caller closes.
    """

    def __init__(self, max_header: int = MAX_HEADER, max_body: int = MAX_BODY) -> None:
        self.max_header = max_header
        self.max_body = max_body
        self._buffer = bytearray()
        self._pending: RtspRequest | RtspResponse | None = None
        self._body_left = 0
        self.failed = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[RtspEvent]:
        if self.failed:
            raise RtspCodecError("parser already failed")
        self._buffer += data
        events: list[RtspEvent] = []
        try:
            while True:
                event = self._next()
                if event is None:
                    break
                events.append(event)
        except RtspCodecError:
            self.failed = True
            raise
        return events

    def _next(self) -> RtspEvent | None:
        buf = self._buffer
        if self._pending is not None:
            if len(buf) < self._body_left:
                return None
            message = self._pending
            message.body = bytes(buf[:self._body_left])
            del buf[:self._body_left]
            self._pending = None
            return message
        # Blank lines between messages are tolerated (RFC 2326 §4 keep-alive CRLFs).
        while buf[:1] in (b"\r", b"\n"):
            del buf[:1]
        if not buf:
            return None
        if buf[0] == 0x24:  # '$'
            if len(buf) < 4:
                return None
            length = int.from_bytes(buf[2:4], "big")
            if len(buf) < 4 + length:
                return None
            frame = InterleavedFrame(buf[1], bytes(buf[4:4 + length]))
            del buf[:4 + length]
            return frame
        end, sep = _header_end(buf, self.max_header)
        if end < 0:
            if len(buf) > self.max_header:
                raise RtspCodecError(f"header block longer than {self.max_header} bytes")
            return None
        block = bytes(buf[:end])
        del buf[:end + sep]
        message = _parse_head(block)
        length_text = message.headers.get("Content-Length")
        length = 0
        if length_text is not None:
            if not length_text.strip().isdigit():
                raise RtspCodecError(f"bad Content-Length {length_text!r}")
            length = int(length_text.strip())
            if length > self.max_body:
                raise RtspCodecError(f"body of {length} bytes exceeds {self.max_body}")
        if length == 0:
            return message
        self._pending, self._body_left = message, length
        return self._next()


def _header_end(buf: bytearray, limit: int) -> tuple[int, int]:
    """Where the header block ends and the length of the blank-line separator."""
    window = bytes(buf[:limit + 4])
    candidates = [(i, n) for i, n in ((window.find(b"\r\n\r\n"), 4), (window.find(b"\n\n"), 2)) if i >= 0]
    if not candidates:
        return -1, 0
    i, n = min(candidates)
    if i > limit:
        raise RtspCodecError(f"header block longer than {limit} bytes")
    return i, n


def _parse_head(block: bytes) -> RtspRequest | RtspResponse:
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RtspCodecError("header block is not UTF-8") from e
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    headers = Headers()
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[0] in " \t" and len(headers):  # obsolete folding: continue the last header
            items = list(headers)
            k, v = items[-1]
            headers = Headers([*items[:-1], (k, v + " " + line.strip())])
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            raise RtspCodecError(f"bad header line {line[:80]!r}")
        headers.add(name, value.strip())
    parts = start.split()
    if start.startswith("RTSP/"):
        if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
            raise RtspCodecError(f"bad status line {start[:80]!r}")
        return RtspResponse(int(parts[1]), " ".join(parts[2:]), headers, version=parts[0])
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[2].startswith("RTSP/"):
        raise RtspCodecError(f"bad request line {start[:80]!r}")
    return RtspRequest(parts[0], parts[1], headers, version=parts[2])


# ---------------------------------------------------------------------- header values


@attrs.frozen
class TransportSpec:
    """One alternative of a Transport header (RFC 2326 §12.39)."""

    profile: str  # "RTP/AVP" or "RTP/AVP/TCP" (RTP/AVP/UDP normalised to RTP/AVP)
    unicast: bool = True
    interleaved: tuple[int, int] | None = None
    client_port: tuple[int, int] | None = None
    server_port: tuple[int, int] | None = None
    destination: str | None = None
    source: str | None = None
    ssrc: int | None = None
    mode: str | None = None

    @property
    def tcp(self) -> bool:
        return self.profile == "RTP/AVP/TCP"

    def encode(self) -> str:
        parts = [self.profile, "unicast" if self.unicast else "multicast"]
        if self.destination:
            parts.append(f"destination={self.destination}")
        if self.source:
            parts.append(f"source={self.source}")
        if self.interleaved is not None:
            parts.append(f"interleaved={self.interleaved[0]}-{self.interleaved[1]}")
        if self.client_port is not None:
            parts.append(f"client_port={self.client_port[0]}-{self.client_port[1]}")
        if self.server_port is not None:
            parts.append(f"server_port={self.server_port[0]}-{self.server_port[1]}")
        if self.ssrc is not None:
            parts.append(f"ssrc={self.ssrc:08X}")
        if self.mode:
            parts.append(f"mode={self.mode}")
        return ";".join(parts)


def _pair(value: str, limit: int) -> tuple[int, int]:
    low, _, high = value.partition("-")
    a = int(low)
    b = int(high) if high else a + 1
    if not (0 <= a <= limit and 0 <= b <= limit):
        raise ValueError(value)
    return a, b


def parse_transport(value: str) -> list[TransportSpec]:
    """Every alternative the client offers, in its order of preference.

    Parameter names are matched case-insensitively because §15's own example sends
    ``RTP/AVP;UNICAST``; unknown parameters are ignored (RFC 2326 §12.39).
    """
    specs: list[TransportSpec] = []
    for alternative in value.split(","):
        fields = [f.strip() for f in alternative.split(";") if f.strip()]
        if not fields:
            continue
        profile = fields[0].upper()
        if profile in ("RTP/AVP/UDP", "RTP/AVP"):
            profile = "RTP/AVP"
        elif profile != "RTP/AVP/TCP":
            specs.append(TransportSpec(profile))
            continue
        kw: dict[str, object] = {}
        try:
            for f in fields[1:]:
                name, _, val = f.partition("=")
                name = name.strip().lower()
                val = val.strip()
                if name == "unicast":
                    kw["unicast"] = True
                elif name == "multicast":
                    kw["unicast"] = False
                elif name == "interleaved":
                    kw["interleaved"] = _pair(val, 255)
                elif name == "client_port":
                    kw["client_port"] = _pair(val, 65535)
                elif name == "server_port":
                    kw["server_port"] = _pair(val, 65535)
                elif name == "destination" and val:
                    kw["destination"] = val
                elif name == "source" and val:
                    kw["source"] = val
                elif name == "ssrc" and val:
                    kw["ssrc"] = int(val, 16) & 0xFFFFFFFF
                elif name == "mode":
                    kw["mode"] = val.strip('"').upper()
        except ValueError as e:
            raise RtspCodecError(f"bad Transport parameter in {alternative[:80]!r}") from e
        specs.append(TransportSpec(profile, **kw))  # type: ignore[arg-type]
    return specs


_NPT = re.compile(r"^\s*npt\s*=\s*(now|[0-9]+(?:\.[0-9]*)?|[0-9]+:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]*)?)?"
                  r"\s*-\s*([0-9]+(?:\.[0-9]*)?|[0-9]+:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]*)?)?\s*(?:;.*)?$")


def _npt_seconds(text: str) -> float:
    if ":" in text:
        h, m, s = text.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    return float(text)


def parse_npt_range(value: str) -> tuple[float | None, float | None]:
    """``npt=10-``, ``npt=10.5-20``, ``npt=now-``, ``npt=0:01:30-`` → (start, end); None = open.

    ``now`` is returned as None start: "from the live point".  Other units (smpte,
    clock) raise RtspCodecError, which the server answers with 457/501.
    """
    m = _NPT.match(value)
    if m is None or (m.group(1) is None and m.group(2) is None and "-" not in value):
        raise RtspCodecError(f"unsupported Range {value[:60]!r}")
    start = None if m.group(1) in (None, "now") else _npt_seconds(m.group(1))
    end = None if m.group(2) is None else _npt_seconds(m.group(2))
    return start, end


def format_npt(start: float, end: float | None) -> str:
    return f"npt={start:.3f}-" + ("" if end is None else f"{end:.3f}")
