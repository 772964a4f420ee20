"""The camera's UPnP IGD client (§7.3.2): map the RTSP port on the shop's router, and keep it mapped.

§7.3.2 asks a camera to open its RTSP port on the shop's Internet Gateway Device
with a random external port between 10000 and 60000, to report the IGD's external
address and that port as UpnpIP/RtspUpnpPort in LOGIN_REQ and HEARTBEAT_REQ, and,
when no mapping can be made, to report 0.0.0.0 and raise exception 12 (34H).

A mapping made once does not stay true: the shop's router reboots and forgets it,
the ISP hands the router a new address, a router that only grants leases lets it run
out, the router is replaced.  So, like miniupnpc-based camera firmware, the camera
checks its mapping every ``check_interval`` seconds (GetSpecificPortMappingEntry and
GetExternalIPAddress), adds it again when it is gone, renews a leased mapping at half
its lease, searches for the IGD again (SSDP, with backoff) when it stops answering,
and tells the camera whenever the address to report changes
(:meth:`CameraPortMapping.keep`).

**Why our own client instead of a library.**  The simulator runs thousands of
cameras in one reactor.  The PyPI ``miniupnpc`` bindings and ``upnpclient`` are
synchronous (each call blocks for up to its timeout, so they would need a thread
per camera); Debian's ``upnpc`` would cost a process per call and a parser for its
human-oriented output.  The subset of UPnP a camera needs is small and stable
(UPnP Device Architecture 1.0, IGD 1.0 WANIPConnection:1): one SSDP M-SEARCH over
UDP multicast, one device description fetch, and four SOAP actions
(GetExternalIPAddress, AddPortMapping, GetSpecificPortMappingEntry,
DeletePortMapping).  On Twisted and treq that is this module, non-blocking, with
every wait bounded.  It is tested against the real miniupnpd
(``tests/interop/test_netns_video.py``) and a fake IGD on loopback
(``tests/interop/test_sim_upnp.py``).  XML comes from the LAN, so it is parsed like every
other untrusted XML here: lxml without DTDs, entities or network access, and
bounded in size.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.sax.saxutils import escape

import attrs
import treq
from lxml import etree  # type: ignore[import-untyped]
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.web.http_headers import Headers

SSDP_ADDRESS = ("239.255.255.250", 1900)
SEARCH_TARGETS = ("urn:schemas-upnp-org:device:InternetGatewayDevice:1",
                  "urn:schemas-upnp-org:service:WANIPConnection:1")
WAN_SERVICES = ("urn:schemas-upnp-org:service:WANIPConnection:", "urn:schemas-upnp-org:service:WANPPPConnection:")
MAX_BODY = 65536
INVALID_ARGS = 402
NO_SUCH_ENTRY = 714  # NoSuchEntryInArray: GetSpecificPortMappingEntry of a port nobody mapped
CONFLICT = 718  # ConflictInMappingEntry (IGD 1.0 WANIPConnection)
ONLY_PERMANENT_LEASES = 725  # OnlyPermanentLeasesSupported

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                          remove_comments=True, remove_pis=True)

log = Logger()


class UpnpError(Exception):
    """The IGD could not be found, could not be understood, or refused an action.

    ``code`` is the UPnP errorCode when the IGD answered with one.  ``gone`` says the
    IGD did not answer as an IGD at all (no connection, a timeout, an HTTP error
    without a UPnP error, junk): its address or control URL is no longer to be
    trusted, and it has to be searched for again.
    """

    def __init__(self, message: str, code: int = 0, gone: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.gone = gone


@attrs.frozen
class UpnpSettings:
    """The camera's UPnP behaviour.  ``ssdp_address`` is a parameter only for tests."""

    discovery_timeout: float = 3.0
    request_timeout: float = 5.0
    port_range: tuple[int, int] = (10000, 60000)  # §7.3.2
    attempts: int = 8
    description: str = "GlobalEye RTSP"
    ssdp_address: tuple[str, int] = SSDP_ADDRESS
    #: Upkeep (see :class:`CameraPortMapping`): check the mapping and the external address
    #: this often, each wait stretched or shrunk at random by up to ``check_jitter`` of it,
    #: so that the cameras of a shop (or a simulated fleet) do not ask in lock-step.
    check_interval: float = 600.0
    check_jitter: float = 0.1
    #: The lease asked for when the IGD will not keep a permanent mapping (renewed at half).
    lease: int = 3600
    #: While no mapping can be made (no IGD, a refusal): try again after this, doubling up to retry_max.
    retry_initial: float = 30.0
    retry_max: float = 600.0


@attrs.frozen
class Igd:
    """A WAN connection service found on the LAN: where to send SOAP actions."""

    location: str
    control_url: str
    service_type: str


class _SsdpSearch(DatagramProtocol):
    """Collects the LOCATION of every SSDP answer, in arrival order, without duplicates."""

    def __init__(self) -> None:
        self.locations: list[str] = []
        self.waiting: Deferred[None] | None = None

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        lines = datagram[:4096].decode("latin-1").split("\r\n")
        if not lines or not lines[0].upper().startswith("HTTP/1.1 200"):
            return
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "location":
                location = value.strip()
                if location.startswith("http://") and location not in self.locations:
                    self.locations.append(location)
                    if self.waiting is not None and not self.waiting.called:
                        self.waiting.callback(None)


def m_search(target: str, address: tuple[str, int], mx: int = 1) -> bytes:
    return (f"M-SEARCH * HTTP/1.1\r\nHOST: {address[0]}:{address[1]}\r\nMAN: \"ssdp:discover\"\r\n"
            f"MX: {mx}\r\nST: {target}\r\n\r\n").encode()


def parse_description(location: str, body: bytes) -> Igd:
    """The first WANIPConnection (or WANPPPConnection) service of a device description."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as e:
        raise UpnpError(f"{location}: bad device description: {e}") from e
    base = location
    for element in root.iter("{*}URLBase"):
        if element.text and element.text.strip():
            base = element.text.strip()
    for service in root.iter("{*}service"):
        service_type = (service.findtext("{*}serviceType") or "").strip()
        control = (service.findtext("{*}controlURL") or "").strip()
        if control and service_type.startswith(WAN_SERVICES):
            return Igd(location, urljoin(base, control), service_type)
    raise UpnpError(f"{location}: no WANIPConnection or WANPPPConnection service")


def soap_body(service_type: str, action: str, arguments: dict[str, str | int]) -> bytes:
    args = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in arguments.items())
    return ('<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>'
            f'<u:{action} xmlns:u="{service_type}">{args}</u:{action}></s:Body></s:Envelope>\r\n').encode()


def parse_soap(action: str, code: int, body: bytes) -> dict[str, str]:
    """The output arguments of an action, or UpnpError with the UPnP errorCode."""
    try:
        root = etree.fromstring(body, _PARSER) if body.strip() else None
    except etree.XMLSyntaxError as e:
        raise UpnpError(f"{action}: HTTP {code}, unreadable answer: {e}") from e
    if root is not None:
        error = root.find(".//{*}UPnPError")
        if error is not None:
            number = (error.findtext("{*}errorCode") or "0").strip()
            text = (error.findtext("{*}errorDescription") or "").strip()
            raise UpnpError(f"{action}: UPnP error {number} {text}".strip(), int(number) if number.isdigit() else 0)
    if code != 200 or root is None:
        raise UpnpError(f"{action}: HTTP {code}")
    response = root.find(f".//{{*}}{action}Response")
    if response is None:
        raise UpnpError(f"{action}: no {action}Response in the answer")
    return {etree.QName(child).localname: (child.text or "").strip() for child in response}


class IgdClient:
    """SSDP discovery and the WANIPConnection actions a camera needs, all bounded in time."""

    def __init__(self, reactor: Any, http: treq.client.HTTPClient, settings: UpnpSettings | None = None) -> None:
        self.reactor = reactor
        self.http = http
        self.settings = settings or UpnpSettings()

    async def discover(self, interface: str) -> Igd:
        """M-SEARCH from *interface* (the camera's LAN address) until an IGD answers."""
        search = _SsdpSearch()
        port = self.reactor.listenMulticast(0, search, interface=interface, listenMultiple=False)
        try:
            port.setOutgoingInterface(interface)
            port.setTTL(2)
            deadline = self.reactor.seconds() + self.settings.discovery_timeout
            tried: set[str] = set()
            sent_at = -1.0
            errors: list[str] = []
            while self.reactor.seconds() < deadline:
                now = self.reactor.seconds()
                if now - sent_at >= 1.0:  # UDP: repeat the search once a second
                    for target in SEARCH_TARGETS:
                        port.write(m_search(target, self.settings.ssdp_address), self.settings.ssdp_address)
                    sent_at = now
                for location in [loc for loc in search.locations if loc not in tried]:
                    tried.add(location)
                    try:
                        return await self._describe(location)
                    except UpnpError as e:
                        errors.append(str(e))
                search.waiting = Deferred()
                timer = self.reactor.callLater(min(0.25, max(0.0, deadline - now)), search.waiting.callback, None)
                try:
                    await search.waiting
                finally:  # also when the camera stops mid-search: no timer left behind
                    if timer.active():
                        timer.cancel()
            raise UpnpError("no IGD answered the SSDP search within "
                            f"{self.settings.discovery_timeout:g} s" + (f" ({'; '.join(errors)})" if errors else ""))
        finally:
            await port.stopListening()

    async def _describe(self, location: str) -> Igd:
        try:
            response = await self.http.get(location, timeout=self.settings.request_timeout)
            body = await response.content()
        except Exception as e:
            raise UpnpError(f"{location}: {e}") from e
        if response.code != 200 or len(body) > MAX_BODY:
            raise UpnpError(f"{location}: HTTP {response.code}, {len(body)} bytes")
        return parse_description(location, body)

    async def action(self, igd: Igd, action: str, arguments: dict[str, str | int]) -> dict[str, str]:
        headers = Headers({"Content-Type": ['text/xml; charset="utf-8"'],
                           "SOAPAction": [f'"{igd.service_type}#{action}"']})
        try:
            response = await self.http.post(igd.control_url, data=soap_body(igd.service_type, action, arguments),
                                            headers=headers, timeout=self.settings.request_timeout)
            body = await response.content()
        except CancelledError:
            raise  # the camera is stopping: not a fault of the IGD
        except Exception as e:
            raise UpnpError(f"{action}: {e.__class__.__name__}: {e}", gone=True) from e
        if len(body) > MAX_BODY:
            raise UpnpError(f"{action}: answer of {len(body)} bytes", gone=True)
        try:
            return parse_soap(action, response.code, body)
        except UpnpError as e:
            e.gone = not e.code  # answered, but not as an IGD: search again
            raise

    async def external_ip(self, igd: Igd) -> str:
        return (await self.action(igd, "GetExternalIPAddress", {})).get("NewExternalIPAddress", "")

    async def add_port_mapping(self, igd: Igd, external_port: int, internal_client: str, internal_port: int,
                               description: str, protocol: str = "TCP", lease: int = 0) -> None:
        await self.action(igd, "AddPortMapping", {
            "NewRemoteHost": "", "NewExternalPort": external_port, "NewProtocol": protocol,
            "NewInternalPort": internal_port, "NewInternalClient": internal_client, "NewEnabled": 1,
            "NewPortMappingDescription": description, "NewLeaseDuration": lease})

    async def get_port_mapping(self, igd: Igd, external_port: int, protocol: str = "TCP") -> dict[str, str]:
        """GetSpecificPortMappingEntry: NewInternalClient, NewInternalPort, NewLeaseDuration, …

        UpnpError with code 714 (NoSuchEntryInArray) when the IGD has no such mapping.
        """
        return await self.action(igd, "GetSpecificPortMappingEntry", {
            "NewRemoteHost": "", "NewExternalPort": external_port, "NewProtocol": protocol})

    async def delete_port_mapping(self, igd: Igd, external_port: int, protocol: str = "TCP") -> None:
        await self.action(igd, "DeletePortMapping", {"NewRemoteHost": "", "NewExternalPort": external_port,
                                                     "NewProtocol": protocol})


Mapped = tuple[str, int]  # (external IP, external port): what the camera reports
ChangeCallback = Callable[[Mapped | None, str], None]


class CameraPortMapping:
    """One camera's RTSP mapping: made before the first registration, kept, removed on stop.

    :meth:`map` makes it (the camera awaits that before its first LOGIN_REQ);
    :meth:`keep` then checks it every ``check_interval`` seconds on *clock* (the
    reactor; a ``task.Clock`` in tests), the way miniupnpc-based firmware does:

    - **Gone** (GetSpecificPortMappingEntry answers 714: the router restarted and lost
      its table): added again, on the same external port if it is free (the address the
      platform has stays right), else on a new random one.
    - **Taken** (the entry now points at another LAN host): a new random port.
    - **New external address** (GetExternalIPAddress): reported.
    - **Leases.**  The mapping is asked for as permanent (lease 0).  An IGD that refuses
      that (725 OnlyPermanentLeasesSupported used the wrong way round, or 402, as some
      IGD:2 devices do) or answers with a running lease gets ``lease`` (3600 s) and a
      renewal at half of it; an IGD that refuses a lease with 725 gets a permanent one.
    - **The IGD stops answering** (no connection, timeouts, no UPnP answer): it is
      searched for again over SSDP, after ``retry_initial`` seconds doubling up to
      ``retry_max``, and once found the mapping is made again (the old port first).

    Whenever the address to report changes -- including to none, and back -- the
    *on_change* callback of :meth:`keep` gets the new value (None: report 0.0.0.0, raise
    exception 12) and the reason, and the change is logged with the IGD's address.
    """

    def __init__(self, client: IgdClient, rng: random.Random | None = None, clock: Any = None) -> None:
        self.client = client
        self.rng = rng or random.Random()
        self.clock = clock if clock is not None else client.reactor
        self.igd: Igd | None = None
        self.mapped: Mapped | None = None  # as last made or verified: what the camera reports
        self.failure = ""
        self.port: int | None = None  # the external port held (or last held) on the IGD
        self.lease = 0  # the lease asked for: 0 is permanent
        self.internal: tuple[str, int] | None = None  # (camera's LAN address, RTSP port)
        self.on_change: ChangeCallback | None = None
        self.checking: Deferred[None] | None = None  # the running (or last) upkeep round
        self.rounds = 0
        self.renewals = 0
        self._timer: IDelayedCall | None = None
        self._failures = 0
        self._stopped = False

    @property
    def settings(self) -> UpnpSettings:
        return self.client.settings

    def _where(self) -> str:
        if self.igd is None:
            return "no IGD"
        parts = urlsplit(self.igd.control_url)
        return f"IGD {parts.hostname}:{parts.port or 80}"

    # -- making the mapping

    async def map(self, internal_ip: str, internal_port: int) -> Mapped | None:
        """Map *internal_port* to a random external port; None (and ``failure`` says why) if impossible."""
        self.internal = (internal_ip, internal_port)
        try:
            self.mapped = await self._establish()
        except UpnpError as e:
            self._failed(e)
            return None
        self.failure = ""
        self._failures = 0
        return self.mapped

    async def _establish(self) -> Mapped:
        """Find the IGD if needed, read its external address, add the mapping (the old port first)."""
        assert self.internal is not None
        settings = self.settings
        if self.igd is None:
            self.igd = await self.client.discover(self.internal[0])
        external_ip = await self._external_ip(self.igd)
        for attempt in range(settings.attempts):
            port = self.port if attempt == 0 and self.port is not None else self.rng.randint(*settings.port_range)
            try:
                await self._add(self.igd, port)
            except UpnpError as e:
                if e.code == CONFLICT:
                    log.info("UPnP {where}: external port {port} taken; trying another", where=self._where(),
                             port=port)
                    continue
                raise
            self.port = port
            return external_ip, port
        raise UpnpError(f"{settings.attempts} external ports in a row were taken", CONFLICT)

    async def _external_ip(self, igd: Igd) -> str:
        external_ip = await self.client.external_ip(igd)
        if not external_ip or external_ip == "0.0.0.0":
            raise UpnpError("the IGD has no external address")
        return external_ip

    async def _add(self, igd: Igd, port: int) -> None:
        """AddPortMapping with the lease in use; on a lease refusal, once more with the other kind."""
        assert self.internal is not None
        internal_ip, internal_port = self.internal
        description = self.settings.description
        try:
            await self.client.add_port_mapping(igd, port, internal_ip, internal_port, description, lease=self.lease)
            return
        except UpnpError as e:
            if self.lease and e.code == ONLY_PERMANENT_LEASES:
                lease = 0
            elif not self.lease and e.code in (ONLY_PERMANENT_LEASES, INVALID_ARGS):
                lease = self.settings.lease
            else:
                raise
            log.info("UPnP {where}: lease {old} s refused ({e}); asking for {new} s", where=self._where(),
                     old=self.lease, e=e, new=lease)
            self.lease = lease
        await self.client.add_port_mapping(igd, port, internal_ip, internal_port, description, lease=self.lease)

    def _failed(self, e: UpnpError) -> None:
        self.failure = str(e)
        self.mapped = None
        self._failures += 1
        if e.gone and self.igd is not None:
            log.warn("UPnP {where}: stopped answering ({e}); it will be searched for again", where=self._where(),
                     e=e)
            self.igd = None

    # -- keeping it

    def keep(self, on_change: ChangeCallback | None = None) -> None:
        """Start the upkeep: check (or retry) on the clock from now on, *on_change* hears of changes."""
        self.on_change = on_change
        if not self._stopped and self.internal is not None:
            self._schedule()

    async def check(self) -> None:
        """One upkeep round now (the timer calls it; so may a test)."""
        before = self.mapped
        self.rounds += 1
        try:
            reason = await self._check()
            self.failure = ""
            self._failures = 0
        except UpnpError as e:
            if self._stopped:
                return
            where = self._where()
            self._failed(e)
            reason = f"{where}: {e}"
        if self._stopped:
            return
        if self.mapped != before:
            self._changed(before, reason)

    async def _check(self) -> str:
        """Verify (or remake) the mapping; the reason the reported address changed, if it did."""
        assert self.internal is not None
        if self.mapped is None or self.igd is None or self.port is None:
            found = self.igd is None
            self.mapped = await self._establish()
            return "IGD found again, mapping made" if found else "mapping made"
        igd, port, (old_ip, _) = self.igd, self.port, self.mapped
        external_ip = await self._external_ip(igd)
        reasons = []
        if external_ip != old_ip:
            reasons.append(f"external address changed from {old_ip} to {external_ip}")
        try:
            entry: dict[str, str] | None = await self.client.get_port_mapping(igd, port)
        except UpnpError as e:
            if e.gone:
                raise
            if e.code == NO_SUCH_ENTRY:
                log.info("UPnP {where}: the mapping of external port {port} is gone (the router restarted?); "
                         "adding it again", where=self._where(), port=port)
            else:
                # GetSpecificPortMappingEntry unsupported or refused: adding again is the check.
                log.info("UPnP {where}: cannot read the mapping of port {port} ({e}); adding it again",
                         where=self._where(), port=port, e=e)
            entry = None
        if entry is not None and (entry.get("NewInternalClient", "") != self.internal[0]
                                  or entry.get("NewInternalPort", "") != str(self.internal[1])):
            taken_by = f"{entry.get('NewInternalClient')}:{entry.get('NewInternalPort')}"
            log.warn("UPnP {where}: external port {port} now goes to {other}; mapping another",
                     where=self._where(), port=port, other=taken_by)
            self.port = None
            self.mapped = await self._establish()
            return "; ".join([*reasons, f"port {port} was taken by {taken_by}"])
        if entry is None:
            self.mapped = await self._establish()
            if self.port != port:
                reasons.append(f"the mapping of port {port} was gone and the port taken")
            return "; ".join(reasons)
        granted = entry.get("NewLeaseDuration", "0")
        if not self.lease and granted.isdigit() and int(granted) > 0:
            log.info("UPnP {where}: the permanent mapping of port {port} runs out in {s} s; asking for "
                     "{lease} s leases, renewed at half", where=self._where(), port=port, s=granted,
                     lease=self.settings.lease)
            self.lease = self.settings.lease
        if self.lease:
            await self._add(igd, port)  # the renewal
            self.renewals += 1
        self.mapped = (external_ip, port)
        return "; ".join(reasons)

    def _changed(self, before: Mapped | None, reason: str) -> None:
        after = self.mapped
        old = "none" if before is None else f"{before[0]}:{before[1]}"
        new = "none" if after is None else f"{after[0]}:{after[1]}"
        internal = "?" if self.internal is None else f"{self.internal[0]}:{self.internal[1]}"
        if after is None:
            log.warn("UPnP mapping of {internal}: {old} -> none ({reason})", internal=internal, old=old,
                     reason=reason)
        else:
            log.info("UPnP mapping of {internal}: {old} -> {new} on {where} ({reason})", internal=internal,
                     old=old, new=new, where=self._where(), reason=reason or "changed")
        if self.on_change is not None:
            self.on_change(after, reason or "changed")

    def _schedule(self) -> None:
        settings = self.settings
        jitter = settings.check_jitter
        if self.mapped is None:
            delay = min(settings.retry_max, settings.retry_initial * 2 ** min(max(0, self._failures - 1), 16))
            delay *= self.rng.uniform(1 - jitter, 1 + jitter)
        else:
            delay = settings.check_interval * self.rng.uniform(1 - jitter, 1 + jitter)
            if self.lease:  # renew at half the lease, never later
                delay = min(delay, self.lease / 2 * self.rng.uniform(1 - jitter, 1))
        self._timer = self.clock.callLater(max(1.0, delay), self._run)

    def _run(self) -> None:
        self._timer = None
        if self._stopped:
            return
        self.checking = Deferred.fromCoroutine(self.check())
        self.checking.addErrback(lambda f: f.trap(CancelledError))
        self.checking.addErrback(lambda f: log.failure("UPnP upkeep round failed", f))
        self.checking.addBoth(lambda _: None if self._stopped or self._timer is not None else self._schedule())

    def stop(self) -> None:
        """No more upkeep: the timer and any round in progress are cancelled."""
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.checking is not None and not self.checking.called:
            self.checking.cancel()

    async def release(self) -> None:
        """Stop the upkeep and delete the mapping (best effort: the camera is stopping)."""
        self.stop()
        if self.igd is None or self.port is None:
            return
        port = self.port
        self.port = None
        self.mapped = None
        try:
            await self.client.delete_port_mapping(self.igd, port)
        except UpnpError as e:
            log.warn("UPnP {where}: could not delete the mapping of port {port}: {e}", where=self._where(),
                     port=port, e=e)
