"""Long-term credentials for the TURN server (RFC 5389 §10.2, RFC 8656 §9).

The server never sees passwords on the wire: it needs the long-term *key*
``MD5(username ":" realm ":" password)`` to check MESSAGE-INTEGRITY.  Where that
key comes from is pluggable (``CredentialLookup``) and asynchronous, because the
GlobalEye platform looks cameras up in its device store (DevID/DevKey, spec §14)
and that is I/O.  This module must stay free of ``globaleye`` imports.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

import attrs


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """MD5(username:realm:password) — RFC 5389 §15.4 (SASLprep is the identity for
    the ASCII names and keys used here)."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()


@attrs.define(frozen=True)
class Credential:
    """What the server learns about an authenticated user.

    ``wildcard_permission`` allows the spec §14 extension: a CreatePermission for
    XOR-PEER-ADDRESS 0.0.0.0:0 meaning "any peer".  Only device accounts get it;
    ordinary TURN users asking for it are refused with 403.  ``quota`` and
    ``quota_class`` let a lookup give users of different standing different limits
    (e.g. devices that self-enrolled a minute ago a small pool of their own, so they
    cannot drain the relays of established ones).
    """

    key: bytes
    wildcard_permission: bool = False
    #: Allocations this user may hold at once (``None``: the server's ``user_quota``).
    quota: int | None = None
    #: The user's class for the server's ``class_quotas`` (a separate, capped pool of
    #: allocations inside ``total_quota``); ``""``: no class, only the total applies.
    quota_class: str = ""


@runtime_checkable
class CredentialLookup(Protocol):
    async def lookup(self, username: str, realm: str) -> Credential | None:
        """The credential for ``username`` in ``realm``, or ``None`` if unknown."""
        ...


class AuthTicket(Protocol):
    """One admitted credential check; told its outcome exactly once (``done`` after an outcome is a
    no-op, so callers may call it in a ``finally``)."""

    def succeeded(self) -> None: ...

    def failed(self) -> None: ...

    def done(self) -> None: ...


@runtime_checkable
class AuthGuard(Protocol):
    """Throttles credential checks against guessing (e.g. per username and per client address).

    The server asks :meth:`admit` before it looks the user up; ``None`` refuses the check, and the
    client gets the same 401 as for any wrong credential (so a throttled guess learns nothing).
    Otherwise the server reports the outcome on the ticket: ``failed()`` for an unknown user or a
    bad MESSAGE-INTEGRITY alike, ``succeeded()`` for a good one.  An implementation may make
    ``admit`` wait (e.g. to run the checks of one username one at a time)."""

    async def admit(self, username: str, client: tuple[str, int]) -> AuthTicket | None: ...


class _Clock(Protocol):
    def seconds(self) -> float: ...


def _names(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.define
class StaticUsers:
    """A fixed user table (``{"alice": "secret"}``), like coturn's ``user=``."""

    users: Mapping[str, str]
    wildcard_users: frozenset[str] = attrs.field(default=frozenset(), converter=_names)

    async def lookup(self, username: str, realm: str) -> Credential | None:
        password = self.users.get(username)
        if password is None:
            return None
        return Credential(
            key=long_term_key(username, realm, password),
            wildcard_permission=username in self.wildcard_users,
        )


def rest_api_password(shared_secret: str | bytes, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)) — the TURN REST API password."""
    secret = shared_secret.encode() if isinstance(shared_secret, str) else shared_secret
    return base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest()).decode()


def rest_api_username(user_id: str, expiry: int, separator: str = ":") -> str:
    return f"{expiry}{separator}{user_id}" if user_id else str(expiry)


@attrs.define
class RestApiSecret:
    """TURN REST API ("ephemeral") credentials (draft-uberti-behave-turn-rest,
    coturn ``use-auth-secret``): the username is ``"<expiry-unix-time>:<userid>"``,
    the password ``base64(HMAC-SHA1(shared_secret, username))``.  Expired
    usernames are unknown, so they get 401 like any unknown user."""

    shared_secret: str | bytes
    clock: _Clock | None = None
    separator: str = ":"

    def _now(self) -> float:
        return self.clock.seconds() if self.clock is not None else time.time()

    async def lookup(self, username: str, realm: str) -> Credential | None:
        stamp = username.split(self.separator, 1)[0]
        try:
            expiry = int(stamp)
        except ValueError:
            return None
        if expiry < self._now():
            return None
        password = rest_api_password(self.shared_secret, username)
        return Credential(key=long_term_key(username, realm, password))


def _lookups(value: Iterable[CredentialLookup]) -> tuple[CredentialLookup, ...]:
    return tuple(value)


@attrs.define
class ChainedLookup:
    """Ask each lookup in turn; the first that knows the user wins."""

    lookups: tuple[CredentialLookup, ...] = attrs.field(converter=_lookups)

    @classmethod
    def of(cls, *lookups: CredentialLookup) -> ChainedLookup:
        return cls(lookups)

    async def lookup(self, username: str, realm: str) -> Credential | None:
        for item in self.lookups:
            cred = await item.lookup(username, realm)
            if cred is not None:
                return cred
        return None


@attrs.define
class NonceIssuer:
    """Stateless nonces: ``<expiry hex>.<truncated HMAC of it>``.

    Stateless so that a nonce obtained on a control connection is also valid on
    the separate RFC 6062 data connection (a new 5-tuple) and needs no cleanup.
    An expired nonce is *stale* (438: the client retries with the fresh nonce we
    send); a forged one is *invalid* (answered 401 like a missing one).
    """

    clock: _Clock
    lifetime: float = 600.0
    secret: bytes = attrs.field(factory=lambda: os.urandom(16))

    def _mac(self, stamp: str) -> str:
        return hmac.new(self.secret, stamp.encode(), hashlib.sha1).hexdigest()[:16]

    def issue(self) -> str:
        stamp = f"{int(self.clock.seconds() + self.lifetime):x}"
        return f"{stamp}.{self._mac(stamp)}"

    def check(self, nonce: str) -> str:
        """``"ok"``, ``"stale"`` or ``"invalid"``."""
        stamp, _, mac = nonce.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(stamp)):
            return "invalid"
        try:
            expiry = int(stamp, 16)
        except ValueError:
            return "invalid"
        return "ok" if expiry > self.clock.seconds() else "stale"


def static_users(users: Mapping[str, str] | None, wildcard: Iterable[str] = ()) -> StaticUsers:
    return StaticUsers(dict(users or {}), frozenset(wildcard))
