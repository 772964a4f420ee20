"""H.264 bitstream syntax (ITU-T H.264 §7) as far as the recordings need it.  Pure.

Two jobs, both on the raw bits of NAL units:

* **Read** an SPS and a PPS: picture size (with cropping), the frame_num and
  picture-order-count layout, the entropy coder.  Playback reports the size of what a
  file holds, and the slice writer below needs exactly these fields.
* **Write** a P slice in which every macroblock is skipped (``mb_skip_run`` = the
  whole picture).  A skipped macroblock copies the reference picture with a zero
  motion vector, so such a picture repeats the previous one exactly, in about a dozen
  bytes, with no encoder run.  The simulated recordings (:mod:`globaleye.sim.media.recording`)
  are one x264-encoded IDR per second followed by these: a 5-minute 720p file costs
  300 intra encodes instead of 7,500 full ones (minutes of CPU on a small machine).

Only what a baseline stream from x264 (or any CAVLC encoder) uses is supported:
frame pictures, one slice group, CAVLC.  Anything else raises :class:`H264Error`
rather than producing a stream a decoder would reject.
"""

from __future__ import annotations

import attrs

NAL_SLICE = 1
NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
SLICE_P_ALL = 5  # slice_type 5: P, and every slice of the picture is P

#: profile_idc values whose SPS carries chroma format, bit depths and scaling lists (§7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


class H264Error(ValueError):
    """A parameter set we cannot read, or a stream the skip-slice writer cannot extend."""


def unescape(nal: bytes) -> bytes:
    """RBSP of a NAL unit: the emulation-prevention bytes (00 00 03) removed."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def escape(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes so no 00 00 0x (x ≤ 3) appears in the NAL (§7.4.1)."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


class BitReader:
    """MSB-first reader of an RBSP with the exp-Golomb codes of §9.1."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u(self, bits: int) -> int:
        value = 0
        for _ in range(bits):
            if self.pos >= 8 * len(self.data):
                raise H264Error("read past the end of a NAL unit")
            value = (value << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise H264Error("exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


class BitWriter:
    """MSB-first writer; :meth:`rbsp` adds the stop bit and byte alignment (§7.3.2.11)."""

    def __init__(self) -> None:
        self.value = 0
        self.bits = 0

    def u(self, bits: int, value: int) -> None:
        if value < 0 or value >= 1 << bits:
            raise H264Error(f"{value} does not fit in {bits} bits")
        self.value = (self.value << bits) | value
        self.bits += bits

    def ue(self, value: int) -> None:
        code = value + 1
        length = code.bit_length()
        self.u(2 * length - 1, code)  # length-1 zeros, then the code itself

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        self.u(1, 1)
        pad = -self.bits % 8
        if pad:
            self.u(pad, 0)
        return self.value.to_bytes(self.bits // 8, "big")


@attrs.frozen
class Sps:
    """The fields of a sequence parameter set that playback and the slice writer use."""

    profile_idc: int
    level_idc: int
    sps_id: int
    chroma_format_idc: int
    log2_max_frame_num: int
    poc_type: int
    log2_max_poc_lsb: int  # poc_type 0 only
    delta_pic_order_always_zero: bool  # poc_type 1 only
    max_num_ref_frames: int
    width_mbs: int
    height_map_units: int
    frame_mbs_only: bool
    crop: tuple[int, int, int, int]  # left, right, top, bottom, in crop units

    @property
    def mbs(self) -> int:
        """PicSizeInMbs of a frame picture."""
        return self.width_mbs * self.height_map_units * (2 - int(self.frame_mbs_only))

    @property
    def width(self) -> int:
        sub_w = 2 if self.chroma_format_idc in (1, 2) else 1
        return 16 * self.width_mbs - sub_w * (self.crop[0] + self.crop[1])

    @property
    def height(self) -> int:
        sub_h = 2 if self.chroma_format_idc == 1 else 1
        frame_h = 16 * self.height_map_units * (2 - int(self.frame_mbs_only))
        return frame_h - sub_h * (2 - int(self.frame_mbs_only)) * (self.crop[2] + self.crop[3])


@attrs.frozen
class Pps:
    pps_id: int
    sps_id: int
    cabac: bool
    bottom_field_pic_order_present: bool
    slice_groups: int
    num_ref_idx_l0_active: int
    weighted_pred: bool
    deblocking_filter_control_present: bool
    redundant_pic_cnt_present: bool


def _skip_scaling_list(r: BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + r.se() + 256) % 256
        last = last if nxt == 0 else nxt


def parse_sps(nal: bytes) -> Sps:
    """§7.3.2.1.1, up to the cropping window (VUI is not needed)."""
    if not nal or nal[0] & 0x1F != NAL_SPS:
        raise H264Error("not an SPS")
    r = BitReader(unescape(nal[1:]))
    profile_idc = r.u(8)
    r.u(8)  # constraint flags
    level_idc = r.u(8)
    sps_id = r.ue()
    chroma_format_idc = 1
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            r.u(1)  # separate_colour_plane_flag
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.u(1):
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    log2_max_frame_num = r.ue() + 4
    poc_type = r.ue()
    log2_max_poc_lsb = 0
    always_zero = False
    if poc_type == 0:
        log2_max_poc_lsb = r.ue() + 4
    elif poc_type == 1:
        always_zero = bool(r.u(1))
        r.se()  # offset_for_non_ref_pic
        r.se()  # offset_for_top_to_bottom_field
        for _ in range(r.ue()):
            r.se()  # offset_for_ref_frame[i]
    max_num_ref_frames = r.ue()
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = bool(r.u(1))
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if r.u(1):
        crop = (r.ue(), r.ue(), r.ue(), r.ue())
    return Sps(profile_idc, level_idc, sps_id, chroma_format_idc, log2_max_frame_num, poc_type,
               log2_max_poc_lsb, always_zero, max_num_ref_frames, width_mbs, height_map_units,
               frame_mbs_only, crop)


def parse_pps(nal: bytes) -> Pps:
    """§7.3.2.2, up to redundant_pic_cnt_present_flag."""
    if not nal or nal[0] & 0x1F != NAL_PPS:
        raise H264Error("not a PPS")
    r = BitReader(unescape(nal[1:]))
    pps_id = r.ue()
    sps_id = r.ue()
    cabac = bool(r.u(1))
    bottom = bool(r.u(1))
    slice_groups = r.ue() + 1
    if slice_groups > 1:
        return Pps(pps_id, sps_id, cabac, bottom, slice_groups, 1, False, False, False)
    l0 = r.ue() + 1
    r.ue()  # num_ref_idx_l1_default_active_minus1
    weighted_pred = bool(r.u(1))
    r.u(2)  # weighted_bipred_idc
    r.se()  # pic_init_qp_minus26
    r.se()  # pic_init_qs_minus26
    r.se()  # chroma_qp_index_offset
    deblocking = bool(r.u(1))
    r.u(1)  # constrained_intra_pred_flag
    redundant = bool(r.u(1))
    return Pps(pps_id, sps_id, cabac, bottom, slice_groups, l0, weighted_pred, deblocking, redundant)


def check_skip_slices(sps: Sps, pps: Pps) -> None:
    """Raise H264Error unless :func:`skip_slice` can extend a stream with these parameter sets."""
    if pps.cabac:
        raise H264Error("skip slices are written with CAVLC only (baseline); the PPS uses CABAC")
    if not sps.frame_mbs_only:
        raise H264Error("skip slices need frame pictures (frame_mbs_only_flag=1)")
    if pps.slice_groups != 1:
        raise H264Error("skip slices need a single slice group")
    if sps.max_num_ref_frames < 1:
        raise H264Error("the SPS allows no reference frame")
    if pps.sps_id != sps.sps_id:
        raise H264Error("the PPS refers to another SPS")


def skip_slice(sps: Sps, pps: Pps, frame_num: int, poc_lsb: int = 0, nal_ref_idc: int = 2) -> bytes:
    """A P picture (one slice, NAL type 1) whose macroblocks are all P_Skip: a copy of its reference.

    *frame_num* counts reference pictures since the IDR (wrapped here modulo
    MaxFrameNum); for ``pic_order_cnt_type`` 0, *poc_lsb* is the picture's order count
    (wrapped modulo MaxPicOrderCntLsb), for types 1 and 2 the order follows frame_num.
    The picture is a reference picture by default (POC type 2 forbids two
    non-reference pictures in a row).  The result is a NAL unit without start code.
    """
    check_skip_slices(sps, pps)
    w = BitWriter()
    w.ue(0)  # first_mb_in_slice
    w.ue(SLICE_P_ALL)
    w.ue(pps.pps_id)
    w.u(sps.log2_max_frame_num, frame_num % (1 << sps.log2_max_frame_num))
    if sps.poc_type == 0:
        w.u(sps.log2_max_poc_lsb, poc_lsb % (1 << sps.log2_max_poc_lsb))
        if pps.bottom_field_pic_order_present:
            w.se(0)  # delta_pic_order_cnt_bottom
    elif sps.poc_type == 1 and not sps.delta_pic_order_always_zero:
        w.se(0)  # delta_pic_order_cnt[0]
        if pps.bottom_field_pic_order_present:
            w.se(0)  # delta_pic_order_cnt[1]
    if pps.redundant_pic_cnt_present:
        w.ue(0)  # redundant_pic_cnt
    w.u(1, 0)  # num_ref_idx_active_override_flag
    w.u(1, 0)  # ref_pic_list_modification_flag_l0
    if pps.weighted_pred:  # pred_weight_table(): unit weights, no flags set
        w.ue(0)  # luma_log2_weight_denom
        if sps.chroma_format_idc != 0:
            w.ue(0)  # chroma_log2_weight_denom
        for _ in range(pps.num_ref_idx_l0_active):
            w.u(1, 0)  # luma_weight_l0_flag
            if sps.chroma_format_idc != 0:
                w.u(1, 0)  # chroma_weight_l0_flag
    if nal_ref_idc:
        w.u(1, 0)  # adaptive_ref_pic_marking_mode_flag: sliding window
    w.se(0)  # slice_qp_delta
    if pps.deblocking_filter_control_present:
        w.ue(1)  # disable_deblocking_filter_idc: nothing to filter in a copy anyway
    w.ue(sps.mbs)  # slice_data(): mb_skip_run covering the whole picture
    return bytes([(nal_ref_idc & 3) << 5 | NAL_SLICE]) + escape(w.rbsp())
