"""Interoperability of ``txturn.stunserver`` with STUN clients nobody here wrote.

Each client runs as a child process under the real reactor (never ``subprocess.run``),
with a kill timer; each test skips with the reason when its client is missing.  Only
loopback addresses are bound: 127.0.0.1 is A1 and 127.0.0.2 is A2 (RFC 3489 §9.3), on
free ports.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import textwrap
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.util import Result
from tests.util import run as run_process
from txturn import stun
from txturn.stunserver import StunServerConfig, StunService, stun_service

A1 = "127.0.0.1"
A2 = "127.0.0.2"


def run(executable: str, args: list[str], timeout: float) -> defer.Deferred[Result]:
    """tests.util.run, with this interpreter's sys.path for the Python peers (pystun3, aioice)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return defer.Deferred.fromCoroutine(run_process(executable, args, timeout=timeout, env=env))


def _bindable(host: str) -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((host, 0))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise _skip(f"{name} is not installed (Debian: coturn / stun-client)")
    return path


def _skip(reason: str) -> Exception:
    from twisted.trial.unittest import SkipTest

    return SkipTest(reason)


class _ServerCase(TestCase):
    """Starts a four-socket server (or a primary-only one) on free loopback ports."""

    alternate = True

    def setUp(self) -> None:
        if self.alternate and not _bindable(A2):
            raise _skip(f"{A2} cannot be bound here; RFC 3489 tests need a second address")
        self.service: StunService = stun_service(
            StunServerConfig(
                interface=A1, port=0, alternate_interface=A2 if self.alternate else None
            )
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)
        assert self.service.primary_address is not None
        self.port = self.service.primary_address[1]
        self.alt_port = self.service.udp_addresses.get((0, 1), (A1, 0))[1]


class CoturnClientTests(_ServerCase):
    """coturn's turnutils_stunclient and turnutils_natdiscovery (RFC 5389/5780)."""

    @defer.inlineCallbacks
    def test_stunclient(self) -> Any:
        """Three answers: plain, then CHANGE-REQUEST ip+port with RESPONSE-PORT / PADDING.

        turnutils_stunclient switches to RFC 5780 itself because our answer has
        OTHER-ADDRESS; answers 2 and 3 must come from A2:P2.  It has no classic
        RFC 3489 mode (its options are -p, -L, -f only).
        """
        tool = _tool("turnutils_stunclient")
        result = yield run(tool, ["-p", str(self.port), A1], timeout=15)
        self.assertFalse(result.timed_out, result.out)
        self.assertEqual(result.code, 0, result.out + result.err)
        self.assertIn("RFC 5780 response 3", result.out)
        self.assertIn(f"Other addr: : {A2}:{self.alt_port}", result.out)
        self.assertIn(f"Response origin: : {A2}:{self.alt_port}", result.out)
        self.assertIn(f"UDP reflexive addr: {A1}:", result.out)
        self.assertNotIn("error", result.out)

    @defer.inlineCallbacks
    def test_natdiscovery(self) -> Any:
        """RFC 5780 mapping and filtering discovery: loopback is no NAT, EIM, EIF."""
        tool = _tool("turnutils_natdiscovery")
        result = yield run(tool, ["-m", "-f", "-L", A1, "-p", str(self.port), A1], timeout=30)
        self.assertFalse(result.timed_out, result.out)
        self.assertEqual(result.code, 0, result.out + result.err)
        self.assertIn("No NAT! (Endpoint Independent Mapping)", result.out)
        self.assertIn("Endpoint Independent Filtering", result.out)
        # Test II of the mapping discovery goes to A2:P1, test III to A2:P2.
        self.assertIn(f"Response origin: : {A2}:{self.port}", result.out)
        self.assertIn(f"Response origin: : {A2}:{self.alt_port}", result.out)


class CoturnWithoutAlternateTests(_ServerCase):
    """A primary-only server answers CHANGE-REQUEST with 420 (RFC 5780 §7.2)."""

    alternate = False

    @defer.inlineCallbacks
    def test_stunclient_forced_rfc5780(self) -> Any:
        """-f forces the change requests; both get 420, sent to RESPONSE-PORT if any.

        (turnutils_stunclient blocks in recv() without a timeout on the port it asked
        for with RESPONSE-PORT, so the 420 must go there, or it hangs.)
        """
        tool = _tool("turnutils_stunclient")
        result = yield run(tool, ["-f", "-p", str(self.port), A1], timeout=15)
        self.assertFalse(result.timed_out, result.out)
        self.assertEqual(result.out.count("The response is an error 420"), 2, result.out)
        self.assertIn(f"UDP reflexive addr: {A1}:", result.out)


class VovidaClientTests(_ServerCase):
    """The Vovida RFC 3489 client (Debian stun-client): its full NAT-type test."""

    @defer.inlineCallbacks
    def test_nat_type_open(self) -> Any:
        """Tests I, II, I(2) and III succeed; loopback is classified "Open" (exit 1).

        The client's exit status is its NAT type (1 = StunTypeOpen), not an error.
        """
        tool = _tool("stun")
        result = yield run(tool, [f"{A1}:{self.port}", "-v", "-i", A1], timeout=30)
        output = result.out + result.err  # -v writes its trace to stderr
        self.assertFalse(result.timed_out, output)
        self.assertIn("Primary: Open", output)
        self.assertEqual(result.code, 1, output)
        for test in ("test I = 1", "test II = 1", "test III = 1", "test I(2) = 1"):
            self.assertIn(test, output)
        self.assertIn("is nat  = 0", output)
        self.assertIn(f"ChangedAddress = {A2}:{self.alt_port}", output)
        # Vovida's test II asks for change-IP only (A2:P1), test III change-port (A1:P2).
        self.assertIn(f"SourceAddress = {A2}:{self.port}", output)
        self.assertIn(f"SourceAddress = {A1}:{self.alt_port}", output)
        self.assertNotIn("problem parsing", output)


PYSTUN_SCRIPT = textwrap.dedent(
    """
    import sys, stun
    print(stun.get_ip_info(source_ip="127.0.0.1", source_port=0,
                           stun_host="127.0.0.1", stun_port=int(sys.argv[1])))
    """
)


def _require_module(name: str) -> None:
    try:
        __import__(name)
    except ImportError:
        raise _skip(f"python module {name!r} is not installed") from None


class PyStun3Tests(_ServerCase):
    """pystun3: classic requests (no cookie), reads MAPPED/SOURCE/CHANGED-ADDRESS."""

    @defer.inlineCallbacks
    def test_open_internet(self) -> Any:
        _require_module("stun")
        result = yield run(sys.executable, ["-c", PYSTUN_SCRIPT, str(self.port)], timeout=30)
        self.assertFalse(result.timed_out, result.out + result.err)
        self.assertIn("('Open Internet', '127.0.0.1',", result.out, result.err)


class PyStun3WithoutAlternateTests(_ServerCase):
    """Without A2 the classic change request is dropped, not refused.

    pystun3 retransmits in a tight loop on any non-success response (its
    ``while not recvCorr`` loop has no exit for errors), so a 420 here would be a
    self-inflicted flood; silence makes it finish with "Symmetric UDP Firewall".
    """

    alternate = False

    @defer.inlineCallbacks
    def test_terminates(self) -> Any:
        _require_module("stun")
        result = yield run(sys.executable, ["-c", PYSTUN_SCRIPT, str(self.port)], timeout=40)
        self.assertFalse(result.timed_out, result.out + result.err)
        # pystun3 reports the (empty) result of the failed test II, hence the Nones.
        self.assertIn("('Symmetric UDP Firewall', None, None)", result.out, result.err)


AIOICE_SCRIPT = textwrap.dedent(
    """
    import socket, struct, sys
    from aioice import stun

    port, transport = int(sys.argv[1]), sys.argv[2]
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = "peer:local"
    request.attributes["PRIORITY"] = 1853817087
    request.attributes["ICE-CONTROLLING"] = 0x1234567890ABCDEF
    request.add_message_integrity(b"password")
    request.add_fingerprint()
    if transport == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.bind(("127.0.0.1", 0))
        s.sendto(bytes(request), ("127.0.0.1", port))
        data, _ = s.recvfrom(2048)
    else:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(bytes(request))
        head = s.recv(20, socket.MSG_WAITALL)
        data = head + s.recv(struct.unpack("!H", head[2:4])[0], socket.MSG_WAITALL)
    response = stun.parse_message(data)
    assert response.transaction_id == request.transaction_id
    print(response.message_class.name, response.attributes["XOR-MAPPED-ADDRESS"],
          s.getsockname()[1], "FINGERPRINT" in response.attributes, sep="|")
    """
)


class AioiceTests(_ServerCase):
    """aioice's STUN codec as a client (an ICE connectivity-check style request)."""

    @defer.inlineCallbacks
    def _check(self, transport: str) -> Any:
        _require_module("aioice")
        result = yield run(
            sys.executable, ["-c", AIOICE_SCRIPT, str(self.port), transport], timeout=20
        )
        self.assertFalse(result.timed_out, result.out + result.err)
        self.assertEqual(result.code, 0, result.err)
        klass, address, local_port, fingerprint = result.out.strip().split("|")
        self.assertEqual(klass, "RESPONSE")
        self.assertEqual(address, f"('127.0.0.1', {local_port})")
        self.assertEqual(fingerprint, "True")

    def test_udp(self) -> Any:
        return self._check("udp")

    def test_tcp(self) -> Any:
        return self._check("tcp")


class CrossCodecTests(TestCase):
    """Our codec and aioice's agree on each other's bytes (no network)."""

    def test_both_ways(self) -> None:
        _require_module("aioice")
        from aioice import stun as aio

        theirs = aio.Message(aio.Method.BINDING, aio.Class.REQUEST)
        theirs.attributes["USERNAME"] = "a:b"
        theirs.attributes["ICE-CONTROLLED"] = 7
        theirs.attributes["XOR-MAPPED-ADDRESS"] = ("2001:db8::1", 5)
        theirs.add_message_integrity(b"pw")
        theirs.add_fingerprint()
        data = bytes(theirs)
        ours = stun.decode(data)
        self.assertEqual(ours.attributes[stun.Attr.USERNAME], "a:b")
        self.assertEqual(ours.attributes[stun.Attr.XOR_MAPPED_ADDRESS], ("2001:db8::1", 5))
        self.assertTrue(stun.check_integrity(data, b"pw"))
        self.assertTrue(stun.check_fingerprint(data))

        mine = stun.Message(
            stun.Method.BINDING,
            stun.Class.SUCCESS,
            ours.transaction_id,
            {stun.Attr.XOR_MAPPED_ADDRESS: ("192.0.2.1", 32853), stun.Attr.SOFTWARE: "tx"},
        )
        parsed = aio.parse_message(stun.encode(mine, integrity_key=b"pw", fingerprint=True))
        self.assertEqual(parsed.attributes["XOR-MAPPED-ADDRESS"], ("192.0.2.1", 32853))
        self.assertEqual(parsed.attributes["SOFTWARE"], "tx")
        self.assertTrue(parsed.check_message_integrity(b"pw"))
