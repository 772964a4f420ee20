"""§15 step 3 for the simulated camera: its UDP media ports, STUN mappings and NAT opening.

A camera at a NAT-private address (:func:`behind_nat`) asks the platform's STUN server,
from the very sockets of a track (:func:`map_ports`), which public ports its NAT gave
them, and announces those; :class:`_UdpPort` follows the client's punch (§15).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from globaleye.media import rtp
from globaleye.sim.stun import BindingTransactions

if TYPE_CHECKING:
    from globaleye.sim.rtsp.players import Track

#: §15 step 3: how long SETUP may wait for the STUN mapping of its media ports.
STUN_TIMEOUT = 1.5
#: §15 step 3: the IP TTL of the packets that open the camera's own NAT towards the client.
#: Enough to cross the camera's NAT (the shop router is hop 1), too little to reach the
#: client's NAT: a packet that arrives there before the client has punched is at best
#: dropped and at worst (a Linux router that accepts it on INPUT) recorded as a flow,
#: after which that NAT must give the client's punch another port, which our NAT,
#: open to the first port only, then drops.  So the opener must die on the way.
NAT_OPEN_TTL = 2
#: Addresses behind a NAT (RFC 1918, RFC 6598 carrier-grade NAT).  An address outside
#: them (or loopback) is treated as reachable as it is.
NAT_RANGES = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                     "100.64.0.0/10"))

log = Logger()


class _UdpPort(DatagramProtocol):
    """One server-side UDP port of a track (RTP or RTCP).

    §15 step 3: the client sends empty RTP packets ("punch") to our server_port; if one
    arrives from another port than the SETUP declared (a NAT rewrote it), media goes
    there instead.  Only packets from the client's address are believed, so a third
    party cannot steer a stream.
    """

    noisy = False  # one port pair per UDP track: no start/stop lines in the log

    def __init__(self, track: Track, rtcp: bool, reactor: Any = None) -> None:
        self.track = track
        self.rtcp = rtcp
        self.stun = BindingTransactions(reactor) if reactor is not None else None

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        if self.stun is not None and self.stun.received(data):
            return  # the answer to our own Binding request (§15 step 3), not the client's
        track = self.track
        track.session.touch()
        if self.rtcp:
            if not (rtp.looks_like_rtcp(data) or rtp.looks_like_rtp(data)):  # an RR punch is 8 bytes
                return
        elif not rtp.looks_like_rtp(data) or rtp.looks_like_rtcp(data):
            return
        host, port = addr[0], addr[1]
        if host not in track.trusted_hosts:
            log.warn("RTSP session {sid}: ignored punch from {addr}: not the client's address",
                     sid=track.session.id, addr=f"{host}:{port}")
            return
        current = track.rtcp_dest if self.rtcp else track.rtp_dest
        if current != (host, port):
            log.info("RTSP session {sid}: {what} redirected from {old} to {new} (punch, §15)",
                     sid=track.session.id, what="RTCP" if self.rtcp else "RTP",
                     old=current, new=f"{host}:{port}")
            if self.rtcp:
                track.rtcp_dest = (host, port)
            else:
                track.rtp_dest = (host, port)




def behind_nat(local: str, *client_hosts: str) -> bool:
    """§15 step 3 applies: our media address is a NAT-private one and the client is outside our network.

    A client on loopback, or itself at a NAT-private address (the shop LAN), reaches
    our local ports as they are; a client at a public address (through the TURN relay,
    or UPnP's port forward) needs our NAT mapping, and our NAT opened towards it.
    """
    try:
        ours = ipaddress.ip_address(local)
    except ValueError:
        return False
    if not any(ours in net for net in NAT_RANGES):
        return False
    for host in client_hosts:
        try:
            theirs = ipaddress.ip_address(host)
        except ValueError:
            continue
        if theirs.is_loopback or any(theirs in net for net in NAT_RANGES):
            return False
    return True


async def map_ports(reactor: Any, track: Track, server: tuple[str, int]) -> tuple[str, tuple[int, int]] | None:
    """The STUN mappings of a track's RTP and RTCP ports, asked from those very sockets, in parallel."""
    from twisted.internet.defer import gatherResults

    queries = []
    for port in (track.rtp_port, track.rtcp_port):
        stun = port.protocol.stun if port is not None else None
        if stun is None:
            return None
        queries.append(Deferred.fromCoroutine(stun.query(port, server, timeout=STUN_TIMEOUT)))
    rtp_mapped, rtcp_mapped = await gatherResults(queries)
    if rtp_mapped is None:
        return None
    rtcp_port = rtcp_mapped[1] if rtcp_mapped is not None and rtcp_mapped[0] == rtp_mapped[0] else rtp_mapped[1] + 1
    return rtp_mapped[0], (rtp_mapped[1], rtcp_port)
