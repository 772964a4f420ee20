"""The CRM check: may this mobile number open the service? (spec §2 item 7, §8.2 Result 3).

§8.2 self-registration answers Result 3 "该用户无法开通该业务" when the operator's
CRM says the subscriber may not open 手机看店 (not a China Telecom number, in
arrears, barred...).  The spec names the CRM but not its interface, and every
province's CRM differs, so the check is pluggable:

- :class:`AllowAll` (default): no CRM; everyone may register.  Right for demos
  and for deployments where the CRM is consulted elsewhere.
- :class:`HttpCRM`: asks an HTTP service with a tiny JSON contract (below),
  with a timeout, and a configured choice of what an unreachable or confused CRM
  means.  Fail-open keeps registration working through a CRM outage (the
  operator bills later); fail-closed keeps non-customers out at the price of
  refusing everyone while the CRM is down.  It is the operator's call, so it is
  configuration, not code.

The HTTP contract (also in docs/sms-crm.md)::

    POST {url}            Content-Type: application/json
    {"mobile": "18900000001"}
    -> 200 application/json
    {"allowed": true}                       or
    {"allowed": false, "reason": "arrears"}

    GET {url}?mobile=18900000001  (method = GET) -> the same answer.

Anything else (non-200, not JSON, no boolean ``allowed``, timeout, refused
connection) is "CRM unavailable" and gets the fail-open/fail-closed answer.
"""

from __future__ import annotations

import json
from typing import Protocol as TypingProtocol

import attrs
import treq
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

MAX_ANSWER = 64 * 1024  # a yes/no answer has no business being larger


class CRM(TypingProtocol):
    async def may_open(self, mobile: str) -> bool: ...


class AllowAll:
    """No CRM: every number may open the service."""

    async def may_open(self, mobile: str) -> bool:
        return True


class CRMUnavailable(Exception):
    """The CRM did not give a usable answer (the policy then decides)."""


@attrs.frozen(kw_only=True)
class HttpCRMSettings:
    url: str
    method: str = attrs.field(default="POST", validator=attrs.validators.in_(["POST", "GET"]))
    timeout: float = 3.0
    fail_open: bool = False


class HttpCRM:
    """Asks an HTTP CRM adapter; see the module docstring for the contract."""

    log = Logger()

    def __init__(
        self,
        settings: HttpCRMSettings,
        reactor: object | None = None,
        clock: IReactorTime | None = None,
        http: HTTPClient | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.settings = settings
        self.clock: IReactorTime = clock if clock is not None else reactor  # type: ignore[assignment]
        if http is None:
            # Non-persistent: a check is rare, and an idle pooled connection to a CRM that
            # went away only turns the next check into a failure.
            http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))  # type: ignore[arg-type]
        self.http = http

    async def _ask(self, mobile: str) -> tuple[bool, str]:
        s = self.settings
        if s.method == "GET":
            response = await self.http.get(s.url, params={"mobile": mobile})
        else:
            response = await self.http.post(
                s.url,
                data=json.dumps({"mobile": mobile}).encode(),
                headers=Headers({b"Content-Type": [b"application/json"]}),
            )
        body = await treq.content(response)
        if response.code != 200:
            raise CRMUnavailable(f"HTTP {response.code}")
        if len(body) > MAX_ANSWER:
            raise CRMUnavailable(f"answer of {len(body)} bytes")
        try:
            answer = json.loads(body)
        except ValueError:
            raise CRMUnavailable(f"answer is not JSON: {body[:80]!r}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("allowed"), bool):
            raise CRMUnavailable(f"answer has no boolean 'allowed': {body[:80]!r}")
        reason = answer.get("reason")
        return answer["allowed"], reason if isinstance(reason, str) else ""

    async def may_open(self, mobile: str) -> bool:
        s = self.settings
        d = Deferred.fromCoroutine(self._ask(mobile))
        d.addTimeout(s.timeout, self.clock)
        try:
            allowed, reason = await d
        except Exception as e:
            why = (
                f"no answer within {s.timeout}s"
                if isinstance(e, DeferredTimeout)
                else str(e) or type(e).__name__
            )
            self.log.warn(
                "CRM {url}: check of {mobile} failed ({reason}); failing {policy}",
                url=s.url,
                mobile=mobile,
                reason=why,
                policy="open (allowed)" if s.fail_open else "closed (refused)",
            )
            return s.fail_open
        if not allowed:
            self.log.info(
                "CRM {url}: {mobile} may not open the service: {reason}",
                url=s.url,
                mobile=mobile,
                reason=reason or "no reason given",
            )
        return allowed
