"""Who may use which camera, and the one way a camera command is sent.

:class:`CameraAccess` is the prelude every camera operation shares: "the camera is the
caller's (own, or shared when viewing is enough) and has this channel; it is online;
send the command; an offline, silent or disconnected camera is :class:`DeviceOffline`,
a non-zero Result from the camera is :class:`DeviceRefused`".  Commands go through the
gateway with its command timeout (``[gateway] command_timeout``), so a request never hangs.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from globaleye.app.errors import DeviceOffline, DeviceRefused, NoSuchDevice
from globaleye.app.ports import DeviceGateway
from globaleye.device.messaging import CommandError
from globaleye.device.protocol import messages as m
from globaleye.store import Binding, Store


class CameraAccess:
    log = Logger()

    def __init__(self, store: Store, gateway: DeviceGateway) -> None:
        self.store = store
        self.gateway = gateway

    async def binding(self, account: str, dev_id: str, channel_no: int | None = None,
                      own: bool = True) -> Binding | None:
        """The account's binding of *dev_id*, if it may use it (*own*: configure, not only view),
        and *channel_no* (when given) is one the camera has."""
        binding = await self.store.get_binding(account, dev_id)
        if binding is None or (own and binding.share_flag):
            return None
        if channel_no is not None:
            ability = await self.store.get_ability(dev_id)
            channels = max(1, ability.channel_num) if ability is not None else 1
            if not 0 <= channel_no < channels:
                return None
        return binding

    async def require(self, account: str, dev_id: str, channel_no: int | None = None, own: bool = True,
                      online: bool = False) -> Binding:
        """:meth:`binding`, or :class:`NoSuchDevice`; with *online*, also :class:`DeviceOffline` when it is."""
        binding = await self.binding(account, dev_id, channel_no, own)
        if binding is None:
            raise NoSuchDevice(f"device {dev_id} is not usable by {account}")
        if online and not self.gateway.is_online(dev_id):
            raise DeviceOffline(f"device {dev_id} is offline")
        return binding

    async def command(self, dev_id: str, request: m.Message) -> Any:
        """The device's answer to *request*; :class:`DeviceOffline` or :class:`DeviceRefused` otherwise."""
        try:
            response = await self.gateway.command(dev_id, request)
        except CommandError as e:
            self.log.info("client command {root} to {dev_id}: {error}", root=request.ROOT, dev_id=dev_id,
                          error=f"{type(e).__name__}: {e}")
            raise DeviceOffline(f"device {dev_id}: {type(e).__name__}: {e}") from None
        if response.result != 0:
            raise DeviceRefused(f"the device refused <{request.ROOT}> with Result {response.result}",
                                response.result)
        return response
