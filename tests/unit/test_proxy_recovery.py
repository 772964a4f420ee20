"""A live hub gets its upstream back for the viewers it has: fast tests on a task.Clock.

The hub is the real :class:`~globaleye.proxy.fanout.LiveHub`, its upstreams real
:class:`~globaleye.media.rtsp.upstream.UpstreamSession` objects that never connect: the
connector hands them out as the §15 path selection would, and the tests feed their
packets and drop them.  The end-to-end proof with ffmpeg across a real outage is in
``tests/interop/test_proxy.py`` (``ProxyRecoveryTests``).
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from globaleye.media import rtp
from globaleye.media.rtsp.paths import Attempt, NoPath
from globaleye.media.rtsp.sdp import parse_sdp
from globaleye.media.rtsp.upstream import UpstreamSession
from globaleye.proxy.fanout import LiveHub, ViewerStream, same_streams

SDP = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=x\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
       b"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
       b"a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0IAHpWoKA9puAgICBA=,aM48gA==\r\n"
       b"a=control:trackID=0\r\n"
       b"m=audio 0 RTP/AVP 8\r\na=control:trackID=1\r\n")
SDP_H265 = SDP.replace(b"96 H264/90000", b"96 H265/90000")


class Sink:
    def __init__(self) -> None:
        self.packets: list[tuple[int, bytes]] = []
        self.lost: list[str] = []

    def blocked(self) -> bool:
        return False

    def send_rtp(self, track: int, data: bytes) -> None:
        self.packets.append((track, data))

    def send_rtcp(self, track: int, data: bytes) -> None:
        pass

    def upstream_lost(self, reason: str) -> None:
        self.lost.append(reason)

    def video(self) -> list[Any]:
        return [rtp.parse_rtp(p) for t, p in self.packets if t == 0]

    def audio(self) -> list[Any]:
        return [rtp.parse_rtp(p) for t, p in self.packets if t == 1]


def packet(pt: int, seq: int, ts: int, payload: bytes) -> bytes:
    return rtp.rtp_header(pt, seq & 0xFFFF, ts & 0xFFFFFFFF, 0xCAFE, True) + payload


class Camera:
    """What the connector reaches: each start is one camera session with its own RTP bases."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.outcomes: list[str] = []  # per start: "ok", "refused" or "other-sdp"; empty: "ok"
        self.sessions: list[UpstreamSession] = []
        self.accounts: list[str] = []
        self.base = 1000  # each session starts its timestamps elsewhere, as a real camera does

    async def connect(self, account: str, attach: Any) -> tuple[UpstreamSession, list[Attempt]]:
        self.accounts.append(account)
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "refused":
            raise NoPath([Attempt("local", "", False, "TCP connect refused", 0.0)])
        session = UpstreamSession(self.clock, "rtsp://127.0.0.1:1/x", "local")
        session.description = parse_sdp(SDP_H265 if outcome == "other-sdp" else SDP)
        attach(session)
        self.sessions.append(session)
        self.base += 7_000_000
        self.seq = self.base & 0xFFFF
        self.ts = self.base
        self.picture(key=True)  # the path test's first media: an IDR
        return session, [Attempt("local", "", True, "first RTP 1 ms after PLAY", 0.0)]

    @property
    def session(self) -> UpstreamSession:
        return self.sessions[-1]

    def picture(self, key: bool = False) -> None:
        """One 40 ms picture and its audio, on the current session."""
        self.seq += 1
        self.session.rtp_in(0, packet(96, self.seq, self.ts, b"\x65idr" if key else b"\x41p"))
        self.session.rtp_in(1, packet(8, self.seq, self.ts // 90 * 8 + 123, b"\xd5" * 40))
        self.ts += 3600

    def drop(self, reason: str = "connection closed by the camera") -> None:
        self.session._lost(reason)


class RecoveryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.camera = Camera(self.clock)
        self.idle: list[LiveHub] = []
        self.hub = LiveHub(("81300000011", 0, 1), "81300000011/0/1", self.camera.connect, self.clock, 5.0,
                           self.idle.append, recover_timeout=30.0, media_timeout=10.0)

    def viewer(self) -> Sink:
        """A viewer that DESCRIBEd, SET UP both tracks and PLAYed."""
        d = defer.Deferred.fromCoroutine(self.hub.ensure("13300000011"))
        description = self.successResultOf(d)
        sink = Sink()
        stream = ViewerStream(sink, description)
        self.hub.add(stream)
        return sink

    def test_viewers_stay_and_continue_after_the_camera_comes_back(self) -> None:
        sink = self.viewer()
        for _ in range(10):
            self.camera.picture()
        before_v, before_a = sink.video(), sink.audio()
        self.camera.drop()
        self.assertTrue(self.hub.recovering or self.hub.running)
        # The first try is at once; here the camera is back at once.
        self.assertEqual(len(self.camera.sessions), 2)
        self.assertEqual(sink.lost, [], "no viewer was disconnected")
        self.assertTrue(self.hub.running)
        self.assertEqual(self.hub.recoveries, 1)
        self.clock.advance(2.0)
        for _ in range(5):
            self.camera.picture()
        after_v, after_a = sink.video()[len(before_v):], sink.audio()[len(before_a):]
        # The viewer resumes at the new session's IDR (from the GOP cache), with SPS/PPS in front.
        self.assertEqual([rtp.nal_type(p.payload) for p in after_v[:3]], [7, 8, 5])
        video = before_v + after_v
        self.assertEqual([p.sequence for p in video],
                         [(video[0].sequence + i) & 0xFFFF for i in range(len(video))], "no sequence gap")
        self.assertEqual(len({p.ssrc for p in video}), 1, "same SSRC")
        # Timestamps continue: never backwards, and the jump is about the outage, not the camera's new base.
        step = (after_v[0].timestamp - before_v[-1].timestamp) & 0xFFFFFFFF
        self.assertGreater(step, 0)
        self.assertLess(step, 90000 * 3, "the new session's RTP base is hidden from the viewer")
        for a, b in itertools.pairwise(video):
            self.assertLess((b.timestamp - a.timestamp) & 0xFFFFFFFF, 0x80000000, "timestamps never go back")
        audio = before_a + after_a
        self.assertEqual([p.sequence for p in audio], [(audio[0].sequence + i) & 0xFFFF for i in range(len(audio))])
        astep = (after_a[0].timestamp - before_a[-1].timestamp) & 0xFFFFFFFF
        self.assertTrue(0 < astep < 8000 * 3, astep)
        self.assertEqual(self.hub.last_recovery["ok"], True)  # type: ignore[index]
        self.assertEqual(self.camera.accounts, ["13300000011", "13300000011"], "fresh tokens for the same account")

    def test_retries_with_backoff_until_the_camera_is_back(self) -> None:
        sink = self.viewer()
        self.camera.picture()
        self.camera.outcomes = ["refused"] * 4
        self.camera.drop()
        self.assertTrue(self.hub.recovering)
        self.assertEqual(len(self.camera.accounts), 2)
        # Backoff 0.5, 1, 2, 4 s: tries at 0, 0.5, 1.5, 3.5 and 7.5 s.
        for at, tries in ((0.49, 2), (0.51, 3), (1.51, 4), (3.51, 5)):
            self.clock.advance(at - self.clock.seconds() + 0.0)
            self.assertEqual(len(self.camera.accounts), tries, at)
        self.assertTrue(self.hub.recovering)
        self.clock.advance(7.6 - self.clock.seconds())
        self.assertEqual(len(self.camera.accounts), 6)
        self.assertFalse(self.hub.recovering)
        self.assertTrue(self.hub.running)
        self.assertEqual(sink.lost, [])
        self.assertEqual(self.hub.last_recovery["tries"], 5)  # type: ignore[index]

    def test_gives_up_after_recover_timeout_and_disconnects(self) -> None:
        sink = self.viewer()
        self.camera.outcomes = ["refused"] * 100
        self.camera.drop()
        self.clock.pump([1.0] * 29)
        self.assertEqual(sink.lost, [])
        self.assertTrue(self.hub.recovering)
        self.clock.pump([1.0] * 10)
        self.assertFalse(self.hub.recovering)
        self.assertEqual(len(sink.lost), 1)
        self.assertIn("not back", sink.lost[0])
        self.assertEqual(self.hub.viewers, set())
        self.assertIn(self.hub, self.idle)
        self.assertEqual(self.hub.last_recovery["ok"], False)  # type: ignore[index]
        tries = len(self.camera.accounts)
        self.clock.pump([10.0] * 5)
        self.assertEqual(len(self.camera.accounts), tries, "no tries after giving up")

    def test_new_viewer_during_recovery_waits_for_it(self) -> None:
        self.viewer()
        self.camera.outcomes = ["refused"]
        self.camera.drop()
        d = defer.Deferred.fromCoroutine(self.hub.ensure("13300000012"))
        self.assertNoResult(d)
        self.clock.advance(0.5)
        self.successResultOf(d)
        self.assertEqual(len(self.camera.sessions), 2, "the waiting viewer did not start a second upstream")

    def test_no_viewers_no_recovery(self) -> None:
        d = defer.Deferred.fromCoroutine(self.hub.ensure("13300000011"))
        self.successResultOf(d)
        self.camera.drop()
        self.assertFalse(self.hub.recovering)
        self.assertEqual(len(self.camera.sessions), 1)
        self.assertIn(self.hub, self.idle)

    def test_other_streams_disconnect(self) -> None:
        sink = self.viewer()
        self.camera.outcomes = ["other-sdp"]
        self.camera.drop()
        self.assertEqual(len(sink.lost), 1)
        self.assertFalse(self.hub.running)
        self.assertTrue(self.camera.sessions[-1].closed, "the unusable new upstream is closed")
        self.assertIn("other streams", self.hub.last_recovery["reason"])  # type: ignore[index]

    def test_silent_camera_counts_as_lost(self) -> None:
        sink = self.viewer()
        first = self.camera.session
        for _ in range(5):
            self.clock.advance(4.0)
            self.camera.picture()
        self.assertFalse(first.closed, "a camera that sends stays")
        self.clock.pump([1.0] * 25)  # nothing at all
        self.assertTrue(first.closed, "silent upstream closed")
        self.assertEqual(len(self.camera.sessions), 2)
        self.assertIn("no media for 10 s", self.hub.last_recovery["reason"])  # type: ignore[index]
        self.assertEqual(sink.lost, [])

    def test_stop_during_recovery(self) -> None:
        sink = self.viewer()
        self.camera.outcomes = ["refused"] * 3
        self.camera.drop()
        self.hub.stop("proxy stopping")
        self.assertEqual(sink.lost, ["proxy stopping"])
        self.assertFalse(self.hub.recovering)
        self.assertIsNone(self.hub.starting)
        tries = len(self.camera.accounts)
        self.clock.pump([1.0] * 40)
        self.assertEqual(len(self.camera.accounts), tries)
        self.assertFalse(self.hub.running)

    def test_recovery_off(self) -> None:
        self.hub.recover_timeout = 0
        sink = self.viewer()
        self.camera.drop()
        self.assertEqual(len(sink.lost), 1)
        self.assertEqual(len(self.camera.sessions), 1)

    def test_same_streams(self) -> None:
        self.assertTrue(same_streams(parse_sdp(SDP), parse_sdp(SDP.replace(b"Z0IAHpWoKA9puAgICBA=", b"Z0I="))))
        self.assertFalse(same_streams(parse_sdp(SDP), parse_sdp(SDP_H265)))
        self.assertFalse(same_streams(parse_sdp(SDP), parse_sdp(SDP.split(b"m=audio")[0])))
