"""The key a peer is rate-limited under: one helper for every per-source limit.

A peer is ``host:port`` (or a bare host).  IPv4 counts as the address itself; an
IPv4-mapped IPv6 address (``::ffff:192.0.2.1``, what a dual-stack socket reports for an
IPv4 client) counts as that IPv4 address; any other IPv6 address counts by its /64, the
block one subscriber usually gets: per exact address, one host could take a fresh address
for every few attempts.  Anything that is not an IP address (a UNIX socket, "demo") is its
own key.
"""

from __future__ import annotations

import ipaddress

__all__ = ["source_address"]


def source_address(peer: str) -> str:
    """The address *peer*'s events are counted under (see the module docstring).

    *peer* is ``host:port``, ``[v6]:port``, a bare IPv4 or IPv6 address (a zone ``%eth0`` is
    dropped), or anything else (a UNIX socket, a test name), which counts as itself.
    """
    host = peer
    if peer.startswith("["):
        host = peer[1:].split("]", 1)[0]
    elif peer.count(":") == 1:
        host = peer.split(":", 1)[0]
    elif ":" in peer:
        try:
            ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            host = peer.rsplit(":", 1)[0]  # an unbracketed IPv6 address with a port
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
