"""The simulated cameras' test pattern and tone, shared by the live loops and the recordings.

numpy only (no encoder): :mod:`globaleye.sim.media.source` encodes the live loops from
these pictures, :mod:`globaleye.sim.media.recording` the recording files (§7.1), so
neither imports the other for them.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from globaleye.media import rtp

MAIN_SIZE = (1280, 720)
SUB_SIZE = (352, 288)  # CIF
DEFAULT_FPS = 25
DEFAULT_LOOP_SECONDS = 4


def _seven_segment(digit: str) -> str:
    return {
        "0": "abcdef", "1": "bc", "2": "abged", "3": "abgcd", "4": "fgbc", "5": "afgcd",
        "6": "afgedc", "7": "abc", "8": "abcdefg", "9": "abcdfg",
    }.get(digit, "")


def draw_digits(plane: np.ndarray, text: str, x: int, y: int, height: int, value: int = 235) -> None:
    """Seven-segment digits (and ':' / '.') into a luma plane, in place."""
    w = height // 2
    t = max(2, height // 10)
    h2 = height // 2
    for ch in text:
        if ch in ":.":
            if ch == ":":
                plane[y + h2 // 2:y + h2 // 2 + t, x:x + t] = value
            plane[y + height - h2 // 2 - t:y + height - h2 // 2, x:x + t] = value
            x += 3 * t
            continue
        segs = {
            "a": (y, y + t, x, x + w), "d": (y + height - t, y + height, x, x + w),
            "g": (y + h2 - t // 2, y + h2 - t // 2 + t, x, x + w),
            "f": (y, y + h2, x, x + t), "b": (y, y + h2, x + w - t, x + w),
            "e": (y + h2, y + height, x, x + t), "c": (y + h2, y + height, x + w - t, x + w),
        }
        for s in _seven_segment(ch):
            y0, y1, x0, x1 = segs[s]
            plane[y0:y1, x0:x1] = value
        x += w + 2 * t


@functools.lru_cache(maxsize=8)
def diagonal_gradient(w: int, h: int) -> np.ndarray:
    """0..255 from the top-left to the bottom-right corner (cached: every picture starts from it)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx + yy) * 256 // (w + h)


def tone_samples(first: int, count: int, sample_rate: int = rtp.PCMA_CLOCK, frequency: float = 1000.0,
                 level: float = 0.25) -> np.ndarray:
    """Samples *first*..*first+count* (int16) of the camera's tone: a sine that beeps twice a second.

    Indexed by sample number so that a long recording can be made piece by piece and
    still be one continuous tone.
    """
    t = np.arange(first, first + count) / sample_rate
    envelope = (np.floor(t * 2) % 2 == 0).astype(float) * 0.9 + 0.1
    return (np.sin(2 * math.pi * frequency * t) * envelope * level * 32767).astype(np.int16)


def tone_pcma(seconds: float, frequency: float = 1000.0, level: float = 0.25,
              sample_rate: int = rtp.PCMA_CLOCK) -> bytes:
    """A sine tone (with a 1 Hz beep envelope so it is audibly 'live') as G.711 A-law."""
    n = int(round(seconds * sample_rate))
    return rtp.alaw_encode(tone_samples(0, n, sample_rate, frequency, level).tolist())
