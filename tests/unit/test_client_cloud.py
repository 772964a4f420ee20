"""The pieces of ``globaleye-client cloud`` without sockets: the proxy's Digest answered, URLs, BYE, range."""

from __future__ import annotations

import argparse

from twisted.trial.unittest import TestCase

from globaleye.client.cloud import (
    CloudError,
    _is_bye,
    _range,
    aac_config,
    authorization,
    cloud_url,
    programme_seconds,
    proxy_base,
    rtp_info,
)
from globaleye.proxy.auth import challenges, digest_ok, ha1, parse_authorization


class AuthorizationTests(TestCase):
    def test_the_proxys_own_check_accepts_the_answer(self) -> None:
        """SHA-256 is offered first and taken; an MD5-only offer is answered with MD5; each for its URI."""
        uri = "rtsp://127.0.0.1:8554/cloud/81100000001/0/20261201100000?end=20261201100600"
        offered = challenges(("digest", "basic"), "GlobalEye", "nonce123")
        for offer, algorithm in ((offered, "SHA-256"), ([offered[1]], "MD5")):
            value = authorization(offer, "13300000001", "pw:é", "DESCRIBE", uri)
            assert value is not None
            credentials = parse_authorization(value)
            assert credentials is not None
            self.assertEqual((credentials.user, credentials.params["algorithm"]), ("13300000001", algorithm))
            right = ha1("13300000001", "GlobalEye", "pw:é", algorithm)
            self.assertTrue(digest_ok(credentials, "DESCRIBE", right))
            self.assertFalse(digest_ok(credentials, "PLAY", right), "the method is signed")
            self.assertFalse(digest_ok(credentials, "DESCRIBE", ha1("13300000001", "GlobalEye", "other", algorithm)))

    def test_basic_and_nothing(self) -> None:
        value = authorization(['Basic realm="x"'], "u", "p", "DESCRIBE", "rtsp://h/x")
        self.assertEqual(value, "Basic dTpw")
        self.assertIsNone(authorization(['Digest realm="x", nonce="n", algorithm="SHA-512-256"'], "u", "p", "X", "/"))
        self.assertIsNone(authorization(['Bearer realm="x"'], "u", "p", "X", "/"))


class UrlTests(TestCase):
    def test_urls(self) -> None:
        self.assertEqual(proxy_base(None, "http://10.0.0.5:8080/soap/mcu"), "rtsp://10.0.0.5:8554")
        self.assertEqual(proxy_base(None, "http://[::1]:8080/soap/mcu"), "rtsp://[::1]:8554")
        self.assertEqual(proxy_base("proxy.example:9554/", "http://x/soap/mcu"), "rtsp://proxy.example:9554")
        self.assertEqual(cloud_url("rtsp://h:1", "81100000001", 0, "20261201100000", None),
                         "rtsp://h:1/cloud/81100000001/0/20261201100000")
        self.assertEqual(cloud_url("rtsp://h:1", "811/..", 1, "2026", "20261201100600"),
                         "rtsp://h:1/cloud/811%2F../1/2026?end=20261201100600")

    def test_programme_and_bye(self) -> None:
        self.assertEqual(programme_seconds(b"v=0\r\na=range:npt=0-6.000\r\n"), 6.0)
        self.assertIsNone(programme_seconds(b"v=0\r\n"))
        sender_report = bytes([0x80, 200, 0, 6]) + bytes(24)
        bye = bytes([0x81, 203, 0, 1]) + bytes(4)
        self.assertTrue(_is_bye(sender_report + bye))
        self.assertFalse(_is_bye(sender_report))
        self.assertFalse(_is_bye(b"\x80"))

    def test_a_name_or_a_range(self) -> None:
        def args(name: str | None, start: str | None, end: str | None) -> argparse.Namespace:
            return argparse.Namespace(name=name, start=start, end=end)

        self.assertEqual(_range(args("n", None, None), "delete"), ("", ""))
        self.assertEqual(_range(args(None, "a", "b"), "delete"), ("a", "b"))
        for wrong in (args("n", "a", None), args(None, "a", None), args(None, None, None)):
            self.assertRaises(CloudError, _range, wrong, "delete")

    def test_rtp_info_and_aac_config(self) -> None:
        base = "rtsp://h:1/cloud/811/0/20261201100000-20261201100600"
        tracks = [f"{base}/trackID=0", f"{base}/trackID=1"]
        value = f"url={tracks[0]};seq=7;rtptime=90000, url={tracks[1]};seq=3;rtptime=8000"
        self.assertEqual(rtp_info(value, tracks), {0: 90000, 1: 8000})
        self.assertEqual(rtp_info(f"url={tracks[1]};seq=3", tracks), {}, "no rtptime: nothing to place by")
        self.assertEqual(rtp_info("", tracks), {})
        fmtp = "streamtype=5;profile-level-id=15;mode=AAC-hbr;sizelength=13;indexlength=3;config=1588"
        self.assertEqual(aac_config(fmtp), bytes.fromhex("1588"))
        self.assertIsNone(aac_config("mode=AAC-lbr;config=1588"))
        self.assertIsNone(aac_config("mode=AAC-hbr;config=158"))
