"""Media codecs the platform and the simulator share: RTP packetization, H.264 bit syntax,
MPEG-TS, recording file names (§7.1), and the reader of a TS recording file (``tsfile``:
blocking reads, meant for worker threads).  Neither PyAV nor numpy: the media the simulated
cameras make are in :mod:`globaleye.sim.media`.
"""
