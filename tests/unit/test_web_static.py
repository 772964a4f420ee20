"""The web face without sockets: the AppError → problem map, and the portal's files (every word the
pages use is in both dictionaries; no inline script or style for the CSP to refuse)."""

from __future__ import annotations

import re

from twisted.trial.unittest import SynchronousTestCase

from globaleye.app.errors import (
    AddRefused,
    AppError,
    DeviceOffline,
    DeviceRefused,
    InvalidRequest,
    NoSuchDevice,
    NotFound,
    RuleViolation,
    SessionExpired,
)
from globaleye.web.problem import KINDS, TYPE_BASE, Problem, from_app_error
from globaleye.web.routes import ROUTES
from globaleye.web.site import STATIC


class ProblemMapTests(SynchronousTestCase):
    def test_each_app_error_has_its_status(self) -> None:
        cases = [
            (SessionExpired("x"), 401, "session-expired"), (NoSuchDevice("x"), 404, "no-such-device"),
            (DeviceOffline("x"), 503, "camera-offline"), (DeviceRefused("x", 7), 502, "camera-refused"),
            (InvalidRequest("bad"), 400, "invalid-request"), (AddRefused("x", 3), 422, "unknown-camera"),
            (AddRefused("x", 4), 422, "wrong-dev-key"), (AddRefused("x", 5), 409, "too-many-cameras"),
            (AddRefused("x", 255), 409, "camera-taken"), (NotFound("x"), 404, "not-found"),
            (RuleViolation("x"), 422, "rule-violation"), (AppError("x"), 500, "internal"),
        ]
        for error, status, kind in cases:
            problem = from_app_error(error)
            self.assertEqual((problem.status, problem.kind), (status, kind), type(error).__name__)
            self.assertIn(problem.kind, KINDS)
            self.assertEqual(problem.body()["type"], TYPE_BASE + kind)

    def test_no_such_device_never_names_the_account(self) -> None:
        """The application's message names the account; the answer must be the same for every caller."""
        first = from_app_error(NoSuchDevice("device 81100000001 is not usable by 13300000001")).body()
        second = from_app_error(NoSuchDevice("device 81100000009 is not usable by 13300000002")).body()
        self.assertEqual(first, second)
        self.assertNotIn("1330000000", str(first))

    def test_retry_after_rounds_up(self) -> None:
        from twisted.web.test.requesthelper import DummyRequest

        request = DummyRequest([b""])
        Problem(429, "too-many-attempts", "Too many attempts", retry_after=0.2).write(request)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"retry-after"), [b"1"])
        self.assertEqual(request.responseCode, 429)

    def test_route_table_is_consistent(self) -> None:
        seen = set()
        for route in ROUTES:
            self.assertNotIn((route.method, route.path), seen)
            seen.add((route.method, route.path))
            names = set(re.findall(r"{(\w+)}", route.path))
            self.assertEqual(names, {p.name for p in route.params if p.where == "path"}, route.path)
            if route.body is not None and "{devId}" in route.path:  # the IDOR test sends a valid body
                self.assertIsNotNone(route.example, f"{route.method} {route.path}")
        self.assertEqual(len({route.operation_id for route in ROUTES}), len(ROUTES))


class PortalFilesTests(SynchronousTestCase):
    def dictionaries(self) -> dict[str, set[str]]:
        text = (STATIC / "i18n.js").read_text(encoding="utf-8")
        blocks = re.split(r"^  (?:'zh-CN'|en): \{$", text, flags=re.M)
        self.assertEqual(len(blocks), 3, "two dictionaries, zh-CN then en")
        return {name: set(re.findall(r"^    (\w+): ", block.split("\n  },")[0], flags=re.M))
                for name, block in zip(("zh-CN", "en"), blocks[1:], strict=True)}

    def test_every_word_in_both_languages(self) -> None:
        words = self.dictionaries()
        self.assertEqual(words["zh-CN"], words["en"])
        used = set(re.findall(r"\bt\('(\w+)'\)", (STATIC / "app.js").read_text(encoding="utf-8")))
        used |= set(re.findall(r'data-i18n="(\w+)"', (STATIC / "index.html").read_text(encoding="utf-8")))
        self.assertGreater(len(used), 30)
        self.assertEqual(used - words["en"], set())

    def test_no_inline_script_or_style(self) -> None:
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        self.assertNotRegex(page, r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=|javascript:")
        script = (STATIC / "app.js").read_text(encoding="utf-8")
        self.assertNotRegex(script, r"innerHTML|eval\(|new Function|\.style\.|setAttribute\('style'")
