"""SMS for the platform (spec §2 item 6, §8.1): an SMGP 3.0 client and its test fixture.

``smgp`` is the pure PDU codec, ``client`` the Twisted client and the
:class:`~globaleye.users.sms.client.Sender` interface the rest of the platform uses,
``fixture`` an SMGP server for tests and local development.
"""
