"""globaleye.s3.xml: the S3 answers parse back (with lxml and with botocore's own parser), the
CompleteMultipartUpload request is read safely."""

from __future__ import annotations

from lxml import etree
from twisted.trial import unittest

from globaleye.s3 import xml
from globaleye.s3.backend import ObjectInfo

NS = {"s3": xml.NS}


class Answers(unittest.TestCase):
    def test_error(self) -> None:
        doc = etree.fromstring(xml.error("NoSuchKey", "The specified key does not exist.", "/b/a<&>", "R1"))
        self.assertEqual([child.text for child in doc], ["NoSuchKey", "The specified key does not exist.",
                                                         "/b/a<&>", "R1"])

    def test_list_v2(self) -> None:
        objects = [ObjectInfo("b", "D1_<1>&", 5, "abc", 1369353600.5), ObjectInfo("b", "D1_2", 0, "d41d", 0)]
        page = xml.ListV2("b", "D1_", objects, True, 2, continuation_token="t0", next_continuation_token="t1",
                          start_after="D1_0")
        doc = etree.fromstring(page.to_xml())
        self.assertEqual(doc.findtext("s3:KeyCount", namespaces=NS), "2")
        self.assertEqual(doc.findtext("s3:IsTruncated", namespaces=NS), "true")
        self.assertEqual(doc.findtext("s3:NextContinuationToken", namespaces=NS), "t1")
        self.assertEqual(doc.findtext("s3:StartAfter", namespaces=NS), "D1_0")
        self.assertEqual([c.findtext("s3:Key", namespaces=NS) for c in doc.findall("s3:Contents", NS)],
                         ["D1_<1>&", "D1_2"])
        self.assertEqual(doc.find("s3:Contents", NS).findtext("s3:LastModified", namespaces=NS),
                         "2013-05-24T00:00:00.500Z")
        self.assertEqual(doc.find("s3:Contents", NS).findtext("s3:ETag", namespaces=NS), '"abc"')
        url = etree.fromstring(xml.ListV2("b", "", objects[:1], False, 1000, encoding_type="url").to_xml())
        self.assertEqual(url.find("s3:Contents", NS).findtext("s3:Key", namespaces=NS), "D1_%3C1%3E%26")
        self.assertIsNone(url.find("s3:NextContinuationToken", NS))

    def test_botocore_reads_them(self) -> None:
        from botocore.loaders import Loader
        from botocore.model import ServiceModel
        from botocore.parsers import RestXMLParser
        model = ServiceModel(Loader().load_service_model("s3", "service-2"))
        parser = RestXMLParser()

        def parse(operation: str, body: bytes) -> dict:
            return parser.parse({"body": body, "headers": {}, "status_code": 200},
                                model.operation_model(operation).output_shape)

        listed = parse("ListObjectsV2", xml.ListV2("b", "p", [ObjectInfo("b", "p1", 3, "e", 0)], False, 10).to_xml())
        self.assertEqual((listed["KeyCount"], listed["Contents"][0]["Key"], listed["Contents"][0]["Size"]),
                         (1, "p1", 3))
        buckets = parse("ListBuckets", xml.list_buckets([("GlobalEyeRecord", 0)], "platform"))
        self.assertEqual(buckets["Buckets"][0]["Name"], "GlobalEyeRecord")
        started = parse("CreateMultipartUpload", xml.initiate_multipart("b", "k", "u1"))
        self.assertEqual(started["UploadId"], "u1")
        done = parse("CompleteMultipartUpload", xml.complete_multipart("/b/k", "b", "k", "x-2"))
        self.assertEqual(done["ETag"], '"x-2"')


class CompleteRequest(unittest.TestCase):
    def test_parse(self) -> None:
        body = (b'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                b'<Part><ETag>"a1"</ETag><PartNumber>1</PartNumber></Part>'
                b"<Part><PartNumber>2</PartNumber><ETag>&quot;b2&quot;</ETag></Part></CompleteMultipartUpload>")
        self.assertEqual(xml.parse_complete(body), [(1, "a1"), (2, "b2")])

    def test_refused(self) -> None:
        bomb = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&b;</ETag></Part>"
                b"</CompleteMultipartUpload>")
        external = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&x;</ETag></Part>"
                    b"</CompleteMultipartUpload>")
        for body in (bomb, external, b"<x/>", b"<CompleteMultipartUpload/>", b"not xml",
                     b"<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>a</ETag></Part>"
                     b"</CompleteMultipartUpload>",
                     b"<CompleteMultipartUpload><Part><ETag>a</ETag></Part></CompleteMultipartUpload>",
                     b"<CompleteMultipartUpload>" + b" " * xml.MAX_COMPLETE_BODY + b"</CompleteMultipartUpload>"):
            with self.assertRaises(xml.XMLError):
                xml.parse_complete(body)


class DeleteRequest(unittest.TestCase):
    def test_parse_and_answer(self) -> None:
        body = (b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>'
                b"<Object><Key>D1_a</Key></Object><Object><Key>D1_&lt;b&gt;</Key><VersionId>x</VersionId></Object>"
                b"</Delete>")
        self.assertEqual(xml.parse_delete(body), (["D1_a", "D1_<b>"], True))
        doc = etree.fromstring(xml.delete_result(["D1_a"], [("D2_x", "AccessDenied", "no")]))
        self.assertEqual(doc.find("s3:Deleted", NS).findtext("s3:Key", namespaces=NS), "D1_a")
        self.assertEqual(doc.find("s3:Error", NS).findtext("s3:Code", namespaces=NS), "AccessDenied")

    def test_refused(self) -> None:
        many = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>"
        for body in (many, b"<Delete/>", b"<Delete><Object/></Delete>", b"<Other/>"):
            with self.assertRaises(xml.XMLError):
                xml.parse_delete(body)
