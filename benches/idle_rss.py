#!/usr/bin/env python3
"""Idle memory of a wrenhub server: VmRSS with 0 connections, then with N open idle
client streams (header exchanged, features received). Usage:
    benches/idle_rss.py [--binary target/release/wrenhub] [--connections 1000]
Prints a JSON line. A measurement, not a test: figures depend on the machine."""
import argparse, json, os, socket, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from common import HEADER, raise_fd_limit, rss_kib, start_server

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/wrenhub")
    ap.add_argument("--connections", type=int, default=1000)
    args = ap.parse_args()
    raise_fd_limit(args.connections * 2 + 100)
    with tempfile.TemporaryDirectory() as d:
        proc, port, _ = start_server(args.binary, d, f"max_sessions = {args.connections + 10}\n"
                                     "c2s_header_timeout = 600\nc2s_auth_timeout = 3600\n")
        idle = rss_kib(proc.pid)
        socks = []
        for _ in range(args.connections):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(HEADER)
            socks.append(s)
        for s in socks:
            got = b""
            while b"</stream:features>" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    raise SystemExit("server closed a connection")
                got += chunk
        time.sleep(0.5)
        loaded = rss_kib(proc.pid)
        proc.terminate()
        proc.wait(timeout=30)
        for s in socks:
            s.close()
    print(json.dumps({"idle_rss_kib": idle, "connections": args.connections, "rss_kib": loaded,
                      "kib_per_connection": round((loaded - idle) / args.connections, 2)}))

if __name__ == "__main__":
    main()
