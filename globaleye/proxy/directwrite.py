"""Writing a shared buffer to a viewer's TCP socket without Twisted's per-write bookkeeping.

A live hub sends each picture to every viewer as one buffer, the same ``bytes`` object for
all of them (:mod:`globaleye.proxy.fanout`).  Through ``transport.write`` each of those
writes costs a buffer append, an ``epoll_ctl`` to start writing, the next poll's
``doWrite`` (which joins, so copies, the buffer again), and an ``epoll_ctl`` to stop: at
500 viewers that was most of the proxy's time (docs/performance.md, the fan-out profile).
When Twisted holds nothing for the connection the kernel can take the buffer at once, so
:class:`DirectWriter` hands it to ``socket.send`` itself; only what the kernel does not
take (a viewer that reads slower than the stream: a partial send or ``EAGAIN``) goes to
``transport.write``, after which every write goes through Twisted until its buffer is
empty again.  So the order of bytes on the connection never changes, and the flow control
the slow-viewer rules rest on (Twisted pausing the connection's producer when its buffer
passes ``bufferSize``) is Twisted's as before.

Only a plain TCP connection of Twisted's own reactor qualifies: on TLS (RTSPS) or any
other transport the writer is just ``transport.write``.

UDP viewers (:class:`UdpSender`) get a picture's RTP packets in as few system calls as the
kernel allows: runs of packets of one size go in one ``sendmsg`` with ``UDP_SEGMENT``
(generic segmentation offload; the viewer still receives one datagram per packet), and a
route that cannot segment falls back to one ``sendto`` per packet.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

from twisted.internet import tcp

_U16 = struct.Struct("=H")


class DirectWriter:
    """``write(data)`` for one connection: the socket when Twisted's buffer is empty, else Twisted.

    *flow* is the connection's push producer (its ``paused`` is what Twisted's flow control
    last said): :meth:`offer` writes only while it is not paused, the per-picture check of a
    hub's shared buffers folded into the write.
    """

    __slots__ = ("transport", "flow", "socket", "closed", "direct_bytes", "queued_bytes")

    def __init__(self, transport: Any, flow: Any) -> None:
        self.transport = transport
        self.flow = flow
        #: None: not a plain TCP connection (TLS wraps it in a protocol): Twisted only.
        self.socket = transport.getHandle() if isinstance(transport, tcp.Connection) else None
        self.closed = False
        self.direct_bytes = 0
        self.queued_bytes = 0

    def close(self) -> None:
        """The connection is being closed: what is offered from now on is dropped."""
        self.closed = True

    def offer(self, data: bytes) -> bool:
        """Write *data* unless the connection is paused (then False: nothing was written)."""
        if self.flow.paused:
            return False
        if not self.closed:
            self(data)
        return True

    def __call__(self, data: bytes) -> None:
        t = self.transport
        sock = self.socket
        # Twisted's FileDescriptor keeps what it has not sent in dataBuffer (from offset) and
        # _tempDataBuffer (_tempDataLen bytes); both empty means nothing is waiting before us.
        if sock is not None and not t._tempDataLen and not t.dataBuffer and t.connected and not t.disconnecting:
            try:
                sent = sock.send(data)
            except OSError:
                sent = 0  # EAGAIN; or a broken connection, which Twisted finds on its own write
            self.direct_bytes += sent
            if sent == len(data):
                return
            data = data[sent:]
        self.queued_bytes += len(data)
        t.write(data)


#: Linux's UDP generic segmentation offload (``UDP_SEGMENT``, linux/udp.h; not in Python's
#: socket module before 3.12): one ``sendmsg`` of several datagrams of one size (the last may be
#: shorter), cut by the kernel.  Limits: 64 segments (older kernels' UDP_MAX_SEGMENTS) and a
#: total that fits one IP datagram.
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000
_GSO_REFUSED = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})


def gso_runs(packets: list[bytes]) -> list[tuple[int, bytes, int]]:
    """*packets* as runs UDP_SEGMENT can send, in order: (segment size, the run's bytes, count).

    A run is packets of one size, the last of which may be shorter; size 0 means one packet,
    sent as it is.  A picture's RTP packets are mostly runs already: a camera cuts a slice into
    FU-A fragments of one size and a shorter last one.
    """
    runs: list[tuple[int, bytes, int]] = []
    i, n = 0, len(packets)
    while i < n:
        size = len(packets[i])
        j, total = i + 1, size
        while j < n and j - i < GSO_MAX_SEGMENTS and total + len(packets[j]) <= GSO_MAX_BYTES:
            length = len(packets[j])
            if length > size:
                break
            j += 1
            total += length
            if length < size:
                break  # a shorter one ends the run
        runs.append((size if j - i > 1 else 0, b"".join(packets[i:j]) if j - i > 1 else packets[i], j - i))
        i = j
    return runs


class UdpSender:
    """Datagrams to one viewer address from the proxy's RTP port for it, a picture's in few calls."""

    __slots__ = ("socket", "address", "gso")

    def __init__(self, sock: socket.socket, address: Any) -> None:
        self.socket = sock
        self.address = address
        self.gso = True

    def send(self, packet: bytes) -> None:
        try:
            self.socket.sendto(packet, self.address)
        except OSError:
            pass  # the viewer's port is gone (its RTSP session ends it) or the buffer is full: lost

    def send_runs(self, runs: list[tuple[int, bytes, int]], packets: list[bytes]) -> None:
        """One picture's *packets*, cut in *runs* (``gso_runs``)."""
        if not self.gso:
            for packet in packets:
                self.send(packet)
            return
        start = 0
        for size, data, count in runs:
            if not size:
                self.send(data)
            else:
                try:
                    self.socket.sendmsg([data], [(socket.SOL_UDP, UDP_SEGMENT, _U16.pack(size))], 0, self.address)
                except OSError as e:
                    if e.errno in _GSO_REFUSED:
                        self.gso = False  # this socket's route cannot segment: one by one from now on
                        for packet in packets[start:start + count]:
                            self.send(packet)
            start += count
