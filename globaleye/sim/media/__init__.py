"""Media a simulated camera serves: pre-encoded H.264 loops, G.711 audio, recordings (needs PyAV and numpy).

Encoding is done once per (resolution, frame rate, loop length) and shared by every
simulated camera in the process; streaming only rewrites RTP headers.  Recordings are
real MPEG-TS files, one per length, shared the same way and read back one GOP at a time.
``pattern`` draws the picture and the tone; ``recording`` makes the recording files (read
with :mod:`globaleye.media.tsfile`); ``source`` encodes the live loops and keeps the library of both.
"""
