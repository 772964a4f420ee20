"""Regression tests for the newcomer's findings of issue 9 (items 7, 17-21)."""

from __future__ import annotations

import importlib.util
import socket
import sys
import tempfile
import threading
from pathlib import Path

from twisted.trial import unittest

from txturn import stun

ROOT = Path(__file__).resolve().parent.parent


def _load_bench(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Impostor:
    """Another process's STUN server on a port: answers Binding over UDP and accepts TCP."""

    def __init__(self) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.1)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                data, peer = self.udp.recvfrom(2048)
            except OSError:
                continue
            request = stun.decode(data)
            self.udp.sendto(stun.encode(stun.Message(stun.Method.BINDING, stun.Class.SUCCESS,
                                                     request.transaction_id, {})), peer)

    def close(self) -> None:
        self.running = False
        self.thread.join(2)
        self.udp.close()
        self.tcp.close()


class TurnBenchPortsTests(unittest.TestCase):
    def test_i9_21_turn_bench_refuses_a_taken_port(self) -> None:
        """A port held by another process is refused, not measured."""
        bench = _load_bench("turn_bench")
        impostor = _Impostor()
        self.addCleanup(impostor.close)
        workdir = Path(tempfile.mkdtemp())
        sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
        with self.assertRaises(RuntimeError) as caught:
            server = bench.Server("txturn", sleeper, impostor.port, workdir)
            server.stop()
        self.assertIn(f"127.0.0.1:{impostor.port} is taken", str(caught.exception))
        self.assertEqual(bench.RUNNING, [])
