"""Server memory under hostile transports, on loopback (issue 19's figures).

Starts `tolk serve --engine fake` (with an API key, so the WebSocket waits for an auth
frame), then: one peer floods RFC 6455 pings and never reads; six peers each POST a
100 MB body at once (with `Content-Length`, then chunked). Prints the server's RSS
before and at its peak, when the flood was cut, and what the body senders got back.

    python -m tolk_bench.hostile --flood-s 20
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

MB = 2**20
PING = b"\x89\xfd\0\0\0\0" + b"p" * 125  # a masked 125-byte ping (mask 0)


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status", encoding="ascii"):  # Linux
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _start(port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tolk_server.cli", "serve", "--engine", "fake",
           "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env={**os.environ, "TOLK_API_KEYS": "bench-key"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server not ready")


def ping_flood(port: int, pid: int, seconds: float) -> dict[str, Any]:
    rss0 = peak = rss_mb(pid)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    time.sleep(0.3)  # a client waits for the 101 before sending frames
    sock.settimeout(0.5)
    start = time.monotonic()
    cut = None
    while time.monotonic() - start < seconds:
        try:
            sock.sendall(PING * 512)
        except TimeoutError:
            pass
        except OSError:
            cut = round(time.monotonic() - start, 1)
            break
        peak = max(peak, rss_mb(pid))
    sock.close()
    return {"rss_before_mb": round(rss0), "rss_peak_mb": round(peak), "cut_after_s": cut}


def _post_big(port: int, chunked: bool, out: list[str]) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    head = ("POST /v1/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            "\r\nAuthorization: Bearer bench-key\r\n")
    head += ("Transfer-Encoding: chunked\r\n\r\n" if chunked
             else f"Content-Length: {100 * MB}\r\n\r\n")
    chunk = b" " * 65536
    piece = b"10000\r\n" + chunk + b"\r\n" if chunked else chunk
    sent = 0
    try:
        sock.sendall(head.encode())
        while sent < 100 * MB:
            sock.sendall(piece)
            sent += len(chunk)
    except OSError:
        pass
    sock.settimeout(5)
    try:
        status = sock.recv(100).split(b"\r\n")[0].decode()
    except OSError:
        status = "(reset)"
    sock.close()
    out.append(f"{sent // MB} MB sent, {status}")


def big_bodies(port: int, pid: int, chunked: bool) -> dict[str, Any]:
    rss0 = peak = rss_mb(pid)
    out: list[str] = []
    threads = [threading.Thread(target=_post_big, args=(port, chunked, out)) for _ in range(6)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_mb(pid))
        time.sleep(0.01)
    return {"rss_before_mb": round(rss0), "rss_peak_mb": round(peak),
            "mb_sent_and_status": out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tolk-hostile", description=__doc__)
    ap.add_argument("--port", type=int, default=18765)
    ap.add_argument("--flood-s", type=float, default=20)
    ns = ap.parse_args(argv)
    proc = _start(ns.port)
    try:
        report = {"ping_flood_before_auth": ping_flood(ns.port, proc.pid, ns.flood_s),
                  "six_100mb_bodies_content_length": big_bodies(ns.port, proc.pid, False),
                  "six_100mb_bodies_chunked": big_bodies(ns.port, proc.pid, True)}
    finally:
        proc.terminate()
        proc.wait(30)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
