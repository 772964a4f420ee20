"""Every URL and address the platform hands out, built in one place.

An IPv6 literal in a URL needs brackets (RFC 3986 §3.2.2: ``http://[::1]:8080/``),
an SDP line names its address family (RFC 8866 §5.2: ``IN IP6 ::1``), and a host
that is already bracketed, or a name, passes through unchanged.  Every builder of
``http://public_host:port/…`` (GetMcuUrl, ``/redirect``, the province's
ReportAddress, the WSDL) and of the §8.9 ``rtsp://…/realplay?…`` URLs goes through
:func:`host_port`.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hyperlink import EncodedURL

#: The §8.9 URL fields in the order a client tries them (§15), with the camera's
#: address attributes (``DeviceAddresses``) each is built from.
PLAY_URL_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("LocalPlayUrl", "local_ip", "rtsp_local_port"),
    ("UpnpPlayUrl", "upnp_ip", "rtsp_upnp_port"),
    ("TurnPlayUrl", "turn_relay_ip", "rtsp_turn_relay_port"),
)


def is_ipv6(host: str) -> bool:
    """Whether *host* (bare, bracketed, or with a ``%zone``) is an IPv6 literal."""
    bare = host.strip("[]").split("%", 1)[0]
    try:
        return isinstance(ipaddress.ip_address(bare), ipaddress.IPv6Address)
    except ValueError:
        return False


def url_host(host: str) -> str:
    """*host* as it goes into a URL's authority: IPv6 literals bracketed (``::1`` → ``[::1]``;
    a zone's ``%`` escaped as ``%25``, RFC 6874), everything else as it is."""
    if host.startswith("[") and host.endswith("]"):
        return host
    if is_ipv6(host):
        return "[" + host.replace("%", "%25", 1) + "]"
    return host


def host_port(host: str, port: int | str) -> str:
    """``host:port`` for a URL or a ``Host`` header: ``127.0.0.1:80``, ``[::1]:80``."""
    return f"{url_host(host)}:{port}"


def http_url(host: str, port: int | str, path: str = "", scheme: str = "http") -> str:
    """``http://host:port/path`` (*path* starts with ``/`` or is empty)."""
    return f"{scheme}://{host_port(host, port)}{path}"


def sdp_address(host: str) -> str:
    """``IN IP4 a.b.c.d`` or ``IN IP6 x::y`` for SDP ``o=`` and ``c=`` lines (RFC 8866 §5.2, §5.7)."""
    bare = host.strip("[]").split("%", 1)[0]
    return f"IN IP6 {bare}" if is_ipv6(bare) else f"IN IP4 {bare}"


def realplay_url(host: str, port: int, dev_id: str, channel_no: int, token: str, *,
                 stream_type: int | None = None, file_name: str | None = None) -> str:
    """The §8.9/§7.5.5 live URL ``rtsp://ip:port/realplay?devid=…&channelno=…&streamtype=…&hashtoken=…``,
    or with *file_name* the §7.5.23 playback URL (``filename=…`` instead of ``streamtype=…``)."""
    what = f"filename={file_name}" if file_name is not None else f"streamtype={stream_type}"
    return f"rtsp://{host_port(host, port)}/realplay?devid={dev_id}&channelno={channel_no}&{what}&hashtoken={token}"


def camera_endpoints(addresses: Any) -> dict[str, tuple[str, int] | None]:
    """The camera's (host, port) for each §8.9 URL field, None where it reported none usable."""
    out: dict[str, tuple[str, int] | None] = {}
    for field, host_attr, port_attr in PLAY_URL_FIELDS:
        host, port = getattr(addresses, host_attr), getattr(addresses, port_attr)
        usable = bool(host) and host not in ("0.0.0.0", "::") and bool(port)
        out[field] = (host, port) if usable else None
    return out


class _LiteralURL(EncodedURL):
    """An already encoded ASCII URL whose ``to_uri`` is itself: hyperlink's IDNA-encodes the
    host, which fails for an IPv6 literal (``http://[::1]:8080/`` → "Codepoint U+003A not
    allowed"), and treq calls it on every request."""

    def to_uri(self, *args: Any, **kwargs: Any) -> _LiteralURL:
        return self


def request_url(url: str) -> Any:
    """*url* as treq should be given it: as it is, unless its host is an IPv6 literal, which
    treq (through hyperlink) cannot send; then an URL object that passes it through."""
    parsed = EncodedURL.from_text(url)
    return _LiteralURL.from_text(url) if is_ipv6(parsed.host) else url
