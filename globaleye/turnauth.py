"""TURN credentials from the device store: DevID and DevKey (spec §14).

A camera authenticates to the TURN server with its DevID as USERNAME and its DevKey
as password; such an allocation may use the §14 wildcard permission
(XOR-PEER-ADDRESS 0.0.0.0:0 meaning "any peer"), which ordinary TURN users may not.
Static users and the TURN REST API shared secret of ``[turn]`` come first, so an
operator's account can never be shadowed by a device.
"""

from __future__ import annotations

from twisted.logger import Logger

from globaleye.gateway.service import DEV_ID
from globaleye.store import Store
from txturn.auth import Credential, long_term_key


class DeviceCredentials:
    """:class:`txturn.auth.CredentialLookup` over the platform's device store."""

    log = Logger()

    def __init__(self, store: Store) -> None:
        self.store = store

    async def lookup(self, username: str, realm: str) -> Credential | None:
        if not DEV_ID.match(username):
            return None
        device = await self.store.get_device(username)
        if device is None:
            return None
        return Credential(key=long_term_key(device.dev_id, realm, device.dev_key), wildcard_permission=True)
