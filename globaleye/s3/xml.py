"""The S3 API's XML documents, pure: the answers the endpoint writes and the one request body it reads.

Answers are written with explicit escaping (keys are arbitrary UTF-8 and may hold ``<`` or
``&``); the CompleteMultipartUpload request is parsed with lxml with entities, DTDs and network
access off and a bounded size, so a hostile body can neither expand nor reach anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import attrs
from lxml import etree

from globaleye.s3.backend import ObjectInfo

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'
#: The largest CompleteMultipartUpload body read (10,000 parts of about 100 bytes each, as S3).
MAX_COMPLETE_BODY = 1 << 20
MAX_PARTS = 10000


class XMLError(Exception):
    """A request body that is not the document expected (S3's MalformedXML)."""


def _text(value: object) -> str:
    return escape(str(value))


def iso_time(posix: float) -> str:
    """S3's timestamp form: 2013-05-24T00:00:00.000Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(posix)) + f".{int((posix % 1) * 1000):03d}Z"


def http_time(posix: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(posix))


def error(code: str, message: str, resource: str, request_id: str) -> bytes:
    return (HEADER + f"<Error><Code>{_text(code)}</Code><Message>{_text(message)}</Message>"
            f"<Resource>{_text(resource)}</Resource><RequestId>{_text(request_id)}</RequestId></Error>").encode()


def list_buckets(buckets: Sequence[tuple[str, float]], owner: str) -> bytes:
    items = "".join(f"<Bucket><Name>{_text(name)}</Name><CreationDate>{iso_time(created)}</CreationDate></Bucket>"
                    for name, created in buckets)
    return (HEADER + f'<ListAllMyBucketsResult xmlns="{NS}"><Owner><ID>{_text(owner)}</ID>'
            f"<DisplayName>{_text(owner)}</DisplayName></Owner><Buckets>{items}</Buckets>"
            "</ListAllMyBucketsResult>").encode()


@attrs.frozen
class ListV2:
    """One page of ListObjectsV2 as answered."""

    bucket: str
    prefix: str
    objects: Sequence[ObjectInfo]
    truncated: bool
    max_keys: int
    continuation_token: str = ""
    next_continuation_token: str = ""
    start_after: str = ""
    encoding_type: str = ""
    delimiter: str = ""
    common_prefixes: Sequence[str] = ()

    def to_xml(self) -> bytes:
        url = self.encoding_type == "url"
        key = _key_writer(url)

        parts = [HEADER, f'<ListBucketResult xmlns="{NS}"><Name>{_text(self.bucket)}</Name>',
                 f"<Prefix>{key(self.prefix)}</Prefix><KeyCount>{len(self.objects)}</KeyCount>",
                 f"<MaxKeys>{self.max_keys}</MaxKeys><IsTruncated>{'true' if self.truncated else 'false'}</IsTruncated>"]
        if url:
            parts.append("<EncodingType>url</EncodingType>")
        if self.continuation_token:
            parts.append(f"<ContinuationToken>{_text(self.continuation_token)}</ContinuationToken>")
        if self.next_continuation_token:
            parts.append(f"<NextContinuationToken>{_text(self.next_continuation_token)}</NextContinuationToken>")
        if self.start_after:
            parts.append(f"<StartAfter>{key(self.start_after)}</StartAfter>")
        if self.delimiter:
            parts.append(f"<Delimiter>{key(self.delimiter)}</Delimiter>")
        parts.extend(_contents(self.objects, self.common_prefixes, key))
        parts.append("</ListBucketResult>")
        return "".join(parts).encode()


def _key_writer(url: bool) -> Callable[[str], str]:
    def key(value: str) -> str:
        return quote(value, safe="/") if url else _text(value)
    return key


def _contents(objects: Sequence[ObjectInfo], prefixes: Sequence[str], key: Callable[[str], str]) -> list[str]:
    parts = [f"<Contents><Key>{key(info.key)}</Key><LastModified>{iso_time(info.modified)}</LastModified>"
             f"<ETag>&quot;{_text(info.etag)}&quot;</ETag><Size>{info.size}</Size>"
             "<StorageClass>STANDARD</StorageClass></Contents>" for info in objects]
    parts.extend(f"<CommonPrefixes><Prefix>{key(prefix)}</Prefix></CommonPrefixes>" for prefix in prefixes)
    return parts


def list_v1(bucket: str, prefix: str, marker: str, delimiter: str, max_keys: int, objects: Sequence[ObjectInfo],
            prefixes: Sequence[str], truncated: bool, next_marker: str, encoding_type: str = "") -> bytes:
    """ListObjects (version 1: s3cmd's ``ls``)."""
    url = encoding_type == "url"
    key = _key_writer(url)
    parts = [HEADER, f'<ListBucketResult xmlns="{NS}"><Name>{_text(bucket)}</Name><Prefix>{key(prefix)}</Prefix>',
             f"<Marker>{key(marker)}</Marker><MaxKeys>{max_keys}</MaxKeys>",
             f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"]
    if url:
        parts.append("<EncodingType>url</EncodingType>")
    if delimiter:
        parts.append(f"<Delimiter>{key(delimiter)}</Delimiter>")
    if next_marker:
        parts.append(f"<NextMarker>{key(next_marker)}</NextMarker>")
    parts.extend(_contents(objects, prefixes, key))
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()


def initiate_multipart(bucket: str, key: str, upload_id: str) -> bytes:
    return (HEADER + f'<InitiateMultipartUploadResult xmlns="{NS}"><Bucket>{_text(bucket)}</Bucket>'
            f"<Key>{_text(key)}</Key><UploadId>{_text(upload_id)}</UploadId></InitiateMultipartUploadResult>").encode()


def complete_multipart(location: str, bucket: str, key: str, etag: str) -> bytes:
    return (HEADER + f'<CompleteMultipartUploadResult xmlns="{NS}"><Location>{_text(location)}</Location>'
            f"<Bucket>{_text(bucket)}</Bucket><Key>{_text(key)}</Key><ETag>&quot;{_text(etag)}&quot;</ETag>"
            "</CompleteMultipartUploadResult>").encode()


def copy_result(etag: str, modified: float) -> bytes:
    return (HEADER + f'<CopyObjectResult xmlns="{NS}"><LastModified>{iso_time(modified)}</LastModified>'
            f"<ETag>&quot;{_text(etag)}&quot;</ETag></CopyObjectResult>").encode()


def location(region: str) -> bytes:
    return (HEADER + f'<LocationConstraint xmlns="{NS}">{_text(region)}</LocationConstraint>').encode()


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                          huge_tree=False, remove_comments=True, remove_pis=True)


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


MAX_DELETE_KEYS = 1000


def parse_delete(body: bytes) -> tuple[list[str], bool]:
    """The keys of a DeleteObjects (``POST ?delete``) body and its Quiet flag (at most 1000 keys)."""
    root = _parse(body, "Delete")
    keys, quiet = [], False
    for element in root:
        name = _local(element.tag)
        if name == "Quiet":
            quiet = (element.text or "").strip().lower() == "true"
        elif name == "Object":
            fields = {_local(child.tag): child.text or "" for child in element}
            if not fields.get("Key"):
                raise XMLError("an Object lacks its Key")
            keys.append(fields["Key"])
            if len(keys) > MAX_DELETE_KEYS:
                raise XMLError(f"more than {MAX_DELETE_KEYS} keys")
    if not keys:
        raise XMLError("no Object listed")
    return keys, quiet


def delete_result(deleted: Sequence[str], errors: Sequence[tuple[str, str, str]]) -> bytes:
    parts = [HEADER, f'<DeleteResult xmlns="{NS}">']
    parts.extend(f"<Deleted><Key>{_text(key)}</Key></Deleted>" for key in deleted)
    parts.extend(f"<Error><Key>{_text(key)}</Key><Code>{_text(code)}</Code><Message>{_text(message)}</Message></Error>"
                 for key, code, message in errors)
    parts.append("</DeleteResult>")
    return "".join(parts).encode()


def _parse(body: bytes, expected: str) -> Any:
    if len(body) > MAX_COMPLETE_BODY:
        raise XMLError(f"the {expected} body is too large")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise XMLError("DTDs are not accepted")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as failure:
        raise XMLError(f"not well-formed XML: {failure}") from None
    if _local(root.tag) != expected:
        raise XMLError(f"expected {expected}, got {_local(root.tag)!r}")
    return root


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """The (PartNumber, ETag without quotes) list of a CompleteMultipartUpload body, in the order
    given.  :class:`XMLError` if it is too long, not that document, has a DTD, or lists no part."""
    root = _parse(body, "CompleteMultipartUpload")
    parts = []
    for element in root:
        if _local(element.tag) != "Part":
            continue
        fields = {_local(child.tag): (child.text or "").strip() for child in element}
        try:
            number = int(fields["PartNumber"])
            etag = fields["ETag"].replace("&quot;", "").strip('"')
        except (KeyError, ValueError):
            raise XMLError("a Part lacks a PartNumber or an ETag") from None
        if not 1 <= number <= MAX_PARTS:
            raise XMLError(f"PartNumber {number} is not 1 to {MAX_PARTS}")
        parts.append((number, etag))
        if len(parts) > MAX_PARTS:
            raise XMLError("too many parts")
    if not parts:
        raise XMLError("no Part listed")
    return parts


__all__ = ["MAX_COMPLETE_BODY", "ListV2", "XMLError", "complete_multipart", "error", "http_time",
           "initiate_multipart", "iso_time", "list_buckets", "list_v1", "location", "parse_complete", "parse_delete", "delete_result"]
