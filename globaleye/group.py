"""The group platform's side of §6 (province ↔ group) and its §9.1 answer, as SOAP handlers.

SOAP-free like :mod:`globaleye.clientapi`: :meth:`GroupService.handle` takes the
decoded values of a ``/soap/group`` operation and returns the answer's values.

Why it looks like this:

* A province is "ProvinceNo-CmsNo" (e.g. ``3100-01``) and is authenticated on every
  call by the CmsPassword both sides have configured (``[group] provinces`` here,
  ``[province] cms_password`` there): §6 has no session, and a stateless check is
  all a handful of provinces need.  Unknown province: Result 1; wrong password:
  Result 2; both are logged as warnings (they are configuration mistakes or attacks).
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
import re
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from globaleye.accounts import MOBILE
from globaleye.clientapi import GroupDirectory
from globaleye.store import OPEN_OK, AuditRecord, ProvinceReport, Store, Subscriber

OK, NO_PLATFORM, BAD_PASSWORD, NO_SUBJECT, WRONG_KEY, OTHER = 0, 1, 2, 3, 4, 255
DEV_ID = re.compile(r"^[0-9]{11}$")
PROVINCE_NO = re.compile(r"^[0-9]{4}$")
CMS_NO = re.compile(r"^[0-9]{2}$")

Values = dict[str, Any]


@attrs.frozen
class GroupSettings:
    #: "ProvinceNo-CmsNo" -> CmsPassword
    provinces: Mapping[str, str] = attrs.Factory(dict)
    mcu_android_url: str = ""
    mcu_android_ver: str = ""
    mcu_ios_url: str = ""
    mcu_ios_ver: str = ""


def province_key(province_no: str, cms_no: str) -> str:
    return f"{province_no.strip()}-{cms_no.strip()}"


class GroupService:
    """``/soap/group``: §9.1 (clients) and §6.1-§6.5 (provinces)."""

    log = Logger()

    def __init__(self, store: Store, clock: IReactorTime, settings: GroupSettings,
                 directory: GroupDirectory) -> None:
        self.store = store
        self.clock = clock
        self.provinces: dict[str, str] = dict(settings.provinces)
        self.settings = settings
        self.directory = directory

    async def handle(self, operation: str, values: Values, peer: str) -> Values:
        if operation == "GetMcuUrl":
            return await self.mcu_url(values, peer)
        province = province_key(values["ProvinceNo"], values["CmsNo"])
        result = self._authenticate(province, values["CmsPassword"])
        if result != OK:
            why = "unknown province" if result == NO_PLATFORM else "wrong CmsPassword"
            self.log.warn("group: {op} from {peer} for province {province!r} refused: {why}", op=operation,
                          peer=peer, province=province, why=why)
            await self._audit(operation, province, peer, result, why)
            return {"Result": result}
        handler = {"ReportAddress": self.report_address, "OpenService": self.open_service,
                   "ChangeService": self.change_service, "CancelService": self.cancel_service,
                   "NotifyDeviceUsage": self.device_usage}[operation]
        answer, detail = await handler(province, values, peer)
        await self._audit(operation, province, peer, answer["Result"], detail)
        return answer

    def _authenticate(self, province: str, password: str) -> int:
        expected = self.provinces.get(province)
        if expected is None:
            return NO_PLATFORM
        return OK if hmac.compare_digest(expected.encode(), password.encode()) else BAD_PASSWORD

    async def _audit(self, operation: str, province: str, peer: str, result: int, detail: str) -> None:
        action = re.sub(r"(?<!^)(?=[A-Z])", "-", operation).lower()
        self.log.info("audit: {action} province={province} peer={peer} result={result} {detail}", action=action,
                      province=province, peer=peer, result=result, detail=detail)
        try:
            await self.store.add_audit(AuditRecord(self.clock.seconds(), province, peer, action, result, detail))
        except Exception:
            self.log.failure("cannot write the audit record of {action}", action=action)

    # §9.1 --------------------------------------------------------------------------------

    async def mcu_url(self, values: Values, peer: str) -> Values:
        """A number opened in a province (§6.2) goes to that province's reported McuUrl; others by prefix."""
        mobile = values["MobileTel"]
        subscriber = await self.store.get_subscriber(mobile) if MOBILE.match(mobile) else None
        if subscriber is not None:
            report = await self.store.get_province_report(subscriber.province)
            if report is not None and report.mcu_url:
                self.log.info("audit: get-mcu-url account={account} peer={peer} result=0 {url} (province {p})",
                              account=mobile, peer=peer, url=report.mcu_url, p=subscriber.province)
                return {"Result": OK, "McuUrl": report.mcu_url, "CmsName": self.directory.cms_name}
        return await self.directory.handle("GetMcuUrl", values, peer)

    # §6.1-§6.5 -------------------------------------------------------------------------------

    async def report_address(self, province: str, values: Values, peer: str) -> tuple[Values, str]:
        mcu_url, dev_url = values["McuUrl"], values["DevUrl"]
        if not all(url.startswith(("http://", "https://")) for url in (mcu_url, dev_url)):
            return {"Result": OTHER}, f"McuUrl {mcu_url!r} or DevUrl {dev_url!r} is not http(s)"
        await self.store.save_province_report(ProvinceReport(province, values["CmsVer"], mcu_url, dev_url, peer,
                                                             self.clock.seconds()))
        s = self.settings
        return ({"Result": OK, "McuAndroidUrl": s.mcu_android_url, "McuAndroidVer": s.mcu_android_ver,
                 "McuIosUrl": s.mcu_ios_url, "McuIosVer": s.mcu_ios_ver},
                f"CmsVer {values['CmsVer']} McuUrl {mcu_url} DevUrl {dev_url}")

    async def open_service(self, province: str, values: Values, peer: str) -> tuple[Values, str]:
        mobile, count = values["MobileTel"], values["IpcamNum"]
        if not MOBILE.match(mobile) or count < 0:
            return {"Result": OTHER}, f"MobileTel {mobile!r} IpcamNum {count}: not a mobile number or negative"
        now = self.clock.seconds()
        outcome = await self.store.open_subscriber(Subscriber(mobile, province, count, now, now))
        if outcome != OPEN_OK:
            return {"Result": OTHER}, f"MobileTel {mobile}: the service is open in another province"
        return {"Result": OK}, f"MobileTel {mobile} IpcamNum {count}"

    async def change_service(self, province: str, values: Values, peer: str) -> tuple[Values, str]:
        mobile, count = values["MobileTel"], values["IpcamNum"]
        if count < 0:
            return {"Result": OTHER}, f"IpcamNum {count} is negative"
        changed = await self.store.change_subscriber(mobile, province, count, self.clock.seconds())
        return {"Result": OK if changed else NO_SUBJECT}, f"MobileTel {mobile} IpcamNum {count}"

    async def cancel_service(self, province: str, values: Values, peer: str) -> tuple[Values, str]:
        mobile = values["MobileTel"]
        cancelled = await self.store.cancel_subscriber(mobile, province)
        return {"Result": OK if cancelled else NO_SUBJECT}, f"MobileTel {mobile}"

    async def device_usage(self, province: str, values: Values, peer: str) -> tuple[Values, str]:
        """§6.5/§6.6 step 7: the device must be known to the group, its key right, and not another's."""
        dev_id, key = values["DevID"], values["DevKey"]
        device = await self.store.get_group_device(dev_id) if DEV_ID.match(dev_id) else None
        if device is None:
            return {"Result": NO_SUBJECT}, f"DevID {dev_id!r}: unknown to the group"
        if not hmac.compare_digest(device.dev_key.encode(), key.strip().encode()):
            return {"Result": WRONG_KEY}, f"DevID {dev_id}: wrong DevKey"
        report = await self.store.get_province_report(province)
        if report is None or not report.dev_url:
            return {"Result": OTHER}, f"DevID {dev_id}: the province has not reported its DevUrl (§6.1)"
        owner = await self.store.claim_province(dev_id, province, report.dev_url, self.clock.seconds())
        if owner != province:
            self.log.warn("group: province {province} tried to claim {dev_id}, assigned to {owner}",
                          province=province, dev_id=dev_id, owner=owner or "a bare URL")
            return {"Result": OTHER}, f"DevID {dev_id}: assigned to province {owner or '(URL)'}"
        self.log.info("group: device {dev_id} assigned to province {province}; /redirect now answers {url}",
                      dev_id=dev_id, province=province, url=report.dev_url)
        return ({"Result": OK, "ManufacturerNo": device.manufacturer_no, "Mode": device.model,
                 "DevType": device.dev_type}, f"DevID {dev_id} assigned")
