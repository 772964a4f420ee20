"""Accounts and sessions (§8.1–§8.4, §8.8, ChangePassword; §6.2–§6.4 notices to the group).

A thin façade over :class:`globaleye.users.accounts.AccountService`, which is transport-free
already and answers with §8 Result codes: this adds what the client API does around it
(the device list a login returns, DevNum, the group notices sent in the background).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from globaleye.app.devices import DeviceEntry, dev_num, list_devices
from globaleye.app.errors import SessionExpired
from globaleye.app.ports import DeviceGateway
from globaleye.store import Store
from globaleye.users.accounts import EXPIRED, OK, AccountService, LoginSession


class GroupNotices(Protocol):
    """This province's client of its group (§6), as far as accounts need it."""

    async def notify(self, operation: str, values: Mapping[str, Any]) -> None: ...


@attrs.frozen
class LoginResult:
    """§8.3: ``result`` and, on success, the session, DevNum and the device list; else maybe an update URL."""

    result: int
    session: LoginSession | None = None
    dev_num: int = 0
    devices: tuple[DeviceEntry, ...] = ()
    update_url: str = ""


class AccountsService:
    def __init__(self, accounts: AccountService, store: Store, gateway: DeviceGateway,
                 group: GroupNotices | None = None) -> None:
        self.accounts = accounts
        self.store = store
        self.gateway = gateway
        self.group = group

    @property
    def clock(self) -> Any:
        return self.accounts.clock

    def authenticate(self, account: str, token: str) -> LoginSession:
        """The live session, or :class:`SessionExpired` (never "no such account": no oracle)."""
        session = self.accounts.authenticate(account, token)
        if session is None:
            raise SessionExpired("no live session", EXPIRED)
        return session

    def is_live(self, account: str, token: str) -> bool:
        """Whether the session still lives, its idle time not restarted (for long-lived streams)."""
        return self.accounts.is_live(account, token)

    async def audit(self, action: str, account: str, peer: str, result: int, detail: str = "") -> None:
        await self.accounts.audit(action, account, peer, result, detail)

    async def request_sms_code(self, mobile: str, kind: int, peer: str) -> int:
        return await self.accounts.request_sms_code(mobile, kind, peer)

    async def register(self, mobile: str, password: str, sms_key: str, peer: str) -> int:
        result = await self.accounts.register(mobile, password, sms_key, peer)
        if result == OK and self.group is not None:  # §6.2, sent in the background
            await self.group.notify("OpenService", {"MobileTel": mobile,
                                                    "IpcamNum": self.accounts.settings.max_devices})
        return result

    async def login(self, account: str, password: str, version: str, peer: str) -> LoginResult:
        outcome = await self.accounts.login(account, password, version, peer)
        if outcome.session is None:
            return LoginResult(outcome.result, update_url=outcome.update_url or "")
        return LoginResult(OK, outcome.session, await self.dev_num(outcome.session.account),
                           await self.devices(outcome.session.account))

    async def logout(self, account: str, token: str, peer: str) -> int:
        return await self.accounts.logout(account, token, peer)

    async def close_account(self, session: LoginSession, peer: str) -> int:
        result = await self.accounts.close_account(session, peer)
        if result == OK and self.group is not None:  # §6.4, sent in the background
            await self.group.notify("CancelService", {"MobileTel": session.account})
        return result

    async def change_password(self, session: LoginSession, old: str, new: str, peer: str) -> int:
        return await self.accounts.change_password(session, old, new, peer)

    async def dev_num(self, account: str) -> int:
        """DevNum: the account's own (§6.3 ChangeService) or the configured default."""
        return await dev_num(self.store, self.accounts, account)

    async def change_service(self, account: str, dev_num: int, peer: str = "operator") -> bool:
        """§6.3: the account may now own *dev_num* devices; the group is told (in the background)."""
        changed = await self.store.set_dev_num(account, dev_num)
        await self.accounts.audit("change-service", account, peer, OK if changed else 1, f"DevNum {dev_num}")
        if changed and self.group is not None:
            await self.group.notify("ChangeService", {"MobileTel": account, "IpcamNum": dev_num})
        return changed

    async def devices(self, account: str) -> tuple[DeviceEntry, ...]:
        """Every channel of every camera the account owns or is shared (§8.5)."""
        return await list_devices(self.store, self.gateway, account)
