"""The SOAP face of the group platform: ``/soap/group`` (§6.1-§6.5 for provinces, §9.1 for clients).

Envelopes are decoded by :class:`globaleye.api.soap.resource.SoapResource`; this maps the
decoded values of each operation onto :class:`globaleye.app.group.GroupService` and its
typed answers (or :class:`~globaleye.app.group.GroupRefused` and its §6 Result code) back
into the answer's values.  No decision is taken here.
"""

from __future__ import annotations

from typing import Any

from globaleye.app.group import AddressReport, GroupRefused, GroupService, ProvinceCaller

Values = dict[str, Any]


class GroupSoap:
    """``handle(operation, values, peer)`` for the SOAP resource, over the group service."""

    def __init__(self, service: GroupService) -> None:
        self.service = service

    async def handle(self, operation: str, values: Values, peer: str) -> Values:
        s = self.service
        try:
            if operation == "GetMcuUrl":
                address = await s.mcu_url(values["MobileTel"], peer)
                return {"Result": 0, "McuUrl": address.mcu_url, "CmsName": address.cms_name}
            caller = ProvinceCaller(values["ProvinceNo"] or "", values["CmsNo"] or "", values["CmsPassword"] or "", peer)
            if operation == "ReportAddress":
                versions = await s.report_address(caller, AddressReport(values["CmsVer"], values["McuUrl"],
                                                                        values["DevUrl"]))
                return {"Result": 0, "McuAndroidUrl": versions.android_url, "McuAndroidVer": versions.android_ver,
                        "McuIosUrl": versions.ios_url, "McuIosVer": versions.ios_ver}
            if operation == "OpenService":
                await s.open_service(caller, values["MobileTel"], values["IpcamNum"])
            elif operation == "ChangeService":
                await s.change_service(caller, values["MobileTel"], values["IpcamNum"])
            elif operation == "CancelService":
                await s.cancel_service(caller, values["MobileTel"])
            elif operation == "NotifyDeviceUsage":
                device = await s.claim_device(caller, values["DevID"], values["DevKey"])
                return {"Result": 0, "ManufacturerNo": device.manufacturer_no, "Mode": device.model,
                        "DevType": device.dev_type}
            else:
                raise KeyError(operation)
        except GroupRefused as refused:
            return {"Result": refused.result}
        return {"Result": 0}

