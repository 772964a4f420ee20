"""The application layer: what the client API does, with no transport in it.

One service per domain of §8/§9 and its extensions — :mod:`~globaleye.app.accounts`
(sign-up, login, sessions), :mod:`~globaleye.app.devices` (device list, ownership,
sharing), :mod:`~globaleye.app.control` (PTZ, video, Wi-Fi, reboot, firmware),
:mod:`~globaleye.app.media` (§8.9 play and §7.5.23 playback URLs, stream status),
:mod:`~globaleye.app.recording` (policies, full-day, loop, record search), :mod:`~globaleye.app.pictures`
(picture policies, 75H-77H),
:mod:`~globaleye.app.cloud` (cloud storage, §7.1.2: the index, the cameras' keys, quotas, retention),
:mod:`~globaleye.app.alarms` and :mod:`~globaleye.app.events` (live alarms and online changes).
Services take typed values and return attrs results;
what goes wrong is an :class:`~globaleye.app.errors.AppError` carrying the Result code a
face answers with.  Their dependencies are explicit: the store, the accounts service and
the small interfaces of :mod:`globaleye.app.ports` (the gateway, the stream-status source).

The layer rule: nothing here imports a face (``globaleye.api.soap``, ``globaleye.api.clientapi``,
``twisted.web``, lxml) nor the RTSP proxy; the SOAP face (:mod:`globaleye.api.clientapi`), the
RTSP proxy (:mod:`globaleye.proxy.platform`), the CLI and later faces call these services.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from globaleye.app.access import CameraAccess
from globaleye.app.accounts import AccountsService, GroupNotices
from globaleye.app.alarms import AlarmService
from globaleye.app.cloud import CloudService
from globaleye.app.control import ControlService
from globaleye.app.devices import DeviceService, GroupClaims
from globaleye.app.events import EventBoard, EventService
from globaleye.app.media import MediaService
from globaleye.app.pictures import PictureService
from globaleye.app.ports import DeviceGateway, StreamBoard
from globaleye.app.recording import RecordingService
from globaleye.app.settings import ClientApiSettings
from globaleye.store import Store
from globaleye.users.accounts import AccountService


class GroupClient(GroupNotices, GroupClaims, Protocol):
    """This province's client of its group (§6): notices and claims."""


@attrs.frozen
class ClientServices:
    """Every service of the client API, built over the same store, accounts and gateway."""

    accounts: AccountsService
    devices: DeviceService
    control: ControlService
    media: MediaService
    recording: RecordingService
    alarms: AlarmService
    streams: StreamBoard
    events: EventService
    pictures: PictureService
    #: Cloud storage (§7.1.2), when a store is configured (the storage role or an external S3 service).
    cloud: CloudService | None = None


def build_services(accounts: AccountService, store: Store, gateway: DeviceGateway,
                   settings: ClientApiSettings | None = None, group: GroupClient | None = None,
                   streams: StreamBoard | None = None, events: EventBoard | None = None,
                   cloud: CloudService | None = None) -> ClientServices:
    """The composition of the client API's services (*group*: this province's group client, §6;
    *events*: the board the gateway reports alarms and online changes to, if it was given one)."""
    settings = settings or ClientApiSettings()
    streams = streams if streams is not None else StreamBoard()
    access = CameraAccess(store, gateway)
    return ClientServices(
        accounts=AccountsService(accounts, store, gateway, group),
        devices=DeviceService(accounts, store, gateway, access, group),
        control=ControlService(access, store, gateway, settings),
        media=MediaService(access, accounts, gateway, settings, streams),
        recording=RecordingService(access),
        alarms=AlarmService(access, store),
        streams=streams,
        events=EventService(access, events if events is not None else EventBoard()),
        pictures=PictureService(access),
        cloud=cloud)


__all__ = ["AccountsService", "AlarmService", "ClientApiSettings", "ClientServices", "CloudService", "ControlService",
           "DeviceService", "EventBoard", "EventService", "MediaService", "PictureService", "RecordingService", "StreamBoard",
           "build_services"]
