"""One upstream, many viewers: the live hub and each viewer's view of the stream.

Producer/consumer with nothing queued in between: the hub pushes each packet to
every viewer as it arrives (to a TCP viewer, each picture when its last packet arrives),
and a viewer whose sink cannot take more (a TCP viewer
whose socket buffer is full: Twisted paused it) drops pictures instead, and
rejoins at the next IDR once it drains.  So a slow viewer costs one socket buffer
plus at most one picture, never stalls the others, and the hub holds no backlog.

One numbering for all the RTSP viewers of a live stream (RFC 2326 lets them share it: each
learns where its part begins from RTP-Info's ``seq`` and ``rtptime``): the hub numbers each
camera packet once (:class:`Numbering`: SSRC, sequence numbers, timestamps per track), and puts
the SDP's SPS and PPS in front of an IDR the camera sent bare, so every viewer can start on
it.  That is what makes the fan-out cheap (issue 13, docs/performance.md): TCP viewers with the
same interleaved channels get each picture as one buffer built once, in one write each
(:class:`~globaleye.proxy.directwrite.DirectWriter`), UDP viewers the hub's packets as they
are.  A viewer that misses a picture (a slow one) leaves the shared buffers and goes on packet
by packet with its own sequence numbers, from the first one it missed, so the pictures it
skipped leave no holes and a player sees one continuous stream rather than loss.  The other
consumers of a hub (the web feed, snapshots) and playback sessions rewrite each packet onto
their own numbering, as every viewer did before.

First picture fast (the GOP cache, as MediaMTX and go2rtc do): the hub keeps the
packets of the current GOP -- from the last key picture (SPS/PPS/IDR) on, audio
included, at most ``GOP_CACHE_BYTES`` -- and replays them to a new viewer as soon as
it is added (after its PLAY answer), so it starts on that IDR at once instead of
waiting up to a GOP for the next one.  The upstream's first IDR, which arrives while
the path is still being tested and before any viewer exists, is kept the same way.
The cache is dropped at the next key picture, and given up (until the next one) if
a GOP outgrows the bound.

The upstream comes back by itself (as go2rtc's producers and MediaMTX's sources do): when
the camera drops it (a reboot, a Wi-Fi blip, a new NAT mapping) or it goes silent for
``media_timeout`` seconds, a hub that has viewers keeps them connected and runs the §15 path
selection again, with backoff, for up to ``recover_timeout`` seconds.  The viewers then go
on in the same RTSP session: their sequence numbers continue, each track's timestamps
continue from where they stopped plus the time the outage took (the new camera session has
new RTP bases), and they start again at the new session's first IDR.  Only if the camera
stays away, or comes back with a different stream (other tracks or payload types, which the
viewers' SDP cannot describe), are the viewers disconnected.
"""

from __future__ import annotations

import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.logger import Logger

from globaleye.media import h264rtp, rtp
from globaleye.media.rtsp.paths import Attempt, NoPath, summarize
from globaleye.media.rtsp.sdp import SessionDescription
from globaleye.media.rtsp.upstream import UpstreamSession
from globaleye.proxy.directwrite import gso_runs

log = Logger()

#: The most a hub keeps of the current GOP for new viewers (about 16 s of a 1 Mbit/s stream).
GOP_CACHE_BYTES = 2 * 1024 * 1024

#: Waits between recovery attempts: the first try is at once, then these, the last repeated.
RECOVER_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)


_U32 = struct.Struct("!I")
#: "$", channel, length, then the RTP header's first two bytes, sequence number, timestamp, SSRC.
_INTERLEAVED_RTP = struct.Struct("!BBHBBHII")
#: Packets of one picture written together at most (a picture without a marker is flushed anyway).
MAX_BATCH = 64
#: Packets of one picture a hub holds for its shared buffers before it sends them (about 180 KB).
MAX_PICTURE_PACKETS = 128
#: The last packet fanned out and its payload (see ViewerStream._out).
_body_of: tuple[bytes, bytes] = (b"", b"")


class DatagramOut(Protocol):
    """Datagrams to one UDP viewer (``globaleye.proxy.directwrite.UdpSender``)."""

    def send(self, packet: bytes) -> None: ...

    def send_runs(self, runs: list[tuple[int, bytes, int]], packets: list[bytes]) -> None: ...


class Sink(Protocol):
    def blocked(self) -> bool: ...

    def send_rtp(self, track: int, data: bytes) -> None: ...

    def send_rtcp(self, track: int, data: bytes) -> None: ...

    def upstream_lost(self, reason: str) -> None: ...


class ViewerStream:
    """What one viewer receives of a stream (live hub or its own playback upstream)."""

    def __init__(self, sink: Sink, description: SessionDescription, label: str = "") -> None:
        self.sink = sink
        self.label = label
        self.video_track = description.track("video")
        self.video_pt = description.media[self.video_track].payload_type if self.video_track is not None else None
        self.params = description.media[self.video_track].sprop_parameter_sets if self.video_track is not None else []
        n = len(description.media)
        self.seq = [secrets.randbelow(0x10000) for _ in range(n)]
        self.ssrc = [secrets.randbits(32) for _ in range(n)]
        self.ts_offset = [secrets.randbits(32) for _ in range(n)]
        self.tracks: set[int] = set(range(n))  # the tracks this viewer SET UP
        self.waiting = True  # for an IDR
        self.started = False
        self.in_picture = False
        #: Counts of what was sent (the properties frames_sent and packets_sent add what the
        #: group of shared-buffer viewers it is in sent it).
        self.frames = 0
        self.frames_dropped = 0
        self.packets = 0
        self.started_at = time.monotonic()
        self.first_frame_after: float | None = None
        self.replaying = False
        #: Whether the camera's RTCP BYE reaches this viewer (playback: yes; live: see LiveHub.add).
        self.forward_bye = True
        #: Whether a live hub hands this viewer its last sender reports when it joins (LiveHub.reports).
        self.replay_reports = False
        #: TCP fast path, set by the server: the interleaved RTP channel of each track and the
        #: transport's write.  Then one struct.pack makes the viewer's header and the "$"
        #: framing together and the packet goes straight to the transport (see _out).
        self.channels: dict[int, int] = {}
        self.write: Callable[[bytes], None] | None = None
        #: The same transport's writeSequence: a video picture's packets go out in one call at its
        #: last packet (the marker), not one Twisted write per packet (docs/performance.md).
        self.write_sequence: Callable[[list[bytes]], None] | None = None
        self._batch: list[bytes] = []
        #: Shared numbering (set by LiveHub.prepare): this viewer's SSRC and timestamps are the
        #: hub's, and its sequence numbers too as long as it has missed nothing; ``rtptime``
        #: then holds, per track, the timestamp of the first packet it will get (RTP-Info).
        self.shared = False
        self.rtptime: dict[int, int] = {}
        #: Whether it can be served from the hub's shared buffers (set by the server: every track
        #: it SET UP is interleaved on one connection with ``write``, or UDP with ``udp_out``).
        self.can_share = False
        #: Served from the hub's shared buffers now (LiveHub: until it misses a picture).
        self.fast = False
        #: The hub's group of shared-buffer viewers it is in (``home``), the group if it counts what
        #: it sends this viewer (``group``), and the group's counts when it started to.
        self.home: _Group | None = None
        self.group: _Group | None = None
        self.group_mark = (0, 0)
        #: Per track, how far its sequence numbers run behind the hub's (see _Group).
        self.delta = [0] * n
        #: UDP: per track, the sender from the server's RTP port to the viewer's.
        self.udp_out: dict[int, DatagramOut] = {}

    def _blocked(self) -> bool:
        # A GOP replay goes out whole: it is bounded (GOP_CACHE_BYTES), and cutting it at the
        # transport's 64 KiB mark would leave the viewer frozen on its IDR until the next one.
        return not self.replaying and self.sink.blocked()

    def replay(self, packets: tuple[tuple[int, bytes, int, int, bool], ...]) -> None:
        """The hub's cached GOP, before any live packet (see the module docstring)."""
        self.replaying = True
        try:
            for track, data, ts, offset, start in packets:
                self.rtp(track, data, ts, offset, start)
        finally:
            self.replaying = False

    def resync(self, description: SessionDescription) -> None:
        """A new upstream replaces a lost one: go on in the same session, from its next IDR.

        The hub keeps the numbering continuous (:class:`Numbering`: sequence numbers and SSRCs
        go on, timestamps go on from the last ones plus the outage), so a viewer only waits for
        the new session's first key picture and takes the new SDP's parameter sets.  A viewer
        served from the hub's shared buffers needs nothing: it gets every packet the hub numbers.
        """
        if self.fast:
            return
        self.waiting = True
        self.in_picture = False
        if self.video_track is not None:
            self.params = description.media[self.video_track].sprop_parameter_sets

    def _out(self, track: int, data: bytes) -> None:
        seq = self.seq[track]
        self.seq[track] = (seq + 1) & 0xFFFF
        self.packets += 1
        channel = self.channels.get(track)
        if channel is not None and self.write is not None and len(data) <= 0xFFFF:
            # The per-packet, per-viewer cost of a fan-out (docs/performance.md): h264rtp.rewrite_rtp
            # and rtsp.message.encode_interleaved in one pack, and one write per picture.
            ts = (_U32.unpack_from(data, 4)[0] + self.ts_offset[track]) & 0xFFFFFFFF
            header = _INTERLEAVED_RTP.pack(0x24, channel, len(data), data[0], data[1], seq, ts, self.ssrc[track])
            if track != self.video_track or self.write_sequence is None:
                self.write(header + data[12:])
                return
            # Every viewer sends the same payload after its own header: one slice per packet for
            # all of them (the hub hands each viewer the same object), not a copy per viewer.
            global _body_of
            if _body_of[0] is not data:
                _body_of = (data, data[12:])
            batch = self._batch
            batch.append(header)
            batch.append(_body_of[1])
            if data[1] & 0x80 or len(batch) >= 2 * MAX_BATCH:  # the picture's last packet
                self.write_sequence(batch)
                batch.clear()
            return
        self.sink.send_rtp(track, h264rtp.rewrite_rtp(data, seq, self.ts_offset[track], self.ssrc[track]))

    def _flush(self) -> None:
        if self.write_sequence is not None:
            self.write_sequence(self._batch)
        self._batch.clear()

    def rtp(self, track: int, data: bytes, timestamp: int, payload_offset: int, picture_start: bool) -> None:
        if track not in self.tracks:
            return
        if track != self.video_track:
            if self.started and not self.waiting and not self._blocked():
                self._out(track, data)
            return
        if picture_start:
            if self._batch:  # a picture whose last packet had no marker: out before the next one
                self._flush()
            self.in_picture = False
            if self._blocked():
                self.waiting = True
                self.frames_dropped += 1
                return
            payload = data[payload_offset:]
            if self.waiting:
                if not h264rtp.is_key_start(payload):
                    if self.started:
                        self.frames_dropped += 1
                    return
                self.waiting = False
                if h264rtp.first_nal_type(payload) == rtp.NAL_IDR and self.params and self.video_pt is not None:
                    for nal in self.params:  # the camera's IDR came bare: SPS/PPS from the SDP first
                        self.sink.send_rtp(track, h264rtp.single_nal_packet(
                            nal, self.video_pt, self.seq[track], (timestamp + self.ts_offset[track]) & 0xFFFFFFFF,
                            self.ssrc[track]))
                        self.seq[track] = (self.seq[track] + 1) & 0xFFFF
                if not self.started:
                    self.started = True
                    self.first_frame_after = time.monotonic() - self.started_at
            self.in_picture = True
            self.frames += 1
        if self.in_picture:
            self._out(track, data)

    def rtcp(self, track: int, data: bytes) -> None:
        if track in self.tracks and self.started and not self.sink.blocked():
            report = h264rtp.rewrite_rtcp(data, self.ts_offset[track], self.ssrc[track], self.forward_bye)
            if report is not None:
                self.sink.send_rtcp(track, report)

    def settle(self) -> None:
        """Bring the counts up to date with what the group it is in sent it."""
        group = self.group
        if group is not None:
            frames, packets = self.group_mark
            self.frames += group.frames_sent - frames
            self.packets += group.packets_sent - packets
            self.group_mark = (group.frames_sent, group.packets_sent)

    @property
    def frames_sent(self) -> int:
        self.settle()
        return self.frames

    @property
    def packets_sent(self) -> int:
        self.settle()
        return self.packets

    def stats(self) -> dict[str, Any]:
        return {"frames_sent": self.frames_sent, "frames_dropped": self.frames_dropped,
                "packets_sent": self.packets_sent, "waiting_for_idr": self.waiting,
                "first_frame_ms": None if self.first_frame_after is None else round(self.first_frame_after * 1000)}


class PictureTracker:
    """Which packets open a picture: the one after a marker, or a new timestamp (RFC 6184 §5.1)."""

    def __init__(self) -> None:
        self.after_marker: dict[int, bool] = {}
        self.last_ts: dict[int, int] = {}

    def feed(self, track: int, data: bytes) -> tuple[int, int, bool] | None:
        try:
            _pt, _seq, ts, marker, offset = h264rtp.rtp_fields(data)
        except rtp.RtpError:
            return None
        start = self.after_marker.get(track, True) or self.last_ts.get(track) != ts
        self.after_marker[track] = marker
        self.last_ts[track] = ts
        return ts, offset, start


#: An RTP header's sequence number, timestamp and SSRC (bytes 2 to 12).
_SEQ_TS_SSRC = struct.Struct("!HII")
#: The "$", channel and length in front of an interleaved frame (RFC 2326 §10.12).
_FRAME = struct.Struct("!BBH")
_U16 = struct.Struct("!H")


class Numbering:
    """One hub's RTP numbering per track: the SSRC, sequence numbers and timestamps every viewer sees.

    RFC 2326 lets all viewers of a live stream share them: each learns where its part begins
    from RTP-Info (``seq``, ``rtptime``) in the PLAY answer.  Numbering each camera packet once
    for everyone is what lets the hub send one buffer per picture to all its viewers.  Across
    an upstream recovery the numbering goes on: sequence numbers continue, and each track's
    timestamps continue from the last one plus the outage (``rebase``), whatever RTP bases the
    camera's new session has.
    """

    def __init__(self, description: SessionDescription) -> None:
        n = len(description.media)
        self.ssrc = [secrets.randbits(32) for _ in range(n)]
        self.seq = [secrets.randbelow(0x10000) for _ in range(n)]  # the next packet's
        self.offset = [secrets.randbits(32) for _ in range(n)]
        self.rates = [m.clock_rate or 90000 for m in description.media]
        self.last_ts: dict[int, int] = {}
        #: Tracks whose offset is recomputed at their next packet: the timestamp to go on from.
        self.rebase_from: dict[int, int] = {}

    def _ts(self, track: int, camera_ts: int) -> int:
        if self.rebase_from:
            start = self.rebase_from.pop(track, None)
            if start is not None:
                self.offset[track] = (start - camera_ts) & 0xFFFFFFFF
        ts = (camera_ts + self.offset[track]) & 0xFFFFFFFF
        self.last_ts[track] = ts
        return ts

    def number(self, track: int, data: bytes) -> tuple[bytes, int]:
        """The camera's packet in the hub's numbering, and its timestamp there."""
        seq = self.seq[track]
        self.seq[track] = (seq + 1) & 0xFFFF
        ts = self._ts(track, _U32.unpack_from(data, 4)[0])
        return b"".join((data[:2], _SEQ_TS_SSRC.pack(seq, ts, self.ssrc[track]), memoryview(data)[12:])), ts

    def parameter_set(self, track: int, nal: bytes, payload_type: int, camera_ts: int) -> tuple[bytes, int]:
        """An SPS or PPS packet, numbered, for the picture at *camera_ts* (put in front of a bare IDR)."""
        seq = self.seq[track]
        self.seq[track] = (seq + 1) & 0xFFFF
        ts = self._ts(track, camera_ts)
        return h264rtp.single_nal_packet(nal, payload_type, seq, ts, self.ssrc[track]), ts

    def rebase(self, gap: float) -> None:
        """A new camera session after *gap* seconds: its timestamps go on from ours, never back."""
        self.rebase_from = {t: (ts + max(1, round(max(gap, 0.0) * self.rates[t]))) & 0xFFFFFFFF
                            for t, ts in self.last_ts.items()}

    def report(self, track: int, data: bytes) -> bytes | None:
        """A camera's sender report in this numbering (None while *track* waits for its rebase)."""
        if track in self.rebase_from:
            return None
        return h264rtp.rewrite_rtcp(data, self.offset[track], self.ssrc[track], False)


class _Group:
    """The viewers served from one shared buffer: TCP viewers with the same interleaved channels.

    Each viewer's ``offer(data) -> bool`` writes unless its connection is paused (False).  The
    pictures and packets sent to ``viewers`` are counted here, once for all of them: a viewer's
    own counts are brought up to date when it leaves, and by ``ViewerStream.stats``.

    ``shifted`` are viewers whose sequence numbers run behind the hub's by ``viewer.delta``
    (per track): they once missed pictures, and came back at a key picture (``LiveHub._adopt``)
    with no hole in their numbering.  They get the same buffer with its sequence numbers
    shifted, made once per picture for each distinct shift, and are counted one by one.
    """

    __slots__ = ("channels", "viewers", "shifted", "parts", "packets", "frames_sent", "packets_sent")

    def __init__(self, channels: dict[int, int]) -> None:
        self.channels = channels
        self.viewers: dict[ViewerStream, Callable[[bytes], bool]] = {}
        self.shifted: dict[ViewerStream, Callable[[bytes], bool]] = {}
        #: The open picture's frames ("$" header, packet, ...), sent when it ends.
        self.parts: list[bytes] = []
        self.packets = 0
        self.frames_sent = 0
        self.packets_sent = 0

    def add(self, viewer: ViewerStream) -> None:
        write = viewer.write
        offer = getattr(write, "offer", None)
        if offer is None:  # any other writer: the sink says whether it can take more
            def offer(data: bytes) -> bool:
                if viewer.sink.blocked():
                    return False
                if viewer.write is not None:
                    viewer.write(data)
                return True
        if any(viewer.delta):
            self.shifted[viewer] = offer
        else:
            self.viewers[viewer] = offer
            viewer.group = self
            viewer.group_mark = (self.frames_sent, self.packets_sent)
        viewer.home = self

    def remove(self, viewer: ViewerStream) -> None:
        if viewer in self.viewers:
            del self.viewers[viewer]
            viewer.settle()
            viewer.group = None
        self.shifted.pop(viewer, None)
        viewer.home = None

    def deliver(self, data: bytes, track: int, packets: int, end: bool) -> list[ViewerStream]:
        """*data* (*packets* frames of *track*, or the end of a picture) to every viewer; the
        viewers that could not take it."""
        slow = [viewer for viewer, offer in self.viewers.items() if not offer(data)]
        for viewer in slow:  # counted up to here: they did not get this one
            del self.viewers[viewer]
            viewer.settle()
            viewer.group = None
        if self.shifted:
            shifted: dict[int, bytes] = {}
            for viewer, offer in self.shifted.items():
                delta = viewer.delta[track]
                if delta not in shifted:
                    shifted[delta] = _shift(data, delta)
                if offer(shifted[delta]):
                    viewer.packets += packets
                    viewer.frames += end
                else:
                    slow.append(viewer)
        self.packets_sent += packets
        self.frames_sent += end
        return slow


def _shift(frames: bytes, delta: int) -> bytes:
    """Interleaved RTP frames with *delta* added to each one's sequence number."""
    out = bytearray(frames)
    pos = 0
    while pos + 8 <= len(out):
        length = _FRAME.unpack_from(out, pos)[2]
        _U16.pack_into(out, pos + 6, (_U16.unpack_from(out, pos + 6)[0] + delta) & 0xFFFF)
        pos += 4 + length
    return bytes(out)


class _UdpGroup(_Group):
    """A hub's UDP viewers that SET UP the same tracks: per track, each one's sender.

    A video picture goes when its last packet has come, in runs of one size per ``sendmsg``
    (``UdpSender.send_runs``, cut once for all the viewers); other tracks' packets go at once.
    Nothing blocks (UDP has no flow control: a viewer that cannot keep up loses packets, as
    RFC 3550 expects).
    """

    __slots__ = ("targets", "picture", "picture_started")

    def __init__(self) -> None:
        super().__init__({})
        self.targets: dict[int, list[DatagramOut]] = {}
        self.picture: list[bytes] = []
        self.picture_started = False

    def add(self, viewer: ViewerStream) -> None:
        self.viewers[viewer] = _never_blocked
        viewer.home = viewer.group = self
        viewer.group_mark = (self.frames_sent, self.packets_sent)
        self._index()

    def remove(self, viewer: ViewerStream) -> None:
        super().remove(viewer)
        self._index()

    def _index(self) -> None:
        targets: dict[int, list[DatagramOut]] = {}
        for viewer in self.viewers:
            for track, out in viewer.udp_out.items():
                targets.setdefault(track, []).append(out)
        self.targets = targets

    def hold(self, track: int, packet: bytes, picture_start: bool) -> None:
        """A video packet: sent with its picture (``flush``)."""
        if track in self.targets:
            self.picture.append(packet)
            self.picture_started |= picture_start

    def send(self, track: int, packet: bytes) -> None:
        """A packet of another track: sent at once."""
        targets = self.targets.get(track)
        if targets:
            self.packets_sent += 1
            for out in targets:
                out.send(packet)

    def flush(self, video_track: int | None) -> None:
        if self.picture and video_track is not None:
            packets, self.picture = self.picture, []
            runs = gso_runs(packets)
            for out in self.targets.get(video_track, ()):
                out.send_runs(runs, packets)
            self.packets_sent += len(packets)
            self.frames_sent += self.picture_started
            self.picture_started = False

    def discard(self) -> None:
        self.picture, self.picture_started = [], False


def _never_blocked(data: bytes) -> bool:
    return True


Connector = Callable[[str, Callable[[UpstreamSession], None]], Awaitable[tuple[UpstreamSession, list[Attempt]]]]


class LiveHub:
    """Every viewer of one camera stream, sharing one upstream.

    Starts the upstream for the first viewer (``ensure``), stops it ``linger``
    seconds after the last one leaves, so a player that reconnects (or a page
    reload) finds it still running.  If the camera goes away while viewers watch,
    the hub gets it back for them (``recover_timeout``, see the module docstring);
    without viewers, or when that fails, the hub is idle again and the next viewer
    starts a new path selection.
    """

    def __init__(self, key: tuple[str, int, int], label: str, connect: Connector, reactor: Any,
                 linger: float, on_idle: Callable[[LiveHub], None] | None = None, *,
                 recover_timeout: float = 30.0, media_timeout: float = 10.0) -> None:
        self.key = key
        self.label = label
        self.connect = connect
        self.reactor = reactor
        self.linger = linger
        self.on_idle = on_idle
        self.recover_timeout = recover_timeout
        self.media_timeout = media_timeout
        self.viewers: set[ViewerStream] = set()
        self.upstream: UpstreamSession | None = None
        self.description: SessionDescription | None = None
        self.attempts: list[Attempt] = []
        self.tracker = PictureTracker()
        self.video_track: int | None = None
        #: The current GOP's packets (track, data, timestamp, payload offset, picture start); None: none.
        self.gop: list[tuple[int, bytes, int, int, bool]] | None = None
        self.gop_bytes = 0
        self.gop_replays = 0
        #: The hub's numbering of every track (set when an upstream is attached outside a recovery).
        self.numbering: Numbering | None = None
        self.video_pt: int | None = None
        self.params: list[bytes] = []
        #: While recovering: the packets of the path being tried, from its first key picture on.
        self.held: list[tuple[int, bytes, int, int, bool]] | None = None
        self.held_bytes = 0
        #: The viewers fed packet by packet (ViewerStream.rtp), those served from shared buffers
        #: (TCP, in groups by interleaved channels; UDP), and those that join at the next picture.
        self.generic: dict[ViewerStream, None] = {}
        self.groups: dict[tuple[tuple[int, int], ...], _Group] = {}
        self.udp_groups: dict[frozenset[int], _UdpGroup] = {}
        self.joining: list[ViewerStream] = []
        #: A video picture is being received; the sequence number of its first packet not yet sent.
        self.open_picture = False
        self.unsent = 0  # video packets numbered and not yet sent to grouped viewers
        self.unsent_seq = 0
        #: After an upstream is attached: nothing reaches the viewers before its first key picture.
        self.await_key = True
        #: Viewers moved from the shared buffers to their own numbering (they missed a picture),
        #: and moved (back) into them at a key picture.
        self.demotions = 0
        self.adoptions = 0
        #: The last RTCP sender report of each track, replayed to a viewer that joins and asks for
        #: them (``ViewerStream.replay_reports``): without it a viewer that lines up audio and
        #: video (the web feed's AAC) waits for the camera's next one (every 5 s, RFC 3550 §6.2).
        #: RTSP players are not given them: ffmpeg keeps the first SR's NTP mapping, which a
        #: recovered upstream's reports contradict (tests/interop/test_proxy.py's outage test).
        self.reports: dict[int, bytes] = {}
        #: Callers of ``ensure`` waiting for a start (or a whole recovery) in progress; None: none.
        self.starting: list[defer.Deferred[SessionDescription]] | None = None
        #: The account whose HashTokens the upstream uses, for a recovery's new tokens.
        self.account: str | None = None
        self.recovering = False
        self.recoveries = 0
        self.last_recovery: dict[str, Any] | None = None
        self.starts = 0
        self.stops = 0
        self.started_at: float | None = None
        self.last_stop_reason = ""
        self._linger_call: Any = None
        self._watch_call: Any = None
        self._watched_packets = -1
        self._generation = 0  # bumped by stop(): a recovery in flight for an older one gives up
        self._backoff: defer.Deferred[None] | None = None

    @property
    def running(self) -> bool:
        return self.upstream is not None and not self.upstream.closed

    @property
    def state(self) -> str:
        if self.running:
            return "running"
        return "recovering" if self.recovering else "starting" if self.starting is not None else "stopped"

    async def ensure(self, account: str) -> SessionDescription:
        """The upstream's SDP, starting the upstream if needed (one start for concurrent callers)."""
        if self.running and self.description is not None:
            self._schedule_linger()
            return self.description
        if self.starting is not None:
            d: defer.Deferred[SessionDescription] = defer.Deferred()
            self.starting.append(d)
            return await d
        self.starting = []
        try:
            description = await self._start(account)
        except BaseException as e:
            self._settle(e)
            raise
        self._settle(description)
        self._schedule_linger()
        return description

    def _settle(self, result: SessionDescription | BaseException) -> None:
        waiting, self.starting = self.starting or [], None
        for w in waiting:
            if isinstance(result, BaseException):
                w.errback(result)
            else:
                w.callback(result)

    async def _start(self, account: str) -> SessionDescription:
        """One §15 path selection; the hub runs on the session it gives."""
        try:
            session, attempts = await self.connect(account, self._attach)
        except NoPath as e:
            self.attempts = e.attempts
            raise
        self.attempts = attempts
        assert session.description is not None
        self.upstream = session
        self.description = session.description
        self.account = account
        self.starts += 1
        self.started_at = time.time()
        self._watch()
        return session.description

    def _attach(self, session: UpstreamSession) -> None:
        self.tracker = PictureTracker()
        description = session.description
        assert description is not None
        self.video_track = description.track("video")
        if self.video_track is not None:
            media = description.media[self.video_track]
            self.video_pt, self.params = media.payload_type, media.sprop_parameter_sets
        self._drop_gop()
        self.held, self.held_bytes = None, 0
        self.await_key = True
        self.reports = {}
        if not self.recovering or self.numbering is None:
            self.numbering = Numbering(description)  # no viewer yet: a fresh numbering
        session.on_rtp = self._rtp
        session.on_rtcp = self._rtcp

        def lost(reason: str) -> None:
            # A path attempt that dies before it is chosen is the path selection's business.
            if session is self.upstream:
                self._lost(reason)

        session.on_lost = lost

    def _rtp(self, track: int, data: bytes) -> None:
        facts = self.tracker.feed(track, data)
        if facts is None:
            return
        ts, offset, start = facts
        if self.recovering:
            self._hold(track, data, ts, offset, start)
        else:
            self._take(track, data, ts, offset, start)

    def _hold(self, track: int, data: bytes, ts: int, offset: int, start: bool) -> None:
        """A path being tried while recovering: the viewers get it from its first key picture on
        once it is chosen, numbered on from where they stopped (``_recover``)."""
        if track == self.video_track and start and h264rtp.is_key_start(data[offset:offset + 4]):
            self.held, self.held_bytes = [], 0
        if self.held is not None:
            self.held_bytes += len(data)
            if self.held_bytes > GOP_CACHE_BYTES:
                self.held, self.held_bytes = None, 0
            else:
                self.held.append((track, data, ts, offset, start))

    def _take(self, track: int, data: bytes, ts: int, offset: int, start: bool) -> None:
        """One camera packet: numbered once for every viewer, SPS/PPS in front of a bare IDR."""
        numbering = self.numbering
        assert numbering is not None
        key = False
        nal = None
        if start and track == self.video_track:
            nal = h264rtp.first_nal_type(data[offset:offset + 4])
            key = nal in h264rtp.START_TYPES
            if key:
                self.await_key = False
        if self.await_key:
            return  # a new camera session starts for the viewers at its first key picture
        if key:
            if nal == rtp.NAL_IDR and self.params and self.video_pt is not None:
                # The camera's IDR came bare: the SDP's parameter sets first, so that any viewer
                # (and the GOP cache) can start decoding here.
                for i, nal_unit in enumerate(self.params):
                    packet, out_ts = numbering.parameter_set(track, nal_unit, self.video_pt, ts)
                    self._emit(track, packet, out_ts, 12, i == 0, i == 0)
                start = key = False
        packet, out_ts = numbering.number(track, data)
        self._emit(track, packet, out_ts, offset, start, key)

    def _emit(self, track: int, packet: bytes, ts: int, offset: int, start: bool, key: bool) -> None:
        """One numbered packet to the GOP cache and every viewer."""
        video = track == self.video_track
        if video and start:
            if self.open_picture:
                self._flush(True)  # a picture whose last packet had no marker
            if key:
                self.gop, self.gop_bytes = [], 0  # a new GOP: the previous one is no longer needed
                if self.generic:
                    self._adopt(track, packet)
            self.open_picture = True
        if self.gop is not None:
            self.gop_bytes += len(packet)
            if self.gop_bytes > GOP_CACHE_BYTES:
                log.info("live {label}: GOP larger than {n} bytes; not cached until the next IDR",
                         label=self.label, n=GOP_CACHE_BYTES)
                self._drop_gop()
            else:
                self.gop.append((track, packet, ts, offset, start))
        if self.groups or self.udp_groups:
            if video:
                if not self.unsent:
                    self.unsent_seq = _SEQ_TS_SSRC.unpack_from(packet, 2)[0]
                self.unsent += 1
                frame = _FRAME.pack(0x24, 0, len(packet))
                for group in self.groups.values():
                    channel = group.channels.get(track)
                    if channel is not None:
                        group.parts.append(frame if channel == 0 else _FRAME.pack(0x24, channel, len(packet)))
                        group.parts.append(packet)
                        group.packets += 1
                for udp in self.udp_groups.values():
                    udp.hold(track, packet, start)
                if self.unsent >= MAX_PICTURE_PACKETS:
                    self._flush(False)  # a huge picture goes out in pieces, not held whole
            else:
                self._send_now(track, packet)
        for viewer in tuple(self.generic):
            viewer.rtp(track, packet, ts, offset, start)
        if video and packet[1] & 0x80 and self.open_picture:
            self._flush(True)

    def _flush(self, end: bool) -> None:
        """The open picture (or, *end* False, its packets so far) to every grouped TCP viewer, as one
        buffer: one write each (DirectWriter) instead of one per packet per viewer."""
        if end:
            self.open_picture = False
        self.unsent = 0
        for udp in self.udp_groups.values():
            udp.flush(self.video_track)
        first_unsent = self.unsent_seq
        video = self.video_track
        for group in tuple(self.groups.values()):
            if not group.parts or video is None:
                continue
            data = b"".join(group.parts)
            packets = group.packets
            group.parts, group.packets = [], 0
            for viewer in group.deliver(data, video, packets, end):
                self._demote(viewer, {video: first_unsent})
        if end and self.joining:
            joining, self.joining = self.joining, []
            for viewer in joining:
                self._join(viewer)

    def _discard_picture(self) -> None:
        """The upstream is gone in the middle of a picture: the grouped viewers never get the cut
        picture (a decoder would show its missing part), and its numbers are given again, so they
        see no hole.  (Viewers fed packet by packet have their own numbers, and got what came.)"""
        self.open_picture = False
        for group in self.groups.values():
            group.parts, group.packets = [], 0
        for udp in self.udp_groups.values():
            udp.discard()
        if self.unsent and self.numbering is not None and self.video_track is not None:
            self.numbering.seq[self.video_track] = self.unsent_seq
        self.unsent = 0

    def _send_now(self, track: int, packet: bytes) -> None:
        """A packet of another track (audio) to every grouped viewer that SET it UP, at once."""
        for udp in self.udp_groups.values():
            udp.send(track, packet)
        for group in tuple(self.groups.values()):
            channel = group.channels.get(track)
            if channel is None:
                continue
            framed = _FRAME.pack(0x24, channel, len(packet)) + packet
            slow = group.deliver(framed, track, 1, False)
            if slow:
                unsent = {track: _SEQ_TS_SSRC.unpack_from(packet, 2)[0]}
                if self.unsent and self.video_track is not None:
                    unsent[self.video_track] = self.unsent_seq
                for viewer in slow:
                    self._demote(viewer, unsent)

    def _demote(self, viewer: ViewerStream, unsent: dict[int, int]) -> None:
        """A grouped viewer that cannot take a packet: it goes on packet by packet with its own
        sequence numbers, from the first one it did not get, so its stream has no hole; it skips to
        the next IDR as every slow viewer does (module docstring).  SSRC and timestamps stay the hub's."""
        self._ungroup(viewer)
        assert self.numbering is not None
        viewer.seq = [(seq + delta) & 0xFFFF for seq, delta in zip(self.numbering.seq, viewer.delta, strict=True)]
        for track, seq in unsent.items():
            viewer.seq[track] = (seq + viewer.delta[track]) & 0xFFFF
        viewer.delta = [0] * len(viewer.delta)
        viewer.fast = False
        viewer.waiting = True
        viewer.in_picture = False
        viewer.frames_dropped += 1
        self.generic[viewer] = None
        self.demotions += 1

    def _adopt(self, track: int, packet: bytes) -> None:
        """At a key picture: the RTSP viewers going packet by packet that could share (they missed
        pictures, played again after PAUSE, or found no GOP to start on) and can take this picture
        join their group, with their own sequence numbers as a shift."""
        assert self.numbering is not None
        for viewer in tuple(self.generic):
            if not (viewer.shared and viewer.can_share and viewer.channels and not viewer.udp_out
                    and viewer.write is not None and not viewer.sink.blocked()):
                continue
            if viewer._batch:
                viewer._flush()  # the end of a picture that came without a marker
            nxt = list(self.numbering.seq)
            nxt[track] = _SEQ_TS_SSRC.unpack_from(packet, 2)[0]  # this packet is its next one
            viewer.delta = [(own - hub) & 0xFFFF for own, hub in zip(viewer.seq, nxt, strict=True)]
            del self.generic[viewer]
            viewer.fast = viewer.started = True
            viewer.waiting = viewer.in_picture = False
            self._tcp_group(viewer).add(viewer)
            self.adoptions += 1

    def _ungroup(self, viewer: ViewerStream) -> None:
        group = viewer.home
        if group is not None:
            group.remove(viewer)
            if not group.viewers and not group.shifted:
                self.groups = {k: g for k, g in self.groups.items() if g is not group}
                self.udp_groups = {k: g for k, g in self.udp_groups.items() if g is not group}

    def _join(self, viewer: ViewerStream) -> None:
        """A prepared viewer (``prepare``) joins the shared buffers: the cached GOP first, in one write."""
        if viewer not in self.viewers:
            return
        packets = [p for p in (self.gop or ()) if p[0] in viewer.tracks]
        if not self._gop_matches(viewer, packets):
            # The GOP the PLAY answer announced is gone: own numbering from the announced
            # sequence numbers, starting at the next IDR, so the viewer still sees no hole.
            self.generic[viewer] = None
            return
        viewer.fast = viewer.started = True
        viewer.waiting = False
        viewer.frames += sum(1 for p in packets if p[0] == self.video_track and p[4])
        viewer.packets += len(packets)
        if viewer.udp_out:
            for track, packet, _ts, _offset, _start in packets:
                out = viewer.udp_out.get(track)
                if out is not None:
                    out.send(packet)
            tracks = frozenset(viewer.udp_out)
            udp = self.udp_groups.get(tracks)
            if udp is None:
                udp = self.udp_groups[tracks] = _UdpGroup()
            udp.add(viewer)
            return
        if viewer.write is not None and packets:
            viewer.write(b"".join(b"".join((_FRAME.pack(0x24, viewer.channels[p[0]], len(p[1])), p[1]))
                                  for p in packets))
        self._tcp_group(viewer).add(viewer)

    def _tcp_group(self, viewer: ViewerStream) -> _Group:
        """The group of the TCP viewers with *viewer*'s interleaved channels (made if none)."""
        key = tuple(sorted(viewer.channels.items()))
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group(dict(viewer.channels))
        return group

    def _gop_matches(self, viewer: ViewerStream, packets: list[tuple[int, bytes, int, int, bool]]) -> bool:
        """Whether the cached GOP still begins where the viewer's RTP-Info said it would."""
        first: dict[int, int] = {}
        for track, packet, _ts, _offset, _start in packets:
            first.setdefault(track, _SEQ_TS_SSRC.unpack_from(packet, 2)[0])
        assert self.numbering is not None
        return bool(packets) and all(first.get(t, self.numbering.seq[t]) == viewer.seq[t] for t in viewer.tracks)

    def _drop_gop(self) -> None:
        self.gop, self.gop_bytes = None, 0

    def _rtcp(self, track: int, data: bytes) -> None:
        if self.recovering or self.numbering is None:
            return  # a path being tried; its reports would not match the numbering yet
        report = self.numbering.report(track, data)
        if report is None:
            return
        self.reports[track] = report
        for viewer in tuple(self.viewers):
            viewer.rtcp(track, report)

    # -- losing the upstream, and getting it back

    def _watch(self) -> None:
        """A camera that keeps the RTSP connection but sends nothing counts as lost too."""
        self._unwatch()
        if self.media_timeout > 0:
            self._watched_packets = -1
            self._watch_call = self.reactor.callLater(self.media_timeout, self._check_media)

    def _unwatch(self) -> None:
        if self._watch_call is not None and self._watch_call.active():
            self._watch_call.cancel()
        self._watch_call = None

    def _check_media(self) -> None:
        self._watch_call = None
        upstream = self.upstream
        if upstream is None or upstream.closed:
            return
        if upstream.packets == self._watched_packets:
            upstream.close()
            self._lost(f"no media for {self.media_timeout:g} s")
            return
        self._watched_packets = upstream.packets
        self._watch_call = self.reactor.callLater(self.media_timeout, self._check_media)

    def _lost(self, reason: str) -> None:
        path = self.upstream.path if self.upstream is not None else "?"
        self.last_stop_reason = f"upstream lost: {reason}"
        self.upstream = None
        self.stops += 1
        self._unwatch()
        self._discard_picture()
        self._drop_gop()
        if self.viewers and self.recover_timeout > 0 and self.account is not None and self.starting is None:
            log.warn("live {label}: upstream on path {path} lost ({reason}); getting it back for {n} viewers "
                     "(up to {t:g} s)", label=self.label, path=path, reason=reason, n=len(self.viewers),
                     t=self.recover_timeout)
            self.starting = []
            defer.Deferred.fromCoroutine(self._recover(self.account, reason))
            return
        log.warn("live {label}: upstream on path {path} lost ({reason}); {n} viewers disconnected",
                 label=self.label, path=path, reason=reason, n=len(self.viewers))
        self._disconnect(reason)

    async def _recover(self, account: str, reason: str) -> None:
        """§15 again until the camera is back, ``recover_timeout`` passes, or no viewer is left."""
        generation = self._generation
        before = self.description  # what the viewers' SDP says
        self.recovering = True
        lost_at = self.reactor.seconds()
        deadline = lost_at + self.recover_timeout
        tries = 0
        why = reason
        description: SessionDescription | None = None
        try:
            while self.viewers and generation == self._generation:
                tries += 1
                try:
                    description = await self._start(account)
                except NoPath as e:
                    why = str(e)
                    log.info("live {label}: recovery attempt {k} failed: {why}", label=self.label, k=tries, why=why)
                else:
                    break
                remaining = deadline - self.reactor.seconds()
                if remaining <= 0:
                    break
                wait = min(RECOVER_BACKOFF[min(tries, len(RECOVER_BACKOFF)) - 1], remaining)
                self._backoff = deferLater(self.reactor, wait, lambda: None)
                try:
                    await self._backoff
                except defer.CancelledError:
                    break
                finally:
                    self._backoff = None
        except Exception as e:  # a bug, not a camera: log it whole and let the viewers go
            log.failure("live {label}: recovery failed", label=self.label)
            why, description = f"recovery failed: {e}", None
        finally:
            self.recovering = False
        gap = self.reactor.seconds() - lost_at
        if description is not None and generation != self._generation:
            self.stop("stopped while recovering")  # the new upstream came back after stop(): close it
            return
        if description is not None and not self.viewers:
            log.info("live {label}: upstream back on path {path} after {s:.1f} s, but no viewer is left",
                     label=self.label, path=self.upstream.path if self.upstream else "?", s=gap)
            self._settle(description)
            self._schedule_linger()
            return
        if description is not None and before is not None and not same_streams(before, description):
            self.last_recovery = {"ok": False, "tries": tries, "seconds": round(gap, 3),
                                  "reason": "the camera came back with other streams (tracks or payload types)"}
            self._settle(NoPath(self.attempts))
            self.stop(self.last_recovery["reason"])
            return
        if description is None:
            self.last_recovery = {"ok": False, "tries": tries, "seconds": round(gap, 3), "reason": why}
            self._settle(NoPath(self.attempts))
            if generation == self._generation:
                log.warn("live {label}: upstream not back after {s:.1f} s and {k} tries ({why}); "
                         "{n} viewers disconnected", label=self.label, s=gap, k=tries, why=why, n=len(self.viewers))
                self._disconnect(f"camera stream lost ({reason}) and not back: {why}")
            else:
                self._idle()
            return
        self.recoveries += 1
        self.last_recovery = {"ok": True, "tries": tries, "seconds": round(gap, 3), "reason": reason,
                              "path": self.upstream.path if self.upstream else None}
        log.info("live {label}: upstream back on path {path} after {s:.2f} s ({k} tries); {n} viewers go on",
                 label=self.label, path=self.upstream.path if self.upstream else "?", s=gap, k=tries,
                 n=len(self.viewers))
        assert self.numbering is not None
        self.numbering.rebase(gap)
        for viewer in tuple(self.viewers):
            viewer.resync(description)
        self._settle(description)
        held, self.held = self.held or [], None
        for packet in held:  # the new session from its first key picture, numbered on
            self._take(*packet)

    def _disconnect(self, reason: str) -> None:
        self._drop_gop()
        for viewer in tuple(self.viewers):
            viewer.sink.upstream_lost(reason)
        self.viewers.clear()
        self.generic.clear()
        self.groups.clear()
        self.udp_groups.clear()
        self.joining.clear()
        self.open_picture = False
        self._idle()

    # -- viewers

    def prepare(self, viewer: ViewerStream) -> None:
        """Before an RTSP viewer's first PLAY answer: it takes the hub's numbering.

        Its SSRC and timestamps become the hub's (:class:`Numbering`), and ``viewer.seq`` and
        ``viewer.rtptime`` say where its part of each track begins, for RTP-Info: the first
        packet of the cached GOP it will be given, or the hub's next one.  One that can be
        served from the shared buffers (``can_share``) and finds a GOP to start on is served
        from them when it is added; any other goes packet by packet (``generic``), from the
        announced sequence numbers on, so in either case the first packet it gets is the one
        RTP-Info announced.
        """
        numbering = self.numbering
        if numbering is None:
            return
        viewer.shared = True
        viewer.ssrc = list(numbering.ssrc)
        viewer.ts_offset = [0] * len(numbering.ssrc)
        viewer.seq = list(numbering.seq)
        viewer.rtptime = {}
        if viewer.can_share and self.gop and not self.recovering:
            for track, packet, ts, _offset, _start in self.gop:
                if track in viewer.tracks and track not in viewer.rtptime:
                    viewer.seq[track] = _SEQ_TS_SSRC.unpack_from(packet, 2)[0]
                    viewer.rtptime[track] = ts

    def add(self, viewer: ViewerStream) -> None:
        """A viewer that has been answered PLAY: it gets the cached GOP now, then the live packets.

        A prepared viewer that can share is served from the shared buffers (at once, or after
        the picture being received, so that it gets whole pictures only); the others packet
        by packet.
        """
        viewer.forward_bye = False  # the viewer outlives the camera session (recovery)
        self.viewers.add(viewer)
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.cancel()
        self._linger_call = None
        if viewer.shared and viewer.can_share and viewer.rtptime:
            self.gop_replays += 1
            if self.open_picture:
                self.joining.append(viewer)
            else:
                self._join(viewer)
        else:
            self.generic[viewer] = None
            if self.gop and not viewer.started:
                # (Not to a viewer that played before, PAUSE then PLAY: the cached GOP may begin
                # before what it was last sent, and its time must not go back.  It starts again at
                # the next key picture.)
                self.gop_replays += 1
                viewer.replay(tuple(self.gop))
        if viewer.replay_reports:
            for track, report in tuple(self.reports.items()):
                viewer.rtcp(track, report)

    def remove(self, viewer: ViewerStream) -> None:
        self.viewers.discard(viewer)
        self.generic.pop(viewer, None)
        if viewer in self.joining:
            self.joining.remove(viewer)
        if viewer.fast and self.numbering is not None:
            # Where its own numbering goes on if it plays again (PAUSE, then PLAY): after the
            # last packet it was sent.
            viewer.seq = list(self.numbering.seq)
            if self.unsent and self.video_track is not None:
                viewer.seq[self.video_track] = self.unsent_seq
            viewer.seq = [(seq + delta) & 0xFFFF for seq, delta in zip(viewer.seq, viewer.delta, strict=True)]
            viewer.delta = [0] * len(viewer.delta)
        self._ungroup(viewer)
        viewer.fast = False
        viewer.rtptime = {}
        self._schedule_linger()

    def _schedule_linger(self) -> None:
        if self.viewers or not self.running:
            return
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.reset(self.linger)
            return
        self._linger_call = self.reactor.callLater(self.linger, self._linger_over)

    def _linger_over(self) -> None:
        self._linger_call = None
        if not self.viewers and self.running:
            self.stop(f"no viewer for {self.linger:g} s")

    def stop(self, reason: str) -> None:
        self._generation += 1
        if self._backoff is not None:
            self._backoff.cancel()
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.cancel()
        self._linger_call = None
        self._unwatch()
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            log.info("live {label}: upstream on path {path} stopped: {reason}", label=self.label,
                     path=upstream.path, reason=reason)
            self.stops += 1
            self.last_stop_reason = reason
            upstream.close()
        self._disconnect(reason)

    def _idle(self) -> None:
        if self.on_idle is not None:
            self.on_idle(self)

    def status(self) -> dict[str, Any]:
        upstream = self.upstream
        return {
            "stream": self.label, "kind": "live", "key": list(self.key), "state": self.state,
            "running": self.running, "recovering": self.recovering,
            "path": upstream.path if upstream is not None else None,
            "upstream_packets": upstream.packets if upstream is not None else 0,
            "upstream_bytes": upstream.bytes if upstream is not None else 0,
            "viewers": [v.stats() for v in self.viewers], "starts": self.starts, "stops": self.stops,
            "recoveries": self.recoveries, "last_recovery": self.last_recovery,
            "gop_cache": {"packets": len(self.gop or ()), "bytes": self.gop_bytes, "replays": self.gop_replays},
            "shared": {"tcp_groups": len(self.groups), "tcp_viewers": sum(len(g.viewers) + len(g.shifted) for g in self.groups.values()),
                       "tcp_shifted": sum(len(g.shifted) for g in self.groups.values()),
                       "udp_viewers": sum(len(g.viewers) for g in self.udp_groups.values()), "per_packet_viewers": len(self.generic),
                       "demotions": self.demotions, "adoptions": self.adoptions},
            "last_stop_reason": self.last_stop_reason,
            "attempts": [a.as_dict() for a in self.attempts], "attempts_summary": summarize(self.attempts),
        }


def same_streams(old: SessionDescription, new: SessionDescription) -> bool:
    """Whether viewers set up from *old*'s SDP can be fed *new*'s packets unchanged."""
    return [(m.kind, m.payload_type, m.encoding.upper(), m.clock_rate) for m in old.media] == \
        [(m.kind, m.payload_type, m.encoding.upper(), m.clock_rate) for m in new.media]
