"""The grid's and the player controls' files without a browser: every word they use is in both
dictionaries, nothing the CSP would refuse, and the mux framing's Python reader."""

from __future__ import annotations

import re

from twisted.trial.unittest import SynchronousTestCase

from globaleye.web.mux import (
    KIND_ERROR,
    KIND_FRAGMENT,
    KIND_INIT,
    MAX_STREAMS,
    BadMuxRequest,
    StreamSpec,
    frame,
    init_payload,
    parse_frames,
    parse_specs,
)
from globaleye.web.site import STATIC

FILES = ("grid.js", "controls.js", "js/mux.js")


class GridFilesTests(SynchronousTestCase):
    def words(self) -> dict[str, set[str]]:
        text = (STATIC / "i18n.js").read_text(encoding="utf-8")
        blocks = re.split(r"^  (?:'zh-CN'|en): \{$", text, flags=re.M)
        return {name: set(re.findall(r"^    (\w+): ", block.split("\n  },")[0], flags=re.M))
                for name, block in zip(("zh-CN", "en"), blocks[1:], strict=True)}

    def test_every_word_in_both_languages(self) -> None:
        words = self.words()
        used: set[str] = set()
        for name in FILES:
            source = (STATIC / name).read_text(encoding="utf-8")
            used |= set(re.findall(r"\bt\('(\w+)'\)", source))
            used |= {f"layout{n}" for n in (1, 4, 9)} if "t(`layout${n}`)" in source else set()
        self.assertGreater(len(used), 20)
        self.assertEqual(used - words["zh-CN"], set())
        self.assertEqual(used - words["en"], set())

    def test_nothing_the_csp_refuses(self) -> None:
        for name in FILES:
            source = (STATIC / name).read_text(encoding="utf-8")
            self.assertNotRegex(source, r"innerHTML|eval\(|new Function|\.style\.|setAttribute\('style'", name)


class MuxFramingTests(SynchronousTestCase):
    def test_specs(self) -> None:
        self.assertEqual(parse_specs(["81300000011:0:main", "81300000012:1:sub"]),
                         [StreamSpec("81300000011", 0, 1), StreamSpec("81300000012", 1, 2)])
        for bad in ([], ["81300000011:0:main"] * (MAX_STREAMS + 1), ["8130000001:0:main"], ["81300000011:0:hd"],
                    ["81300000011:-1:sub"], ["81300000011:0:sub:x"]):
            with self.assertRaises(BadMuxRequest):
                parse_specs(bad)

    def test_frames_round_trip_across_cuts(self) -> None:
        data = (frame(0, KIND_INIT, init_payload("avc1.4D401F", b"ftyp...moov")) + frame(3, KIND_FRAGMENT, b"x" * 70000)
                + frame(8, KIND_ERROR, b'{"status": 404}'))
        self.assertEqual(data[:6], bytes([0, 0, 0, 0, 0, 23]))
        for cut in (1, 5, 6, 7, 40, 70010, len(data) - 1):
            first, rest = parse_frames(data[:cut])
            second, tail = parse_frames(rest + data[cut:])
            self.assertEqual(tail, b"")
            self.assertEqual([(i, k) for i, k, _ in first + second], [(0, 0), (3, 1), (8, 2)])
            self.assertEqual((first + second)[0][2], b"\x0bavc1.4D401Fftyp...moov")
