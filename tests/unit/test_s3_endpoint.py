"""globaleye.s3.endpoint's pure parts: which operation a request names, and Range parsing."""

from __future__ import annotations

from twisted.trial import unittest

from globaleye.s3.endpoint import S3Error, _parse_range, resolve


class Resolve(unittest.TestCase):
    def test_operations(self) -> None:
        cases = [
            ("GET", b"/", "ListBuckets", "", ""),
            ("PUT", b"/GlobalEyeRecord", "CreateBucket", "GlobalEyeRecord", ""),
            ("HEAD", b"/GlobalEyeRecord/", "HeadBucket", "GlobalEyeRecord", ""),
            ("GET", b"/GlobalEyeRecord?location", "GetBucketLocation", "GlobalEyeRecord", ""),
            ("GET", b"/GlobalEyeRecord?list-type=2&prefix=D1_", "ListObjectsV2", "GlobalEyeRecord", ""),
            ("GET", b"/GlobalEyeRecord/?delimiter=%2F", "ListObjects", "GlobalEyeRecord", ""),
            ("PUT", b"/GlobalEyeRecord/D1_1_x.ts", "PutObject", "GlobalEyeRecord", "D1_1_x.ts"),
            ("PUT", b"/b01/k?partNumber=2&uploadId=u", "UploadPart", "b01", "k"),
            ("POST", b"/b01/k?uploads", "CreateMultipartUpload", "b01", "k"),
            ("POST", b"/b01/k?uploadId=u", "CompleteMultipartUpload", "b01", "k"),
            ("DELETE", b"/b01/k?uploadId=u", "AbortMultipartUpload", "b01", "k"),
            ("GET", b"/b01/a%20b/c%2F..%2Fd?response-content-type=x", "GetObject", "b01", "a b/c/../d"),
            ("HEAD", b"/b01/k", "HeadObject", "b01", "k"),
            ("DELETE", b"/b01/k", "DeleteObject", "b01", "k"),
            ("GET", b"http://h:9/b01/k", "GetObject", "b01", "k"),
        ]
        for method, raw, op, bucket, key in cases:
            target = resolve(method, raw, "127.0.0.1:9000", ("localhost",))
            self.assertEqual((target.op, target.bucket, target.key), (op, bucket, key), raw)

    def test_virtual_host(self) -> None:
        target = resolve("GET", b"/D1_1_x.ts", "GlobalEyeRecord.store.example.cn:9000", ("store.example.cn",))
        self.assertEqual((target.op, target.bucket, target.key, target.bucket_from_host),
                         ("GetObject", "GlobalEyeRecord", "D1_1_x.ts", "GlobalEyeRecord"))
        self.assertEqual(resolve("GET", b"/abc/y", "store.example.cn", ("store.example.cn",)).bucket, "abc")

    def test_refused(self) -> None:
        for method, raw, code in (("GET", b"/../etc", "InvalidBucketName"), ("PUT", b"/.staging/x", "InvalidBucketName"),
                                  ("GET", b"/b01/k?acl", "NotImplemented"), ("POST", b"/b01/k", "NotImplemented"),
                                  ("PUT", b"/b01?versioning", "NotImplemented"), ("GET", b"/b01/%ff", "InvalidURI"),
                                  ("PUT", b"/b01/" + b"x" * 1025, "KeyTooLongError"), ("DELETE", b"/", "NotImplemented")):
            with self.assertRaises(S3Error) as caught:
                resolve(method, raw, "h", ())
            self.assertEqual(caught.exception.code, code, raw)


class Ranges(unittest.TestCase):
    def test_ranges(self) -> None:
        self.assertEqual(_parse_range("bytes=0-9", 100), (0, 9))
        self.assertEqual(_parse_range("bytes=90-", 100), (90, 99))
        self.assertEqual(_parse_range("bytes=-10", 100), (90, 99))
        self.assertEqual(_parse_range("bytes=-1000", 100), (0, 99))
        self.assertEqual(_parse_range("bytes=50-1000", 100), (50, 99))
        for ignored in ("bytes=0-1,5-6", "items=0-1", "bytes=9-3", "bytes=a-b", "bytes"):
            self.assertIsNone(_parse_range(ignored, 100), ignored)
        for unsatisfiable in ("bytes=100-", "bytes=100-200", "bytes=-0"):
            with self.assertRaises(S3Error) as caught:
                _parse_range(unsatisfiable, 100)
            self.assertEqual(caught.exception.status, 416)
