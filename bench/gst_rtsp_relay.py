"""GStreamer's rtsp-server relaying one RTSP URL to many viewers (a shared media factory).

    /usr/bin/python3 bench/gst_rtsp_relay.py UPSTREAM_URL [--user U --password P] [--mount /relay]

Run with Debian's python3 (``python3-gi``, ``gir1.2-gst-rtsp-server-1.0``), not the project's
interpreter: bench/fanout_vs_gst.py starts it as the C relay GlobalEye's proxy is compared with
(issue 13).  One factory ``( rtspsrc ! rtph264depay ! rtph264pay name=pay0 pt=96 )`` with
``set_shared(True)``: every viewer shares the one upstream pipeline, as in the proxy.  Its
viewers may take RTP interleaved (TCP) or over UDP (``set_protocols``).  The
server listens on an ephemeral 127.0.0.1 port and prints ``{"port": N}`` once bound; it ends
when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("upstream")
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    p.add_argument("--mount", default="/relay")
    args = p.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")
    factory = GstRtspServer.RTSPMediaFactory()
    creds = f" user-id={args.user} user-pw={args.password}" if args.user else ""
    factory.set_launch(f"( rtspsrc location={args.upstream}{creds} protocols=tcp latency=0 "
                       "! rtph264depay ! rtph264pay name=pay0 pt=96 config-interval=-1 )")
    factory.set_shared(True)
    # Viewers may take RTP interleaved or over UDP (client_port), as from the proxy
    # (fanout_vs_gst.py --transport).  1.22's default also has UDP_MCAST; set the two used.
    # rtspsrc's protocols=tcp above is the relay's own upstream (the proxy), not its viewers.
    factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP | GstRtsp.RTSPLowerTrans.TCP)
    server.get_mount_points().add_factory(args.mount, factory)
    server.attach(None)
    # Session timeouts (60 s, as the proxy's): the server only ends timed-out sessions when the
    # application asks, as GStreamer's examples do every 2 s.  Without it a UDP viewer that
    # sends nothing (fanout_vs_gst.py --keepalive 0) is served forever; with it, the viewers'
    # RTCP receiver reports are what keeps their sessions, as with the proxy.
    pool = server.get_session_pool()
    GLib.timeout_add_seconds(2, lambda: pool.cleanup() >= 0)
    loop = GLib.MainLoop()

    def stdin_event(_fd: int, _cond: int) -> bool:
        if not os.read(0, 4096):
            loop.quit()
            return False
        return True

    GLib.io_add_watch(0, GLib.IO_IN | GLib.IO_HUP, stdin_event)
    print(json.dumps({"port": server.get_bound_port()}), flush=True)
    loop.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
