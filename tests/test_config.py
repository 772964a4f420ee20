"""Configuration: the schema, the documented default file, and start-up errors from twistd itself."""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from globaleye.config import SCHEMA, ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INI = ROOT / "etc" / "globaleye.ini"


class SchemaTests(SynchronousTestCase):
    def test_default_file_documents_every_key(self) -> None:
        """etc/globaleye.ini and the schema agree key for key, and the file parses."""
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read(DEFAULT_INI, encoding="utf-8")
        self.assertEqual({s: set(parser[s]) for s in parser.sections()}, {s: set(k) for s, k in SCHEMA.items()})
        config = load_config(DEFAULT_INI)
        self.assertEqual(config["gateway"]["port"], 8588)
        self.assertEqual(config["enrollment"]["mode"], "closed")  # issue 9 item 2: safe for production
        self.assertIn("811", config["enrollment"]["vendors"])
        self.assertIn("824", config["enrollment"]["vendors"])
        self.assertNotIn("825", config["enrollment"]["vendors"])

    def test_unknown_key_named(self) -> None:
        with self.assertRaises(ConfigError) as e:
            parse_config("[gateway]\nprot = 1\n")
        self.assertIn("[gateway] unknown key 'prot'", str(e.exception))

    def test_unknown_section_named(self) -> None:
        self.assertRaises(ConfigError, parse_config, "[gatewya]\nport = 1\n")

    def test_bad_port(self) -> None:
        with self.assertRaises(ConfigError) as e:
            parse_config("[http]\nport = 70000\n")
        self.assertIn("[http] port = '70000'", str(e.exception))

    def test_bad_values(self) -> None:
        for text in ("[enrollment]\nmode = maybe\n", "[globaleye]\nroles = gateway, dns\n",
                     "[turn]\nrelay_ports = 5000\n", "[turn]\nallow_peers = 10.0.0.0/33\n",
                     "[turn]\nusers = alice\n", "[gateway]\nheartbeat_timeout = -1\n", "not ini"):
            self.assertRaises(ConfigError, parse_config, text)

    def test_typed_values(self) -> None:
        config = parse_config("[turn]\nrelay_ports = 50000-50100\nusers = alice:secret, bob:pw\n"
                              "allow_peers = 127.0.0.0/8\n")
        self.assertEqual(config["turn"]["relay_ports"], (50000, 50100))
        self.assertEqual(config["turn"]["users"], {"alice": "secret", "bob": "pw"})
        self.assertEqual(config["turn"]["allow_peers"], ("127.0.0.0/8",))

    def test_unreadable_file(self) -> None:
        with self.assertRaises(ConfigError) as e:
            load_config("/nonexistent/globaleye.ini")
        self.assertIn("/nonexistent/globaleye.ini", str(e.exception))


class TwistdStartupTests(TestCase):
    """``twistd globaleye`` refuses a bad configuration with the file and key named, exit non-zero."""

    async def twistd(self, config_text: str) -> tuple[bytes, int]:
        path = Path(self.mktemp() + ".ini").absolute()
        path.write_text(config_text, encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
                             "--logfile=-", "globaleye", "--config", str(path)], env=env, path=str(ROOT),
            reactor=reactor)
        return out + err, code

    async def test_unknown_key(self) -> None:
        output, code = await self.twistd("[gateway]\nprot = 8588\n")
        self.assertNotEqual(code, 0)
        self.assertIn(b"unknown key 'prot'", output)
        self.assertIn(b".ini", output)

    async def test_bad_port(self) -> None:
        output, code = await self.twistd("[gateway]\nport = eighty\n")
        self.assertNotEqual(code, 0)
        self.assertIn(b"[gateway] port", output)

    async def test_unreadable_database(self) -> None:
        output, code = await self.twistd("[database]\nurl = sqlite:////proc/no/such/dir/db.sqlite3\n"
                                         "[province]\ncms_password = x\n")
        self.assertNotEqual(code, 0)
        self.assertIn(b"[database] url", output)

    async def test_corrupt_database(self) -> None:
        path = Path(self.mktemp())
        path.write_bytes(b"this is not a database" * 100)
        output, code = await self.twistd(f"[database]\nurl = sqlite:///{path.absolute()}\n[province]\ncms_password = x\n")
        self.assertNotEqual(code, 0)
        self.assertIn(b"[database] url", output)
