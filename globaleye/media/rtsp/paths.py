"""§15: which way to a camera works.  Shared by the proxy and ``globaleye-client``.

The order is the spec's: (1) the camera's local address, (2) its UPnP mapping, (3) its
TURN relay with RTP over UDP sent to our STUN-mapped address and punched towards the
camera, given up after ``udp_timeout`` (§15 step 4: 5 s) without media, (4) the TURN
relay with signalling and media interleaved over TCP.  Every attempt gets a fresh
URL (a HashToken is single-use, §7.5.5, and a failed attempt may have spent it), and
every attempt's outcome is kept, so "why not local?" can be answered from the log,
``GET_PARAMETER``, ``/status/streams`` or the client's output.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from twisted.logger import Logger

from globaleye.media.rtsp.message import redact
from globaleye.media.rtsp.upstream import PathFailed, UpstreamSession

log = Logger()

LOCAL, UPNP, TURN_UDP, TURN_TCP = "local", "upnp", "turn-udp", "turn-tcp"
PATHS = (LOCAL, UPNP, TURN_UDP, TURN_TCP)


@attrs.frozen
class PlayUrls:
    """The §8.9 answer: three URLs (empty when the camera has no such address) and STUN."""

    local: str = ""
    upnp: str = ""
    turn: str = ""
    stun_host: str = ""
    stun_port: int = 0

    def for_path(self, path: str) -> str:
        return {LOCAL: self.local, UPNP: self.upnp, TURN_UDP: self.turn, TURN_TCP: self.turn}[path]

    @property
    def stun(self) -> tuple[str, int] | None:
        return (self.stun_host, self.stun_port) if self.stun_host and self.stun_port else None


@attrs.frozen
class Attempt:
    path: str
    url: str  # token redacted
    ok: bool
    reason: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @property
    def summary(self) -> str:
        return f"{self.path}={'ok' if self.ok else 'failed'} ({self.reason})"


def summarize(attempts: list[Attempt]) -> str:
    """One line for GET_PARAMETER, GetStreamStatus and the logs: ``local=failed (…); upnp=ok (…)``."""
    return "; ".join(a.summary for a in attempts)


@attrs.frozen
class PathSettings:
    connect_timeout: float = 3.0
    udp_timeout: float = 5.0
    #: How long a TCP path may take from PLAY to its first packet before it counts as failed.
    media_timeout: float = 5.0
    paths: tuple[str, ...] = PATHS


class NoPath(Exception):
    """Every path failed; ``attempts`` says how."""

    def __init__(self, attempts: list[Attempt], status: int | None = None) -> None:
        super().__init__("; ".join(f"{a.path}: {a.reason}" for a in attempts) or "no path to try")
        self.attempts = attempts
        self.status = status


UrlSource = Callable[[str], Awaitable[PlayUrls]]


async def connect_camera(reactor: Any, fresh_urls: UrlSource, settings: PathSettings, *,
                         on_session: Callable[[UpstreamSession], None] | None = None,
                         play_headers: list[tuple[str, str]] | None = None,
                         label: str = "") -> tuple[UpstreamSession, list[Attempt]]:
    """The first path that delivers media: a playing :class:`UpstreamSession` and the attempts.

    *fresh_urls(path)* is asked once per attempt for a new set of URLs (new tokens).
    *on_session* is called with each session before PLAY, to attach media callbacks
    early enough not to miss the first IDR.  A camera answering 401/404/403 is a
    refusal of this user's request, not of the path, so it is raised at once: trying
    another path would only burn more tokens.
    """
    attempts: list[Attempt] = []
    for path in settings.paths:
        started = time.monotonic()
        try:
            urls = await fresh_urls(path)
        except Exception as e:  # the platform could not issue a URL
            attempts.append(Attempt(path, "", False, f"no URL: {e}", 0.0))
            break
        url = urls.for_path(path)
        if not url:
            attempts.append(Attempt(path, "", False, "the camera reports no such address", 0.0))
            log.info("{label} path {path}: skipped, the camera reports no such address", label=label, path=path)
            continue
        session = UpstreamSession(reactor, url, path, udp=path == TURN_UDP,
                                  stun_server=urls.stun if path == TURN_UDP else None,
                                  connect_timeout=settings.connect_timeout)
        try:
            await session.connect()
            await session.describe()
            await session.setup()
            if on_session is not None:
                on_session(session)
            await session.play(play_headers)
            delay = await session.wait_media(settings.udp_timeout if path == TURN_UDP else settings.media_timeout)
        except PathFailed as e:
            session.close()
            attempt = Attempt(path, redact(url), False, e.reason, time.monotonic() - started)
            attempts.append(attempt)
            log.info("{label} path {path} ({url}) failed after {s:.2f} s: {reason}", label=label, path=path,
                     url=attempt.url, s=attempt.seconds, reason=e.reason)
            if e.status in (401, 403, 404, 453, 454):
                raise NoPath(attempts, e.status) from None
            continue
        except BaseException:
            session.close()
            raise
        attempts.append(Attempt(path, redact(url), True, f"first RTP {delay * 1000:.0f} ms after PLAY",
                                time.monotonic() - started))
        log.info("{label} path {path} ({url}) chosen: first RTP {ms:.0f} ms after PLAY; before it: {others}",
                 label=label, path=path, url=redact(url), ms=delay * 1000,
                 others="; ".join(f"{a.path}: {a.reason}" for a in attempts[:-1]) or "none")
        return session, attempts
    raise NoPath(attempts)
