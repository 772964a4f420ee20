"""The binary frame of the device TCP session (spec §7.4).

Every message between a device and the gateway travels in one frame::

    HEAD(2)=FA F5 | CMD(1) | SEQ(2, network order) | Remark(1)=0 | LEN(2, network order)
    | DATA(LEN bytes of XML) | MD5(16) over header + data

This module is pure: bytes in, :class:`Frame` objects out.  The decoder is
incremental because TCP delivers frames split across reads and several frames in
one read.  It also has to survive a hostile or broken peer: a frame whose digest
does not match is dropped and counted (the spec's devices are cheap, a flipped bit
must not cost the session), and garbage between frames is skipped by hunting for
the next ``FA F5``.  What it will not do is hunt forever: a stream that yields no
valid frame within a bounded amount of garbage, or too many bad digests in a row,
cannot be trusted to be in sync and is declared lost.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator

import attrs

HEAD = b"\xfa\xf5"
_HEADER = struct.Struct("!2sBHBH")
HEADER_SIZE = _HEADER.size  # 8
DIGEST_SIZE = 16
OVERHEAD = HEADER_SIZE + DIGEST_SIZE
MAX_DATA = 0xFFFF  # §7.4.7: "最长不超过 65535 字节"
MAX_SEQ = 0xFFFF


class FrameError(ValueError):
    """A frame that cannot be encoded, or a stream that cannot be resynchronised."""


@attrs.frozen
class Frame:
    """One frame of the §7.4 structure; ``data`` is the XML body, still undecoded."""

    cmd: int = attrs.field(validator=attrs.validators.and_(attrs.validators.ge(0), attrs.validators.le(0xFF)))
    seq: int = attrs.field(validator=attrs.validators.and_(attrs.validators.ge(0), attrs.validators.le(MAX_SEQ)))
    data: bytes = b""
    remark: int = 0


@attrs.frozen
class BadDigest:
    """A frame whose MD5 did not match; it is dropped, the session goes on."""

    cmd: int
    seq: int
    length: int


@attrs.frozen
class Skipped:
    """Bytes thrown away while looking for the next frame head."""

    count: int


def digest(header_and_data: bytes) -> bytes:
    return hashlib.md5(header_and_data, usedforsecurity=False).digest()


def encode_frame(frame: Frame) -> bytes:
    """Serialise *frame*; the digest covers header and data as §7.4.8 says."""
    if len(frame.data) > MAX_DATA:
        raise FrameError(f"frame data of {len(frame.data)} bytes exceeds {MAX_DATA}")
    body = _HEADER.pack(HEAD, frame.cmd, frame.seq, frame.remark, len(frame.data)) + frame.data
    return body + digest(body)


def next_seq(seq: int) -> int:
    """§7.4.4: the sender's counter runs 0..65535 and starts again at 0."""
    return (seq + 1) & MAX_SEQ


class FrameDecoder:
    """Incremental decoder: :meth:`feed` bytes, get frames and events back.

    ``max_garbage`` bounds how many bytes may be skipped in a row without a valid
    frame; ``max_bad_digests`` bounds consecutive frames with a wrong MD5.  Past
    either bound :meth:`feed` raises :class:`FrameError` and the caller closes the
    connection.  Counters are kept for the operator's statistics.
    """

    def __init__(self, max_garbage: int = MAX_DATA + OVERHEAD, max_bad_digests: int = 8,
                 max_data: int = MAX_DATA) -> None:
        self._buffer = bytearray()
        self.max_garbage = max_garbage
        self.max_bad_digests = max_bad_digests
        self.max_data = max_data
        self.frames = 0
        self.bad_digests = 0
        self.skipped_bytes = 0
        self._garbage_run = 0
        self._bad_run = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame | BadDigest | Skipped]:
        self._buffer += data
        return list(self._drain())

    def _skip(self, count: int) -> Skipped:
        del self._buffer[:count]
        self.skipped_bytes += count
        self._garbage_run += count
        if self._garbage_run > self.max_garbage:
            raise FrameError(f"no frame head found in {self._garbage_run} bytes; stream out of sync")
        return Skipped(count)

    def _drain(self) -> Iterator[Frame | BadDigest | Skipped]:
        buf = self._buffer
        while buf:
            if not buf.startswith(HEAD):
                index = buf.find(HEAD, 1)
                if index < 0:
                    # Keep a trailing 0xFA: it may be the first half of a head.
                    keep = 1 if buf[-1:] == HEAD[:1] else 0
                    if len(buf) - keep:
                        yield self._skip(len(buf) - keep)
                    return
                yield self._skip(index)
                continue
            if len(buf) < HEADER_SIZE:
                return
            _head, cmd, seq, remark, length = _HEADER.unpack_from(buf)
            if length > self.max_data:
                # Cannot be one of ours: treat the head as garbage and hunt on.
                yield self._skip(2)
                continue
            total = HEADER_SIZE + length + DIGEST_SIZE
            if len(buf) < total:
                return
            body = bytes(buf[: HEADER_SIZE + length])
            expected = bytes(buf[HEADER_SIZE + length : total])
            del buf[:total]
            if digest(body) != expected:
                self.bad_digests += 1
                self._bad_run += 1
                if self._bad_run > self.max_bad_digests:
                    raise FrameError(f"{self._bad_run} consecutive frames with a bad digest")
                yield BadDigest(cmd, seq, length)
                continue
            self._bad_run = 0
            self._garbage_run = 0
            self.frames += 1
            yield Frame(cmd=cmd, seq=seq, data=body[HEADER_SIZE:], remark=remark)
