"""TLS hardening (issue 9 item 14, issue 14 items 12 and 13), on real loopback sockets.

- HTTPS: ``[http] tls_port`` serves the same site (register, redirect, SOAP) over TLS; zeep and a
  simulated camera use it with the test's own certificate.
- Configuration: a TLS listener without a usable certificate is refused by ``config check`` and
  by twistd, with the file and the key named and no traceback.
- One TLS profile on every listener (HTTPS, RTSPS, TURN over TLS): TLS 1.2+ only, forward-secret
  AEAD suites only, the server's order winning; checked with Python's ssl module and with nmap's
  ``ssl-enum-ciphers``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import random
import re
import shutil
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import requests
import zeep
from twisted.internet import reactor, threads
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.platform.config import parse_config
from globaleye.platform.tap import PlatformService
from globaleye.sim.camera import SimulatedCamera, Timing, device_key, http_client
from globaleye.sim.state import CameraState
from globaleye.store import Device
from globaleye.store.sqlite import SQLiteStore
from globaleye.users.accounts import RecordingSmsSender
from tests.util import ROOT, run, until

NMAP = shutil.which("nmap")
PASSWORD = "correct horse"


def make_certificate(directory: str, name: str = "server") -> tuple[str, str]:
    """A self-signed RSA certificate for 127.0.0.1 and localhost (as SANs); returns (cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    directory = os.path.abspath(directory)  # twistd and config check run elsewhere
    os.makedirs(directory, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def platform_config(cert: str, key: str, roles: str = "gateway, http, group") -> str:
    return f"""
[globaleye]
roles = {roles}
public_host = 127.0.0.1
[http]
port = 0
tls_port = 0
tls_cert = {cert}
tls_key = {key}
[gateway]
port = 0
[soap]
sms_interval = 0.01
[rtsp]
port = 0
tls_port = 0
tls_cert = {cert}
tls_key = {key}
[turn]
port = 0
tls_port = 0
tls_cert = {cert}
tls_key = {key}
"""


def start_platform(test: TestCase, text: str) -> PlatformService:
    platform = PlatformService(parse_config(text), SQLiteStore(":memory:"), reactor)
    platform.startService()
    test.addCleanup(platform.stopService)
    return platform


class HttpsTests(TestCase):
    """Issue 9 item 14: SOAP passwords and /register DevKeys over HTTPS."""

    timeout = 60

    def setUp(self) -> None:
        self.cert, self.key = make_certificate(self.mktemp())
        self.platform = start_platform(self, platform_config(self.cert, self.key))
        self.sms = RecordingSmsSender()
        self.platform.accounts.sms_sender = self.sms
        self.https = f"https://127.0.0.1:{self.platform.port_of('https')}"

    async def call(self, client: zeep.Client, operation: str, **values: Any) -> Any:
        return await threads.deferToThread(getattr(client.service, operation), **values)

    async def test_i9_14_soap_over_https(self) -> None:
        session = requests.Session()
        session.verify = self.cert  # the platform's own certificate is the only trusted one
        session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides verify
        session.headers["Connection"] = "close"
        self.addCleanup(session.close)
        transport = zeep.Transport(session=session, timeout=20, operation_timeout=20)
        client = await threads.deferToThread(zeep.Client, self.https + "/soap/mcu?wsdl", transport=transport)
        # The WSDL sends zeep back to the address it came from, https included.
        self.assertTrue(client.service._binding_options["address"].startswith(self.https + "/soap/mcu"))
        mobile = "13300000001"
        self.assertEqual(await self.call(client, "GetSmsCode", MobileTel=mobile, Type=0), 0)
        self.assertEqual(await self.call(client, "RegisterUser", MobileTel=mobile, Password=PASSWORD,
                                         SmsKey=self.sms.last_code(mobile)), 0)
        login = await self.call(client, "Login", Account=mobile, Password=PASSWORD, Version="1.2")
        self.assertEqual(login.Result, 0)
        # A client that does not trust the certificate gets nothing (no silent downgrade).
        with self.assertRaises(requests.exceptions.SSLError):
            await threads.deferToThread(requests.get, self.https + "/soap/mcu?wsdl", timeout=10,
                                        headers={"Connection": "close"})

    async def test_i9_14_device_registers_over_https(self) -> None:
        dev_id = "81100000001"
        http = http_client(reactor, ca_file=self.cert)
        self.addCleanup(http.close)
        # Enrollment is closed by default: the operator imports the camera first.
        await self.platform.store.import_devices([Device(dev_id=dev_id, dev_key=device_key("test", dev_id),
                                                         manufacturer_no="811", model="sim")])
        camera = SimulatedCamera(
            CameraState.for_device(dev_id, device_key("test", dev_id), rtsp_local_port=8554), reactor,
            register_url=self.https + "/register", timing=Timing(backoff_initial=0.05, backoff_max=0.2),
            rng=random.Random(1), http=http)
        camera.start()
        self.addCleanup(camera.stop)
        await camera.went_online
        await until(lambda: self.platform.gateway.is_online(dev_id))
        self.assertIsNotNone(await self.platform.store.get_device(dev_id))


async def twistd(test: TestCase, config_text: str) -> tuple[str, int]:
    path = Path(test.mktemp() + ".ini").absolute()
    path.write_text(config_text, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
                         "--logfile=-", "globaleye", "--config", str(path)], env=env, path=str(ROOT), reactor=reactor)
    return (out + err).decode(errors="replace"), code


async def config_check(test: TestCase, config_text: str) -> tuple[str, int]:
    path = Path(test.mktemp() + ".ini").absolute()
    path.write_text(config_text, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-m", "globaleye.cli", "--config", str(path), "config", "check"], env=env, path=str(ROOT),
        reactor=reactor)
    return (out + err).decode(errors="replace"), code


class TlsConfigurationTests(TestCase):
    """Issue 14 item 12: a TLS listener without a usable certificate stops start-up, naming file and key."""

    timeout = 60

    @staticmethod
    def conf(http: str = "", rtsp: str = "", turn: str = "") -> str:
        # Ports of a process that must never get to listen; the roles make every TLS listener count.
        return ("[globaleye]\nroles = gateway, http, group, rtsp, turn\n[gateway]\nport = 1\n"
                f"[http]\nport = 1\n{http}[rtsp]\nport = 1\n{rtsp}[turn]\nport = 1\n{turn}")

    async def assert_refused(self, text: str, expected: str) -> None:
        for name, (output, code) in (("twistd", await twistd(self, text)),
                                     ("config check", await config_check(self, text))):
            self.assertNotEqual(code, 0, f"{name} accepted it:\n{output}")
            self.assertIn(expected, output, name)
            self.assertEqual(len(output.strip().splitlines()), 1, f"{name}: not one line:\n{output}")

    async def test_i14_12_tls_configuration_refused_with_file_and_key(self) -> None:
        cert, key = make_certificate(self.mktemp())
        _other_cert, other_key = make_certificate(self.mktemp(), "other")
        not_pem = os.path.abspath(self.mktemp())
        Path(not_pem).write_text("not a certificate\n")
        # TURN over TLS without a certificate: was "OK", and no TLS listener.
        await self.assert_refused(self.conf(turn="tls_port = 5349\n"), "[turn] tls_port needs tls_cert and tls_key")
        # A missing file: was an OpenSSL traceback naming no key.
        await self.assert_refused(self.conf(turn=f"tls_port = 5349\ntls_cert = /nope.pem\ntls_key = {key}\n"),
                                  "[turn] tls_cert: cannot read /nope.pem: No such file")
        await self.assert_refused(self.conf(rtsp=f"tls_port = 8555\ntls_cert = {cert}\ntls_key = /nope.key\n"),
                                  "[rtsp] tls_key: cannot read /nope.key: No such file")
        # Not PEM, and a key that belongs to another certificate.
        await self.assert_refused(self.conf(http=f"tls_port = 8443\ntls_cert = {not_pem}\ntls_key = {key}\n"),
                                  f"[http] tls_cert: {not_pem}: not a usable PEM certificate")
        await self.assert_refused(self.conf(rtsp=f"tls_port = 8555\ntls_cert = {cert}\ntls_key = {other_key}\n"),
                                  f"[rtsp] tls_key: {other_key} does not match the certificate {cert}")
        # A good certificate passes the check.
        output, code = await config_check(self, f"[turn]\ntls_port = 5349\ntls_cert = {cert}\ntls_key = {key}\n")
        self.assertEqual(code, 0, output)
        self.assertIn(": OK", output)


def handshake(port: int, *, ciphers: str | None = None, version: ssl.TLSVersion | None = None) -> tuple[str, str]:
    """A blocking TLS handshake with Python's ssl module: (version, suite), or ssl.SSLError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if version is not None:
        context.minimum_version = context.maximum_version = version
    if ciphers is not None:
        context.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        suite = tls.cipher()
        assert suite is not None
        return str(tls.version()), suite[0]


class TlsProfileTests(TestCase):
    """Issue 14 item 13: one TLS profile, Mozilla "intermediate", on HTTPS, RTSPS and TURN over TLS."""

    timeout = 120

    def setUp(self) -> None:
        cert, key = make_certificate(self.mktemp())
        self.platform = start_platform(self, platform_config(cert, key, "gateway, http, group, rtsp, turn"))
        assert self.platform.turn is not None
        self.listeners = {"https": self.platform.port_of("https"), "rtsps": self.platform.port_of("rtsps"),
                          "turn-tls": self.platform.turn.addresses["tls"][1]}

    async def test_i14_13_only_forward_secret_aead_suites_server_preference(self) -> None:
        tls12 = ssl.TLSVersion.TLSv1_2
        for name, port in self.listeners.items():
            # Static-RSA key exchange with CBC-SHA1 only: refused (was accepted).
            for weak in ("AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384"):
                with self.assertRaises(ssl.SSLError, msg=f"{name} accepted {weak}"):
                    await threads.deferToThread(handshake, port, ciphers=weak, version=tls12)
            # TLS 1.1 (and so 1.0): refused, even by a client that would take any suite.
            with self.assertRaises(ssl.SSLError, msg=f"{name} accepted TLS 1.1"):
                await threads.deferToThread(handshake, port, ciphers="ALL:@SECLEVEL=0", version=ssl.TLSVersion.TLSv1_1)
            # ECDHE with AES-GCM: accepted on TLS 1.2; TLS 1.3 too.
            self.assertEqual(await threads.deferToThread(handshake, port, ciphers="ECDHE-RSA-AES128-GCM-SHA256",
                                                         version=tls12),
                             ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"), name)
            self.assertEqual((await threads.deferToThread(handshake, port))[0], "TLSv1.3", name)
            # The client prefers AES-128 (allowed, weaker); the server's order wins: AES-256-GCM.
            self.assertEqual(await threads.deferToThread(
                handshake, port, ciphers="ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384", version=tls12),
                ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384"), f"{name}: the client's preference won")

    async def test_i14_13_nmap_grades_every_tls_listener_a(self) -> None:
        if NMAP is None:
            raise SkipTest("nmap not installed (apt-get install -y nmap)")
        ports = ",".join(str(port) for port in self.listeners.values())
        # "+" runs the script whatever nmap thinks the (unusual) port is.
        for _attempt in range(2):
            result = await run(NMAP, ["-Pn", "-n", "--script", "+ssl-enum-ciphers", "-p", ports, "127.0.0.1"],
                               timeout=90)
            self.assertEqual(result.code, 0, result.err)
            sections = dict(re.findall(r"^(\d+)/tcp .*?\n((?:\|.*\n)+)", result.out, re.M))
            # On a loaded machine a probe may time out and leave a listener's report short: once more.
            if all("least strength" in sections.get(str(port), "") for port in self.listeners.values()):
                break
        for name, port in self.listeners.items():
            report = sections.get(str(port), "")
            self.assertIn("least strength: A", report, f"{name}:\n{result.out}")
            self.assertIn("cipher preference: server", report, name)
            self.assertIn("TLSv1.2:", report, name)
            self.assertIn("TLSv1.3:", report, name)
            for weak in ("TLSv1.0:", "TLSv1.1:", "_CBC_", "TLS_RSA_WITH", "SHA1", "3DES", "RC4"):
                self.assertNotIn(weak, report, f"{name}:\n{report}")
            suites = re.findall(r"\b(TLS_\w+) ", report)
            self.assertTrue(suites, report)
            for suite in suites:
                if not suite.startswith(("TLS_AKE_WITH_", "TLS_AES_", "TLS_CHACHA20_")):  # TLS 1.3 names
                    self.assertRegex(suite, r"^TLS_ECDHE_(RSA|ECDSA)_WITH_(AES_(128|256)_GCM|CHACHA20_POLY1305)_SHA",
                                     name)


class CoturnOverProfileTests(TestCase):
    """The profile keeps coturn's turnutils_uclient working over TLS (as txturn's own default context does)."""

    timeout = 120

    async def test_i14_13_coturn_uclient_over_the_tls_profile(self) -> None:
        from tests.interop import test_turn_interop as interop
        from txturn.testing import start_server as plain_start_server
        if not interop.UCLIENT or not interop.PEER:
            raise SkipTest("coturn's turnutils_uclient/turnutils_peer not installed")
        from globaleye.guard.tls import ServerTLS

        async def start_server(testcase: Any, **overrides: Any) -> Any:
            # tls_cert/tls_key become the platform's context factory, as tap.py passes it.
            cert, key = overrides.pop("tls_cert"), overrides.pop("tls_key")
            return await plain_start_server(testcase, tls_context=ServerTLS(cert, key), **overrides)

        self.patch(interop, "start_server", start_server)
        for flags, expected in ((["-S", "-t", "-c"], 20), (["-S", "-T"], 40)):
            udp_peer = "-T" not in flags
            await interop.CoturnUclientTests._uclient(self, flags, udp_peer=udp_peer,  # type: ignore[arg-type]
                                                      expect_msgs=expected, tls=True)
