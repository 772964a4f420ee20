"""Fragmented MP4 (ISO/IEC 14496-12 ISO BMFF, 14496-15 AVC file format) for the browser.  Pure.

Media Source Extensions play "byte stream format" MP4 (W3C ISO BMFF byte stream format):
one *initialization segment* (``ftyp`` + ``moov`` whose sample tables are empty and whose
``mvex`` says that fragments follow), then *media segments* (``moof`` + ``mdat``).  The web
face sends the camera's H.264 untouched in them (issue 11: no transcoding), one fragment per
picture so a browser can show each picture the moment it is whole.

Choices, and why:

* ``avc1`` sample entry, SPS and PPS in its ``avcC``; the samples carry neither SPS/PPS nor
  access unit delimiters (:func:`avc_sample` removes them).  With ``avc1`` the decoder
  configuration is the sample entry's (14496-15 §5.3.3); copies in the samples would only
  cost bytes per IDR, and an AUD means nothing once the container marks sample boundaries.
  A camera that changes its SPS (a new resolution after a 60H setting) gets a new
  initialization segment, which MSE accepts mid-stream (the caller's job, see
  :mod:`globaleye.web.live`).
* Samples are AVCC: each NAL unit behind a 4-byte big-endian length (``lengthSizeMinusOne``
  = 3).
* ``tfhd`` with default-base-is-moof and ``tfdt`` version 1 (64-bit decode time), the form
  MSE implementations and ffmpeg's ``-movflags cmaf`` use; ``trun`` with a data offset and a
  duration, size and flags per sample (sync samples: depends on no other; the rest:
  non-sync).  A composition offset is written only when a sample has one (the cameras of
  this platform send no B-frames, so decode order is presentation order).
* The writer is built from tracks (:class:`Track`) and per-track runs (:class:`Run`), so the
  audio track (AAC-LC transcoded from the camera's G.711, :mod:`globaleye.media.aacenc`) is
  one more sample entry (``mp4a`` with its ``esds``) and one more ``traf`` in the same
  ``moof``: one SourceBuffer takes both (``avc1...,mp4a.40.2``).  Audio samples are sync
  samples (each AAC frame decodes on its own) on the sample rate's timescale.  :func:`init_segment` and
  :func:`media_segment` are the one-video-track shorthands the live view uses.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import attrs

from globaleye.media import rtp
from globaleye.media.h264 import parse_sps

#: 14496-12 §8.8.3.1 sample_flags: sample_depends_on = 2 (an I picture, depends on nothing).
SYNC_FLAGS = 0x02000000
#: sample_depends_on = 1 and sample_is_non_sync_sample = 1.
NON_SYNC_FLAGS = 0x01010000

_UNITY_MATRIX = struct.pack("!9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
_TRUN_DATA_OFFSET = 0x000001
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400
_TRUN_CTS = 0x000800
#: NAL units the container makes redundant in a sample (see the module docstring).
_OUT_OF_SAMPLE = frozenset({rtp.NAL_SPS, rtp.NAL_PPS, rtp.NAL_AUD})


class Fmp4Error(ValueError):
    """Input the writer cannot describe (a missing parameter set, a sample with no data)."""


def box(kind: bytes, *payload: bytes) -> bytes:
    """One ISO BMFF box: 32-bit size, four-character type, payload."""
    body = b"".join(payload)
    return struct.pack("!I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack("!I", (version << 24) | (flags & 0xFFFFFF)), *payload)


@attrs.frozen
class Sample:
    """One access unit: its bytes as stored (AVCC for video), duration in track ticks."""

    data: bytes
    duration: int
    sync: bool
    composition_offset: int = 0


@attrs.frozen
class Track:
    """What a ``trak`` needs: id, handler, timescale, and the sample entry box (``avc1``...)."""

    track_id: int
    handler: bytes  # b"vide" or b"soun"
    timescale: int
    sample_entry: bytes
    width: int = 0
    height: int = 0


@attrs.frozen
class Run:
    """One track's samples in one fragment, from *base_decode_time* (track ticks)."""

    track_id: int
    base_decode_time: int
    samples: Sequence[Sample]


# ---------------------------------------------------------------------- H.264


def codec_string(sps: bytes) -> str:
    """RFC 6381 ``avc1.PPCCLL`` (profile, constraint flags, level), for MSE's isTypeSupported."""
    if len(sps) < 4 or sps[0] & 0x1F != rtp.NAL_SPS:
        raise Fmp4Error("not an SPS")
    return "avc1." + sps[1:4].hex().upper()


def avcc_record(sps: bytes, pps: bytes) -> bytes:
    """AVCDecoderConfigurationRecord (14496-15 §5.3.3.1) with one SPS and one PPS.

    The high-profile extension (chroma format, bit depths) is left out: decoders read those
    from the SPS itself, and the record is complete without it for the 8-bit 4:2:0 streams
    cameras send.
    """
    if len(sps) < 4 or sps[0] & 0x1F != rtp.NAL_SPS or not pps or pps[0] & 0x1F != rtp.NAL_PPS:
        raise Fmp4Error("an SPS and a PPS are needed")
    return (bytes([1, sps[1], sps[2], sps[3], 0xFC | 3, 0xE0 | 1]) + struct.pack("!H", len(sps)) + sps
            + bytes([1]) + struct.pack("!H", len(pps)) + pps)


def avc1_entry(sps: bytes, pps: bytes, width: int, height: int) -> bytes:
    """The visual sample entry (14496-12 §12.1.3) ``avc1`` with its ``avcC``."""
    return box(b"avc1",
               bytes(6), struct.pack("!H", 1),  # reserved, data_reference_index
               bytes(16),  # pre_defined, reserved, pre_defined[3]
               struct.pack("!HHIIIH", width, height, 0x00480000, 0x00480000, 0, 1),  # 72 dpi, frame_count 1
               bytes(32),  # compressorname
               struct.pack("!Hh", 0x0018, -1),  # depth, pre_defined
               box(b"avcC", avcc_record(sps, pps)))


def video_track(sps: bytes, pps: bytes, width: int | None = None, height: int | None = None,
                timescale: int = rtp.H264_CLOCK, track_id: int = 1) -> Track:
    """An H.264 track; the size is read from the SPS unless given."""
    if width is None or height is None:
        facts = parse_sps(sps)
        width, height = facts.width, facts.height
    return Track(track_id, b"vide", timescale, avc1_entry(sps, pps, width, height), width, height)


def avcc(nals: Iterable[bytes]) -> bytes:
    """NAL units, each behind its 4-byte length."""
    return b"".join(struct.pack("!I", len(n)) + n for n in nals if n)


def avc_sample(nals: Iterable[bytes], duration: int) -> Sample:
    """An access unit as an MP4 sample: SPS, PPS and AUD dropped, sync when it holds an IDR."""
    kept = [n for n in nals if n and n[0] & 0x1F not in _OUT_OF_SAMPLE]
    if not kept:
        raise Fmp4Error("an access unit without a picture")
    return Sample(avcc(kept), duration, any(n[0] & 0x1F == rtp.NAL_IDR for n in kept))


def init_segment(sps: bytes, pps: bytes, width: int | None = None, height: int | None = None,
                 timescale: int = rtp.H264_CLOCK) -> bytes:
    """The initialization segment of one H.264 track (track 1)."""
    return init_segment_for([video_track(sps, pps, width, height, timescale)])


def media_segment(sequence_number: int, base_decode_time: int, samples: Sequence[Sample],
                  track_id: int = 1) -> bytes:
    """One fragment of one track (``moof`` + ``mdat``)."""
    return fragment(sequence_number, [Run(track_id, base_decode_time, samples)])


# ---------------------------------------------------------------------- AAC


def _descriptor(tag: int, payload: bytes) -> bytes:
    """An MPEG-4 descriptor (14496-1 §7.2.2.1): tag, size in 7-bit groups (one byte here), payload."""
    if len(payload) > 0x7F:
        raise Fmp4Error("descriptor too long")
    return bytes([tag, len(payload)]) + payload


def esds_box(config: bytes, bit_rate: int = 0, es_id: int = 0) -> bytes:
    """``esds`` (14496-14 §5.6): ES_Descriptor > DecoderConfigDescriptor (audio 14496-3, object
    type 0x40) > DecoderSpecificInfo (the AudioSpecificConfig), and the SLConfigDescriptor."""
    if not config:
        raise Fmp4Error("an AudioSpecificConfig is needed")
    decoder_config = _descriptor(0x04, bytes([0x40, (0x05 << 2) | 1]) + bytes(3)  # AudioStream, bufferSizeDB
                                 + struct.pack("!II", bit_rate, bit_rate) + _descriptor(0x05, config))
    es = _descriptor(0x03, struct.pack("!HB", es_id, 0) + decoder_config + _descriptor(0x06, b"\x02"))
    return full_box(b"esds", 0, 0, es)


def mp4a_entry(config: bytes, sample_rate: int, channels: int = 1, bit_rate: int = 0) -> bytes:
    """The audio sample entry (14496-12 §12.2.3) ``mp4a`` with its ``esds``."""
    if not 0 < sample_rate <= 0xFFFF:
        raise Fmp4Error("sample rate out of range")
    return box(b"mp4a",
               bytes(6), struct.pack("!H", 1),  # reserved, data_reference_index
               bytes(8),  # reserved
               struct.pack("!HHHHI", channels, 16, 0, 0, sample_rate << 16),  # channels, sample size, rate 16.16
               esds_box(config, bit_rate))


def audio_track(config: bytes, sample_rate: int, channels: int = 1, track_id: int = 2, bit_rate: int = 0) -> Track:
    """An AAC track on the sample rate's timescale (one tick per sample)."""
    return Track(track_id, b"soun", sample_rate, mp4a_entry(config, sample_rate, channels, bit_rate))


def aac_sample(frame: bytes, duration: int = 1024) -> Sample:
    """One raw AAC frame (no ADTS header) as a sample; every AAC frame is a sync sample."""
    if not frame:
        raise Fmp4Error("an empty AAC frame")
    return Sample(frame, duration, True)


# ---------------------------------------------------------------------- any tracks


def init_segment_for(tracks: Sequence[Track]) -> bytes:
    """``ftyp`` + ``moov`` (empty sample tables, ``mvex`` with a ``trex`` per track)."""
    if not tracks:
        raise Fmp4Error("no track")
    ftyp = box(b"ftyp", b"iso5", struct.pack("!I", 512), b"iso5", b"iso6", b"mp41")
    mvhd = full_box(b"mvhd", 0, 0,
                    struct.pack("!IIII", 0, 0, 1000, 0),  # creation, modification, timescale, duration
                    struct.pack("!IH", 0x00010000, 0x0100), bytes(10),  # rate 1.0, volume 1.0, reserved
                    _UNITY_MATRIX, bytes(24),  # pre_defined
                    struct.pack("!I", max(t.track_id for t in tracks) + 1))  # next_track_ID
    mvex = box(b"mvex", *(full_box(b"trex", 0, 0, struct.pack("!IIIII", t.track_id, 1, 0, 0, 0)) for t in tracks))
    return ftyp + box(b"moov", mvhd, *(_trak(t) for t in tracks), mvex)


def _trak(track: Track) -> bytes:
    video = track.handler == b"vide"
    tkhd = full_box(b"tkhd", 0, 0x3,  # enabled, in movie
                    struct.pack("!IIIII", 0, 0, track.track_id, 0, 0),  # times, id, reserved, duration
                    bytes(8), struct.pack("!hhhH", 0, 0, 0 if video else 0x0100, 0),  # layer, group, volume
                    _UNITY_MATRIX, struct.pack("!II", track.width << 16, track.height << 16))
    mdhd = full_box(b"mdhd", 0, 0, struct.pack("!IIIIHH", 0, 0, track.timescale, 0, 0x55C4, 0))  # "und"
    name = b"VideoHandler\0" if video else b"SoundHandler\0"
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), track.handler, bytes(12), name)
    media_header = (full_box(b"vmhd", 0, 1, bytes(8)) if video  # graphicsmode, opcolor
                    else full_box(b"smhd", 0, 0, bytes(4)))  # balance, reserved
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack("!I", 1), full_box(b"url ", 0, 1)))
    stbl = box(b"stbl",
               full_box(b"stsd", 0, 0, struct.pack("!I", 1), track.sample_entry),
               full_box(b"stts", 0, 0, bytes(4)),
               full_box(b"stsc", 0, 0, bytes(4)),
               full_box(b"stsz", 0, 0, bytes(8)),  # sample_size 0, sample_count 0
               full_box(b"stco", 0, 0, bytes(4)))
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", media_header, dinf, stbl)))


def fragment(sequence_number: int, runs: Sequence[Run]) -> bytes:
    """``moof`` + ``mdat``: the runs' samples, track after track, in one ``mdat``.

    The ``trun`` data offsets count from the start of the ``moof`` (default-base-is-moof), so
    they are known only once the ``moof`` is: it is laid out twice, the first time to measure.
    """
    if not runs or any(not r.samples for r in runs):
        raise Fmp4Error("a fragment needs samples")
    if any(not s.data for r in runs for s in r.samples):
        raise Fmp4Error("an empty sample")
    offsets = [0] * len(runs)
    moof = _moof(sequence_number, runs, offsets)
    data_start = len(moof) + 8
    for i, run in enumerate(runs):
        offsets[i] = data_start
        data_start += sum(len(s.data) for s in run.samples)
    moof = _moof(sequence_number, runs, offsets)
    payload = b"".join(s.data for r in runs for s in r.samples)
    return moof + struct.pack("!I4s", 8 + len(payload), b"mdat") + payload


def _moof(sequence_number: int, runs: Sequence[Run], offsets: Sequence[int]) -> bytes:
    trafs = []
    for run, offset in zip(runs, offsets, strict=True):
        cts = any(s.composition_offset for s in run.samples)
        flags = _TRUN_DATA_OFFSET | _TRUN_DURATION | _TRUN_SIZE | _TRUN_FLAGS | (_TRUN_CTS if cts else 0)
        entries = b"".join(
            struct.pack("!III", s.duration, len(s.data), SYNC_FLAGS if s.sync else NON_SYNC_FLAGS)
            + (struct.pack("!i", s.composition_offset) if cts else b"")
            for s in run.samples)
        trun = full_box(b"trun", 1 if cts else 0, flags, struct.pack("!Ii", len(run.samples), offset), entries)
        trafs.append(box(b"traf",
                         full_box(b"tfhd", 0, _TFHD_DEFAULT_BASE_IS_MOOF, struct.pack("!I", run.track_id)),
                         full_box(b"tfdt", 1, 0, struct.pack("!Q", run.base_decode_time)),
                         trun))
    return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack("!I", sequence_number & 0xFFFFFFFF)), *trafs)


def with_duration(init: bytes, seconds: float) -> bytes:
    """The init segment with ``mvex/mehd`` (ISO 14496-12 §8.8.2): the whole fragmented file's
    duration, so a downloaded file shows its length before it is read to the end.  The ``mvhd``
    timescale is 1000 (:func:`init_segment`); *seconds* 0 or less: unchanged."""
    if seconds <= 0:
        return init
    return insert_box(init, (b"moov", b"mvex"), full_box(b"mehd", 0, 0, struct.pack("!I", round(seconds * 1000))))


def insert_box(data: bytes, path: tuple[bytes, ...], child: bytes) -> bytes:
    """*child* as the first box inside the box at *path* (each parent's size grown by its length)."""
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from("!I4s", data, offset)
        if size < 8:
            break
        if kind == path[0]:
            body = data[offset + 8:offset + size]
            inner = child + body if len(path) == 1 else insert_box(body, path[1:], child)
            return data[:offset] + struct.pack("!I4s", 8 + len(inner), kind) + inner + data[offset + size:]
        offset += size
    return data
