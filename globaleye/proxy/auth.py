"""RTSP authentication of players against platform accounts (RFC 2617 as RTSP uses it).

Two layers.  Pure: challenge headers, parsing ``Authorization``, checking a Digest
response from HA1 (MD5 or SHA-256, RFC 7616), stateless nonces (HMACs of their issue time
and of the connection they were issued to, so the proxy needs no nonce table, a nonce
cannot be forged, and one connection's nonce is refused on every other).  Async:
:class:`AccountAuthenticator`, which knows the accounts.

Replays.  A captured ``Authorization`` is worth nothing elsewhere: its nonce is valid for
NONCE_LIFETIME seconds on the connection it was issued to only (another connection, from
any address, gets a fresh challenge with ``stale=true``); its ``uri`` must name the
request's stream (:func:`uri_matches`; 400 otherwise), so a header for one camera or
stream does not open another or a playback; with ``qop=auth`` its nonce count must grow.
Players that send no qop (ffmpeg, live555, GStreamer) cannot be given a per-request
guarantee on their own connection, which only they can write to.

Where Digest's secret comes from.  Digest proves knowledge of the password without
sending it, so the verifier needs ``HA1 = MD5(user:realm:password)`` (and its SHA-256
twin for RFC 7616 players), which no argon2 hash can give.  The accounts service keeps it per account for the configured realm
(:meth:`~globaleye.users.accounts.AccountService.digest_ha1`: written at sign-up and password
change, backfilled at a login, gone with the account; see docs/protocol.md, Client
API item 18), so Digest works across restarts.  Basic is checked against the argon2
hash (in a worker thread, as every password check is) and needs no HA1.

Guessing limits.  A player could otherwise try passwords as fast as the network allows,
so the proxy applies the SOAP login's rules and two of its own:

* Per account, the *same* state as SOAP logins
  (:meth:`~globaleye.users.accounts.AccountService.check_password`): a wrong password at
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
import re
import secrets
import time
from collections.abc import Callable
from urllib.parse import unquote

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from globaleye.users.accounts import (
    NO_ACCOUNT,
    WRONG_PASSWORD,
    AccountService,
    RateLimiter,
    Verdict,
)
from globaleye.util import peerkey

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


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: Digest algorithms (RFC 7616 §3.2), in the order they are offered: strongest first.
ALGORITHMS: dict[str, Callable[[str], str]] = {"SHA-256": sha256_hex, "MD5": md5_hex}


def ha1(user: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    return ALGORITHMS[algorithm](f"{user}:{realm}:{password}")


@attrs.frozen
class Credentials:
    scheme: str  # "digest" or "basic"
    user: str
    password: str = ""  # basic only
    params: dict[str, str] = attrs.field(factory=dict, hash=False)


class Nonces:
    """Stateless nonces bound to one connection: ``<issue time hex><MAC><bound MAC>``.

    The first MAC (of the time) tells a genuine nonce from a forged one; the second (of the
    time and the *binding*, the connection's own random label) tells whether it was issued
    to this connection.  A nonce is valid for ``lifetime`` seconds, on its own connection
    only: a captured ``Authorization`` replayed on another connection (from another address
    or the same one) is "foreign" and answered like a stale nonce (a fresh challenge,
    ``stale=true``), never accepted.
    """

    MAC = 16  # hex digits of each MAC

    def __init__(self, secret: bytes | None = None, clock: Callable[[], float] = time.time,
                 lifetime: float = NONCE_LIFETIME) -> None:
        self.secret = secret or secrets.token_bytes(32)
        self.clock = clock
        self.lifetime = lifetime

    def issue(self, binding: str = "") -> str:
        stamp = f"{int(self.clock()):x}"
        return f"{stamp}{self._mac('g', stamp)}{self._mac('b', stamp, binding)}"

    def _mac(self, kind: str, stamp: str, binding: str = "") -> str:
        message = f"{kind}|{stamp}|{binding}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:self.MAC]

    def check(self, nonce: str, binding: str = "") -> str:
        """"ok"; "stale" (genuine but old: the client may retry silently); "foreign" (genuine,
        issued to another connection); or "bad" (forged or malformed)."""
        if len(nonce) <= 2 * self.MAC or len(nonce) > 2 * self.MAC + 16:
            return "bad"
        stamp, mac, bound = nonce[:-2 * self.MAC], nonce[-2 * self.MAC:-self.MAC], nonce[-self.MAC:]
        if not hmac.compare_digest(mac, self._mac("g", stamp)):
            return "bad"
        try:
            issued = int(stamp, 16)
        except ValueError:
            return "bad"
        if not hmac.compare_digest(bound, self._mac("b", stamp, binding)):
            return "foreign"
        return "ok" if 0 <= self.clock() - issued <= self.lifetime else "stale"


def challenges(schemes: tuple[str, ...], realm: str, nonce: str, stale: bool = False) -> list[str]:
    """``WWW-Authenticate`` values, strongest first (RFC 7616 §3.7: SHA-256, then MD5, then Basic).

    Both Digest challenges carry the same nonce.  Players that know SHA-256 take the first;
    ffmpeg, live555 (VLC) and GStreamer keep the *last* Digest challenge they read and speak
    MD5 only, so MD5 comes last.  ``realm`` comes before ``nonce`` in each (live555 parses
    them in that order).  No ``qop``: live555 and many cameras' clients implement only
    RFC 2069-style Digest, and RFC 2617 keeps that form valid; a client that sends qop=auth
    anyway is understood, and its nonce count must then increase.
    """
    out = []
    if "digest" in schemes:
        for algorithm in ALGORITHMS:
            out.append(f'Digest realm="{realm}", nonce="{nonce}", algorithm="{algorithm}"'
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


def digest_algorithm(credentials: Credentials) -> str | None:
    """The credentials' algorithm as a key of :data:`ALGORITHMS` (absent: MD5), or None if unsupported."""
    name = credentials.params.get("algorithm", "MD5").strip().upper()
    return name if name in ALGORITHMS else None


def digest_ok(credentials: Credentials, method: str, ha1_hex: str) -> bool:
    """RFC 7616 §3.4.1 / RFC 2617 §3.2.2.1 response check (MD5 or SHA-256, without or with qop=auth)."""
    p = credentials.params
    algorithm = digest_algorithm(credentials)
    if algorithm is None:
        return False
    h = ALGORITHMS[algorithm]
    ha2 = h(f"{method}:{p['uri']}")
    qop = p.get("qop")
    if qop:
        if qop.lower() != "auth" or "nc" not in p or "cnonce" not in p:
            return False
        expected = h(f"{ha1_hex}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{qop}:{ha2}")
    else:
        expected = h(f"{ha1_hex}:{p['nonce']}:{ha2}")
    return hmac.compare_digest(expected, p["response"].lower())


#: A track's control URL below its stream's aggregate URL (``…/trackID=0``, ``…/streamid=1``).
_TRACK_SUFFIX = re.compile(r"/(?:trackid|streamid|track)=?\d+$", re.IGNORECASE)


def _uri_path(uri: str) -> str:
    """The part of an RTSP URI that names the resource: the path of an absolute URI (scheme,
    user info, host and port dropped; a query is kept), a relative one as it is; a trailing
    ``/`` dropped, percent-escapes decoded."""
    uri = uri.strip()
    if "://" in uri:
        rest = uri.split("://", 1)[1]
        slash = rest.find("/")
        uri = rest[slash:] if slash >= 0 else "/"
    uri = unquote(uri)
    return uri.rstrip("/") or "/"


def _stream_path(path: str) -> str:
    return _TRACK_SUFFIX.sub("", path.split("?", 1)[0]).rstrip("/") or "/"


def uri_matches(digest_uri: str, request_uri: str) -> bool:
    """RFC 7616 §3.4.6: the ``uri`` of the credentials names the Request-URI.

    Equivalent forms are accepted: players send the absolute URI of the request line
    (``rtsp://host:port/…``) or a relative one, and some a host or port other than the one
    they connected to (a name instead of the address, no default port), so only the
    resource counts.  A stream's aggregate URL and its tracks' control URLs (``…/trackID=N``)
    count as one resource: players that compute the header once per stream and send it with
    its SETUPs and PLAY keep working, while a header for one stream (``/live/D/0/1``) does not
    pass for another (``/live/D/0/2``, another camera, a playback).  ``*`` matches only ``*``.
    """
    if digest_uri.strip() == "*" or request_uri.strip() == "*":
        return digest_uri.strip() == request_uri.strip()
    a, b = _uri_path(digest_uri), _uri_path(request_uri)
    return a == b or _stream_path(a) == _stream_path(b)


#: Failures are counted per source address, IPv6 by its /64 (the one helper every limit uses).
source_address = peerkey.source_address


@attrs.define(eq=False)
class DigestContext:
    """One connection's Digest state: the random label its nonces are bound to, and the
    highest nonce count (``nc``, qop=auth) accepted per nonce, so that none is accepted twice."""

    binding: str = attrs.field(factory=lambda: secrets.token_hex(8))
    counts: dict[str, int] = attrs.field(factory=dict)
    #: Nonces whose counts a connection remembers (a player uses one or two).
    max_nonces: int = 8

    def accept_count(self, nonce: str, nc: int) -> None:
        if nonce not in self.counts and len(self.counts) >= self.max_nonces:
            self.counts.pop(next(iter(self.counts)))
        self.counts[nonce] = nc


@attrs.frozen
class AuthResult:
    account: str | None
    reason: str  # for the log
    stale: bool = False
    #: The request is malformed for Digest (its ``uri`` names another resource): answer 400.
    bad_request: bool = False
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

    def challenge(self, stale: bool = False, context: DigestContext | None = None) -> list[str]:
        """Challenges whose nonce is valid on *context*'s connection only."""
        return challenges(self.schemes, self.realm, self.nonces.issue(context.binding if context else ""), stale)

    async def check(self, method: str, header: str | None, peer: str = "-", uri: str | None = None,
                    context: DigestContext | None = None) -> AuthResult:
        """Who *header* authenticates for a request of *peer* (``host:port``), or why nobody.

        *uri* is the Request-URI, which a Digest ``uri`` must name (RFC 7616 §3.4.6); *context*
        the connection's :class:`DigestContext`, whose nonces alone are accepted (None: nonces
        issued without one).
        """
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
        algorithm = "MD5"
        nc = 0
        if credentials.scheme == "digest":
            p = credentials.params
            if p.get("realm") != self.realm:
                return AuthResult(None, f"realm {p.get('realm')!r}")
            algorithm = digest_algorithm(credentials) or ""
            if not algorithm:
                return AuthResult(None, f"Digest algorithm {p.get('algorithm')!r} not offered")
            if uri is not None and not uri_matches(p["uri"], uri):
                return AuthResult(None, f"Digest uri {p['uri'][:200]!r} does not name the request's {uri[:200]!r}",
                                  bad_request=True)
            freshness = self.nonces.check(p["nonce"], context.binding if context is not None else "")
            if freshness == "bad":
                return AuthResult(None, "forged or malformed nonce")
            if p.get("qop"):
                try:
                    nc = int(p.get("nc", ""), 16)
                except ValueError:
                    return AuthResult(None, f"malformed nonce count {p.get('nc', '')[:20]!r}")
                if context is not None and freshness == "ok" and nc <= context.counts.get(p["nonce"], 0):
                    # Replayed on its own connection: never checked again, never accepted.
                    return AuthResult(None, f"nonce count {nc:08x} not above the last one accepted (a replay)",
                                      stale=True)
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
            secret = await accounts.digest_ha1(user, self.realm, algorithm)
            if secret is None:
                return Verdict.NO_ACCOUNT
            if not digest_ok(credentials, method, secret):
                return Verdict.WRONG
            return Verdict.NEUTRAL if freshness in ("stale", "foreign") else Verdict.RIGHT

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
            if credentials.scheme == "digest" and credentials.params.get("qop") and context is not None:
                context.accept_count(credentials.params["nonce"], nc)
            how = f"digest {algorithm}" if credentials.scheme == "digest" else credentials.scheme
            return AuthResult(user, how)
        if check.verdict is Verdict.NEUTRAL:
            if freshness == "foreign":
                return AuthResult(None, "nonce issued to another connection (a replayed Authorization?)", stale=True)
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
