"""The SDP a simulated camera answers DESCRIBE with (§10.1): H.264 video, G.711 or AAC audio."""

from __future__ import annotations

import time

import attrs

from globaleye.media import rtp
from globaleye.media.rtsp.sdp import VideoFormat, audio_lines, h264_lines, sdp_body, session_lines
from globaleye.media.tsfile import RecordingIndex
from globaleye.sim.rtsp.players import AUDIO_PACKET_SAMPLES
from globaleye.sim.rtsp.urls import AUDIO_TRACK, VIDEO_TRACK, Target, track_url


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
    lines = [*session_lines(host, int(time.time()), f"GlobalEye {target.kind} {target.dev_id}/{target.channel_no}",
                            duration),
             *h264_lines(video, track_url(base_url, VIDEO_TRACK))]
    if audio is not None:
        lines += audio_lines(audio.payload_type, audio.rtpmap, track_url(base_url, AUDIO_TRACK), audio.fmtp,
                             audio.ptime)
    return sdp_body(lines)
