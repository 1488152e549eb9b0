#!/usr/bin/env python3
"""Authenticated TLS sessions of a wrenhub server: VmRSS idle, then with N idle
sessions (STARTTLS + SCRAM-SHA-256 + bind), KiB per session, and sequential logins
per second. Usage:
    benches/sessions.py [--binary target/release/wrenhub] [--sessions 1000]
Prints one JSON line. A measurement, not a test (issue 9 brings the side-by-side
benchmark with Prosody); the Python client's own cost is part of logins/s."""
import argparse, base64, hashlib, hmac, json, os, re, socket, ssl, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from common import HEADER, raise_fd_limit, rss_kib, start_server

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"

def read_until(sock, marker, buf):
    while marker not in buf[0] and b"</failure>" not in buf[0]:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit(f"closed while waiting for {marker!r}: {buf[0][-300:]!r}")
        buf[0] += chunk
    if marker not in buf[0]:
        head, _, rest = buf[0].partition(b"</failure>")
        buf[0] = rest
        return head + b"</failure>"
    head, _, rest = buf[0].partition(marker)
    buf[0] = rest
    return head + marker

SALTED = {}

def scram(sock, buf, user, password, hash_name="sha256"):
    mech = {"sha256": "SCRAM-SHA-256", "sha1": "SCRAM-SHA-1"}[hash_name]
    bare = f"n={user},r=benchnonce"
    sock.sendall(f"<auth xmlns='{SASL}' mechanism='{mech}'>{base64.b64encode(('n,,' + bare).encode()).decode()}</auth>".encode())
    got = read_until(sock, b"</challenge>", buf).decode()
    if "<failure" in got:
        raise SystemExit(f"{mech} refused: {got}")
    first = base64.b64decode(re.search(r">([^<]+)</challenge>", got).group(1)).decode()
    fields = dict(f.split("=", 1) for f in first.split(","))
    key = (hash_name, fields["s"], fields["i"])
    if key not in SALTED:
        SALTED[key] = hashlib.pbkdf2_hmac(hash_name, password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    salted = SALTED[key]
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    stored = hashlib.new(hash_name, client_key).digest()
    without = f"c=biws,r={fields['r']}"
    auth = f"{bare},{first},{without}".encode()
    sig = hmac.new(stored, auth, hash_name).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    msg = f"{without},p={base64.b64encode(proof).decode()}"
    sock.sendall(f"<response xmlns='{SASL}'>{base64.b64encode(msg.encode()).decode()}</response>".encode())
    got = read_until(sock, b"</success>", buf)
    assert b"<success" in got, got

def login(port, ctx, user, password, resource, hash_name="sha256"):
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = [b""]
    raw.sendall(HEADER)
    read_until(raw, b"</stream:features>", buf)
    raw.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    read_until(raw, b"/>", buf)
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    buf = [b""]
    sock.sendall(HEADER)
    read_until(sock, b"</stream:features>", buf)
    scram(sock, buf, user, password, hash_name)
    sock.sendall(HEADER)
    read_until(sock, b"</stream:features>", buf)
    sock.sendall(f"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>".encode())
    read_until(sock, b"</iq>", buf)
    return sock

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/wrenhub")
    ap.add_argument("--sessions", type=int, default=1000)
    args = ap.parse_args()
    n = args.sessions
    raise_fd_limit(n * 2 + 100)
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "data")
        accounts = (n + 99) // 100
        for a in range(accounts):
            subprocess.run([args.binary, "user", "add", f"bench{a}", "--password-stdin", "--data-dir", data],
                           input=b"benchpw\n", check=True, stdout=subprocess.DEVNULL)
        proc, port, data = start_server(args.binary, d, f"max_sessions = {n + 10}\nmax_resources_per_account = 100\n"
                                        "c2s_auth_timeout = 3600\nauth_failures_per_ip = 100000\n")
        idle = rss_kib(proc.pid)
        ctx = ssl.create_default_context(cafile=os.path.join(data, "tls", "ca.pem"))
        socks = []
        started = time.monotonic()
        for i in range(n):
            socks.append(login(port, ctx, f"bench{i // 100}", "benchpw", f"r{i % 100}"))
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        loaded = rss_kib(proc.pid)
        proc.terminate()
        proc.wait(timeout=30)
        for s in socks:
            s.close()
    print(json.dumps({"idle_rss_kib": idle, "sessions": n, "rss_kib": loaded,
                      "kib_per_session": round((loaded - idle) / n, 2),
                      "sequential_logins_per_s": round(n / elapsed, 1)}))

if __name__ == "__main__":
    main()
