"""AWS request signatures as S3 checks them: Signature V4 (header and presigned query) and V2.

Pure: bytes and strings in, results out; no I/O, no Twisted, no clock of its own (``now`` is
passed in, the reactor's time).  The S3 endpoint (:mod:`globaleye.s3.endpoint`) calls
:func:`parse_auth` on every request to learn the access key, looks the secret up, then calls
:meth:`AuthRequest.verify`; the body checks (hex payload hash, aws-chunked chunk signatures,
trailer checksums) use :class:`PayloadMode` and :class:`AwsChunkedDecoder`.

§7.1.1 has the camera push its files "straight to the cloud store over HTTP" with the account of
LOGIN_RES (EURL/EAccount/EPassword); the carrier's store is S3-compatible, so the camera signs as
any S3 client does.  What is accepted (docs/protocol.md, "Embedded S3 endpoint"):

* V4 ``Authorization: AWS4-HMAC-SHA256 Credential=AK/date/region/s3/aws4_request,
  SignedHeaders=..., Signature=...`` with ``x-amz-content-sha256`` a hex SHA-256 of the body,
  ``UNSIGNED-PAYLOAD``, ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` (chunk signatures),
  ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`` or ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``;
  the request time within :data:`MAX_SKEW` of ``now``;
* V4 presigned query (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``, ``X-Amz-Expires``
  at most 7 days, ``X-Amz-SignedHeaders``, ``X-Amz-Signature``), valid until date + expires;
* V2 ``Authorization: AWS AK:signature`` (HMAC-SHA1; the Date or x-amz-date within
  :data:`MAX_SKEW`) and V2 query (``AWSAccessKeyId``, ``Expires``, ``Signature``) for old cameras.

Signatures are compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_tz
from urllib.parse import quote, unquote, unquote_to_bytes

import attrs

#: Largest difference between a signed request's time and ours (S3: 15 minutes).
MAX_SKEW = 900.0
#: Longest validity of a V4 presigned URL (S3: 7 days).
MAX_PRESIGN_EXPIRES = 604800
ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_MODES = (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)

#: V2's sub-resources that are part of the CanonicalizedResource (in this order once sorted).
V2_SUBRESOURCES = frozenset((
    "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy",
    "requestPayment", "restore", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning",
    "versions", "website", "response-cache-control", "response-content-disposition",
    "response-content-encoding", "response-content-language", "response-content-type", "response-expires"))

_UNRESERVED = "-_.~"


class AuthError(Exception):
    """A request whose signature is not acceptable; ``code`` is the S3 error code to answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- encoding ---------------------------------------------------------------------------------


def uri_encode(value: str | bytes, *, keep_slash: bool = False) -> str:
    """S3's URI encoding: every byte but ``A-Za-z0-9-_.~`` as ``%XX`` (upper case); ``/`` kept in
    a path.  Applied once: S3 does not double-encode the path as other services do."""
    return quote(value, safe=_UNRESERVED + ("/" if keep_slash else ""))


def split_query(raw_query: bytes | str) -> list[tuple[str, str]]:
    """``a=1&b&c=%20`` -> decoded (name, value) pairs in order; a name without ``=`` has value ``""``."""
    text = raw_query.decode("latin-1") if isinstance(raw_query, bytes) else raw_query
    pairs = []
    for item in text.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((unquote(name, errors="strict"), unquote(value, errors="strict")))
    return pairs


def canonical_query(pairs: Sequence[tuple[str, str]], *, exclude: str = "") -> str:
    encoded = sorted((uri_encode(name), uri_encode(value)) for name, value in pairs if name != exclude)
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_uris(raw_path: bytes | str) -> list[str]:
    """The canonical URI S3 computes (the decoded path encoded once), and the path as sent when
    the client encoded some byte differently (a client signs what it sends)."""
    text = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
    text = text or "/"
    canonical = uri_encode(unquote_to_bytes(text), keep_slash=True)
    return [canonical] if canonical == text else [canonical, text]


def _header_value(values: str | Sequence[str]) -> str:
    if isinstance(values, str):
        values = [values]
    return ",".join(" ".join(value.split()) for value in values)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def amz_date(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


def parse_amz_date(value: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        raise AuthError("AccessDenied", f"X-Amz-Date {value!r} is not YYYYMMDDTHHMMSSZ") from None


def parse_http_date(value: str) -> float:
    parsed = parsedate_tz(value)
    if parsed is None:
        raise AuthError("AccessDenied", f"Date {value!r} is not an HTTP date")
    return float(calendar.timegm(parsed[:9]) - (parsed[9] or 0))


# -- the request ------------------------------------------------------------------------------


Headers = Mapping[str, Sequence[str]]


def _get(headers: Headers, name: str) -> str | None:
    values = headers.get(name)
    return None if not values else _header_value(values)


@attrs.frozen
class PayloadMode:
    """How the body is protected: ``sha256`` (hex digest to check), ``unsigned``, or one of the
    :data:`STREAMING_MODES` (decode aws-chunked; ``chunk_key``/``seed``/``scope``/``date`` verify
    the chunk signatures of the signed forms)."""

    kind: str
    sha256: str = ""
    seed: str = ""
    chunk_key: bytes = b""
    scope: str = ""
    date: str = ""

    @property
    def streaming(self) -> bool:
        return self.kind in STREAMING_MODES

    @property
    def chunk_signed(self) -> bool:
        return self.kind in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER)


@attrs.frozen
class AuthRequest:
    """A request's signature as parsed, before the secret is known."""

    scheme: str  # "v4", "v4-query", "v2", "v2-query"
    access_key: str
    method: str
    raw_path: str
    pairs: tuple[tuple[str, str], ...]
    headers: Headers
    signature: str
    # V4
    date: str = ""
    scope_date: str = ""
    region: str = ""
    signed_headers: tuple[str, ...] = ()
    expires: int = 0
    # V2
    v2_resource: str = ""

    def verify(self, secret: str, now: float) -> PayloadMode:
        """Check the signature with ``secret`` at time ``now``; the body's protection, or :class:`AuthError`."""
        if self.scheme.startswith("v4"):
            return self._verify_v4(secret, now)
        return self._verify_v2(secret, now)

    # V4

    def _verify_v4(self, secret: str, now: float) -> PayloadMode:
        when = parse_amz_date(self.date)
        if self.date[:8] != self.scope_date:
            raise AuthError("AuthorizationHeaderMalformed", "the credential's date is not X-Amz-Date's")
        if self.scheme == "v4-query":
            if not 1 <= self.expires <= MAX_PRESIGN_EXPIRES:
                raise AuthError("AuthorizationQueryParametersError",
                                f"X-Amz-Expires must be 1 to {MAX_PRESIGN_EXPIRES} seconds")
            if when - now > MAX_SKEW:
                raise AuthError("AccessDenied", "the presigned URL is not valid yet")
            if now > when + self.expires:
                raise AuthError("AccessDenied", "Request has expired")
        elif abs(now - when) > MAX_SKEW:
            raise AuthError("RequestTimeTooSkewed",
                            "The difference between the request time and the server's time is too large.")
        if "host" not in self.signed_headers:
            raise AuthError("AccessDenied", "the Host header is not signed")
        canonical_headers = ""
        for name in self.signed_headers:
            value = _get(self.headers, name)
            if value is None:
                raise AuthError("AccessDenied", f"signed header {name} is missing")
            canonical_headers += f"{name}:{value.strip()}\n"
        if self.scheme == "v4-query":
            payload = dict(self.pairs).get("X-Amz-Content-Sha256", UNSIGNED_PAYLOAD)
        else:
            payload = _get(self.headers, "x-amz-content-sha256") or ""
            if not payload:
                raise AuthError("InvalidRequest", "x-amz-content-sha256 is missing")
        query = canonical_query(self.pairs, exclude="X-Amz-Signature" if self.scheme == "v4-query" else "")
        scope = f"{self.scope_date}/{self.region}/s3/aws4_request"
        key = signing_key(secret, self.scope_date, self.region)
        matched = False
        for uri in canonical_uris(self.raw_path):
            request = "\n".join((self.method, uri, query, canonical_headers, ";".join(self.signed_headers),
                                 payload))
            to_sign = "\n".join((ALGORITHM, self.date, scope, _sha256(request.encode())))
            expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
            matched |= hmac.compare_digest(expected, self.signature.lower())
        if not matched:
            raise AuthError("SignatureDoesNotMatch",
                            "The request signature we calculated does not match the signature you provided.")
        if payload == UNSIGNED_PAYLOAD:
            return PayloadMode("unsigned")
        if payload in STREAMING_MODES:
            return PayloadMode(payload, seed=self.signature.lower(), chunk_key=key, scope=scope, date=self.date)
        if len(payload) != 64 or any(c not in "0123456789abcdef" for c in payload.lower()):
            raise AuthError("InvalidArgument", f"x-amz-content-sha256 {payload[:80]!r} is not understood")
        return PayloadMode("sha256", sha256=payload.lower())

    # V2

    def _verify_v2(self, secret: str, now: float) -> PayloadMode:
        if self.scheme == "v2-query":
            if now > self.expires:
                raise AuthError("AccessDenied", "Request has expired")
            date_line = str(self.expires)
        else:
            amz = _get(self.headers, "x-amz-date")
            stamp = amz if amz is not None else _get(self.headers, "date")
            if stamp is None:
                raise AuthError("AccessDenied", "neither Date nor x-amz-date is given")
            if abs(now - parse_http_date(stamp)) > MAX_SKEW:
                raise AuthError("RequestTimeTooSkewed",
                                "The difference between the request time and the server's time is too large.")
            date_line = "" if amz is not None else stamp
        to_sign = v2_string_to_sign(self.method, self.headers, date_line, self.v2_resource, self.pairs)
        expected = base64.b64encode(hmac.new(secret.encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
        if not hmac.compare_digest(expected.encode(), self.signature.encode()):
            raise AuthError("SignatureDoesNotMatch",
                            "The request signature we calculated does not match the signature you provided.")
        return PayloadMode("unsigned")


def v2_string_to_sign(method: str, headers: Headers, date_line: str, resource: str,
                      pairs: Sequence[tuple[str, str]]) -> str:
    amz = sorted((name, _header_value(values)) for name, values in headers.items()
                 if name.startswith("x-amz-") and values)
    sub = sorted((name, value) for name, value in pairs if name in V2_SUBRESOURCES)
    if sub:
        resource += "?" + "&".join(f"{name}={value}" if value else name for name, value in sub)
    return "".join((method, "\n", _get(headers, "content-md5") or "", "\n", _get(headers, "content-type") or "",
                    "\n", date_line, "\n", "".join(f"{name}:{value.strip()}\n" for name, value in amz), resource))


def _credential(value: str) -> tuple[str, str, str]:
    parts = value.split("/")
    if len(parts) != 5 or parts[3] != "s3" or parts[4] != "aws4_request" or not parts[0]:
        raise AuthError("AuthorizationHeaderMalformed", f"Credential {value[:200]!r} is not AK/date/region/s3/aws4_request")
    return parts[0], parts[1], parts[2]


def parse_auth(method: str, raw_path: str, raw_query: str, headers: Headers,
               *, bucket_from_host: str = "") -> AuthRequest | None:
    """The signature a request carries (None: anonymous).  ``headers`` maps lower-case names to
    their values as received; ``raw_path`` and ``raw_query`` are as sent (percent-encoded);
    ``bucket_from_host`` is the bucket of a virtual-host-style request (V2 signs ``/bucket/key``)."""
    pairs = tuple(split_query(raw_query))
    query = dict(pairs)
    authorization = _get(headers, "authorization")
    if authorization and authorization.startswith(ALGORITHM + " "):
        fields = {}
        for item in authorization[len(ALGORITHM) + 1:].split(","):
            name, sep, value = item.strip().partition("=")
            if sep:
                fields[name] = value
        try:
            access_key, scope_date, region = _credential(fields["Credential"])
            signed = tuple(fields["SignedHeaders"].split(";"))
            signature = fields["Signature"]
        except KeyError as missing:
            raise AuthError("AuthorizationHeaderMalformed", f"the Authorization header lacks {missing}") from None
        date = _get(headers, "x-amz-date")
        if date is None:
            http_date = _get(headers, "date")
            if http_date is None:
                raise AuthError("AccessDenied", "neither X-Amz-Date nor Date is given")
            date = amz_date(parse_http_date(http_date))
        return AuthRequest("v4", access_key, method, raw_path, pairs, headers, signature, date=date,
                           scope_date=scope_date, region=region, signed_headers=signed)
    if authorization and authorization.startswith("AWS "):
        access_key, sep, signature = authorization[4:].strip().rpartition(":")
        if not sep or not access_key:
            raise AuthError("AccessDenied", "the Authorization header is not AWS AK:signature")
        return AuthRequest("v2", access_key, method, raw_path, pairs, headers, signature,
                           v2_resource=_v2_resource(raw_path, bucket_from_host))
    if authorization:
        raise AuthError("InvalidArgument", "unsupported Authorization type")
    if "X-Amz-Algorithm" in query:
        if query["X-Amz-Algorithm"] != ALGORITHM:
            raise AuthError("AuthorizationQueryParametersError", "X-Amz-Algorithm must be AWS4-HMAC-SHA256")
        try:
            access_key, scope_date, region = _credential(query["X-Amz-Credential"])
            expires = int(query["X-Amz-Expires"])
            return AuthRequest("v4-query", access_key, method, raw_path, pairs, headers, query["X-Amz-Signature"],
                               date=query["X-Amz-Date"], scope_date=scope_date, region=region,
                               signed_headers=tuple(query["X-Amz-SignedHeaders"].split(";")), expires=expires)
        except (KeyError, ValueError) as error:
            raise AuthError("AuthorizationQueryParametersError",
                            f"presigned URL parameter missing or wrong: {error}") from None
    if "AWSAccessKeyId" in query or "Signature" in query:
        try:
            return AuthRequest("v2-query", query["AWSAccessKeyId"], method, raw_path, pairs, headers,
                               query["Signature"], expires=int(query["Expires"]),
                               v2_resource=_v2_resource(raw_path, bucket_from_host))
        except (KeyError, ValueError) as error:
            raise AuthError("AccessDenied", f"V2 query parameter missing or wrong: {error}") from None
    return None


def _v2_resource(raw_path: str, bucket_from_host: str) -> str:
    path = raw_path or "/"
    return f"/{bucket_from_host}{path}" if bucket_from_host else path


# -- signing (the platform's presigned URLs; tests) -------------------------------------------


def sign_v4(method: str, host: str, raw_path: str, pairs: Sequence[tuple[str, str]], headers: Mapping[str, str],
            access_key: str, secret: str, region: str, now: float, payload: str = UNSIGNED_PAYLOAD) -> dict[str, str]:
    """The headers to add to a request for V4 header authentication (``host`` is signed)."""
    date = amz_date(now)
    all_headers = {name.lower(): value for name, value in headers.items()}
    all_headers.update({"host": host, "x-amz-date": date, "x-amz-content-sha256": payload})
    signed = sorted(all_headers)
    canonical_headers = "".join(f"{name}:{_header_value(all_headers[name]).strip()}\n" for name in signed)
    request = "\n".join((method, canonical_uris(raw_path)[0], canonical_query(pairs), canonical_headers,
                         ";".join(signed), payload))
    scope = f"{date[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join((ALGORITHM, date, scope, _sha256(request.encode())))
    signature = hmac.new(signing_key(secret, date[:8], region), to_sign.encode(), hashlib.sha256).hexdigest()
    return {"x-amz-date": date, "x-amz-content-sha256": payload,
            "Authorization": f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(signed)}, "
                             f"Signature={signature}"}


def presign(method: str, base_url: str, host: str, raw_path: str, access_key: str, secret: str, region: str,
            now: float, expires: int, extra: Sequence[tuple[str, str]] = ()) -> str:
    """A V4 presigned URL: ``base_url`` (scheme://host[:port]) + ``raw_path`` + the signed query."""
    if not 1 <= expires <= MAX_PRESIGN_EXPIRES:
        raise ValueError(f"expires must be 1 to {MAX_PRESIGN_EXPIRES} seconds")
    date = amz_date(now)
    scope = f"{date[:8]}/{region}/s3/aws4_request"
    pairs = [*extra, ("X-Amz-Algorithm", ALGORITHM), ("X-Amz-Credential", f"{access_key}/{scope}"),
             ("X-Amz-Date", date), ("X-Amz-Expires", str(expires)), ("X-Amz-SignedHeaders", "host")]
    query = canonical_query(pairs)
    request = "\n".join((method, canonical_uris(raw_path)[0], query, f"host:{host}\n", "host", UNSIGNED_PAYLOAD))
    to_sign = "\n".join((ALGORITHM, date, scope, _sha256(request.encode())))
    signature = hmac.new(signing_key(secret, date[:8], region), to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{base_url}{canonical_uris(raw_path)[0]}?{query}&X-Amz-Signature={signature}"


def presign_get(base_url: str, bucket: str, key: str, access_key: str, secret: str, now: float,
                expires: int = 3600, region: str = "us-east-1") -> str:
    """A short-lived path-style GET URL for ``bucket/key`` (what the platform hands a user, who
    never gets a camera's credentials).  ``base_url`` is ``http://host:port`` as the client reaches it."""
    host = base_url.split("://", 1)[-1].split("/", 1)[0]
    return presign("GET", _origin(base_url), host,
                   "/" + bucket + "/" + uri_encode(key, keep_slash=True), access_key, secret, region, now, expires)


def attachment(filename: str) -> str:
    """A Content-Disposition for a download named *filename* (RFC 6266; RFC 5987 for non-ASCII names)."""
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{uri_encode(filename)}"


@attrs.define
class UrlSigner:
    """Presigned GET URLs of the embedded endpoint (``globaleye.app.ports.Presigner``): signed with the
    platform's own key, valid a few minutes, so a user downloads a stored file without ever holding a
    camera's credentials.  ``clock`` is the reactor's ``seconds``."""

    base_url: str
    access_key: str
    secret: str
    clock: Callable[[], float]
    region: str = "us-east-1"

    def presign_get(self, bucket: str, key: str, expires: float, filename: str) -> str:
        host = self.base_url.split("://", 1)[-1].split("/", 1)[0]
        return presign("GET", _origin(self.base_url), host, "/" + bucket + "/" + uri_encode(key, keep_slash=True),
                       self.access_key, self.secret, self.region, self.clock(), max(1, int(expires)),
                       extra=(("response-content-disposition", attachment(filename)),))


def _origin(base_url: str) -> str:
    scheme, _, rest = base_url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def sign_v2(method: str, resource: str, headers: Mapping[str, str], access_key: str, secret: str) -> str:
    """The V2 ``Authorization`` header value for a request with ``headers`` (Date or x-amz-date set)."""
    lowered = {name.lower(): [value] for name, value in headers.items()}
    date_line = "" if "x-amz-date" in lowered else lowered.get("date", [""])[0]
    path, _, raw_query = resource.partition("?")
    to_sign = v2_string_to_sign(method, lowered, date_line, path, split_query(raw_query))
    signature = base64.b64encode(hmac.new(secret.encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    return f"AWS {access_key}:{signature}"


# -- checksums ----------------------------------------------------------------------------------


class Checksum:
    """An ``x-amz-checksum-<algorithm>`` value being computed (crc32, sha1, sha256; base64 as S3)."""

    ALGORITHMS = ("crc32", "sha1", "sha256")

    def __init__(self, algorithm: str) -> None:
        if algorithm not in self.ALGORITHMS:
            raise ValueError(algorithm)
        self.algorithm = algorithm
        self._crc = 0
        self._hash = hashlib.new(algorithm) if algorithm != "crc32" else None

    def update(self, data: bytes) -> None:
        if self._hash is None:
            self._crc = zlib.crc32(data, self._crc)
        else:
            self._hash.update(data)

    def value(self) -> str:
        raw = self._crc.to_bytes(4, "big") if self._hash is None else self._hash.digest()
        return base64.b64encode(raw).decode()


# -- aws-chunked ------------------------------------------------------------------------------


class ChunkError(Exception):
    """An aws-chunked body that is malformed or whose chunk signature does not match; ``code`` as
    :class:`AuthError`'s."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


MAX_CHUNK_LINE = 4096
MAX_TRAILER_BYTES = 4096


class AwsChunkedDecoder:
    """Decodes an ``aws-chunked`` body incrementally: :meth:`feed` bytes as they arrive, the
    decoded data goes to ``sink``; :meth:`finish` at the end of the HTTP body checks it ended
    properly.  With a :class:`PayloadMode` of a signed streaming form, each chunk's signature
    (``AWS4-HMAC-SHA256-PAYLOAD``, chained from the seed signature) is checked at the chunk's
    end, and a ``x-amz-trailer-signature`` too; ``trailers`` holds the trailing headers."""

    def __init__(self, mode: PayloadMode, sink: Callable[[bytes], None]) -> None:
        self.mode = mode
        self.sink = sink
        self.trailers: dict[str, str] = {}
        self.decoded = 0
        self._buffer = b""
        self._state = "size"  # size, data, data-crlf, trailer, done
        self._remaining = 0
        self._chunk_signature = ""
        self._chunk_hash = hashlib.sha256()
        self._previous = mode.seed
        self._trailer_bytes = 0
        self._trailer_text = ""

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while self._buffer and self._state != "done":
            if self._state == "data":
                piece = self._buffer[:self._remaining]
                self._buffer = self._buffer[len(piece):]
                self._remaining -= len(piece)
                self._chunk_hash.update(piece)
                self.decoded += len(piece)
                self.sink(piece)
                if self._remaining == 0:
                    self._state = "data-crlf"
                continue
            line = self._line()
            if line is None:
                return
            if self._state == "data-crlf":
                if line:
                    raise ChunkError("IncompleteBody", "a chunk is longer than its size says")
                self._end_chunk()
                self._state = "size"
            elif self._state == "size":
                self._start_chunk(line)
            elif self._state == "trailer":
                self._trailer_line(line)
        if self._state == "done" and self._buffer.strip():
            raise ChunkError("IncompleteBody", "data after the end of the aws-chunked body")

    def finish(self) -> None:
        if self._state != "done":
            raise ChunkError("IncompleteBody", "the aws-chunked body ended early")

    def _line(self) -> str | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_CHUNK_LINE:
                raise ChunkError("InvalidRequest", "an aws-chunked line is too long")
            return None
        if end > MAX_CHUNK_LINE:
            raise ChunkError("InvalidRequest", "an aws-chunked line is too long")
        line = self._buffer[:end]
        self._buffer = self._buffer[end + 2:]
        try:
            return line.decode("ascii")
        except UnicodeDecodeError:
            raise ChunkError("InvalidRequest", "an aws-chunked line is not ASCII") from None

    def _start_chunk(self, line: str) -> None:
        size_text, _, extension = line.partition(";")
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ChunkError("InvalidRequest", f"aws-chunked size {size_text[:20]!r} is not hex") from None
        if size < 0:
            raise ChunkError("InvalidRequest", "negative chunk size")
        self._chunk_signature = ""
        if extension:
            name, _, value = extension.partition("=")
            if name.strip() == "chunk-signature":
                self._chunk_signature = value.strip().lower()
        if self.mode.chunk_signed and not self._chunk_signature:
            raise ChunkError("SignatureDoesNotMatch", "a chunk has no chunk-signature")
        self._chunk_hash = hashlib.sha256()
        self._remaining = size
        if size == 0:
            self._end_chunk()
            self._state = "trailer"
        else:
            self._state = "data"

    def _end_chunk(self) -> None:
        if not self.mode.chunk_signed:
            return
        to_sign = "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", self.mode.date, self.mode.scope, self._previous,
                             EMPTY_SHA256, self._chunk_hash.hexdigest()))
        expected = hmac.new(self.mode.chunk_key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self._chunk_signature):
            raise ChunkError("SignatureDoesNotMatch", "a chunk signature does not match")
        self._previous = expected

    def _trailer_line(self, line: str) -> None:
        self._trailer_bytes += len(line) + 2
        if self._trailer_bytes > MAX_TRAILER_BYTES:
            raise ChunkError("InvalidRequest", "the aws-chunked trailer is too long")
        if not line:
            if self.mode.kind == STREAMING_SIGNED_TRAILER:
                signature = self.trailers.pop("x-amz-trailer-signature", "")
                to_sign = "\n".join(("AWS4-HMAC-SHA256-TRAILER", self.mode.date, self.mode.scope, self._previous,
                                     _sha256(self._trailer_text.encode())))
                expected = hmac.new(self.mode.chunk_key, to_sign.encode(), hashlib.sha256).hexdigest()
                if not hmac.compare_digest(expected, signature.lower()):
                    raise ChunkError("SignatureDoesNotMatch", "the trailer signature does not match")
            self._state = "done"
            return
        name, sep, value = line.partition(":")
        if not sep:
            raise ChunkError("InvalidRequest", f"trailer line {line[:60]!r} is not name:value")
        name = name.strip().lower()
        if name != "x-amz-trailer-signature":
            self._trailer_text += f"{name}:{value.strip()}\n"
        self.trailers[name] = value.strip()


def encode_aws_chunked(data: bytes, chunk_size: int, mode: PayloadMode,
                       trailers: Mapping[str, str] | None = None) -> bytes:
    """The aws-chunked encoding of ``data`` (tests; a client's view), with chunk signatures if
    ``mode`` is a signed streaming form."""
    out = []
    previous = mode.seed
    pieces = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    for piece in pieces:
        extension = ""
        if mode.chunk_signed:
            to_sign = "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", mode.date, mode.scope, previous, EMPTY_SHA256,
                                 _sha256(piece)))
            previous = hmac.new(mode.chunk_key, to_sign.encode(), hashlib.sha256).hexdigest()
            extension = ";chunk-signature=" + previous
        out.append(b"%x%s\r\n" % (len(piece), extension.encode()))
        if piece:
            out.append(piece + b"\r\n")
    if mode.kind in (STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER):
        text = "".join(f"{name}:{value}\n" for name, value in (trailers or {}).items())
        out.append(text.replace("\n", "\r\n").encode())
        if mode.kind == STREAMING_SIGNED_TRAILER:
            to_sign = "\n".join(("AWS4-HMAC-SHA256-TRAILER", mode.date, mode.scope, previous, _sha256(text.encode())))
            signature = hmac.new(mode.chunk_key, to_sign.encode(), hashlib.sha256).hexdigest()
            out.append(b"x-amz-trailer-signature:" + signature.encode() + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def content_md5_ok(header: str, digest: bytes) -> bool:
    """Does a ``Content-MD5`` header (base64 of the 16-byte digest) match ``digest``?"""
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, digest)


__all__ = ["MAX_SKEW", "AuthError", "AuthRequest", "AwsChunkedDecoder", "Checksum", "ChunkError", "PayloadMode",
           "content_md5_ok", "encode_aws_chunked", "parse_auth", "presign", "presign_get", "sign_v2", "sign_v4",
           "signing_key", "uri_encode"]
