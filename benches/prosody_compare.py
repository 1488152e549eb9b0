#!/usr/bin/env python3
"""wrenhub and Prosody side by side on this machine: idle RSS, RSS per idle
authenticated TLS session (STARTTLS + SCRAM-SHA-1 + bind: Prosody 0.12 with hashed
storage offers SCRAM-SHA-1 only), sequential logins per second. Same certificate
(made by wrenhub's local CA), same accounts, same client (benches/sessions.py).
Prints a table with the ratio wrenhub/Prosody per row, then one JSON line. A first
measurement: issue 9 brings the full benchmark (Rust load generator, message
throughput, latency, medians of three runs).
    benches/prosody_compare.py [--binary target/release/wrenhub] [--sessions 500]"""
import argparse, json, os, shutil, socket, ssl, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from common import raise_fd_limit, rss_kib, start_server
from sessions import login

# Prosody refuses to run as root with mod_posix loaded; run_as_root allows it here.
PROSODY_CONFIG = """
pidfile = "{dir}/prosody.pid"
daemonize = false
run_as_root = true
data_path = "{dir}/data"
certificates = "{dir}/certs"
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{}}
s2s_ports = {{}}
component_ports = {{}}
http_ports = {{}}
https_ports = {{}}
log = {{ warn = "{dir}/prosody.log" }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping" }}
modules_disabled = {{ "s2s" }}
authentication = "internal_hashed"
c2s_require_encryption = true
c2s_timeout = 3600
VirtualHost "localhost"
    ssl = {{ certificate = "{cert}"; key = "{key}" }}
"""

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

def measure(port, pid, ca, n, user_of):
    idle = rss_kib(pid)
    ctx = ssl.create_default_context(cafile=ca)
    socks, started = [], time.monotonic()
    for i in range(n):
        user, resource = user_of(i)
        socks.append(login(port, ctx, user, "benchpw", resource, "sha1"))
    elapsed = time.monotonic() - started
    time.sleep(1.0)
    loaded = rss_kib(pid)
    for s in socks:
        s.close()
    return {"idle_rss_kib": idle, "rss_kib": loaded, "kib_per_session": round((loaded - idle) / n, 2),
            "logins_per_s": round(n / elapsed, 1)}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/wrenhub")
    ap.add_argument("--sessions", type=int, default=500)
    args = ap.parse_args()
    n = args.sessions
    if not shutil.which("prosody"):
        raise SystemExit("prosody is not installed: apt-get install prosody")
    raise_fd_limit(n * 2 + 200)
    accounts = (n + 9) // 10
    user_of = lambda i: (f"bench{i // 10}", f"r{i % 10}")
    with tempfile.TemporaryDirectory() as d:
        # wrenhub first; it also makes the certificate both servers use.
        data = os.path.join(d, "data")
        for a in range(accounts):
            subprocess.run([args.binary, "user", "add", f"bench{a}", "--password-stdin", "--data-dir", data],
                           input=b"benchpw\n", check=True, stdout=subprocess.DEVNULL)
        proc, port, data = start_server(args.binary, d, f"max_sessions = {n + 10}\nc2s_auth_timeout = 3600\n")
        ca = os.path.join(data, "tls", "ca.pem")
        ours = measure(port, proc.pid, ca, n, user_of)
        proc.terminate()
        proc.wait(timeout=30)
        # Prosody, a fresh process (it keeps the memory of closed sessions).
        pdir = os.path.join(d, "prosody")
        os.makedirs(os.path.join(pdir, "data"))
        os.makedirs(os.path.join(pdir, "certs"))
        cert, key = os.path.join(pdir, "server.pem"), os.path.join(pdir, "server.key")
        shutil.copy(os.path.join(data, "tls", "server.pem"), cert)
        shutil.copy(os.path.join(data, "tls", "server.key"), key)
        pport = free_port()
        cfg = os.path.join(pdir, "prosody.cfg.lua")
        with open(cfg, "w") as f:
            f.write(PROSODY_CONFIG.format(dir=pdir, port=pport, cert=cert, key=key))
        if os.geteuid() == 0:
            # prosodyctl switches to the prosody user: let it own its files.
            os.chmod(d, 0o755)
            subprocess.run(["chown", "-R", "prosody:prosody", pdir], check=True)
        for a in range(accounts):
            subprocess.run(["prosodyctl", "--config", cfg, "register", f"bench{a}", "localhost", "benchpw"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p = subprocess.Popen(["prosody", "-F", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", pport), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("prosody did not start; see its log in the temporary directory")
        time.sleep(0.5)
        theirs = measure(pport, p.pid, ca, n, user_of)
        p.terminate()
        p.wait(timeout=30)
    rows = [("idle RSS (KiB)", "idle_rss_kib"), ("KiB per idle TLS session", "kib_per_session"),
            ("sequential logins/s", "logins_per_s")]
    print(f"{'figure':<28}{'wrenhub':>12}{'Prosody':>12}{'ratio':>9}")
    for label, key in rows:
        ratio = ours[key] / theirs[key] if theirs[key] else float("nan")
        print(f"{label:<28}{ours[key]:>12}{theirs[key]:>12}{ratio:>9.2f}")
    print(json.dumps({"sessions": n, "wrenhub": ours, "prosody": theirs}))

if __name__ == "__main__":
    main()
