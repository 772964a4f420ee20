"""Safe, liberal XML reading and strict XML writing for the device protocols.

Devices are built by many vendors who copied the examples of the specification,
mistakes included (``encoding=" UTF-8"``, ``</ DevID>``, ``< VIDEO_PTZ_RES>``,
``<RtspUpnpPort>8554</UpnpPort>``, stray ``</Channel>``).  libxml2 rejects all of
these, and its ``recover`` mode guesses silently and differently from one release
to the next, so this module first *repairs* the document with a small, predictable
tokenizer of our own and only then hands the canonical result to lxml, configured
so that it can never expand entities, load a DTD or touch the network.

What we write is the opposite: strict, well-formed UTF-8 with the declaration the
specification shows, so that the strictest peer can read it.

Pure functions only: no I/O, no Twisted.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator

from lxml import etree  # type: ignore[import-untyped]

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_SIZE",
    "XML_DECLARATION",
    "MessageError",
    "check_xml_text",
    "decode_document",
    "element_text",
    "iter_children",
    "parse_document",
    "parse_int",
    "repair_document",
    "serialize",
]

#: §7.4.7: the data field of a frame is at most 65535 bytes; the HTTP messages of
#: §5/§7.2 are far smaller, so one bound serves both and caps parser work.
MAX_DOCUMENT_SIZE = 65535

#: The deepest message is three levels (root / list item / value); anything much
#: deeper is an attack on the parser, not a device.
MAX_DEPTH = 16

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


class MessageError(ValueError):
    """A message could not be decoded or encoded; str(e) says why, for logs."""


# --------------------------------------------------------------------------- decoding

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

_DECL_BYTES = re.compile(rb"\A\s*<\?\s*xml\b(.*?)\?>", re.DOTALL | re.IGNORECASE)
_DECL_TEXT = re.compile(r"\A\s*<\?\s*xml\b.*?\?>", re.DOTALL | re.IGNORECASE)
_ENCODING = re.compile(rb"""encoding\s*=\s*["']\s*([A-Za-z0-9._:\-]*)\s*["']""", re.IGNORECASE)

# GB18030 is a superset of GB2312 and GBK, so every Chinese declaration maps onto it.
_ENCODING_ALIASES = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "us-ascii": "utf-8",
    "ascii": "utf-8",
    "gbk": "gb18030",
    "gb2312": "gb18030",
    "gb18030": "gb18030",
    "cp936": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "iso-8859-1": "latin-1",
    "latin-1": "latin-1",
    "latin1": "latin-1",
}

# Characters XML 1.0 forbids.  Devices written in C often append a NUL terminator.
_ILLEGAL_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def decode_document(data: bytes | bytearray | memoryview | str) -> str:
    """Turn raw message bytes into text, whatever the device claimed its encoding was."""
    if isinstance(data, str):
        text = data
    else:
        raw = bytes(data)
        if len(raw) > MAX_DOCUMENT_SIZE:
            raise MessageError(
                f"document is {len(raw)} bytes, more than the {MAX_DOCUMENT_SIZE} allowed"
            )
        text = _decode_bytes(raw)
    if len(text) > MAX_DOCUMENT_SIZE:
        raise MessageError(f"document is longer than the {MAX_DOCUMENT_SIZE} characters allowed")
    text = _DECL_TEXT.sub("", text, count=1)
    return _ILLEGAL_XML_CHARS.sub("", text)


def _decode_bytes(raw: bytes) -> str:
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(codec)
            except UnicodeDecodeError as e:
                raise MessageError(f"document is not valid {codec}: {e.reason}") from None
    declared = None
    decl = _DECL_BYTES.match(raw)
    if decl is not None:
        enc = _ENCODING.search(decl.group(1))
        if enc is not None and enc.group(1):
            name = enc.group(1).decode("ascii").lower()
            declared = _ENCODING_ALIASES.get(name)
            if declared is None:
                raise MessageError(f"unsupported encoding {name!r}")
    # Chinese firmware regularly declares UTF-8 (or nothing) and sends GBK, so
    # UTF-8 falls back to GB18030 rather than failing.
    candidates = [declared] if declared not in (None, "utf-8") else ["utf-8", "gb18030"]
    for codec in candidates:
        assert codec is not None
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            continue
    raise MessageError(f"document is not valid {' or '.join(c for c in candidates if c)}")


# --------------------------------------------------------------------------- repair

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
# A tag runs to the first ">" outside quotes, and may not contain "<".
_TAG = re.compile(r"""<((?:[^<>"']++|"[^"<]*+"|'[^'<]*+')*+)>""")
_TAG_BODY = re.compile(r"\s*(/?)\s*([^\s/]+)(.*?)(/?)\s*\Z", re.DOTALL)
_BARE_AMP = re.compile(r"&(?!(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});)")
_DOCTYPE = re.compile(r"<!\s*(?:DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.IGNORECASE)


def _tag_name(raw: str) -> str | None:
    """The element name a device meant, or None when it is not a name at all.

    Backslashes come from markdown-escaped copies of the spec (``ABILITYUP\\_REQ``);
    namespace prefixes are dropped because no message of the protocol has one.
    """
    name = raw.replace("\\", "")
    name = name.rpartition(":")[2]
    return name if _NAME.match(name) else None


def repair_document(text: str) -> str:
    """Rewrite a sloppy document into a canonical well-formed one.

    Rules, chosen to be predictable rather than clever:

    * spaces inside tags are dropped; attributes, comments and processing
      instructions are dropped (no message has any);
    * a closing tag closes the innermost open element of that name
      (case-insensitively), closing anything left open inside it;
    * a closing tag matching no open element closes the current element if that
      element is a leaf other than the root (``<RtspUpnpPort>1</UpnpPort>``) and is
      ignored otherwise (``</Channel> ..... </Channel>`` between list items);
    * a ``<`` that does not start a tag, and a ``&`` that does not start a
      reference, are taken as text;
    * text outside the root element is ignored; a second root element, a DOCTYPE,
      an unclosed root or nesting deeper than MAX_DEPTH are errors.
    """
    if _DOCTYPE.search(text):
        raise MessageError("DOCTYPE is not allowed")
    out: list[str] = []
    stack: list[list[object]] = []  # [name, has_children]
    root_done = False
    pos = 0
    n = len(text)

    def emit_text(chunk: str) -> None:
        if stack and chunk:
            out.append(_BARE_AMP.sub("&amp;", chunk).replace(">", "&gt;"))

    def open_element(name: str) -> None:
        nonlocal root_done
        if not stack and root_done:
            raise MessageError(f"content after the root element: <{name}>")
        if len(stack) >= MAX_DEPTH:
            raise MessageError(f"elements nested deeper than {MAX_DEPTH}")
        if stack:
            stack[-1][1] = True
        stack.append([name, False])
        out.append(f"<{name}>")

    def close_top() -> None:
        nonlocal root_done
        name = stack.pop()[0]
        out.append(f"</{name}>")
        if not stack:
            root_done = True

    while pos < n:
        lt = text.find("<", pos)
        if lt < 0:
            emit_text(text[pos:])
            break
        emit_text(text[pos:lt])
        if text.startswith("<!--", lt):
            end = text.find("-->", lt + 4)
            if end < 0:
                raise MessageError("XML is not well-formed: unterminated comment")
            pos = end + 3
            continue
        if text.startswith("<![CDATA[", lt):
            end = text.find("]]>", lt + 9)
            if end < 0:
                raise MessageError("XML is not well-formed: unterminated CDATA section")
            if stack:
                out.append(text[lt : end + 3])
            pos = end + 3
            continue
        if text.startswith("<?", lt):
            end = text.find("?>", lt + 2)
            if end < 0:
                raise MessageError("XML is not well-formed: unterminated processing instruction")
            pos = end + 2
            continue
        if text.startswith("<!", lt):
            raise MessageError("XML is not well-formed: markup declarations are not allowed")
        tag = _TAG.match(text, lt)
        body = _TAG_BODY.match(tag.group(1)) if tag is not None else None
        name = _tag_name(body.group(2)) if body is not None else None
        if tag is None or body is None or name is None:
            emit_text("&lt;")
            pos = lt + 1
            continue
        pos = tag.end()
        closing, self_closing = bool(body.group(1)), bool(body.group(4))
        if not closing:
            open_element(name)
            if self_closing:
                close_top()
            continue
        key = name.casefold()
        for depth in range(len(stack) - 1, -1, -1):
            if str(stack[depth][0]).casefold() == key:
                while len(stack) > depth:
                    close_top()
                break
        else:
            if len(stack) > 1 and not stack[-1][1]:
                close_top()
    if not root_done:
        if stack:
            raise MessageError(f"document ends inside <{stack[0][0]}>: the root is not closed")
        raise MessageError("no root element")
    return "".join(out)


def _make_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
        recover=False,
    )


def parse_document(data: bytes | bytearray | memoryview | str) -> etree._Element:
    """Bytes from the wire to the root element of a canonical tree."""
    canonical = repair_document(decode_document(data))
    try:
        root = etree.fromstring(canonical.encode("utf-8"), _make_parser())
    except etree.XMLSyntaxError as e:
        raise MessageError(f"XML is not well-formed: {e}") from None
    except (ValueError, etree.LxmlError) as e:  # pragma: no cover - defensive
        raise MessageError(f"XML is not well-formed: {e}") from None
    return root


def iter_children(element: etree._Element) -> Iterator[etree._Element]:
    """Child elements only: comments and PIs were removed, but be sure."""
    for child in element:
        if isinstance(child.tag, str):
            yield child


def element_text(element: etree._Element) -> str:
    """The value of a leaf, with the padding devices copy from the examples removed."""
    return "".join(element.itertext()).strip()


_INTEGER = re.compile(r"[+]?[0-9]{1,19}\Z")


def parse_int(name: str, text: str, minimum: int, maximum: int) -> int:
    """Read a decimal field, naming the element in the error so logs are useful."""
    if text.startswith("-") and _INTEGER.match(text[1:]):
        raise MessageError(f"{name}: {text!r} is out of range {minimum}..{maximum}")
    if not _INTEGER.match(text):
        raise MessageError(f"{name}: {text!r} is not an integer")
    value = int(text)
    if not minimum <= value <= maximum:
        raise MessageError(f"{name}: {text!r} is out of range {minimum}..{maximum}")
    return value


# --------------------------------------------------------------------------- encoding


def check_xml_text(name: str, value: str) -> None:
    """Refuse strings XML 1.0 cannot carry instead of sending a broken document."""
    bad = _ILLEGAL_XML_CHARS.search(value)
    if bad is not None:
        raise MessageError(f"{name}: character {bad.group()!r} cannot be represented in XML")


def serialize(root: etree._Element) -> bytes:
    """The strict form: the declaration of the spec's examples, UTF-8, indented."""
    try:
        body = etree.tostring(root, encoding="UTF-8", xml_declaration=False, pretty_print=True)
    except ValueError as e:
        raise MessageError(f"cannot serialize: {e}") from None
    return XML_DECLARATION + body
