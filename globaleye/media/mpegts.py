"""MPEG-2 transport stream demultiplexing (ISO/IEC 13818-1) and ADTS (ISO/IEC 13818-7).  Pure.

Just enough to read back what a camera records: 188-byte packets, the PAT and PMT
that name the elementary streams, PES packets with their PTS/DTS, and the ADTS frames
AAC travels in.  No Twisted and no file access: the caller hands in bytes together
with the file offset they were read from, and every :class:`Pes` it gets back says
which bytes of the file it spanned.  That is what lets playback index a file once
and later re-read one GOP with a single positioned read (:mod:`globaleye.media.tsfile`).

Why not PyAV for this: a demuxer of ours can be fed any packet-aligned slice of a
file and tells exactly where each PES began and ended, so a GOP is one ``pread``;
libavformat would have to be opened and re-synchronised for every such slice.
Writing files stays with PyAV (it muxes correctly: PCR, PSI repetition, buffering).
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

PACKET_SIZE = 188
SYNC_BYTE = 0x47
PAT_PID = 0x0000
NULL_PID = 0x1FFF
STREAM_TYPE_AAC_ADTS = 0x0F
STREAM_TYPE_H264 = 0x1B
PTS_WRAP = 1 << 33
TS_CLOCK = 90000

#: ADTS sampling_frequency_index → Hz (ISO/IEC 14496-3 Table 1.18).
SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
AAC_FRAME_SAMPLES = 1024


class TsError(ValueError):
    """Bytes that are not a transport stream we can read."""


@attrs.frozen
class Pes:
    """One reassembled PES packet and the file bytes it came from."""

    pid: int
    start: int  # file offset of the TS packet that began it (payload_unit_start_indicator)
    end: int  # file offset just after its last TS packet
    pts: int | None
    dts: int | None
    data: bytes  # the elementary-stream bytes (PES header removed)
    random_access: bool  # the adaptation field's random_access_indicator on its first packet


def parse_pes_header(data: bytes) -> tuple[int | None, int | None, int]:
    """(PTS, DTS, offset of the payload) of a PES packet (§2.4.3.6); DTS defaults to PTS."""
    if len(data) < 9 or data[0:3] != b"\x00\x00\x01":
        raise TsError("PES packet without start code")
    stream_id = data[3]
    if stream_id in (0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xF2, 0xF8, 0xFF):  # no optional header
        return None, None, 6
    flags = data[7] >> 6
    header_end = 9 + data[8]
    if header_end > len(data):
        raise TsError("truncated PES header")
    pts = dts = None
    if flags & 2:
        pts = _timestamp(data, 9)
        dts = _timestamp(data, 14) if flags == 3 else pts
    return pts, dts, header_end


def _timestamp(data: bytes, i: int) -> int:
    if i + 5 > len(data):
        raise TsError("truncated PES timestamp")
    return (((data[i] >> 1) & 0x07) << 30 | data[i + 1] << 22 | (data[i + 2] >> 1) << 15
            | data[i + 3] << 7 | data[i + 4] >> 1)


def _section(payload: bytes, pusi: bool) -> bytes | None:
    """The PSI section that starts in this packet (pointer_field honoured), if any."""
    if not pusi or not payload:
        return None
    start = 1 + payload[0]
    if start + 3 > len(payload):
        return None
    length = ((payload[start + 1] & 0x0F) << 8) | payload[start + 2]
    section = payload[start:start + 3 + length]
    return section if len(section) == 3 + length else None  # sections spanning packets: not ours


def parse_pat(section: bytes) -> list[int]:
    """PMT PIDs listed in a program association section (program 0, the NIT, skipped)."""
    if section[0] != 0x00:
        return []
    pids = []
    for i in range(8, len(section) - 4, 4):
        program = (section[i] << 8) | section[i + 1]
        if program:
            pids.append(((section[i + 2] & 0x1F) << 8) | section[i + 3])
    return pids


def parse_pmt(section: bytes) -> dict[int, int]:
    """{elementary PID: stream_type} of a program map section (§2.4.4.8)."""
    if section[0] != 0x02 or len(section) < 16:
        return {}
    info_length = ((section[10] & 0x0F) << 8) | section[11]
    i = 12 + info_length
    streams = {}
    while i + 5 <= len(section) - 4:
        stream_type = section[i]
        pid = ((section[i + 1] & 0x1F) << 8) | section[i + 2]
        es_info = ((section[i + 3] & 0x0F) << 8) | section[i + 4]
        streams[pid] = stream_type
        i += 5 + es_info
    return streams


class TsDemuxer:
    """Reassembles the PES packets of a transport stream fed in file order.

    With *streams* given ({PID: stream_type}), only those PIDs are read and no PSI is
    needed (a slice from the middle of a known file).  Without, the PAT and PMT are
    read first and :attr:`streams` fills in.  A PES whose beginning was not fed (the
    slice started inside it) is dropped, never returned half.
    """

    def __init__(self, streams: dict[int, int] | None = None) -> None:
        self.fixed = streams is not None
        self.streams: dict[int, int] = dict(streams or {})
        self.pmt_pids: set[int] = set()
        self._open: dict[int, tuple[int, int, bool, bytearray]] = {}  # pid → (start, last end, RAI, bytes)

    def feed(self, data: bytes | memoryview, offset: int) -> list[Pes]:
        """Packets of *data* (which starts at file offset *offset*, on a packet boundary)."""
        view = memoryview(data)
        done: list[Pes] = []
        whole = len(view) - len(view) % PACKET_SIZE
        for pos in range(0, whole, PACKET_SIZE):
            packet = view[pos:pos + PACKET_SIZE]
            if packet[0] != SYNC_BYTE:
                raise TsError(f"lost sync at offset {offset + pos}")
            pid = ((packet[1] & 0x1F) << 8) | packet[2]
            if pid == NULL_PID or packet[1] & 0x80:  # stuffing, or transport_error_indicator
                continue
            pusi = bool(packet[1] & 0x40)
            control = (packet[3] >> 4) & 3
            start = 4
            random_access = False
            if control & 2:  # adaptation field
                length = packet[4]
                if length:
                    random_access = bool(packet[5] & 0x40)
                start = 5 + length
            if not control & 1 or start >= PACKET_SIZE:
                continue  # no payload
            payload = packet[start:]
            if pid in self.streams:
                self._pes(pid, payload, pusi, random_access, offset + pos, done)
            elif not self.fixed and (pid == PAT_PID or pid in self.pmt_pids):
                self._psi(pid, bytes(payload), pusi)
        return done

    def flush(self, end: int | None = None) -> list[Pes]:
        """Every PES still open, as complete (the caller knows the slice ended at a PES boundary)."""
        done: list[Pes] = []
        for pid in list(self._open):
            pes = self._close(pid, end)
            if pes is not None:
                done.append(pes)
        return done

    def _psi(self, pid: int, payload: bytes, pusi: bool) -> None:
        section = _section(payload, pusi)
        if section is None:
            return
        if pid == PAT_PID:
            self.pmt_pids.update(parse_pat(section))
        else:
            for es_pid, stream_type in parse_pmt(section).items():
                self.streams.setdefault(es_pid, stream_type)

    def _pes(self, pid: int, payload: memoryview, pusi: bool, random_access: bool, at: int,
             done: list[Pes]) -> None:
        if pusi:
            if pid in self._open:
                pes = self._close(pid, None)
                if pes is not None:
                    done.append(pes)
            self._open[pid] = (at, at + PACKET_SIZE, random_access, bytearray(payload))
        elif pid in self._open:
            begin, _, rai, buf = self._open[pid]
            buf += payload
            self._open[pid] = (begin, at + PACKET_SIZE, rai, buf)
        else:
            return  # continuation of a PES that began before this slice
        begin, last, rai, buf = self._open[pid]
        if len(buf) >= 6:
            declared = (buf[4] << 8) | buf[5]
            if declared and len(buf) >= 6 + declared:  # bounded PES (audio): complete now
                del self._open[pid]
                pes = self._make(pid, begin, last, rai, bytes(buf[:6 + declared]))
                if pes is not None:
                    done.append(pes)

    def _close(self, pid: int, end: int | None) -> Pes | None:
        begin, last, rai, buf = self._open.pop(pid)
        return self._make(pid, begin, last if end is None else min(end, last), rai, bytes(buf))

    @staticmethod
    def _make(pid: int, begin: int, end: int, rai: bool, buf: bytes) -> Pes | None:
        try:
            pts, dts, header = parse_pes_header(buf)
        except TsError:
            return None
        return Pes(pid, begin, end, pts, dts, buf[header:], rai)


def unwrap(previous: int | None, value: int) -> int:
    """A 33-bit PTS/DTS made monotonic across the wrap (every 26.5 h), given the previous one."""
    if previous is None:
        return value
    base = previous - previous % PTS_WRAP
    candidates = (base + value - PTS_WRAP, base + value, base + value + PTS_WRAP)
    return min(candidates, key=lambda c: abs(c - previous))


# ---------------------------------------------------------------------- ADTS (AAC)


@attrs.frozen
class AdtsFrame:
    """One ADTS frame: the raw AAC access unit and what its header says about it."""

    object_type: int  # MPEG-4 audioObjectType (profile + 1): 2 = AAC LC
    sample_rate: int
    channels: int
    raw: bytes  # raw_data_block, what RFC 3640 carries

    @property
    def audio_specific_config(self) -> bytes:
        """ISO/IEC 14496-3 §1.6.2.1 AudioSpecificConfig for this stream (SDP ``config=``)."""
        index = SAMPLE_RATES.index(self.sample_rate)
        bits = (self.object_type << 11) | (index << 7) | (self.channels << 3)  # GASpecificConfig: 0 0 0
        return bits.to_bytes(2, "big")


def adts_frames(data: bytes) -> Iterator[AdtsFrame]:
    """The ADTS frames of a PES payload, one raw data block each; TsError on anything else."""
    i = 0
    while i < len(data):
        if i + 7 > len(data) or data[i] != 0xFF or data[i + 1] & 0xF6 != 0xF0:
            raise TsError(f"no ADTS sync word at {i}")
        protection_absent = data[i + 1] & 1
        profile = data[i + 2] >> 6
        rate_index = (data[i + 2] >> 2) & 0x0F
        channels = ((data[i + 2] & 1) << 2) | (data[i + 3] >> 6)
        length = ((data[i + 3] & 3) << 11) | (data[i + 4] << 3) | (data[i + 5] >> 5)
        blocks = (data[i + 6] & 3) + 1
        header = 7 if protection_absent else 9
        if length < header or i + length > len(data):
            raise TsError("truncated ADTS frame")
        if blocks != 1:
            raise TsError("ADTS frames with several raw data blocks are not supported")
        if rate_index >= len(SAMPLE_RATES) or channels == 0:
            raise TsError("ADTS header with an unsupported rate or channel layout")
        yield AdtsFrame(profile + 1, SAMPLE_RATES[rate_index], channels, bytes(data[i + header:i + length]))
        i += length
