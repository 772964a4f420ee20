"""A simulated camera: the device side of §5, §7.2 and §7.3–§7.5.

It is the same codecs and the same :class:`~globaleye.device.messaging.MessageProtocol`
as the gateway, seen from the other end.  One :class:`SimulatedCamera` runs one
device's whole life as a coroutine on the reactor: redirect (optional), register,
log in to the primary gateway or else the backup, report abilities, beat every
120 s, answer the platform's commands from its own state, and when anything fails
back off (exponentially, with jitter, so ten thousand cameras don't reconnect in
lock-step) and start again.  The rules a real device must follow are kept: two
registrations at least 5 minutes apart (§7.2), two failed logins at least 3 minutes
apart (§7.3.3), reconnect after three unanswered heartbeats (§7.3.4).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.abstract import isIPAddress
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import URI, Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from globaleye.device.messaging import CommandError, MessageProtocol
from globaleye.device.protocol import messages as m
from globaleye.device.protocol.frame import Frame
from globaleye.sim.commands import answer
from globaleye.sim.state import CameraState, CloudAccount
from globaleye.sim.upnp import CameraPortMapping
from globaleye.util.urls import request_url
from txturn.turnclient import TurnClient

REGISTER_INTERVAL = 300.0  # §7.2
LOGIN_RETRY = 180.0  # §7.3.3
HEARTBEAT_INTERVAL = 120.0  # §7.3.4
HEARTBEAT_MISSES = 3


def device_key(seed: str, dev_id: str) -> str:
    """A stable per-device key, so a restarted simulator presents the pinned key again."""
    return hashlib.sha256(f"{seed}:{dev_id}".encode()).hexdigest()[:16]


@attrs.define
class Timing:
    """The device's timers; tests shrink them, the simulator keeps the spec's values."""

    register_interval: float = REGISTER_INTERVAL
    login_retry: float = LOGIN_RETRY
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    heartbeat_misses: int = HEARTBEAT_MISSES
    request_timeout: float = 10.0
    connect_timeout: float = 10.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    turn_failover: float = 30.0


@implementer(IAgentEndpointFactory)
class _LiteralEndpoints:
    """Connect ``http://<IPv4 literal>`` URLs with a plain TCP4ClientEndpoint.

    Agent's default is a HostnameEndpoint for every URL: a getaddrinfo on the reactor's
    thread pool, a LoopingCall of connection attempts and a class built per connection.
    At 1,000 new cameras a second that machinery was about a third of the simulator's CPU
    (docs/performance.md); registration URLs are IP literals, so it buys nothing there.
    Names and https keep Agent's usual path.
    """

    def __init__(self, reactor: Any, timeout: float = 10.0, tls: BrowserLikePolicyForHTTPS | None = None) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self.tls = tls or BrowserLikePolicyForHTTPS()

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        host = uri.host.decode("ascii")
        if uri.scheme == b"http" and isIPAddress(host):
            return TCP4ClientEndpoint(self.reactor, host, uri.port, timeout=self.timeout)
        endpoint = HostnameEndpoint(self.reactor, host, uri.port, timeout=self.timeout)
        if uri.scheme == b"https":
            from twisted.internet.endpoints import wrapClientTLS

            return wrapClientTLS(self.tls.creatorForNetloc(uri.host, uri.port), endpoint)
        return endpoint


@implementer(IBodyProducer)
class _Body:
    """A request body written at once (Agent's FileBodyProducer runs a Cooperator task per request)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@attrs.frozen
class HTTPAnswer:
    code: int
    body: bytes

    async def content(self) -> bytes:
        return self.body


class CameraHTTP:
    """The few HTTP calls a camera makes (§5 redirect, §7.2 register), on a bare Agent.

    The same ``post``/``get`` and ``code``/``content()`` as treq, which tests may pass
    instead, without treq's cookie, redirect and decoding layers: at 1,000 new cameras a
    second the simulator's own HTTP stack was its largest cost (docs/performance.md).
    """

    def __init__(self, reactor: Any, ca_file: str | None = None) -> None:
        self.reactor = reactor
        tls = None
        if ca_file:  # https:// URLs: trust this CA (PEM) instead of the system's, e.g. a platform's own
            from twisted.internet.ssl import Certificate

            with open(ca_file, "rb") as f:
                tls = BrowserLikePolicyForHTTPS(trustRoot=Certificate.loadPEM(f.read()))
        self.pool = pool = HTTPConnectionPool(reactor)
        # Redirect and registration of thousands of cameras go to one or two hosts: keep enough
        # idle connections for them to be reused instead of a connect and a close per request.
        pool.maxPersistentPerHost = 32
        self.agent = Agent.usingEndpointFactory(reactor, _LiteralEndpoints(reactor, tls=tls), pool=pool)

    def close(self) -> Deferred[None]:
        """Close the idle kept-alive connections (a test's clean-up)."""
        return self.pool.closeCachedConnections()

    def post(self, url: str, data: bytes, headers: Headers | None = None, timeout: float = 10.0) -> Deferred[HTTPAnswer]:
        return self._request(b"POST", url, headers, _Body(data), timeout)

    def get(self, url: str, headers: Headers | None = None, timeout: float = 10.0) -> Deferred[HTTPAnswer]:
        return self._request(b"GET", url, headers, None, timeout)

    def _request(self, method: bytes, url: str, headers: Headers | None, body: _Body | None,
                 timeout: float) -> Deferred[HTTPAnswer]:
        async def call() -> HTTPAnswer:
            response = await self.agent.request(method, url.encode("ascii"), headers, body)
            return HTTPAnswer(response.code, await readBody(response))

        return Deferred.fromCoroutine(call()).addTimeout(timeout, self.reactor)


def http_client(reactor: Any, ca_file: str | None = None) -> CameraHTTP:
    """The HTTP client of the simulated cameras (one per fleet); *ca_file* is trusted for https://."""
    return CameraHTTP(reactor, ca_file)


class CameraSession(MessageProtocol):
    """The device side of one TCP session."""

    def __init__(self, camera: SimulatedCamera) -> None:
        super().__init__(camera.clock)
        self.camera = camera
        self.lost: Deferred[None] = Deferred()
        self.beat: Deferred[None] | None = None

    def describe(self) -> str:
        return f"camera {self.camera.state.dev_id} ({self.peer})"

    def connectionLost(self, reason: Failure | None = None) -> None:
        super().connectionLost(reason)
        if not self.lost.called:
            self.lost.callback(None)
        if self.beat is not None and not self.beat.called:
            self.beat.cancel()

    def request_received(self, frame: Frame, message: m.Message) -> None:
        try:
            response = answer(self.camera.state, message)
        except Exception:
            self.log.failure("{who}: cannot answer <{root}>", who=self.describe(), root=message.ROOT)
            return
        self.camera.commands_answered += 1
        self.respond(frame, response)
        # Outcomes the device owes the platform later (e.g. of a Wi-Fi change) go out as 34H.
        while self.camera.state.pending_reports:
            report = self.camera.state.pending_reports.pop(0)
            self.request(report, self.camera.timing.request_timeout).addErrback(
                lambda f: self.log.warn("{who}: exception report unanswered: {e}", who=self.describe(),
                                        e=f.getErrorMessage()))


class SimulatedCamera:
    log = Logger()

    def __init__(self, state: CameraState, reactor: Any, *, register_url: str = "", redirect_url: str = "",
                 timing: Timing | None = None, rng: random.Random | None = None,
                 http: Any = None, relay_factory: Factory[Any] | None = None,
                 upnp: CameraPortMapping | None = None) -> None:
        self.state = state
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.register_url = register_url
        self.redirect_url = redirect_url
        self.timing = timing or Timing()
        self.rng = rng or random.Random()
        self.http = http or http_client(reactor)
        self.registration: m.RegisterResponse | None = None
        self.registered_at: float | None = None
        self.session: CameraSession | None = None
        self.online = False
        self.logins = 0
        self.commands_answered = 0
        self.last_error = ""
        self._stopped = False
        self._task: Deferred[None] | None = None
        self._failures = 0
        self.went_online: Deferred[None] = Deferred()
        # §14: connections that reach the camera through its TURN relay are served by
        # relay_factory (the camera's RTSP server); None means the camera keeps no relay.
        self.relay_factory = relay_factory
        self.turn: TurnClient | None = None
        self._turn_servers: list[tuple[str, int]] = []
        self._turn_check: Any = None
        # §7.3.2: the RTSP port mapping on the shop's IGD (None: the camera does no UPnP).
        self.upnp = upnp
        self.upnp_released: Deferred[None] | None = None
        #: Told (channel, ExceptionType) of each alarm raised (the cloud side takes a picture then).
        self.on_alarm: list[Callable[[int, int], None]] = []

    # Control ---------------------------------------------------------------------------

    def start(self) -> Deferred[None]:
        self._task = Deferred.fromCoroutine(self._run())
        self._task.addErrback(lambda f: f.trap(CancelledError))
        return self._task

    def stop(self) -> None:
        self._stopped = True
        if self.upnp is not None and self.upnp_released is None:
            self.upnp_released = Deferred.fromCoroutine(self.upnp.release())
        if self.turn is not None:
            self.turn.stop()
        if self._turn_check is not None and self._turn_check.active():
            self._turn_check.cancel()
        if self.session is not None and self.session.transport is not None:
            self.session.transport.loseConnection()
        if self._task is not None:
            self._task.cancel()

    def switch_gateway(self, host: str, port: int) -> None:
        """Test hook: pretend a new registration pointed at another gateway."""
        if self.registration is not None:
            self.registration = attrs.evolve(self.registration, nat_ip=host, nat_port=port)

    # Life --------------------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        await deferLater(self.clock, seconds, lambda: None)

    async def _backoff(self, reason: str) -> None:
        self._failures += 1
        self.last_error = reason
        delay = min(self.timing.backoff_max, self.timing.backoff_initial * 2 ** min(self._failures - 1, 16))
        delay *= self.rng.uniform(0.5, 1.5)
        self.log.debug("camera {dev_id}: {reason}; retrying in {delay:.1f} s", dev_id=self.state.dev_id,
                       reason=reason, delay=delay)
        await self._sleep(delay)

    async def _run(self) -> None:
        if self.upnp is not None:
            await self._map_upnp()
        while not self._stopped:
            if self.registration is None:
                if not await self._register():
                    continue
            assert self.registration is not None
            gateways = [(self.registration.nat_ip, self.registration.nat_port)]
            backup = (self.registration.backup_nat_ip, self.registration.backup_nat_port)
            if backup[0] and backup[1] and backup not in gateways:
                gateways.append(backup)
            connected = False
            for host, port in gateways:
                outcome = await self._session(host, port)
                if outcome == "connect-failed":
                    continue
                connected = True
                if outcome == "unknown":
                    self.registration = None  # §7.2: the platform no longer knows us: register again
                break
            if self._stopped:
                return
            if not connected:
                # §7.2: both gateways failed: register again to learn new addresses -- once the
                # 5-minute interval allows; until then keep trying the gateways we have (the
                # platform may only be restarting) instead of sitting out the interval.
                now = self.clock.seconds()
                if self.registered_at is None or now - self.registered_at >= self.timing.register_interval:
                    self.registration = None
                await self._backoff("primary and backup gateways unreachable")
            elif outcome == "login-failed":
                await self._sleep(self.timing.login_retry * self.rng.uniform(1.0, 1.1))
            elif outcome != "unknown":
                await self._backoff(f"session ended ({outcome})")

    async def _map_upnp(self) -> None:
        """§7.3.2: map the RTSP port before the first LOGIN_REQ reports it (0.0.0.0 if impossible), then keep it.

        The upkeep (:meth:`CameraPortMapping.keep`) re-checks the mapping for as long as
        the camera runs and calls :meth:`_upnp_changed` when the address to report changes.
        """
        assert self.upnp is not None
        s = self.state
        mapped = await self.upnp.map(s.local_ip, s.rtsp_local_port)
        s.upnp_ip, s.rtsp_upnp_port = mapped if mapped is not None else ("0.0.0.0", 0)
        if mapped is None:
            self.log.warn("camera {dev_id}: UPnP mapping failed: {why}", dev_id=s.dev_id, why=self.upnp.failure)
        else:
            self.log.info("camera {dev_id}: UPnP {ip}:{port} -> {local}:{lport}", dev_id=s.dev_id, ip=mapped[0],
                          port=mapped[1], local=s.local_ip, lport=s.rtsp_local_port)
        if not self._stopped:
            self.upnp.keep(self._upnp_changed)

    def _upnp_changed(self, mapped: tuple[str, int] | None, reason: str) -> None:
        """The mapping moved, vanished or came back: report it now, as the next heartbeat would.

        UpnpIP/RtspUpnpPort go out in a heartbeat at once (the gateway stores a change of
        address from any heartbeat).  Losing the mapping is §7.3.2's failure: 0.0.0.0 and
        exception 12, sent now if the camera is online, else after its next login.
        """
        s = self.state
        s.upnp_ip, s.rtsp_upnp_port = mapped if mapped is not None else ("0.0.0.0", 0)
        session = self.session
        online = session is not None and self.online and not self._stopped
        self.log.info("camera {dev_id}: UPnP address now {ip}:{port} ({reason}){when}", dev_id=s.dev_id,
                      ip=s.upnp_ip, port=s.rtsp_upnp_port, reason=reason,
                      when="; reporting it" if online else "; reported at the next login")
        if not online or session is None:
            return
        session.request(self._heartbeat(), self.timing.request_timeout).addErrback(lambda f: None)
        if mapped is None:
            report = m.ExceptionReportRequest(dev_id=s.dev_id, channel_no=0,
                                              exception_type=m.ExceptionType.UPNP_MAPPING_FAILED,
                                              exception_desc=f"UPnP mapping failed: {reason}"[:200])
            session.request(report, self.timing.request_timeout).addErrback(lambda f: None)

    async def raise_alarm(self, exception_type: int, description: str, channel_no: int = 0) -> int:
        """Report an alarm now (34H EXCEPTION_REPORT_REQ, §7.5.4), as a real camera does when its
        disk fails or someone tampers with it; the platform's Result (0: stored).  Offline: an error."""
        session = self.session
        if session is None or not self.online or self._stopped:
            raise CommandError(f"camera {self.state.dev_id} is offline: no alarm sent")
        report = m.ExceptionReportRequest(dev_id=self.state.dev_id, channel_no=channel_no,
                                          exception_type=exception_type, exception_desc=description[:200])
        for hook in list(self.on_alarm):
            hook(channel_no, exception_type)
        response = await session.request(report, self.timing.request_timeout)
        return int(response.result)

    async def _post(self, url: str, message: m.Message) -> bytes:
        response = await self.http.post(request_url(url), data=message.to_xml(),
                                        headers=Headers({"Content-Type": ["text/xml;charset=UTF-8"]}),
                                        timeout=self.timing.request_timeout)
        body = await response.content()
        if response.code != 200:
            raise CommandError(f"HTTP {response.code} from {url}: {body[:200]!r}")
        return bytes(body)

    async def _register(self) -> bool:
        now = self.clock.seconds()
        if self.registered_at is not None and now - self.registered_at < self.timing.register_interval:
            await self._sleep(self.registered_at + self.timing.register_interval - now)
        s = self.state
        try:
            if not self.register_url and self.redirect_url:
                redirect = m.RedirectResponse.from_xml(await self._post(self.redirect_url, m.RedirectRequest(
                    manufacturer_no=s.manufacturer_no, mode=s.model, dev_type=s.dev_type, dev_id=s.dev_id,
                    dev_key=s.dev_key)))
                if redirect.result != 0 or not redirect.lcms_url:
                    await self._backoff(f"redirect refused (Result {redirect.result})")
                    return False
                self.register_url = redirect.lcms_url.strip()
            response = m.RegisterResponse.from_xml(await self._post(self.register_url, m.RegisterRequest(
                manufacturer_no=s.manufacturer_no, mode=s.model, dev_type=s.dev_type, dev_id=s.dev_id,
                dev_key=s.dev_key)))
        except (CancelledError, GeneratorExit):
            raise
        except Exception as e:
            await self._backoff(f"registration failed: {e}")
            return False
        self.registered_at = self.clock.seconds()
        if response.result != 0:
            await self._backoff(f"registration refused (Result {response.result})")
            return False
        self.registration = response
        self._keep_relay(response)
        return True

    def stun_server(self) -> tuple[str, int] | None:
        """§15 step 3: where the camera learns its media ports' NAT mapping.

        REGISTER_RES names no STUN server, but its TURN server is one (every TURN port
        answers Binding, RFC 5766 §2 / RFC 8656 §3): the one the relay is on, else
        TurnIP/TurnPort.  None before the first registration.
        """
        if self.turn is not None:
            return self.turn.server
        registration = self.registration
        if registration is None or not registration.turn_ip.strip() or not registration.turn_port:
            return None
        return registration.turn_ip.strip(), registration.turn_port

    # TURN relay (§14) ---------------------------------------------------------------------

    def _keep_relay(self, registration: m.RegisterResponse) -> None:
        """Allocate (or move) the camera's RFC 6062 TCP relay on the TURN server of REGISTER_RES."""
        if self.relay_factory is None:
            return
        servers = [(registration.turn_ip.strip(), registration.turn_port),
                   (registration.backup_turn_ip.strip(), registration.backup_turn_port)]
        self._turn_servers = [s for i, s in enumerate(servers) if s[0] and s[1] and s not in servers[:i]]
        if not self._turn_servers:
            return
        primary = self._turn_servers[0]
        if self.turn is None:
            self.turn = TurnClient(primary, self.state.dev_id, self.state.dev_key, self.relay_factory,
                                   reactor=self.reactor, request_timeout=self.timing.request_timeout)
            self.turn.on_relayed.append(self._relayed)
            self.turn.start()
        elif self.turn.server not in self._turn_servers:
            self.turn.switch_server(*primary)

    def _relayed(self, address: tuple[str, int] | None) -> None:
        """A new relayed address (or none): report it at once, as the next heartbeat would."""
        s = self.state
        s.turn_relay_ip, s.rtsp_turn_relay_port = address if address is not None else ("0.0.0.0", 0)
        if self._stopped:
            return
        if address is None:
            # Lost: if the server stays unreachable, move to the other TURN server of REGISTER_RES.
            if self._turn_check is None or not self._turn_check.active():
                self._turn_check = self.clock.callLater(self.timing.turn_failover, self._turn_failover)
        else:
            self.log.info("camera {dev_id}: TURN relay {host}:{port}", dev_id=s.dev_id, host=address[0],
                          port=address[1])
        session = self.session
        if session is not None and self.online:
            session.request(self._heartbeat(), self.timing.request_timeout).addErrback(lambda f: None)

    def _turn_failover(self) -> None:
        if self.turn is None or self.turn.relayed_address is not None or len(self._turn_servers) < 2:
            return
        others = [s for s in self._turn_servers if s != self.turn.server]
        self.log.warn("camera {dev_id}: TURN server {old} unreachable; switching to {new}",
                      dev_id=self.state.dev_id, old=self.turn.server, new=others[0])
        self.turn.switch_server(*others[0])

    def _heartbeat(self) -> m.HeartbeatRequest:
        s = self.state
        return m.HeartbeatRequest(
            dev_id=s.dev_id, cur_video_num=s.cur_video_num, upnp_ip=s.upnp_ip, rtsp_upnp_port=s.rtsp_upnp_port,
            local_ip=s.local_ip, rtsp_local_port=s.rtsp_local_port, turn_relay_ip=s.turn_relay_ip,
            rtsp_turn_relay_port=s.rtsp_turn_relay_port)

    async def _session(self, host: str, port: int) -> str:
        endpoint = TCP4ClientEndpoint(self.reactor, host, port, timeout=self.timing.connect_timeout)
        session = CameraSession(self)
        try:
            await connectProtocol(endpoint, session)
        except (CancelledError, GeneratorExit):
            raise
        except Exception as e:
            self.last_error = f"connect to {host}:{port} failed: {e}"
            return "connect-failed"
        self.session = session
        try:
            return await self._converse(session)
        finally:
            self.online = False
            self.session = None
            if session.transport is not None:
                session.transport.loseConnection()

    async def _converse(self, session: CameraSession) -> str:
        s = self.state
        try:
            login = await session.request(m.LoginRequest(
                dev_ver=s.dev_ver, dev_id=s.dev_id, dev_key=s.dev_key, upnp_ip=s.upnp_ip,
                rtsp_upnp_port=s.rtsp_upnp_port, local_ip=s.local_ip, rtsp_local_port=s.rtsp_local_port,
                turn_relay_ip=s.turn_relay_ip, rtsp_turn_relay_port=s.rtsp_turn_relay_port,
                net_type=s.net_type), self.timing.request_timeout)
        except CommandError as e:
            return f"login unanswered: {e}"
        if login.result != 0:
            self.last_error = f"login refused (Result {login.result})"
            return "unknown" if login.result == 1 else "login-failed"
        self.online = True
        self.logins += 1
        if login.eurl.strip() and s.e_store_flag:
            # §7.5.1: LOGIN_RES carries the cloud account (§7.1.1); a 65H later replaces it.
            s.cloud = CloudAccount(url=login.eurl.strip(), account=login.e_account, password=login.e_password)
        self._failures = 0
        if not self.went_online.called:
            self.went_online.callback(None)
        try:
            await session.request(s.ability_report(), self.timing.request_timeout)
        except CommandError as e:
            return f"ability report unanswered: {e}"
        if self.upnp is not None and self.upnp.mapped is None:
            # §7.3.2/§7.5.4: a failed UPnP mapping is exception 12, reported after each login.
            report = m.ExceptionReportRequest(dev_id=s.dev_id, channel_no=0,
                                              exception_type=m.ExceptionType.UPNP_MAPPING_FAILED,
                                              exception_desc=f"UPnP mapping failed: {self.upnp.failure}"[:200])
            session.request(report, self.timing.request_timeout).addErrback(lambda f: None)
        misses = 0
        while not session.lost.called:
            session.beat = deferLater(self.clock, self.timing.heartbeat_interval, lambda: None)
            try:
                await session.beat
            except CancelledError:
                break
            try:
                await session.request(self._heartbeat(), self.timing.request_timeout)
                misses = 0
            except CommandError as e:
                misses += 1
                if misses >= self.timing.heartbeat_misses:
                    return f"{misses} heartbeats unanswered: {e}"
        return "connection lost"

