#!/usr/bin/env python3
"""Idle memory of a wrenhub server: VmRSS with 0 connections, then with N open idle
client streams (header exchanged, features received). Usage:
    benches/idle_rss.py [--binary target/release/wrenhub] [--connections 1000]
Prints a JSON line. A measurement, not a test: figures depend on the machine."""
import argparse, json, os, re, resource, socket, subprocess, tempfile, time

HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/wrenhub")
    ap.add_argument("--connections", type=int, default=1000)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.connections * 2 + 100)), hard))
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "wrenhub.toml")
        with open(cfg, "w") as f:
            f.write(f"max_sessions = {args.connections + 10}\nc2s_header_timeout = 600\nc2s_auth_timeout = 3600\n")
        proc = subprocess.Popen([args.binary, "serve", "--config", cfg, "--c2s-listen", "127.0.0.1:0",
                                 "--data-dir", os.path.join(d, "data"), "--log-level", "info"],
                                stderr=subprocess.PIPE, text=True)
        port = None
        for line in proc.stderr:
            m = re.search(r"listening for clients on 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        time.sleep(0.3)
        idle = rss_kib(proc.pid)
        socks = []
        for _ in range(args.connections):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(HEADER)
            socks.append(s)
        for s in socks:
            got = b""
            while b"<stream:features/>" not in got:
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
