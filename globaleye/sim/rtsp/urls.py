"""The simulated camera's RTSP URLs (§7.5.5, §7.5.23) and HashToken verifiers (§10).

::

    rtsp://ip:port/realplay?devid=…&channelno=…&streamtype=1|2&hashtoken=…
    rtsp://ip:port/realplay?devid=…&channelno=…&filename=DevID_Ch_YYYYMMDDHHMMSS.ts&hashtoken=…

:func:`parse_url` names the target of a request (a :class:`Target`), and a
:data:`Verifier` asks whether its HashToken is good (:func:`platform_verifier`: the
camera session's 35H/74H request; :class:`OneTimeTokens`: tokens a test hands out).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import attrs

from globaleye.media.names import RECORDING_SECONDS
from globaleye.media.rtsp.serving import Refusal

Kind = Literal["live", "playback"]
#: ``async def verify(kind, dev_id, channel_no, stream_type_or_filename, token) -> bool``.
#: Raising means "could not ask" (platform unreachable): answered 503, not 401.
Verifier = Callable[[Kind, str, int, "int | str", str], Awaitable[bool]]

VIDEO_TRACK, AUDIO_TRACK = 0, 1


# ---------------------------------------------------------------------- verifiers


class OneTimeTokens:
    """An in-memory HashToken verifier with the platform's rules: single use, 60 s life.

    For tests and for running a simulated camera without a platform.  ``issue`` hands
    out a token bound to one (kind, DevID, channel, stream type or file name).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, ttl: float = 60.0) -> None:
        self.clock = clock
        self.ttl = ttl
        self._tokens: dict[str, tuple[tuple[str, str, int, str], float]] = {}
        self.checked: list[tuple[str, bool]] = []

    def issue(self, kind: Kind, dev_id: str, channel_no: int, target: int | str) -> str:
        token = secrets.token_hex(16)
        self._tokens[token] = ((kind, dev_id, channel_no, str(target)), self.clock() + self.ttl)
        return token

    async def __call__(self, kind: Kind, dev_id: str, channel_no: int, target: int | str,
                       token: str) -> bool:
        entry = self._tokens.pop(token, None)  # single use: gone whatever the outcome
        ok = (entry is not None and entry[0] == (kind, dev_id, channel_no, str(target))
              and self.clock() <= entry[1])
        self.checked.append((token, ok))
        return ok


def platform_verifier(session: Callable[[], Any], timeout: float = 10.0) -> Verifier:
    """The real verifier: ask the platform over the camera's §7.3 session (35H / 74H).

    *session* returns the camera's current :class:`~globaleye.device.messaging.MessageProtocol`
    (``lambda: simulated_camera.session``) or None when offline; offline, a timeout or a
    lost session raise, which the server answers 503 (the token was not judged, so 401
    would be a lie).  Result 0 is valid (§7.5.5, §7.5.23), anything else 401.
    """
    from globaleye.device.protocol import messages as m

    async def verify(kind: Kind, dev_id: str, channel_no: int, target: int | str, token: str) -> bool:
        current = session()
        if current is None:
            raise ConnectionError("no session with the platform")
        request: m.Message
        if kind == "live":
            request = m.TokenVerifyRequest(dev_id=dev_id, channel_no=channel_no, stream_type=int(target),
                                           hash_token=token)
        else:
            request = m.PlaybackVerifyRequest(dev_id=dev_id, channel_no=channel_no, file_name=str(target),
                                              hash_token=token)
        response = await current.request(request, timeout)
        return int(response.result) == 0

    return verify


def state_recordings(state: Any) -> Callable[[int, str], float | None]:
    """``recording_duration`` from a simulated camera's 72H listing (CameraState.recordings).

    A file deleted by 73H, or never listed, is 404; a listed file lasts from its
    StartTime to its EndTime (§7.5.22, minutes).
    """
    import datetime

    def duration(channel_no: int, file_name: str) -> float | None:
        for f in state.recordings(channel_no):
            if f.file_name == file_name:
                try:
                    start = datetime.datetime.strptime(f.start_time, "%Y%m%d%H%M")
                    end = datetime.datetime.strptime(f.end_time, "%Y%m%d%H%M")
                except ValueError:
                    return float(RECORDING_SECONDS)
                return max(1.0, (end - start).total_seconds())
        return None

    return duration




@attrs.frozen
class Target:
    """What a request URL asks for (§7.5.5 / §7.5.23)."""

    kind: Kind
    dev_id: str
    channel_no: int
    stream_type: int = 0  # live only
    file_name: str = ""  # playback only
    token: str = ""

    @property
    def resource(self) -> tuple[str, str, int, int, str]:
        return (self.kind, self.dev_id, self.channel_no, self.stream_type, self.file_name)

    @property
    def verify_arg(self) -> int | str:
        return self.stream_type if self.kind == "live" else self.file_name


_TRACK = re.compile(r"[/&?;]trackID=(\d+)", re.IGNORECASE)


def parse_url(uri: str) -> tuple[Target, int | None]:
    """The target and the track (None = aggregate) of a request URI; Refusal(404).

    The track may be written ``&trackID=n`` (our SDP's absolute control URLs) or
    ``/trackID=n`` appended anywhere (clients that resolve a relative control against
    a URL with a query string end up with ``…&hashtoken=x/trackID=0``).
    """
    track = None
    m = _TRACK.search(uri)
    if m is not None:
        track = int(m.group(1))
        uri = uri[:m.start()] + uri[m.end():]
    try:
        parts = urlsplit(uri.rstrip("/"))
    except ValueError:
        raise Refusal(400, "malformed URL") from None
    if parts.scheme.lower() not in ("rtsp", "rtspu") or parts.path.rstrip("/").lower() != "/realplay":
        raise Refusal(404, f"not a realplay URL: {parts.path!r}")
    query = {k.lower(): v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
    dev_id = query.get("devid", "")
    try:
        channel_no = int(query.get("channelno", ""))
    except ValueError:
        raise Refusal(404, "missing or bad channelno") from None
    token = query.get("hashtoken", "")
    if not dev_id:
        raise Refusal(404, "missing devid")
    if "filename" in query:
        return Target("playback", dev_id, channel_no, file_name=query["filename"], token=token), track
    try:
        stream_type = int(query.get("streamtype", ""))
    except ValueError:
        raise Refusal(404, "missing or bad streamtype") from None
    return Target("live", dev_id, channel_no, stream_type=stream_type, token=token), track




def track_url(base_url: str, index: int) -> str:
    """Absolute control URL of a track: §7.5.5's URL has a query, so relative ones break."""
    return f"{base_url}{'&' if '?' in base_url else '?'}trackID={index}"




def base_url(uri: str) -> str:
    """The request URL without a track suffix: the aggregate control URL."""
    m = _TRACK.search(uri)
    if m is not None:
        uri = uri[:m.start()] + uri[m.end():]
    return uri.rstrip("/")
