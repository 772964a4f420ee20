"""/register (§7.2) and /redirect (§5) over real HTTP on loopback, against the real service tree."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from globaleye.device.protocol import messages as m
from globaleye.platform.config import parse_config
from globaleye.platform.tap import PlatformService
from globaleye.store import Device
from globaleye.store.sqlite import SQLiteStore
from tests.util import http_client, registration_config

treq = http_client()


class RegistrationTests(TestCase):
    mode = "open"

    def setUp(self) -> Any:
        config = parse_config(registration_config(self.mode))
        self.platform = PlatformService(config, SQLiteStore(":memory:"), reactor)
        self.platform.startService()
        self.addCleanup(self.platform.stopService)
        self.base = f"http://127.0.0.1:{self.platform.port_of('http')}"

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        response = await treq.post(self.base + path, data=body, headers={b"Content-Type": [b"text/xml"]})
        return response.code, await response.content()

    async def register(self, dev_id: str = "81100000001", key: str = "k1", **kwargs: Any) -> m.RegisterResponse:
        request = m.RegisterRequest(manufacturer_no=dev_id[:3], mode="IPC-X", dev_type=1, dev_id=dev_id,
                                    dev_key=key, **kwargs)
        code, body = await self.post("/register", request.to_xml())
        self.assertEqual(code, 200, body)
        return m.RegisterResponse.from_xml(body)


class OpenEnrollmentTests(RegistrationTests):
    async def test_enrol_and_answer(self) -> None:
        response = await self.register()
        self.assertEqual(response.result, 0)
        self.assertEqual((response.nat_ip, response.nat_port), ("127.0.0.1", self.platform.port_of("gateway")))
        self.assertEqual((response.backup_nat_ip, response.backup_nat_port), ("127.0.0.2", 8589))
        self.assertEqual((response.turn_ip, response.turn_port), ("127.0.0.1", 3478))
        self.assertEqual((response.ftp_ip, response.ftp_account, response.ftp_password), ("127.0.0.3", "pics", "pw"))
        self.assertEqual(len(response.time), 14)
        device = await self.platform.store.get_device("81100000001")
        self.assertEqual((device.source, device.dev_key, device.model), ("open", "k1", "IPC-X"))

    async def test_key_pinned(self) -> None:
        self.assertEqual((await self.register()).result, 0)
        self.assertEqual((await self.register(key="other")).result, 2)

    async def test_five_minute_rule(self) -> None:
        """§7.2's interval is refused only to a device online now (tests/integration/test_hardening_enroll.py); one
        with no gateway session (it may never have got the first answer) gets the same answer again."""
        first = await self.register()
        again = await self.register()
        self.assertEqual((first.result, again.result), (0, 0))
        self.assertEqual((again.nat_ip, again.nat_port), (first.nat_ip, first.nat_port))

    async def test_unknown_vendor(self) -> None:
        self.assertEqual((await self.register(dev_id="99900000001")).result, 1)
        self.assertIsNone(await self.platform.store.get_device("99900000001"))

    async def test_bad_devid(self) -> None:
        self.assertEqual((await self.register(dev_id="8110000001")).result, 1)

    async def test_spec_example_noise(self) -> None:
        body = (b'<?xml version="1.0" encoding=" UTF-8" ?>\n<REGISTER_REQ>\n  <ManufacturerNo>811</ManufacturerNo>\n'
                b'  <Mode>DS-2CD</Mode>\n  <DevType>1</DevType>\n  <DevID> 81100000005</ DevID>\n'
                b'  <DevKey>abc</DevKey>\n</REGISTER_REQ>')
        code, answer = await self.post("/register", body)
        self.assertEqual(code, 200)
        self.assertEqual(m.RegisterResponse.from_xml(answer).result, 0)

    async def test_malformed_is_400(self) -> None:
        for body in (b"", b"<REGISTER_REQ><DevID>", b"<LOGIN_REQ/>", b"not xml at all",
                     b'<!DOCTYPE x [<!ENTITY a "aaaa">]><REGISTER_REQ><DevID>&a;</DevID></REGISTER_REQ>'):
            code, answer = await self.post("/register", body)
            self.assertEqual(code, 400, body)
            self.assertIn(b"malformed", answer)
        self.assertEqual(await self.platform.store.list_devices(), [])

    async def test_oversized_is_413(self) -> None:
        code, _ = await self.post("/register", b"<REGISTER_REQ>" + b" " * 70000 + b"</REGISTER_REQ>")
        self.assertEqual(code, 413)

    async def test_get_is_405(self) -> None:
        response = await treq.get(self.base + "/register")
        self.assertEqual(response.code, 405)
        await response.content()

    async def test_redirect_to_self(self) -> None:
        """In the demo, group and province run together: the redirect points at our /register."""
        code, body = await self.post("/redirect", m.RedirectRequest(dev_id="81100000001", dev_key="k1").to_xml())
        self.assertEqual(code, 200)
        response = m.RedirectResponse.from_xml(body)
        self.assertEqual((response.result, response.lcms_url), (0, self.base + "/register"))

    async def test_redirect_assigned(self) -> None:
        await self.platform.store.assign_province("81100000009", "http://127.0.0.8:8080/register", 0)
        code, body = await self.post("/redirect", m.RedirectRequest(dev_id="81100000009").to_xml())
        self.assertEqual(m.RedirectResponse.from_xml(body).lcms_url, "http://127.0.0.8:8080/register")


class ClosedEnrollmentTests(RegistrationTests):
    mode = "closed"

    async def test_unknown_refused(self) -> None:
        self.assertEqual((await self.register()).result, 1)
        self.assertIsNone(await self.platform.store.get_device("81100000001"))

    async def test_imported_accepted(self) -> None:
        await self.platform.store.import_devices([Device(dev_id="81100000001", dev_key="k1")])
        self.assertEqual((await self.register(key="bad")).result, 2)
        self.assertEqual((await self.register()).result, 0)


class GroupOnlyTests(TestCase):
    async def test_unassigned_device(self) -> None:
        config = parse_config(registration_config(None, roles="group"))
        platform = PlatformService(config, SQLiteStore(":memory:"), reactor)
        platform.startService()
        self.addCleanup(platform.stopService)
        self.assertNotIn("gateway", platform.ports)
        url = f"http://127.0.0.1:{platform.port_of('http')}"
        response = await treq.post(url + "/redirect", data=m.RedirectRequest(dev_id="81100000001").to_xml())
        self.assertEqual(m.RedirectResponse.from_xml(await response.content()).result, 1)
        response = await treq.post(url + "/register", data=b"<REGISTER_REQ/>")
        self.assertEqual(response.code, 404)
        await response.content()

