"""The live event hub (globaleye/app/events.py) and the SSE stream (globaleye/web/api_events.py) in
memory, on a task.Clock: who receives what, bounded queues, heartbeats, the session check, back-pressure.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from globaleye.app.events import DeviceEvent, EventBoard, EventService
from globaleye.testing import InlineStore, known_device, pump_camera_and_gateway
from globaleye.web import api_events
from globaleye.web.api_events import EventStream

CAMERA, OTHER = "81100000001", "81100000002"


class FakeAccess:
    """CameraAccess.binding as the hub uses it: who may see which camera, changeable by the test."""

    def __init__(self, visible: dict[str, set[str]]) -> None:
        self.visible = visible
        self.asked: list[tuple[str, str, bool]] = []

    async def binding(self, account: str, dev_id: str, channel_no: int | None = None, own: bool = True) -> Any:
        self.asked.append((account, dev_id, own))
        return object() if dev_id in self.visible.get(account, set()) else None


def hub(visible: dict[str, set[str]], **kw: Any) -> tuple[EventBoard, EventService, FakeAccess]:
    board, access = EventBoard(), FakeAccess(visible)
    return board, EventService(access, board, **kw), access  # type: ignore[arg-type]


class EventServiceTests(TestCase):
    def test_only_the_accounts_that_may_see_the_camera_receive_it(self) -> None:
        board, service, access = hub({"owner": {CAMERA}, "guest": {CAMERA}, "stranger": {OTHER}})
        subs = {a: service.subscribe(a) for a in ("owner", "guest", "stranger")}
        board.alarm(CAMERA, 1, 6, "disk", 100.0)
        self.assertEqual(subs["owner"].poll(), DeviceEvent("alarm", CAMERA, 100.0, channel=1, alarm_type=6,
                                                           text="disk"))
        self.assertIsNotNone(subs["guest"].poll())
        self.assertIsNone(subs["stranger"].poll())
        self.assertTrue(all(own is False for _, _, own in access.asked), "viewing is enough: own=False")
        # Asked again for each event: a revoked share stops the next one.
        access.visible["guest"] = set()
        board.presence(CAMERA, False, 101.0)
        self.assertEqual(subs["owner"].poll(), DeviceEvent("device", CAMERA, 101.0, online=False))
        self.assertIsNone(subs["guest"].poll())

    def test_a_waiting_reader_gets_the_event_and_close_wakes_it(self) -> None:
        board, service, _ = hub({"owner": {CAMERA}})
        subscription = service.subscribe("owner")
        got: list[Any] = []
        subscription.get().addCallback(got.append)
        board.alarm(CAMERA, 0, 7, "power", 5.0)
        self.assertEqual([e.alarm_type for e in got], [7])
        subscription.get().addCallback(got.append)
        subscription.close()
        self.assertEqual(got[-1], None)
        self.assertEqual(service.count("owner"), 0)
        self.assertEqual(service.subscriptions, {})
        board.alarm(CAMERA, 0, 7, "after", 6.0)  # nobody listens: not even checked
        self.assertEqual(len(got), 2)
        subscription.close()  # twice: harmless

    def test_a_slow_subscriber_keeps_at_most_its_queue(self) -> None:
        board, service, _ = hub({"owner": {CAMERA}}, queue_size=4)
        slow, quick = service.subscribe("owner"), service.subscribe("owner")
        for n in range(10):
            board.alarm(CAMERA, 0, 6, str(n), float(n))
            quick.poll()
        self.assertEqual([e.text for e in slow.queue], ["6", "7", "8", "9"])
        self.assertEqual((slow.dropped, quick.dropped), (6, 0))
        self.assertEqual(service.counters["dropped"], 6)

    def test_events_wait_for_a_slow_check_in_order_and_bounded(self) -> None:
        """A store slower than the reports: events are checked one at a time in order; beyond
        pending_max the oldest waiting are dropped and counted."""
        board = EventBoard()
        gates: list[Deferred[Any]] = []

        class SlowAccess:
            async def binding(self, account: str, dev_id: str, channel_no: Any = None, own: bool = True) -> Any:
                gate: Deferred[Any] = Deferred()
                gates.append(gate)
                return await gate

        service = EventService(SlowAccess(), board, pending_max=3)  # type: ignore[arg-type]
        subscription = service.subscribe("owner")
        for n in range(6):
            board.alarm(CAMERA, 0, 6, str(n), float(n))
        self.assertEqual(len(gates), 1)  # the first is being checked
        self.assertEqual([e.text for e in service.pending], ["3", "4", "5"])
        self.assertEqual(service.counters["pending_dropped"], 2)
        while gates:
            gates.pop(0).callback(object())
        self.assertEqual([e.text for e in subscription.queue], ["0", "3", "4", "5"])

    def test_the_gateway_reports_alarms_and_presence(self) -> None:
        """The real gateway with the real simulated camera (in memory): login, a 34H report and the end
        of the session reach the board the composition root gives it."""
        store = InlineStore()
        self.successResultOf(Deferred.fromCoroutine(store.enroll_device(known_device(CAMERA))))
        link = pump_camera_and_gateway(store, CAMERA, connect=False)
        board = EventBoard()
        seen: list[DeviceEvent] = []
        board.attach(seen.append)
        link.gateway.reports = board
        link.connect()
        self.assertEqual([(e.kind, e.online) for e in seen], [("device", True)])
        answered = Deferred.fromCoroutine(link.camera.raise_alarm(8, "lens covered", channel_no=0))
        link.flush()
        self.assertEqual(self.successResultOf(answered), 0)
        alarm = seen[-1]
        self.assertEqual((alarm.kind, alarm.dev_id, alarm.alarm_type, alarm.text), ("alarm", CAMERA, 8, "lens covered"))
        link.stop()
        self.assertEqual((seen[-1].kind, seen[-1].online), ("device", False))


class StreamRequest(DummyRequest):
    """DummyRequest with a push producer kept (DummyRequest's own loops on pull producers)."""

    def __init__(self) -> None:
        super().__init__([b"events"])
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        self.producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802
        self.producer = None

    def text(self) -> str:
        return b"".join(self.written).decode()


class FakeAccounts:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.live = True

    def is_live(self, account: str, token: str) -> bool:
        return self.live


class EventStreamTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.board, self.service, _ = hub({"owner": {CAMERA}}, queue_size=3)
        self.accounts = FakeAccounts(self.clock)
        self.request = StreamRequest()
        self.stream = EventStream(self.service.subscribe("owner"), self.accounts, "token", "192.0.2.1:5000")
        self.assertEqual(self.stream.render(self.request), NOT_DONE_YET)

    def test_headers_retry_events_and_heartbeat(self) -> None:
        self.assertEqual(self.request.responseHeaders.getRawHeaders(b"content-type"),
                         [b"text/event-stream; charset=utf-8"])
        self.assertTrue(self.request.text().startswith(f"retry: {api_events.RETRY_MS}\n"))
        self.board.alarm(CAMERA, 0, 6, "disk\nline two", 1764638100.0)
        self.assertIn('event: alarm\ndata: {"devId": "81100000001", "channel": 0, "type": 6, '
                      '"text": "disk\\nline two", "time": "20251202091500", "dropped": 0}\n\n', self.request.text())
        self.board.presence(CAMERA, True, 1764638101.0)
        self.assertIn('event: device\ndata: {"devId": "81100000001", "online": true, "time": "20251202091501"}\n\n',
                      self.request.text())
        before = len(self.request.written)
        self.clock.advance(api_events.HEARTBEAT)
        self.assertEqual(self.request.written[before:], [b": keep-alive\n\n"])

    def test_the_session_ending_ends_the_stream(self) -> None:
        self.clock.advance(api_events.SESSION_CHECK)
        self.assertEqual(self.request.finished, 0)
        self.accounts.live = False
        self.clock.advance(api_events.SESSION_CHECK)
        self.assertEqual(self.request.finished, 1)
        self.assertTrue(self.request.text().endswith('event: session\ndata: {"state": "ended"}\n\n'))
        self.assertEqual(self.service.count("owner"), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [], "no timer left behind")

    def test_back_pressure_keeps_the_queue_bounded(self) -> None:
        self.request.producer.pauseProducing()
        before = len(self.request.written)
        for n in range(5):
            self.board.alarm(CAMERA, 0, 6, str(n), 0.0)
        self.assertEqual(len(self.request.written), before, "nothing written while the socket is full")
        self.clock.advance(api_events.HEARTBEAT)
        self.assertEqual(len(self.request.written), before, "no heartbeat either")
        subscription = self.stream.subscription
        self.assertEqual((len(subscription.queue), subscription.dropped), (3, 2))
        self.request.producer.resumeProducing()
        texts = [line for line in self.request.text().split("\n") if line.startswith("data: ")]
        self.assertEqual(len(texts), 3)
        self.assertIn('"text": "2"', texts[0])
        self.assertIn('"dropped": 2', texts[-1])
        self.board.alarm(CAMERA, 0, 6, "live again", 0.0)
        self.assertIn("live again", self.request.text())

    def test_the_browser_going_away_unsubscribes(self) -> None:
        self.stream.stopProducing()
        for observer in self.request._finishedDeferreds or []:
            observer.errback(Failure(ConnectionLost()))
        self.assertEqual(self.service.count("owner"), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.board.alarm(CAMERA, 0, 6, "after", 0.0)
        self.assertNotIn("after", self.request.text())
