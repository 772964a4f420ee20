"""What a camera's ability report (32H) forbids (globaleye.app.abilities), in memory."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from globaleye.app.abilities import (
    Abilities,
    local_store_refusal,
    recording_refusal,
    storage_refusal,
    video_refusal,
)

#: The simulated IPC's report: main 720P/D1, sub CIF/D1 (§8 codes 1, 2, 3), both storages.
IPC = Abilities(known=True, local_store=True, cloud_store=True, frame_sizes={1: (1, 2), 2: (3, 2)})
NO_STORAGE = Abilities(known=True, frame_sizes={1: (1,)})
UNKNOWN = Abilities(known=False)


class AbilityRefusalTests(SynchronousTestCase):
    def test_video(self) -> None:
        self.assertEqual(video_refusal(IPC, 1, 2), "")
        self.assertEqual(video_refusal(IPC, 1, None), "", "other parameters only: nothing to check")
        self.assertIn("cannot be CIF", video_refusal(IPC, 1, 3))
        self.assertIn("cannot be 720P", video_refusal(IPC, 2, 1))
        self.assertIn("no sub stream", video_refusal(NO_STORAGE, 2, None))
        self.assertEqual(video_refusal(UNKNOWN, 2, 1), "", "no report yet: the camera decides")
        self.assertEqual(video_refusal(Abilities(known=True), 1, 3), "", "a report without <Video> (an NVR's)")

    def test_storage(self) -> None:
        self.assertEqual((storage_refusal(IPC, 0), storage_refusal(IPC, 1)), ("", ""))
        self.assertIn("LocalStoreFlag", storage_refusal(NO_STORAGE, 0))
        self.assertIn("EStoreFlag", storage_refusal(NO_STORAGE, 1))
        cloud_only = Abilities(known=True, cloud_store=True)
        self.assertEqual(storage_refusal(cloud_only, 1), "")
        self.assertEqual(recording_refusal(cloud_only, "full-day recording"), "")
        self.assertIn("loop recording", local_store_refusal(cloud_only, "loop recording"))
        self.assertIn("neither", recording_refusal(NO_STORAGE, "recording windows"))
        for refusal in (storage_refusal(UNKNOWN, 0), local_store_refusal(UNKNOWN, "x"), recording_refusal(UNKNOWN, "x")):
            self.assertEqual(refusal, "")
