"""The plugin's STUN and TURN roles, configured from the INI file, on real loopback sockets."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from globaleye.device.protocol import messages as m
from globaleye.platform.config import ConfigError, parse_config
from globaleye.platform.tap import PlatformService
from globaleye.store.sqlite import SQLiteStore
from globaleye.testing import platform_config
from globaleye.users.sms.fixture import SMGPFixture
from tests.util import http_client
from txturn import stun
from txturn.testing import stun_request


def roles_config(roles: str) -> str:
    """*roles* on loopback; every role's section set (port 0) whether it runs or not."""
    return platform_config(roles, public_host=None, cms_password=None, http={"port": 0}, gateway={"port": 0},
                           stun={"port": 0, "alternate_interface": "127.0.0.2", "alternate_port": 0},
                           turn={"port": 0, "relay_ports": "50000-50999", "allow_peers": "127.0.0.0/8",
                                 "users": "alice:secret"})


async def binding(port: int, attributes: dict[int, Any] | None = None) -> stun.Message:
    return await stun_request(("127.0.0.1", port), stun.Method.BINDING, attributes)


class RoleTests(TestCase):
    def start(self, roles: str) -> PlatformService:
        platform = PlatformService(parse_config(roles_config(roles)), SQLiteStore(":memory:"), reactor)
        platform.startService()
        self.addCleanup(platform.stopService)
        return platform

    async def test_stun_role(self) -> None:
        platform = self.start("stun")
        assert platform.stun is not None
        host, port = platform.stun.primary_address  # type: ignore[misc]
        answer = await binding(port)
        self.assertEqual(answer.msg_class, stun.Class.SUCCESS)
        self.assertEqual(answer.attributes[stun.Attr.XOR_MAPPED_ADDRESS][0], "127.0.0.1")
        self.assertEqual(platform.stun.alternate_address[0], "127.0.0.2")  # type: ignore[index]

    async def test_turn_port_in_register_response(self) -> None:
        """REGISTER_RES names the TURN port this process really listens on; it answers Binding."""
        platform = self.start("gateway, http, turn")
        assert platform.turn is not None
        turn_port = platform.turn.addresses["tcp"][1]
        http = http_client()
        response = await http.post(f"http://127.0.0.1:{platform.port_of('http')}/register",
                                   data=m.RegisterRequest(dev_id="81100000001", dev_key="k").to_xml())
        answer = m.RegisterResponse.from_xml(await response.content())
        self.assertEqual((answer.result, answer.turn_port), (0, turn_port))
        reply = await binding(platform.turn.addresses["udp"][1])
        self.assertEqual(reply.msg_class, stun.Class.SUCCESS)


class SmsRoleTests(TestCase):
    """``[sms] backend = smgp``: a verification code requested by a client reaches the SMS gateway."""

    async def test_code_through_smgp(self) -> None:
        fixture = SMGPFixture({"10000001": "s3cret"})
        listening = fixture.listen(reactor)
        self.addCleanup(listening.stopListening)
        port = listening.getHost().port
        config = parse_config(roles_config("gateway, http") + (
            f"[sms]\nbackend = smgp\nport = {port}\nclient_id = 10000001\nsecret = s3cret\n"
            "src_term_id = 106590001\n"))
        platform = PlatformService(config, SQLiteStore(":memory:"), reactor)
        platform.startService()
        self.addCleanup(platform.stopService)
        result = await platform.accounts.request_sms_code("13300000001", 0, "127.0.0.1:5000")
        self.assertEqual(result, 0)
        await fixture.wait_for_submissions(1)
        [(dest, text)] = fixture.messages()
        self.assertEqual(dest, ("13300000001",))
        self.assertRegex(text, r"\b\d{6}\b")

    def test_smgp_needs_account(self) -> None:
        with self.assertRaises(ConfigError) as e:
            parse_config(roles_config("gateway") + "[sms]\nbackend = smgp\n")
        self.assertIn("client_id", str(e.exception))
