"""Consecutive MPEG-TS recordings (§7.1.1's 5-minute files) remuxed into ONE fragmented MP4 timeline.

Pure: bytes in, bytes out, no I/O, no Twisted.  The web face (:mod:`globaleye.web.api_cloud`) reads
the cloud store in bounded pieces and feeds them here, file after file; out come the initialization
segment (once, at the first IDR's SPS/PPS) and ``moof``+``mdat`` fragments of the H.264 passed
through untouched (no transcoding).  Memory: one demuxer's open PES per file and one picture held
back until the next tells its duration.

**Time.**  The MP4 timeline's 0 is the caller's *origin* (the range's start); a file's pictures are
placed at the file's start (its §7.1.1 name) plus their DTS from the file's first one.  Two files
that follow each other (the next one starts within :data:`JOIN_TICKS` of where the last picture of
the previous ended) are joined exactly — the name's second resolution must not open a hole or an
overlap at each boundary, which a browser's Media Source would stall on; a real gap (the camera was
off) stays a gap, so a position on the timeline is always ``origin + seconds``.

**Seek and end.**  Output begins at the first IDR at or after *start* (ticks from the origin) and stops
before the first picture at or after *end*.  Audio is not carried (the camera's AAC is dropped).
"""

from __future__ import annotations

import attrs

from globaleye.media import fmp4, mpegts, rtp

CLOCK = mpegts.TS_CLOCK
#: A file starting within this of the previous file's end continues it exactly (the §7.1.1 names have
#: 1-second resolution; the camera's clock and its segment cut add a little).
JOIN_TICKS = 2 * CLOCK
#: A picture's duration when nothing tells it (the last of a stream): 25 fps.
DEFAULT_DURATION = CLOCK // 25


@attrs.define
class _Held:
    time: int  # decode time on the output timeline, 90 kHz
    nals: list[bytes]
    cto: int


class TsRemuxer:
    """Feed :meth:`begin_file`, :meth:`feed` (repeatedly), :meth:`end_file` per file, then :meth:`finish`;
    each returns the MP4 bytes now ready (possibly empty)."""

    def __init__(self, start: int = 0, end: int | None = None, duration: float | None = None) -> None:
        self.start = max(0, start)
        self.end = end
        #: The whole timeline's length, written into the initialization segment (``mehd``) if given.
        self.duration = duration
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        self.codec: str | None = None
        self.started = False  # the first IDR went out (with the initialization segment)
        self.done = False  # past *end*: the caller may stop reading
        self.first_time: int | None = None  # decode time of the first picture given out
        self.pictures = 0
        self._sequence = 0
        self._held: _Held | None = None
        self._last_duration = DEFAULT_DURATION
        self._next_time: int | None = None  # where the last picture given out ended
        self._demuxer: mpegts.TsDemuxer | None = None
        self._base = 0
        self._first_dts: int | None = None
        self._last_dts: int | None = None

    # Files -------------------------------------------------------------------------------------

    def begin_file(self, start_ticks: int) -> bytes:
        """A new file that starts *start_ticks* after the origin (from its name)."""
        out = self.end_file() if self._demuxer is not None else b""
        if self._next_time is not None and abs(start_ticks - self._next_time) <= JOIN_TICKS:
            start_ticks = self._next_time  # it continues the previous one: no hole, no overlap
        self._base = start_ticks
        self._demuxer = mpegts.TsDemuxer()
        self._first_dts = self._last_dts = None
        return out

    def feed(self, data: bytes, offset: int) -> bytes:
        """The file's bytes from *offset* (a multiple of 188; pieces in order)."""
        if self._demuxer is None:
            raise ValueError("begin_file first")
        return self._pieces(self._demuxer.feed(data, offset))

    def end_file(self) -> bytes:
        """The file is over: its last picture goes out (with the last known duration)."""
        out = b""
        if self._demuxer is not None:
            out = self._pieces(self._demuxer.flush())
            self._demuxer = None
        return out + self._release(None)

    def finish(self) -> bytes:
        return self.end_file()

    # Pictures ----------------------------------------------------------------------------------

    def _pieces(self, packets: list[mpegts.Pes]) -> bytes:
        assert self._demuxer is not None
        video = {pid for pid, kind in self._demuxer.streams.items() if kind == mpegts.STREAM_TYPE_H264}
        samples: list[fmp4.Sample] = []
        out = b""
        first_time: int | None = None
        run_end = 0
        for pes in packets:
            if pes.pid not in video or self.done:
                continue
            raw = pes.dts if pes.dts is not None else pes.pts
            if raw is None:
                continue
            dts = mpegts.unwrap(self._last_dts, raw)
            self._last_dts = dts
            if self._first_dts is None:
                self._first_dts = dts
            time = self._base + dts - self._first_dts
            cto = (mpegts.unwrap(dts, pes.pts) - dts) if pes.pts is not None else 0
            nals = rtp.split_annexb(pes.data)
            if not nals:
                continue
            if self.end is not None and time >= self.end:
                self.done = True
                break
            keyframe = any(rtp.nal_type(n) == rtp.NAL_IDR for n in nals)
            for nal in nals:
                if rtp.nal_type(nal) == rtp.NAL_SPS:
                    self.sps = nal
                elif rtp.nal_type(nal) == rtp.NAL_PPS:
                    self.pps = nal
            if not self.started:
                if not keyframe or time < self.start or self.sps is None or self.pps is None:
                    continue
                self.started = True
                self.first_time = time
                self.codec = fmp4.codec_string(self.sps)
                out += self._init()
            held = self._held
            if held is not None and time <= held.time:
                continue  # not after the one held: a damaged or foreign stamp, dropped
            sample = self._sample(held, time)
            if sample is not None:
                assert held is not None
                if samples and held.time != run_end:  # a run's samples follow each other: a new fragment
                    assert first_time is not None
                    out += self._fragment(first_time, samples)
                    samples = []
                if not samples:
                    first_time = held.time
                samples.append(sample)
                run_end = held.time + sample.duration
            self._held = _Held(time, nals, max(0, cto))
        if samples:
            assert first_time is not None
            out += self._fragment(first_time, samples)
        if self.done:
            out += self._release(None)
        return out

    def _sample(self, held: _Held | None, next_time: int | None) -> fmp4.Sample | None:
        if held is None:
            return None
        duration = next_time - held.time if next_time is not None else self._last_duration
        if next_time is not None and duration > JOIN_TICKS:  # a gap: this picture lasts as the last did
            duration = self._last_duration
        self._last_duration = duration
        self._next_time = held.time + duration
        try:
            sample = fmp4.avc_sample(held.nals, duration)
        except fmp4.Fmp4Error:
            return None
        self.pictures += 1
        return attrs.evolve(sample, composition_offset=held.cto)

    def _release(self, next_time: int | None) -> bytes:
        held, self._held = self._held, None
        sample = self._sample(held, next_time)
        if sample is None or held is None:
            return b""
        return self._fragment(held.time, [sample])

    def _fragment(self, base: int, samples: list[fmp4.Sample]) -> bytes:
        self._sequence += 1
        return fmp4.fragment(self._sequence, [fmp4.Run(1, base, samples)])

    def _init(self) -> bytes:
        assert self.sps is not None and self.pps is not None
        init = fmp4.init_segment(self.sps, self.pps, timescale=CLOCK)
        # The length known before the file is read to its end (as web/playback.py does for a camera's recording).
        return fmp4.with_duration(init, self.duration) if self.duration else init


__all__ = ["CLOCK", "DEFAULT_DURATION", "JOIN_TICKS", "TsRemuxer"]
