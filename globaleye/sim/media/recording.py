"""The recordings a simulated camera plays back: real MPEG-TS files, made once, indexed once, read by GOP.

**What the file holds.**  §7.1: "H.264 main stream" in TS, 5-minute files.  The
picture is not the live loop: it shows the position in the file as a large ``MM:SS``
over a pattern that moves every second, with a red "recording" dot, so a viewer (and
a test) can tell a recording from live and see where a seek landed.  Every second is
one GOP: an IDR encoded by x264, then ``fps - 1`` P pictures in which every
macroblock is skipped (:func:`globaleye.media.h264.skip_slice`), so the picture holds
still for the second.  That costs one intra encode per second instead of 25 full
encodes (a 720p file of 300 s takes a few seconds rather than minutes).  Audio, when
the recording has it, is the live tone encoded as **AAC-LC** (8 kHz mono, ADTS):
G.711 has no standard stream type in MPEG-TS (FFmpeg writes it as an opaque data
stream that ffprobe cannot play), AAC is what TS recorders carry and what every
player reads.  Playback sends it as RFC 3640 (mpeg4-generic) from the file.

**Shared by reference.**  A camera's 72H listing names up to 288 files a day per
channel, and a simulator runs thousands of cameras: all of their recordings of the
same length are *the same file*, written once into the media cache (write-then-rename)
by :meth:`globaleye.sim.media.source.MediaLibrary.recording` and indexed once.

The file is then read like any recording: :mod:`globaleye.media.tsfile` (indexed once, read by GOP).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from globaleye.media import h264, mpegts, rtp
from globaleye.media.names import RECORDING_SECONDS
from globaleye.media.tsfile import RecordingError
from globaleye.sim.media.pattern import (
    DEFAULT_FPS,
    MAIN_SIZE,
    diagonal_gradient,
    draw_digits,
    tone_samples,
)

#: Bump when the picture, the encoder settings or the file layout change (invalidates caches).
RECORDING_GENERATOR_VERSION = 1
AUDIO_SAMPLE_RATE = 8000
AUDIO_BIT_RATE = 24000
@attrs.frozen
class RecordingParams:
    """Everything that changes a generated recording file (and so its cache key)."""

    width: int = MAIN_SIZE[0]
    height: int = MAIN_SIZE[1]
    fps: int = DEFAULT_FPS
    seconds: int = RECORDING_SECONDS
    audio: bool = True

    def __attrs_post_init__(self) -> None:
        if self.width % 16 or self.height % 16:
            raise ValueError("width and height must be multiples of 16 (whole macroblocks)")
        if not 1 <= self.fps <= 60 or not 1 <= self.seconds <= 6 * 3600:
            raise ValueError("bad frame rate or length")

    def key(self) -> str:
        blob = json.dumps([RECORDING_GENERATOR_VERSION, attrs.asdict(self)], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    @property
    def file_name(self) -> str:
        return f"recording-{self.key()}.ts"


# ---------------------------------------------------------------------- generating the file


@functools.lru_cache(maxsize=4)
def _gradient_u8(width: int, height: int) -> np.ndarray:
    return diagonal_gradient(width, height).astype(np.uint8)


def render_recording_picture(width: int, height: int, second: int) -> np.ndarray:
    """The yuv420p picture (shape (h*3/2, w)) shown during second *second* of a recording."""
    shade = ((np.arange(256) + second * 16) % 160 + 40).astype(np.uint8)
    y_plane = shade[_gradient_u8(width, height)]  # a lookup: a tenth of the cost of int64 arithmetic
    box = max(8, height // 8)
    bx = (second * 7 * box) % max(1, width - box)
    by = (second * 3 * box) % max(1, height - box)
    y_plane[by:by + box, bx:bx + box] = 235
    digit_h = height // 4
    text = f"{second // 60 % 100:02d}:{second % 60:02d}"
    stroke = max(2, digit_h // 10)
    band_w = 4 * (digit_h // 2 + 2 * stroke) + 3 * stroke  # four digits and a colon (draw_digits' widths)
    x0, y0 = (width - band_w) // 2, (height - digit_h) // 2
    y_plane[y0 - 12:y0 + digit_h + 12, x0 - 12:x0 + band_w] = 16
    draw_digits(y_plane, text, x0, y0, digit_h)
    cw, ch = width // 2, height // 2
    u = np.full((ch, cw), 128, np.uint8)
    v = np.full((ch, cw), 128, np.uint8)
    r = max(4, height // 24)  # the red "recording" dot, top right (chroma coordinates)
    cy, cx = 2 * r, cw - 3 * r
    yy, xx = np.ogrid[-r:r, -r:r]
    disc = yy * yy + xx * xx <= r * r
    u[cy - r:cy + r, cx - r:cx + r][disc] = 90
    v[cy - r:cy + r, cx - r:cx + r][disc] = 240
    y_plane[2 * (cy - r):2 * (cy + r), 2 * (cx - r):2 * (cx + r)][disc.repeat(2, 0).repeat(2, 1)] = 81
    return np.concatenate([y_plane, u.reshape(ch // 2, width), v.reshape(ch // 2, width)], axis=0)


def _idr_encoder(params: RecordingParams) -> Any:
    """x264, every frame a forced IDR; keyint is the GOP so the SPS allows a reference frame."""
    import av

    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height = params.width, params.height
    codec.pix_fmt = "yuv420p"
    codec.time_base = Fraction(1, params.fps)
    codec.framerate = Fraction(params.fps, 1)
    codec.options = {
        "preset": "ultrafast",
        "profile": "baseline",
        "crf": "26",
        "forced-idr": "1",
        "x264-params": (f"keyint={params.fps}:min-keyint={params.fps}:scenecut=0:bframes=0:rc-lookahead=0:"
                        "repeat-headers=1:annexb=1:aud=0:threads=1:sliced-threads=0"),
    }
    return codec


def _encode_idrs(params: RecordingParams) -> Iterator[list[bytes]]:
    """The NAL units (SPS, PPS, IDR; no SEI) of one IDR per second, second after second."""
    import av

    codec = _idr_encoder(params)
    for second in range(params.seconds):
        frame = av.VideoFrame.from_ndarray(render_recording_picture(params.width, params.height, second),
                                           format="yuv420p")
        frame.pts = second * params.fps
        frame.pict_type = av.video.frame.PictureType.I
        for packet in codec.encode(frame):
            yield [n for n in rtp.split_annexb(bytes(packet)) if rtp.nal_type(n) != rtp.NAL_SEI]
    for packet in codec.encode(None):
        yield [n for n in rtp.split_annexb(bytes(packet)) if rtp.nal_type(n) != rtp.NAL_SEI]


def write_generated_recording(params: RecordingParams, path: str | Path) -> Path:
    """Write the recording *params* describes to *path* (temporary name, then rename).

    Blocking (seconds of CPU for 5 minutes of 720p): call it from a worker thread.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".ts.tmp")
    os.close(fd)
    fps = params.fps
    try:
        with av.open(tmp, "w", format="mpegts") as container:
            video = container.add_stream("h264", rate=fps)
            video.width, video.height = params.width, params.height
            audio = None
            if params.audio:
                audio = container.add_stream("aac", rate=AUDIO_SAMPLE_RATE, layout="mono")
                audio.codec_context.bit_rate = AUDIO_BIT_RATE
            rate = Fraction(1, fps)
            sample = 0  # next audio sample to encode
            seconds = 0
            for second, nals in enumerate(_encode_idrs(params)):
                sps = h264.parse_sps(next(n for n in nals if rtp.nal_type(n) == rtp.NAL_SPS))
                pps = h264.parse_pps(next(n for n in nals if rtp.nal_type(n) == rtp.NAL_PPS))
                h264.check_skip_slices(sps, pps)
                units = [b"".join(b"\x00\x00\x00\x01" + n for n in nals)]
                units += [b"\x00\x00\x00\x01" + h264.skip_slice(sps, pps, k, 2 * k) for k in range(1, fps)]
                for k, data in enumerate(units):
                    packet = av.Packet(data)
                    packet.pts = packet.dts = second * fps + k
                    packet.time_base = rate
                    packet.is_keyframe = k == 0
                    packet.stream = video
                    container.mux(packet)
                seconds = second + 1
                if audio is not None:
                    sample = _mux_audio(container, audio, sample, seconds * AUDIO_SAMPLE_RATE)
            if seconds != params.seconds:
                raise RecordingError(f"the encoder gave {seconds} pictures for {params.seconds} seconds")
            if audio is not None:
                container.mux(audio.encode(None))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def _mux_audio(container: Any, stream: Any, sample: int, until: int) -> int:
    """Encode the tone from *sample* up to *until* (whole AAC frames) and mux it."""
    import av

    step = mpegts.AAC_FRAME_SAMPLES
    while sample + step <= until:
        pcm = tone_samples(sample, step, AUDIO_SAMPLE_RATE).astype(np.float32) / 32768.0
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = sample
        frame.time_base = Fraction(1, AUDIO_SAMPLE_RATE)
        container.mux(stream.encode(frame))
        sample += step
    return sample


