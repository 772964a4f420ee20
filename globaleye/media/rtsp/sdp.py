"""SDP (RFC 4566) as far as an RTSP proxy needs it: the media sections and their controls.

Pure.  Also the lines of the SDPs we write ourselves (the simulated camera, the proxy's cloud
playback).  The proxy does not interpret codecs beyond H.264 parameter sets: it keeps the
camera's media descriptions and only rewrites each ``a=control`` to its own URL, so
whatever the camera announces (payload types, fmtp, framerate) reaches the player
unchanged.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Protocol

import attrs

from globaleye.media import rtp
from globaleye.util.urls import is_ipv6, sdp_address


@attrs.frozen
class MediaSection:
    kind: str  # "video", "audio", ...
    control: str  # as written in the SDP (absolute or relative)
    lines: tuple[str, ...]  # every line of the section, the m= line first
    payload_type: int | None = None
    encoding: str = ""  # "H264", "PCMA", ...
    clock_rate: int = 0
    fmtp: str = ""
    framerate: float | None = None

    @property
    def sprop_parameter_sets(self) -> list[bytes]:
        """SPS and PPS from ``sprop-parameter-sets`` (RFC 6184 §8.1), empty when absent or bad."""
        m = re.search(r"sprop-parameter-sets=([^;\s]+)", self.fmtp)
        if m is None:
            return []
        out = []
        for item in m.group(1).split(","):
            try:
                nal = base64.b64decode(item + "=" * (-len(item) % 4), validate=True)
            except (binascii.Error, ValueError):
                return []
            if nal:
                out.append(nal)
        return out


@attrs.frozen
class SessionDescription:
    session_lines: tuple[str, ...]
    media: tuple[MediaSection, ...]

    def track(self, kind: str) -> int | None:
        for index, section in enumerate(self.media):
            if section.kind == kind:
                return index
        return None


class SdpError(ValueError):
    """Not an SDP we can relay (no media, or not text)."""


def parse_sdp(body: bytes) -> SessionDescription:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SdpError("SDP is not UTF-8") from e
    session: list[str] = []
    sections: list[list[str]] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    if not sections:
        raise SdpError("SDP without media")
    return SessionDescription(tuple(session), tuple(_section(lines) for lines in sections))


def _section(lines: list[str]) -> MediaSection:
    words = lines[0][2:].split()
    kind = words[0] if words else ""
    pt = int(words[3]) if len(words) > 3 and words[3].isdigit() else None
    control, encoding, clock, fmtp, rate = "", "", 0, "", None
    for line in lines[1:]:
        if line.startswith("a=control:"):
            control = line[len("a=control:"):].strip()
        elif line.startswith("a=rtpmap:"):
            m = re.match(r"a=rtpmap:(\d+)\s+([^/\s]+)/(\d+)", line)
            if m and (pt is None or int(m.group(1)) == pt):
                encoding, clock = m.group(2).upper(), int(m.group(3))
        elif line.startswith("a=fmtp:"):
            fmtp = line.split(" ", 1)[1] if " " in line else ""
        elif line.startswith("a=framerate:"):
            try:
                rate = float(line.split(":", 1)[1])
            except ValueError:
                rate = None
    if pt == 8 and not encoding:  # RFC 3551 static types need no rtpmap
        encoding, clock = "PCMA", 8000
    if pt == 0 and not encoding:
        encoding, clock = "PCMU", 8000
    return MediaSection(kind, control, tuple(lines), pt, encoding, clock, fmtp, rate)


def resolve_control(control: str, base: str) -> str:
    """A track's absolute control URL (RFC 2326 §C.1.1): absolute as is, else against the base."""
    if not control or control == "*":
        return base
    if control.lower().startswith("rtsp://") or control.lower().startswith("rtsps://"):
        return control
    return base.rstrip("/") + "/" + control if "?" not in base else f"{base}&{control}"


class VideoFormat(Protocol):
    """What an SDP says about an H.264 track: a live loop and a recording's index both have it."""

    @property
    def profile_level_id(self) -> str: ...

    @property
    def sprop_parameter_sets(self) -> str: ...

    @property
    def fps(self) -> float: ...

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...


def session_lines(origin_host: str, session_id: int, name: str, duration: float | None) -> list[str]:
    """The session part of an SDP we answer: ``o=``/``c=`` for our address, ``a=range`` live or a length."""
    return ["v=0", f"o=- {session_id} 1 {sdp_address(origin_host)}", f"s={name}",
            "c=IN IP6 ::" if is_ipv6(origin_host) else "c=IN IP4 0.0.0.0", "t=0 0", "a=control:*",
            "a=range:npt=0-" + ("" if duration is None else f"{duration:.3f}")]


def h264_lines(video: VideoFormat, control: str) -> list[str]:
    """An H.264 media section (RFC 6184, packetization-mode 1, parameter sets in ``sprop``)."""
    return [f"m=video 0 RTP/AVP {rtp.PT_H264}", f"a=rtpmap:{rtp.PT_H264} H264/{rtp.H264_CLOCK}",
            f"a=fmtp:{rtp.PT_H264} packetization-mode=1;profile-level-id={video.profile_level_id};"
            f"sprop-parameter-sets={video.sprop_parameter_sets}",
            f"a=framerate:{video.fps:g}", f"a=x-dimensions:{video.width},{video.height}", f"a=control:{control}"]


def audio_lines(payload_type: int, rtpmap: str, control: str, fmtp: str = "", ptime: int | None = None) -> list[str]:
    lines = [f"m=audio 0 RTP/AVP {payload_type}", f"a=rtpmap:{payload_type} {rtpmap}"]
    if fmtp:
        lines.append(f"a=fmtp:{payload_type} {fmtp}")
    if ptime:
        lines.append(f"a=ptime:{ptime}")
    return [*lines, f"a=control:{control}"]


def sdp_body(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


def rewrite_sdp(description: SessionDescription, track_urls: list[str], origin_host: str,
                name: str, duration: float | None = None) -> bytes:
    """The SDP a viewer gets: the camera's media sections with the proxy's own controls.

    The session part is rebuilt (``o=`` and ``c=`` name the proxy, not the camera's
    private address), ``a=range`` says live or the recording's length.
    """
    lines = session_lines(origin_host, abs(hash(name)) % 10**10, name, duration)
    for section, url in zip(description.media, track_urls, strict=True):
        lines.append(section.lines[0])
        lines.extend(line for line in section.lines[1:]
                     if not line.startswith(("a=control:", "c=", "b=AS:0")))
        lines.append(f"a=control:{url}")
    return sdp_body(lines)


def recording_duration(description: SessionDescription) -> float | None:
    """``a=range:npt=0-300.000`` in the session part → 300.0 (None for live)."""
    for line in description.session_lines:
        m = re.match(r"a=range:\s*npt\s*=\s*[0-9.]*\s*-\s*([0-9.]+)", line)
        if m:
            try:
                return float(m.group(1))
            except ValueError:
                return None
    return None
