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
  mistake an operator can fix).  Any other Result is final: logged and dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from globaleye.soap.client import parse_response, request_envelope
from globaleye.soap.envelope import SoapFault
from globaleye.soap.operations import GROUP_NS, GROUP_OPERATIONS
from globaleye.store import OutboxItem, Store
from globaleye.urls import request_url

UNAVAILABLE = -1  # no answer from the group (network, timeout, HTTP error, Fault)
RETRY_MAX = 3600.0
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
        self._calls: set[Deferred[Any]] = set()
        self._flushing = False
        self._stopped = False

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

    async def stop(self) -> None:
        """Stop the loop and abandon calls in flight; none starts afterwards (the outbox keeps notices)."""
        self._stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
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
            raise GroupUnavailable(f"{operation} to {s.group_url}: {type(e).__name__}: {e}") from e
        finally:
            self._calls.discard(call)
        try:
            return parse_response(op, data, GROUP_NS)
        except SoapFault as fault:
            raise GroupUnavailable(f"{operation} to {s.group_url}: {fault} {fault.detail}".strip()) from fault

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
        await self.store.add_outbox(OutboxItem(operation, json.dumps(dict(values)), now, 0, now))
        d = Deferred.fromCoroutine(self.flush())
        d.addErrback(lambda f: self.log.failure("group: sending notices failed", f))

    async def flush(self) -> None:
        if self._flushing or self._stopped:
            return
        self._flushing = True
        try:
            for item in await self.store.due_outbox(self.reactor.seconds()):
                if self._stopped:
                    break
                await self._send(item)
        finally:
            self._flushing = False

    async def _send(self, item: OutboxItem) -> None:
        assert item.id is not None
        values = json.loads(item.payload)
        why = ""
        try:
            answer = await self.call(item.operation, values)
            result = answer["Result"]
        except GroupUnavailable as e:
            result, why = None, str(e)
        if self._stopped:
            return  # still due: sent after the next start
        if result in (1, 2, None):
            attempts = item.attempts + 1
            delay = min(RETRY_MAX, self.settings.retry_interval * 2 ** min(attempts - 1, 16))
            self.log.warn("group: {op} {values} not accepted ({why}); attempt {n}, next in {delay:.0f} s",
                          op=item.operation, values=values, n=attempts, delay=delay,
                          why=why if result is None else f"Result {result}")
            await self.store.retry_outbox(item.id, attempts, self.reactor.seconds() + delay)
            return
        if result == 0:
            self.log.info("group: {op} {values} accepted", op=item.operation, values=values)
        else:
            self.log.error("group: {op} {values} refused with Result {result}; dropped", op=item.operation,
                           values=values, result=result)
        await self.store.delete_outbox(item.id)
