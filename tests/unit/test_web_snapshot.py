"""The device list's pictures (globaleye.web.snapshot) in memory: a fake hub replaying one IDR, a fake
decoder, the reactor's clock as task.Clock.  What is proved here: a picture is kept 60 s by the
reactor's clock and no longer; asks that come while it is made share one grab and one decode; at
most N decodes run at once; the cache is bounded; no IDR within the bound is a 504 and the hub is
left; access before anything (404, 503)."""

from __future__ import annotations

import importlib.util
from typing import Any

from twisted.internet import defer, task
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.media import rtp
from globaleye.media.rtsp.sdp import parse_sdp
from globaleye.proxy.platform import Target
from globaleye.web.live import LiveUnavailable
from globaleye.web.snapshot import Snapshots, decode_jpeg

SDP = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=x\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
       b"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
       b"a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0IAHpWoKA9puAgICBA=,aM48gA==\r\n"
       b"a=control:trackID=0\r\n")
IDR = b"\x65\x88\x84\x00\x33"


class FakeHub:
    """A LiveHub's surface as the snapshot uses it: ensure, add (replays the cached GOP), remove."""

    def __init__(self, key: tuple[str, int, int], gop: bool = True) -> None:
        self.key = key
        self.running = False
        self.recovering = False
        self.starts = 0
        self.viewers: set[Any] = set()
        self.added = 0
        # One IDR in one RTP packet (marker set), as the hub's GOP cache holds it.
        self.gop = [(0, rtp.rtp_header(96, 1, 9000, 1234, True) + IDR, 9000, 12, True)] if gop else []

    async def ensure(self, account: str) -> Any:
        if not self.running:
            self.running = True
            self.starts += 1
        return parse_sdp(SDP)

    def add(self, viewer: Any) -> None:
        self.viewers.add(viewer)
        self.added += 1
        viewer.replay(tuple(self.gop))

    def remove(self, viewer: Any) -> None:
        self.viewers.discard(viewer)


class FakeDirectory:
    def __init__(self) -> None:
        self.offline: set[str] = set()

    async def may_watch(self, account: str, target: Target) -> bool:
        return account == "13300000001" and target.dev_id.startswith("813")

    def online(self, dev_id: str) -> bool:
        return dev_id not in self.offline


class FakeFactory:
    def __init__(self, gop: bool = True) -> None:
        self.directory = FakeDirectory()
        self.hubs: dict[tuple[str, int, int], FakeHub] = {}
        self.gop = gop

    def hub(self, target: Target) -> FakeHub:
        if target.key not in self.hubs:
            self.hubs[target.key] = FakeHub(target.key, self.gop)
        return self.hubs[target.key]


class FakeLive:
    def __init__(self, reactor: Any, gop: bool = True) -> None:
        self.factory = FakeFactory(gop)
        self.reactor = reactor


ACCOUNT = "13300000001"


def target(dev_id: str = "81300000001", stream: int = 2) -> Target:
    return Target("live", dev_id, 0, stream)


class SnapshotCacheTests(TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.decoded: list[bytes] = []
        #: Decodes "in the thread" not yet finished, when hold is set.
        self.running: list[defer.Deferred[Any]] = []
        self.hold = False

    def decode(self, annexb: bytes) -> tuple[bytes, int, int]:
        self.decoded.append(annexb)
        return b"\xff\xd8" + bytes([len(self.decoded)]), 352, 288

    def in_thread(self, f: Any, *args: Any) -> defer.Deferred[Any]:
        if not self.hold:
            return defer.maybeDeferred(f, *args)
        d: defer.Deferred[Any] = defer.Deferred()
        self.running.append(d)
        d.addCallback(lambda _: f(*args))
        return d

    def snapshots(self, gop: bool = True, **kw: Any) -> Snapshots:
        return Snapshots(FakeLive(self.clock, gop), self.clock, decode=self.decode, in_thread=self.in_thread, **kw)

    def get(self, snapshots: Snapshots, t: Target | None = None, account: str = ACCOUNT) -> defer.Deferred[Any]:
        return defer.Deferred.fromCoroutine(snapshots.get(account, t or target()))

    def test_the_idr_decoded_has_its_parameter_sets(self) -> None:
        """The IDR came bare in the GOP: the SDP's SPS and PPS go in front of it (Annex B)."""
        s = self.snapshots()
        picture = self.successResultOf(self.get(s))
        self.assertEqual(picture.width, 352)
        [annexb] = self.decoded
        sps, pps = parse_sdp(SDP).media[0].sprop_parameter_sets
        self.assertEqual(annexb, b"".join(b"\x00\x00\x00\x01" + n for n in (sps, pps, IDR)))
        hub = s.factory.hubs[target().key]
        self.assertEqual(hub.viewers, set(), "the snapshot left the hub once it had its IDR")

    def test_a_picture_is_kept_sixty_seconds_by_the_reactors_clock(self) -> None:
        s = self.snapshots()
        first = self.successResultOf(self.get(s))
        self.clock.advance(59.9)
        self.assertIs(self.successResultOf(self.get(s)), first)
        self.assertEqual(len(self.decoded), 1)
        self.assertEqual(s.factory.hubs[target().key].added, 1, "the cached picture did not touch the hub")
        self.clock.advance(0.2)
        second = self.successResultOf(self.get(s))
        self.assertIsNot(second, first)
        self.assertEqual(len(self.decoded), 2)
        self.assertEqual(second.taken, 60.1)
        # Another stream of the same camera is its own picture.
        self.successResultOf(self.get(s, target(stream=1)))
        self.assertEqual(len(self.decoded), 3)

    def test_asks_during_a_decode_share_it(self) -> None:
        self.hold = True
        s = self.snapshots()
        asks = [self.get(s) for _ in range(10)]
        self.assertEqual(len(self.running), 1)
        for d in asks:
            self.assertNoResult(d)
        self.running[0].callback(None)
        pictures = [self.successResultOf(d) for d in asks]
        self.assertEqual(len({id(p) for p in pictures}), 1)
        self.assertEqual(len(self.decoded), 1)
        self.assertEqual(s.pending, {})

    def test_a_cancelled_ask_does_not_cancel_the_others(self) -> None:
        self.hold = True
        s = self.snapshots()
        first, second = self.get(s), self.get(s)
        first.cancel()
        self.failureResultOf(first, defer.CancelledError)
        self.running[0].callback(None)
        self.assertEqual(self.successResultOf(second).width, 352)

    def test_at_most_n_decodes_at_once(self) -> None:
        self.hold = True
        s = self.snapshots(max_decodes=2)
        asks = [self.get(s, target(f"8130000000{i}")) for i in range(3)]
        self.assertEqual(len(self.running), 2)
        self.running[0].callback(None)
        self.assertEqual(len(self.running), 3, "the third decode starts when one ends")
        for d in self.running[1:]:
            d.callback(None)
        for d in asks:
            self.successResultOf(d)

    def test_the_cache_is_bounded(self) -> None:
        s = self.snapshots(max_entries=2)
        for i in range(3):
            self.successResultOf(self.get(s, target(f"8130000000{i}")))
        self.assertEqual([k[0] for k in s.cache], ["81300000001", "81300000002"])
        self.clock.advance(61)
        self.successResultOf(self.get(s, target("81300000005")))
        self.assertEqual([k[0] for k in s.cache], ["81300000005"], "expired pictures go at the next one kept")

    def test_no_idr_in_time_is_504_and_the_hub_is_left(self) -> None:
        s = self.snapshots(gop=False)
        d = self.get(s)
        self.assertNoResult(d)
        self.clock.advance(7.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.assertEqual(self.failureResultOf(d, LiveUnavailable).value.status, 504)
        self.assertEqual(s.factory.hubs[target().key].viewers, set())
        self.assertEqual(s.pending, {})
        self.assertEqual(self.decoded, [])

    def test_access_then_online_before_anything(self) -> None:
        s = self.snapshots()
        self.assertEqual(self.failureResultOf(self.get(s, account="13300000002"), LiveUnavailable).value.status, 404)
        self.assertEqual(self.failureResultOf(self.get(s, target("81400000001")), LiveUnavailable).value.status, 404)
        s.factory.directory.offline.add("81300000001")
        self.assertEqual(self.failureResultOf(self.get(s), LiveUnavailable).value.status, 503)
        self.assertEqual(self.failureResultOf(self.get(s, target(stream=3)), LiveUnavailable).value.status, 400)
        self.assertEqual(s.factory.hubs, {})


class DecodeTests(TestCase):
    def test_garbage_does_not_decode(self) -> None:
        if importlib.util.find_spec("av") is None:
            raise SkipTest("PyAV (the [web] extra) is not installed")
        with self.assertRaises(ValueError):
            decode_jpeg(b"\x00\x00\x00\x01\x65" + b"\x00" * 32)
