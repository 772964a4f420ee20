"""Tests for globaleye.device.protocol.xmlcodec: liberal, safe reading; strict writing."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree  # type: ignore[import-untyped]
from twisted.trial.unittest import SynchronousTestCase

from globaleye.device.protocol.xmlcodec import (
    MAX_DEPTH,
    MAX_DOCUMENT_SIZE,
    MessageError,
    check_xml_text,
    decode_document,
    element_text,
    parse_document,
    parse_int,
    repair_document,
    serialize,
)


def leaf(root: etree._Element, name: str) -> str:
    found = root.find(name)
    assert found is not None, name
    return element_text(found)


class DecodeTests(SynchronousTestCase):
    def test_space_inside_encoding(self) -> None:
        root = parse_document('<?xml version="1.0" encoding=" UTF-8" ?><A><B>中</B></A>'.encode())
        self.assertEqual(leaf(root, "B"), "中")

    def test_utf8_bom(self) -> None:
        root = parse_document(b"\xef\xbb\xbf<?xml version='1.0'?><A><B>x</B></A>")
        self.assertEqual(leaf(root, "B"), "x")

    def test_utf16_bom(self) -> None:
        root = parse_document("<A><B>设备</B></A>".encode("utf-16"))
        self.assertEqual(leaf(root, "B"), "设备")

    def test_gbk_declared(self) -> None:
        data = '<?xml version="1.0" encoding="GBK"?><A><B>天翼云</B></A>'.encode("gbk")
        self.assertEqual(leaf(parse_document(data), "B"), "天翼云")

    def test_gb2312_declared(self) -> None:
        data = '<?xml version="1.0" encoding="gb2312"?><A><B>设备编码</B></A>'.encode("gb2312")
        self.assertEqual(leaf(parse_document(data), "B"), "设备编码")

    def test_gbk_declared_as_utf8(self) -> None:
        """Firmware that declares UTF-8 and sends GBK is common; fall back."""
        data = '<?xml version="1.0" encoding="UTF-8"?><A><B>天翼云</B></A>'.encode("gbk")
        self.assertEqual(leaf(parse_document(data), "B"), "天翼云")

    def test_undeclared_gbk(self) -> None:
        data = "<A><B>天翼云</B></A>".encode("gbk")
        self.assertEqual(leaf(parse_document(data), "B"), "天翼云")

    def test_unknown_encoding(self) -> None:
        e = self.assertRaises(
            MessageError, parse_document, b'<?xml version="1.0" encoding="EBCDIC-X"?><A/>'
        )
        self.assertIn("unsupported encoding", str(e))

    def test_nul_terminator_and_control_characters(self) -> None:
        root = parse_document(b"<A><B>x\x01y</B></A>\x00")
        self.assertEqual(leaf(root, "B"), "xy")

    def test_too_large(self) -> None:
        data = b"<A><B>" + b"x" * MAX_DOCUMENT_SIZE + b"</B></A>"
        e = self.assertRaises(MessageError, parse_document, data)
        self.assertIn("65535", str(e))

    def test_exactly_max_size_accepted(self) -> None:
        head, tail = b"<A><B>", b"</B></A>"
        data = head + b"x" * (MAX_DOCUMENT_SIZE - len(head) - len(tail)) + tail
        self.assertEqual(len(leaf(parse_document(data), "B")), MAX_DOCUMENT_SIZE - 14)

    def test_str_input(self) -> None:
        self.assertEqual(decode_document("<?xml version='1.0'?><A/>"), "<A/>")


class HostileInputTests(SynchronousTestCase):
    def test_billion_laughs(self) -> None:
        data = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<LOGIN_REQ><DevID>&lol3;</DevID></LOGIN_REQ>"""
        e = self.assertRaises(MessageError, parse_document, data)
        self.assertEqual(str(e), "DOCTYPE is not allowed")

    def test_xxe(self) -> None:
        data = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<LOGIN_REQ><DevID>&xxe;</DevID></LOGIN_REQ>"""
        self.assertRaises(MessageError, parse_document, data)

    def test_doctype_lowercase_and_spaced(self) -> None:
        self.assertRaises(MessageError, parse_document, b"<! doctype x><A/>")

    def test_external_dtd(self) -> None:
        data = b'<!DOCTYPE A SYSTEM "http://example.invalid/a.dtd"><A/>'
        self.assertRaises(MessageError, parse_document, data)

    def test_undefined_entity_is_text(self) -> None:
        """Without a DTD no entity can be defined; a stray one is literal text."""
        self.assertEqual(leaf(parse_document(b"<A><B>&xxe;</B></A>"), "B"), "&xxe;")

    def test_predefined_and_char_refs(self) -> None:
        root = parse_document(b"<A><B>&lt;&amp;&#20013;&#x6587;</B></A>")
        self.assertEqual(leaf(root, "B"), "<&中文")

    def test_bad_char_ref(self) -> None:
        e = self.assertRaises(MessageError, parse_document, b"<A><B>&#0;</B></A>")
        self.assertIn("not well-formed", str(e))

    def test_depth_limit(self) -> None:
        deep = "".join(f"<E{i}>" for i in range(MAX_DEPTH + 1))
        deep += "".join(f"</E{i}>" for i in reversed(range(MAX_DEPTH + 1)))
        e = self.assertRaises(MessageError, parse_document, deep.encode())
        self.assertIn("deeper", str(e))

    def test_depth_at_limit_accepted(self) -> None:
        deep = "".join(f"<E{i}>" for i in range(MAX_DEPTH))
        deep += "".join(f"</E{i}>" for i in reversed(range(MAX_DEPTH)))
        self.assertEqual(parse_document(deep.encode()).tag, "E0")

    def test_empty(self) -> None:
        e = self.assertRaises(MessageError, parse_document, b"")
        self.assertIn("no root element", str(e))

    def test_unclosed_root(self) -> None:
        e = self.assertRaises(MessageError, parse_document, b"<A><B>1</B>")
        self.assertIn("not closed", str(e))

    def test_two_roots(self) -> None:
        self.assertRaises(MessageError, parse_document, b"<A/><B/>")

    def test_unterminated_comment(self) -> None:
        self.assertRaises(MessageError, parse_document, b"<A><!-- </A>")

    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=300))
    def test_fuzz_bytes(self, data: bytes) -> None:
        try:
            parse_document(data)
        except MessageError:
            pass

    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.text(alphabet=st.sampled_from(list("<>/!?-[]&#;= \"'\\\nAbX_:CDAT0x中")), max_size=80)
    )
    def test_fuzz_markup(self, text: str) -> None:
        try:
            parse_document(text.encode("utf-8"))
        except MessageError:
            pass


class RepairTests(SynchronousTestCase):
    def repaired(self, text: str) -> str:
        return repair_document(decode_document(text))

    def test_spaces_inside_tags(self) -> None:
        self.assertEqual(
            self.repaired("< VIDEO_PTZ_RES><DevID > 1</ DevID ></ VIDEO_PTZ_RES>"),
            "<VIDEO_PTZ_RES><DevID> 1</DevID></VIDEO_PTZ_RES>",
        )

    def test_mismatched_leaf_close(self) -> None:
        self.assertEqual(
            self.repaired("<R><RtspUpnpPort>8554</UpnpPort><X>1</X></R>"),
            "<R><RtspUpnpPort>8554</RtspUpnpPort><X>1</X></R>",
        )

    def test_stray_close_between_items_ignored(self) -> None:
        self.assertEqual(
            self.repaired("<R><C><N>1</N></C></C> ..... </C></R>"),
            "<R><C><N>1</N></C> ..... </R>",
        )

    def test_close_tag_closes_unclosed_children(self) -> None:
        self.assertEqual(self.repaired("<R><A>1<B>2</R>"), "<R><A>1<B>2</B></A></R>")

    def test_case_insensitive_close(self) -> None:
        self.assertEqual(self.repaired("<R><DevID>1</DEVID></r>"), "<R><DevID>1</DevID></R>")

    def test_markdown_escaped_underscore(self) -> None:
        self.assertEqual(
            self.repaired("<REBOOT\\_REQ></REBOOT\\_REQ>"), "<REBOOT_REQ></REBOOT_REQ>"
        )

    def test_attributes_namespaces_comments_pis_dropped(self) -> None:
        self.assertEqual(
            self.repaired('<ns:R xmlns:ns="urn:x" a=">"><!-- c --><?pi x?><B k="v">1</B></ns:R>'),
            "<R><B>1</B></R>",
        )

    def test_bare_lt_and_amp_are_text(self) -> None:
        root = parse_document(b"<R><P>1 < 2 & 3 > 0 <</P></R>")
        self.assertEqual(leaf(root, "P"), "1 < 2 & 3 > 0 <")

    def test_cdata_kept(self) -> None:
        self.assertEqual(leaf(parse_document(b"<R><P><![CDATA[<&>]]></P></R>"), "P"), "<&>")

    def test_self_closing(self) -> None:
        self.assertEqual(self.repaired("<R><A/><B /></R>"), "<R><A></A><B></B></R>")

    def test_text_outside_root_ignored(self) -> None:
        self.assertEqual(self.repaired("junk<R>1</R>junk"), "<R>1</R>")


class IntTests(SynchronousTestCase):
    def test_ok(self) -> None:
        self.assertEqual(parse_int("Port", "0080", 0, 65535), 80)
        self.assertEqual(parse_int("Port", "+1", 0, 65535), 1)

    def test_not_integer(self) -> None:
        e = self.assertRaises(MessageError, parse_int, "RtspLocalPort", "abc", 0, 65535)
        self.assertEqual(str(e), "RtspLocalPort: 'abc' is not an integer")

    def test_unicode_digits_refused(self) -> None:
        self.assertRaises(MessageError, parse_int, "Port", "١٢", 0, 65535)

    def test_out_of_range(self) -> None:
        e = self.assertRaises(MessageError, parse_int, "NatPort", "65536", 0, 65535)
        self.assertIn("NatPort", str(e))
        e = self.assertRaises(MessageError, parse_int, "NatPort", "-1", 0, 65535)
        self.assertIn("out of range", str(e))

    def test_huge(self) -> None:
        self.assertRaises(MessageError, parse_int, "Port", "9" * 5000, 0, 65535)


class SerializeTests(SynchronousTestCase):
    def test_declaration_and_strict_reparse(self) -> None:
        root = etree.Element("A")
        etree.SubElement(root, "B").text = "<&>\r中"
        data = serialize(root)
        self.assertTrue(data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n'))
        strict = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        again = etree.fromstring(data, strict)
        self.assertEqual(again.findtext("B"), "<&>\r中")

    def test_check_xml_text(self) -> None:
        check_xml_text("X", "ok\t\n\r中")
        e = self.assertRaises(MessageError, check_xml_text, "DevKey", "a\x00b")
        self.assertIn("DevKey", str(e))
