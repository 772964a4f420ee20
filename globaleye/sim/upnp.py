"""The camera's UPnP IGD client (§7.3.2): map the RTSP port on the shop's router.

§7.3.2 asks a camera to open its RTSP port on the shop's Internet Gateway Device
with a random external port between 10000 and 60000, to report the IGD's external
address and that port as UpnpIP/RtspUpnpPort in LOGIN_REQ and HEARTBEAT_REQ, and,
when no mapping can be made, to report 0.0.0.0 and raise exception 12 (34H).

**Why our own client instead of a library.**  The simulator runs thousands of
cameras in one reactor.  The PyPI ``miniupnpc`` bindings and ``upnpclient`` are
synchronous (each call blocks for up to its timeout, so they would need a thread
per camera); Debian's ``upnpc`` would cost a process per call and a parser for its
human-oriented output.  The subset of UPnP a camera needs is small and stable
(UPnP Device Architecture 1.0, IGD 1.0 WANIPConnection:1): one SSDP M-SEARCH over
UDP multicast, one device description fetch, and three SOAP actions
(GetExternalIPAddress, AddPortMapping, DeletePortMapping).  On Twisted and treq
that is this module, non-blocking, with every wait bounded.  It is tested against
the real miniupnpd (``tests/test_netns_video.py``) and a fake IGD on loopback
(``tests/test_sim_upnp.py``).  XML comes from the LAN, so it is parsed like every
other untrusted XML here: lxml without DTDs, entities or network access, and
bounded in size.
"""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import urljoin
from xml.sax.saxutils import escape

import attrs
import treq
from lxml import etree  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.web.http_headers import Headers

SSDP_ADDRESS = ("239.255.255.250", 1900)
SEARCH_TARGETS = ("urn:schemas-upnp-org:device:InternetGatewayDevice:1",
                  "urn:schemas-upnp-org:service:WANIPConnection:1")
WAN_SERVICES = ("urn:schemas-upnp-org:service:WANIPConnection:", "urn:schemas-upnp-org:service:WANPPPConnection:")
MAX_BODY = 65536
CONFLICT = 718  # ConflictInMappingEntry (IGD 1.0 WANIPConnection)

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                          remove_comments=True, remove_pis=True)

log = Logger()


class UpnpError(Exception):
    """The IGD could not be found, could not be understood, or refused an action."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


@attrs.frozen
class UpnpSettings:
    """The camera's UPnP behaviour.  ``ssdp_address`` is a parameter only for tests."""

    discovery_timeout: float = 3.0
    request_timeout: float = 5.0
    port_range: tuple[int, int] = (10000, 60000)  # §7.3.2
    attempts: int = 8
    description: str = "GlobalEye RTSP"
    ssdp_address: tuple[str, int] = SSDP_ADDRESS


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
                await search.waiting
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
        except Exception as e:
            raise UpnpError(f"{action}: {e}") from e
        if len(body) > MAX_BODY:
            raise UpnpError(f"{action}: answer of {len(body)} bytes")
        return parse_soap(action, response.code, body)

    async def external_ip(self, igd: Igd) -> str:
        return (await self.action(igd, "GetExternalIPAddress", {})).get("NewExternalIPAddress", "")

    async def add_port_mapping(self, igd: Igd, external_port: int, internal_client: str, internal_port: int,
                               description: str, protocol: str = "TCP", lease: int = 0) -> None:
        await self.action(igd, "AddPortMapping", {
            "NewRemoteHost": "", "NewExternalPort": external_port, "NewProtocol": protocol,
            "NewInternalPort": internal_port, "NewInternalClient": internal_client, "NewEnabled": 1,
            "NewPortMappingDescription": description, "NewLeaseDuration": lease})

    async def delete_port_mapping(self, igd: Igd, external_port: int, protocol: str = "TCP") -> None:
        await self.action(igd, "DeletePortMapping", {"NewRemoteHost": "", "NewExternalPort": external_port,
                                                     "NewProtocol": protocol})


class CameraPortMapping:
    """One camera's RTSP mapping: made once before the first registration, removed on stop.

    The lease is permanent (0): IGD 1.0 devices commonly support only that, and the
    camera removes the mapping itself when it stops.  A power cut leaves a stale
    mapping, exactly as with a real camera; the next start picks a new random port.
    """

    def __init__(self, client: IgdClient, rng: random.Random | None = None) -> None:
        self.client = client
        self.rng = rng or random.Random()
        self.igd: Igd | None = None
        self.mapped: tuple[str, int] | None = None  # (external IP, external port)
        self.failure = ""

    async def map(self, internal_ip: str, internal_port: int) -> tuple[str, int] | None:
        """Map *internal_port* to a random external port; None (and ``failure`` says why) if impossible."""
        settings = self.client.settings
        try:
            self.igd = self.igd or await self.client.discover(internal_ip)
            external_ip = await self.client.external_ip(self.igd)
            if not external_ip or external_ip == "0.0.0.0":
                raise UpnpError("the IGD has no external address")
            for _attempt in range(settings.attempts):
                port = self.rng.randint(*settings.port_range)
                try:
                    await self.client.add_port_mapping(self.igd, port, internal_ip, internal_port,
                                                       settings.description)
                except UpnpError as e:
                    if e.code == CONFLICT:
                        log.info("UPnP: external port {port} taken; trying another", port=port)
                        continue
                    raise
                self.mapped = (external_ip, port)
                self.failure = ""
                return self.mapped
            raise UpnpError(f"{settings.attempts} external ports in a row were taken", CONFLICT)
        except UpnpError as e:
            self.failure = str(e)
            return None

    async def release(self) -> None:
        """Delete the mapping (best effort: the camera is stopping)."""
        if self.igd is None or self.mapped is None:
            return
        port = self.mapped[1]
        self.mapped = None
        try:
            await self.client.delete_port_mapping(self.igd, port)
        except UpnpError as e:
            log.warn("UPnP: could not delete the mapping of port {port}: {e}", port=port, e=e)
