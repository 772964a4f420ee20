"""Hardening of the group↔province link (issue 9 item 1; issue 14 items 9, 10, 11).

Real SOAP over loopback sockets to a group's ``/soap/group``; where time matters the
group (or the province's outbox) runs on a :class:`twisted.internet.task.Clock`.
"""

from __future__ import annotations

import json
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web import resource, server
from twisted.web.client import Agent, HTTPConnectionPool

from globaleye.api.soap.client import parse_response, request_envelope
from globaleye.api.soap.envelope import SoapFault
from globaleye.api.soap.operations import GROUP_NS, GROUP_OPERATIONS
from globaleye.api.soap.resource import SoapResource
from globaleye.app.group import GroupDirectory, GroupService, GroupSettings
from globaleye.group.province import GroupClient, ProvinceSettings
from globaleye.group.soap import GroupSoap
from globaleye.platform.config import parse_config
from globaleye.platform.tap import Options, PlatformService
from globaleye.store import Account, AuditRecord, OutboxItem, Subscriber
from globaleye.store.sqlite import SQLiteStore
from globaleye.testing import platform_config

OPS = {op.name: op for op in GROUP_OPERATIONS}
SH, BJ = "shanghai-secret", "beijing-secret"

#: Group and province in one process, [province] cms_password left empty (the default shape).
ONE_PROCESS = platform_config(public_host=None, enrollment_mode=None, cms_password=None)


def client_from(source: str = "127.0.0.1") -> HTTPClient:
    """A treq client whose connections come from *source* (any 127/8 address is ours on Linux)."""
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False),
                            bindAddress=(source, 0)))


class GroupCaller:
    """Calls a group's /soap/group from chosen loopback source addresses."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.clients: dict[str, HTTPClient] = {}

    async def call(self, operation: str, province: str, password: str | None, source: str = "127.0.0.1",
                   **values: Any) -> dict[str, Any]:
        province_no, _, cms_no = province.partition("-")
        fields: dict[str, Any] = {"ProvinceNo": province_no, "CmsNo": cms_no, "CmsPassword": password, **values}
        body = request_envelope(OPS[operation], fields, GROUP_NS)
        http = self.clients.setdefault(source, client_from(source))
        response = await http.post(self.url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"})
        return dict(parse_response(OPS[operation], await response.content(), GROUP_NS))

    async def result(self, operation: str, province: str, password: str | None, source: str = "127.0.0.1",
                     **values: Any) -> int:
        return int((await self.call(operation, province, password, source, **values))["Result"])


class GroupOnLoopback(GroupCaller):
    """A group's /soap/group on a real loopback socket, its GroupService on *clock*."""

    def __init__(self, test: TestCase, settings: GroupSettings, clock: Any = reactor) -> None:
        self.store = SQLiteStore(":memory:")
        test.addCleanup(self.store.close)
        self.service = GroupService(self.store, clock, settings, GroupDirectory(settings.mcu_urls, "", "Test"))
        self.soap = GroupSoap(self.service)
        root = resource.Resource()
        soap = resource.Resource()
        soap.putChild(b"group", SoapResource("GlobalEyeGroup", GROUP_NS, GROUP_OPERATIONS, self.soap.handle))
        root.putChild(b"soap", soap)
        self.port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
        test.addCleanup(self.port.stopListening)
        super().__init__(f"http://127.0.0.1:{self.port.getHost().port}/soap/group")


class HardeningGroupTests(TestCase):
    timeout = 60

    # Issue 9 item 1 ------------------------------------------------------------------------------

    async def test_i9_01_empty_province_password_refused(self) -> None:
        # The default shape (group and province in one process, [province] cms_password empty)
        # starts, but its own province's §6 link gets a random secret for this run: the stranger's
        # empty (or missing) CmsPassword is refused and stores nothing.
        path = self.mktemp() + ".ini"
        with open(path, "w", encoding="utf-8") as f:
            f.write(ONE_PROCESS)
        options = Options()
        options.parseOptions(["--config", path])
        self.addCleanup(options.store.close)
        self.assertEqual(options.config["province"]["cms_password"], "")
        generated = PlatformService(parse_config(ONE_PROCESS), SQLiteStore(":memory:"), reactor)
        secret = generated.config["province"]["cms_password"]
        self.assertGreaterEqual(len(secret), 24)
        self.assertEqual(generated.group_client.settings.cms_password, secret)  # type: ignore[union-attr]
        generated.startService()
        self.addCleanup(generated.stopService)
        hijack = {"CmsVer": "1", "McuUrl": "http://127.0.0.99:1/soap/mcu", "DevUrl": "http://127.0.0.99:1/register"}
        own = GroupCaller(f"http://127.0.0.1:{generated.port_of('http')}/soap/group")
        self.assertEqual(await own.result("ReportAddress", "3100-01", "", **hijack), 2)
        await self.assertFault(own.result("ReportAddress", "3100-01", None, **hijack))
        stored = await generated.store.get_province_report("3100-01")
        self.assertTrue(stored is None or stored.mcu_url != hijack["McuUrl"], "the caller's McuUrl was stored")

        # With a password it starts, and its own province is trusted with that password only.
        platform = PlatformService(parse_config(ONE_PROCESS + "[province]\ncms_password = p4ss\n"),
                                   SQLiteStore(":memory:"), reactor)
        platform.startService()
        self.addCleanup(platform.stopService)
        url = f"http://127.0.0.1:{platform.port_of('http')}/soap/group"
        group = GroupCaller(url)
        self.assertEqual(await group.result("ReportAddress", "3100-01", "", **hijack), 2)
        await self.assertFault(group.result("ReportAddress", "3100-01", None, **hijack))  # missing: a Client fault

        # Even a province whose configured password is empty (however it got there) is never
        # authenticated by an empty one: the hijack of issue 9 item 1 on the group's socket.
        platform.group_service.provinces["3100-01"] = ""
        self.assertEqual(await group.result("ReportAddress", "3100-01", "", **hijack), 2)
        await self.assertFault(group.result("ReportAddress", "3100-01", None, **hijack))
        report = await platform.store.get_province_report("3100-01")
        self.assertTrue(report is None or report.mcu_url != hijack["McuUrl"], "the caller's McuUrl was stored")

    async def assertFault(self, call: Any) -> None:  # noqa: N802
        try:
            answer = await call
        except SoapFault:
            return
        self.fail(f"answered {answer} instead of a SOAP Fault")

    # Issue 14 item 9 -----------------------------------------------------------------------------

    async def test_i14_09_outbox_keeps_number_order_and_reconciles(self) -> None:
        group = GroupOnLoopback(self, GroupSettings(provinces={"3100-01": SH}, numbers={"133": "3100-01"}))
        clock = Clock()
        store = SQLiteStore(":memory:")
        self.addCleanup(store.close)
        real = client_from()
        down = [True]

        class Flaky:
            """The group link: refused while the group is down, real HTTP on loopback otherwise."""

            async def post(self, url: str, **kwargs: Any) -> Any:
                if down[0]:
                    raise ConnectionRefusedError("group down")
                return await real.post(url, **kwargs)

        client = GroupClient(ProvinceSettings(group_url=group.url, cms_password=SH, retry_interval=0.1,
                                              default_ipcam_num=4), clock, store, Flaky())  # type: ignore[arg-type]
        self.addCleanup(client.stop)

        # A long group outage: the OpenService of 13300000001 has been retried often (its next try is
        # far off), the user's CancelService came later and is due sooner.
        await store.add_outbox(OutboxItem("OpenService", json.dumps({"MobileTel": "13300000001", "IpcamNum": 4}),
                                          0, attempts=6, next_at=3.2))
        await store.add_outbox(OutboxItem("CancelService", json.dumps({"MobileTel": "13300000001"}), 1,
                                          attempts=1, next_at=0.1))
        # Another number, and a ChangeService whose OpenService the group never got (lost earlier).
        await store.add_outbox(OutboxItem("ChangeService", json.dumps({"MobileTel": "13300000002", "IpcamNum": 6}),
                                          1, attempts=1, next_at=0.1))
        down[0] = False  # the group is back
        clock.advance(0.1)
        await client.flush()
        self.assertIsNone(await group.store.get_subscriber("13300000001"), "the cancel overtook its open")
        left = [(i.operation, _mobile(i)) for i in await store.due_outbox(1e18)]
        self.assertEqual(left, [("OpenService", "13300000001"), ("CancelService", "13300000001")])
        changed = await group.store.get_subscriber("13300000002")
        assert changed is not None, "ChangeService Result 3 was final instead of repaired"
        self.assertEqual(changed.ipcam_num, 6)
        clock.advance(3.2)
        await client.flush()
        self.assertIsNone(await group.store.get_subscriber("13300000001"), "closed at the province, open at the group")
        self.assertEqual(await store.due_outbox(1e18), [])

        # OpenService refused because the number is still open in another province (whose
        # CancelService may be late) is retried, not dropped.
        await group.store.open_subscriber(Subscriber("13300000003", "1100-01", 2))
        await client.notify("OpenService", {"MobileTel": "13300000003", "IpcamNum": 4})
        for _ in range(100):
            if (await store.due_outbox(1e18))[0].attempts:
                break
            await _spin()
        self.assertEqual([(i.operation, i.attempts) for i in await store.due_outbox(1e18)], [("OpenService", 1)])
        await group.store.cancel_subscriber("13300000003", "1100-01")  # the other province's cancel arrives
        clock.advance(1)
        await client.flush()
        opened = await group.store.get_subscriber("13300000003")
        self.assertEqual((opened.province, opened.ipcam_num) if opened else None, ("3100-01", 4))

        # Reconciliation: the province's accounts against the group's view.  The group lost one
        # number and holds another with a wrong count; both are repaired.
        await store.create_account(Account("13300000003", "h"))
        await store.create_account(Account("13300000004", "h"))
        await store.create_account(Account("13300000005", "h"))
        await store.set_dev_num("13300000005", 9)
        await group.store.open_subscriber(Subscriber("13300000005", "3100-01", 1))
        # ... and one the province closed (its audit log says so) is still open at the group.
        await group.store.open_subscriber(Subscriber("13300000006", "3100-01", 2))
        await store.add_audit(AuditRecord(clock.seconds(), "13300000006", "peer", "close-account", 0, ""))
        self.assertEqual(await client.reconcile(), (4, 2))  # 04 opened, 06 cancelled; 05's count announced
        found = {m: await group.store.get_subscriber(m) for m in ("13300000004", "13300000005", "13300000006")}
        self.assertEqual({m: s.ipcam_num if s else None for m, s in found.items()},
                         {"13300000004": 4, "13300000005": 9, "13300000006": None})

        # ... and it runs by itself when the group answers again after an outage.
        await group.store.cancel_subscriber("13300000004", "3100-01")
        down[0] = True
        await client.notify("ChangeService", {"MobileTel": "13300000005", "IpcamNum": 9})
        for _ in range(100):
            if (await store.due_outbox(1e18))[0].attempts:
                break
            await _spin()
        down[0] = False
        clock.advance(1)
        await client.flush()
        clock.advance(0)  # the reconciliation scheduled by the first answer after the outage
        for _ in range(200):
            if await group.store.get_subscriber("13300000004") is not None:
                break
            await _spin()
        self.assertIsNotNone(await group.store.get_subscriber("13300000004"), "not reconciled after the outage")

    # Issue 14 item 10 ----------------------------------------------------------------------------

    async def test_i14_10_province_acts_only_in_its_number_ranges(self) -> None:
        group = GroupOnLoopback(self, GroupSettings(
            provinces={"3100-01": SH, "1100-01": BJ}, numbers={"133": "3100-01", "189": "1100-01"},
            mcu_urls={"133": "http://sh.example.cn/soap/mcu"}))
        number = "13300000888"
        # 1100 opens a number in 3100's prefix: refused, nothing recorded.
        self.assertEqual(await group.result("OpenService", "1100-01", BJ, MobileTel=number, IpcamNum=2), 255)
        self.assertIsNone(await group.store.get_subscriber(number))
        # 3100's own OpenService works; 1100 can neither change nor cancel it.
        self.assertEqual(await group.result("OpenService", "3100-01", SH, MobileTel=number, IpcamNum=2), 0)
        self.assertEqual(await group.result("ChangeService", "1100-01", BJ, MobileTel=number, IpcamNum=9), 255)
        self.assertEqual(await group.result("CancelService", "1100-01", BJ, MobileTel=number), 255)
        kept = await group.store.get_subscriber(number)
        self.assertEqual((kept.province, kept.ipcam_num) if kept else None, ("3100-01", 2))
        # A number no configured prefix covers belongs to nobody.
        self.assertEqual(await group.result("OpenService", "1100-01", BJ, MobileTel="15000000001", IpcamNum=1), 255)

        # Address reports: 1100 may not report 3100's McuUrl (configured, or reported by 3100).
        sh = {"CmsVer": "1", "McuUrl": "http://127.0.0.31:8080/soap/mcu", "DevUrl": "http://127.0.0.31:8080/register"}
        self.assertEqual(await group.result("ReportAddress", "3100-01", SH, **sh), 0)
        self.assertEqual(await group.result("ReportAddress", "1100-01", BJ, **sh), 255)
        self.assertEqual(await group.result("ReportAddress", "1100-01", BJ, CmsVer="1",
                                            McuUrl="http://sh.example.cn/soap/mcu",
                                            DevUrl="http://127.0.0.11/register"), 255)
        self.assertEqual(await group.result("ReportAddress", "1100-01", BJ, CmsVer="1",
                                            McuUrl="http://127.0.0.11/soap/mcu",
                                            DevUrl="http://127.0.0.11/register"), 0)
        answer = await group.call("GetMcuUrl", "0-0", "", MobileTel=number)
        self.assertEqual(answer["McuUrl"], sh["McuUrl"])

        # With no ranges configured (the shipped default) a separate group refuses every number.
        bare = GroupOnLoopback(self, GroupSettings(provinces={"3100-01": SH}))
        self.assertEqual(await bare.result("OpenService", "3100-01", SH, MobileTel=number, IpcamNum=2), 255)
        # The province a process runs itself (the demo) serves every number nobody else's prefix covers.
        bare.service.trust_own_province("3100-01", SH)
        self.assertEqual(await bare.result("OpenService", "3100-01", SH, MobileTel=number, IpcamNum=2), 0)

    # Issue 14 item 11 ----------------------------------------------------------------------------

    async def test_i14_11_cms_password_guessing_throttled(self) -> None:
        clock = Clock()
        group = GroupOnLoopback(self, GroupSettings(provinces={"3100-01": SH}, numbers={"133": "3100-01"}), clock)
        report = {"CmsVer": "1", "McuUrl": "http://127.0.0.1:1/soap/mcu", "DevUrl": "http://127.0.0.1:1/register"}
        # The rightful province has been heard from its address.
        self.assertEqual(await group.result("ReportAddress", "3100-01", SH, **report), 0)

        # One stranger, 300 guesses: only the first 5 are checked, then the source is not heard.
        checked = 0
        original = group.service._authenticate

        def counting(province: str, password: str) -> int:
            nonlocal checked
            checked += 1
            return original(province, password)

        group.service._authenticate = counting  # type: ignore[method-assign]
        results = [await group.result("ReportAddress", "3100-01", f"guess-{n}", "127.0.0.2", **report)
                   for n in range(300)]
        self.assertEqual(set(results), {2})
        self.assertEqual(checked, 5)
        # The stranger learns nothing even with the right password; the province is not locked out.
        self.assertEqual(await group.result("ReportAddress", "3100-01", SH, "127.0.0.2", **report), 2)
        self.assertEqual(await group.result("ReportAddress", "3100-01", SH, "127.0.0.1", **report), 0)
        # Unknown provinces count against the source too.
        self.assertEqual(await group.result("OpenService", "9900-01", "x", "127.0.0.2", MobileTel="13300000001",
                                            IpcamNum=1), 2)

        # Back-off: heard again after 60 s; guessing on, the next block lasts 120 s.
        clock.advance(60)
        checked = 0
        for n in range(8):
            self.assertEqual(await group.result("ReportAddress", "3100-01", f"again-{n}", "127.0.0.2", **report), 2)
        self.assertEqual(checked, 5)
        clock.advance(60)
        self.assertEqual(await group.result("ReportAddress", "3100-01", SH, "127.0.0.2", **report), 2)
        clock.advance(60)
        self.assertEqual(await group.result("ReportAddress", "3100-01", SH, "127.0.0.2", **report), 0)

        # Guesses spread over many sources (4 each, under the per-source limit): after 20 the
        # province is heard only from sources that authenticated as it before.
        clock.advance(600)  # a new counting window
        checked = 0
        for host in range(3, 9):
            for n in range(4):
                await group.result("ReportAddress", "3100-01", f"spread-{n}", f"127.0.0.{host}", **report)
        self.assertEqual(checked, 20)
        self.assertEqual(await group.result("ReportAddress", "3100-01", SH, "127.0.0.20", **report), 2)
        self.assertEqual(await group.result("ReportAddress", "3100-01", SH, "127.0.0.1", **report), 0)
        self.assertEqual(await group.result("ReportAddress", "3100-01", SH, "127.0.0.2", **report), 0)
        clock.advance(61)
        self.assertEqual(await group.result("ReportAddress", "3100-01", SH, "127.0.0.20", **report), 0)

        # IPv6 sources count by /64: five addresses of one /64 are one source.
        for n in range(5):
            self.assertEqual((await group.soap.handle("ReportAddress", {
                "ProvinceNo": "3100", "CmsNo": "01", "CmsPassword": "v6-guess", **report}, f"2001:db8:1::{n + 1}:4000"))
                ["Result"], 2)
        answer = await group.soap.handle("ReportAddress", {"ProvinceNo": "3100", "CmsNo": "01", "CmsPassword": SH,
                                                              **report}, "2001:db8:1::ffff:4000")
        self.assertEqual(answer["Result"], 2, "another address of the same /64 is the same source")
        answer = await group.soap.handle("ReportAddress", {"ProvinceNo": "3100", "CmsNo": "01", "CmsPassword": SH,
                                                              **report}, "2001:db8:2::1:4000")
        self.assertEqual(answer["Result"], 0)


def _mobile(item: OutboxItem) -> str:
    return str(json.loads(item.payload)["MobileTel"])


async def _spin() -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, 0.01, lambda: None)
