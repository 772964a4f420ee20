"""Devices and ownership (§8.5–§8.7, §6.5/§6.6 claims from the group) and sharing (ShareFlag 1)."""

from __future__ import annotations

import hmac
import re
from typing import Any, Protocol

import attrs
from twisted.logger import Logger

from globaleye.app.access import CameraAccess
from globaleye.app.errors import OTHER, AddRefused, NoSuchDevice, NotFound
from globaleye.app.ports import DeviceGateway
from globaleye.device.protocol import messages as m
from globaleye.store import (
    BIND_ALREADY_MINE,
    BIND_LIMIT,
    BIND_OK,
    BIND_TAKEN,
    SHARE_NOT_OWNER,
    SHARE_OK,
    Binding,
    Device,
    Store,
)
from globaleye.users.accounts import MOBILE, OK, AccountService, LoginSession

ADD_UNKNOWN, ADD_WRONG_KEY, ADD_LIMIT = 3, 4, 5
DEV_ID = re.compile(r"^[0-9]{11}$")

#: §8 FrameSize (1=720P, 2=D1, 3=CIF) -> device protocol FrameSize (§7.5.6 table).
CLIENT_TO_DEVICE_FRAME = {1: m.FrameSize.P720, 2: m.FrameSize.D1, 3: m.FrameSize.CIF}
#: Device FrameSize -> §8: VGA (640x480) and QVGA (320x240) have no §8 code and are shown as the
#: nearest §8 size, D1 (720x576) and CIF (352x288).
DEVICE_TO_CLIENT_FRAME: dict[int, int] = {m.FrameSize.P720: 1, m.FrameSize.VGA: 2, m.FrameSize.D1: 2,
                                          m.FrameSize.CIF: 3, m.FrameSize.QVGA: 3}


class GroupClaims(Protocol):
    """This province's client of its group (§6.5), as far as adding a device needs it."""

    async def claim_device(self, dev_id: str, dev_key: str) -> tuple[int, dict[str, Any]]: ...


@attrs.frozen
class VideoFormat:
    stream_type: int
    frame_size: int  # §8 FrameSize: 1 720P, 2 D1, 3 CIF


@attrs.frozen
class DeviceEntry:
    """One channel of one camera in the account's list (§8.3/§8.5)."""

    dev_id: str
    channel_no: int
    name: str
    online: bool
    ptz: bool
    shared: int  # ShareFlag: 0 own, 1 shared with this account
    videos: tuple[VideoFormat, ...] = ()


async def dev_num(store: Store, accounts: AccountService, account: str) -> int:
    """DevNum: the account's own (§6.3 ChangeService) or the configured default."""
    record = await store.get_account(account)
    if record is not None and record.dev_num is not None:
        return record.dev_num
    return accounts.settings.max_devices


async def list_devices(store: Store, gateway: DeviceGateway, account: str) -> tuple[DeviceEntry, ...]:
    """Every channel of every camera the account owns or is shared (§8.5)."""
    entries: list[DeviceEntry] = []
    for binding in await store.list_bindings(account):
        device = await store.get_device(binding.dev_id)
        ability = await store.get_ability(binding.dev_id)
        channels, ptz = 1, False
        videos: tuple[VideoFormat, ...] = ()
        if ability is not None:
            channels, ptz = max(1, ability.channel_num), bool(ability.ptz_flag)
            videos = client_videos(ability.xml)
        name = binding.name or (device.model if device is not None else "") or binding.dev_id
        for channel in range(channels):
            entries.append(DeviceEntry(
                binding.dev_id, channel, name if channels == 1 else f"{name} #{channel + 1}",
                gateway.is_online(binding.dev_id), ptz, binding.share_flag, videos))
    return tuple(entries)


def client_videos(ability_report: bytes) -> tuple[VideoFormat, ...]:
    """The §8.3/§8.5 encoding list from the stored 32H report, FrameSize in §8 codes, duplicates merged."""
    try:
        report = m.AbilityUpRequest.from_xml(ability_report) if ability_report else None
    except m.MessageError:
        return ()
    seen: list[tuple[int, int]] = []
    for video in report.video if report is not None else ():
        pair = (video.stream_type, DEVICE_TO_CLIENT_FRAME.get(video.frame_size, 0))
        if pair[1] and pair not in seen:
            seen.append(pair)
    return tuple(VideoFormat(stream, size) for stream, size in seen)


def same_key(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.strip().encode())


class DeviceService:
    log = Logger()

    def __init__(self, accounts: AccountService, store: Store, gateway: DeviceGateway, access: CameraAccess,
                 group: GroupClaims | None = None) -> None:
        self.accounts = accounts
        self.store = store
        self.gateway = gateway
        self.access = access
        self.group = group

    async def list_for(self, session: LoginSession) -> tuple[DeviceEntry, ...]:
        return await list_devices(self.store, self.gateway, session.account)

    async def add(self, session: LoginSession, dev_id: str, dev_key: str) -> None:
        """§8.6: bind the camera to the account; :class:`AddRefused` (3, 4, 5 or 255) when it may not."""
        device = await self.store.get_device(dev_id) if DEV_ID.match(dev_id) else None
        if device is None and DEV_ID.match(dev_id) and self.group is not None:
            device = await self._claim(dev_id, dev_key)
        if device is None:
            raise AddRefused(f"unknown device {dev_id}", ADD_UNKNOWN)
        if not same_key(device.dev_key, dev_key):
            raise AddRefused(f"wrong DevKey for {dev_id}", ADD_WRONG_KEY)
        outcome = await self.store.bind_device(
            Binding(session.account, dev_id, 0, device.model or dev_id, self.accounts.clock.seconds()),
            await dev_num(self.store, self.accounts, session.account))
        result = {BIND_OK: OK, BIND_ALREADY_MINE: OK, BIND_LIMIT: ADD_LIMIT, BIND_TAKEN: OTHER}.get(outcome, OTHER)
        if result != OK:
            raise AddRefused(f"binding {dev_id}: {outcome}", result)

    async def _claim(self, dev_id: str, dev_key: str) -> Device:
        """§6.5/§6.6 steps 6-7: ask the group for a camera we do not know; the device, or AddRefused."""
        assert self.group is not None
        result, answer = await self.group.claim_device(dev_id, dev_key.strip())
        if result != 0:
            self.log.info("group refused the claim of {dev_id} (Result {result})", dev_id=dev_id, result=result)
            # 3 unknown to the group, 4 wrong key; anything else (another province has it, the group
            # is unreachable or refuses us) is "other error" for the user.
            raise AddRefused(f"the group refused {dev_id} ({result})",
                             {3: ADD_UNKNOWN, 4: ADD_WRONG_KEY}.get(result, OTHER))
        device = Device(dev_id=dev_id, dev_key=dev_key.strip(), manufacturer_no=answer.get("ManufacturerNo") or "",
                        model=answer.get("Mode") or "", dev_type=answer.get("DevType") or 1, source="group",
                        created_at=self.accounts.clock.seconds())
        await self.store.enroll_device(device)
        return await self.store.get_device(dev_id) or device

    async def remove(self, session: LoginSession, dev_id: str, dev_key: str) -> None:
        """§8.7: unbind an own camera (the DevKey proves it); :class:`NoSuchDevice` otherwise."""
        binding = await self.store.get_binding(session.account, dev_id)
        device = await self.store.get_device(dev_id)
        if binding is None or binding.share_flag or device is None or not same_key(device.dev_key, dev_key):
            raise NoSuchDevice(f"{dev_id} is not {session.account}'s own device")
        if not await self.store.unbind_device(session.account, dev_id):
            raise NoSuchDevice(f"{dev_id} is no longer bound")

    async def may_watch(self, account: str, dev_id: str, channel_no: int) -> bool:
        """Own or shared binding (§8.5 ShareFlag 0 or 1), and a channel the camera has."""
        return await self.access.binding(account, dev_id, channel_no, own=False) is not None

    # Sharing ----------------------------------------------------------------------------------

    async def share(self, session: LoginSession, dev_id: str, guest: str) -> None:
        await self.access.require(session.account, dev_id)
        if not MOBILE.match(guest):
            raise NotFound(f"no account {guest}")
        outcome = await self.store.share_device(session.account, dev_id, guest, self.accounts.clock.seconds())
        if outcome == SHARE_NOT_OWNER:
            raise NoSuchDevice(f"{dev_id} is not {session.account}'s to share")
        if outcome != SHARE_OK:
            raise NotFound(f"cannot share {dev_id} with {guest}: {outcome}")

    async def unshare(self, session: LoginSession, dev_id: str, guest: str) -> None:
        await self.access.require(session.account, dev_id)
        if not await self.store.unshare_device(dev_id, guest):
            raise NotFound(f"{dev_id} is not shared with {guest}")

    async def shares(self, session: LoginSession, dev_id: str) -> tuple[str, ...]:
        await self.access.require(session.account, dev_id)
        return tuple(b.account for b in await self.store.list_shares(dev_id))
