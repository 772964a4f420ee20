"""Configuration: the schema, the documented default file, and start-up errors from twistd itself."""

from __future__ import annotations

import configparser
import os
import re
import sys
from pathlib import Path

import attrs
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from globaleye.device.gateway import GatewaySettings
from globaleye.device.registration import RegistrationSettings
from globaleye.group.province import ProvinceSettings
from globaleye.platform.bindings import BINDINGS, settings
from globaleye.platform.config import SCHEMA, ConfigError, load_config, parse_config
from globaleye.store import RETENTION_KINDS
from globaleye.store.retention import RetentionSettings
from globaleye.users.accounts import AccountSettings
from tests.util import ROOT

DEFAULT_INI = ROOT / "etc" / "globaleye.ini"


def ini_key_comments(text: str) -> dict[tuple[str, str], str]:
    """(section, key) -> the comment lines right above the key, joined into one line."""
    comments: dict[tuple[str, str], str] = {}
    section, lines = "", []
    for line in text.splitlines():
        if line.startswith("["):
            section, lines = line.strip().strip("[]"), []
        elif line.startswith("#"):
            lines.append(line[1:].strip())
        elif not line.strip():
            lines = []
        else:
            comments[(section, line.partition("=")[0].strip())] = " ".join(" ".join(lines).split())
            lines = []
    return comments


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

    def test_default_file_shows_the_schema_defaults(self) -> None:
        """Each key of etc/globaleye.ini shows the schema's default, in the schema's order (issue 10 item 4):
        a default changed in one place and not the other fails here."""
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read(DEFAULT_INI, encoding="utf-8")
        self.assertEqual(parser.sections(), list(SCHEMA))
        for section, keys in SCHEMA.items():
            self.assertEqual(list(parser[section]), list(keys), f"[{section}] key order")
            for key, spec in keys.items():
                self.assertEqual(parser[section][key], spec.default, f"[{section}] {key}")

    def test_default_file_documents_each_key_as_the_schema(self) -> None:
        """The comment right above each key of etc/globaleye.ini is the schema's documentation of the key
        (wrapped as the file likes; a paragraph followed by an empty line introduces a section or a group)."""
        self.assertEqual(ini_key_comments(DEFAULT_INI.read_text(encoding="utf-8")),
                         {(section, key): " ".join(spec.doc.split())
                          for section, keys in SCHEMA.items() for key, spec in keys.items()})

    def test_readme_table_shows_the_schema_defaults(self) -> None:
        """The README's configuration table names only schema keys, and the literal defaults it shows
        (`360`, empty) are the schema's; derived ones ("public host", `[stun] port`) are not checked."""
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        section, checked = "", 0
        for line in readme.splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not line.startswith("| ") or len(cells) != 4 or not cells[1].startswith("`"):
                continue
            section = cells[0].strip("`[]") or section
            keys = re.findall(r"`([a-z_0-9]+)`", cells[1])
            for key in keys:
                self.assertIn(key, SCHEMA.get(section, {}), f"README: [{section}] {key}")
            values = [item.strip() for item in re.findall(r"`[^`]*`|[^,`]+", cells[2]) if item.strip()]
            if values == ["empty"]:
                values *= len(keys)
            if len(values) != len(keys):
                continue
            for key, value in zip(keys, values, strict=True):
                literal = "" if value == "empty" else value.strip("`") if value.startswith("`") else None
                if literal is not None and "[" not in literal:
                    self.assertEqual(literal, SCHEMA[section][key].default, f"README: [{section}] {key}")
                    checked += 1
        self.assertGreater(checked, 60)

    def test_disagreeing_default_file_detected(self) -> None:
        """The checks above are not vacuous: a default or a comment that differs from the schema's is caught."""
        text = DEFAULT_INI.read_text(encoding="utf-8").replace("heartbeat_timeout = 360", "heartbeat_timeout = 361")
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(text)
        self.assertNotEqual(parser["gateway"]["heartbeat_timeout"], SCHEMA["gateway"]["heartbeat_timeout"].default)
        text = text.replace("# Seconds without a heartbeat", "# Seconds with no heartbeat")
        self.assertNotEqual(ini_key_comments(text)[("gateway", "heartbeat_timeout")],
                            SCHEMA["gateway"]["heartbeat_timeout"].doc)

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


class BindingTests(SynchronousTestCase):
    """The settings classes are filled from the schema (globaleye.platform.bindings, issue 10 item 4)."""

    def test_bound_keys_exist(self) -> None:
        for cls, binding in BINDINGS.items():
            fields = {field.name for field in attrs.fields(cls)}
            self.assertLessEqual(set(binding.keys) | binding.computed, fields, cls.__name__)
            for field, (section, key) in binding.bound(cls).items():
                self.assertIn(key, SCHEMA[section], f"{cls.__name__}.{field}")

    def test_class_defaults_are_the_schema_defaults(self) -> None:
        """A default declared twice must say the same: the attrs class default of every bound field equals
        the parsed schema default of its key (the schema's, the shipped behaviour, is the truth)."""
        defaults = parse_config("")
        checked = 0
        for cls, binding in BINDINGS.items():
            if not binding.check_defaults:
                continue
            for field in attrs.fields(cls):
                if field.name not in binding.bound(cls) or field.default is attrs.NOTHING:
                    continue
                default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default  # type: ignore[attr-defined]
                section, key = binding.bound(cls)[field.name]
                self.assertEqual(default, defaults[section][key], f"{cls.__name__}.{field.name} vs [{section}] {key}")
                checked += 1
        self.assertGreater(checked, 80)
        retention = defaults["retention"]
        self.assertEqual(RetentionSettings().days, {kind: retention[kind] for kind in RETENTION_KINDS})

    def test_settings_built_from_config(self) -> None:
        config = parse_config("[gateway]\nheartbeat_timeout = 90\n[enrollment]\nmode = open\n"
                              "[soap]\nmax_devices_per_account = 4\n")
        self.assertEqual(settings(config, GatewaySettings).heartbeat_timeout, 90.0)
        registration = settings(config, RegistrationSettings, gateway_host="h", backup_gateway_port=0,
                                turn_host="h", turn_port=3478, backup_turn_port=0)
        self.assertEqual((registration.enrollment, registration.gateway_port), ("open", 8588))
        self.assertEqual(settings(config, AccountSettings, digest_realm="").max_devices, 4)
        self.assertEqual(settings(config, ProvinceSettings).default_ipcam_num, 4)

    def test_computed_fields_exactly(self) -> None:
        """A computed field forgotten, or a bound one given by hand, is a wiring mistake."""
        config = parse_config("")
        self.assertRaises(TypeError, settings, config, AccountSettings)
        self.assertRaises(TypeError, settings, config, GatewaySettings, heartbeat_timeout=1.0)
