"""The group platform's side of §6 (province ↔ group) and its §9.1 answer: the application service.

No transport and no SOAP here: typed values in (:class:`ProvinceCaller`, :class:`AddressReport`),
attrs results out (:class:`ClientVersions`, :class:`McuAddress`, :class:`ClaimedDevice`), and
:class:`GroupRefused` with the §6 Result code when a call is refused.  The SOAP face of
``/soap/group`` (:mod:`globaleye.group.soap`) maps envelopes onto these methods.

Why it looks like this:

* A province is "ProvinceNo-CmsNo" (e.g. ``3100-01``) and is authenticated on every
  call by the CmsPassword both sides have configured (``[group] provinces`` here,
  ``[province] cms_password`` there): §6 has no session, and a stateless check is
  all a handful of provinces need.  Unknown province: Result 1; wrong password:
  Result 2; both are logged as warnings (they are configuration mistakes or attacks).
  An empty password never authenticates, whatever is configured.
* Guessing is throttled (:class:`AuthThrottle`): a source address (an IPv6 /64) that
  failed ``auth_source_failures`` times is not heard for a while, with back-off; a
  province that failed ``auth_province_failures`` times from everywhere together
  is then heard only from sources that have authenticated as it before.  A
  throttled call gets the same Result 2 as a wrong password, so it reveals nothing.
* A province acts only in its own number space (``[group] province_numbers``): an
  OpenService/ChangeService/CancelService for a number another province's prefix
  (or no prefix of its own) covers is refused with 255, and so is an address report
  that names another province's McuUrl/DevUrl.
* §6.6: the group learns devices from their §5 redirect requests (the first DevKey
  seen is pinned; an operator import overrides it), and a province claims a device
  with §6.5.  The claim is one atomic store operation, so a camera assigned to one
  province can never be claimed through another (Result 255, the only code §6.5
  leaves for it).  From then on ``/redirect`` sends the camera to the DevUrl of the
  province's latest §6.1 report.
* §6.2-§6.4 keep a table of subscribers (which province serves a number), which
  also answers §9.1 for those numbers better than a prefix table can.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from globaleye.app.errors import AppError
from globaleye.store import OPEN_OK, AuditRecord, ProvinceReport, Store, Subscriber
from globaleye.users.accounts import MOBILE
from txturn.logsummary import LogSummary

OK, NO_PLATFORM, BAD_PASSWORD, NO_SUBJECT, WRONG_KEY, OTHER = 0, 1, 2, 3, 4, 255
DEV_ID = re.compile(r"^[0-9]{11}$")
PROVINCE_NO = re.compile(r"^[0-9]{4}$")
CMS_NO = re.compile(r"^[0-9]{2}$")

T = TypeVar("T")


#: The prefix that stands for "every number no other prefix covers" in ``province_numbers``.
ANY_NUMBER = ""


@attrs.frozen
class GroupSettings:
    #: "ProvinceNo-CmsNo" -> CmsPassword
    provinces: Mapping[str, str] = attrs.Factory(dict)
    mcu_android_url: str = ""
    mcu_android_ver: str = ""
    mcu_ios_url: str = ""
    mcu_ios_ver: str = ""
    #: mobile-number prefix ("" for every other number) -> the "ProvinceNo-CmsNo" it belongs to
    numbers: Mapping[str, str] = attrs.Factory(dict)
    #: §9.1 prefix table ([group] mcu_urls): prefix -> McuUrl, to know which URLs are whose
    mcu_urls: Mapping[str, str] = attrs.Factory(dict)
    auth_source_failures: int = 5
    auth_province_failures: int = 20
    auth_window: float = 600.0
    auth_backoff: float = 60.0


def province_key(province_no: str, cms_no: str) -> str:
    return f"{province_no.strip()}-{cms_no.strip()}"


def source_of(peer: str) -> str:
    """The address part of a ``host:port`` peer, grouped as limits count it: IPv4 exact, IPv6 by /64."""
    host = (peer.rpartition(":")[0] if ":" in peer else peer).strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or peer
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL (the port made explicit), lower-cased; "" if it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return ""
    if not parts.hostname:
        return ""
    return f"{parts.scheme.lower()}://{parts.hostname.lower()}:{port}"


@attrs.define
class _Failures:
    count: int = 0
    first: float = 0.0
    blocked_until: float = 0.0
    backoff: float = 0.0  # the last block's length; the next one doubles it


class AuthThrottle:
    """Failed CmsPassword checks counted per source (IPv6 /64) and per province, with back-off.

    The per-source limit bites first: one address that guesses is silenced after a few
    tries, and its silence costs the rightful province nothing.  The per-province limit
    stops guesses spread over many addresses; while it holds, the province is still
    heard from every source that has authenticated as it before (its own platform's
    addresses), so a stranger cannot lock it out.
    """

    log = Logger()
    MAX_BACKOFF = 3600.0
    MAX_ENTRIES = 10000  # sources remembered at most (the oldest are forgotten first)

    def __init__(self, clock: IReactorTime, settings: GroupSettings) -> None:
        self.clock = clock
        self.settings = settings
        self.sources: dict[str, _Failures] = {}
        self.provinces: dict[str, _Failures] = {}
        self.trusted: dict[str, set[str]] = {}  # province -> sources that authenticated as it
        # Calls refused unheard: the first per source or province in a minute in full, the rest counted.
        self.refusals = LogSummary(self.log, clock, level=LogLevel.warn, name="group §6 throttle refusals")

    def refuses(self, province: str, source: str) -> bool:
        """Whether a call for *province* from *source* is to be refused unheard."""
        now = self.clock.seconds()
        entry = self._current(self.sources.get(source))
        if entry is not None and entry.blocked_until > now:
            self._refused("source", source)
            return True
        guard = self._current(self.provinces.get(province))
        if guard is not None and guard.blocked_until > now and source not in self.trusted.get(province, ()):
            self._refused("province", province)
            return True
        return False

    def _refused(self, kind: str, name: str) -> None:
        self.refusals.event((kind, name), f"group: {kind} {name}: §6 calls refused unheard while throttled",
                            "group: {kind} {name}: a §6 call refused unheard while it is throttled",
                            kind=kind, name=name)

    def _current(self, entry: _Failures | None) -> _Failures | None:
        """*entry*, with a block that has run out ended."""
        now = self.clock.seconds()
        if entry is not None and entry.blocked_until and entry.blocked_until <= now:
            entry.blocked_until = 0.0
            entry.count, entry.first = 0, now
        return entry

    def failed(self, province: str, source: str, known_province: bool) -> None:
        s = self.settings
        self._count(self.sources, source, s.auth_source_failures, "source", source)
        if known_province:
            self._count(self.provinces, province, s.auth_province_failures, "province", province)

    def succeeded(self, province: str, source: str) -> None:
        self.sources.pop(source, None)
        trusted = self.trusted.setdefault(province, set())
        if len(trusted) < 64:
            trusted.add(source)

    def _count(self, table: dict[str, _Failures], key: str, limit: int, kind: str, name: str) -> None:
        now = self.clock.seconds()
        entry = table.get(key)
        if entry is None:
            if len(table) >= self.MAX_ENTRIES:
                self._prune(table, now)
            entry = table[key] = _Failures(first=now)
        self._current(entry)
        if now - entry.first > self.settings.auth_window:
            if now - entry.first > 2 * self.MAX_BACKOFF:
                entry.backoff = 0.0  # quiet for long: the next block starts short again
            entry.count, entry.first = 0, now
        entry.count += 1
        if limit and entry.count >= limit:
            entry.backoff = min(self.MAX_BACKOFF, entry.backoff * 2 if entry.backoff else self.settings.auth_backoff)
            entry.blocked_until = now + entry.backoff
            self.log.warn("group: {kind} {name} throttled for {seconds:.0f} s after {n} failed §6 authentications",
                          kind=kind, name=name, seconds=entry.backoff, n=entry.count)

    def _prune(self, table: dict[str, _Failures], now: float) -> None:
        for key in [k for k, e in table.items() if e.blocked_until <= now and now - e.first > self.settings.auth_window]:
            del table[key]
        while len(table) >= self.MAX_ENTRIES:
            del table[next(iter(table))]


@attrs.frozen
class ProvinceCaller:
    """Who calls a §6 operation: "ProvinceNo-CmsNo", its CmsPassword, and the peer it came from."""

    province_no: str
    cms_no: str
    password: str
    peer: str

    @property
    def province(self) -> str:
        return province_key(self.province_no, self.cms_no)


@attrs.frozen
class AddressReport:
    """§6.1: a province's CMS version and the addresses its clients (McuUrl) and devices (DevUrl) use."""

    cms_ver: str
    mcu_url: str
    dev_url: str


@attrs.frozen
class ClientVersions:
    """§6.1's answer: where the newest phone clients are."""

    android_url: str = ""
    android_ver: str = ""
    ios_url: str = ""
    ios_ver: str = ""


@attrs.frozen
class McuAddress:
    """§9.1's answer: the client API address of the province that serves a number."""

    mcu_url: str
    cms_name: str


@attrs.frozen
class ClaimedDevice:
    """§6.5's answer: what the group knows of a device a province claimed."""

    manufacturer_no: str
    model: str
    dev_type: int


class GroupRefused(AppError):
    """A §6/§9.1 call refused: ``result`` is its §6 Result code, ``detail`` what the audit records."""

    def __init__(self, result: int, detail: str = "") -> None:
        super().__init__(detail, result)
        self.detail = detail


class GroupDirectory:
    """§9.1: which province serves a mobile number, from a configured prefix table."""

    log = Logger()

    def __init__(self, prefixes: Mapping[str, str], default_url: str, cms_name: str) -> None:
        self.prefixes = dict(prefixes)
        self.default_url = default_url
        self.cms_name = cms_name

    def lookup(self, mobile: str, peer: str) -> McuAddress:
        """The prefix table's answer for *mobile* (:class:`GroupRefused` 255 not a number, 1 none)."""
        result, url = OTHER, ""
        if MOBILE.match(mobile):
            matches = [p for p in self.prefixes if mobile.startswith(p)]
            url = self.prefixes[max(matches, key=len)] if matches else self.default_url
            result = OK if url else NO_PLATFORM
        self.log.info("audit: get-mcu-url account={account} peer={peer} result={result} {url}", account=mobile,
                      peer=peer, result=result, url=url)
        if result != OK:
            raise GroupRefused(result, f"MobileTel {mobile!r}")
        return McuAddress(url, self.cms_name)


class GroupService:
    """The group platform: §9.1 for clients, §6.1-§6.5 for provinces."""

    log = Logger()

    def __init__(self, store: Store, clock: IReactorTime, settings: GroupSettings,
                 directory: GroupDirectory) -> None:
        self.store = store
        self.clock = clock
        self.provinces: dict[str, str] = {key: pw for key, pw in settings.provinces.items() if pw}
        self.numbers: dict[str, str] = dict(settings.numbers)
        self.settings = settings
        self.directory = directory
        self.throttle = AuthThrottle(clock, settings)

    def trust_own_province(self, province: str, password: str) -> None:
        """The province this process also runs (no [province] group_url): known, and by default
        the owner of every number no configured prefix gives to another province."""
        if not password:
            raise ValueError(f"province {province}: an empty CmsPassword is never trusted")
        self.provinces.setdefault(province, password)
        if province not in self.numbers.values():
            self.numbers.setdefault(ANY_NUMBER, province)

    def owner_of(self, mobile: str) -> str | None:
        """The province whose longest configured prefix covers *mobile* (None: no province's)."""
        for length in range(len(mobile), -1, -1):
            owner = self.numbers.get(mobile[:length])
            if owner is not None:
                return owner
        return None

    async def _as_province(self, operation: str, caller: ProvinceCaller,
                           body: Callable[[str], Awaitable[tuple[T, str]]]) -> T:
        """Authenticate *caller* (throttled, logged, audited), run *body* for its province, audit the outcome."""
        province, source = caller.province, source_of(caller.peer)
        if self.throttle.refuses(province, source):
            raise GroupRefused(BAD_PASSWORD)  # counted, summarised in the log; no audit row per guess
        result = self._authenticate(province, caller.password or "")
        if result != OK:
            why = "unknown province" if result == NO_PLATFORM else "wrong or empty CmsPassword"
            self.log.warn("group: {op} from {peer} for province {province!r} refused: {why}", op=operation,
                          peer=caller.peer, province=province, why=why)
            self.throttle.failed(province, source, known_province=result != NO_PLATFORM)
            await self._audit(operation, province, caller.peer, result, why)
            raise GroupRefused(result, why)
        self.throttle.succeeded(province, source)
        try:
            answer, detail = await body(province)
        except GroupRefused as refused:
            await self._audit(operation, province, caller.peer, refused.result, refused.detail)
            raise
        await self._audit(operation, province, caller.peer, OK, detail)
        return answer

    def _authenticate(self, province: str, password: str) -> int:
        expected = self.provinces.get(province)
        if expected is None:
            return NO_PLATFORM
        if not expected or not password:  # an empty password never authenticates
            return BAD_PASSWORD
        return OK if hmac.compare_digest(expected.encode(), password.encode()) else BAD_PASSWORD

    def _outside(self, province: str, mobile: str) -> None:
        """Refuse (255) unless *province* may act for *mobile*."""
        owner = self.owner_of(mobile)
        if owner == province:
            return
        self.log.warn("group: province {province} acted for {mobile}, outside its number ranges (owner: {owner})",
                      province=province, mobile=mobile, owner=owner or "none configured")
        raise GroupRefused(OTHER, f"MobileTel {mobile!r}: outside the number ranges of province {province} "
                                  f"([group] province_numbers; owner {owner or 'none'})")

    async def _audit(self, operation: str, province: str, peer: str, result: int, detail: str) -> None:
        action = re.sub(r"(?<!^)(?=[A-Z])", "-", operation).lower()
        self.log.info("audit: {action} province={province} peer={peer} result={result} {detail}", action=action,
                      province=province, peer=peer, result=result, detail=detail)
        try:
            await self.store.add_audit(AuditRecord(self.clock.seconds(), province, peer, action, result, detail))
        except Exception:
            self.log.failure("cannot write the audit record of {action}", action=action)

    # §9.1 --------------------------------------------------------------------------------

    async def mcu_url(self, mobile: str, peer: str) -> McuAddress:
        """A number opened in a province (§6.2) goes to that province's reported McuUrl; others by prefix."""
        subscriber = await self.store.get_subscriber(mobile) if MOBILE.match(mobile) else None
        if subscriber is not None and self.owner_of(mobile) == subscriber.province:
            report = await self.store.get_province_report(subscriber.province)
            if report is not None and report.mcu_url:
                self.log.info("audit: get-mcu-url account={account} peer={peer} result=0 {url} (province {p})",
                              account=mobile, peer=peer, url=report.mcu_url, p=subscriber.province)
                return McuAddress(report.mcu_url, self.directory.cms_name)
        return self.directory.lookup(mobile, peer)

    # §6.1-§6.5 -------------------------------------------------------------------------------

    async def report_address(self, caller: ProvinceCaller, report: AddressReport) -> ClientVersions:
        """§6.1: store the province's addresses unless they are another province's."""
        async def body(province: str) -> tuple[ClientVersions, str]:
            mcu_url, dev_url = report.mcu_url, report.dev_url
            if not all(url.startswith(("http://", "https://")) for url in (mcu_url, dev_url)):
                raise GroupRefused(OTHER, f"McuUrl {mcu_url!r} or DevUrl {dev_url!r} is not http(s)")
            taken = await self._others_address(province, {origin(mcu_url), origin(dev_url)})
            if taken:
                self.log.warn("group: province {province} from {peer} reported {taken}", province=province,
                              peer=caller.peer, taken=taken)
                raise GroupRefused(OTHER, f"McuUrl {mcu_url} DevUrl {dev_url}: {taken}")
            await self.store.save_province_report(ProvinceReport(province, report.cms_ver, mcu_url, dev_url,
                                                                 caller.peer, self.clock.seconds()))
            s = self.settings
            return (ClientVersions(s.mcu_android_url, s.mcu_android_ver, s.mcu_ios_url, s.mcu_ios_ver),
                    f"CmsVer {report.cms_ver} McuUrl {mcu_url} DevUrl {dev_url}")
        return await self._as_province("ReportAddress", caller, body)

    async def _others_address(self, province: str, origins: set[str]) -> str:
        """Why these URL origins belong to another province ("" if they do not)."""
        origins.discard("")
        for prefix, url in self.settings.mcu_urls.items():
            owner = self.owner_of(prefix)
            if owner is not None and owner != province and origin(url) in origins:
                return f"{origin(url)} is the McuUrl of prefix {prefix}, province {owner} ([group] mcu_urls)"
        for other in self.provinces:
            if other == province:
                continue
            stored = await self.store.get_province_report(other)
            if stored is not None and origins & {origin(stored.mcu_url), origin(stored.dev_url)}:
                return f"an address province {other} reported"
        return ""

    async def open_service(self, caller: ProvinceCaller, mobile: str, count: int) -> None:
        """§6.2: the service opened for *mobile* with *count* cameras, in the caller's province."""
        async def body(province: str) -> tuple[None, str]:
            if not MOBILE.match(mobile) or count < 0:
                raise GroupRefused(OTHER, f"MobileTel {mobile!r} IpcamNum {count}: not a mobile number or negative")
            self._outside(province, mobile)
            now = self.clock.seconds()
            if await self.store.open_subscriber(Subscriber(mobile, province, count, now, now)) != OPEN_OK:
                raise GroupRefused(OTHER, f"MobileTel {mobile}: the service is open in another province")
            return None, f"MobileTel {mobile} IpcamNum {count}"
        await self._as_province("OpenService", caller, body)

    async def change_service(self, caller: ProvinceCaller, mobile: str, count: int) -> None:
        """§6.3: a new camera count (Result 3 if the number is not open in this province)."""
        async def body(province: str) -> tuple[None, str]:
            if count < 0:
                raise GroupRefused(OTHER, f"IpcamNum {count} is negative")
            self._outside(province, mobile)
            detail = f"MobileTel {mobile} IpcamNum {count}"
            if not await self.store.change_subscriber(mobile, province, count, self.clock.seconds()):
                raise GroupRefused(NO_SUBJECT, detail)
            return None, detail
        await self._as_province("ChangeService", caller, body)

    async def cancel_service(self, caller: ProvinceCaller, mobile: str) -> None:
        """§6.4: the service closed (Result 3 if the number is not open in this province)."""
        async def body(province: str) -> tuple[None, str]:
            self._outside(province, mobile)
            if not await self.store.cancel_subscriber(mobile, province):
                raise GroupRefused(NO_SUBJECT, f"MobileTel {mobile}")
            return None, f"MobileTel {mobile}"
        await self._as_province("CancelService", caller, body)

    async def claim_device(self, caller: ProvinceCaller, dev_id: str, dev_key: str) -> ClaimedDevice:
        """§6.5/§6.6 step 7: the device must be known to the group, its key right, and not another's."""
        async def body(province: str) -> tuple[ClaimedDevice, str]:
            device = await self.store.get_group_device(dev_id) if DEV_ID.match(dev_id) else None
            if device is None:
                raise GroupRefused(NO_SUBJECT, f"DevID {dev_id!r}: unknown to the group")
            if not hmac.compare_digest(device.dev_key.encode(), dev_key.strip().encode()):
                raise GroupRefused(WRONG_KEY, f"DevID {dev_id}: wrong DevKey")
            report = await self.store.get_province_report(province)
            if report is None or not report.dev_url:
                raise GroupRefused(OTHER, f"DevID {dev_id}: the province has not reported its DevUrl (§6.1)")
            owner = await self.store.claim_province(dev_id, province, report.dev_url, self.clock.seconds())
            if owner != province:
                self.log.warn("group: province {province} tried to claim {dev_id}, assigned to {owner}",
                              province=province, dev_id=dev_id, owner=owner or "a bare URL")
                raise GroupRefused(OTHER, f"DevID {dev_id}: assigned to province {owner or '(URL)'}")
            self.log.info("group: device {dev_id} assigned to province {province}; /redirect now answers {url}",
                          dev_id=dev_id, province=province, url=report.dev_url)
            return (ClaimedDevice(device.manufacturer_no, device.model, device.dev_type),
                    f"DevID {dev_id} assigned")
        return await self._as_province("NotifyDeviceUsage", caller, body)
