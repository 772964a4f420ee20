"""RTSP authentication of players against platform accounts (RFC 2617 as RTSP uses it).

Two layers.  Pure: challenge headers, parsing ``Authorization``, checking a Digest
response from HA1, stateless nonces (an HMAC of their issue time, so a restarted or
scaled-out proxy needs no nonce table and a nonce cannot be forged).  Async:
:class:`AccountAuthenticator`, which knows the accounts.

Where Digest's secret comes from.  Digest proves knowledge of the password without
sending it, so the verifier needs ``HA1 = MD5(user:realm:password)``, which no argon2
hash can give.  The accounts service keeps it per account for the configured realm
(:meth:`~globaleye.accounts.AccountService.digest_ha1`: written at sign-up and password
change, backfilled at a login, gone with the account; see docs/protocol.md, Client
API item 18), so Digest works across restarts.  Basic is checked against the argon2
hash (in a worker thread, as every password check is) and needs no HA1.

Guessing limits.  A player could otherwise try passwords as fast as the network allows,
so the proxy applies the SOAP login's rules and two of its own:

* Per account, the *same* state as SOAP logins
  (:meth:`~globaleye.accounts.AccountService.check_password`): a wrong password at
  either place counts at both, the slow-down and the lock (``[soap] login_*``) apply at
  both, a right password at either clears the count.  A locked account gets 401 whatever
  the password.  Each counted failure and each refusal for a lock is audit-logged
  (action ``rtsp-auth``), as SOAP logs each login.
* Per source address (:func:`source_address`): at most ``peer_limit`` failures in
  ``peer_window`` seconds (a sliding window); then every request of that address that
  needs authentication is refused with 403 and its connection closed, until failures
  leave the window.  Unknown users count only here, so no state is kept per arbitrary
  name, and one address cannot spray guesses over many accounts.

What counts: a wrong password (Digest response or Basic), an unknown user (or one with
no Digest secret), and an attempt on a locked account.  What does not: a request without
``Authorization`` (every Digest client's first request), a correct Digest response over a
stale nonce (answered ``stale=true``; it neither counts nor clears, since it may be a
replay), and credentials that never reach a password check (unparsable, another scheme,
another realm, a forged nonce).  Time comes from the reactor clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from globaleye.accounts import NO_ACCOUNT, WRONG_PASSWORD, AccountService, RateLimiter, Verdict

NONCE_LIFETIME = 300.0
#: Failed authentications one source address may have within PEER_WINDOW seconds.
PEER_LIMIT = 20
PEER_WINDOW = 300.0
#: Source addresses whose failures are remembered at once (RateLimiter's bound).
MAX_PEERS = 10_000
#: User names are written to the audit log and the log at most this long.
MAX_USER_SHOWN = 64


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def ha1(user: str, realm: str, password: str) -> str:
    return md5_hex(f"{user}:{realm}:{password}")


@attrs.frozen
class Credentials:
    scheme: str  # "digest" or "basic"
    user: str
    password: str = ""  # basic only
    params: dict[str, str] = attrs.field(factory=dict, hash=False)


class Nonces:
    """Stateless nonces: ``<issue time hex>.<HMAC>``; valid for ``lifetime`` seconds."""

    def __init__(self, secret: bytes | None = None, clock: Callable[[], float] = time.time,
                 lifetime: float = NONCE_LIFETIME) -> None:
        self.secret = secret or secrets.token_bytes(32)
        self.clock = clock
        self.lifetime = lifetime

    def issue(self) -> str:
        stamp = f"{int(self.clock()):x}"
        return f"{stamp}{self._mac(stamp)}"

    def _mac(self, stamp: str) -> str:
        return hmac.new(self.secret, stamp.encode(), hashlib.sha256).hexdigest()[:24]

    def check(self, nonce: str) -> str:
        """"ok", "stale" (genuine but old: the client may retry silently) or "bad"."""
        if len(nonce) <= 24:
            return "bad"
        stamp, mac = nonce[:-24], nonce[-24:]
        if not hmac.compare_digest(mac, self._mac(stamp)):
            return "bad"
        try:
            issued = int(stamp, 16)
        except ValueError:
            return "bad"
        return "ok" if 0 <= self.clock() - issued <= self.lifetime else "stale"


def challenges(schemes: tuple[str, ...], realm: str, nonce: str, stale: bool = False) -> list[str]:
    """``WWW-Authenticate`` values, strongest first (players pick the first they support).

    No ``qop``: live555 (VLC) and many cameras' clients implement only RFC 2069-style
    Digest, and RFC 2617 keeps that form valid; a client that sends qop=auth anyway is
    understood.
    """
    out = []
    if "digest" in schemes:
        out.append(f'Digest realm="{realm}", nonce="{nonce}", algorithm="MD5"'
                   + (', stale="true"' if stale else ""))
    if "basic" in schemes:
        out.append(f'Basic realm="{realm}"')
    return out


_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]*)\s*,?')


def parse_authorization(value: str) -> Credentials | None:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        user, sep, password = decoded.partition(":")
        return Credentials("basic", user, password) if sep else None
    if scheme.lower() == "digest":
        params: dict[str, str] = {}
        for m in _PARAM.finditer(rest):
            params[m.group(1).lower()] = m.group(3) if m.group(3) is not None else m.group(2)
        if not all(k in params for k in ("username", "nonce", "uri", "response")):
            return None
        return Credentials("digest", params["username"], params=params)
    return None


def digest_ok(credentials: Credentials, method: str, ha1_hex: str) -> bool:
    """RFC 2617 §3.2.2.1 response check (MD5, without or with qop=auth)."""
    p = credentials.params
    ha2 = md5_hex(f"{method}:{p['uri']}")
    qop = p.get("qop")
    if qop:
        if qop.lower() != "auth" or "nc" not in p or "cnonce" not in p:
            return False
        expected = md5_hex(f"{ha1_hex}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{qop}:{ha2}")
    else:
        expected = md5_hex(f"{ha1_hex}:{p['nonce']}:{ha2}")
    return hmac.compare_digest(expected, p["response"].lower())


def source_address(peer: str) -> str:
    """The address a peer's failures are counted under: ``host`` of ``host:port``.

    An IPv6 peer is counted by its /64, the block one subscriber usually gets: per address,
    one host could take a fresh address for every few guesses.  IPv4-mapped IPv6 addresses
    count as the IPv4 address.
    """
    host = peer.rsplit(":", 1)[0].strip("[]") if ":" in peer else peer
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@attrs.frozen
class AuthResult:
    account: str | None
    reason: str  # for the log
    stale: bool = False
    #: A failure that counted (wrong password, unknown user, a locked account).
    counted: bool = False
    #: The account is locked for this many seconds more (the answer is still an ordinary 401).
    locked: float = 0.0
    #: The source address is refused for this many seconds more: answer 403 and close.
    blocked: float = 0.0


class AccountAuthenticator:
    """Checks RTSP credentials against platform accounts, with the guessing limits above; never blocks
    the reactor (argon2 in a worker thread, waits on the reactor clock)."""

    log = Logger()

    def __init__(self, accounts: AccountService | None, schemes: tuple[str, ...], realm: str,
                 nonces: Nonces | None = None, *, clock: IReactorTime | None = None,
                 peer_limit: int = PEER_LIMIT, peer_window: float = PEER_WINDOW,
                 max_peers: int = MAX_PEERS) -> None:
        """*clock* defaults to the accounts service's (the reactor); *peer_limit* 0 turns the
        per-address limit off (the per-account one stays)."""
        self.accounts = accounts
        self.schemes = schemes
        self.realm = realm
        if clock is None and accounts is not None:
            clock = accounts.clock
        self.nonces = nonces or (Nonces(clock=clock.seconds) if clock is not None else Nonces())
        self.peers: RateLimiter | None = None
        if clock is not None and peer_limit > 0:
            self.peers = RateLimiter(clock, peer_limit, peer_window, max_peers)

    @property
    def required(self) -> bool:
        return "none" not in self.schemes

    def challenge(self, stale: bool = False) -> list[str]:
        return challenges(self.schemes, self.realm, self.nonces.issue(), stale)

    async def check(self, method: str, header: str | None, peer: str = "-") -> AuthResult:
        """Who *header* authenticates for a request of *peer* (``host:port``), or why nobody."""
        source = source_address(peer)
        peers = self.peers
        if peers is not None and (wait := peers.retry_after(source)) > 0:
            return AuthResult(None, f"{source} had {peers.limit} failed authentications within "
                                    f"{peers.window:g} s; refused for {wait:.0f} s more", blocked=wait)
        if header is None:
            return AuthResult(None, "no credentials")  # a Digest client's first request: not a failure
        credentials = parse_authorization(header)
        if credentials is None or credentials.scheme not in self.schemes:
            return AuthResult(None, "unparsable or disallowed Authorization scheme")
        accounts = self.accounts
        assert accounts is not None, "credentials are checked only with an accounts service (auth is not none)"
        user = credentials.user
        freshness = "ok"
        if credentials.scheme == "digest":
            p = credentials.params
            if p.get("realm") != self.realm:
                return AuthResult(None, f"realm {p.get('realm')!r}")
            freshness = self.nonces.check(p["nonce"])
            if freshness == "bad":
                return AuthResult(None, "forged or malformed nonce")
        # A password is about to be tried.  Its place in the source's budget is taken first, so
        # that parallel guesses cannot all pass before the first failure is counted; it is
        # given back below when the attempt turns out not to be a failure.
        stamp: float | None = None
        if peers is not None:
            stamp = peers.reserve(source)
            if stamp is None:
                wait = peers.retry_after(source)
                return AuthResult(None, f"{source} has {peers.limit} failed or unfinished authentications "
                                        f"within {peers.window:g} s; refused for {wait:.0f} s more",
                                  blocked=max(wait, 1.0))

        async def verify() -> Verdict:
            if credentials.scheme == "basic":
                verdict, _record = await accounts.password_verdict(user, credentials.password)
                return verdict
            secret = await accounts.digest_ha1(user, self.realm)
            if secret is None:
                return Verdict.NO_ACCOUNT
            if not digest_ok(credentials, method, secret):
                return Verdict.WRONG
            return Verdict.NEUTRAL if freshness == "stale" else Verdict.RIGHT

        try:
            check = await accounts.check_password(user, verify, peer)
        except BaseException:
            if peers is not None and stamp is not None:
                peers.undo(source, stamp)  # not a failure of the player's: the store failed
            raise
        counted = check.verdict in (Verdict.WRONG, Verdict.NO_ACCOUNT, Verdict.LOCKED)
        if not counted and peers is not None and stamp is not None:
            peers.undo(source, stamp)
        shown = user[:MAX_USER_SHOWN]
        what = "Digest response" if credentials.scheme == "digest" else "Basic password"
        if check.verdict is Verdict.RIGHT:
            return AuthResult(user, credentials.scheme)
        if check.verdict is Verdict.NEUTRAL:
            return AuthResult(None, "stale nonce", stale=True)
        if check.verdict is Verdict.LOCKED:
            reason = f"account {shown} is locked for {check.locked_for:.0f} s more"
            await accounts.audit("rtsp-auth", shown, peer, WRONG_PASSWORD, f"locked for {check.locked_for:.0f} s more")
            result = AuthResult(None, reason, counted=True, locked=check.locked_for)
        elif check.verdict is Verdict.WRONG:
            detail = check.detail(f"wrong {what}")
            await accounts.audit("rtsp-auth", shown, peer, WRONG_PASSWORD, detail)
            result = AuthResult(None, f"{detail} for {shown}", counted=True, locked=check.locked_for)
        else:
            detail = ("no such account" if credentials.scheme == "basic" else
                      "no such account, or no Digest secret kept for it (created before HA1s were kept: "
                      "one app login stores it)")
            await accounts.audit("rtsp-auth", shown, peer, NO_ACCOUNT, detail)
            result = AuthResult(None, f"{shown!r}: {detail}", counted=True)
        if peers is not None and (wait := peers.retry_after(source)) > 0:
            self.log.warn("RTSP auth {peer}: {source} reached {n} failed authentications within {window:g} s; "
                          "its requests are refused for {wait:.0f} s", peer=peer, source=source, n=peers.limit,
                          window=peers.window, wait=wait)
        return result
