"""Shared pieces of the measurement scripts: start a wrenhub on loopback port 0,
read its real port from the log, keep draining the log, read VmRSS."""
import os, re, resource, subprocess, threading, time

HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")

def raise_fd_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, wanted)), hard))

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

def start_server(binary, workdir, config_text):
    """Returns (process, client port, data dir)."""
    data = os.path.join(workdir, "data")
    cfg = os.path.join(workdir, "wrenhub.toml")
    with open(cfg, "w") as f:
        f.write(config_text)
    proc = subprocess.Popen([binary, "serve", "--config", cfg, "--c2s-listen", "127.0.0.1:0",
                             "--c2s-direct-tls-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                             "--data-dir", data],
                            stderr=subprocess.PIPE, text=True)
    port = None
    for line in proc.stderr:
        m = re.search(r"listening for clients on 127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        raise SystemExit("the server did not start")
    # Keep draining the log, or a full pipe would stall the server.
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    time.sleep(0.3)
    return proc, port, data
