"""TURN credentials from the device store: DevID and DevKey (spec §14).

A camera authenticates to the TURN server with its DevID as USERNAME and its DevKey
as password; such an allocation may use the §14 wildcard permission
(XOR-PEER-ADDRESS 0.0.0.0:0 meaning "any peer"), which ordinary TURN users may not.
Static users and the TURN REST API shared secret of ``[turn]`` come first, so an
operator's account can never be shadowed by a device.

Relay quotas (issue 9): each device may hold ``device_quota`` allocations (a camera
needs one; two cover a move between servers).  A device that enrolled itself (open
enrollment) and has never completed a gateway login is in the class
:data:`NEW_DEVICE_CLASS`, whose allocations in all the TURN server caps
(``[turn] new_device_quota``): strangers enrolling DevIDs by the thousand get that
small pool and no more, and the rest of ``total_quota`` stays for devices an
operator imported, the group vouched for, or that have logged in.

:class:`DeviceCredentials` is also the TURN server's :class:`txturn.auth.AuthGuard`:
every credential check, a device's or not, goes through the platform's
:class:`~globaleye.guard.keyguard.KeyGuard`, so a DevKey guessed over TURN counts with the
gateway's and ``/register``'s checks of that DevID (identity ``dev:<DevID>``), per
source address and per pair, and a throttled guess gets the same 401 as a wrong one.
"""

from __future__ import annotations

from twisted.logger import Logger

from globaleye.device.gateway.service import DEV_ID
from globaleye.guard.keyguard import Attempt, KeyGuard
from globaleye.store import Store
from txturn.auth import Credential, long_term_key

#: ``Credential.quota_class`` of self-enrolled devices that never completed a gateway login.
NEW_DEVICE_CLASS = "new-device"


class DeviceCredentials:
    """:class:`txturn.auth.CredentialLookup` over the platform's device store, and the TURN
    server's :class:`txturn.auth.AuthGuard` over *guard* (when given)."""

    log = Logger()

    def __init__(self, store: Store, device_quota: int | None = None, guard: KeyGuard | None = None) -> None:
        self.store = store
        self.device_quota = device_quota
        self.guard = guard

    async def lookup(self, username: str, realm: str) -> Credential | None:
        if not DEV_ID.match(username):
            return None
        device = await self.store.get_device(username)
        if device is None:
            return None
        unproven = device.source == "open" and device.login_at is None
        return Credential(key=long_term_key(device.dev_id, realm, device.dev_key), wildcard_permission=True,
                          quota=self.device_quota, quota_class=NEW_DEVICE_CLASS if unproven else "")

    async def admit(self, username: str, client: tuple[str, int]) -> Attempt | _Unguarded | None:
        if self.guard is None:
            return _Unguarded()
        identity = f"dev:{username}" if DEV_ID.match(username) else f"turn:{username[:128]}"
        attempt = await self.guard.attempt(identity, client[0])
        return None if attempt.refused else attempt


class _Unguarded:
    """The ticket of a check that no guard counts."""

    def succeeded(self) -> None:
        """Nothing counted."""

    def failed(self) -> None:
        """Nothing counted."""

    def done(self) -> None:
        """Nothing counted."""
