"""globaleye.testing's platform-configuration builder and starter (issue 10 item 6)."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from globaleye.platform.config import parse_config
from globaleye.testing import CMS_PASSWORD, main, platform_config, start_platform, test_modules


class PlatformConfigTests(TestCase):
    def test_defaults(self) -> None:
        """Loopback, every running role on port 0, open enrollment, the province's secret, memory database."""
        config = parse_config(platform_config("gateway, http, group, turn"))
        self.assertEqual(config["globaleye"]["roles"], ("gateway", "http", "group", "turn"))
        self.assertEqual(config["globaleye"]["public_host"], "127.0.0.1")
        self.assertEqual([config[s]["port"] for s in ("http", "gateway", "turn")], [0, 0, 0])
        self.assertEqual(config["enrollment"]["mode"], "open")
        self.assertEqual(config["province"]["cms_password"], CMS_PASSWORD)
        self.assertEqual(config["database"]["url"], "sqlite:///:memory:")
        self.assertNotEqual(config["stun"]["port"], 0, "a role not run keeps its default")
        self.assertEqual(config["limits"]["per_address"], parse_config("")["limits"]["per_address"])

    def test_explicit_choices_and_overrides(self) -> None:
        text = platform_config("gateway", enrollment_mode=None, per_address=0, cms_password=None, public_host=None,
                               data_dir="/tmp/x", gateway={"port": 1234, "command_timeout": 2}, soap="sms_interval = 0.5")
        config = parse_config(text)
        defaults = parse_config("")
        self.assertEqual(config["enrollment"]["mode"], defaults["enrollment"]["mode"])
        self.assertEqual(config["limits"]["per_address"], 0)
        self.assertEqual(config["province"]["cms_password"], "")
        self.assertEqual((config["gateway"]["port"], config["gateway"]["command_timeout"]), (1234, 2.0))
        self.assertEqual(config["soap"]["sms_interval"], 0.5)
        self.assertEqual(config["globaleye"]["data_dir"], "/tmp/x")
        self.assertEqual(text.count("[gateway]"), 1)

    def test_start_platform_from_text_and_config(self) -> None:
        platform = start_platform(self, platform_config(), reactor)
        self.assertTrue(platform.running)
        self.assertNotEqual(platform.port_of("http"), 0)
        other = start_platform(self, parse_config(platform_config("gateway")), reactor)
        self.assertNotEqual(other.port_of("gateway"), 0)

    def test_fast_and_slow_lists(self) -> None:
        names = test_modules()
        self.assertIn("tests.unit.test_iosim_session", names)
        self.assertIn("tests.unit.test_iosim_session", test_modules(kind="unit"))
        self.assertNotIn("tests.unit.test_iosim_session", test_modules(kind="interop"))
        self.assertEqual(main(["nonsense"]), 2)
