"""One TLS server profile for every TLS listener of the platform (HTTPS, RTSPS, TURN over TLS).

Mozilla's "intermediate" profile (https://ssl-config.mozilla.org/, version 5.7): TLS 1.2 and
1.3 only; on TLS 1.2 only forward-secret AEAD suites (ECDHE with AES-GCM or ChaCha20-Poly1305),
so no static-RSA key exchange and no CBC; the server's order wins (256-bit AES first); no
renegotiation, no compression, no session tickets.  DHE suites are left out: they need DH
parameters the operator would have to manage, and every client of this platform speaks ECDHE.

:func:`server_context` reads and checks the files once and names the key that is wrong
(``tls_cert`` or ``tls_key``): configuration loading calls it so that ``config check`` and
``twistd`` refuse a broken certificate with one line, before anything listens.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet import ssl

#: TLS 1.2 suites, in the server's order of preference (TLS 1.3 keeps OpenSSL's own three AEAD suites).
CIPHERS = ":".join((
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
))

OPTIONS = (SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION
           | SSL.OP_NO_TICKET | SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_TLSv1 | SSL.OP_NO_TLSv1_1)


class TLSFileError(ValueError):
    """A certificate or key that cannot be used; ``key`` is ``tls_cert`` or ``tls_key``."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _no_passphrase(*_args: Any) -> bytes:
    # An encrypted key would otherwise make OpenSSL prompt on the terminal at start-up.
    return b""


def _readable(key: str, path: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise TLSFileError(key, f"cannot read {path}: {e.strerror or e}") from e


def server_context(cert: str, key: str) -> SSL.Context:
    """A server context with the profile above and *cert* (PEM, with its chain) and *key*."""
    _readable("tls_cert", cert)
    _readable("tls_key", key)
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(OPTIONS)
    context.set_cipher_list(CIPHERS.encode("ascii"))
    context.set_passwd_cb(_no_passphrase)
    try:
        context.use_certificate_chain_file(cert)
    except SSL.Error as e:
        raise TLSFileError("tls_cert", f"{cert}: not a usable PEM certificate ({_reason(e)})") from e
    try:
        context.use_privatekey_file(key)
        context.check_privatekey()
    except SSL.Error as e:
        reason = _reason(e)
        if "mismatch" in reason or "check private key" in reason:  # OpenSSL's "key values mismatch"
            raise TLSFileError("tls_key", f"{key} does not match the certificate {cert}") from e
        raise TLSFileError("tls_key", f"{key}: not a usable PEM private key, or encrypted ({reason})") from e
    return context


def _reason(error: SSL.Error) -> str:
    try:
        return str(error.args[0][-1][2])  # OpenSSL's last (library, function, reason)
    except (IndexError, TypeError):
        return str(error)


class ServerTLS(ssl.ContextFactory):
    """What ``reactor.listenSSL`` takes: one context built (and checked) at construction."""

    isClient = 0

    def __init__(self, cert: str, key: str) -> None:
        self.cert = cert
        self.key = key
        self._context = server_context(cert, key)

    def getContext(self) -> SSL.Context:  # noqa: N802 (Twisted's name)
        return self._context
