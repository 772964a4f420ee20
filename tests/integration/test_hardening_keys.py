"""Hardening of every DevKey and password check (issue 9 items 4–6, issue 14 item 5).

One throttle (:mod:`globaleye.guard.keyguard`) counts failures per identity, per source address and per
pair, with backoff on the reactor clock; a source the identity succeeded from is not refused for
others' failures.  The network findings run over real sockets on loopback, the timing rules on a
``task.Clock``.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from globaleye.device.gateway import Gateway, GatewaySettings
from globaleye.device.protocol import messages as m
from globaleye.device.protocol.frame import Frame, FrameDecoder, encode_frame
from globaleye.guard.keyguard import KeyGuard, KeyGuardSettings, source_of
from globaleye.nat.turnauth import DeviceCredentials
from globaleye.platform.config import parse_config
from globaleye.platform.tap import LISTEN_BACKLOG, PlatformService
from globaleye.proxy.auth import AccountAuthenticator
from globaleye.store import Device
from globaleye.store.sqlite import SQLiteStore
from globaleye.users.accounts import AccountService, AccountSettings, RecordingSmsSender
from tests.util import HASHER, RTSP_REALM, http_client, inline, registration_config, until
from tests.util import digest as digest_header
from txturn import stun
from txturn.auth import ChainedLookup, long_term_key
from txturn.service import TurnServerConfig, turn_service
from txturn.testing import UdpStunClient

REALM = "globaleye"

DEV = "81100000001"
KEY = "secret-key-1"


class CountingStore(SQLiteStore):
    """The real store, counting DevKey checks at login and device lookups (TURN's key checks)."""

    key_checks = 0
    lookups = 0

    async def login_device(self, *args: Any) -> str:
        self.key_checks += 1
        return await super().login_device(*args)

    async def get_device(self, dev_id: str) -> Any:
        self.lookups += 1
        return await super().get_device(dev_id)


class StunClient(UdpStunClient):
    """Raw STUN over UDP: Allocate requests sent at will, the answers awaited by transaction id."""

    def __init__(self, server: tuple[str, int]) -> None:
        super().__init__(server, timeout=10)

    def allocate(self, user: str | None = None, password: str = "", nonce: str = "") -> bytes:
        attributes: dict[int, Any] = {stun.Attr.REQUESTED_TRANSPORT: 17}
        key = None
        if user is not None:
            attributes.update({stun.Attr.USERNAME: user, stun.Attr.REALM: REALM, stun.Attr.NONCE: nonce})
            key = long_term_key(user, REALM, password)
        return self.send(stun.Method.ALLOCATE, attributes, key=key)


def login_request(key: str = KEY, dev_id: str = DEV) -> m.LoginRequest:
    return m.LoginRequest(dev_ver="1.0", dev_id=dev_id, dev_key=key, upnp_ip="0.0.0.0", local_ip="192.168.1.9",
                          rtsp_local_port=554, turn_relay_ip="127.0.0.9", rtsp_turn_relay_port=50000, net_type=1)


class LoginClient(Protocol):
    """Sends one LOGIN_REQ on connect; ``done`` fires with the LOGIN_RES's Result (None: closed unanswered)."""

    def __init__(self, request: m.LoginRequest) -> None:
        self.request = request
        self.decoder = FrameDecoder()
        self.done: Deferred[int | None] = Deferred()

    def connectionMade(self) -> None:
        assert self.request.CMD is not None
        self.transport.write(encode_frame(Frame(cmd=self.request.CMD, seq=1, data=self.request.to_xml())))

    def dataReceived(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            assert isinstance(frame, Frame)
            if not self.done.called:
                self.done.callback(m.parse(frame.data).result)  # type: ignore[attr-defined]
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(None)


async def login_over_tcp(port: int, request: m.LoginRequest, bind: str = "127.0.0.1") -> int | None:
    client = LoginClient(request)
    factory = ClientFactory()
    factory.protocol = lambda: client  # type: ignore[assignment]
    reactor.connectTCP("127.0.0.1", port, factory, bindAddress=(bind, 0))  # type: ignore[attr-defined]
    return await client.done


class FakeDevice:
    """One device connection over a StringTransport from *host* (the clock-driven tests)."""

    def __init__(self, gateway: Gateway, host: str, port: int = 40000) -> None:
        self.session = gateway.factory().buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        self.session.makeConnection(self.transport)
        self.decoder = FrameDecoder()

    async def login(self, key: str = KEY, dev_id: str = DEV) -> int:
        request = login_request(key, dev_id)
        assert request.CMD is not None
        self.session.dataReceived(encode_frame(Frame(cmd=request.CMD, seq=1, data=request.to_xml())))
        frames: list[Any] = []
        await until(lambda: frames.extend(self.decoder.feed(self.transport.value())) or frames, timeout=5)
        return int(m.parse(frames[0].data).result)  # type: ignore[attr-defined]


class GatewayKeyTests(TestCase):
    def setUp(self) -> Any:
        self.store = CountingStore(":memory:")
        self.addCleanup(self.store.close)
        return Deferred.fromCoroutine(self.store.import_devices([Device(dev_id=DEV, dev_key=KEY, model="IPC-1")]))

    async def test_i9_04_login_retry_race(self) -> None:
        """1,000 concurrent wrong-key LOGIN_REQ for one DevID from one address through the real gateway on
        loopback: the checks of one DevID run one at a time, so exactly one key is checked (Result 2) and
        the other 999 meet the §7.3.3 hold that failure started (Result 255, key never looked at)."""
        gateway = Gateway(self.store, reactor, GatewaySettings())
        port = reactor.listenTCP(0, gateway.factory(), backlog=LISTEN_BACKLOG,  # type: ignore[attr-defined]
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        results = await gatherResults([Deferred.fromCoroutine(login_over_tcp(number, login_request(f"wrong-{i}")))
                                       for i in range(1000)])
        counts = {code: results.count(code) for code in set(results)}
        self.assertEqual(counts, {2: 1, 255: 999})
        self.assertEqual(self.store.key_checks, 1)
        # The rightful camera, from its own address, is not refused for the stranger's failures.
        self.assertEqual(await login_over_tcp(number, login_request(), bind="127.0.0.2"), 0)
        self.assertEqual(self.store.key_checks, 2)
        await until(lambda: gateway.connections == 1)
        for session in list(gateway.sessions.values()):
            session.close("test over")
        await until(lambda: gateway.connections == 0)

    async def test_i9_05_lockout_is_no_weapon_at_the_gateway(self) -> None:
        """A stranger's wrong key does not block the camera: not from its last good address, nor from a
        new one.  The address that failed waits login_retry (§7.3.3 as the failing device's duty).
        Spread over many addresses, guesses meet the DevID's backoff; the last good address still logs
        in.  One address guessing many DevIDs meets its own backoff."""
        clock = Clock()
        clock.advance(1_700_000_000)
        guard = KeyGuard(clock, KeyGuardSettings(identity_free=5, identity_max=60, source_free=4, source_max=600))
        gateway = Gateway(self.store, clock, GatewaySettings())
        gateway.guard = guard
        camera, stranger = "198.51.100.7", "203.0.113.5"
        self.assertEqual(await FakeDevice(gateway, camera).login(), 0)
        self.assertEqual(await FakeDevice(gateway, stranger).login("guess"), 2)
        self.assertEqual(await FakeDevice(gateway, camera, 40001).login(), 0, "at once, from its address")
        self.assertEqual(await FakeDevice(gateway, "192.0.2.77").login(), 0, "from a new address too")
        # The stranger's address waits login_retry for this DevID; its key is not even looked at.
        checks = self.store.key_checks
        self.assertEqual(await FakeDevice(gateway, stranger).login(KEY), 255)
        self.assertEqual(self.store.key_checks, checks)
        clock.advance(180)
        self.assertEqual(await FakeDevice(gateway, stranger).login("guess-2"), 2)
        # Guesses from many addresses: after identity_free failures the DevID backs off for addresses it
        # does not know (1, 2, 4 … s, at most identity_max); its last good address is never refused.
        for i in range(4):
            self.assertEqual(await FakeDevice(gateway, f"203.0.113.{10 + i}").login("guess"), 2)
        self.assertEqual(await FakeDevice(gateway, "203.0.113.50").login(KEY), 255, "backoff, key not checked")
        self.assertEqual(await FakeDevice(gateway, "192.0.2.77", 40002).login(), 0, "a good address: trusted")
        self.assertEqual(await FakeDevice(gateway, camera, 40002).login(), 0)
        # A camera failing with its own (old) key at its own address keeps §7.3.3's wait at that address.
        self.assertEqual(await FakeDevice(gateway, camera, 40003).login("old-key"), 2)
        self.assertEqual(await FakeDevice(gateway, camera, 40004).login(), 255)
        clock.advance(180)
        self.assertEqual(await FakeDevice(gateway, camera, 40005).login(), 0)
        # One address spraying DevIDs: after source_free failures its checks back off exponentially.
        sprayer = "203.0.113.99"
        for i in range(4):
            self.assertEqual(await FakeDevice(gateway, sprayer).login("x", f"8110000010{i}"), 1)
        self.assertEqual(await FakeDevice(gateway, sprayer).login("x", "81100000200"), 255)
        clock.advance(1)
        self.assertEqual(await FakeDevice(gateway, sprayer).login("x", "81100000201"), 1)
        self.assertEqual(await FakeDevice(gateway, sprayer).login("x", "81100000202"), 255)
        clock.advance(2)
        self.assertEqual(await FakeDevice(gateway, sprayer).login("x", "81100000203"), 1)
        self.assertEqual(guard.refusal("dev:81100000204", sprayer)[0], 4.0)


class KeyGuardUnitTests(TestCase):
    def test_source_of(self) -> None:
        self.assertEqual(source_of("192.0.2.1:5000"), "192.0.2.1")
        self.assertEqual(source_of("192.0.2.1"), "192.0.2.1")
        self.assertEqual(source_of("2001:db8:1:2:3:4:5:6:5000"), "2001:db8:1:2::/64")
        self.assertEqual(source_of("[2001:db8:1:2::9]:5000"), "2001:db8:1:2::/64")
        self.assertEqual(source_of("2001:db8:1:2::9"), "2001:db8:1:2::/64")
        self.assertEqual(source_of("::ffff:192.0.2.1:5000"), "192.0.2.1")

    def test_memory_bounded(self) -> None:
        clock = Clock()
        guard = KeyGuard(clock, KeyGuardSettings(max_entries=1000))
        for i in range(20_000):
            attempt = Deferred.fromCoroutine(guard.attempt(f"dev:{i:011d}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:1"))
            self.assertTrue(attempt.called)
            attempt.result.failed()
        self.assertLessEqual(len(guard), 1000)
        self.assertEqual(guard._gates, {})


class TurnKeyTests(TestCase):
    async def test_i14_05_turn_one_opaque_401_and_throttled_guessing(self) -> None:
        """Raw STUN over UDP on loopback to the real TURN server with the platform's DeviceCredentials:
        an unknown DevID and a wrong DevKey get the same 401 (same reason, same attributes); 500 guesses
        sent at once from one address get their key checked only a few times, and the right key at the
        end is refused like a wrong one (not confirmed); the camera, from its own address, allocates; the
        failures count for the gateway's and /register's checks of the DevID from that address too."""
        store = CountingStore(":memory:")
        self.addCleanup(store.close)
        await store.import_devices([Device(dev_id=DEV, dev_key=KEY, model="IPC-1")])
        guard = KeyGuard(reactor)
        credentials = DeviceCredentials(store)
        credentials.guard = guard
        service = turn_service(TurnServerConfig(interface="127.0.0.1", port=0, realm=REALM, use_splice=False,
                                                relay_ports=(0, 0)),
                               ChainedLookup((credentials,)), reactor)
        service.server.guard = credentials  # what turn_service(..., guard=credentials) does
        service.startService()
        self.addCleanup(service.stopService)
        port = service.addresses["udp"][1]
        stranger = StunClient(("127.0.0.1", port))
        listening = reactor.listenUDP(0, stranger, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(listening.stopListening)
        challenge = await stranger.answer(stranger.allocate())
        self.assertEqual(challenge.attributes[stun.Attr.ERROR_CODE][0], 401)
        nonce = challenge.attributes[stun.Attr.NONCE]

        unknown = await stranger.answer(stranger.allocate("81199999999", "guess", nonce))
        wrong = await stranger.answer(stranger.allocate(DEV, "guess", nonce))
        for answer in (unknown, wrong):
            self.assertEqual(answer.attributes[stun.Attr.ERROR_CODE], (401, "Unauthorized"))
        self.assertEqual(sorted(unknown.attributes), sorted(wrong.attributes))
        self.assertNotIn(stun.Attr.MESSAGE_INTEGRITY, wrong.attributes)

        lookups = store.lookups
        answers = []
        for batch in range(10):  # 50 at a time: more would overflow the client's socket buffer on loopback
            tids = [stranger.allocate(DEV, f"guess-{batch}-{i}", nonce) for i in range(50)]
            answers += [await stranger.answer(tid) for tid in tids]
        answers.append(await stranger.answer(stranger.allocate(DEV, KEY, nonce)))
        self.assertEqual({a.attributes[stun.Attr.ERROR_CODE] for a in answers}, {(401, "Unauthorized")},
                         "the right key, sent after the guesses, is refused unchecked like them")
        self.assertLessEqual(store.lookups - lookups, 3, "a few keys checked, not 501")
        # The same DevID's checks at the gateway and /register from this address are held too.
        self.assertGreater(guard.refusal(f"dev:{DEV}", "127.0.0.1")[0], 0)

        camera = StunClient(("127.0.0.1", port))
        listening2 = reactor.listenUDP(0, camera, interface="127.0.0.2")  # type: ignore[attr-defined]
        self.addCleanup(listening2.stopListening)
        granted = await camera.answer(camera.allocate(DEV, KEY, nonce))
        self.assertEqual(granted.msg_class, stun.Class.SUCCESS, granted.attributes.get(stun.Attr.ERROR_CODE))
        await service.stopService()


class AccountKeyTests(TestCase):
    MOBILE, PASSWORD = "13300000001", "secret1"

    async def test_i9_05_lockout_is_no_weapon_for_accounts(self) -> None:
        """SOAP login and the RTSP proxy share the account's lock, but a stranger cannot turn it against the
        owner: ten wrong passwords from one address add only pair_free to the account's count (not locked,
        the owner logs in from a new address); strangers on several addresses do lock it for addresses it
        does not know, while the owner's addresses (where it logged in before) still log in and play."""
        clock = Clock()
        clock.advance(1_700_000_000)
        store = SQLiteStore(":memory:")
        self.addCleanup(store.close)
        sms = RecordingSmsSender()
        accounts = AccountService(store, clock, AccountSettings(digest_realm=RTSP_REALM), sms_sender=sms,
                                  hasher=HASHER, run_in_thread=inline)
        accounts.guard = KeyGuard(clock)
        rtsp = AccountAuthenticator(accounts, ("digest",), RTSP_REALM, clock=clock, peer_limit=0)
        self.assertEqual(await accounts.request_sms_code(self.MOBILE, 0, "198.51.100.7:1"), 0)
        self.assertEqual(await accounts.register(self.MOBILE, self.PASSWORD, sms.last_code(self.MOBILE),
                                                 "198.51.100.7:1"), 0)

        async def login(password: str, peer: str) -> int:
            """A SOAP login; the clock runs through any slow-down."""
            attempt = Deferred.fromCoroutine(accounts.login(self.MOBILE, password, "1.0", peer))
            for _ in range(1000):
                if attempt.called:
                    break
                clock.advance(1)
                await deferLater(reactor, 0.001, lambda: None)
            return (await attempt).result

        owner = "198.51.100.7:4000"
        self.assertEqual(await login(self.PASSWORD, owner), 0)
        for n in range(10):
            self.assertEqual(await login(f"guess-{n}", "203.0.113.5:4000"), 2)
        self.assertEqual(accounts.locked_for(self.MOBILE), 0, "one address cannot lock the account")
        self.assertEqual(await login(self.PASSWORD, "192.0.2.77:4000"), 0, "the owner, from a new address")
        for host in ("203.0.113.6", "203.0.113.7", "203.0.113.8", "203.0.113.9"):
            for n in range(3):
                self.assertEqual(await login(f"guess-{n}", f"{host}:4000"), 2)
        self.assertGreater(accounts.locked_for(self.MOBILE), 0, "strangers on many addresses lock it…")
        self.assertEqual(await login(self.PASSWORD, "192.0.2.99:4000"), 2, "…for addresses it does not know")
        self.assertEqual(await login(self.PASSWORD, owner), 0, "the owner's usual address logs in")
        self.assertEqual(await login(self.PASSWORD, "192.0.2.77:5000"), 0, "and so does its newer one")
        nonce = rtsp.nonces.issue()
        header = digest_header(nonce, self.PASSWORD, self.MOBILE)
        self.assertEqual((await rtsp.check("DESCRIBE", header, "198.51.100.7:4001")).account, self.MOBILE,
                         "the owner's player plays")
        self.assertIsNone((await rtsp.check("DESCRIBE", header, "192.0.2.100:4001")).account,
                          "a player from an unknown address meets the lock")

    async def test_i9_05_change_password_guesses_are_throttled(self) -> None:
        """ChangePassword's old-password check goes through the guard too: a stolen session cannot guess the
        password at speed (after pair_free wrong ones, even the right one is refused for a while)."""
        clock = Clock()
        clock.advance(1_700_000_000)
        store = SQLiteStore(":memory:")
        self.addCleanup(store.close)
        sms = RecordingSmsSender()
        accounts = AccountService(store, clock, AccountSettings(), sms_sender=sms, hasher=HASHER,
                                  run_in_thread=inline, guard=KeyGuard(clock))
        peer = "203.0.113.5:4000"
        self.assertEqual(await accounts.request_sms_code(self.MOBILE, 0, peer), 0)
        self.assertEqual(await accounts.register(self.MOBILE, self.PASSWORD, sms.last_code(self.MOBILE), peer), 0)
        session = (await accounts.login(self.MOBILE, self.PASSWORD, "1.0", peer)).session
        assert session is not None
        for n in range(3):
            self.assertEqual(await accounts.change_password(session, f"guess-{n}", "new-secret", peer), 3)
        self.assertEqual(await accounts.change_password(session, self.PASSWORD, "new-secret", peer), 3)
        clock.advance(1)
        self.assertEqual(await accounts.change_password(session, self.PASSWORD, "new-secret", peer), 0)


class RegisterKeyTests(TestCase):
    async def test_i9_06_register_is_no_devkey_oracle(self) -> None:
        """POST /register over real HTTP on loopback: a stranger guessing a registered camera's DevKey gets
        a few keys checked (Result 2), then Result 255 for every further guess, the right key included, in
        the same answer; the guard is the gateway's, so its login of the DevID is held too, while the
        camera's own address (where it registered) logs in."""
        platform = PlatformService(parse_config(registration_config("closed")), SQLiteStore(":memory:"),
                                   reactor)
        platform.startService()
        self.addCleanup(platform.stopService)
        await platform.store.import_devices([Device(dev_id=DEV, dev_key=KEY, model="IPC-1")])
        guard_clock = Clock()  # the guard's time stands still: its backoff cannot run out during the test
        guard_clock.advance(reactor.seconds())  # type: ignore[attr-defined]
        platform.keyguard.clock = guard_clock

        def request(key: str) -> m.RegisterRequest:
            return m.RegisterRequest(manufacturer_no="811", mode="IPC-1", dev_type=1, dev_id=DEV, dev_key=key)

        camera = await platform.registrar.register(request(KEY), "127.0.0.2:5000")
        self.assertEqual(camera.result, 0)
        client = http_client()
        url = f"http://127.0.0.1:{platform.port_of('http')}/register"

        async def register(key: str) -> m.RegisterResponse:
            response = await client.post(url, data=request(key).to_xml(), headers={b"Content-Type": [b"text/xml"]})
            self.assertEqual(response.code, 200)
            return m.RegisterResponse.from_xml(await response.content())

        answers = [await register(f"guess-{i}") for i in range(30)]
        results = [a.result for a in answers]
        self.assertEqual(results, [2] * 3 + [255] * 27, "three keys checked, then refused unchecked")
        right = await register(KEY)
        self.assertEqual(attrs.evolve(right, time=""), attrs.evolve(answers[-1], time=""),
                         "the right key gets the very answer of a wrong one")
        gateway = platform.port_of("gateway")
        self.assertEqual(await login_over_tcp(gateway, login_request(), bind="127.0.0.1"), 255)
        self.assertEqual(await login_over_tcp(gateway, login_request(), bind="127.0.0.2"), 0)


class KeyGuardBudgetTests(TestCase):
    """The source's budget with checks in flight (all on a task.Clock, the 'store' answers by hand)."""

    def start(self, guard: KeyGuard, n: int, peer: str = "203.0.113.5:1") -> list[Deferred[Any]]:
        return [Deferred.fromCoroutine(guard.attempt(f"dev:8110000{i:04d}", peer)) for i in range(n)]

    def test_parallel_guesses_over_many_identities(self) -> None:
        """1,000 guesses at once over 1,000 DevIDs from one address: source_free start, the others wait;
        as those fail the source backs off and every waiting one is refused unchecked."""
        guard = KeyGuard(Clock(), KeyGuardSettings(source_free=10))
        attempts = self.start(guard, 1000)
        started = [d.result for d in attempts if d.called]
        self.assertEqual(len(started), 10)
        for attempt in started:
            attempt.failed()
        self.assertTrue(all(d.called for d in attempts))
        self.assertEqual(sum(1 for d in attempts if d.result.refused), 990)
        self.assertEqual((guard._gates, guard._queued), ({}, {}))

    def test_a_fleet_behind_one_address_is_not_refused(self) -> None:
        """200 new cameras behind one NAT at once, all with the right key: they wait their turn in the
        source's budget but none is refused."""
        guard = KeyGuard(Clock(), KeyGuardSettings(source_free=10))
        attempts = self.start(guard, 200)
        done = 0
        while done < 200:
            running = [d.result for d in attempts if d.called and d.result._open]
            self.assertTrue(running)
            for attempt in running:
                self.assertFalse(attempt.refused)
                attempt.succeeded()
                done += 1
        self.assertEqual((guard._gates, guard._queued), ({}, {}))


class TxturnGuardHookTests(TestCase):
    """txturn's AuthGuard hook on its own (no globaleye): fake transports, txturn.testing's harness."""

    def test_guard_sees_every_check_and_its_refusal_is_the_same_401(self) -> None:
        from txturn.testing import Harness, client, code

        outcomes: list[tuple[str, str]] = []

        class Ticket:
            def __init__(self, user: str) -> None:
                self.user = user

            def succeeded(self) -> None:
                outcomes.append((self.user, "ok"))

            def failed(self) -> None:
                outcomes.append((self.user, "failed"))

            def done(self) -> None:
                pass

        class TwoStrikes:
            async def admit(self, username: str, address: tuple[str, int]) -> Ticket | None:
                return None if outcomes.count((username, "failed")) >= 2 else Ticket(username)

        h = Harness(self)
        h.server.guard = TwoStrikes()
        unknown = h.allocate(client(1), user="mallory", password="x")
        wrong = h.allocate(client(2), user="alice", password="wrong")
        self.assertEqual(unknown.attributes[stun.Attr.ERROR_CODE], wrong.attributes[stun.Attr.ERROR_CODE])
        self.assertEqual(wrong.attributes[stun.Attr.ERROR_CODE], (401, "Unauthorized"))
        self.assertEqual(code(h.allocate(client(3), user="alice", password="wrong")), 401)
        refused = h.allocate(client(4), user="alice")  # the right password, refused unchecked
        self.assertEqual(refused.attributes[stun.Attr.ERROR_CODE], (401, "Unauthorized"))
        self.assertEqual(sorted(refused.attributes), sorted(wrong.attributes))
        self.assertEqual(outcomes, [("mallory", "failed"), ("alice", "failed"), ("alice", "failed")])
        self.assertEqual(code(h.allocate(client(5), user="bob")), 200)
        self.assertEqual(outcomes[-1], ("bob", "ok"))
