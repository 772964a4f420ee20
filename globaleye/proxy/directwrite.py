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
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp


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
