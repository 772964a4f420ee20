"""A TURN server (RFC 5766/8656) with TCP relays (RFC 6062) for Twisted: the public names.

Why it exists: GlobalEye cameras sit behind NATs; each one allocates a *TCP*
relay here with its DevID/DevKey and installs the spec §14 wildcard permission
(XOR-PEER-ADDRESS 0.0.0.0:0 = "any peer").  Phone clients then open a plain TCP
connection to the relayed address and talk RTSP to the camera through an
RFC 6062 ConnectionAttempt/ConnectionBind pair.  coturn refuses that wildcard
(issue #352), which is why the platform carries its own server.

Structure (this module re-exports the public names of all three):

* :mod:`txturn.allocation` -- ``TurnServer``, the state machine: allocations keyed
  by 5-tuple, permissions, channels, RFC 6062 connections keyed by CONNECTION-ID,
  quotas and the long-term credential check.  It talks to clients through small
  "link" objects so the same code serves UDP, TCP and TLS.
* :mod:`txturn.transports` -- the Twisted protocols: ``TurnUdpProtocol``,
  ``TurnStreamProtocol`` / ``TurnStreamFactory`` (TCP/TLS, with the stream
  deadlines), and the relay-side ``UdpRelayProtocol``, ``TcpRelayFactory``,
  ``PeerProtocol``.
* :mod:`txturn.splice` -- ``Pipe`` joins a client data connection and a peer
  connection once ConnectionBind succeeded; ``SplicePump`` then moves the bytes
  with ``os.splice`` (kernel to kernel) where possible.

All time comes from the reactor (``IReactorTime``) so tests drive lifetimes,
nonces, permissions and channels with ``task.Clock``.
"""

from __future__ import annotations

from txturn import allocation
from txturn.allocation import (
    TRANSPORT_TCP,
    TRANSPORT_UDP,
    WILDCARD_HOSTS,
    Address,
    Allocation,
    ChannelBinding,
    FiveTuple,
    PeerConnection,
    ServerSettings,
)
from txturn.splice import SPLICE_CHUNK, SPLICE_DRAIN_TRIES, SPLICE_FLAGS, Pipe, SplicePump
from txturn.transports import (
    PeerProtocol,
    TcpRelayFactory,
    TurnStreamFactory,
    TurnStreamProtocol,
    TurnUdpProtocol,
    UdpLink,
    UdpRelayProtocol,
    _ConnectFactory,
)


class TurnServer(allocation.TurnServer):
    """The TURN server: the state machine of :mod:`txturn.allocation` with the relay sockets of
    :mod:`txturn.transports` (the state machine imports no transport; this module joins them)."""

    udp_relay_protocol = UdpRelayProtocol
    tcp_relay_factory = TcpRelayFactory
    connect_factory = _ConnectFactory


__all__ = [
    "SPLICE_CHUNK",
    "SPLICE_DRAIN_TRIES",
    "SPLICE_FLAGS",
    "TRANSPORT_TCP",
    "TRANSPORT_UDP",
    "WILDCARD_HOSTS",
    "Address",
    "Allocation",
    "ChannelBinding",
    "FiveTuple",
    "PeerConnection",
    "PeerProtocol",
    "Pipe",
    "ServerSettings",
    "SplicePump",
    "TcpRelayFactory",
    "TurnServer",
    "TurnStreamFactory",
    "TurnStreamProtocol",
    "TurnUdpProtocol",
    "UdpLink",
    "UdpRelayProtocol",
]
