"""The ``ftp`` role (issue 12): the cameras' picture uploads (§7.2 REGISTER_RES's FTP account, §7.5.27's
36H notice, §7.5.24 policies with StoreType 0) and, read-only, the firmware files of 6DH's ftp:// URLs.

:mod:`globaleye.ftp.server` is the face: a Twisted FTP server whose logins are the cameras' store
credentials (:class:`globaleye.s3.backend.CredentialLookup`, checked through the platform's KeyGuard)
and whose only write is a picture of the logged-in camera, handed to the object store
(:class:`globaleye.s3.backend.ObjectBackend`, bucket ``GlobalEyePicture``).
"""

from globaleye.ftp.server import FtpRole, FtpSettings, PictureName, logged_in

__all__ = ["FtpRole", "FtpSettings", "PictureName", "logged_in"]
