"""The RTSP proxy with players other than ffmpeg: GStreamer, VLC (and live555, when it is there).

Same setup as ``tests/interop/test_proxy.py``: a platform with the ``rtsp`` role, one simulated
camera (H.264 1280x720 + G.711 A-law), everything on loopback.  Each player opens the
proxy's live URL with the account's Digest credentials and must *decode* video, not only
connect.  Each test skips, naming the Debian package, when its player is not installed:

    apt-get install -y gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
        gstreamer1.0-libav vlc-bin vlc-plugin-base

live555 (``openRTSP``) is not packaged in Debian 12 (``livemedia-utils`` left with
``liblivemedia``); its test runs when ``openRTSP`` is on the PATH.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile

from twisted.trial.unittest import SkipTest, TestCase

from tests.util import PROXY_DEV as DEV
from tests.util import PROXY_MOBILE as MOBILE
from tests.util import PROXY_PASSWORD as PASSWORD
from tests.util import ProxyHarness, run

FFPROBE = shutil.which("ffprobe")
GST_LAUNCH = shutil.which("gst-launch-1.0")
GST_INSPECT = shutil.which("gst-inspect-1.0")
CVLC = shutil.which("cvlc") or shutil.which("vlc")
OPENRTSP = shutil.which("openRTSP")
RUNUSER = shutil.which("runuser")


def _gst_has(*elements: str) -> bool:
    return all(os.system(f"{GST_INSPECT} --exists {e} >/dev/null 2>&1") == 0 for e in elements) \
        if GST_INSPECT else False


def _vlc_user() -> list[str]:
    """VLC refuses to run as root: ``runuser -u nobody --`` in front of it when we are root."""
    if os.geteuid() != 0:
        return []
    if RUNUSER is None:
        raise SkipTest("VLC refuses to run as root and runuser is missing")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        raise SkipTest("VLC refuses to run as root and there is no user 'nobody'") from None
    return [RUNUSER, "-u", "nobody", "--"]


def _vlc_has_rtsp_client() -> bool:
    """Whether VLC has its live555-based RTSP access (``live555`` in ``vlc --list``)."""
    assert CVLC is not None
    command = [*_vlc_user(), CVLC, "--list"]
    try:
        listing = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(r"^\s*live555\s", listing, re.MULTILINE) is not None


async def probe_file(path: str) -> dict[str, object]:
    """ffprobe of a recorded file: the video stream's codec, size and decoded frame count."""
    assert FFPROBE is not None
    result = await run(FFPROBE, ["-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
                                 "stream=codec_name,width,height,nb_read_frames", "-of", "json", path], timeout=30)
    streams = json.loads(result.out or "{}").get("streams") or [{}]
    return dict(streams[0])


class PlayerTests(TestCase):
    timeout = 90

    async def setUp(self) -> None:  # type: ignore[override]
        if FFPROBE is None:
            raise SkipTest("ffprobe not installed (apt-get install -y ffmpeg)")
        self.h = ProxyHarness(self)
        await self.h.start()
        self.tmp = tempfile.mkdtemp(prefix="ge-players-")
        os.chmod(self.tmp, 0o777)  # VLC runs as an unprivileged user and writes here
        self.addCleanup(shutil.rmtree, self.tmp, True)

    @property
    def plain_url(self) -> str:
        return f"rtsp://127.0.0.1:{self.h.port}/live/{DEV}/0/1"

    async def test_gstreamer_rtspsrc(self) -> None:
        """gst-launch-1.0: rtspsrc (Digest via user-id/user-pw, TCP) → avdec_h264 → one PNG of 1280x720."""
        if GST_LAUNCH is None or not _gst_has("rtspsrc", "rtph264depay", "h264parse", "avdec_h264", "pngenc"):
            raise SkipTest("GStreamer not installed (apt-get install -y gstreamer1.0-tools "
                           "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav)")
        png = os.path.join(self.tmp, "frame.png")
        result = await run(GST_LAUNCH, [
            "-v", "rtspsrc", f"location={self.plain_url}", f"user-id={MOBILE}", f"user-pw={PASSWORD}",
            "protocols=tcp", "latency=200", "!", "rtph264depay", "!", "h264parse", "!", "avdec_h264", "!",
            "identity", "silent=false", "!", "fakesink", "num-buffers=25", "sync=false"], timeout=40)
        if result.code != 0:
            # rtspsrc's own shutdown race, seen once in a full CI run: after the 25th buffer gst-launch
            # goes to NULL, rtspsrc sends TEARDOWN and closes its connection while its streaming
            # thread still tries a PAUSE on it ("Could not send message. (Received end-of-file)" in
            # gst_rtspsrc_pause). The proxy saw the TEARDOWN and no PAUSE. Anything else fails.
            errors = [line for line in result.err.splitlines() if line.startswith("ERROR")]
            self.assertIn('Got EOS from element "pipeline0"', result.out, result.err[-2000:])
            self.assertIn("gst_rtspsrc_pause", result.err, result.err[-2000:])
            self.assertTrue(all("Could not write to resource" in line for line in errors), result.err[-2000:])
        self.assertEqual(self.h.factory.refusals.get(454, 0), 0, "no request for a session that was torn down")
        self.assertFalse(result.timed_out)
        self.assertRegex(result.out, r"video/x-raw.*width=\(int\)1280.*height=\(int\)720")
        decoded = len(re.findall(r"identity\d+:.*chain", result.out))
        self.assertGreaterEqual(decoded, 25, "25 decoded pictures passed the identity element")
        # And one picture as a PNG, checked by ffprobe.
        result = await run(GST_LAUNCH, [
            "-q", "rtspsrc", f"location={self.plain_url}", f"user-id={MOBILE}", f"user-pw={PASSWORD}",
            "protocols=tcp", "!", "rtph264depay", "!", "h264parse", "!", "avdec_h264", "!", "videoconvert",
            "!", "pngenc", "snapshot=true", "!", "filesink", f"location={png}"], timeout=40)
        self.assertEqual(result.code, 0, result.err[-2000:])
        video = await probe_file(png)
        self.assertEqual((video.get("codec_name"), video.get("width"), video.get("height")), ("png", 1280, 720))
        self.assertGreater(os.path.getsize(png), 10_000)

    async def test_vlc(self) -> None:
        """cvlc (as an unprivileged user: VLC refuses root) records the stream to MPEG-TS; ffprobe decodes it."""
        if CVLC is None:
            raise SkipTest("VLC not installed (apt-get install -y vlc-bin vlc-plugin-base)")
        if not _vlc_has_rtsp_client():
            raise SkipTest("this VLC has no RTSP client: its RTSP access is the live555 plugin, which Debian 12 "
                           "does not build (liblivemedia is not in Debian); the satip and realrtsp modules "
                           "it has only speak SAT>IP and RealServer")
        out = os.path.join(self.tmp, "vlc.ts")
        args = ["--intf", "dummy", "--no-video-title-show", "--run-time", "4",
                "--rtsp-tcp", "--sout", f"#std{{access=file,mux=ts,dst={out}}}", self.h.url(), "vlc://quit"]
        command = [*_vlc_user(), CVLC, *args]
        result = await run(command[0], command[1:], timeout=40)
        self.assertFalse(result.timed_out, result.err[-2000:])
        self.assertTrue(os.path.exists(out) and os.path.getsize(out) > 50_000, result.err[-3000:])
        video = await probe_file(out)
        self.assertEqual((video.get("codec_name"), video.get("width"), video.get("height")), ("h264", 1280, 720),
                         result.err[-3000:])
        self.assertGreater(int(str(video.get("nb_read_frames") or 0)), 25)

    async def test_live555_openrtsp(self) -> None:
        """openRTSP -u user pw -t (RTP over TCP) -4 (MP4 to stdout); ffprobe decodes 1280x720."""
        if OPENRTSP is None:
            raise SkipTest("live555's openRTSP is not installed (Debian 12 has no livemedia-utils)")
        out = os.path.join(self.tmp, "live555.mp4")
        result = await run("/bin/sh", ["-c", f"'{OPENRTSP}' -u {MOBILE} {PASSWORD} -t -d 3 -4 -w 1280 -h 720 "
                                       f"-f 25 '{self.plain_url}' > '{out}'"], timeout=40)
        self.assertEqual(result.code, 0, result.err[-3000:])
        video = await probe_file(out)
        self.assertEqual((video.get("codec_name"), video.get("width"), video.get("height")), ("h264", 1280, 720),
                         result.err[-3000:])
