"""The settings and recordings pages' files without a browser: every word they use is in both
dictionaries, and they hold nothing a strict CSP refuses (no inline script or style, no eval)."""

from __future__ import annotations

import re

from twisted.trial.unittest import SynchronousTestCase

from globaleye.web.site import STATIC

PAGES = ("settings.js", "recordings.js")
#: Keys the pages build at run time: t(`week${n}`), t(`security_${name}`).
BUILT = {f"week{n}" for n in range(1, 8)} | {
    f"security_{name}" for name in ("none", "wep", "wpa_psk", "wpa_wpa2_psk", "wpa2_psk", "other")}


class SettingsPagesFilesTests(SynchronousTestCase):
    def dictionaries(self) -> dict[str, set[str]]:
        text = (STATIC / "i18n.js").read_text(encoding="utf-8")
        blocks = re.split(r"^  (?:'zh-CN'|en): \{$", text, flags=re.M)
        return {name: set(re.findall(r"^    (\w+): ", block.split("\n  },")[0], flags=re.M))
                for name, block in zip(("zh-CN", "en"), blocks[1:], strict=True)}

    def test_every_word_in_both_languages(self) -> None:
        words = self.dictionaries()
        used = set(BUILT)
        for page in PAGES:
            used |= set(re.findall(r"\bt\('(\w+)'\)", (STATIC / page).read_text(encoding="utf-8")))
        self.assertGreater(len(used), 60)
        self.assertEqual(used - words["zh-CN"], set())
        self.assertEqual(used - words["en"], set())

    def test_no_inline_script_or_style(self) -> None:
        for page in PAGES:
            script = (STATIC / page).read_text(encoding="utf-8")
            self.assertNotRegex(script, r"innerHTML|eval\(|new Function|\.style\.|setAttribute\('style'|"
                                        r"'style'|javascript:", page)

    def test_registered_in_the_portal(self) -> None:
        app = (STATIC / "app.js").read_text(encoding="utf-8")
        self.assertIn("from './settings.js'", app)
        self.assertIn("from './recordings.js'", app)
