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
connection) is "CRM unavailable" and gets the fail-open/fail-closed answer; the
default is fail-closed (``[crm] fail_open = no``).

The CRM is a peer, not a trusted part of the platform, so the client holds against a
hostile or broken one:

- redirects are never followed (a 3xx is "unavailable": the answer must come from the
  configured URL, not from wherever the CRM points);
- the body is read with a cap (:data:`MAX_ANSWER`): past it the connection is closed,
  nothing more is buffered (an endless body costs at most the cap);
- the whole check, body included, has ``timeout`` seconds: at the deadline the
  connection is aborted, so a CRM that drips bytes cannot keep the download going;
- no content coding is asked for or decoded (no compressed body to inflate).
"""

from __future__ import annotations

import io
import json
from typing import Any
from typing import Protocol as TypingProtocol
from urllib.parse import urlencode

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

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
        agent: IAgent | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.settings = settings
        self.clock: IReactorTime = clock if clock is not None else reactor  # type: ignore[assignment]
        if agent is None:
            # Non-persistent: a check is rare, and an idle pooled connection to a CRM that
            # went away only turns the next check into a failure.  A plain Agent: no
            # RedirectAgent (redirects are not followed), no ContentDecoderAgent.
            agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))  # type: ignore[arg-type]
        self.agent = agent

    async def _ask(self, mobile: str) -> tuple[bool, str]:
        s = self.settings
        headers = Headers({b"User-Agent": [b"GlobalEye CRM check"]})
        if s.method == "GET":
            separator = "&" if "?" in s.url else "?"
            url = f"{s.url}{separator}{urlencode({'mobile': mobile})}"
            response = await self.agent.request(b"GET", url.encode(), headers)
        else:
            headers.setRawHeaders(b"Content-Type", [b"application/json"])
            body_producer = FileBodyProducer(io.BytesIO(json.dumps({"mobile": mobile}).encode()))
            response = await self.agent.request(b"POST", s.url.encode(), headers, body_producer)
        if response.code != 200:
            # A redirect included: never followed, the answer must come from the configured URL.
            location = response.headers.getRawHeaders(b"location", [b""])[0][:120]
            _discard(response)
            raise CRMUnavailable(f"HTTP {response.code}" + (f" to {location.decode('latin-1')}" if location else ""))
        if isinstance(response.length, int) and response.length > MAX_ANSWER:
            _discard(response)
            raise CRMUnavailable(f"answer of {response.length} bytes announced")
        body = await _read_capped(response, MAX_ANSWER)
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


class _CappedBody(Protocol):
    """Collects a response body up to *cap* bytes; past it, or when cancelled, drops the connection."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[bytes] = []
        self.size = 0
        self.done: Deferred[bytes] = Deferred(lambda _: self.abort())

    def abort(self) -> None:
        # Response.deliverBody's transport is a TransportProxyProducer of the TCP transport:
        # stopProducing closes the connection, so nothing more is read or buffered.
        producer: Any = self.transport
        if producer is not None:
            producer.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.cap:
            self.parts.clear()
            self.abort()
            self.done.errback(CRMUnavailable(f"answer larger than {self.cap} bytes"))
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:  # noqa: B008
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(CRMUnavailable(f"answer cut short: {reason.getErrorMessage()}"))


def _read_capped(response: IResponse, cap: int) -> Deferred[bytes]:
    body = _CappedBody(cap)
    response.deliverBody(body)
    return body.done


def _discard(response: IResponse) -> None:
    """Drop an unwanted answer's body: close the connection instead of reading it."""
    body = _CappedBody(0)
    response.deliverBody(body)
    body.done.addErrback(lambda _: None)
    body.abort()
