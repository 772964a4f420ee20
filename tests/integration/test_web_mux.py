"""The grid's multiplexed live stream (GET /api/v1/live/mux.bin) over real loopback: a platform with
the gateway, rtsp and web roles, three simulated cameras (two the account's, one another account's),
a plain HTTP client reading the frames as docs/protocol.md describes them."""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

from twisted.trial.unittest import TestCase

from globaleye.web.mux import HEADER, KIND_ERROR, KIND_FRAGMENT, KIND_INIT, parse_frames
from tests.util import PROXY_DEV as DEV
from tests.util import PROXY_MOBILE as MOBILE
from tests.util import PROXY_OTHER_DEV as OTHER_DEV
from tests.util import PROXY_PASSWORD as PASSWORD
from tests.util import ProxyHarness, http_client, until

SECOND = "81300000013"
ABSENT = "81300000099"


class FrameReader:
    """The answer's body, cut into frames as they come (the format of docs/protocol.md)."""

    def __init__(self) -> None:
        self.rest = b""
        self.frames: list[tuple[int, int, bytes]] = []
        self.arrivals: list[float] = []  # when each fragment of stream 0 came
        self.ended = False

    def makeConnection(self, transport: Any) -> None:  # noqa: N802
        self.transport = transport

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        frames, self.rest = parse_frames(self.rest + data)
        self.frames.extend(frames)
        self.arrivals.extend(time.monotonic() for i, k, _ in frames if i == 0 and k == KIND_FRAGMENT)

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        self.ended = True

    def of(self, index: int, kind: int) -> list[bytes]:
        return [payload for i, k, payload in self.frames if i == index and k == kind]


def boxes(data: bytes) -> list[bytes]:
    """The top-level MP4 box types of *data* (which must be whole boxes)."""
    out, at = [], 0
    while at < len(data):
        size, kind = struct.unpack_from(">I4s", data, at)
        assert size >= 8, (size, kind)
        out.append(kind)
        at += size
    assert at == len(data)
    return out


class WebMuxTests(TestCase):
    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        from globaleye.platform.config import parse_config
        from globaleye.testing import platform_config

        self.h = ProxyHarness(self)
        self.h.config = parse_config(platform_config(
            "gateway, http, turn, rtsp, web", public_host=None, cms_password=None, turn={"relay_ports": "53000-53999"},
            rtsp="linger = 0.5\nudp_timeout = 5\nconnect_timeout = 2\nstall_timeout = 2"))
        await self.h.start({DEV: {}, SECOND: {}, OTHER_DEV: {}})
        self.base = f"http://127.0.0.1:{self.h.platform.port_of('web')}"
        http = http_client()
        login = await http.post(self.base + "/api/v1/session", json={"account": MOBILE, "password": PASSWORD})
        self.assertEqual(login.code, 200, await login.text())
        await login.content()
        self.cookies = {"ge_session": login.cookies()["ge_session"]}

    async def open(self, *specs: str) -> tuple[Any, FrameReader]:
        query = "&".join(f"s={s}" for s in specs)
        response = await http_client().get(f"{self.base}/api/v1/live/mux.bin?{query}", cookies=self.cookies,
                                           unbuffered=True)
        reader = FrameReader()
        if response.code == 200:
            response.deliverBody(reader)
            self.addCleanup(lambda: None if reader.ended else reader.transport.stopProducing())
        return response, reader

    async def test_two_cameras_and_a_stranger_in_one_answer(self) -> None:
        """Init + fragments of each of the account's cameras, in their own index; the other account's
        camera and a nonexistent one: one identical 404 error frame each, while the others go on."""
        response, reader = await self.open(f"{DEV}:0:main", f"{OTHER_DEV}:0:main", f"{SECOND}:0:sub",
                                           f"{ABSENT}:0:main")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/vnd.globaleye.live-mux"])
        await until(lambda: len(reader.of(0, KIND_FRAGMENT)) > 60 and len(reader.of(2, KIND_FRAGMENT)) > 60,
                    timeout=20)
        for index in (0, 2):
            [init, *more] = reader.of(index, KIND_INIT)
            self.assertEqual(more, [], "one init per stream (the camera's SPS/PPS do not change)")
            codec = init[1:1 + init[0]].decode("ascii")
            # H.264, and the camera's sound as AAC-LC when the [web] extra is installed (web/live.py).
            self.assertRegex(codec, r"^avc1\.[0-9A-F]{6}(,mp4a\.40\.2)?$")
            self.assertEqual(boxes(init[1 + init[0]:]), [b"ftyp", b"moov"])
            fragments = reader.of(index, KIND_FRAGMENT)
            for fragment in fragments:
                self.assertEqual(boxes(fragment), [b"moof", b"mdat"])
            # The init comes before the stream's first fragment.
            kinds = [k for i, k, _ in reader.frames if i == index]
            self.assertEqual(kinds[0], KIND_INIT)
            self.assertEqual(reader.of(index, KIND_ERROR), [])
        theirs, absent = reader.of(1, KIND_ERROR), reader.of(3, KIND_ERROR)
        self.assertEqual(len(theirs), 1)
        self.assertEqual(theirs, absent, "another account's camera looks like one that does not exist")
        self.assertEqual(json.loads(theirs[0])["status"], 404)
        self.assertEqual(reader.of(1, KIND_INIT) + reader.of(1, KIND_FRAGMENT), [])
        # Each camera is one viewer of its stream's shared feed: one hub (main of one, sub of the other).
        hubs = self.h.factory.hubs
        self.assertIn((DEV, 0, 1), hubs)
        self.assertIn((SECOND, 0, 2), hubs)
        self.assertNotIn((OTHER_DEV, 0, 1), hubs, "no upstream opened for a camera not the account's")
        # The page leaves: both streams leave their hubs.
        reader.transport.stopProducing()
        await until(lambda: not hubs[(DEV, 0, 1)].viewers and not hubs[(SECOND, 0, 2)].viewers, timeout=10)

    async def test_a_second_grid_shares_the_feed(self) -> None:
        """Two answers with the same camera: still one upstream (the hub started once), both get it."""
        _, first = await self.open(f"{DEV}:0:sub")
        await until(lambda: len(first.of(0, KIND_FRAGMENT)) > 5, timeout=20)
        _, second = await self.open(f"{SECOND}:0:sub", f"{DEV}:0:sub")
        await until(lambda: len(second.of(1, KIND_FRAGMENT)) > 5 and len(second.of(0, KIND_FRAGMENT)) > 5,
                    timeout=20)
        self.assertEqual(self.h.factory.hubs[(DEV, 0, 2)].starts, 1)
        self.assertEqual(len(second.of(1, KIND_INIT)), 1)

    async def test_request_level_refusals(self) -> None:
        """More than nine streams, none, or a malformed one: 400 before any frame; no session: 401."""
        ten = [f"{DEV}:0:sub"] * 10
        for specs in (ten, [], [f"{DEV}:0:hd"], [f"{DEV}-0-main"]):
            response, _ = await self.open(*specs)
            self.assertEqual(response.code, 400, specs)
            problem = json.loads(await response.content())
            self.assertEqual(problem["status"], 400)
        nine, _ = await self.open(*([f"{ABSENT}:0:sub"] * 9))
        self.assertEqual(nine.code, 200)
        anonymous = await http_client().get(f"{self.base}/api/v1/live/mux.bin?s={DEV}:0:main")
        self.assertEqual(anonymous.code, 401)
        await anonymous.content()

    async def test_every_stream_refused_ends_the_answer(self) -> None:
        """Nothing left to send: the answer ends after the error frames (the page may ask again)."""
        response, reader = await self.open(f"{OTHER_DEV}:0:main", f"{ABSENT}:0:sub")
        self.assertEqual(response.code, 200)
        await until(lambda: reader.ended, timeout=10)
        self.assertEqual(sorted(i for i, k, _ in reader.frames if k == KIND_ERROR), [0, 1])
        self.assertEqual(reader.rest, b"")
        self.assertEqual(HEADER.size, 6)

    async def test_slow_reader_dropped_others_unaffected(self) -> None:
        """One socket for all its streams: a browser that stops reading skips pictures on every
        stream, is dropped after stall_timeout, and the answer beside it gets every picture on time."""
        _, good = await self.open(f"{DEV}:0:main", f"{SECOND}:0:sub")
        await until(lambda: len(good.of(0, KIND_FRAGMENT)) > 5 and len(good.of(1, KIND_FRAGMENT)) > 5, timeout=20)
        live = next(iter(self.h.factory.hubs[(DEV, 0, 1)].viewers)).feed.live
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.addCleanup(sock.close)
        sock.connect(("127.0.0.1", self.h.platform.port_of("web")))
        sock.sendall(f"GET /api/v1/live/mux.bin?s={DEV}:0:main&s={SECOND}:0:sub HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Cookie: ge_session={self.cookies['ge_session']}\r\n\r\n".encode())  # and never read
        port = sock.getsockname()[1]
        await until(lambda: len([v for v in live.viewers if v.peer.endswith(f":{port}")]) == 2, timeout=10)
        slow = [v for v in live.viewers if v.peer.endswith(f":{port}")]
        await until(lambda: live.stalled_drops == 1, timeout=20)
        self.assertGreater(sum(v.skipped for v in slow), 0, "pictures skipped while the socket was full")
        self.assertTrue(all(v.closed for v in slow))
        self.assertEqual(len(live.viewers), 2, "the good answer's two streams")
        start = len(good.arrivals)
        await until(lambda: len(good.arrivals) > start + 25, timeout=10)
        gaps = [b - a for a, b in zip(good.arrivals, good.arrivals[1:], strict=False)]
        self.assertLess(max(gaps), 0.5, "the other answer was never held up")
