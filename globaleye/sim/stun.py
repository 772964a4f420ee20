"""The camera's STUN query (§15 step 3): its address as the platform's STUN server sees it.

§15's UDP path has the camera and the client each learn their NAT-mapped address
from the platform's STUN server, so media can be sent (and punched) to it.  A camera
of the spec's generation speaks classic RFC 3489, so this is a classic Binding
request (16-byte transaction id, no magic cookie), built and read with txturn's
codec; the answer's MAPPED-ADDRESS is the camera's public (ip, port) for the UDP
socket it was sent from.  Retransmitted, bounded in time, never blocking the reactor.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol

from txturn import stun


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
        timer = reactor.callLater(timeout, lambda: answer.called or answer.callback(None))  # type: ignore[arg-type]
        result = await answer
        if timer.active():
            timer.cancel()
        return result
    finally:
        for call in sends:
            if call.active():
                call.cancel()
        await listening.stopListening()
