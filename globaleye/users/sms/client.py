"""Sending SMS: the :class:`Sender` interface, a log-only sender, and an SMGP 3.0 client.

The platform sends two kinds of SMS (spec §8.1 password/verification codes, and
notices): short, low-volume, and a user is waiting on each.  So the client is
built for "one message, soon, or a clear error", not for bulk throughput:

- one long-lived TCP session, logged in with the MD5 authenticator, and the
  server's authenticator checked in return (a gateway that cannot prove it knows
  the shared secret is not one we hand phone numbers to);
- every Submit gets its own Deferred matched by SequenceID, a timeout from the
  reactor clock, and fails at once when the session drops: a message whose
  Submit_Resp never came is reported as failed, never silently retried (it may
  have been delivered; the caller decides);
- a send window bounds outstanding Submits (gateways refuse or throttle SPs that
  flood them);
- Active_Test keep-alive when idle, answering the gateway's own Active_Test,
  Deliver and Exit; a session missing N answers in a row is declared dead;
- reconnect with exponential backoff after any loss or refused login;
- long text goes as UCS-2 in TP_udhi concatenated parts (67 characters each) so
  the handset shows one message; ``long_mode="split"`` sends independent
  70-character messages for gateways that reject UDH.

:class:`LogSender` is the embedded default: it writes the message to
twisted.logger, so ``globaleye demo`` needs no gateway.
"""

from __future__ import annotations

import random
import re
from typing import Protocol as TypingProtocol
from typing import cast

import attrs
from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredSemaphore,
    succeed,
)
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTCP, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from globaleye.users.sms import smgp
from globaleye.util.clock import BEIJING
from txturn.logsummary import LogSummary

#: Seconds over which repeated protocol errors of one session are summarised in one line.
SUMMARY_INTERVAL = 60.0


class SMSError(Exception):
    """A message was not accepted by the gateway; the text says why."""


class SMSUnavailable(SMSError):
    """No logged-in gateway session within the connect timeout."""


class LoginRefused(SMSError):
    """The gateway refused our login, or could not prove it knows the shared secret."""


class SubmitRefused(SMSError):
    def __init__(self, status: int) -> None:
        super().__init__(f"gateway refused the Submit: status {smgp.status_text(status)}")
        self.status = status


class RequestTimeout(SMSError):
    """No response to a request within its timeout."""


class SessionLost(SMSError):
    """The session ended before the response came; the message may or may not be sent."""


class Sender(TypingProtocol):
    """What the platform needs from SMS: send *text* to *mobile* or raise :class:`SMSError`."""

    async def send(self, mobile: str, text: str) -> None: ...


class LogSender:
    """Writes each message to twisted.logger instead of sending it (demo and development)."""

    log = Logger()

    async def send(self, mobile: str, text: str) -> None:
        self.log.info("SMS (log only) to {mobile}: {text}", mobile=mobile, text=text)


_MOBILE = re.compile(r"[0-9]{3,21}")


@attrs.frozen(kw_only=True)
class SMGPSettings:
    """Everything the client needs; the [sms] section of the INI file maps onto this."""

    host: str = "127.0.0.1"
    port: int = 8890
    client_id: str = attrs.field(validator=attrs.validators.max_len(8))
    secret: str
    src_term_id: str = attrs.field(validator=attrs.validators.max_len(21))
    service_id: str = attrs.field(default="", validator=attrs.validators.max_len(10))
    login_mode: int = smgp.LoginMode.SEND
    need_report: bool = False
    priority: int = 1
    connect_timeout: float = 10.0
    submit_timeout: float = 30.0
    active_test_interval: float = 60.0
    active_test_missed: int = 3
    window: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    reconnect_initial: float = 1.0
    reconnect_max: float = 60.0
    long_mode: str = attrs.field(default="udhi", validator=attrs.validators.in_(["udhi", "split"]))
    max_parts: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    verify_server: bool = True


@attrs.define
class _Pending:
    expected: type
    deferred: Deferred[smgp.PDU]
    timer: IDelayedCall | None


class SMGPClientProtocol(Protocol):
    """One SMGP session, client side: login, requests matched by SequenceID, keep-alive."""

    log = Logger()

    def __init__(self, settings: SMGPSettings, clock: IReactorTime) -> None:
        self.settings = settings
        self.clock = clock
        self._decoder = smgp.StreamDecoder()
        self._seq = 0
        self._pending: dict[int, _Pending] = {}
        self._keepalive: IDelayedCall | None = None
        self.unanswered_active_tests = 0
        self.is_logged_in = False
        self.is_connected = False
        self.peer = "?"
        #: Fires (None) once logged in; fails with LoginRefused, RequestTimeout or SessionLost.
        self.logged_in: Deferred[None] = Deferred(self._cancel_login)
        #: Fires (None) when the connection is gone, whatever the reason; never fails.
        self.lost: Deferred[None] = Deferred()
        #: A hostile or broken gateway's flood of bad PDUs: one line per kind and minute.
        self.protocol_errors = LogSummary(self.log, clock, interval=SUMMARY_INTERVAL, level=LogLevel.warn,
                                          name="SMGP protocol errors")
        #: Deliver notices: each logged, but at most 50 a minute (a flood is counted in one line).
        self.delivers = LogSummary(self.log, clock, interval=SUMMARY_INTERVAL, max_keys=50,
                                   name="SMGP Deliver notices")
        #: True while reading is paused because the gateway does not read our answers.
        self.reading_paused = False

    # ----------------------------------------------------------------- plumbing

    def _cancel_login(self, _d: Deferred[None]) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _next_seq(self) -> int:
        self._seq = self._seq % 0xFFFFFFFF + 1  # 1..2^32-1, then wraps
        return self._seq

    def _write(self, pdu: smgp.PDU) -> None:
        assert self.transport is not None
        self.transport.write(smgp.encode(pdu))

    def _request(self, pdu: smgp.PDU, timeout: float | None) -> Deferred[smgp.PDU]:
        """Send *pdu* (its sequence_id already set) and wait for the matching response."""
        if not self.is_connected:
            raise SessionLost(f"SMGP {self.peer}: not connected")
        d: Deferred[smgp.PDU] = Deferred()
        seq = pdu.sequence_id
        timer = None
        if timeout is not None:
            timer = self.clock.callLater(timeout, self._timed_out, seq, type(pdu).__name__, timeout)
        self._pending[seq] = _Pending(smgp.RESPONSE_OF[type(pdu)], d, timer)
        self._write(pdu)
        return d

    def _timed_out(self, seq: int, name: str, timeout: float) -> None:
        pending = self._pending.pop(seq, None)
        if pending is not None:
            self.log.warn(
                "SMGP {peer}: no response to {name} seq={seq} within {timeout}s",
                peer=self.peer,
                name=name,
                seq=seq,
                timeout=timeout,
            )
            pending.deferred.errback(RequestTimeout(f"no response to {name} within {timeout}s"))

    # ------------------------------------------------------------------ session

    def connectionMade(self) -> None:
        self.is_connected = True
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.peer = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        # Every PDU the gateway sends may make us write an answer (Active_Test_Resp,
        # Deliver_Resp): when the gateway stops reading them, the transport's write buffer
        # passes its bound and we stop reading too, so its flood waits in its own buffers,
        # not in our memory.  A gateway that never reads again misses our Active_Tests'
        # answers and is dropped by the keep-alive.
        self.transport.registerProducer(_ReadPauser(self), True)  # type: ignore[union-attr]
        s = self.settings
        timestamp = smgp.timestamp_of(self.clock.seconds(), BEIJING)
        self._auth_client = smgp.authenticator_client(s.client_id, s.secret, timestamp)
        login = smgp.Login(
            sequence_id=self._next_seq(),
            client_id=s.client_id,
            authenticator=self._auth_client,
            login_mode=s.login_mode,
            timestamp=timestamp,
        )
        self._request(login, s.connect_timeout).addCallbacks(
            self._login_answered, self._login_failed
        )

    def _login_answered(self, resp: smgp.PDU) -> None:
        assert isinstance(resp, smgp.LoginResp)
        if resp.status != 0:
            self._refuse_login(f"gateway refused login: status {smgp.status_text(resp.status)}")
            return
        expected = smgp.authenticator_server(0, self._auth_client, self.settings.secret)
        if self.settings.verify_server and resp.authenticator != expected:
            self._refuse_login("gateway's AuthenticatorServer does not match the shared secret")
            return
        self.is_logged_in = True
        self.log.info(
            "SMGP {peer}: logged in as {client_id} (server version {version:#x})",
            peer=self.peer,
            client_id=self.settings.client_id,
            version=resp.server_version,
        )
        self._schedule_keepalive()
        if not self.logged_in.called:
            self.logged_in.callback(None)

    def _refuse_login(self, reason: str) -> None:
        self.log.warn("SMGP {peer}: login refused: {reason}", peer=self.peer, reason=reason)
        if not self.logged_in.called:
            self.logged_in.errback(LoginRefused(reason))
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _login_failed(self, failure: Failure) -> None:
        if not self.logged_in.called:
            self.logged_in.errback(failure)
        if self.is_connected:
            self.transport.abortConnection()  # type: ignore[union-attr]

    def _schedule_keepalive(self) -> None:
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
        self._keepalive = self.clock.callLater(
            self.settings.active_test_interval, self._keepalive_tick
        )

    def _keepalive_tick(self) -> None:
        """Probe the gateway; any PDU from it counts as the answer (resets the counter)."""
        self._keepalive = None
        if self.unanswered_active_tests >= self.settings.active_test_missed:
            self.log.warn(
                "SMGP {peer}: closing session: {n} Active_Test unanswered",
                peer=self.peer,
                n=self.unanswered_active_tests,
            )
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        self.unanswered_active_tests += 1
        d = self._request(smgp.ActiveTest(sequence_id=self._next_seq()), None)
        d.addErrback(lambda _f: None)  # its absence is counted, its loss is connectionLost's
        self._schedule_keepalive()

    def submit(self, pdu: smgp.Submit) -> Deferred[smgp.SubmitResp]:
        """Send one Submit; fires with the Submit_Resp (whatever its Status)."""
        if not self.is_logged_in:
            raise SessionLost(f"SMGP {self.peer}: session is not logged in")
        pdu = attrs.evolve(pdu, sequence_id=self._next_seq())
        return self._request(pdu, self.settings.submit_timeout)  # type: ignore[return-value]

    def exit(self, timeout: float = 2.0) -> Deferred[None]:
        """Say goodbye (Exit), wait briefly for Exit_Resp, then close."""
        if not self.is_connected:
            return succeed(None)
        d = self._request(smgp.Exit(sequence_id=self._next_seq()), timeout)
        d.addErrback(lambda _f: None)
        d.addBoth(self._close_after_exit)
        done: Deferred[None] = Deferred()
        self.lost.addBoth(lambda _r: done.callback(None))
        return done

    def _close_after_exit(self, _result: object) -> None:
        if self.is_connected:
            self.transport.loseConnection()  # type: ignore[union-attr]

    # ------------------------------------------------------------------ inbound

    def dataReceived(self, data: bytes) -> None:
        self._decoder.feed(data)
        while self.is_connected:
            try:
                pdu = self._decoder.next_pdu()
            except smgp.SMGPError as e:
                if self._decoder.broken is not None:
                    self.log.warn(
                        "SMGP {peer}: closing session: {reason}", peer=self.peer, reason=e
                    )
                    self.transport.abortConnection()  # type: ignore[union-attr]
                    return
                self.protocol_errors.event(
                    "malformed", f"SMGP {self.peer}: dropped malformed PDUs",
                    "SMGP {peer}: dropped a malformed PDU: {reason}", peer=self.peer, reason=e
                )
                continue
            if pdu is None:
                return
            self.unanswered_active_tests = 0
            self._dispatch(pdu)

    def _dispatch(self, pdu: smgp.PDU) -> None:
        if isinstance(pdu, smgp.ActiveTest):
            self._write(smgp.ActiveTestResp(sequence_id=pdu.sequence_id))
        elif isinstance(pdu, smgp.Deliver):
            self._write(smgp.DeliverResp(sequence_id=pdu.sequence_id, msg_id=pdu.msg_id, status=0))
            self.delivers.event(
                pdu.msg_id, f"SMGP {self.peer}: Deliver (msg id {pdu.msg_id.hex()})",
                "SMGP {peer}: Deliver {kind} from {src} (msg id {msg_id})",
                peer=self.peer,
                kind="status report" if pdu.is_report else "message",
                src=pdu.src_term_id,
                msg_id=pdu.msg_id.hex(),
            )
        elif isinstance(pdu, smgp.Exit):
            self.log.info("SMGP {peer}: gateway sent Exit; closing", peer=self.peer)
            self._write(smgp.ExitResp(sequence_id=pdu.sequence_id))
            self.transport.loseConnection()  # type: ignore[union-attr]
        elif isinstance(
            pdu, smgp.LoginResp | smgp.SubmitResp | smgp.ActiveTestResp | smgp.ExitResp
        ):
            pending = self._pending.get(pdu.sequence_id)
            if pending is None or not isinstance(pdu, pending.expected):
                self.protocol_errors.event(
                    "unmatched", f"SMGP {self.peer}: ignored responses to no outstanding request",
                    "SMGP {peer}: ignoring {name} seq={seq}: no such request outstanding",
                    peer=self.peer,
                    name=type(pdu).__name__,
                    seq=pdu.sequence_id,
                )
                return
            del self._pending[pdu.sequence_id]
            if pending.timer is not None and pending.timer.active():
                pending.timer.cancel()
            pending.deferred.callback(pdu)
        else:
            self.protocol_errors.event(
                "unexpected", f"SMGP {self.peer}: ignored unexpected PDUs",
                "SMGP {peer}: ignoring unexpected {name} (RequestID {rid:#010x}) seq={seq}",
                peer=self.peer,
                name=type(pdu).__name__,
                rid=smgp.request_id_of(pdu),
                seq=pdu.sequence_id,
            )

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        self.is_connected = False
        self.is_logged_in = False
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
        pending, self._pending = self._pending, {}
        why = reason.getErrorMessage()
        for item in pending.values():
            if item.timer is not None and item.timer.active():
                item.timer.cancel()
            item.deferred.errback(SessionLost(f"SMGP session to {self.peer} lost: {why}"))
        if not self.logged_in.called:
            self.logged_in.errback(
                SessionLost(f"SMGP session to {self.peer} lost before login: {why}")
            )
        self.protocol_errors.flush()
        self.delivers.flush()
        self.log.info("SMGP {peer}: connection closed: {reason}", peer=self.peer, reason=why)
        self.lost.callback(None)

    def pause_reading(self) -> None:
        if not self.reading_paused and self.is_connected:
            self.reading_paused = True
            self.protocol_errors.event(
                "paused", f"SMGP {self.peer}: paused reading, gateway not reading our answers",
                "SMGP {peer}: gateway does not read our answers; pausing reading until it does", peer=self.peer)
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        if self.reading_paused and self.is_connected:
            self.reading_paused = False
            self.transport.resumeProducing()  # type: ignore[union-attr]


@implementer(IPushProducer)
class _ReadPauser:
    """Registered with a session's transport: its write buffer being full pauses reading."""

    def __init__(self, session: SMGPClientProtocol) -> None:
        self.session = session

    def pauseProducing(self) -> None:  # noqa: N802
        self.session.pause_reading()

    def resumeProducing(self) -> None:  # noqa: N802
        self.session.resume_reading()

    def stopProducing(self) -> None:  # noqa: N802
        pass


class _ClientFactory(Factory):
    def __init__(self, settings: SMGPSettings, clock: IReactorTime) -> None:
        self.settings = settings
        self.clock = clock

    def buildProtocol(self, addr: object) -> SMGPClientProtocol:
        return SMGPClientProtocol(self.settings, self.clock)


class SMGPSender(Service):
    """The :class:`Sender` backed by an SMGP gateway; a Twisted service (start/stop).

    Keeps one session up, reconnecting with backoff; :meth:`send` waits up to
    ``connect_timeout`` for a logged-in session, then submits every part of the text.
    """

    log = Logger()

    def __init__(
        self,
        settings: SMGPSettings,
        reactor: IReactorTCP | None = None,
        clock: IReactorTime | None = None,
        *,
        jitter: float = 0.1,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor  # type: ignore[assignment]
        self.settings = settings
        self.reactor = reactor
        self.clock: IReactorTime = clock if clock is not None else reactor  # type: ignore[assignment]
        self.jitter = jitter
        self.endpoint = TCP4ClientEndpoint(
            reactor, settings.host, settings.port, timeout=settings.connect_timeout
        )
        self._factory = _ClientFactory(settings, self.clock)
        self._window = DeferredSemaphore(settings.window)
        self._session: SMGPClientProtocol | None = None
        self._waiters: list[Deferred[SMGPClientProtocol]] = []
        self._loop: Deferred[None] | None = None
        self._reference = random.randrange(256)
        #: Why the last connection attempt failed (None while a session is up).
        self.last_failure: str | None = "not started"
        #: Logged-in sessions established so far (tests watch reconnects with it).
        self.sessions = 0

    @property
    def peer(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # --------------------------------------------------------------- lifecycle

    def startService(self) -> None:
        super().startService()
        self.last_failure = "connecting"
        self._loop = Deferred.fromCoroutine(self._run())
        self._loop.addErrback(lambda f: f.trap(CancelledError))

    async def _stop(self) -> None:
        session = self._session
        if session is not None:
            await session.exit()
        if self._loop is not None:
            self._loop.cancel()
            await self._loop
        for waiter in self._waiters[:]:
            waiter.errback(SMSUnavailable("SMS sender stopped"))
        self._waiters.clear()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    def _backoff(self, attempt: int) -> float:
        s = self.settings
        delay = min(s.reconnect_initial * 2 ** min(attempt - 1, 30), s.reconnect_max)
        return delay * (1 + random.uniform(0, self.jitter))

    async def _run(self) -> None:
        attempt = 0
        while self.running:
            try:
                proto = cast(SMGPClientProtocol, await self.endpoint.connect(self._factory))
                await proto.logged_in
            except CancelledError:
                return
            except Exception as e:
                attempt += 1
                self.last_failure = str(e) or type(e).__name__
                delay = self._backoff(attempt)
                self.log.warn(
                    "SMGP {peer}: no session ({reason}); retry {attempt} in {delay:.2f}s",
                    peer=self.peer,
                    reason=self.last_failure,
                    attempt=attempt,
                    delay=delay,
                )
                await deferLater(self.clock, delay, lambda: None)
                continue
            attempt = 0
            self.last_failure = None
            self.sessions += 1
            self._session = proto
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(proto)
            await proto.lost
            self._session = None
            self.last_failure = "session lost"
            if self.running:
                delay = self._backoff(1)
                self.log.warn(
                    "SMGP {peer}: session lost; reconnecting in {delay:.2f}s",
                    peer=self.peer,
                    delay=delay,
                )
                await deferLater(self.clock, delay, lambda: None)

    # ------------------------------------------------------------------ sending

    def _wait_session(self) -> Deferred[SMGPClientProtocol]:
        if self._session is not None and self._session.is_logged_in:
            return succeed(self._session)

        def forget(d: Deferred[SMGPClientProtocol]) -> None:
            if d in self._waiters:
                self._waiters.remove(d)

        d: Deferred[SMGPClientProtocol] = Deferred(forget)
        self._waiters.append(d)
        d.addTimeout(self.settings.connect_timeout, self.clock)
        return d

    def parts(self, text: str) -> list[smgp.Part]:
        self._reference = (self._reference + 1) & 0xFF
        return smgp.split_ucs2(
            text, udhi=self.settings.long_mode == "udhi", reference=self._reference
        )

    async def send(self, mobile: str, text: str) -> None:
        """Submit *text* to *mobile*; returns once the gateway accepted every part."""
        if not _MOBILE.fullmatch(mobile):
            raise SMSError(f"not a mobile number: {mobile!r}")
        if not self.running:
            raise SMSUnavailable("SMS sender is not running")
        try:
            parts = self.parts(text)
        except smgp.SMGPError as e:
            raise SMSError(str(e)) from None
        if len(parts) > self.settings.max_parts:
            raise SMSError(f"text needs {len(parts)} parts, the limit is {self.settings.max_parts}")
        for number, part in enumerate(parts, 1):
            resp = await self._submit_part(mobile, part)
            self.log.info(
                "SMGP {peer}: SMS to {mobile} part {n}/{total} accepted, MsgID {msg_id}",
                peer=self.peer,
                mobile=mobile,
                n=number,
                total=len(parts),
                msg_id=resp.msg_id.hex(),
            )

    async def _submit_part(self, mobile: str, part: smgp.Part) -> smgp.SubmitResp:
        s = self.settings
        await self._window.acquire()
        try:
            try:
                session = await self._wait_session()
            except DeferredTimeout:
                raise SMSUnavailable(
                    f"no SMGP session to {self.peer} within {s.connect_timeout}s: {self.last_failure}"
                ) from None
            submit = smgp.Submit(
                need_report=int(s.need_report),
                priority=s.priority,
                service_id=s.service_id,
                msg_format=smgp.MsgFormat.UCS2,
                src_term_id=s.src_term_id,
                dest_term_ids=(mobile,),
                msg_content=part.content,
                tlvs=part.tlvs,
            )
            resp = await session.submit(submit)
        finally:
            self._window.release()
        if resp.status != 0:
            self.log.warn(
                "SMGP {peer}: SMS to {mobile} refused: status {status}",
                peer=self.peer,
                mobile=mobile,
                status=smgp.status_text(resp.status),
            )
            raise SubmitRefused(resp.status)
        return resp
