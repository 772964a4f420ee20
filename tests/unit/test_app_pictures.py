"""The picture-policy rules of globaleye.app.pictures (docs/protocol.md item 25), in memory."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from globaleye.app.errors import InvalidRequest, RuleViolation
from globaleye.app.pictures import CLOUD, FTP, PictureWindow, picture_policy, picture_rules
from globaleye.device.protocol import messages as m


def stored(policy_id: int, start: str, end: str, interval: int) -> m.PicturePolicyEntry:
    return m.PicturePolicyEntry(policy_id=policy_id, interval=interval, start_time=start, end_time=end)


class PicturePolicyTests(TestCase):
    def test_ftp_is_one_snapshot_the_platform_completes(self) -> None:
        self.assertEqual(picture_policy(FTP, PictureWindow("9:05")), m.PicturePolicy(0, "09:05", "09:05"))
        self.assertEqual(picture_policy(FTP, PictureWindow("09:05", "09:05", 0)), m.PicturePolicy(0, "09:05", "09:05"))
        for window in (PictureWindow("09:00", "10:00"), PictureWindow("09:00", None, 60)):
            self.assertRaises(RuleViolation, picture_policy, FTP, window)

    def test_cloud_needs_an_interval_in_a_same_day_window(self) -> None:
        self.assertEqual(picture_policy(CLOUD, PictureWindow("22:00", "24:00", 86400)),
                         m.PicturePolicy(86400, "22:00", "24:00"))
        for window, error in ((PictureWindow("10:00", "12:00", 0), RuleViolation),
                              (PictureWindow("10:00", "12:00", 86401), RuleViolation),
                              (PictureWindow("10:00", "12:00"), InvalidRequest),
                              (PictureWindow("12:00", "10:00", 60), InvalidRequest),
                              (PictureWindow("24:00", "24:00", 60), InvalidRequest),
                              (PictureWindow("10:60", "12:00", 60), InvalidRequest),
                              (PictureWindow(None, "12:00", 60), InvalidRequest)):
            self.assertRaises(error, picture_policy, CLOUD, window)

    def test_rules_over_stored_and_new(self) -> None:
        held = [stored(1, "08:00", "12:00", 60)]
        self.assertEqual(picture_rules(CLOUD, held, [m.PicturePolicy(60, "12:00", "13:00")]), "")
        self.assertIn("overlap", picture_rules(CLOUD, held, [m.PicturePolicy(60, "11:59", "13:00")]))
        self.assertIn("overlap", picture_rules(CLOUD, [], [m.PicturePolicy(60, "01:00", "03:00"),
                                                          m.PicturePolicy(60, "02:00", "04:00")]))
        shots = [stored(i, f"{i:02d}:00", f"{i:02d}:00", 0) for i in range(8)]
        self.assertIn("at most 8", picture_rules(FTP, shots, [m.PicturePolicy(0, "09:00", "09:00")]))
        self.assertIn("two snapshots", picture_rules(FTP, shots[:2], [m.PicturePolicy(0, "01:00", "01:00")]))
        self.assertEqual(picture_rules(FTP, shots[:7], [m.PicturePolicy(0, "23:00", "23:00")]), "")
