"""A retransmitting STUN Binding client: a UDP socket's address as a STUN server sees it.

A host behind a NAT learns its NAT-mapped (ip, port) by sending a Binding request to
a STUN server and reading MAPPED-ADDRESS (or XOR-MAPPED-ADDRESS) from the answer
(RFC 3489 §9, RFC 5389 §7).  Over UDP the request is retransmitted until an answer or
the time limit (RFC 5389 §7.2.1; here at a fixed *interval*, bounded by *timeout*),
never blocking the reactor; all timers come from the injected reactor, so tests drive
them with ``task.Clock``.

The requests are classic RFC 3489 Bindings (16-byte transaction id, no magic
cookie), which RFC 3489 and RFC 5389 servers both answer: GlobalEye's cameras (spec
§15 step 3) are of that generation.  Built and read with :mod:`txturn.stun`.

:func:`mapped_address` opens a socket of its own (a one-off probe);
:class:`BindingTransactions` does the same from a socket that is already in use, such
as an RTSP session's RTP/RTCP ports (the mapping that matters is the media socket's):
the socket's protocol hands every datagram to :meth:`BindingTransactions.received`
first, which takes the STUN answers and leaves the media.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol

from txturn import stun

__all__ = ["BindingTransactions", "is_stun", "mapped_address"]


class _BindingClient(DatagramProtocol):
    def __init__(self, transaction_id: bytes, answer: Deferred[tuple[str, int]]) -> None:
        self.transaction_id = transaction_id
        self.answer = answer

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        try:
            message = stun.decode(datagram)
        except stun.StunDecodeError:
            return
        if (message.transaction_id != self.transaction_id or message.method != stun.Method.BINDING
                or message.msg_class != stun.Class.SUCCESS or self.answer.called):
            return
        mapped = message.attributes.get(stun.Attr.XOR_MAPPED_ADDRESS) or message.attributes.get(
            stun.Attr.MAPPED_ADDRESS)
        if mapped is not None:
            self.answer.callback((str(mapped[0]), int(mapped[1])))


def is_stun(datagram: bytes) -> bool:
    """A STUN message starts with two zero bits (RFC 5389 §6); RTP/RTCP start with version 2."""
    return len(datagram) >= 20 and datagram[0] < 0x40


class BindingTransactions:
    """Binding requests sent from an existing UDP socket, and their answers matched by transaction id."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._waiting: dict[bytes, Deferred[tuple[str, int] | None]] = {}

    def received(self, datagram: bytes) -> bool:
        """True if *datagram* was STUN (an answer to us or not): the caller must not treat it as media."""
        if not is_stun(datagram):
            return False
        try:
            message = stun.decode(datagram)
        except stun.StunDecodeError:
            return True
        answer = self._waiting.get(message.transaction_id)
        if (answer is None or answer.called or message.method != stun.Method.BINDING
                or message.msg_class != stun.Class.SUCCESS):
            return True
        mapped = message.attributes.get(stun.Attr.XOR_MAPPED_ADDRESS) or message.attributes.get(
            stun.Attr.MAPPED_ADDRESS)
        if mapped is not None:
            answer.callback((str(mapped[0]), int(mapped[1])))
        return True

    async def query(self, transport: Any, server: tuple[str, int], *, timeout: float = 1.5,
                    interval: float = 0.25) -> tuple[str, int] | None:
        """The mapping of the socket behind *transport* as *server* sees it; None after *timeout*."""
        transaction_id = os.urandom(16)  # RFC 3489 (classic): the camera generation's STUN
        request = stun.encode(stun.Message(stun.Method.BINDING, stun.Class.REQUEST, transaction_id))
        answer: Deferred[tuple[str, int] | None] = Deferred()
        self._waiting[transaction_id] = answer

        def send() -> None:
            try:
                transport.write(request, server)
            except (OSError, AttributeError):  # unreachable, or the port closed meanwhile
                pass

        def give_up() -> None:
            if not answer.called:
                answer.callback(None)

        calls = [self.reactor.callLater(index * interval, send) for index in range(max(1, int(timeout / interval)))]
        timer = self.reactor.callLater(timeout, give_up)
        try:
            return await answer
        finally:
            self._waiting.pop(transaction_id, None)
            for call in (*calls, timer):
                if call.active():
                    call.cancel()


async def mapped_address(reactor: Any, server: tuple[str, int], *, interface: str = "", port: int = 0,
                         timeout: float = 3.0, interval: float = 0.5) -> tuple[str, int] | None:
    """The (ip, port) the STUN *server* sees for a UDP socket on (*interface*, *port*); None on timeout."""
    transaction_id = os.urandom(16)  # RFC 3489: 128-bit transaction id, no magic cookie
    request = stun.encode(stun.Message(stun.Method.BINDING, stun.Class.REQUEST, transaction_id))
    answer: Deferred[tuple[str, int]] = Deferred()
    listening = reactor.listenUDP(port, _BindingClient(transaction_id, answer), interface=interface)
    sends: list[Any] = []
    try:
        for index in range(max(1, int(timeout / interval))):
            sends.append(reactor.callLater(index * interval, listening.write, request, server))
        def give_up() -> None:
            if not answer.called:
                answer.callback(None)  # type: ignore[arg-type]  # None: no answer in time

        timer = reactor.callLater(timeout, give_up)
        result = await answer
        if timer.active():
            timer.cancel()
        return result
    finally:
        for call in sends:
            if call.active():
                call.cancel()
        await listening.stopListening()
