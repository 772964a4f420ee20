"""A minimal MPEG-TS muxer (ISO/IEC 13818-1) for one H.264 stream, whose state outlives a file.  Pure.

Why our own and not PyAV's (which :mod:`globaleye.sim.media.recording` uses for the
generated 72H files): the simulated camera cuts its live stream into 5-minute files
(§7.1.1) that must play alone *and* follow each other without a gap.  One
:class:`TsMuxer` writes every file of a channel, so the continuity counters and the
PTS/DTS/PCR carry on from one file to the next: two consecutive files concatenated are
byte for byte one continuous transport stream.  A libavformat container restarts its
counters (and offsets its clock) with every file.  The stream is simple enough to need
no buffering model: baseline H.264 without B-frames (PTS = DTS), one program, the PCR
on the video PID a fixed 100 ms ahead of the decoding time, PAT and PMT before every IDR.

No I/O and no Twisted: bytes out, the caller writes them (in a worker thread).
"""

from __future__ import annotations

from collections.abc import Iterable

PACKET_SIZE = 188
PAT_PID = 0x0000
PMT_PID = 0x1000
VIDEO_PID = 0x0100
STREAM_TYPE_H264 = 0x1B
TS_CLOCK = 90000
PTS_WRAP = 1 << 33
#: The PCR runs this far ahead of the DTS, the decoder's buffer (100 ms).
PCR_LEAD = 9000
#: An access unit delimiter (primary_pic_type 7: any slice), which H.264 in MPEG-2 TS requires
#: at the start of every access unit (ISO/IEC 13818-1 §2.14.1).
AUD = b"\x00\x00\x00\x01\x09\xf0"


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def crc32_mpeg2(data: bytes) -> int:
    """The PSI sections' CRC (polynomial 0x04C11DB7, not reflected, initial all ones)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[((crc >> 24) ^ byte) & 0xFF]
    return crc


def _section(table_id: int, extension: int, body: bytes) -> bytes:
    length = 5 + len(body) + 4  # from after section_length: the 5 header bytes, the body, the CRC
    head = bytes([table_id, 0xB0 | (length >> 8), length & 0xFF, extension >> 8, extension & 0xFF,
                  0xC1, 0x00, 0x00])  # version 0, current_next 1, section 0 of 0
    section = head + body
    return section + crc32_mpeg2(section).to_bytes(4, "big")


PAT_SECTION = _section(0x00, 1, bytes([0x00, 0x01, 0xE0 | (PMT_PID >> 8), PMT_PID & 0xFF]))
PMT_SECTION = _section(0x02, 1, bytes([0xE0 | (VIDEO_PID >> 8), VIDEO_PID & 0xFF, 0xF0, 0x00,
                                       STREAM_TYPE_H264, 0xE0 | (VIDEO_PID >> 8), VIDEO_PID & 0xFF, 0xF0, 0x00]))


def _timestamp(prefix: int, value: int) -> bytes:
    value %= PTS_WRAP
    return bytes([(prefix << 4) | ((value >> 29) & 0x0E) | 1, (value >> 22) & 0xFF, ((value >> 14) & 0xFE) | 1,
                  (value >> 7) & 0xFF, ((value << 1) & 0xFE) | 1])


def _pcr(value: int) -> bytes:
    base = value % PTS_WRAP
    return bytes([(base >> 25) & 0xFF, (base >> 17) & 0xFF, (base >> 9) & 0xFF, (base >> 1) & 0xFF,
                  ((base & 1) << 7) | 0x7E, 0x00])


class TsMuxer:
    """Packetizes H.264 access units into TS packets; one per channel, kept from file to file."""

    def __init__(self) -> None:
        self._cc: dict[int, int] = {}

    def _header(self, pid: int, start: bool, adaptation: bool) -> bytes:
        cc = self._cc.get(pid, 0)
        self._cc[pid] = (cc + 1) & 0x0F
        return bytes([0x47, (0x40 if start else 0) | (pid >> 8), pid & 0xFF, (0x30 if adaptation else 0x10) | cc])

    def _psi(self, pid: int, section: bytes) -> bytes:
        payload = b"\x00" + section  # pointer_field 0
        return self._header(pid, True, False) + payload + b"\xff" * (PACKET_SIZE - 4 - len(payload))

    def tables(self) -> bytes:
        """A PAT and a PMT: where a reader (or a file) can start."""
        return self._psi(PAT_PID, PAT_SECTION) + self._psi(PMT_PID, PMT_SECTION)

    def access_unit(self, nals: Iterable[bytes], dts: int, keyframe: bool) -> bytes:
        """One picture (its NAL units without start codes) at *dts* (90 kHz) as TS packets.

        A keyframe is preceded by the PAT and PMT and flagged random access, so a file (or
        a reader joining the stream) can start there.
        """
        es = AUD + b"".join(b"\x00\x00\x00\x01" + n for n in nals)
        pes = (b"\x00\x00\x01\xe0\x00\x00\x80\xc0\x0a" + _timestamp(3, dts) + _timestamp(1, dts) + es)
        out = [self.tables()] if keyframe else []
        # The first packet: an adaptation field with the PCR (and random access on a keyframe).
        field = bytes([0x50 if keyframe else 0x10]) + _pcr(dts - PCR_LEAD)
        room = PACKET_SIZE - 4 - 1 - len(field)
        chunk, pos = pes[:room], min(room, len(pes))
        field += b"\xff" * (room - len(chunk))
        out.append(self._header(VIDEO_PID, True, True) + bytes([len(field)]) + field + chunk)
        while pos < len(pes):
            left = len(pes) - pos
            if left >= PACKET_SIZE - 4:
                out.append(self._header(VIDEO_PID, False, False) + pes[pos:pos + PACKET_SIZE - 4])
                pos += PACKET_SIZE - 4
                continue
            # The last packet: stuffed through an adaptation field (length 0 stuffs one byte).
            stuff = PACKET_SIZE - 4 - left
            field = b"" if stuff == 1 else b"\x00" + b"\xff" * (stuff - 2)
            out.append(self._header(VIDEO_PID, False, True) + bytes([stuff - 1]) + field + pes[pos:])
            pos = len(pes)
        return b"".join(out)
