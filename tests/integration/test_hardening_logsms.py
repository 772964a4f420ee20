"""Regression tests of the hardening findings on SMS limits, the CRM, the SMGP link and log volume.

Named after the findings of issue 9 (i9_NN) and issue 14 (i14_NN).
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import time
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import TestCase

from globaleye.platform.config import SCHEMA
from globaleye.store.sqlite import SQLiteStore
from globaleye.users.accounts import AccountService, AccountSettings, RecordingSmsSender
from globaleye.users.crm import HttpCRM, HttpCRMSettings
from globaleye.users.sms import smgp
from globaleye.users.sms.client import SMGPSender, SMGPSettings
from globaleye.users.sms.fixture import SMGPFixture, SMGPServerProtocol
from globaleye.util.peerkey import source_address
from txturn.service import TurnServerConfig, turn_service
from txturn.stunserver import StunServerConfig, stun_service


def inline(function: Any, *args: Any) -> Deferred[Any]:
    return succeed(function(*args))


class SmsLimitTests(TestCase):
    def accounts(self, **settings: Any) -> tuple[AccountService, RecordingSmsSender, Clock]:
        clock = Clock()
        clock.advance(1_700_000_000)
        store = SQLiteStore(":memory:")
        self.addCleanup(store.close)
        sms = RecordingSmsSender()
        service = AccountService(store, clock, AccountSettings(**settings), sms_sender=sms,
                                 hasher=PasswordHasher(time_cost=1, memory_cost=64, parallelism=1),
                                 run_in_thread=inline)
        return service, sms, clock

    async def test_i9_10_sms_interval_outlives_a_burnt_code(self) -> None:
        """Burning a code with wrong entries does not reset the number's interval or caps."""
        accounts, sms, clock = self.accounts(sms_interval=60, sms_code_attempts=5, sms_peer_limit=1000,
                                             sms_number_hourly=5, sms_number_daily=10)
        mobile = "13300000001"
        sent = 0
        for i in range(10):  # the attack: ask, burn the code with 5 wrong entries, ask again
            if await accounts.request_sms_code(mobile, 0, f"192.0.2.{i + 1}:5000") == 0:
                sent += 1
            for _ in range(5):
                self.assertEqual(await accounts.register(mobile, "secret1", "000000", "192.0.2.1:1"), 2)
            clock.advance(0.05)
        self.assertEqual(sent, 1, "one code per sms_interval, however the previous code ended")
        self.assertEqual(len(sms.sent), 1)
        # After the interval, one more; the hourly cap then holds even with the interval waited out.
        for _ in range(10):
            clock.advance(61)
            if await accounts.request_sms_code(mobile, 0, "192.0.2.50:5000") == 0:
                sent += 1
        self.assertEqual(sent, 5, "sms_number_hourly")
        for _ in range(30):
            clock.advance(600)
            if await accounts.request_sms_code(mobile, 0, "192.0.2.50:5000") == 0:
                sent += 1
        self.assertEqual(sent, 10, "sms_number_daily")
        clock.advance(86400)
        self.assertEqual(await accounts.request_sms_code(mobile, 0, "192.0.2.50:5000"), 0)

    async def test_i14_07_sms_peer_limit_by_ipv6_64(self) -> None:
        """8 addresses of one /64 share sms_peer_limit; another /64 and IPv4-mapped IPv4 count apart."""
        accounts, sms, clock = self.accounts(sms_peer_limit=3)
        given = [await accounts.request_sms_code(f"1330000001{i}", 0, f"2001:db8:1:2::{i + 1}:40000")
                 for i in range(8)]
        self.assertEqual(given, [0, 0, 0, 2, 2, 2, 2, 2])
        self.assertEqual(await accounts.request_sms_code("13300000020", 0, "2001:db8:1:3::1:40000"), 0)
        for i in range(3):
            self.assertEqual(await accounts.request_sms_code(f"1330000003{i}", 0, f"::ffff:192.0.2.7:{i + 1}"), 0)
        self.assertEqual(await accounts.request_sms_code("13300000040", 0, "192.0.2.7:9"), 2,
                         "IPv4-mapped IPv6 counts as the IPv4 address")
        self.assertEqual(source_address("[2001:db8:1:2:3:4:5:6]:5000"), "2001:db8:1:2::/64")
        self.assertEqual(source_address("2001:db8:1:2:3:4:5:6:5000"), "2001:db8:1:2::/64")
        self.assertEqual(source_address("::ffff:192.0.2.1:5000"), "192.0.2.1")
        self.assertEqual(source_address("192.0.2.1:5000"), "192.0.2.1")


class HostileCRM(Protocol):
    """An HTTP 'CRM' that answers any request per its factory's mode, counting what it sends."""

    factory: HostileCRMFactory
    CHUNK = b"x" * 65536

    def connectionMade(self) -> None:
        self.buffer = b""
        self.answered = False

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if self.answered or b"\r\n\r\n" not in self.buffer:
            return
        self.answered = True
        self.factory.requests += 1
        mode = self.factory.mode
        if mode == "redirect":
            self.transport.write(b"HTTP/1.1 " + self.factory.status + b" Moved\r\nLocation: " + self.factory.location
                                 + b"\r\nContent-Length: 0\r\n\r\n")
            return
        if mode == "allow":
            body = json.dumps({"allowed": True}).encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)
            return
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
        if mode == "endless":
            self.transport.registerProducer(self, False)  # type: ignore[attr-defined]
        else:  # drip: one byte every 50 ms, forever
            self.drip()

    def resumeProducing(self) -> None:
        if self.factory.sent >= self.factory.give_up_after:
            return  # protects the test machine when the client does not stop reading
        self.factory.sent += len(self.CHUNK)
        self.transport.write(b"%x\r\n%s\r\n" % (len(self.CHUNK), self.CHUNK))

    def stopProducing(self) -> None:
        pass

    def drip(self) -> None:
        if self.factory.lost is not None:
            return
        self.factory.sent += 1
        self.transport.write(b"1\r\n \r\n")
        self.factory.dripper = reactor.callLater(0.05, self.drip)  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure) -> None:
        self.factory.lost = time.monotonic()
        self.transport.unregisterProducer()  # type: ignore[attr-defined]


class HostileCRMFactory(Factory):
    protocol = HostileCRM

    def __init__(self, mode: str, status: bytes = b"303", location: bytes = b"") -> None:
        self.mode, self.status, self.location = mode, status, location
        self.requests = 0
        self.sent = 0
        self.give_up_after = 64 * 1024 * 1024
        self.lost: float | None = None
        self.dripper: Any = None


class HostileCRMTests(TestCase):
    timeout = 30

    def serve(self, factory: HostileCRMFactory) -> str:
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)

        def stop_dripping() -> None:
            if factory.dripper is not None and factory.dripper.active():
                factory.dripper.cancel()

        self.addCleanup(stop_dripping)
        return f"http://127.0.0.1:{port.getHost().port}/crm"

    async def wait_for_disconnect(self, factory: HostileCRMFactory, within: float) -> None:
        deadline = time.monotonic() + within
        while factory.lost is None and time.monotonic() < deadline:
            await deferLater(reactor, 0.02)  # type: ignore[arg-type]
        self.assertIsNotNone(factory.lost, "the CRM connection was not dropped")

    async def test_i14_01_endless_crm_body_is_capped_and_aborted(self) -> None:
        """An endless chunked answer: refused quickly, connection dropped, a bounded amount sent."""
        for mode, timeout in (("endless", 3.0), ("drip", 1.0)):
            factory = HostileCRMFactory(mode)
            crm = HttpCRM(HttpCRMSettings(url=self.serve(factory), timeout=timeout, fail_open=False))
            started = time.monotonic()
            allowed = await crm.may_open("18900000001")
            took = time.monotonic() - started
            self.assertFalse(allowed, mode)
            self.assertLess(took, timeout + 0.5, mode)
            await self.wait_for_disconnect(factory, within=1.0)
            assert factory.lost is not None
            self.assertLess(factory.lost - started, timeout + 1.0, mode)
            # What the CRM could push: the cap plus socket buffers, not the 64 MB it was ready to send.
            self.assertLess(factory.sent, 16 * 1024 * 1024, mode)
            if mode == "endless":
                self.assertLess(took, 2.0, "the cap, not the timeout, ends an endless answer")

    async def test_i14_02_crm_redirect_not_followed(self) -> None:
        """A 302/303/307 from the CRM counts as unavailable; the other host is never asked."""
        elsewhere = HostileCRMFactory("allow")
        target = self.serve(elsewhere).encode()
        for method, status in (("POST", b"303"), ("GET", b"302"), ("GET", b"307"), ("POST", b"307")):
            redirecting = HostileCRMFactory("redirect", status=status, location=target)
            crm = HttpCRM(HttpCRMSettings(url=self.serve(redirecting), method=method, timeout=3, fail_open=False))
            self.assertFalse(await crm.may_open("18900000001"), (method, status))
            self.assertEqual(redirecting.requests, 1)
        self.assertEqual(elsewhere.requests, 0, "the redirect target was asked")
        # The target itself does allow: the refusal is the redirect's, not the target's.
        crm = HttpCRM(HttpCRMSettings(url=target.decode(), timeout=3, fail_open=False))
        self.assertTrue(await crm.may_open("18900000001"))

    async def test_i9_15_crm_down_fails_closed_by_default(self) -> None:
        """With the shipped defaults, a CRM that is down refuses registration."""
        self.assertEqual(SCHEMA["crm"]["fail_open"].default, "no")
        self.assertFalse(HttpCRMSettings(url="http://x/").fail_open)
        port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{port.getHost().port}/crm"
        await port.stopListening()  # nothing listens there now: connection refused
        clock = Clock()
        store = SQLiteStore(":memory:")
        self.addCleanup(store.close)
        sms = RecordingSmsSender()
        accounts = AccountService(store, clock, AccountSettings(), sms_sender=sms,
                                  hasher=PasswordHasher(time_cost=1, memory_cost=64, parallelism=1),
                                  run_in_thread=inline, crm=HttpCRM(HttpCRMSettings(url=url, timeout=3)))
        self.assertEqual(await accounts.request_sms_code("18900000001", 0, "192.0.2.1:1"), 0)
        result = await accounts.register("18900000001", "secret1", sms.last_code("18900000001"), "192.0.2.1:1")
        self.assertEqual(result, 3, "§8.2 Result 3: the service cannot be opened for this number")
        self.assertIsNone(await store.get_account("18900000001"))


MALFORMED = b"\x00\x01\x00\x05" + b"\x21\x12\xa4\x42" + bytes(12) + b"\x00" * 5  # 25 bytes, bad length


class LogAmplificationTests(TestCase):
    timeout = 60

    def capture(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if str(event.get("log_namespace", "")).startswith("txturn"):
                events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        return events

    async def flood(self, address: tuple[str, int], count: int = 20_000) -> None:
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        for _batch in range(0, count, 100):
            for _ in range(100):
                sender.sendto(MALFORMED, address)
            await deferLater(reactor, 0.0005)  # type: ignore[arg-type]
        await deferLater(reactor, 0.2)  # type: ignore[arg-type]

    @staticmethod
    def counted(events: list[dict[str, Any]]) -> int:
        """Malformed packets the log accounts for: one per full line plus the summaries' counts."""
        return sum(e.get("summary_count", 1) for e in events)

    async def test_i9_13_malformed_stun_flood_log_is_bounded(self) -> None:
        """20,000 malformed datagrams to STUN and to TURN: a handful of log lines, not 20,000."""
        assert len(MALFORMED) == 25
        svc = stun_service(StunServerConfig(port=0))
        svc.startService()
        events = self.capture()
        assert svc.primary_address is not None
        await self.flood(svc.primary_address)
        await svc.stopService()  # writes the summary of the interval
        self.assertLessEqual(len(events), 3, [e.get("log_format") for e in events[:5]])
        self.assertGreater(self.counted(events), 10_000, "the server saw the flood (and counted it)")
        turn = turn_service(TurnServerConfig(port=0, relay_ports=(0, 0)))
        turn.startService()
        self.addCleanup(turn.stopService)
        del events[:]
        await self.flood(turn.addresses["udp"] if "udp" in turn.addresses else next(iter(turn.addresses.values())))
        turn.server.malformed.flush()
        self.assertLessEqual(len(events), 3, [e.get("log_format") for e in events[:5]])
        self.assertGreater(self.counted(events), 10_000)

    def test_i9_13_twistd_log_rotation_keeps_max_files(self) -> None:
        """twistd globaleye --logfile X: rotation at [log] max_size, at most [log] max_files kept."""
        previous = signal.getsignal(signal.SIGUSR1)
        self.addCleanup(signal.signal, signal.SIGUSR1, previous)
        work = Path(self.mktemp())
        work.mkdir()
        ini = work / "globaleye.ini"
        ini.write_text(f"[globaleye]\ndata_dir = {work}\n[log]\nmax_size = 4096\nmax_files = 3\n")
        logfile = work / "platform.log"
        options = ServerOptions()
        options.parseOptions(["--logfile", str(logfile), "globaleye", "--config", str(ini)])
        self.addCleanup(options.subOptions.store.close)
        factory = options["logger"]
        self.assertIsNotNone(factory, "the plugin installs a bounded log observer")
        observer = factory()
        for i in range(2_000):
            observer({"log_format": "line {i} " + "x" * 100, "i": i, "log_time": 0.0,
                      "log_level": None, "log_namespace": "test"})
        files = sorted(p.name for p in work.iterdir() if p.name.startswith("platform.log"))
        self.assertEqual(files, ["platform.log", "platform.log.1", "platform.log.2", "platform.log.3"])
        self.assertLessEqual(sum((work / f).stat().st_size for f in files), 4 * (4096 + 200))
        # Logging to stdout (-n --logfile=-) is left as twistd makes it.
        options = ServerOptions()
        options.parseOptions(["-n", "--logfile=-", "globaleye", "--config", str(ini)])
        self.addCleanup(options.subOptions.store.close)
        self.assertIsNone(options["logger"])


SMGP_ID, SMGP_SECRET = "10000001", "s3cret"


class HostileGateway(SMGPServerProtocol):
    """The fixture gateway, but after login it floods: unknown RequestIDs, or Active_Tests it never
    lets us answer (it stops reading).  Its own writes follow flow control, so the test process
    does not buffer the flood itself."""

    fixture: HostileFixture

    def login(self, pdu: smgp.Login) -> None:
        super().login(pdu)
        if self.client_id is None:
            return
        self.paused = False
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        if self.fixture.mode == "active_test":
            self.transport.pauseProducing()  # type: ignore[union-attr]  # never reads again
        self.fixture.clock.callLater(0, self.flood)

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        if self.paused:
            self.paused = False
            self.fixture.clock.callLater(0, self.flood)

    def stopProducing(self) -> None:  # noqa: N802
        pass

    def flood(self) -> None:
        fx = self.fixture
        while self.connected_ and not self.paused and fx.sent < fx.limit:
            batch = []
            for _ in range(500):
                fx.sent += 1
                if fx.mode == "unknown":
                    batch.append(struct.pack("!III", 12, 0x00007777, fx.sent))
                elif fx.mode == "deliver":
                    batch.append(smgp.encode(smgp.Deliver(sequence_id=fx.sent, msg_id=struct.pack("!Q", fx.sent) + b"ZZ",
                                                          is_report=1, src_term_id="18900000001")))
                else:
                    batch.append(smgp.encode(smgp.ActiveTest(sequence_id=fx.sent)))
            self.transport.write(b"".join(batch))  # type: ignore[union-attr]
            if fx.mode in ("unknown", "deliver"):
                break  # let the reactor run between batches (the session stays usable)
        if self.connected_ and not self.paused and fx.sent < fx.limit:
            fx.clock.callLater(0, self.flood)


class HostileFixture(SMGPFixture):
    def __init__(self, mode: str, limit: int) -> None:
        super().__init__({SMGP_ID: SMGP_SECRET})
        self.mode, self.limit, self.sent = mode, limit, 0

    def buildProtocol(self, addr: object) -> HostileGateway:
        return HostileGateway(self)


def outstanding(transport: Any) -> int:
    """Bytes a TCP transport holds for writing (twisted.internet.abstract.FileDescriptor's buffers)."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


class HostileSMGPTests(TestCase):
    timeout = 60

    def start(self, fixture: HostileFixture, **settings: Any) -> SMGPSender:
        port = fixture.listen(reactor)  # type: ignore[arg-type]
        self.addCleanup(port.stopListening)
        self.addCleanup(fixture.drop_all)
        base: dict[str, Any] = dict(host="127.0.0.1", port=port.getHost().port, client_id=SMGP_ID,
                                    secret=SMGP_SECRET, src_term_id="10659999", service_id="GLOBALEYE",
                                    connect_timeout=2.0, submit_timeout=2.0, reconnect_initial=5.0,
                                    reconnect_max=5.0)
        base.update(settings)
        sender = SMGPSender(SMGPSettings(**base))
        sender.startService()
        self.addCleanup(sender.stopService)
        return sender

    def capture(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "globaleye.users.sms.client.SMGPClientProtocol":
                events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        return events

    async def until(self, condition: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached")
            await deferLater(reactor, 0.01)  # type: ignore[arg-type]

    async def test_i14_03_hostile_smgp_gateway_flood(self) -> None:
        """Unknown RequestIDs: a few log lines, session usable; Active_Tests never read: bounded buffer."""
        events = self.capture()
        fixture = HostileFixture("unknown", limit=60_000)
        sender = self.start(fixture)
        await self.until(lambda: fixture.sent >= fixture.limit and sender._session is not None, 30)
        await sender.send("18900000001", "still works")
        self.assertEqual(fixture.messages(), [(("18900000001",), "still works")])
        bad = [e for e in events if "login" not in e.get("log_format", "")]
        self.assertLessEqual(len(bad), 3, [e.get("log_format") for e in bad[:5]])
        assert sender._session is not None
        sender._session.protocol_errors.flush()
        self.assertEqual(sum(e.get("summary_count", 1) for e in events if "unexpected" in e["log_format"]
                             or "unexpected" in str(e.get("summary_what", ""))), 60_000)

        # A flood of Deliver notices (status reports, all different): the first 50 a minute logged.
        del events[:]
        fixture = HostileFixture("deliver", limit=20_000)
        sender = self.start(fixture)
        await self.until(lambda: fixture.sent >= fixture.limit and sender._session is not None, 30)
        await sender.send("18900000001", "and still works")
        assert sender._session is not None
        sender._session.delivers.flush()
        delivers = [e for e in events if "Deliver" in e["log_format"] or "Deliver" in str(e.get("summary_name", ""))]
        self.assertLessEqual(len(delivers), 51)
        self.assertEqual(sum(e.get("summary_count", 1) for e in delivers), 20_000)

        # A gateway that floods Active_Tests and never reads our answers.
        fixture = HostileFixture("active_test", limit=10_000_000)
        sender = self.start(fixture, active_test_interval=0.5, active_test_missed=2)
        await self.until(lambda: sender._session is not None, 5)
        session = sender._session
        assert session is not None
        transport = session.transport
        peak = 0
        started = time.monotonic()
        while time.monotonic() - started < 3 and session.is_connected:
            peak = max(peak, outstanding(transport))
            await deferLater(reactor, 0.01)  # type: ignore[arg-type]
        self.assertLess(peak, 1024 * 1024, f"write buffer peaked at {peak} bytes (gateway sent {fixture.sent} PDUs)")
        # ... and the link is dropped: our own Active_Tests go unanswered.
        await self.until(lambda: not session.is_connected, 5)
