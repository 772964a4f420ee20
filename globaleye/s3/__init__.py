"""The object store (issue 12; spec §7.1, §13): what cameras upload, kept behind the S3 API.

§7.1.1 has the camera push its recordings (5-minute MPEG-TS files) and pictures (JPEG) straight to
the carrier's cloud store (天翼云, S3-compatible), into the buckets ``GlobalEyeRecord`` and
``GlobalEyePicture``.  This package is that store's library, apart from the platform's application
layer (``globaleye.app.cloud``), which keeps the index and decides who may see what:

* :mod:`~globaleye.s3.backend`: the interfaces. :class:`~globaleye.s3.backend.ObjectBackend` (where
  the bytes live: the embedded file backend or an external S3 service),
  :class:`~globaleye.s3.backend.CredentialLookup` (whose keys sign requests: each camera its own) and
  :class:`~globaleye.s3.backend.StorageEvents` (what the application hears: admissions against quotas,
  objects stored and deleted).
* :mod:`~globaleye.s3.memory`: an in-memory backend for tests of the layers above.
* :mod:`~globaleye.s3.sigv4` (pure): AWS Signature V4/V2 verification and signing, presigned URLs,
  the aws-chunked decoder.
* :mod:`~globaleye.s3.xml` (pure): the S3 API's XML answers and request bodies.
* :mod:`~globaleye.s3.files`: the embedded store's disk (``FileBackend``).
* :mod:`~globaleye.s3.endpoint`: the ``storage`` role, the embedded S3-compatible endpoint
  (``StorageService``).
"""
