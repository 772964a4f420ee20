"""The SDP a simulated camera answers DESCRIBE with (§10.1): H.264 video, G.711 or AAC audio."""

from __future__ import annotations

import time
from typing import Protocol

import attrs

from globaleye.media import rtp
from globaleye.media.tsfile import RecordingIndex
from globaleye.sim.rtsp.players import AUDIO_PACKET_SAMPLES
from globaleye.sim.rtsp.urls import AUDIO_TRACK, VIDEO_TRACK, Target, track_url
from globaleye.util.urls import is_ipv6, sdp_address


class VideoFormat(Protocol):
    """What the SDP says about a video track: a live loop and a recording's index both have it."""

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


@attrs.frozen
class AudioFormat:
    """An audio track as the SDP announces it and as its Track stamps it."""

    payload_type: int
    rtpmap: str  # encoding/clock[/channels]
    clock_rate: int
    fmtp: str = ""
    ptime: int | None = None


#: Live audio: G.711 A-law, 20 ms packets.
PCMA_AUDIO = AudioFormat(rtp.PT_PCMA, f"PCMA/{rtp.PCMA_CLOCK}", rtp.PCMA_CLOCK,
                         ptime=AUDIO_PACKET_SAMPLES * 1000 // rtp.PCMA_CLOCK)


def recording_audio_format(index: RecordingIndex) -> AudioFormat | None:
    """A recording's audio as it is in the file, AAC, sent as RFC 3640 AAC-hbr; None without audio."""
    if not index.has_audio:
        return None
    return AudioFormat(rtp.PT_AAC, f"MPEG4-GENERIC/{index.sample_rate}/{index.channels}", index.sample_rate,
                       rtp.aac_hbr_fmtp(index.audio_config))


def build_sdp(target: Target, video: VideoFormat, audio: AudioFormat | None, base_url: str, host: str,
              duration: float | None) -> bytes:
    session_id = int(time.time())
    lines = [
        "v=0",
        f"o=- {session_id} 1 {sdp_address(host)}",
        f"s=GlobalEye {target.kind} {target.dev_id}/{target.channel_no}",
        "c=IN IP6 ::" if is_ipv6(host) else "c=IN IP4 0.0.0.0",
        "t=0 0",
        "a=control:*",
        "a=range:npt=0-" + ("" if duration is None else f"{duration:.3f}"),
        f"m=video 0 RTP/AVP {rtp.PT_H264}",
        f"a=rtpmap:{rtp.PT_H264} H264/{rtp.H264_CLOCK}",
        f"a=fmtp:{rtp.PT_H264} packetization-mode=1;profile-level-id={video.profile_level_id};"
        f"sprop-parameter-sets={video.sprop_parameter_sets}",
        f"a=framerate:{video.fps:g}",
        f"a=x-dimensions:{video.width},{video.height}",
        f"a=control:{track_url(base_url, VIDEO_TRACK)}",
    ]
    if audio is not None:
        lines += [f"m=audio 0 RTP/AVP {audio.payload_type}", f"a=rtpmap:{audio.payload_type} {audio.rtpmap}"]
        if audio.fmtp:
            lines.append(f"a=fmtp:{audio.payload_type} {audio.fmtp}")
        if audio.ptime:
            lines.append(f"a=ptime:{audio.ptime}")
        lines.append(f"a=control:{track_url(base_url, AUDIO_TRACK)}")
    return ("\r\n".join(lines) + "\r\n").encode()
