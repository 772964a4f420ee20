"""SMGP 3.0: the codec, the client protocol on a fake clock, and the client against the fixture.

The loopback tests run the real :class:`SMGPSender` against the real fixture over
TCP on 127.0.0.1 with short timeouts; the keep-alive and timeout arithmetic is
also checked on ``task.Clock`` with a StringTransport where real time would be
slow or flaky.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from globaleye.users.sms import smgp
from globaleye.users.sms.client import (
    LoginRefused,
    LogSender,
    RequestTimeout,
    SessionLost,
    SMGPClientProtocol,
    SMGPSender,
    SMGPSettings,
    SMSError,
    SMSUnavailable,
    SubmitRefused,
)
from globaleye.users.sms.fixture import SMGPFixture

CLIENT_ID = "10000001"
SECRET = "s3cret"
MOBILE = "18900000001"
CHINESE = "您的手机看店验证码是 123456，5 分钟内有效。"

# ------------------------------------------------------------------------ codec

SAMPLES: list[smgp.PDU] = [
    smgp.Login(
        sequence_id=1,
        client_id=CLIENT_ID,
        authenticator=b"A" * 16,
        login_mode=2,
        timestamp=1231235959,
    ),
    smgp.LoginResp(sequence_id=1, status=21, authenticator=b"\x01" * 16, server_version=0x30),
    smgp.Submit(
        sequence_id=0xFFFFFFFF,
        need_report=1,
        priority=3,
        service_id="GLOBALEYE",
        fee_type="01",
        fee_code="000010",
        fixed_fee="000000",
        msg_format=smgp.MsgFormat.UCS2,
        valid_time="241231235959032+",
        at_time="",
        src_term_id="10659999",
        charge_term_id=MOBILE,
        dest_term_ids=(MOBILE, "18900000002"),
        msg_content=CHINESE.encode("utf-16-be"),
        reserve=b"resv",
        tlvs=(
            smgp.tlv(smgp.Tag.TP_UDHI, 1),
            smgp.TLV(smgp.Tag.LINK_ID, b"L" * 20),
            smgp.TLV(0x7777, b""),
        ),
    ),
    smgp.SubmitResp(sequence_id=7, msg_id=bytes(range(10)), status=0),
    smgp.Deliver(
        sequence_id=9,
        msg_id=bytes(range(10, 20)),
        is_report=1,
        msg_format=smgp.MsgFormat.GB18030,
        recv_time="20241231235959",
        src_term_id=MOBILE,
        dest_term_id="10659999",
        msg_content="回复".encode("gb18030"),
        tlvs=(smgp.tlv(smgp.Tag.SUBMIT_MSG_TYPE, 0),),
    ),
    smgp.DeliverResp(sequence_id=9, msg_id=bytes(range(10, 20)), status=0),
    smgp.ActiveTest(sequence_id=3),
    smgp.ActiveTestResp(sequence_id=3),
    smgp.Exit(sequence_id=4),
    smgp.ExitResp(sequence_id=4),
    smgp.UnknownPDU(request_id=0x00000007, sequence_id=5, raw_body=b"query"),
]


#: A header with a correct Length and a known RequestID around a random body, so the
#: fuzzing reaches every body parser rather than dying at the Length check.
FRAMED = st.builds(
    lambda rid, seq, body: struct.pack("!III", 12 + len(body), rid, seq) + body,
    st.sampled_from([int(r) for r in smgp.RequestID] + [7]),
    st.integers(0, 0xFFFFFFFF),
    st.one_of(
        st.binary(max_size=300),
        st.sampled_from([smgp.encode(p)[12:] for p in SAMPLES]).flatmap(
            lambda b: st.integers(0, len(b)).map(lambda n: b[:n])
        ),
    ),
)


class CodecTests(SynchronousTestCase):
    def test_round_trip_every_pdu(self) -> None:
        for pdu in SAMPLES:
            data = smgp.encode(pdu)
            length, request_id, seq = struct.unpack("!III", data[:12])
            self.assertEqual(length, len(data))
            self.assertEqual(request_id, smgp.request_id_of(pdu))
            self.assertEqual(seq, pdu.sequence_id)
            self.assertEqual(smgp.decode(data), pdu, type(pdu).__name__)

    def test_fixed_sizes(self) -> None:
        """Total lengths from the field table in docs/sms-crm.md."""
        self.assertEqual(len(smgp.encode(SAMPLES[0])), 12 + 8 + 16 + 1 + 4 + 1)
        self.assertEqual(len(smgp.encode(SAMPLES[1])), 12 + 4 + 16 + 1)
        self.assertEqual(len(smgp.encode(SAMPLES[3])), 12 + 10 + 4)
        self.assertEqual(len(smgp.encode(SAMPLES[6])), 12)
        one = smgp.Submit(dest_term_ids=[MOBILE], msg_content=b"hi")
        # 3 + 10 + 2 + 6 + 6 + 1 + 17 + 17 + 21 + 21 + 1 + 21 + 1 + 2 + 8
        self.assertEqual(len(smgp.encode(one)), 12 + 137)
        deliver = smgp.Deliver(msg_content=b"hi")
        self.assertEqual(len(smgp.encode(deliver)), 12 + 10 + 1 + 1 + 14 + 21 + 21 + 1 + 2 + 8)

    def test_request_ids(self) -> None:
        self.assertEqual(smgp.encode(smgp.ActiveTest(sequence_id=1))[4:8], b"\x00\x00\x00\x04")
        self.assertEqual(smgp.encode(smgp.ExitResp(sequence_id=1))[4:8], b"\x80\x00\x00\x06")

    def test_authenticators(self) -> None:
        """MD5(ClientID + 7×0 + secret + "MMDDHHMMSS") and MD5(Status(4) + AuthClient + secret)."""
        auth = smgp.authenticator_client("sp01", "pw", 301000000)
        self.assertEqual(auth, hashlib.md5(b"sp01" + bytes(7) + b"pw" + b"0301000000").digest())
        server = smgp.authenticator_server(0, auth, "pw")
        self.assertEqual(server, hashlib.md5(bytes(4) + auth + b"pw").digest())

    def test_timestamp(self) -> None:
        from globaleye.util.clock import BEIJING

        # 2024-03-01 00:00:00 +08:00
        self.assertEqual(smgp.timestamp_of(1709222400, BEIJING), 301000000)

    def test_encode_refusals(self) -> None:
        with self.assertRaises(smgp.SMGPError):
            smgp.encode(smgp.Submit(dest_term_ids=[]))
        with self.assertRaises(smgp.SMGPError):
            smgp.encode(smgp.Submit(dest_term_ids=["1" * 22]))
        with self.assertRaises(smgp.SMGPError):
            smgp.encode(smgp.Submit(dest_term_ids=[MOBILE], msg_content=b"x" * 256))
        with self.assertRaises(smgp.SMGPError):
            smgp.encode(smgp.Submit(dest_term_ids=[MOBILE], service_id="服务"))
        with self.assertRaises(smgp.SMGPError):
            smgp.encode(
                smgp.Submit(dest_term_ids=[MOBILE], tlvs=[smgp.TLV(smgp.Tag.PK_TOTAL, b"12")])
            )

    def test_decode_refusals(self) -> None:
        good = smgp.encode(SAMPLES[2])
        cases = {
            "below": struct.pack("!III", 11, 1, 1),
            "above": struct.pack("!III", 5000, 2, 1) + bytes(4988),
            "mismatch": good[:-1],
            "login short": struct.pack("!III", 41, 1, 1) + bytes(29),
            "trailing": struct.pack("!III", 13, 4, 1) + b"\0",
            "tlv truncated": struct.pack("!I", len(good) + 2) + good[4:] + b"\x00\x01",
            "tlv overrun": struct.pack("!I", len(good) + 4) + good[4:] + b"\x00\x03\x00\x09",
            "tlv one octet": struct.pack("!I", len(good) + 6)
            + good[4:]
            + b"\x00\x09\x00\x02\x01\x01",
            "zero dests": smgp.encode(smgp.Submit(dest_term_ids=[MOBILE]))[:12] + bytes(137),
            "not ascii": struct.pack("!III", 42, 1, 1) + b"\xff" * 30,
        }
        for name, data in cases.items():
            with self.assertRaises(smgp.SMGPError, msg=name):
                smgp.decode(data)

    def test_stream_split_and_coalesced(self) -> None:
        stream = b"".join(smgp.encode(p) for p in SAMPLES)
        decoder = smgp.StreamDecoder()
        got: list[smgp.PDU] = []
        for i in range(len(stream)):  # one octet at a time
            decoder.feed(stream[i : i + 1])
            got.extend(decoder)
        self.assertEqual(got, SAMPLES)
        decoder.feed(stream + stream[:5])  # everything at once, plus a fragment
        self.assertEqual(list(decoder), SAMPLES)
        self.assertEqual(decoder.buffered, 5)

    def test_stream_bad_body_is_skipped_bad_length_breaks(self) -> None:
        decoder = smgp.StreamDecoder()
        decoder.feed(struct.pack("!III", 13, 4, 1) + b"\0" + smgp.encode(SAMPLES[6]))
        with self.assertRaises(smgp.SMGPError):
            decoder.next_pdu()
        self.assertIsNone(decoder.broken)
        self.assertEqual(decoder.next_pdu(), SAMPLES[6])
        decoder.feed(struct.pack("!III", 4097, 2, 1))
        with self.assertRaises(smgp.SMGPError):
            decoder.next_pdu()
        self.assertIsNotNone(decoder.broken)
        decoder.feed(smgp.encode(SAMPLES[6]))
        with self.assertRaises(smgp.SMGPError):
            decoder.next_pdu()

    @settings(max_examples=600, deadline=None)
    @given(st.lists(st.one_of(st.binary(max_size=64), FRAMED), max_size=12))
    def test_fuzz_stream_raises_only_smgp_error(self, chunks: list[bytes]) -> None:
        """Random bytes, and well-framed PDUs with random bodies for every RequestID."""
        decoder = smgp.StreamDecoder()
        for chunk in chunks:
            decoder.feed(chunk)
            for _ in range(100):
                try:
                    if decoder.next_pdu() is None:
                        break
                except smgp.SMGPError:
                    if decoder.broken is not None:
                        break

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=6),
        st.lists(st.integers(1, 400), max_size=10),
        st.binary(max_size=40),
    )
    def test_fuzz_valid_stream_any_chunking(
        self, pdus: list[smgp.PDU], cuts: list[int], tail: bytes
    ) -> None:
        """Any chunking of valid PDUs decodes back to them; a garbage tail only raises SMGPError."""
        stream = b"".join(smgp.encode(p) for p in pdus)
        decoder = smgp.StreamDecoder()
        got: list[smgp.PDU] = []
        pos = 0
        for cut in cuts + [len(stream)]:
            decoder.feed(stream[pos : pos + cut])
            pos += cut
            got.extend(decoder)
        decoder.feed(stream[pos:])
        got.extend(decoder)
        self.assertEqual(got, pdus)
        decoder.feed(tail)
        try:
            list(decoder)
        except smgp.SMGPError:
            pass

    def test_split_ucs2(self) -> None:
        self.assertEqual(smgp.split_ucs2("好" * 70), [smgp.Part(("好" * 70).encode("utf-16-be"))])
        parts = smgp.split_ucs2("好" * 71, reference=9)
        self.assertEqual(len(parts), 2)
        self.assertEqual(parts[0].content[:6], bytes([5, 0, 3, 9, 2, 1]))
        self.assertEqual(len(parts[0].content), 6 + 134)
        self.assertEqual(parts[1].content[6:].decode("utf-16-be"), "好" * 4)
        self.assertEqual(smgp.tlv_int(parts[1].tlvs, smgp.Tag.TP_UDHI), 1)
        self.assertEqual(smgp.tlv_int(parts[1].tlvs, smgp.Tag.PK_TOTAL), 2)
        self.assertEqual(smgp.tlv_int(parts[1].tlvs, smgp.Tag.PK_NUMBER), 2)
        plain = smgp.split_ucs2("好" * 150, udhi=False)
        self.assertEqual([len(p.content) // 2 for p in plain], [70, 70, 10])
        self.assertEqual([p.tlvs for p in plain], [(), (), ()])

    def test_split_keeps_surrogate_pairs(self) -> None:
        text = "好" * 66 + "😀" + "x" * 10  # the emoji straddles the 67-unit cut
        parts = smgp.split_ucs2(text)
        joined = "".join(smgp.parse_udh(p.content)[1].decode("utf-16-be") for p in parts)
        self.assertEqual(joined, text)

    def test_text_codecs(self) -> None:
        for fmt in (smgp.MsgFormat.UCS2, smgp.MsgFormat.GB18030):
            self.assertEqual(smgp.decode_text(smgp.encode_text(CHINESE, fmt), fmt), CHINESE)
        with self.assertRaises(smgp.SMGPError):
            smgp.encode_text(CHINESE, smgp.MsgFormat.ASCII)
        with self.assertRaises(smgp.SMGPError):
            smgp.decode_text(b"\xd8\x00", smgp.MsgFormat.UCS2)


# ----------------------------------------------------- client protocol on Clock


def make_settings(port: int = 0, **kw: Any) -> SMGPSettings:
    base: dict[str, Any] = dict(
        host="127.0.0.1",
        port=port,
        client_id=CLIENT_ID,
        secret=SECRET,
        src_term_id="10659999",
        service_id="GLOBALEYE",
        connect_timeout=2.0,
        submit_timeout=2.0,
        reconnect_initial=0.05,
        reconnect_max=0.2,
    )
    base.update(kw)
    return SMGPSettings(**base)


class ProtocolOnClockTests(SynchronousTestCase):
    """The client protocol against a StringTransport, every timer on task.Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1709222400)
        self.proto = SMGPClientProtocol(
            make_settings(active_test_interval=30.0, active_test_missed=2, submit_timeout=5.0),
            self.clock,
        )
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def sent(self) -> list[smgp.PDU]:
        decoder = smgp.StreamDecoder()
        decoder.feed(self.transport.value())
        self.transport.clear()
        return list(decoder)

    def login(self) -> None:
        (login,) = self.sent()
        assert isinstance(login, smgp.Login)
        self.assertEqual(login.timestamp, 301000000)
        self.assertEqual(
            login.authenticator, smgp.authenticator_client(CLIENT_ID, SECRET, 301000000)
        )
        auth = smgp.authenticator_server(0, login.authenticator, SECRET)
        self.proto.dataReceived(
            smgp.encode(smgp.LoginResp(sequence_id=login.sequence_id, authenticator=auth))
        )
        self.assertTrue(self.proto.is_logged_in)

    def test_keepalive_sends_active_test_and_gives_up(self) -> None:
        self.login()
        self.clock.advance(30)
        (probe,) = self.sent()
        self.assertIsInstance(probe, smgp.ActiveTest)
        self.proto.dataReceived(smgp.encode(smgp.ActiveTestResp(sequence_id=probe.sequence_id)))
        self.assertEqual(self.proto.unanswered_active_tests, 0)
        self.clock.advance(30)
        self.clock.advance(30)
        self.assertEqual([type(p) for p in self.sent()], [smgp.ActiveTest, smgp.ActiveTest])
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(30)  # two unanswered: the session is dead
        self.assertTrue(self.transport.disconnecting)

    def test_answers_gateway_active_test_deliver_exit(self) -> None:
        self.login()
        self.proto.dataReceived(
            smgp.encode(smgp.ActiveTest(sequence_id=77))
            + smgp.encode(smgp.Deliver(sequence_id=78, msg_id=b"M" * 10, src_term_id=MOBILE))
        )
        self.assertEqual(
            self.sent(),
            [
                smgp.ActiveTestResp(sequence_id=77),
                smgp.DeliverResp(sequence_id=78, msg_id=b"M" * 10, status=0),
            ],
        )
        self.proto.dataReceived(smgp.encode(smgp.Exit(sequence_id=79)))
        self.assertEqual(self.sent(), [smgp.ExitResp(sequence_id=79)])
        self.assertTrue(self.transport.disconnecting)

    def test_submit_matched_by_sequence_and_timeout(self) -> None:
        self.login()
        d1 = self.proto.submit(smgp.Submit(dest_term_ids=[MOBILE]))
        d2 = self.proto.submit(smgp.Submit(dest_term_ids=[MOBILE]))
        s1, s2 = self.sent()
        self.proto.dataReceived(
            smgp.encode(smgp.SubmitResp(sequence_id=s2.sequence_id, msg_id=b"2" * 10))
        )
        self.assertEqual(self.successResultOf(d2).msg_id, b"2" * 10)
        self.assertNoResult(d1)
        self.clock.advance(5)
        self.failureResultOf(d1, RequestTimeout)
        # a late answer to a timed-out request is ignored, not misattributed
        self.proto.dataReceived(smgp.encode(smgp.SubmitResp(sequence_id=s1.sequence_id)))

    def test_disconnect_fails_outstanding(self) -> None:
        self.login()
        d = self.proto.submit(smgp.Submit(dest_term_ids=[MOBILE]))
        self.proto.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, SessionLost)
        self.assertTrue(self.proto.lost.called)
        self.assertFalse(self.clock.getDelayedCalls())

    def test_refuses_impostor_gateway(self) -> None:
        (login,) = self.sent()
        self.proto.dataReceived(
            smgp.encode(smgp.LoginResp(sequence_id=login.sequence_id, authenticator=b"x" * 16))
        )
        self.failureResultOf(self.proto.logged_in, LoginRefused)
        self.assertTrue(self.transport.disconnecting)

    def test_login_timeout(self) -> None:
        self.clock.advance(2.0)
        self.failureResultOf(self.proto.logged_in, RequestTimeout)
        self.assertTrue(self.transport.disconnecting)

    def test_broken_framing_closes(self) -> None:
        self.login()
        self.proto.dataReceived(struct.pack("!III", 3, 0, 0))
        self.assertTrue(self.transport.disconnecting)


# ------------------------------------------------------------ loopback fixture


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    waited = 0.0
    while not condition():
        if waited > timeout:
            raise AssertionError("condition not reached")
        await deferLater(reactor, 0.01, lambda: None)
        waited += 0.01


def _port_of(listening: Any) -> int:
    port: int = listening.getHost().port
    return port


class LoopbackTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.fixture = SMGPFixture({CLIENT_ID: SECRET})
        self.port = self.fixture.listen(reactor)  # type: ignore[arg-type]
        self.addCleanup(self.port.stopListening)
        self.addCleanup(self.fixture.drop_all)

    def sender(self, **kw: Any) -> SMGPSender:
        s = SMGPSender(make_settings(_port_of(self.port), **kw))
        s.startService()
        self.addCleanup(s.stopService)
        return s

    async def test_login_and_submit_chinese(self) -> None:
        sender = self.sender()
        await until(lambda: sender.sessions == 1)
        self.assertEqual(self.fixture.logins, [(CLIENT_ID, 0)])
        await sender.send(MOBILE, CHINESE)
        (sub,) = self.fixture.submissions
        self.assertEqual(sub.dest, (MOBILE,))
        self.assertEqual(sub.submit.msg_format, smgp.MsgFormat.UCS2)
        self.assertEqual(sub.submit.src_term_id, "10659999")
        self.assertEqual(sub.submit.service_id, "GLOBALEYE")
        self.assertEqual(sub.text, CHINESE)

    async def test_wrong_secret_refused(self) -> None:
        sender = self.sender(secret="wrong", connect_timeout=0.5)
        with self.assertRaises(SMSUnavailable) as caught:
            await sender.send(MOBILE, "hi")
        self.assertIn("21", str(caught.exception))
        self.assertIn((CLIENT_ID, 21), self.fixture.logins)
        self.assertEqual(self.fixture.submissions, [])
        self.assertEqual(sender.sessions, 0)

    async def test_impostor_gateway_refused(self) -> None:
        self.fixture.server_secret = "not-the-secret"
        sender = self.sender(connect_timeout=0.5)
        with self.assertRaises(SMSUnavailable) as caught:
            await sender.send(MOBILE, "hi")
        self.assertIn("AuthenticatorServer", str(caught.exception))
        self.assertEqual(self.fixture.submissions, [])

    async def test_long_message_udhi(self) -> None:
        sender = self.sender()
        text = ("手机看店" * 40)[:150]
        await sender.send(MOBILE, text)
        self.assertEqual(len(self.fixture.submissions), 3)
        self.assertEqual([s.udh.number for s in self.fixture.submissions], [1, 2, 3])  # type: ignore[union-attr]
        self.assertEqual(self.fixture.messages(), [((MOBILE,), text)])

    async def test_long_message_split(self) -> None:
        sender = self.sender(long_mode="split")
        text = "好" * 150
        await sender.send(MOBILE, text)
        self.assertEqual([len(s.text) for s in self.fixture.submissions], [70, 70, 10])
        self.assertEqual("".join(t for _, t in self.fixture.messages()), text)

    async def test_too_many_parts(self) -> None:
        sender = self.sender(max_parts=2)
        with self.assertRaises(SMSError):
            await sender.send(MOBILE, "好" * 200)
        self.assertEqual(self.fixture.submissions, [])

    async def test_bad_number(self) -> None:
        sender = self.sender()
        with self.assertRaises(SMSError):
            await sender.send("189-0000", "hi")

    async def test_active_test_both_ways(self) -> None:
        sender = self.sender(active_test_interval=0.05)
        await until(lambda: sender.sessions == 1)
        answers = await gatherResults(self.fixture.active_test())
        self.assertEqual(answers, [smgp.ActiveTestResp(sequence_id=1)])
        await until(lambda: self.fixture.active_tests_received >= 2)

    async def test_dead_gateway_detected(self) -> None:
        self.fixture.answer_active_test = False
        sender = self.sender(active_test_interval=0.05, active_test_missed=2)
        await until(lambda: sender.sessions == 1)
        await until(lambda: self.fixture.connections_lost >= 1)
        await until(lambda: sender.sessions == 2)  # and it came back

    async def test_reconnect_after_drop(self) -> None:
        sender = self.sender()
        await until(lambda: sender.sessions == 1)
        self.fixture.drop_all()
        await until(lambda: sender.sessions == 2)
        await sender.send(MOBILE, "again")
        self.assertEqual(self.fixture.submissions[-1].text, "again")

    async def test_drop_fails_outstanding_submit(self) -> None:
        self.fixture.answer_submits = False
        sender = self.sender()
        d = Deferred.fromCoroutine(sender.send(MOBILE, "lost"))
        await self.fixture.wait_for_submissions(1)
        self.fixture.drop_all()
        with self.assertRaises(SessionLost):
            await d

    async def test_submit_timeout(self) -> None:
        self.fixture.delay = 1.0
        sender = self.sender(submit_timeout=0.2)
        with self.assertRaises(RequestTimeout):
            await sender.send(MOBILE, "late")
        self.assertEqual(len(self.fixture.submissions), 1)

    async def test_submit_refused(self) -> None:
        self.fixture.submit_status = 75
        sender = self.sender()
        with self.assertRaises(SubmitRefused) as caught:
            await sender.send(MOBILE, "quota")
        self.assertEqual(caught.exception.status, 75)

    async def test_window_bounds_outstanding(self) -> None:
        self.fixture.answer_submits = False
        sender = self.sender(window=2, submit_timeout=0.5)
        sends = [Deferred.fromCoroutine(sender.send(MOBILE, f"m{i}")) for i in range(3)]
        for d in sends:
            d.addErrback(lambda f: f.trap(RequestTimeout))
        await self.fixture.wait_for_submissions(2)
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(len(self.fixture.submissions), 2)  # the third waits for a slot
        await gatherResults(sends)
        self.assertEqual(len(self.fixture.submissions), 3)

    async def test_unreachable_gateway(self) -> None:
        port = _port_of(self.port)
        await self.port.stopListening()  # type: ignore[misc]
        sender = SMGPSender(make_settings(port, connect_timeout=0.3))
        sender.startService()
        self.addCleanup(sender.stopService)
        with self.assertRaises(SMSUnavailable):
            await sender.send(MOBILE, "nobody")

    async def test_stop_sends_exit(self) -> None:
        sender = self.sender()
        await until(lambda: sender.sessions == 1)
        await sender.stopService()
        await until(lambda: self.fixture.connections_lost == 1)
        with self.assertRaises(SMSUnavailable):
            await sender.send(MOBILE, "after stop")


class LogSenderTests(TestCase):
    async def test_logs(self) -> None:
        from twisted.logger import globalLogPublisher

        seen: list[dict[str, Any]] = []
        observer: Any = seen.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        await LogSender().send(MOBILE, CHINESE)
        self.assertTrue(any(e.get("text") == CHINESE and e.get("mobile") == MOBILE for e in seen))
