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

import attrs
from twisted.logger import Logger

from globaleye.accounts import AccountService

NONCE_LIFETIME = 300.0


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


@attrs.frozen
class AuthResult:
    account: str | None
    reason: str  # for the log
    stale: bool = False


class AccountAuthenticator:
    """Checks RTSP credentials against platform accounts; never blocks the reactor."""

    log = Logger()

    def __init__(self, accounts: AccountService | None, schemes: tuple[str, ...], realm: str,
                 nonces: Nonces | None = None) -> None:
        self.accounts = accounts
        self.schemes = schemes
        self.realm = realm
        self.nonces = nonces or Nonces()

    @property
    def required(self) -> bool:
        return "none" not in self.schemes

    def challenge(self, stale: bool = False) -> list[str]:
        return challenges(self.schemes, self.realm, self.nonces.issue(), stale)

    async def check(self, method: str, header: str | None) -> AuthResult:
        if header is None:
            return AuthResult(None, "no credentials")
        credentials = parse_authorization(header)
        if credentials is None or credentials.scheme not in self.schemes:
            return AuthResult(None, "unparsable or disallowed Authorization scheme")
        accounts = self.accounts
        assert accounts is not None, "credentials are checked only with an accounts service (auth is not none)"
        if credentials.scheme == "basic":
            record = await accounts.store.get_account(credentials.user) if credentials.user.isdigit() else None
            if record is None:
                return AuthResult(None, f"no account {credentials.user!r}")
            if not await accounts.verify_password(record.password_hash, credentials.password):
                return AuthResult(None, f"wrong password for {credentials.user}")
            return AuthResult(credentials.user, "basic")
        p = credentials.params
        if p.get("realm") != self.realm:
            return AuthResult(None, f"realm {p.get('realm')!r}")
        freshness = self.nonces.check(p["nonce"])
        if freshness == "bad":
            return AuthResult(None, "forged or malformed nonce")
        secret = await accounts.digest_ha1(credentials.user, self.realm)
        if secret is None:
            return AuthResult(None, f"no account {credentials.user!r} or no Digest secret kept for it "
                                    "(created before HA1s were kept: one app login stores it)")
        if not digest_ok(credentials, method, secret):
            return AuthResult(None, f"wrong Digest response for {credentials.user}")
        if freshness == "stale":
            return AuthResult(None, "stale nonce", stale=True)
        return AuthResult(credentials.user, "digest")
