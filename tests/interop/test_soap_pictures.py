"""Picture policies (75H-77H) on the SOAP client API (docs/protocol.md item 25): zeep against the real
site and a simulated camera (the harness of tests/interop/test_soap_ext.py).  What is added is what the
camera holds; the platform's rules answer Result 5 before the camera sees a request.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from globaleye.device.protocol import messages as m
from tests.interop import test_soap_ext as ext


class SoapPictureTests(TestCase):
    timeout = 60

    start_platform = ext.SoapExtensionTests.start_platform
    camera = ext.SoapExtensionTests.camera
    client = ext.SoapExtensionTests.client
    call = ext.SoapExtensionTests.call
    sign_up = ext.SoapExtensionTests.sign_up
    owned = ext.SoapExtensionTests.owned

    async def test_picture_policies(self) -> None:
        platform, camera, client, dev = await self.owned()
        self.assertEqual(await self.call(client, "AddPicturePolicy", **dev, ChannelNo=0, StoreType=0,
                                         PicturePolicy=[{"StartTime": "09:30"}]), 0)
        self.assertEqual(await self.call(client, "AddPicturePolicy", **dev, ChannelNo=0, StoreType=1, PicturePolicy=[
            {"StartTime": "08:00", "EndTime": "12:00", "Interval": 600}]), 0)
        held = sorted((p.store_type, p.entry.start_time, p.entry.end_time, p.entry.interval)
                      for p in camera.state.picture_policies[0])
        self.assertEqual(held, [(m.PictureStoreType.FTP, "09:30", "09:30", 0),
                                (m.PictureStoreType.ESTORE, "08:00", "12:00", 600)])
        listed = (await self.call(client, "GetPicturePolicy", **dev, ChannelNo=0)).PicturePolicy
        self.assertEqual([(p.StoreType, p.StartTime, p.EndTime, p.Interval) for p in listed],
                         [(0, "09:30", "09:30", 0), (1, "08:00", "12:00", 600)])
        # The rules: overlap, a second FTP snapshot at one time, an FTP window: 5, nothing sent.
        for store, policy in ((1, {"StartTime": "11:00", "EndTime": "13:00", "Interval": 60}),
                              (0, {"StartTime": "09:30"}),
                              (0, {"StartTime": "10:00", "EndTime": "11:00", "Interval": 60})):
            self.assertEqual(await self.call(client, "AddPicturePolicy", **dev, ChannelNo=0, StoreType=store,
                                             PicturePolicy=[policy]), 5, policy)
        self.assertEqual(len(camera.state.picture_policies[0]), 2)
        self.assertEqual(await self.call(client, "DeletePicturePolicy", **dev, ChannelNo=0, PolicyID=999), 5)
        self.assertEqual(await self.call(client, "DeletePicturePolicy", **dev, ChannelNo=0,
                                         PolicyID=listed[0].PolicyID), 0)
        self.assertEqual([p.entry.policy_id for p in camera.state.picture_policies[0]], [listed[1].PolicyID])
        # Another account: 3, like an absent device.
        other = await self.sign_up(client, "13300000052")
        self.assertEqual((await self.call(client, "GetPicturePolicy", **other, DevID=dev["DevID"], ChannelNo=0)).Result,
                         3)
