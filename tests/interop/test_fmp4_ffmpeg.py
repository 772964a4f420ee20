"""The fragmented-MP4 writer against FFmpeg: an x264 stream muxed by globaleye.media.fmp4, one
fragment per picture as the live view sends it, decoded by ffmpeg and counted by ffprobe."""

from __future__ import annotations

import json
import os
import tempfile

from twisted.trial.unittest import SkipTest, TestCase

from globaleye.media import fmp4, rtp
from tests.util import FFMPEG, FFPROBE, run

FRAMES = 60
FPS = 25
STEP = 90000 // FPS
BASE = 90000 * 1000  # a decode time far from zero, as a live stream's would be


def access_units(stream: bytes) -> list[list[bytes]]:
    """Annex B with an AUD in front of every access unit (x264 aud=1) → access units."""
    units: list[list[bytes]] = []
    for nal in rtp.split_annexb(stream):
        if rtp.nal_type(nal) == rtp.NAL_AUD or not units:
            units.append([])
        units[-1].append(nal)
    return units


class FfmpegReadsOurFragments(TestCase):
    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        if FFMPEG is None or FFPROBE is None:
            raise SkipTest("ffmpeg/ffprobe not installed (apt-get install -y ffmpeg)")
        self.dir = tempfile.mkdtemp(prefix="fmp4-")
        source = os.path.join(self.dir, "in.h264")
        result = await run(FFMPEG, ["-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=640x360:rate={FPS}",
                                    "-frames:v", str(FRAMES), "-pix_fmt", "yuv420p", "-c:v", "libx264",
                                    "-profile:v", "main", "-bf", "0", "-g", "25", "-x264-params", "aud=1",
                                    "-f", "h264", source], timeout=30)
        self.assertEqual(result.code, 0, result.err)
        with open(source, "rb") as f:
            self.units = access_units(f.read())
        self.assertEqual(len(self.units), FRAMES)

    def mux(self) -> bytes:
        first = self.units[0]
        sps = next(n for n in first if rtp.nal_type(n) == rtp.NAL_SPS)
        pps = next(n for n in first if rtp.nal_type(n) == rtp.NAL_PPS)
        out = [fmp4.init_segment(sps, pps)]
        for i, unit in enumerate(self.units):
            out.append(fmp4.media_segment(i + 1, BASE + i * STEP, [fmp4.avc_sample(unit, STEP)]))
        return b"".join(out)

    async def test_every_frame_decodes(self) -> None:
        assert FFMPEG is not None and FFPROBE is not None
        path = os.path.join(self.dir, "out.mp4")
        with open(path, "wb") as f:
            f.write(self.mux())
        result = await run(FFMPEG, ["-v", "error", "-i", path, "-f", "null", "-"])
        self.assertEqual((result.code, result.err.strip()), (0, ""), "no decoder error or warning")
        result = await run(FFPROBE, ["-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
                                     "stream=codec_name,profile,width,height,nb_read_frames,time_base",
                                     "-of", "json", path])
        self.assertEqual(result.code, 0, result.err)
        stream = json.loads(result.out)["streams"][0]
        self.assertEqual((stream["codec_name"], stream["width"], stream["height"], int(stream["nb_read_frames"])),
                         ("h264", 640, 360, FRAMES))
        self.assertEqual(stream["time_base"], "1/90000")
        result = await run(FFPROBE, ["-v", "error", "-select_streams", "v:0", "-show_entries",
                                     "frame=pts,key_frame", "-of", "json", path])
        self.assertEqual(result.code, 0, result.err)
        frames = json.loads(result.out)["frames"]
        self.assertEqual([f["pts"] for f in frames], [BASE + i * STEP for i in range(FRAMES)])
        self.assertEqual([i for i, f in enumerate(frames) if f["key_frame"]], [0, 25, 50])

    async def test_same_picture_as_the_source(self) -> None:
        """The pictures decoded from our MP4 are the ones decoded from the raw stream (MD5 per frame)."""
        assert FFMPEG is not None
        path = os.path.join(self.dir, "out.mp4")
        with open(path, "wb") as f:
            f.write(self.mux())
        ours = await run(FFMPEG, ["-v", "error", "-i", path, "-f", "framemd5", "-"])
        theirs = await run(FFMPEG, ["-v", "error", "-i", os.path.join(self.dir, "in.h264"), "-f", "framemd5", "-"])
        self.assertEqual(ours.code, 0, ours.err)
        md5 = [line.rsplit(",", 1)[-1] for line in ours.out.splitlines() if not line.startswith("#")]
        self.assertEqual(md5, [line.rsplit(",", 1)[-1] for line in theirs.out.splitlines() if not line.startswith("#")])
        self.assertEqual(len(md5), FRAMES)
