"""The external S3 backend's own rules, without a service (tests/interop/test_s3_external.py has the
backend against moto's server): the start-up error without boto3, the bucket mapping, the settings it
refuses, a secret that never shows."""

from __future__ import annotations

import sys
from unittest import mock

from twisted.internet import task
from twisted.trial.unittest import TestCase

from globaleye.s3.backend import StorageError
from globaleye.s3.external import (
    S3Backend,
    S3Unavailable,
    _content_md5,
    parse_bucket_map,
    require_boto3,
)


def backend(**kwargs: object) -> S3Backend:
    settings: dict[str, object] = {"endpoint": "http://127.0.0.1:9", "region": "cn-gd",
                                   "access_key": "AK", "secret_key": "very-secret"}
    settings.update(kwargs)
    return S3Backend(task.Clock(), **settings)  # type: ignore[arg-type]


class Boto3Missing(TestCase):
    def test_error_names_the_setting(self) -> None:
        """Without boto3, [storage] backend = s3 fails at start with the setting and the extra named."""
        with mock.patch.dict(sys.modules, {"boto3": None}):
            e = self.assertRaises(S3Unavailable, require_boto3)
            self.assertIn("[storage] backend = s3", str(e))
            self.assertIn("globaleye[s3]", str(e))
            self.assertRaises(S3Unavailable, backend)
        require_boto3()


class Buckets(TestCase):
    def test_same_names_by_default(self) -> None:
        """Cameras that upload straight to the service use §7.1.1's names: so does the platform."""
        b = backend()
        self.assertEqual(b.physical("GlobalEyeRecord"), "GlobalEyeRecord")
        self.assertEqual(b.physical("GlobalEyePicture"), "GlobalEyePicture")

    def test_prefix(self) -> None:
        b = backend(bucket_prefix="gd-")
        self.assertEqual(b.physical("GlobalEyeRecord"), "gd-GlobalEyeRecord")

    def test_explicit_mapping_first(self) -> None:
        b = backend(buckets={"GlobalEyeRecord": "ctyun-gd-video"}, bucket_prefix="gd-")
        self.assertEqual(b.physical("GlobalEyeRecord"), "ctyun-gd-video")
        self.assertEqual(b.physical("GlobalEyePicture"), "gd-GlobalEyePicture")


class BucketMapSetting(TestCase):
    def test_parsed(self) -> None:
        self.assertEqual(parse_bucket_map(" GlobalEyeRecord = ctyun-gd-video,\nGlobalEyePicture=ctyun-gd-pictures, "),
                         {"GlobalEyeRecord": "ctyun-gd-video", "GlobalEyePicture": "ctyun-gd-pictures"})
        self.assertEqual(parse_bucket_map(""), {})

    def test_refused(self) -> None:
        for text in ("GlobalEyeRecord", "=x", "GlobalEyeRecord=", "a=b c", "a=b, a=c"):
            self.assertRaises(ValueError, parse_bucket_map, text)


class Settings(TestCase):
    def test_refused(self) -> None:
        self.assertRaises(ValueError, backend, addressing="dns")
        self.assertRaises(ValueError, backend, threads=0)

    def test_secret_never_shown(self) -> None:
        self.assertNotIn("very-secret", repr(backend()))

    async def test_not_running(self) -> None:
        """A call before startService (or after stopService) is an error, not a call queued forever."""
        with self.assertRaises(StorageError):
            await backend().head("GlobalEyeRecord", "k")

    def test_content_md5(self) -> None:
        self.assertEqual(_content_md5("d41d8cd98f00b204e9800998ecf8427e"), "1B2M2Y8AsgTpgAmY7PhCfg==")
        self.assertEqual(_content_md5("0123456789abcdef0123456789abcdef-3"), "")
        self.assertEqual(_content_md5("z" * 32), "")
