"""Build a runnable TURN service (UDP + TCP, and TLS when a certificate is
configured) from one configuration object.

Kept separate from ``turnserver`` so embedding applications (the GlobalEye
platform) can build the state machine themselves, and so the mapping from
operator-facing config names (coturn-like) to runtime settings lives in one place.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import attrs
from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from txturn.auth import AuthGuard, ChainedLookup, CredentialLookup, RestApiSecret, StaticUsers
from txturn.policy import parse_port_range
from txturn.turnserver import ServerSettings, TurnServer, TurnStreamFactory, TurnUdpProtocol

log = Logger(namespace="txturn.service")


def _ports(value: Any) -> tuple[int, int]:
    return parse_port_range(value)


def _cidrs(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


@attrs.define
class TurnServerConfig:
    """Operator configuration; names follow coturn where one exists."""

    interface: str = "127.0.0.1"
    port: int = 3478
    tls_port: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    #: A server context factory for the TLS listener (``getContext()``, as ``listenSSL`` takes):
    #: embedders pass their own TLS profile; without it tls_cert/tls_key get OpenSSL's defaults.
    tls_context: Any = None
    realm: str = "txturn"
    relay_interface: str = "127.0.0.1"
    external_ip: str | None = None
    relay_ports: tuple[int, int] = attrs.field(default=(49152, 65535), converter=_ports)
    users: dict[str, str] = attrs.field(factory=dict)
    shared_secret: str | None = None
    allow_peers: tuple[str, ...] = attrs.field(default=(), converter=_cidrs)
    deny_peers: tuple[str, ...] = attrs.field(default=(), converter=_cidrs)
    user_quota: int | None = None
    total_quota: int | None = None
    class_quotas: dict[str, int] = attrs.field(factory=dict)
    max_bps: int | None = None
    default_lifetime: int = 600
    max_lifetime: int = 3600
    software: str | None = "txturn"
    use_splice: bool = True
    #: TCP/TLS: seconds from connect to the first whole STUN message (the TLS handshake included).
    stream_first_message_timeout: float = 10.0
    #: TCP/TLS: seconds from connect until the connection holds an allocation or is an RFC 6062
    #: data connection; a connection that only asks Binding requests or fails to authenticate goes.
    stream_auth_timeout: float = 30.0

    def settings(self) -> ServerSettings:
        return ServerSettings(
            realm=self.realm,
            software=self.software,
            relay_interface=self.relay_interface,
            external_ip=self.external_ip,
            relay_ports=self.relay_ports,
            allow_peers=self.allow_peers,
            deny_peers=self.deny_peers,
            user_quota=self.user_quota,
            total_quota=self.total_quota,
            class_quotas=self.class_quotas,
            max_bps=self.max_bps,
            default_lifetime=self.default_lifetime,
            max_lifetime=self.max_lifetime,
            use_splice=self.use_splice,
        )


#: Socket buffers for the shared UDP listener (coturn uses 2 MiB too).  With the
#: kernel default (~208 KiB, about 270 small datagrams) bursts of requests were
#: dropped before Python read them; the kernel caps the value at net.core.*mem_max.
UDP_SOCKET_BUFFER = 2 * 1024 * 1024


def _grow_buffers(port: Any) -> None:
    sock = getattr(port, "socket", None)  # absent on test reactors
    if sock is None:
        return
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, UDP_SOCKET_BUFFER)
        except OSError as e:  # pragma: no cover - best effort
            log.warn("cannot set UDP socket buffer: {e}", e=e)


class _ListenerService(service.Service):
    """Listens in startService; records the bound address (port 0 -> real port)."""

    def __init__(self, name: str, listen: Any) -> None:
        self.setName(name)
        self._listen = listen
        self.port: Any = None

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self.port = self._listen()
        host = self.port.getHost()
        log.info("TURN {name} listening on {host}:{port}", name=self.name, host=host.host, port=host.port)

    def stopService(self) -> defer.Deferred[None] | None:  # noqa: N802
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return defer.maybeDeferred(port.stopListening)
        return None


class TurnService(service.MultiService):
    """The TURN server plus its listeners; ``addresses`` gives the bound ports."""

    def __init__(self, server: TurnServer) -> None:
        super().__init__()
        self.server = server

    @property
    def addresses(self) -> dict[str, tuple[str, int]]:
        out = {}
        for svc in self:
            port = getattr(svc, "port", None)
            if port is not None:
                h = port.getHost()
                out[svc.name] = (h.host, h.port)
        return out

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802
        self.server.stop()
        return super().stopService()


def default_lookup(config: TurnServerConfig, reactor: Any) -> CredentialLookup:
    lookups: list[CredentialLookup] = []
    if config.users:
        lookups.append(StaticUsers(config.users))
    if config.shared_secret:
        lookups.append(RestApiSecret(config.shared_secret, reactor))
    return ChainedLookup(lookups)


def turn_service(
    config: TurnServerConfig,
    lookup: CredentialLookup | None = None,
    reactor: Any = None,
    wrap: Callable[[str, Any], Any] | None = None,
    guard: AuthGuard | None = None,
) -> TurnService:
    """A MultiService listening on UDP and TCP (and TLS if cert+key are given).

    ``lookup`` replaces the users/shared_secret of ``config`` (the platform
    passes its device-store lookup chained with those as it sees fit).
    ``wrap(name, factory)``, if given, returns the factory the ``tcp`` and ``tls``
    listeners really use (e.g. one that caps connections per source address); for
    TLS it wraps the TLS layer, so a refused connection costs no handshake.
    ``guard`` throttles credential checks (:class:`txturn.auth.AuthGuard`)."""
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    server = TurnServer(lookup or default_lookup(config, reactor), config.settings(), reactor, guard)
    top = TurnService(server)
    udp_proto = TurnUdpProtocol(server)
    timeouts = {"first_message_timeout": config.stream_first_message_timeout,
                "auth_timeout": config.stream_auth_timeout}
    tcp_factory: Any = TurnStreamFactory(server, "tcp", **timeouts)
    if wrap is not None:
        tcp_factory = wrap("tcp", tcp_factory)
    state: dict[str, int] = {}

    def listen_tcp() -> Any:
        # TCP first: with port 0 the kernel picks a port; UDP then takes the same
        # number so clients can use one "server:port" for both.
        port = reactor.listenTCP(config.port, tcp_factory, backlog=256, interface=config.interface)
        state["port"] = port.getHost().port
        return port

    def listen_udp() -> Any:
        port = reactor.listenUDP(state.get("port", config.port), udp_proto, interface=config.interface)
        _grow_buffers(port)
        return port

    _ListenerService("tcp", listen_tcp).setServiceParent(top)
    _ListenerService("udp", listen_udp).setServiceParent(top)
    if config.tls_port is not None and (config.tls_context is not None or (config.tls_cert and config.tls_key)):
        from twisted.internet import ssl

        cert_path, key_path = config.tls_cert, config.tls_key

        def listen_tls() -> Any:
            # A plain OpenSSL server context: Twisted's CertificateOptions
            # cipher/curve defaults made coturn's uclient abort the handshake.
            context = config.tls_context or ssl.DefaultOpenSSLContextFactory(key_path, cert_path)
            factory = TurnStreamFactory(server, "tls", **timeouts)
            if wrap is None:
                return reactor.listenSSL(
                    config.tls_port, factory, context, backlog=256, interface=config.interface,
                )
            from twisted.protocols.tls import TLSMemoryBIOFactory

            return reactor.listenTCP(
                config.tls_port, wrap("tls", TLSMemoryBIOFactory(context, False, factory)),
                backlog=256, interface=config.interface,
            )

        _ListenerService("tls", listen_tls).setServiceParent(top)
    return top
