"""An SMGP 3.0 server fixture, built from the same codec, for tests and local development.

It is a small gateway that is honest about authentication (the login
authenticator is checked against a configured secret and the server's
authenticator is computed properly, so a client that skips either check is
caught) and controllable: it records every Submit, can answer late or not at
all, can refuse submits with a status, can stay silent to Active_Test, can send
its own Active_Test, Deliver and Exit, and can drop every connection on demand.

Run one for local development::

    python -m globaleye.users.sms.fixture --port 8890 --account 10000001:secret
"""

from __future__ import annotations

import itertools
import struct
import sys

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IReactorTCP, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from globaleye.users.sms import smgp


@attrs.frozen
class Submission:
    """One Submit the fixture accepted, as the client sent it."""

    client_id: str
    submit: smgp.Submit
    msg_id: bytes

    @property
    def dest(self) -> tuple[str, ...]:
        return self.submit.dest_term_ids

    @property
    def udh(self) -> smgp.UDH | None:
        if smgp.tlv_int(self.submit.tlvs, smgp.Tag.TP_UDHI) == 1:
            return smgp.parse_udh(self.submit.msg_content)[0]
        return None

    @property
    def text(self) -> str:
        """The text of this Submit alone (its UDH, if any, removed)."""
        content = self.submit.msg_content
        if smgp.tlv_int(self.submit.tlvs, smgp.Tag.TP_UDHI) == 1:
            content = smgp.parse_udh(content)[1]
        return smgp.decode_text(content, self.submit.msg_format)


class SMGPServerProtocol(Protocol):
    log = Logger()

    def __init__(self, fixture: SMGPFixture) -> None:
        self.fixture = fixture
        self.decoder = smgp.StreamDecoder()
        self.client_id: str | None = None
        self.peer = "?"
        self._seq = itertools.count(1)
        self._waiting: dict[int, Deferred[smgp.PDU]] = {}
        self._delayed: list[IDelayedCall] = []
        self.connected_ = False

    def connectionMade(self) -> None:
        self.connected_ = True
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.peer = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        self.fixture.protocols.append(self)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        self.connected_ = False
        if self in self.fixture.protocols:
            self.fixture.protocols.remove(self)
        for call in self._delayed:
            if call.active():
                call.cancel()
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(reason)
        self.fixture._lost(self)

    def write(self, pdu: smgp.PDU) -> None:
        if self.connected_:
            self.transport.write(smgp.encode(pdu))  # type: ignore[union-attr]

    def request(self, pdu: smgp.PDU) -> Deferred[smgp.PDU]:
        """Send a server-initiated request (Active_Test, Deliver, Exit); fires with the answer."""
        pdu = attrs.evolve(pdu, sequence_id=next(self._seq))  # type: ignore[misc]
        d: Deferred[smgp.PDU] = Deferred()
        self._waiting[pdu.sequence_id] = d
        self.write(pdu)
        return d

    def refuse(self, reason: str) -> None:
        self.log.warn("SMGP fixture {peer}: closing: {reason}", peer=self.peer, reason=reason)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.decoder.feed(data)
        while self.connected_:
            try:
                pdu = self.decoder.next_pdu()
            except smgp.SMGPError as e:
                self.refuse(f"malformed PDU: {e}")
                return
            if pdu is None:
                return
            self.handle(pdu)

    def handle(self, pdu: smgp.PDU) -> None:
        fx = self.fixture
        if isinstance(pdu, smgp.Login):
            self.login(pdu)
        elif self.client_id is None:
            self.refuse(f"{type(pdu).__name__} before login")
        elif isinstance(pdu, smgp.Submit):
            msg_id = fx.next_msg_id()
            if fx.submit_status == 0:
                fx.submissions.append(Submission(self.client_id, pdu, msg_id))
                fx._submitted()
            if fx.answer_submits:
                self.answer(
                    smgp.SubmitResp(
                        sequence_id=pdu.sequence_id, msg_id=msg_id, status=fx.submit_status
                    )
                )
        elif isinstance(pdu, smgp.ActiveTest):
            fx.active_tests_received += 1
            if fx.answer_active_test:
                self.write(smgp.ActiveTestResp(sequence_id=pdu.sequence_id))
        elif isinstance(pdu, smgp.Exit):
            self.write(smgp.ExitResp(sequence_id=pdu.sequence_id))
            self.transport.loseConnection()  # type: ignore[union-attr]
        elif isinstance(pdu, smgp.ActiveTestResp | smgp.DeliverResp | smgp.ExitResp):
            d = self._waiting.pop(pdu.sequence_id, None)
            if d is not None:
                d.callback(pdu)
        else:
            self.refuse(f"unexpected {type(pdu).__name__}")

    def answer(self, pdu: smgp.PDU) -> None:
        if self.fixture.delay > 0:
            self._delayed.append(self.fixture.clock.callLater(self.fixture.delay, self.write, pdu))
        else:
            self.write(pdu)

    def login(self, pdu: smgp.Login) -> None:
        fx = self.fixture
        secret = fx.accounts.get(pdu.client_id)
        expected = (
            smgp.authenticator_client(pdu.client_id, secret, pdu.timestamp)
            if secret is not None
            else None
        )
        if self.client_id is not None:
            status, reason = 10, "second Login on one session"
        elif secret is None:
            status, reason = 21, f"unknown ClientID {pdu.client_id!r}"
        elif pdu.authenticator != expected:
            status, reason = 21, f"AuthenticatorClient of {pdu.client_id!r} does not match"
        elif pdu.client_version > smgp.VERSION:
            status, reason = 22, f"ClientVersion {pdu.client_version:#x}"
        else:
            status, reason = 0, ""
        fx.logins.append((pdu.client_id, status))
        if status != 0:
            self.log.warn(
                "SMGP fixture {peer}: login refused: {reason}", peer=self.peer, reason=reason
            )
            self.write(smgp.LoginResp(sequence_id=pdu.sequence_id, status=status))
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        assert secret is not None
        auth = smgp.authenticator_server(0, pdu.authenticator, fx.server_secret or secret)
        self.client_id = pdu.client_id
        self.write(smgp.LoginResp(sequence_id=pdu.sequence_id, status=0, authenticator=auth))


class SMGPFixture(ServerFactory):
    """The fixture's state and controls; also the factory for its server protocol.

    ``server_secret`` (when set) makes the fixture compute AuthenticatorServer with
    a *different* secret, to test that the client refuses an impostor gateway.
    """

    def __init__(self, accounts: dict[str, str], clock: IReactorTime | None = None) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        self.accounts = accounts
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.protocols: list[SMGPServerProtocol] = []
        self.submissions: list[Submission] = []
        self.logins: list[tuple[str, int]] = []
        self.active_tests_received = 0
        self.connections_lost = 0
        self.delay = 0.0
        self.answer_submits = True
        self.submit_status = 0
        self.answer_active_test = True
        self.server_secret: str | None = None
        self._msg_seq = itertools.count(1)
        self._submission_waiters: list[tuple[int, Deferred[None]]] = []
        self._loss_waiters: list[Deferred[None]] = []

    def buildProtocol(self, addr: object) -> SMGPServerProtocol:
        return SMGPServerProtocol(self)

    def next_msg_id(self) -> bytes:
        """A 10-octet MsgID: 3 octets of SMGW code, then a 7-octet counter (opaque to clients)."""
        return b"\x09\x99\x99" + struct.pack("!Q", next(self._msg_seq))[1:]

    # ------------------------------------------------------------------ waiting

    def _submitted(self) -> None:
        ready = [d for n, d in self._submission_waiters if len(self.submissions) >= n]
        self._submission_waiters = [
            (n, d) for n, d in self._submission_waiters if len(self.submissions) < n
        ]
        for d in ready:
            d.callback(None)

    def wait_for_submissions(self, count: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if len(self.submissions) >= count:
            d.callback(None)
        else:
            self._submission_waiters.append((count, d))
        return d

    def _lost(self, _proto: SMGPServerProtocol) -> None:
        self.connections_lost += 1
        waiters, self._loss_waiters = self._loss_waiters, []
        for d in waiters:
            d.callback(None)

    def wait_for_loss(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._loss_waiters.append(d)
        return d

    # ------------------------------------------------------------------ controls

    @property
    def sessions(self) -> list[SMGPServerProtocol]:
        return [p for p in self.protocols if p.client_id is not None]

    def drop_all(self) -> None:
        """Abort every connection, as a gateway restart or a cut cable would."""
        for proto in self.protocols[:]:
            proto.transport.abortConnection()  # type: ignore[union-attr]

    def active_test(self) -> list[Deferred[smgp.PDU]]:
        return [p.request(smgp.ActiveTest()) for p in self.sessions]

    def messages(self) -> list[tuple[tuple[str, ...], str]]:
        """Whole messages as a handset would show them: UDH parts reassembled, in order."""
        out: list[tuple[tuple[str, ...], str]] = []
        groups: dict[tuple[tuple[str, ...], int, int], dict[int, str]] = {}
        for sub in self.submissions:
            udh = sub.udh
            if udh is None:
                out.append((sub.dest, sub.text))
                continue
            key = (sub.dest, udh.reference, udh.total)
            groups.setdefault(key, {})[udh.number] = sub.text
            if len(groups[key]) == udh.total:
                parts = groups.pop(key)
                out.append((sub.dest, "".join(parts[i] for i in sorted(parts))))
        return out

    def listen(
        self, reactor: IReactorTCP, port: int = 0, interface: str = "127.0.0.1"
    ) -> IListeningPort:
        return reactor.listenTCP(port, self, interface=interface)


def main(argv: list[str] | None = None) -> None:
    """Run a fixture gateway that logs every message it receives."""
    import argparse

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    parser = argparse.ArgumentParser(description="SMGP 3.0 test gateway")
    parser.add_argument("--port", type=int, default=8890)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--account", action="append", default=[], help="CLIENTID:SECRET")
    args = parser.parse_args(argv)
    accounts = dict(a.split(":", 1) for a in args.account) or {"10000001": "secret"}
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    fixture = SMGPFixture(accounts)
    orig = fixture._submitted

    def show() -> None:
        sub = fixture.submissions[-1]
        Logger().info("SMGP fixture: SMS to {dest}: {text}", dest=",".join(sub.dest), text=sub.text)
        orig()

    fixture._submitted = show  # type: ignore[method-assign]
    port = fixture.listen(reactor, args.port, args.interface)  # type: ignore[arg-type]
    Logger().info("SMGP fixture listening on {addr}", addr=port.getHost())
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
