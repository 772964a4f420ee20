"""The gateway's application logic: who may log in, what is stored, commands to devices.

:class:`Gateway` owns the table of online sessions (one per DevID: a second login
replaces the first), the decisions on each device request of §7.5 (login with the
3-minute retry rule, heartbeats kept in memory, exception and picture reports
stored, one-time HashTokens consumed) and the one API the rest of the platform
uses to talk to a camera::

    response = await gateway.command(dev_id, PtzRequest(...))

which fails with :class:`DeviceOffline`, :class:`~globaleye.device.messaging.CommandTimeout`
or :class:`~globaleye.device.messaging.SessionLost` rather than ever hanging.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any, Protocol

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from globaleye.device.gateway.session import DeviceSession
from globaleye.device.messaging import CommandError
from globaleye.device.protocol import messages as m
from globaleye.guard.keyguard import KeyGuard
from globaleye.store import (
    DEVICE_OK,
    DEVICE_UNKNOWN,
    DeviceAbility,
    DeviceAddresses,
    ExceptionRecord,
    PictureRecord,
    Store,
)
from globaleye.util.clock import protocol_time
from txturn.logsummary import LogSummary

DEV_ID = re.compile(r"^[0-9]{11}$")

# LOGIN_RES Result codes (§7.5.1).
LOGIN_OK, LOGIN_UNKNOWN_DEVICE, LOGIN_BAD_KEY, LOGIN_BAD_VERSION, LOGIN_OTHER = 0, 1, 2, 3, 255
# Result of other responses: 0 success, anything else an error (§7.5.4, §7.5.5, §7.5.23).
RESULT_OK, RESULT_FAILED, RESULT_OTHER = 0, 1, 255

#: What a store write raises when the disk is full or failing.
STORE_FAILURES: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)

Handled = tuple[m.Message | None, bool]  # (response to send, close the session afterwards)


class ReportSink(Protocol):
    """Where the gateway tells the rest of the platform, as they happen, of a device's alarm (34H,
    §7.5.4) and of its coming online or going offline (the live pages).  The composition root passes
    the application layer's :class:`globaleye.app.events.EventBoard`; the gateway imports nothing of
    ``app/`` (the layers).  Both calls are synchronous and must not raise."""

    def alarm(self, dev_id: str, channel: int, alarm_type: int, text: str, when: float) -> None: ...

    def presence(self, dev_id: str, online: bool, when: float) -> None: ...


class CloudAccounts(Protocol):
    """Who gives each device its own cloud storage account (issue 12): LOGIN_RES's EURL, EAccount and
    EPassword (§7.5.1) for *dev_id* — the storage role's public URL and the device's own S3 key — or
    None to give the configured ``[gateway] cloud_url/cloud_account/cloud_password``.  The composition
    root passes the application layer's cloud service; the gateway imports nothing of ``app/``."""

    async def cloud_account(self, dev_id: str) -> tuple[str, str, str] | None: ...


class DeviceOffline(CommandError):
    """The device has no session with this gateway."""


@attrs.frozen
class GatewaySettings:
    heartbeat_timeout: float = 360.0
    login_timeout: float = 30.0
    login_retry: float = 180.0
    command_timeout: float = 10.0
    cloud_url: str = ""
    cloud_account: str = ""
    cloud_password: str = ""
    reports_per_minute: int = 30  # exception reports + picture notices stored per device per minute (0: none)
    report_max_chars: int = 512  # longest ExceptionDesc / FileName stored (longer: truncated)


REPORT_WINDOW = 60.0  # seconds of the per-device report limit


@attrs.define
class ReportBudget:
    """One device's exception reports and picture notices in the current minute."""

    window_start: float
    stored: int = 0
    dropped: int = 0


@attrs.define
class LiveState:
    """What the gateway knows of an online device without asking the database."""

    addresses: DeviceAddresses
    dev_ver: str = ""
    cur_video_num: int = 0


class Gateway:
    log = Logger()

    def __init__(self, store: Store, clock: IReactorTime, settings: GatewaySettings | None = None,
                 guard: KeyGuard | None = None, reports: ReportSink | None = None,
                 cloud: CloudAccounts | None = None) -> None:
        self.store = store
        #: Each device's own cloud account for LOGIN_RES (None: the configured global one for all).
        self.cloud = cloud
        #: Who hears of alarms and online changes as they happen (None: nobody, they are only stored).
        self.reports = reports
        self.clock = clock
        self.settings = settings or GatewaySettings()
        self.sessions: dict[str, DeviceSession] = {}
        self.live: dict[str, LiveState] = {}
        self.connections = 0
        #: Every open connection, logged in or not (closed at shutdown).
        self.open_sessions: set[DeviceSession] = set()
        #: The throttle of every DevKey check (shared with /register and TURN by the platform).
        self.guard = guard if guard is not None else KeyGuard(clock)
        #: Refusals and closings of connections that are not (or no longer) a logged-in device: the
        #: first per source address and minute in full, the rest counted (a flood of bad logins or
        #: idle connections must not become a flood of log lines).
        self.refusal_log = LogSummary(self.log, clock, level=LogLevel.warn, name="gateway refusals")
        self.counters = {"logins": 0, "login_failures": 0, "heartbeats": 0, "commands": 0, "replaced": 0}

    def factory(self) -> Factory:
        gateway = self

        class GatewayFactory(Factory):
            def buildProtocol(self, addr: Any) -> DeviceSession:
                return DeviceSession(gateway, gateway.clock)

        return GatewayFactory()

    # The command API ------------------------------------------------------------------

    def is_online(self, dev_id: str) -> bool:
        return dev_id in self.sessions

    def online_devices(self) -> list[str]:
        """The DevIDs of the devices logged in now."""
        return list(self.sessions)

    def live_addresses(self, dev_id: str) -> DeviceAddresses | None:
        """The addresses the online device last reported (login or heartbeat); None when offline."""
        state = self.live.get(dev_id)
        return state.addresses if state is not None else None

    def live_version(self, dev_id: str) -> str | None:
        """The firmware version the online device logged in with; None when offline."""
        state = self.live.get(dev_id)
        return state.dev_ver if state is not None else None

    def close_all(self, why: str) -> None:
        """Close every device connection, logged in or not (the platform is stopping)."""
        for session in list(self.open_sessions):
            session.close(why)

    async def command(self, dev_id: str, request: m.Message, timeout: float | None = None) -> Any:
        """Send a platform→device request (60H–7BH) and return the device's response."""
        session = self.sessions.get(dev_id)
        if session is None:
            raise DeviceOffline(f"device {dev_id} is offline")
        self.counters["commands"] += 1
        return await session.request(request, self.settings.command_timeout if timeout is None else timeout)

    # Session table ---------------------------------------------------------------------

    def connection_opened(self, session: DeviceSession) -> None:
        self.connections += 1
        self.open_sessions.add(session)

    def connection_closed(self, session: DeviceSession, reason: Failure | None) -> None:
        self.connections -= 1
        self.open_sessions.discard(session)
        if session.dev_id is not None and self.sessions.get(session.dev_id) is session:
            del self.sessions[session.dev_id]
            self.live.pop(session.dev_id, None)
            self.log.info("device {dev_id} offline ({peer}): {why}", dev_id=session.dev_id, peer=session.peer,
                          why=reason.getErrorMessage() if reason is not None else "closed")
            self._report("presence", session.dev_id, False, self.clock.seconds())

    def _go_online(self, session: DeviceSession, dev_id: str, state: LiveState) -> None:
        old = self.sessions.get(dev_id)
        if old is not None and old is not session:
            self.counters["replaced"] += 1
            old.replaced = True
            old.close(f"replaced by a new login from {session.peer}")
        self.sessions[dev_id] = session
        self.live[dev_id] = state
        session.went_online(dev_id)
        self._report("presence", dev_id, True, self.clock.seconds())

    def _report(self, what: str, *args: Any) -> None:
        """Tell :attr:`reports` (a defect there is logged, never the device's problem)."""
        if self.reports is None:
            return
        try:
            getattr(self.reports, what)(*args)
        except Exception:
            self.log.failure("gateway: reporting {what} of {dev_id} failed", what=what, dev_id=args[0])

    # Requests ---------------------------------------------------------------------------

    async def handle_request(self, session: DeviceSession, message: m.Message) -> Handled:
        if isinstance(message, m.LoginRequest):
            if session.state == "online":
                session.refuse("second LOGIN_REQ on a logged-in session")
                return m.LoginResponse(result=LOGIN_OTHER, dev_id=message.dev_id), False
            return await self.login(session, message)
        assert session.dev_id is not None
        dev_id = getattr(message, "dev_id", session.dev_id).strip()
        if dev_id and dev_id != session.dev_id:
            session.refuse(f"<{message.ROOT}> for DevID {dev_id!r} on the session of {session.dev_id}")
            return _failure_response(message, session.dev_id), False
        session.touch()
        handler = self._handlers.get(type(message))
        if handler is None:
            session.refuse(f"<{message.ROOT}> is not a device request")
            return None, False
        response: m.Message = await handler(self, session, message)
        return response, False

    async def login(self, session: DeviceSession, request: m.LoginRequest) -> Handled:
        dev_id = request.dev_id.strip()
        now = self.clock.seconds()

        def refuse(result: int, reason: str, logged: bool = True) -> Handled:
            self.counters["login_failures"] += 1
            if logged:
                session.refuse(f"login of {dev_id!r} refused (Result {result}): {reason}")
            return m.LoginResponse(result=result, dev_id=dev_id, time=protocol_time(now)), True

        if not DEV_ID.match(dev_id):
            return refuse(LOGIN_UNKNOWN_DEVICE, "DevID is not 11 digits")
        # §7.3.3 (3 minutes between attempts after a failed login) is the failing device's duty; the
        # platform holds it against the address that failed (the key guard's pair record), never
        # against the DevID everywhere, so a stranger's wrong key cannot lock the camera out.  The
        # guard runs the checks of one DevID one at a time, deciding each after the previous answer.
        attempt = await self.guard.attempt(f"dev:{dev_id}", session.peer)
        try:
            if attempt.refused:
                # The guard logs its refusals (the first per address, then a summary a minute): no
                # line per attempt of a flood here.
                return refuse(LOGIN_OTHER, attempt.reason, logged=False)
            addresses = self._addresses(session, request)
            # The key check and the login record are one store call (one transaction).
            try:
                outcome = await self.store.login_device(dev_id, request.dev_key.strip(), now, request.dev_ver,
                                                        addresses)
            except STORE_FAILURES as e:
                # A full or failing disk: answered in protocol (the device retries), not a dropped session.
                self.counters["store_failures"] = self.counters.get("store_failures", 0) + 1
                return refuse(LOGIN_OTHER, f"the store failed: {e}")
            if outcome == DEVICE_UNKNOWN:
                attempt.failed(hold=self.settings.login_retry)
                return refuse(LOGIN_UNKNOWN_DEVICE, "unknown device")
            if outcome != DEVICE_OK:
                attempt.failed(hold=self.settings.login_retry)
                return refuse(LOGIN_BAD_KEY, "wrong DevKey")
            attempt.succeeded()
        finally:
            attempt.done()
        eurl, e_account, e_password = await self._cloud_account(dev_id)
        if not session.connected:
            return None, True
        self._go_online(session, dev_id, LiveState(addresses=addresses, dev_ver=request.dev_ver))
        self.counters["logins"] += 1
        self.log.info("device {dev_id} logged in from {peer} (version {ver}, local {local}:{lport}, "
                      "upnp {upnp}:{uport}, turn {turn}:{tport})", dev_id=dev_id, peer=session.peer,
                      ver=request.dev_ver, local=addresses.local_ip, lport=addresses.rtsp_local_port,
                      upnp=addresses.upnp_ip, uport=addresses.rtsp_upnp_port, turn=addresses.turn_relay_ip,
                      tport=addresses.rtsp_turn_relay_port)
        return m.LoginResponse(result=LOGIN_OK, dev_id=dev_id, eurl=eurl, e_account=e_account,
                               e_password=e_password, time=protocol_time(now)), False

    async def _cloud_account(self, dev_id: str) -> tuple[str, str, str]:
        """The device's own cloud account from :attr:`cloud`, else (none, or it failed: the login goes on)
        the configured global one."""
        s = self.settings
        if self.cloud is not None:
            try:
                account = await self.cloud.cloud_account(dev_id)
            except Exception:
                self.log.failure("gateway: the cloud account of {dev_id} could not be had; the global one is given",
                                 dev_id=dev_id)
                account = None
            if account is not None:
                return account
        return s.cloud_url, s.cloud_account, s.cloud_password

    @staticmethod
    def _addresses(session: DeviceSession, request: m.LoginRequest | m.HeartbeatRequest) -> DeviceAddresses:
        peer = session.transport.getPeer() if session.transport is not None else None
        return DeviceAddresses(
            public_ip=getattr(peer, "host", ""),
            public_port=getattr(peer, "port", 0),
            upnp_ip=request.upnp_ip.strip(),
            rtsp_upnp_port=request.rtsp_upnp_port,
            local_ip=request.local_ip.strip(),
            rtsp_local_port=request.rtsp_local_port,
            turn_relay_ip=request.turn_relay_ip.strip(),
            rtsp_turn_relay_port=request.rtsp_turn_relay_port,
            net_type=getattr(request, "net_type", 0),
        )

    async def _heartbeat(self, session: DeviceSession, request: m.HeartbeatRequest) -> m.Message:
        assert session.dev_id is not None
        self.counters["heartbeats"] += 1
        state = self.live[session.dev_id]
        state.cur_video_num = request.cur_video_num
        addresses = attrs.evolve(self._addresses(session, request), net_type=state.addresses.net_type)
        if addresses != state.addresses:
            # Only a change costs a database write; a steady heartbeat costs none.
            state.addresses = addresses
            self.log.info("device {dev_id} addresses changed: upnp {upnp}:{uport}, turn {turn}:{tport}",
                          dev_id=session.dev_id, upnp=addresses.upnp_ip, uport=addresses.rtsp_upnp_port,
                          turn=addresses.turn_relay_ip, tport=addresses.rtsp_turn_relay_port)
            try:
                await self.store.update_addresses(session.dev_id, addresses)
            except STORE_FAILURES as e:  # the live state keeps them; the store gets them at the next change or login
                self.log.error("device {dev_id}: new addresses not stored, the store failed: {error}",
                               dev_id=session.dev_id, error=e)
        return m.HeartbeatResponse(dev_id=session.dev_id, time=protocol_time(self.clock.seconds()))

    async def _ability(self, session: DeviceSession, request: m.AbilityUpRequest) -> m.Message:
        assert session.dev_id is not None
        ability = DeviceAbility(channel_num=request.channel_num, ptz_flag=request.ptz_flag,
                                estore_flag=request.e_store_flag, local_store_flag=request.local_store_flag,
                                xml=request.to_xml())
        await self.store.record_ability(session.dev_id, ability)
        return m.AbilityUpResponse(dev_id=session.dev_id, time=protocol_time(self.clock.seconds()))

    def _report_allowed(self, session: DeviceSession, what: str) -> bool:
        """Per device, at most ``reports_per_minute`` exception reports and picture notices are stored (and
        logged); the rest are answered, counted and summarised in one line when the minute is over."""
        limit = self.settings.reports_per_minute
        if limit <= 0:
            return True
        assert session.dev_id is not None
        now = self.clock.seconds()
        budgets: dict[str, ReportBudget] = self.__dict__.setdefault("_report_budgets", {})
        budget = budgets.get(session.dev_id)
        if budget is None or now - budget.window_start >= REPORT_WINDOW:
            if budget is not None and budget.dropped:
                self.log.warn("device {dev_id} ({peer}): {dropped} exception reports / picture notices over "
                              "[gateway] reports_per_minute = {limit} dropped in {seconds:.0f} s",
                              dev_id=session.dev_id, peer=session.peer, dropped=budget.dropped, limit=limit,
                              seconds=now - budget.window_start)
            if len(budgets) > 2 * len(self.sessions) + 1000:  # forget devices whose minute is over
                for dev_id in [d for d, b in budgets.items() if now - b.window_start >= REPORT_WINDOW]:
                    del budgets[dev_id]
            budget = budgets[session.dev_id] = ReportBudget(now)
        if budget.stored < limit:
            budget.stored += 1
            return True
        if not budget.dropped:
            self.log.warn("device {dev_id} ({peer}) sends more than {limit} exception reports / picture notices a "
                          "minute: the rest of this minute's are dropped ({what} first)",
                          dev_id=session.dev_id, peer=session.peer, limit=limit, what=what)
        budget.dropped += 1
        self.counters["reports_dropped"] = self.counters.get("reports_dropped", 0) + 1
        return False

    def _bounded(self, text: str) -> str:
        limit = self.settings.report_max_chars
        return text if limit <= 0 or len(text) <= limit else text[:limit] + "…"

    async def _store_report(self, session: DeviceSession, write: Any) -> bool:
        """A report's store write; a failing store (disk full) is answered in protocol and logged, not fatal."""
        try:
            await write
        except STORE_FAILURES as e:
            self.counters["report_store_failures"] = self.counters.get("report_store_failures", 0) + 1
            self.log.error("device {dev_id}: report not stored, the store failed: {error} ({count} so far)",
                           dev_id=session.dev_id, error=e, count=self.counters["report_store_failures"])
            return False
        return True

    async def _exception(self, session: DeviceSession, request: m.ExceptionReportRequest) -> m.Message:
        assert session.dev_id is not None
        if not self._report_allowed(session, "exception report"):
            return m.ExceptionReportResponse(result=RESULT_OTHER, dev_id=session.dev_id)
        description = self._bounded(request.exception_desc)
        self.log.warn("device {dev_id} reports exception {type} on channel {channel}: {desc}",
                      dev_id=session.dev_id, type=request.exception_type, channel=request.channel_no,
                      desc=description)
        now = self.clock.seconds()
        stored = await self._store_report(session, self.store.add_exception(ExceptionRecord(
            session.dev_id, request.channel_no, request.exception_type, description, now)))
        # Told live even when the store failed: an open page still learns of the alarm.
        self._report("alarm", session.dev_id, request.channel_no, request.exception_type, description, now)
        return m.ExceptionReportResponse(result=RESULT_OK if stored else RESULT_OTHER, dev_id=session.dev_id)

    async def _picture(self, session: DeviceSession, request: m.FtpPictureNoticeRequest) -> m.Message:
        assert session.dev_id is not None
        if self._report_allowed(session, "picture notice"):
            await self._store_report(session, self.store.add_picture(PictureRecord(
                session.dev_id, request.channel_no, self._bounded(request.file_name), self._bounded(request.time),
                self.clock.seconds())))
        return m.FtpPictureNoticeResponse(dev_id=session.dev_id)

    async def _verify(self, session: DeviceSession, dev_id: str, channel_no: int, token: str,
                      stream_type: int = 0, file_name: str = "") -> int:
        what = f"file {file_name!r}" if file_name else f"stream {stream_type}"
        issued = await self.store.consume_token(token.strip(), self.clock.seconds())
        if issued is None:
            session.refuse(f"HashToken for channel {channel_no} {what}: unknown, used or expired")
            return RESULT_FAILED
        if (issued.dev_id, issued.channel_no, issued.stream_type, issued.file_name) != (
                dev_id, channel_no, stream_type, file_name):
            session.refuse(f"HashToken issued for {issued.dev_id} channel {issued.channel_no} does not match "
                           f"channel {channel_no} {what}")
            return RESULT_FAILED
        self.log.info("device {dev_id}: HashToken of {account} accepted for channel {channel} {what}",
                      dev_id=dev_id, account=issued.account, channel=channel_no, what=what)
        return RESULT_OK

    async def _token(self, session: DeviceSession, request: m.TokenVerifyRequest) -> m.Message:
        assert session.dev_id is not None
        result = await self._verify(session, session.dev_id, request.channel_no, request.hash_token,
                                    stream_type=request.stream_type)
        return m.TokenVerifyResponse(result=result, dev_id=session.dev_id)

    async def _playback(self, session: DeviceSession, request: m.PlaybackVerifyRequest) -> m.Message:
        assert session.dev_id is not None
        result = await self._verify(session, session.dev_id, request.channel_no, request.hash_token,
                                    file_name=request.file_name.strip())
        return m.PlaybackVerifyResponse(result=result, dev_id=session.dev_id)

    _handlers: dict[type, Any] = {
        m.HeartbeatRequest: _heartbeat,
        m.AbilityUpRequest: _ability,
        m.ExceptionReportRequest: _exception,
        m.FtpPictureNoticeRequest: _picture,
        m.TokenVerifyRequest: _token,
        m.PlaybackVerifyRequest: _playback,
    }


def _failure_response(request: m.Message, dev_id: str) -> m.Message | None:
    """The error answer to a device request refused before it was handled."""
    response_type = m.response_type(type(request))
    fields = attrs.fields_dict(response_type)
    values: dict[str, Any] = {"dev_id": dev_id}
    if "result" in fields:
        values["result"] = RESULT_OTHER
    if "time" in fields:
        values["time"] = ""
    return response_type(**values)
