"""STUN and ChannelData framing on a byte stream (TCP, TLS): one incremental decoder.

Over a stream, STUN messages (RFC 5389 §7.2.2) and ChannelData messages (RFC 5766
§11.5, RFC 8656 §12.5) follow each other with no separator: the length field in the
first four bytes says where each ends, and ChannelData is padded to a multiple of four
bytes over TCP.  :func:`txturn.stun.message_length` reads that length;
:class:`StreamFramer` holds the bytes between reads and cuts them into whole frames.

The three stream protocols of txturn use it: the TURN server's TCP/TLS connection
(:class:`txturn.transports.TurnStreamProtocol`), the TURN client's control and data
connections (:mod:`txturn.turnclient`) and the STUN server's TCP connection
(:class:`txturn.stunserver.StunTCPProtocol`).  No I/O here.

A frame is at most ``MAX_FRAME`` bytes (the length field has 16 bits), so a reader that
takes frames as they complete never holds more than one partial frame plus one read.
A reader that stops taking frames (the TURN server behind a ConnectionBind, RFC 6062
§5.4: what follows may be raw data for the peer) keeps the rest with :meth:`take_rest`.
"""

from __future__ import annotations

from txturn import stun

#: No frame is longer: a 20-byte STUN header plus a 16-bit length of attributes
#: (a padded ChannelData frame is at most 4 + 65,535 + 1 bytes).
MAX_FRAME = stun.HEADER_LENGTH + 0xFFFF


class StreamFramer:
    """Incremental decoder: :meth:`feed` bytes, then take whole frames with :meth:`next_frame`.

    >>> framer = StreamFramer()
    >>> framer.feed(bytes([0x40, 0x00, 0x00, 0x01, 0xAA, 0, 0, 0, 0x40]))
    >>> framer.next_frame()
    b'@\\x00\\x00\\x01\\xaa\\x00\\x00\\x00'
    >>> framer.next_frame() is None, framer.pending
    (True, 1)
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a whole frame (or were not taken yet)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Append bytes read from the stream."""
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next whole STUN message or ChannelData frame (padding included), or None
        while it is incomplete.

        Raises :class:`txturn.stun.StunDecodeError` when the next bytes start neither
        STUN nor ChannelData, or a STUN length is not a multiple of 4: such a stream
        cannot be resynchronised and the caller closes it.
        """
        size = stun.message_length(self._buffer)
        if size is None or len(self._buffer) < size:
            return None
        frame = bytes(self._buffer[:size])
        del self._buffer[:size]
        return frame

    def take_rest(self) -> bytes:
        """Everything held, removed from the framer (the stream stops being framed)."""
        rest = bytes(self._buffer)
        self._buffer = bytearray()
        return rest

    def clear(self) -> None:
        """Drop everything held (the connection is being closed)."""
        self._buffer = bytearray()
