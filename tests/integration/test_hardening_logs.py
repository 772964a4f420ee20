"""Issue 9 item 13 at the gateway and the RTSP proxy: repeated refusals are summarised per source.

A flood of bad logins, idle connections or unauthenticated RTSP requests from one address used to
write one or two log lines each.  Now the first refusal of a kind from a source address in a minute
is logged in full and the rest are counted in one summary line; a logged-in device's session still
gets its own line.  Real Gateway/RtspProxyFactory over StringTransports, time on a task.Clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from globaleye.device.gateway import Gateway, GatewaySettings
from globaleye.device.protocol import messages as m
from globaleye.guard.keyguard import KeyGuard, KeyGuardSettings
from globaleye.proxy.auth import AccountAuthenticator
from globaleye.proxy.server import RtspProxyFactory
from globaleye.store import Device
from globaleye.store.sqlite import SQLiteStore
from tests.util import Device_, OfflineCameras, Viewer


def capture(test: TestCase, prefix: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if str(event.get("log_namespace", "")).startswith(prefix):
            events.append(event)

    globalLogPublisher.addObserver(observe)
    test.addCleanup(globalLogPublisher.removeObserver, observe)
    return events


def accounted(events: list[dict[str, Any]]) -> int:
    """Refusals the log accounts for: one per full line plus the summaries' counts."""
    return sum(e.get("summary_count", 1) for e in events)


class GatewayRefusalLogTests(TestCase):
    def setUp(self) -> Any:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = SQLiteStore(":memory:")
        self.addCleanup(self.store.close)
        # A guard that lets every attempt through, so every login reaches the key check and is refused
        # by the gateway itself (the guard's own refusals are summarised by the guard).
        guard = KeyGuard(self.clock, KeyGuardSettings(source_free=10_000, identity_free=10_000, pair_free=10_000))
        self.gateway = Gateway(self.store, self.clock, GatewaySettings(login_timeout=30), guard=guard)
        return Deferred.fromCoroutine(self.store.import_devices([Device(dev_id="81100000001", dev_key="right")]))

    async def test_i9_13_gateway_refusal_flood_is_summarised(self) -> None:
        events = capture(self, "globaleye.")
        bad = [Device_(self.gateway, host="192.0.2.40", port=20000 + i) for i in range(200)]
        for i, device in enumerate(bad):  # wrong keys and unknown DevIDs
            device.send(m.LoginRequest(dev_ver="1", dev_id=f"811{i % 2:08d}", dev_key="wrong", net_type=1))
        for device in bad:
            await device.answer()
        idle = [Device_(self.gateway, host="192.0.2.40", port=30000 + i) for i in range(200)]
        self.clock.advance(31)  # the idle ones miss the login deadline
        self.assertTrue(all(device.closed for device in bad + idle))
        self.clock.advance(61)
        Device_(self.gateway, host="192.0.2.41").session.close("one more")  # writes the summaries
        flood = [e for e in events if "192.0.2.40" in str(e.get("who", "")) + str(e.get("summary_what", ""))]
        self.assertLessEqual(len(flood), 6, [e.get("log_format") for e in flood])
        # Every connection is accounted for: each bad login's closing (the first of each DevID also its
        # refusal; later ones the key guard refuses and logs itself) and each idle one's expiry.
        self.assertGreaterEqual(accounted(flood), len(bad) + len(idle), "every refusal and closing is counted")
        # A logged-in device's session is still logged on its own.
        good = Device_(self.gateway, host="192.0.2.42")
        good.send(m.LoginRequest(dev_ver="1", dev_id="81100000001", dev_key="right", net_type=1))
        await good.answer()
        del events[:]
        good.session.close("test ends")
        self.assertEqual([e.get("reason") for e in events if e.get("who")], ["test ends"])


class ProxyRefusalLogTests(TestCase):
    async def test_i9_13_rtsp_refusal_flood_is_summarised(self) -> None:
        clock = Clock()
        clock.advance(1_700_000_000)
        store = SQLiteStore(":memory:")
        self.addCleanup(store.close)
        from globaleye.users.accounts import AccountService, AccountSettings, RecordingSmsSender

        accounts = AccountService(store, clock, AccountSettings(digest_realm="GlobalEye"),
                                  sms_sender=RecordingSmsSender())
        auth = AccountAuthenticator(accounts, ("digest",), "GlobalEye", clock=clock)
        factory = RtspProxyFactory(OfflineCameras(), auth, clock)  # type: ignore[arg-type]
        events = capture(self, "globaleye.proxy")
        for i in range(300):  # no credentials: 401 each
            viewer = Viewer(factory, "192.0.2.50", 20000 + i)
            self.assertEqual((await viewer.ask()).code, 401)
        clock.advance(61)
        self.assertEqual((await Viewer(factory, "192.0.2.51").ask()).code, 401)  # writes the summary
        flood = [e for e in events if "192.0.2.50" in str(e.get("peer", "")) + str(e.get("summary_what", ""))]
        self.assertLessEqual(len(flood), 3, [e.get("log_format") for e in flood])
        self.assertEqual(accounted(flood), 300)
        self.assertEqual(factory.refusals[401], 301)


class TurnRefusalLogTests(TestCase):
    async def test_i9_13_turn_refusal_flood_is_summarised(self) -> None:
        """An authenticated TURN client repeating a refused request (a permission to a denied peer)
        gets its refusal logged once a minute, then counted, not once per request."""
        from twisted.internet import reactor

        from txturn.auth import StaticUsers
        from txturn.service import TurnServerConfig, turn_service
        from txturn.stun import Attr as A
        from txturn.stun import Method as M
        from txturn.testing import UdpStunClient
        from txturn.testing import code as _code

        svc = turn_service(TurnServerConfig(interface="127.0.0.1", port=0, realm="r", relay_ports=(0, 0)),
                           lookup=StaticUsers({"u": "p"}), reactor=reactor)
        svc.startService()
        self.addCleanup(svc.stopService)
        client = UdpStunClient(svc.addresses["udp"][:2], "u", "p", "r")
        port = reactor.listenUDP(0, client, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.assertEqual(_code(await client.request(M.ALLOCATE, {A.REQUESTED_TRANSPORT: 17})), 200)
        events = capture(self, "txturn")
        for _ in range(300):  # 127.0.0.1 is a denied peer by default: 403 each
            resp = await client.request(M.CREATE_PERMISSION, {A.XOR_PEER_ADDRESS: ("127.0.0.1", 9)})
            self.assertEqual(_code(resp), 403)
        svc.server.stop()  # writes the summary
        refused = [e for e in events if "refused" in str(e.get("log_format", "")) + str(e.get("summary_what", ""))]
        self.assertLessEqual(len(refused), 2, [e.get("log_format") for e in refused])
        self.assertEqual(accounted(refused), 300)
