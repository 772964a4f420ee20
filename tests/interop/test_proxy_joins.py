"""Viewers of one live stream that joined at different times all get a continuous stream (issue 13).

The proxy's live fan-out hands every viewer that joins the hub's cached GOP first, then the live
packets, with the viewer's own RTP numbering (today) or the hub's shared numbering announced per
viewer in RTP-Info (issue 13's change).  Either way, what a viewer sees must be one unbroken
stream from a key picture on; this module checks it with real players and with a raw viewer:

* ffmpeg viewers (TCP interleaved, started ~0, ~1.3 and ~2.7 s apart so each joins at another
  point of a one-second GOP, and one over UDP) decode for a few seconds without a warning, get
  about frame rate × seconds pictures, and the pictures' timestamps go up by one frame interval;
* raw viewers (a plain socket, TCP interleaved, Digest) check what a player relies on and ffmpeg
  forgives: RTP-Info's ``seq=`` (and ``rtptime=`` when given) is the first packet's, sequence
  numbers go up by exactly one, the first video packet starts a key picture.

Nothing here asserts whether two viewers share an SSRC or a numbering: today they do not, after
the shared-numbering change they do, and both are right.  The checks are pure functions of what
was captured, so :class:`CheckerTests` shows on doctored captures that each one can fail.
Everything runs on loopback; the platform and the simulated camera come from ``ProxyHarness``.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import socket
import statistics
import struct
import time
from typing import Any

import attrs
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import LoopingCall, deferLater
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.media.rtsp.message import InterleavedFrame, RtspParser, RtspResponse
from tests.util import FFMPEG, ProxyHarness, Result, run
from tests.util import PROXY_DEV as DEV
from tests.util import PROXY_MOBILE as MOBILE
from tests.util import PROXY_PASSWORD as PASSWORD

#: How long each ffmpeg viewer decodes (``-t``), and when each starts after the first (seconds).
#: The camera's GOP is one second (globaleye.sim.media.source.LoopParams.live), so 1.3 and 2.7 s
#: join 0.3 and 0.7 of a GOP later than the first viewer.
FFMPEG_SECONDS = 4
TCP_STARTS = (0.0, 1.3, 2.7)
UDP_START = 2.0
#: Pictures a viewer may get more or fewer than frame rate × seconds (ffmpeg's -t cut, rounding).
FRAME_TOLERANCE = 2
#: ffmpeg -v warning lines that mean lost or damaged media (the RTP demuxer's "RTP: missed N
#: packets", the H.264 decoder's "error while decoding", "concealing", "corrupt", ...).
DAMAGE = re.compile(r"missed|RTP: |error|conceal|corrupt|invalid|non-existing|no frame|max delay|"
                    r"non monoton|decode_slice", re.IGNORECASE)

#: How much video (RTP time) each raw viewer reads after its PLAY, how long it may take at most,
#: and when the second viewer starts after the first.
RAW_SECONDS = 2.2
RAW_DEADLINE = 8.0
RAW_SECOND_START = 1.4
#: H.264 NAL unit types (RFC 6184): what a key picture starts with, and the two aggregations.
NAL_IDR, NAL_SPS, NAL_PPS, NAL_STAP_A, NAL_FU_A = 5, 7, 8, 24, 28
KEY_NALS = (NAL_IDR, NAL_SPS, NAL_PPS)
VIDEO_CLOCK = 90000  # H.264's RTP clock rate (RFC 6184)


# --------------------------------------------------------------------------- ffmpeg viewers


def framecrc_pts(out: str) -> tuple[tuple[int, int], list[int]]:
    """The time base and every frame's pts of stream 0 in ffmpeg's ``-f framecrc`` output."""
    base = re.search(r"^#tb 0: (\d+)/(\d+)$", out, re.MULTILINE)
    if base is None:
        raise AssertionError(f"no time base in ffmpeg's framecrc output: {out[:200]!r}")
    pts = [int(line.split(",")[2]) for line in out.splitlines()
           if line and not line.startswith("#") and line.split(",")[0].strip() == "0"]
    return (int(base.group(1)), int(base.group(2))), pts


def picture_problems(result: Result, fps: int, seconds: float) -> list[str]:
    """What is wrong with one ffmpeg viewer's run (empty: nothing).

    It must exit 0 with no damage line at ``-v warning``, decode frame rate × seconds pictures
    (± FRAME_TOLERANCE), and its pictures' timestamps (the camera's RTP timestamps, kept by
    ``-enc_time_base -1`` and ``-fps_mode passthrough`` so that ffmpeg neither rounds them nor
    fills a hole by duplicating) must go up by the frame interval: never backwards or still,
    never by 2 intervals or more (a lost picture), and most often by exactly one interval.
    """
    problems: list[str] = []
    if result.timed_out or result.code != 0:
        problems.append(f"ffmpeg ended with {result.code} (timed out: {result.timed_out}): {result.err[-500:]}")
    damage = [line for line in result.err.splitlines() if DAMAGE.search(line)]
    if damage:
        problems.append(f"damage reported: {damage[:5]}")
    try:
        (num, den), pts = framecrc_pts(result.out)
    except AssertionError as e:
        return [*problems, str(e)]
    expected = round(fps * seconds)
    if abs(len(pts) - expected) > FRAME_TOLERANCE:
        problems.append(f"{len(pts)} pictures decoded, {expected} ± {FRAME_TOLERANCE} expected")
    interval = den / (num * fps)  # one frame in time-base units
    steps = [b - a for a, b in zip(pts, pts[1:], strict=False)]
    if not steps:
        return [*problems, "fewer than two pictures"]
    if min(steps) <= 0:
        problems.append(f"timestamps do not go forward: step {min(steps)} (pts {pts[:10]}...)")
    if max(steps) >= 2 * interval:
        at = steps.index(max(steps))
        problems.append(f"a hole of {max(steps) / interval:.1f} frame intervals after picture {at}")
    if abs(statistics.median(steps) - interval) > interval / 10:
        problems.append(f"median step {statistics.median(steps)}, one frame is {interval:g}")
    return problems


async def ffmpeg_viewer(url: str, transport: str, delay: float, seconds: float) -> Result:
    """One ffmpeg viewer that starts *delay* seconds from now and decodes the video for *seconds*."""
    assert FFMPEG is not None
    if delay:
        await deferLater(reactor, delay, lambda: None)
    return await run(FFMPEG, ["-nostdin", "-v", "warning", "-rtsp_transport", transport, "-i", url,
                              "-t", str(seconds), "-map", "0:v", "-fps_mode", "passthrough",
                              "-enc_time_base", "-1", "-f", "framecrc", "-"], timeout=seconds + 20)


# --------------------------------------------------------------------------- raw viewers


@attrs.define
class Capture:
    """What one raw viewer saw: the tracks it set up, its PLAY answer's RTP-Info, and every RTP
    packet of each track as (sequence number, timestamp, SSRC, payload), in arrival order, and
    how long it read (wall seconds)."""

    tracks: list[int]
    video: int
    rtp_info: str
    packets: dict[int, list[tuple[int, int, int, bytes]]]
    seconds: float


def parse_rtp_info(value: str) -> dict[int, dict[str, int]]:
    """``url=.../trackID=N;seq=S;rtptime=T, ...`` as {N: {"seq": S, "rtptime": T}} (what is there)."""
    tracks: dict[int, dict[str, int]] = {}
    for entry in value.split(","):
        fields = dict(part.strip().split("=", 1) for part in entry.split(";") if "=" in part)
        track = re.search(r"trackID=(\d+)$", fields.get("url", ""))
        if track is None:
            raise AssertionError(f"an RTP-Info entry without a trackID URL: {entry!r}")
        tracks[int(track.group(1))] = {k: int(v) for k, v in fields.items() if k in ("seq", "rtptime")}
    return tracks


def starts_key_picture(payload: bytes) -> bool:
    """Whether an H.264 RTP payload (RFC 6184) starts a key picture: SPS, PPS or IDR, alone, first
    in a STAP-A, or as the first fragment of an FU-A."""
    if not payload:
        return False
    kind = payload[0] & 0x1F
    if kind == NAL_STAP_A:
        return len(payload) > 3 and payload[3] & 0x1F in KEY_NALS
    if kind == NAL_FU_A:
        return len(payload) > 1 and bool(payload[1] & 0x80) and payload[1] & 0x1F in KEY_NALS
    return kind in KEY_NALS


def continuity_problems(capture: Capture, min_seconds: float = 2.0) -> list[str]:
    """What is wrong with one raw viewer's stream (empty: nothing), track by track.

    For each track it set up: RTP-Info has ``seq=``; it and ``rtptime=`` (if given) are the first
    packet's; sequence numbers then go up by exactly one (modulo 2^16) and the SSRC stays the
    same; the video covers at least *min_seconds* of RTP time.  The first video packet starts a
    key picture.
    """
    problems: list[str] = []
    try:
        info = parse_rtp_info(capture.rtp_info)
    except (AssertionError, ValueError) as e:
        return [f"RTP-Info {capture.rtp_info!r}: {e}"]
    for track in capture.tracks:
        packets = capture.packets.get(track, [])
        announced = info.get(track, {})
        if "seq" not in announced:
            problems.append(f"track {track}: no seq= in RTP-Info {capture.rtp_info!r}")
        if not packets:
            problems.append(f"track {track}: no RTP packet")
            continue
        seq, ts, ssrc, payload = packets[0]
        if "seq" in announced and announced["seq"] != seq:
            problems.append(f"track {track}: RTP-Info seq={announced['seq']}, first packet's {seq}")
        if "rtptime" in announced and announced["rtptime"] != ts:
            problems.append(f"track {track}: RTP-Info rtptime={announced['rtptime']}, first packet's {ts}")
        if track == capture.video:
            if not starts_key_picture(payload):
                problems.append(f"track {track}: the first video packet is NAL type {payload[:1].hex()}, "
                                "not a key picture")
            span = (packets[-1][1] - ts) & 0xFFFFFFFF
            if span < min_seconds * VIDEO_CLOCK:
                problems.append(f"track {track}: the pictures span {span / VIDEO_CLOCK:.2f} s of RTP time only")
        for (a, _, _, _), (b, _, other, _) in zip(packets, packets[1:], strict=False):
            if b != (a + 1) & 0xFFFF:
                problems.append(f"track {track}: sequence number {a} followed by {b}")
                break
            if other != ssrc:
                problems.append(f"track {track}: SSRC {ssrc:08x} became {other:08x}")
                break
    return problems


class RawViewer:
    """A player on a plain blocking socket (run in a thread): Digest, SETUP of every track over TCP
    interleaved (track i on channels 2i, 2i+1), PLAY, then it reads RTP until its video spans
    *seconds* of RTP time, or *deadline* seconds have passed.

    It reads until an amount of video rather than for a time, so that a viewer that waits up to a
    GOP for its first key picture (no GOP cache) still gets the same stretch to check."""

    def __init__(self, port: int, path: str, stall: tuple[float, float] | None = None) -> None:
        #: (after, for): stop reading *after* seconds of watching, for *for* seconds (a slow player),
        #: with a 16 KiB receive buffer so that the proxy notices within that time.
        self.stall = stall
        self.address = ("127.0.0.1", port)
        self.url = f"rtsp://127.0.0.1:{port}{path}"
        self.parser = RtspParser(max_body=1 << 20)
        self.cseq = 0
        self.nonce = ""
        self.session = ""
        self.early: list[InterleavedFrame] = []

    def _authorization(self, method: str, uri: str) -> str:
        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 -- RTSP Digest is MD5

        response = md5(f"{md5(f'{MOBILE}:GlobalEye:{PASSWORD}')}:{self.nonce}:{md5(f'{method}:{uri}')}")
        return (f'Digest username="{MOBILE}", realm="GlobalEye", nonce="{self.nonce}", uri="{uri}", '
                f'response="{response}"')

    def _ask(self, sock: socket.socket, method: str, uri: str, *headers: str) -> RtspResponse:
        self.cseq += 1
        lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {self.cseq}", *headers]
        if self.nonce:
            lines.append(f"Authorization: {self._authorization(method, uri)}")
        if self.session:
            lines.append(f"Session: {self.session}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer: RtspResponse | None = None
        while answer is None:
            data = sock.recv(65536)
            if not data:
                raise AssertionError(f"the proxy closed the connection after {method}")
            for event in self.parser.feed(data):
                if isinstance(event, RtspResponse) and answer is None:
                    answer = event
                elif isinstance(event, InterleavedFrame):
                    # Media before the answer, or after it in the same read: this viewer's first packets.
                    self.early.append(event)
        return answer

    def watch(self, seconds: float, deadline: float) -> Capture:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.stall is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.settimeout(10)
        sock.connect(self.address)
        with sock:
            answer = self._ask(sock, "DESCRIBE", self.url, "Accept: application/sdp")
            if answer.code == 401:
                found = re.search(r'nonce="([^"]+)"', " ".join(answer.headers.get_all("WWW-Authenticate")))
                assert found is not None, answer.headers
                self.nonce = found.group(1)
                answer = self._ask(sock, "DESCRIBE", self.url, "Accept: application/sdp")
            assert answer.code == 200, (answer.code, answer.reason)
            sdp = answer.body.decode()
            tracks = [int(n) for n in re.findall(r"a=control:\S*trackID=(\d+)", sdp)]
            kinds = re.findall(r"^m=(\w+)", sdp, re.MULTILINE)
            assert tracks and len(tracks) == len(kinds), sdp
            video_track = tracks[kinds.index("video")]
            for i, track in enumerate(tracks):
                answer = self._ask(sock, "SETUP", f"{self.url}/trackID={track}",
                                   f"Transport: RTP/AVP/TCP;unicast;interleaved={2 * i}-{2 * i + 1}")
                assert answer.code == 200, (answer.code, answer.reason)
                self.session = (answer.headers.get("Session") or "").split(";")[0]
            answer = self._ask(sock, "PLAY", self.url, "Range: npt=0.000-")
            assert answer.code == 200, (answer.code, answer.reason)
            channel_track = {2 * i: track for i, track in enumerate(tracks)}
            packets: dict[int, list[tuple[int, int, int, bytes]]] = {track: [] for track in tracks}

            def keep(frame: InterleavedFrame) -> None:
                track = channel_track.get(frame.channel)
                if track is not None and len(frame.data) >= 12:
                    _, _, seq, ts, ssrc = struct.unpack_from("!BBHII", frame.data)
                    offset = 12 + 4 * (frame.data[0] & 0x0F)
                    if frame.data[0] & 0x10 and len(frame.data) >= offset + 4:  # a header extension
                        offset += 4 + 4 * int.from_bytes(frame.data[offset + 2:offset + 4], "big")
                    packets[track].append((seq, ts, ssrc, frame.data[offset:]))

            def enough() -> bool:
                video = packets[video_track]
                return bool(video) and (video[-1][1] - video[0][1]) & 0xFFFFFFFF >= seconds * VIDEO_CLOCK

            for frame in self.early:
                keep(frame)
            started = time.monotonic()
            stall = self.stall
            while not enough() and (now := time.monotonic()) - started < deadline:
                if stall is not None and now - started >= stall[0]:
                    time.sleep(stall[1])
                    stall = None
                    continue
                sock.settimeout(max(0.05, deadline - (now - started)))
                try:
                    data = sock.recv(1 << 16)
                except TimeoutError:
                    break
                if not data:
                    break
                for event in self.parser.feed(data):
                    if isinstance(event, InterleavedFrame):
                        keep(event)
            elapsed = time.monotonic() - started
            try:
                sock.settimeout(2)
                self._ask(sock, "TEARDOWN", self.url)
            except (OSError, AssertionError):
                pass
            return Capture(tracks, video_track, answer.headers.get("RTP-Info") or "", packets, elapsed)


# --------------------------------------------------------------------------- the tests


class JoinedAtDifferentTimesTests(TestCase):
    """One camera's live main stream, several viewers that joined it at different times."""

    timeout = 60
    maxDiff = None  # each viewer's problems in full

    async def setUp(self) -> None:  # type: ignore[override]
        if FFMPEG is None:
            raise SkipTest("ffmpeg not installed (apt-get install -y ffmpeg)")
        self.h = ProxyHarness(self)
        await self.h.start()
        self.fps = self.h.cameras[DEV].state.video(0, 1).frame_rate

    async def test_ffmpeg_viewers_decode_a_continuous_stream(self) -> None:
        """Three TCP viewers 0, 1.3 and 2.7 s apart and one UDP viewer: each decodes frame rate ×
        seconds pictures one interval apart, with no warning about lost or damaged media."""
        url = self.h.url()
        starts = [("tcp", delay) for delay in TCP_STARTS] + [("udp", UDP_START)]
        # How the hub served them, sampled while they play: all from the shared buffers (issue 13).
        most = {"tcp_viewers": 0, "udp_viewers": 0}

        def sample() -> None:
            hub = self.h.factory.hubs.get((DEV, 0, 1))
            if hub is not None:
                shared = hub.status()["shared"]
                for k in most:
                    most[k] = max(most[k], shared[k])

        sampler = LoopingCall(sample)
        sampler.start(0.2)
        try:
            results = await gatherResults([Deferred.fromCoroutine(ffmpeg_viewer(url, transport, delay, FFMPEG_SECONDS))
                                           for transport, delay in starts], consumeErrors=True)
        finally:
            sampler.stop()
        self.assertEqual(most, {"tcp_viewers": len(TCP_STARTS), "udp_viewers": 1})
        problems = {f"{transport} viewer at +{delay} s": found for (transport, delay), result in zip(starts, results, strict=True)
                    if (found := picture_problems(result, self.fps, FFMPEG_SECONDS))}
        self.assertEqual(problems, {})
        hub = self.h.factory.hubs.get((DEV, 0, 1))
        if hub is not None:  # still lingering: one upstream served them all
            self.assertEqual(self.h.camera_rtsp().plays, 1, "one camera session for every viewer")

    async def test_raw_viewers_continuity_from_rtp_info(self) -> None:
        """Two raw viewers 1.4 s apart: each one's RTP-Info names its first packet, its sequence
        numbers have no hole, and its video starts at a key picture."""
        path = f"/live/{DEV}/0/1"

        async def viewer(delay: float) -> Capture:
            if delay:
                await deferLater(reactor, delay, lambda: None)
            return await threads.deferToThread(RawViewer(self.h.port, path).watch, RAW_SECONDS, RAW_DEADLINE)

        captures = await gatherResults([Deferred.fromCoroutine(viewer(0.0)),
                                        Deferred.fromCoroutine(viewer(RAW_SECOND_START))], consumeErrors=True)
        problems = {n: found for n, capture in enumerate(captures) if (found := continuity_problems(capture))}
        self.assertEqual(problems, {})
        for capture in captures:
            self.assertEqual(sorted(capture.packets), capture.tracks)
            self.assertGreater(len(capture.packets[capture.video]), 2 * self.fps, "two seconds of pictures at least")
            self.assertEqual(capture.rtp_info.count("rtptime="), len(capture.tracks), "rtptime for every track")
        # One numbering per live stream (issue 13): the same SSRC, and where both got a packet, the
        # same sequence number and timestamp for it.
        first, second = captures
        for track in first.tracks:
            a = {seq: (ts, ssrc, head) for seq, ts, ssrc, head in first.packets[track]}
            b = {seq: (ts, ssrc, head) for seq, ts, ssrc, head in second.packets[track]}
            common = set(a) & set(b)
            self.assertGreater(len(common), 10, f"track {track}: the two viewers overlap")
            self.assertEqual({a[s] for s in common}, {b[s] for s in common}, f"track {track}: one numbering")


    async def test_a_viewer_that_stalls_skips_to_an_idr_and_comes_back_without_a_hole(self) -> None:
        """A raw viewer stops reading for 4 s (16 KiB receive buffer; the stream is about 150 kB/s,
        more than the buffers on the way hold): the proxy skips its pictures, then it gets the next
        IDR on, back in the shared buffers, with no sequence hole."""
        path = f"/live/{DEV}/0/1"
        hub_counts: dict[str, int] = {}

        def sample() -> None:
            hub = self.h.factory.hubs.get((DEV, 0, 1))
            if hub is not None:
                shared = hub.status()["shared"]
                hub_counts.update({k: max(hub_counts.get(k, 0), shared[k]) for k in ("demotions", "adoptions",
                                                                                    "tcp_shifted")})

        sampler = LoopingCall(sample)
        sampler.start(0.1)
        try:
            capture = await threads.deferToThread(RawViewer(self.h.port, path, stall=(1.0, 4.0)).watch, 7.0, 20.0)
        finally:
            sampler.stop()
        sample()
        self.assertEqual(continuity_problems(capture), [])
        video = capture.packets[capture.video]
        steps = [(b[1] - a[1]) & 0xFFFFFFFF for a, b in itertools.pairwise(video)]
        self.assertGreater(max(steps), VIDEO_CLOCK // 2, "pictures were skipped while it did not read")
        self.assertGreater(hub_counts.get("demotions", 0), 0, hub_counts)
        self.assertGreater(hub_counts.get("adoptions", 0), 0, hub_counts)
        self.assertEqual(hub_counts.get("tcp_shifted"), 1, "back in the shared buffers, its numbers shifted")
        idr_after_gap = video[steps.index(max(steps)) + 1][3]
        self.assertTrue(starts_key_picture(idr_after_gap), "after the gap it starts at a key picture")


class CheckerTests(TestCase):
    """The checks above fail on doctored captures (a test that cannot fail proves nothing)."""

    def capture(self, **changes: Any) -> Capture:
        video = [((65530 + i) & 0xFFFF, 1000 + 3600 * (i // 3), 0x1234, bytes([0x67 if i == 0 else 0x41])) for i in range(180)]
        audio = [(7 + i, 5 + 320 * i, 0x5678, b"\xd5" * 4) for i in range(60)]
        values: dict[str, Any] = {"tracks": [0, 1], "video": 0, "seconds": 2.5,
                                  "rtp_info": "url=rtsp://h/live/x/0/1/trackID=0;seq=65530;rtptime=1000,"
                                              "url=rtsp://h/live/x/0/1/trackID=1;seq=7",
                                  "packets": {0: video, 1: audio}}
        values.update(changes)
        return Capture(**values)

    def test_a_sound_capture_passes(self) -> None:
        self.assertEqual(continuity_problems(self.capture()), [])

    def test_each_fault_is_reported(self) -> None:
        good = self.capture()
        video, audio = good.packets[0], good.packets[1]
        faults: dict[str, dict[str, Any]] = {
            "wrong seq": {"rtp_info": good.rtp_info.replace("seq=65530", "seq=65531")},
            "wrong rtptime": {"rtp_info": good.rtp_info.replace("rtptime=1000", "rtptime=4600")},
            "no seq": {"rtp_info": good.rtp_info.replace(";seq=7", "")},
            "a hole": {"packets": {0: video[:40] + video[41:], 1: audio}},
            "a new SSRC": {"packets": {0: video, 1: audio[:30] + [(s, t, 0x9999, p) for s, t, _, p in audio[30:]]}},
            "no key picture first": {"packets": {0: video[1:], 1: audio}},
            "a silent track": {"packets": {0: video, 1: []}},
            "too little video": {"packets": {0: video[:30], 1: audio}},
        }
        for name, change in faults.items():
            self.assertNotEqual(continuity_problems(self.capture(**change)), [], name)

    def test_key_picture_starts(self) -> None:
        self.assertTrue(starts_key_picture(b"\x65\x88"))  # IDR
        self.assertTrue(starts_key_picture(b"\x78\x00\x05\x67\x42"))  # STAP-A, SPS first
        self.assertTrue(starts_key_picture(b"\x7c\x85\x88"))  # FU-A start of an IDR
        self.assertFalse(starts_key_picture(b"\x7c\x05\x88"))  # FU-A middle of an IDR
        self.assertFalse(starts_key_picture(b"\x41\x9a"))  # a P slice

    def test_ffmpeg_faults_are_reported(self) -> None:
        header = "#tb 0: 1/90000\n"

        def result(pts: list[int], err: str = "", code: int = 0) -> Result:
            lines = [f"0, {p}, {p}, 3600, 1382400, 0x00000000" for p in pts]
            return Result(header + "\n".join(lines) + "\n", err, code, False)

        good = [3600 * i for i in range(100)]
        self.assertEqual(picture_problems(result(good), 25, 4), [])
        self.assertNotEqual(picture_problems(result(good[:50] + good[52:]), 25, 4), [], "a hole of 3 intervals")
        self.assertNotEqual(picture_problems(result(good[:90]), 25, 4), [], "too few pictures")
        self.assertNotEqual(picture_problems(result(good, "[rtsp @ 0x1] RTP: missed 3 packets"), 25, 4), [])
        self.assertNotEqual(picture_problems(result(good, "[h264 @ 0x1] error while decoding MB 3 4"), 25, 4), [])
        self.assertNotEqual(picture_problems(result(good, code=1), 25, 4), [])
        self.assertNotEqual(picture_problems(result(good[:10] + good[9:99]), 25, 4), [], "a picture twice")
