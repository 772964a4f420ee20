"""The province's side of §6: a SOAP client of the group platform (treq + our envelope codec).

What a province needs from its group, and what happens when the group is away:

* §6.1 address report: sent at start-up and again every ``retry_interval`` until
  the group accepts it (Result 0); then again at every start.  Until then the
  group cannot redirect cameras here, but nothing else of the province waits.
* §6.5 device usage (claiming a camera the province does not know, §6.6): the user
  is waiting, so it is one call with ``[province] group_timeout``; if the group
  cannot be reached the answer is :data:`UNAVAILABLE` and AddDevice says 255.
  Cameras the province already knows, and everything else, keep working.
* §6.2-§6.4 service open/change/cancel: notices the user must not wait for.  They go
  to an outbox in the database first (so a restart loses none), are sent at once,
  and are sent again with exponential back-off (``retry_interval`` … 1 hour) while
  the group is unreachable, times out, faults or answers 1/2 (a configuration
  mistake an operator can fix).
* Notices for one number keep their order: a later one never overtakes an earlier
  one still owed (after an outage a CancelService must not reach the group before
  its OpenService).  A Result that may only reflect a reordering is not final:
  ChangeService 3 (the group lacks the number) is repaired at once with an
  OpenService of the same count; OpenService 255 (open in another province, whose
  CancelService may still be on its way) is retried with back-off, at most
  :data:`REORDER_ATTEMPTS` times.  Other Results are final: logged and dropped.
* Reconciliation (docs/protocol.md): every ``reconcile_interval`` and whenever the
  group answers again after an outage, every account of this province is announced
  again with ChangeService (OpenService where the group answers 3), and every number
  closed lately (the audit log) with CancelService, so numbers the group lost, holds
  with another count, or still holds open are repaired.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, DeferredList, DeferredLock
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from globaleye.api.soap.client import parse_response, request_envelope
from globaleye.api.soap.envelope import SoapFault
from globaleye.api.soap.operations import GROUP_NS, GROUP_OPERATIONS
from globaleye.store import OutboxItem, Store
from globaleye.util.urls import request_url

UNAVAILABLE = -1  # no answer from the group (network, timeout, HTTP error, Fault)
RETRY_MAX = 3600.0
REORDER_ATTEMPTS = 24  # an answer that may reflect another province's late notice: about a day of retries
OUTBOX_BATCH = 10000  # notices looked at per pass (owed ones of a number hold its later ones)
_FOREVER = 1e18
_OPERATIONS = {op.name: op for op in GROUP_OPERATIONS}


class GroupUnavailable(Exception):
    """The group could not be asked (or did not answer in time)."""


@attrs.frozen
class ProvinceSettings:
    group_url: str
    province_no: str = "3100"
    cms_no: str = "01"
    cms_password: str = ""
    cms_ver: str = "1.0"
    mcu_url: str = ""
    register_url: str = ""
    timeout: float = 5.0
    retry_interval: float = 60.0
    reconcile_interval: float = 86400.0
    #: IpcamNum announced for an account without its own DevNum ([soap] max_devices_per_account)
    default_ipcam_num: int = 10


class GroupClient:
    """Calls ``/soap/group`` of the group platform on behalf of this province."""

    log = Logger()

    def __init__(self, settings: ProvinceSettings, reactor: Any, store: Store,
                 http: HTTPClient | None = None) -> None:
        self.settings = settings
        self.reactor = reactor
        self.store = store
        self.http = http or HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        self.reported = False
        self.client_urls: dict[str, str] = {}  # §6.1's answer: where users download the MCU
        self._loop: LoopingCall | None = None
        self._reconcile_loop: LoopingCall | None = None
        self._calls: set[Deferred[Any]] = set()
        self._flushing = False
        self._again = False
        self._stopped = False
        self._lock = DeferredLock()  # one sender at a time: the outbox's order is the group's order
        self._group_down = False  # the last call got no answer: the next answer starts a reconciliation
        self._reconciling = False
        self._touched: set[str] = set()  # numbers notified while a reconciliation runs
        self._reconcile_soon: Any = None  # the reconciliation after an outage, when scheduled

    @property
    def province(self) -> str:
        return f"{self.settings.province_no}-{self.settings.cms_no}"

    # Life -------------------------------------------------------------------------------------

    def start(self, mcu_url: str = "", register_url: str = "", group_url: str = "") -> None:
        """Begin reporting (§6.1) and sending the outbox; URLs not configured are given here."""
        self.settings = attrs.evolve(self.settings, mcu_url=self.settings.mcu_url or mcu_url,
                                     register_url=self.settings.register_url or register_url,
                                     group_url=self.settings.group_url or group_url)
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.reactor
        self._loop.start(self.settings.retry_interval, now=True).addErrback(
            lambda f: self.log.failure("group client loop stopped", f))
        self._reconcile_loop = LoopingCall(self._start_reconcile)
        self._reconcile_loop.clock = self.reactor
        self._reconcile_loop.start(self.settings.reconcile_interval, now=False).addErrback(
            lambda f: self.log.failure("group reconciliation loop stopped", f))

    async def stop(self) -> None:
        """Stop the loop and abandon calls in flight; none starts afterwards (the outbox keeps notices)."""
        self._stopped = True
        for loop in (self._loop, self._reconcile_loop):
            if loop is not None and loop.running:
                loop.stop()
        if self._reconcile_soon is not None and self._reconcile_soon.active():
            self._reconcile_soon.cancel()
        calls = list(self._calls)
        for call in calls:
            call.cancel()
        if calls:
            await DeferredList(calls, consumeErrors=True)

    def _tick(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._work())

    async def _work(self) -> None:
        if not self.reported:
            await self.report_address()
        await self.flush()

    # Calls --------------------------------------------------------------------------------------

    async def call(self, operation: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """One §6 call with our identity and password; raises :class:`GroupUnavailable`."""
        if self._stopped:
            raise GroupUnavailable(f"{operation}: the province platform is stopping")
        op = _OPERATIONS[operation]
        s = self.settings
        body = request_envelope(op, {"ProvinceNo": s.province_no, "CmsNo": s.cms_no, "CmsPassword": s.cms_password,
                                     **values}, GROUP_NS)
        call = Deferred.fromCoroutine(self._post(body))
        call.addTimeout(s.timeout, self.reactor)
        self._calls.add(call)
        try:
            data = await call
        except Exception as e:
            self._group_down = True
            raise GroupUnavailable(f"{operation} to {s.group_url}: {type(e).__name__}: {e}") from e
        finally:
            self._calls.discard(call)
        try:
            answer = parse_response(op, data, GROUP_NS)
        except SoapFault as fault:
            self._group_down = True
            raise GroupUnavailable(f"{operation} to {s.group_url}: {fault} {fault.detail}".strip()) from fault
        if self._group_down and answer.get("Result") not in (1, 2, None):
            self._group_down = False
            self.log.info("group: {url} answers again; reconciling", url=s.group_url)
            if self._reconcile_soon is None or not self._reconcile_soon.active():
                self._reconcile_soon = self.reactor.callLater(0, self._start_reconcile)
        return answer

    async def _post(self, body: bytes) -> bytes:
        response = await self.http.post(request_url(self.settings.group_url), data=body, headers=Headers(
            {"Content-Type": ["text/xml; charset=utf-8"], "Connection": ["close"]}))
        data = bytes(await response.content())
        if response.code not in (200, 500):  # 500 carries a SOAP Fault
            raise GroupUnavailable(f"HTTP {response.code}")
        return data

    async def report_address(self) -> int:
        """§6.1; the Result, or :data:`UNAVAILABLE`."""
        s = self.settings
        try:
            answer = await self.call("ReportAddress", {"CmsVer": s.cms_ver, "McuUrl": s.mcu_url, "DevUrl": s.register_url})
        except GroupUnavailable as e:
            self.log.warn("group: address report not delivered, will retry: {e}", e=e)
            return UNAVAILABLE
        result = int(answer["Result"] if answer["Result"] is not None else UNAVAILABLE)
        if result == 0:
            self.reported = True
            self.client_urls = {k: v for k, v in answer.items() if k != "Result" and v}
            self.log.info("group: province {province} reported McuUrl {mcu} DevUrl {dev}", province=self.province,
                          mcu=s.mcu_url, dev=s.register_url)
        else:
            self.log.error("group: address report of province {province} refused with Result {result} "
                           "(1: province unknown to the group, 2: wrong [province] cms_password)",
                           province=self.province, result=result)
        return result

    async def claim_device(self, dev_id: str, dev_key: str) -> tuple[int, dict[str, Any]]:
        """§6.5: (Result, answer values), or (:data:`UNAVAILABLE`, {}) when the group cannot be asked."""
        if not self.reported and await self.report_address() != 0:
            # The group could not assign the camera to us without our DevUrl.
            return UNAVAILABLE, {}
        try:
            answer = await self.call("NotifyDeviceUsage", {"DevID": dev_id, "DevKey": dev_key})
        except GroupUnavailable as e:
            self.log.warn("group: device usage of {dev_id} not answered: {e}", dev_id=dev_id, e=e)
            return UNAVAILABLE, {}
        return int(answer["Result"] if answer["Result"] is not None else UNAVAILABLE), answer

    # Notices (§6.2-§6.4) -------------------------------------------------------------------------

    async def notify(self, operation: str, values: Mapping[str, Any]) -> None:
        """Queue a notice in the database and try to send it now (without waiting for the group)."""
        now = self.reactor.seconds()
        if self._reconciling:
            self._touched.add(str(values.get("MobileTel", "")))
        await self.store.add_outbox(OutboxItem(operation, json.dumps(dict(values)), now, 0, now))
        d = Deferred.fromCoroutine(self.flush())
        d.addErrback(lambda f: self.log.failure("group: sending notices failed", f))

    async def flush(self) -> None:
        """Send what is due, in the outbox's order; a number with an earlier notice still owed waits."""
        if self._stopped:
            return
        if self._flushing:
            self._again = True  # a notice queued meanwhile: one more pass when this one ends
            return
        self._flushing = True
        try:
            self._again = True
            while self._again and not self._stopped:
                self._again = False
                await self._lock.run(self._pass)
        finally:
            self._flushing = False

    async def _pass(self) -> None:
        now = self.reactor.seconds()
        held: set[str] = set()  # numbers with an earlier notice still owed
        for item in await self.store.due_outbox(_FOREVER, OUTBOX_BATCH):
            if self._stopped:
                return
            number = _number(item)
            if number in held:
                continue
            if item.next_at > now or not await self._send(item):
                held.add(number)

    async def _send(self, item: OutboxItem) -> bool:
        """One notice; True when it is done with (delivered, or refused for good)."""
        assert item.id is not None
        values = json.loads(item.payload)
        why = ""
        try:
            answer = await self.call(item.operation, values)
            result = answer["Result"]
            if item.operation == "ChangeService" and result == 3:
                # The group lacks the number (its OpenService was lost or is late): open it with this count.
                self.log.warn("group: ChangeService {values}: the group lacks the number; opening it again",
                              values=values)
                answer = await self.call("OpenService", values)
                result = answer["Result"]
        except GroupUnavailable as e:
            result, why = None, str(e)
        if self._stopped:
            return False  # still due: sent after the next start
        reordered = item.operation == "OpenService" and result == 255 and item.attempts + 1 < REORDER_ATTEMPTS
        if result in (1, 2, None) or reordered:
            attempts = item.attempts + 1
            delay = min(RETRY_MAX, self.settings.retry_interval * 2 ** min(attempts - 1, 16))
            self.log.warn("group: {op} {values} not accepted ({why}); attempt {n}, next in {delay:.0f} s",
                          op=item.operation, values=values, n=attempts, delay=delay,
                          why=why if result is None else f"Result {result}")
            await self.store.retry_outbox(item.id, attempts, self.reactor.seconds() + delay)
            return False
        if result == 0:
            self.log.info("group: {op} {values} accepted", op=item.operation, values=values)
        elif item.operation == "CancelService" and result == 3:
            self.log.info("group: {op} {values}: the group did not have the number (already closed)",
                          op=item.operation, values=values)
        else:
            self.log.error("group: {op} {values} refused with Result {result}; dropped", op=item.operation,
                           values=values, result=result)
        await self.store.delete_outbox(item.id)
        return True

    # Reconciliation ------------------------------------------------------------------------------

    def _start_reconcile(self) -> None:
        d = Deferred.fromCoroutine(self.reconcile())
        d.addErrback(lambda f: self.log.failure("group: reconciliation failed", f))

    async def reconcile(self) -> tuple[int, int] | None:
        """Announce every account again (§6.3; §6.2 where the group lacks it).

        Returns (numbers checked, numbers repaired), or None when it could not run (already
        running, stopping, or the group stopped answering: it runs again when the group is back).
        """
        if self._reconciling or self._stopped:
            return None
        self._reconciling = True
        self._touched = set()
        checked = repaired = 0
        try:
            owed = {_number(item) for item in await self.store.due_outbox(_FOREVER, OUTBOX_BATCH)}
            accounts = [number for number, _ in await self.store.list_account_numbers()]
            # Numbers closed lately (the province's audit log): the group must not hold them open.
            since = self.reactor.seconds() - 2 * self.settings.reconcile_interval
            closed = sorted(set(await self.store.list_audit_accounts("close-account", since)) - set(accounts))
            for number in accounts + closed:
                if self._stopped:
                    return None
                if number in owed:
                    continue  # the outbox brings the group this number's state, in order
                outcome = await self._lock.run(self._reconcile_one, number)
                if outcome is None:
                    self.log.warn("group: reconciliation stopped after {n} numbers: the group does not answer",
                                  n=checked)
                    return None
                checked += 1
                repaired += outcome
        finally:
            self._reconciling = False
            self._touched = set()
        self.log.info("group: reconciled {n} numbers with the group, {r} repaired", n=checked, r=repaired)
        return checked, repaired

    async def _reconcile_one(self, number: str) -> int | None:
        """1 if the group's view of *number* was repaired, 0 if it agreed, None if it did not answer."""
        if number in self._touched:
            return 0  # a notice of its own is on its way, after this one in the outbox's order
        account = await self.store.get_account(number)
        if account is None:
            if await self._owed(number):
                return 0  # closed meanwhile: its CancelService is in the outbox
            try:  # closed here: 0 means the group still held it open (now closed), 3 that it agreed
                result = (await self.call("CancelService", {"MobileTel": number}))["Result"]
            except GroupUnavailable:
                return None
            if result == 0:
                self.log.warn("group: reconciliation: {number} was still open at the group; cancelled",
                              number=number)
                return 1
            return None if result in (1, 2, None) else 0
        values = {"MobileTel": number,
                  "IpcamNum": account.dev_num if account.dev_num is not None else self.settings.default_ipcam_num}
        try:
            result = (await self.call("ChangeService", values))["Result"]
            if result == 3:
                result = (await self.call("OpenService", values))["Result"]
                if result == 0:
                    self.log.warn("group: reconciliation: {number} was missing at the group; opened again",
                                  number=number)
                    return 1
        except GroupUnavailable:
            return None
        if result in (1, 2, None):
            return None
        if result != 0:
            self.log.error("group: reconciliation of {number} refused with Result {result}", number=number,
                           result=result)
        return 0

    async def _owed(self, number: str) -> bool:
        return any(_number(item) == number for item in await self.store.due_outbox(_FOREVER, OUTBOX_BATCH))


def _number(item: OutboxItem) -> str:
    try:
        return str(json.loads(item.payload).get("MobileTel", ""))
    except (ValueError, AttributeError):
        return ""
