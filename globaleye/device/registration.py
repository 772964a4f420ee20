"""Device registration (§7.2, province platform) and redirect (§5, group platform).

These are the application decisions only; :mod:`globaleye.device.web` adapts them
to HTTP.  Registration is where a device first meets the province: enrollment
(``open``: a well-formed DevID of a known vendor enrols on first contact and its
DevKey is pinned; ``closed``: only devices an operator imported), the key check,
the 5-minute rule between registrations, and the answer that tells the device
where its gateways, TURN servers and picture FTP server are.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from globaleye.device.enrollment import EnrollmentLimits, Reservation
from globaleye.device.gateway.service import DEV_ID, STORE_FAILURES
from globaleye.device.protocol import messages as m
from globaleye.guard.keyguard import KeyGuard
from globaleye.store import (
    DEVICE_BAD_KEY,
    DEVICE_OK,
    DEVICE_TOO_SOON,
    DEVICE_UNKNOWN,
    Device,
    GroupDevice,
    Store,
)
from globaleye.util.clock import protocol_time
from txturn.logsummary import LogSummary

# REGISTER_RES Result codes (§7.2.1).
REG_OK, REG_UNKNOWN_DEVICE, REG_BAD_KEY, REG_BAD_FIRMWARE, REG_OTHER = 0, 1, 2, 3, 255
# REDIRECT_RES Result codes (§5).
REDIRECT_OK, REDIRECT_UNKNOWN, REDIRECT_OTHER = 0, 1, 255


STORE_FAILURE_SUMMARY = 60.0  # seconds: one log line for the first failure, then one summary per interval

_Answer = TypeVar("_Answer", bound=m.Message)


def answers_store_failures(answer: Callable[[Any, Any], _Answer]) -> Callable[
        [Callable[[Any, Any, str], Awaitable[_Answer]]], Callable[[Any, Any, str], Awaitable[_Answer]]]:
    """A device's request whose store write fails (a full disk, an I/O error) is answered in protocol,
    ``answer(self, request)`` (a failure Result), instead of HTTP 500; the device retries as the spec
    says.  The first failure is logged at once with its reason, then one summary per
    STORE_FAILURE_SUMMARY seconds counts the others (a full disk fails every device at once)."""

    def wrap(method: Callable[[Any, Any, str], Awaitable[_Answer]]) -> Callable[[Any, Any, str], Awaitable[_Answer]]:
        @functools.wraps(method)
        async def guarded(self: Any, request: Any, peer: str) -> _Answer:
            try:
                return await method(self, request, peer)
            except STORE_FAILURES as e:
                _note_store_failure(self, method.__name__, getattr(request, "dev_id", ""), peer, e)
                return answer(self, request)

        return guarded

    return wrap


def _note_store_failure(owner: Any, what: str, dev_id: str, peer: str, error: BaseException) -> None:
    """The first failure of an interval in full, the others counted (the platform's one summariser)."""
    summary = owner.__dict__.get("_store_failures")
    if summary is None:
        summary = owner._store_failures = LogSummary(owner.log, owner.clock, interval=STORE_FAILURE_SUMMARY,
                                                     level=LogLevel.error, name="store failures")
    summary.event(what, f"{what} requests answered with a failure Result: the store still fails ({error})",
                  "{what} of {dev_id} from {peer} answered with a failure Result: the store failed "
                  "({error}; disk full?)", what=what, dev_id=dev_id, peer=peer, error=error)


@attrs.frozen
class RegistrationSettings:
    """What REGISTER_RES tells a device, and the enrollment policy.

    Filled from ``[gateway]`` and ``[enrollment]`` (globaleye.platform.bindings); the defaults equal the
    configuration's, which tests/integration/test_config.py checks."""

    gateway_host: str
    gateway_port: int
    backup_gateway_host: str = ""
    backup_gateway_port: int = 0
    turn_host: str = ""
    turn_port: int = 0
    backup_turn_host: str = ""
    backup_turn_port: int = 0
    ftp_host: str = ""
    ftp_port: int = 21
    ftp_account: str = ""
    ftp_password: str = ""
    enrollment: str = "closed"
    vendors: frozenset[str] = frozenset(f"{code}" for code in range(811, 825))
    register_interval: float = 300.0
    peer_limit: int = 20  # open enrollment: new devices per source address (IPv6 /64) per limit_window
    total_limit: int = 200  # open enrollment: new devices in all per limit_window
    limit_window: float = 60.0


class FtpAccounts(Protocol):
    """Who gives each device its own FTP account for REGISTER_RES (§7.2 FtpAccount/FtpPassword; issue 12:
    the same access key and secret as its cloud account), or None to give the configured
    ``[gateway] ftp_account/ftp_password``.  The composition root passes the cloud service."""

    async def ftp_account(self, dev_id: str) -> tuple[str, str] | None: ...


class Registrar:
    log = Logger()

    def __init__(self, store: Store, clock: IReactorTime, settings: RegistrationSettings,
                 online: Callable[[str], bool] | None = None, guard: KeyGuard | None = None,
                 ftp: FtpAccounts | None = None) -> None:
        self.store = store
        #: Each device's own FTP account (None: the configured one for all).
        self.ftp = ftp
        self.clock = clock
        self.settings = settings
        # §7.2's interval is the device's duty; the platform's own outage must not cost every
        # camera 5 minutes.  A device with the right key and no live gateway session (the
        # platform lost it, or the device never got the answer to its last registration in an
        # overloaded storm) gets the same answer again at once, as does one that registered
        # before this process started; only a device online now is refused as too soon.  A
        # refusal would cost the store the same transaction as the answer.
        self.online = online or (lambda dev_id: False)
        self.started = clock.seconds()
        self.limits = EnrollmentLimits(clock, settings.peer_limit, settings.total_limit, settings.limit_window)
        #: The throttle of every DevKey check (shared with the gateway and TURN by the platform).
        self.guard = guard if guard is not None else KeyGuard(clock)

    @answers_store_failures(lambda self, request: m.RegisterResponse(
        result=REG_OTHER, dev_id=request.dev_id.strip(), time=protocol_time(self.clock.seconds())))
    async def register(self, request: m.RegisterRequest, peer: str) -> m.RegisterResponse:
        dev_id = request.dev_id.strip()
        key = request.dev_key.strip()
        now = self.clock.seconds()

        def refuse(result: int, reason: str, logged: bool = True) -> m.RegisterResponse:
            if logged:
                self.log.warn("registration of {dev_id!r} from {peer} refused (Result {result}): {reason}",
                              dev_id=dev_id, peer=peer, result=result, reason=reason)
            return m.RegisterResponse(result=result, dev_id=dev_id, time=protocol_time(now))

        if not DEV_ID.match(dev_id):
            return refuse(REG_UNKNOWN_DEVICE, "DevID is not 11 digits")
        # The enrollment policy is decided before the store is asked, so that lookup, enrollment,
        # key check, the 5-minute rule and the registration record are one store call (one
        # transaction): half a registration cannot be left behind, and a new camera costs one
        # round trip on the store's thread instead of four.
        candidate: Device | None = None
        if self.settings.enrollment != "open":
            unknown = (REG_UNKNOWN_DEVICE, "unknown device (enrollment is closed)")
        elif dev_id[:3] not in self.settings.vendors:
            unknown = (REG_UNKNOWN_DEVICE, f"vendor code {dev_id[:3]} is not accepted")
        elif not key:
            unknown = (REG_BAD_KEY, "empty DevKey")
        else:
            unknown = (REG_OTHER, "device vanished during enrollment")
            candidate = Device(dev_id=dev_id, dev_key=key, manufacturer_no=request.manufacturer_no.strip(),
                               model=request.mode.strip(), dev_type=request.dev_type or 1, source="open",
                               created_at=now)
        # Open enrollment's limits: an unknown device over them is not enrolled (known ones register as usual).
        reservation = self.limits.reserve(peer) if candidate is not None else None
        limited = isinstance(reservation, str)
        if isinstance(reservation, str):
            unknown, candidate = (REG_OTHER, reservation), None
        interval = self.settings.register_interval
        # The DevKey check goes through the key guard (per DevID, per source, per pair, with backoff):
        # a refused caller gets Result 255 before any key is looked at, the same answer for the right
        # key as for a wrong one, so /register confirms nothing to a guesser it throttles.
        attempt = await self.guard.attempt(f"dev:{dev_id}", peer)
        try:
            if attempt.refused:
                if isinstance(reservation, Reservation):
                    self.limits.give_back(reservation)
                return refuse(REG_OTHER, attempt.reason, logged=False)  # the guard logs, summarised
            try:
                outcome = await self.store.register_device(dev_id, key, now, interval, candidate,
                                                           self._session_lost(self.online(dev_id)))
            except BaseException:
                if isinstance(reservation, Reservation):
                    self.limits.give_back(reservation)
                raise
            if isinstance(reservation, Reservation) and not outcome.enrolled:
                self.limits.give_back(reservation)
            if outcome.outcome in (DEVICE_UNKNOWN, DEVICE_BAD_KEY):
                attempt.failed()
            elif outcome.outcome in (DEVICE_OK, DEVICE_TOO_SOON):
                attempt.succeeded()  # the key was right (or enrolled just now)
        finally:
            attempt.done()
        if outcome.outcome == DEVICE_UNKNOWN:
            if limited:
                self.limits.refused(dev_id, peer, unknown[1])
                return m.RegisterResponse(result=REG_OTHER, dev_id=dev_id, time=protocol_time(now))
            return refuse(*unknown)
        if outcome.outcome == DEVICE_BAD_KEY:
            return refuse(REG_BAD_KEY, "wrong DevKey")
        if outcome.outcome == DEVICE_TOO_SOON:
            assert outcome.device is not None and outcome.device.registered_at is not None
            return refuse(REG_OTHER, f"registered {now - outcome.device.registered_at:.0f} s ago; §7.2 requires "
                                     f"{interval:g} s between registrations")
        if outcome.outcome != DEVICE_OK:
            return refuse(REG_OTHER, f"store outcome {outcome.outcome!r}")
        if outcome.enrolled:
            if request.manufacturer_no.strip() and request.manufacturer_no.strip() != dev_id[:3]:
                self.log.warn("device {dev_id} from {peer} reports ManufacturerNo {no} unlike its DevID",
                              dev_id=dev_id, peer=peer, no=request.manufacturer_no)
            self.log.info("device {dev_id} ({model}) enrolled from {peer}; its DevKey is pinned",
                          dev_id=dev_id, model=request.mode.strip(), peer=peer)
        s = self.settings
        ftp_account, ftp_password = await self._ftp_account(dev_id)
        self.log.info("device {dev_id} registered from {peer}: gateway {host}:{port}",
                      dev_id=dev_id, peer=peer, host=s.gateway_host, port=s.gateway_port)
        return m.RegisterResponse(
            result=REG_OK, dev_id=dev_id,
            nat_ip=s.gateway_host, nat_port=s.gateway_port,
            backup_nat_ip=s.backup_gateway_host or s.gateway_host,
            backup_nat_port=s.backup_gateway_port or s.gateway_port,
            turn_ip=s.turn_host, turn_port=s.turn_port,
            backup_turn_ip=s.backup_turn_host or s.turn_host,
            backup_turn_port=s.backup_turn_port or s.turn_port,
            ftp_ip=s.ftp_host, ftp_port=s.ftp_port, ftp_account=ftp_account, ftp_password=ftp_password,
            time=protocol_time(now),
        )

    async def _ftp_account(self, dev_id: str) -> tuple[str, str]:
        """The device's own FTP account from :attr:`ftp`, else (none, None, or it failed: the registration
        goes on) the configured one."""
        if self.ftp is not None:
            try:
                account = await self.ftp.ftp_account(dev_id)
            except Exception:
                self.log.failure("registration: the FTP account of {dev_id} could not be had; the configured "
                                 "one is given", dev_id=dev_id)
                account = None
            if account is not None:
                return account
        return self.settings.ftp_account, self.settings.ftp_password

    def _session_lost(self, online: bool) -> Callable[[Device], bool]:
        started = self.started

        def lost(device: Device) -> bool:  # runs in the store's transaction: pure, no reactor
            return not online or device.registered_at is None or device.registered_at < started

        return lost


class Redirector:
    """The group platform's §5 answer: which province a device registers with.

    §6.6 step 2: every device that asks is remembered (``group_devices``), with the
    first DevKey it presented, so that a province can later claim it (§6.5) with the
    key the user reads off the label.  A later redirect with another key does not
    replace the pinned one (whoever asked first with a forged key could otherwise
    be outrun, but never the other way round; an operator import fixes either).
    A device a province claimed goes to the DevUrl of that province's latest §6.1
    report, so a province that moves its registration URL takes its cameras along.
    """

    log = Logger()

    def __init__(self, store: Store, default_province_url: str = "", clock: IReactorTime | None = None) -> None:
        self.store = store
        self.default_province_url = default_province_url
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        self.clock: IReactorTime = clock  # type: ignore[assignment]

    @answers_store_failures(lambda self, request: m.RedirectResponse(result=REDIRECT_OTHER,
                                                                      dev_id=request.dev_id.strip()))
    async def redirect(self, request: m.RedirectRequest, peer: str) -> m.RedirectResponse:
        dev_id = request.dev_id.strip()
        if not DEV_ID.match(dev_id):
            self.log.warn("redirect of {dev_id!r} from {peer} refused: DevID is not 11 digits",
                          dev_id=dev_id, peer=peer)
            return m.RedirectResponse(result=REDIRECT_UNKNOWN, dev_id=dev_id)
        key = request.dev_key.strip()
        seen = None
        if key:
            now = self.clock.seconds()
            seen = GroupDevice(dev_id=dev_id, dev_key=key, manufacturer_no=request.manufacturer_no.strip(),
                               model=request.mode.strip(), dev_type=request.dev_type or 1, source="redirect",
                               first_seen=now, last_seen=now)
        # One store call (one transaction): note the device and find its province.
        known, url = await self.store.redirect_device(dev_id, seen)
        if seen is not None and known is not None and not hmac.compare_digest(known.dev_key.encode(), key.encode()):
            self.log.warn("redirect of {dev_id} from {peer} presents a DevKey other than the one the group "
                          "pinned at its first redirect", dev_id=dev_id, peer=peer)
        url = url or self.default_province_url
        if not url:
            self.log.info("redirect of {dev_id} from {peer}: no province has claimed it yet (Result 1)",
                          dev_id=dev_id, peer=peer)
            return m.RedirectResponse(result=REDIRECT_UNKNOWN, dev_id=dev_id)
        self.log.info("redirect of {dev_id} from {peer} to {url}", dev_id=dev_id, peer=peer, url=url)
        return m.RedirectResponse(result=REDIRECT_OK, dev_id=dev_id, lcms_url=url)
