"""Log in with poezio (a real terminal client, driven in tmux), on the first connection.

    poezio_login.py --port P --ca CA.pem --jid juliet@localhost/balcony --password balcony

Debian 12's poezio 0.14 runs on slixmpp 1.8, which chooses no SASL mechanism:
it walks SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS, SCRAM-SHA-256, SCRAM-SHA-1, PLAIN.
Its -PLUS attempts bind with tls-unique (which TLS 1.3 cannot offer) and its plain
SCRAM attempts then send the "y" downgrade flag, so the server refuses all four
without testing the password; they must not use up the stream's attempts, or
poezio sees a stream error and only gets in on a second connection.

Proves, from poezio's screen (tmux capture-pane) and its debug log (`poezio -d`):
poezio says "Authentication success." and "Your JID is ...", answers a /version
round trip on that session, used exactly one TCP connection, and never received a
stream error. Prints the SASL mechanisms tried, and the one that worked.

Standard library only: poezio runs as its own process (its own python3 and
slixmpp), configured entirely by a config file given with -f. TLS is STARTTLS on
--port, verified against --ca (poezio's ca_cert_path; ignore_certificate stays
off). As root (CI), poezio (which refuses root) runs as uid/gid 65534 via
setpriv (or runuser), in a private temporary HOME owned by that user.
"""

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
SESSION = "poezio"
NOBODY = 65534


class Fail(Exception):
    """The check failed; the message says how."""


def check(condition, message):
    if not condition:
        raise Fail(message)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options = [
        ("--host", "127.0.0.1", "server address"),
        ("--port", None, "client (STARTTLS) port"),
        ("--tls-port", None, "Direct TLS port (XEP-0368; unused, poezio 0.14 has no Direct TLS option)"),
        ("--ca", None, "CA certificate (PEM) that signed the server's certificate"),
        ("--jid", "juliet@localhost/balcony", "account to log in with (full JID)"),
        ("--password", "balcony", "its password"),
        ("--timeout", "20", "hard limit for the whole check, in seconds"),
        ("--poezio", shutil.which("poezio", path="/usr/bin:/usr/local/bin:" + os.environ.get("PATH", "")) or "/usr/bin/poezio",
         "the poezio executable"),
    ]
    for name, default, help_text in options:
        env = "XMPP_" + name[2:].upper().replace("-", "_")
        parser.add_argument(name, default=os.environ.get(env, default), help=f"{help_text} (env {env})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (printed at the end)")
    args = parser.parse_args()
    if args.ca is None:
        parser.error("--ca (or XMPP_CA) is required")
    if args.port is None:
        parser.error("--port (or XMPP_PORT) is required")
    return args


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def left(self):
        return self.end - time.monotonic()


class Poezio:
    """poezio in a private tmux server, with its own HOME, config and debug log."""

    def __init__(self, args, deadline):
        self.args = args
        self.deadline = deadline
        self.root = os.geteuid() == 0
        # As root, the directory must be reachable by uid 65534: /tmp is (1777),
        # whereas a root-only $TMPDIR might not be.
        base = "/tmp" if self.root and os.path.isdir("/tmp") else None
        self.dir = Path(tempfile.mkdtemp(prefix="poezio-login-", dir=base))
        self.tmux_socket = self.dir / "tmux.sock"
        self.home = self.dir / "home"
        self.cfg = self.home / "poezio.cfg"
        self.debug_log = self.home / "debug.log"
        self.log_dir = self.home / "logs"
        self.tmux_started = False
        self.pid = self.tmux_pid = None

    # --- set-up -----------------------------------------------------------

    def prepare(self):
        a = self.args
        for sub in ("", "config", "data", "cache", "logs"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        ca = self.home / "ca.pem"
        shutil.copyfile(a.ca, ca)
        jid = a.jid
        config = f"""[Poezio]
jid = {jid}
password = {a.password}
custom_host = {a.host}
custom_port = {int(a.port)}
force_encryption = true
ignore_certificate = false
ca_cert_path = {ca}
certificate =
auto_reconnect = true
rooms =
use_remote_bookmarks = false
open_all_bookmarks = false
synchronise_open_rooms = false
mam_sync = false
enable_carbons = false
enable_smacks = false
enable_avatars = false
enable_user_nick = false
enable_user_mood = false
enable_user_activity = false
enable_user_gaming = false
enable_user_tune = false
plugins_autoload =
exec_remote = false
save_status = false
send_os_info = false
use_log = false
log_dir = {self.log_dir}
log_errors = true
beep_on =
popup_time = 60
information_buffer_popup_on = error roster warning help info
lang = en

[var]
info_win_height = 12
"""
        self.cfg.write_text(config)
        (self.dir / "tmux.conf").write_text(
            "set -g remain-on-exit on\nset -g history-limit 5000\nset -g status off\n"
            'set -g default-terminal "tmux-256color"\n'
        )
        if self.root:
            for path in [self.dir, *self.dir.rglob("*")]:
                os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
            os.chmod(self.dir, 0o700)
        # The passwords and the CA copy: only poezio's user needs them.
        os.chmod(self.cfg, 0o600)
        os.chmod(ca, 0o644)

    def drop_privileges(self):
        """The argv prefix that runs poezio unprivileged (empty when not root)."""
        if not self.root:
            return []
        if shutil.which("setpriv"):
            return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
        if shutil.which("runuser"):
            return ["runuser", "-u", "nobody", "--"]
        raise Fail("running as root, and neither setpriv nor runuser is available to run poezio unprivileged")

    def as_user(self, argv):
        env = ["env", "-i", f"HOME={self.home}", "PATH=/usr/bin:/bin:/usr/local/bin", "TERM=tmux-256color",
               "LANG=C.UTF-8", "LC_ALL=C.UTF-8", f"XDG_CONFIG_HOME={self.home / 'config'}",
               f"XDG_DATA_HOME={self.home / 'data'}", f"XDG_CACHE_HOME={self.home / 'cache'}",
               f"TMPDIR={self.home}", "USER=juliet", "PYTHONDONTWRITEBYTECODE=1"]
        return env + self.drop_privileges() + argv

    def preflight(self):
        """The unprivileged user can write its HOME and read the CA copy."""
        probe = self.as_user(["sh", "-c", 'test -w "$HOME" && test -r "$HOME/ca.pem" && test -w "$HOME/poezio.cfg"'])
        r = subprocess.run(probe, capture_output=True, text=True, timeout=max(1, self.deadline.left()))
        check(r.returncode == 0, f"poezio's user cannot use {self.home} (rc {r.returncode}): {r.stderr.strip()}")
        check(Path(self.args.poezio).exists(), f"no poezio at {self.args.poezio}")

    # --- tmux -------------------------------------------------------------

    def tmux(self, *argv, check_rc=True, timeout=5):
        env = {k: v for k, v in os.environ.items() if k != "TMUX"}
        env["TMUX_TMPDIR"] = str(self.dir)
        env["LANG"] = env["LC_ALL"] = "C.UTF-8"
        r = subprocess.run(["tmux", "-S", str(self.tmux_socket), "-f", str(self.dir / "tmux.conf"), *argv],
                           capture_output=True, text=True, env=env,
                           timeout=max(0.5, min(timeout, self.deadline.left() + 1)))
        if check_rc and r.returncode != 0:
            raise Fail(f"tmux {' '.join(argv[:1])} failed (rc {r.returncode}): {r.stderr.strip()}")
        return r.stdout

    def start(self):
        argv = self.as_user([self.args.poezio, "-f", str(self.cfg), "-d", str(self.debug_log)])
        self.tmux_started = True
        # exec: env, setpriv and poezio replace the pane's shell, so #{pane_pid} is poezio.
        self.tmux("new-session", "-d", "-s", SESSION, "-x", "200", "-y", "50", "exec " + shlex.join(argv))
        pids = self.tmux("display-message", "-p", "-t", SESSION, "#{pane_pid} #{pid}").split()
        self.pid, self.tmux_pid = (int(p) if p.isdigit() else None for p in (pids + ["", ""])[:2])

    def pane(self):
        try:
            return self.tmux("capture-pane", "-p", "-J", "-t", SESSION, check_rc=False)
        except subprocess.TimeoutExpired:
            return ""

    def pane_dead(self):
        try:
            out = self.tmux("display-message", "-p", "-t", SESSION, "#{pane_dead} #{pane_dead_status}", check_rc=False)
        except subprocess.TimeoutExpired:
            return None
        parts = out.split()
        if parts and parts[0] == "1":
            return parts[1] if len(parts) > 1 else "?"
        return None

    def keys(self, *keys, literal=False):
        self.tmux("send-keys", "-t", SESSION, *(["-l"] if literal else []), *keys)

    def command(self, text):
        """Type /TEXT and Enter. The roster tab only opens its command line on a
        lone '/' keypress (a burst of keys reads as a paste), so type '/', wait
        for the prompt on the bottom line, then the rest."""
        self.keys("/", literal=True)
        while not self.bottom_line().startswith("/"):
            check(self.pane_dead() is None, "poezio exited")
            check(self.deadline.left() > 0.3, "poezio's command line did not open on '/'")
            time.sleep(0.05)
        self.keys(text, literal=True)
        while not self.bottom_line().startswith("/" + text):
            check(self.deadline.left() > 0.3, f"poezio's command line does not show /{text}: {self.bottom_line()!r}")
            time.sleep(0.05)
        self.keys("Enter")

    def bottom_line(self):
        """poezio's input line, without the vertical tab list on its left."""
        lines = self.pane().rstrip("\n").splitlines()
        return re.sub(r"^[^│]*│", "", lines[-1]).strip() if lines else ""

    def log(self):
        try:
            return self.debug_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def errors_log(self):
        try:
            return (self.log_dir / "errors.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @staticmethod
    def alive(pid, marker):
        """pid still runs (not a zombie) and its command line has marker (not a reused pid)."""
        if not pid:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return stat.rsplit(")", 1)[-1].split()[0] != "Z" and marker.encode() in cmdline

    def end(self, pid, marker):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self.alive(pid, marker):
                return
            try:
                os.kill(pid, sig)
            except OSError:
                return
            until = time.monotonic() + 1
            while self.alive(pid, marker) and time.monotonic() < until:
                time.sleep(0.02)

    def stop(self):
        # poezio outlives its terminal: once tmux is gone, it spins on a closed
        # tty instead of exiting. So end poezio first (TERM, then KILL), then tmux.
        self.end(self.pid, str(self.cfg))
        if self.tmux_started:
            try:
                self.tmux("kill-server", check_rc=False, timeout=3)
            except Exception:
                pass
            self.tmux_started = False
        self.end(self.tmux_pid, str(self.tmux_socket))

    def cleanup(self):
        self.stop()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- what poezio's debug log says -------------------------------------------

def events(log, name):
    return len(re.findall(rf"Event triggered: {re.escape(name)}\b", log))


def sasl_trace(log):
    """[(mechanism, outcome)] in order: outcome is the failure condition, 'success', or '…'."""
    trace = []
    for m in re.finditer(r"(SEND|RECV): (<(auth|failure|success)\b[^>]*xmlns=\"" + re.escape(SASL) + r"\"[^\n]*)", log):
        kind, text, tag = m.group(1), m.group(2), m.group(3)
        if kind == "SEND" and tag == "auth":
            mech = re.search(r"mechanism=\"([^\"]+)\"", text)
            trace.append([mech.group(1) if mech else "?", "…"])
        elif kind == "RECV" and trace and trace[-1][1] == "…":
            if tag == "success":
                trace[-1][1] = "success"
            else:
                cond = re.search(r"<failure[^>]*>\s*<([a-zA-Z-]+)", text)
                trace[-1][1] = cond.group(1) if cond else "failure"
    return [tuple(t) for t in trace]


def stream_errors(log):
    found = re.findall(r"RECV: [^\n]*<stream:error[^\n]*|RECV: [^\n]*<error[^>]*>\s*<[a-z-]+ xmlns=\"" + re.escape(STREAMS) + r"\"[^\n]*", log)
    found += [f"(event stream_error #{i + 1})" for i in range(events(log, "stream_error"))]
    return found


def redact(text):
    """Hide PLAIN's base64 credentials in what the check prints (poezio's debug log
    has the password nowhere else)."""
    return re.sub(r'(mechanism="PLAIN"[^>]*>)[A-Za-z0-9+/=]+', r"\1<redacted>", text)


def run(args, deadline, poezio):
    poezio.prepare()
    poezio.preflight()
    poezio.start()

    # Wait, polling the pane and the debug log, until poezio is in, or clearly is not.
    failures = {
        "Authentication failed": "poezio: SASL failed",
        "Stream error": "poezio shows a stream error",
        "Connection to remote server failed": "poezio could not connect",
        "certificate sent by the server is invalid": "poezio rejected the server's certificate",
        "Certificate check required": "poezio asks to confirm a changed certificate",
        "Disconnected from server": "poezio was disconnected",
        "Please do not run poezio as root": "poezio refuses to run as root",
        "ERROR:": "poezio refused to start",
    }
    log_failures = {
        "CERT: Invalid certificate trust chain": "poezio rejected the server's certificate",
        "SSLError": "TLS error",
        "InvalidCABundle": "poezio could not load the CA",
        "Event triggered: connection_failed": "poezio could not connect",
        "Event triggered: failed_all_auth": "poezio: SASL failed",
        "Event triggered: disconnected": "poezio was disconnected",
    }
    screen = log = ""
    while True:
        screen, log = poezio.pane(), poezio.log()
        for needle, what in failures.items():
            check(needle not in screen, f"{what} ({needle!r} on its screen)")
        check(not stream_errors(log), f"poezio received a stream error: {stream_errors(log)}")
        for needle, what in log_failures.items():
            check(needle not in log, f"{what} ({needle!r} in its debug log)")
        if "Authentication success." in screen and "Your JID is" in screen and events(log, "session_start"):
            break
        dead = poezio.pane_dead()
        check(dead is None, f"poezio exited (status {dead}) before logging in")
        check(deadline.left() > 0.3, f"poezio did not log in within {deadline.seconds:g} s")
        time.sleep(0.05)

    bound = re.search(r"Your JID is (\S+)", screen).group(1)
    check(bound.split("/")[0] == args.jid.split("/")[0], f"bound to {bound}, not {args.jid}")
    connected = events(log, "connected")
    check(connected == 1, f"{connected} connections (slixmpp 'connected' events) before the session started")
    check(screen.count("Connected to server.") <= 1, "poezio says 'Connected to server.' more than once")
    check(events(log, "disconnected") == 0, "a disconnection happened before the session started")
    trace = sasl_trace(log)
    check(trace and trace[-1][1] == "success", f"no SASL success in poezio's debug log; trace {trace}")
    check(all(outcome != "…" for _, outcome in trace), f"a SASL attempt got no answer: {trace}")
    check(events(log, "tls_success") == 1 and "<proceed" in log, "no STARTTLS (tls_success) in poezio's debug log")

    # The session is live: a /version round trip to the server, typed into poezio.
    domain = args.jid.split("@")[-1].split("/")[0]
    poezio.command(f"version {domain}")
    answers = (f"{domain} is running", f"Could not get the software version from {domain}")
    while True:
        screen, log = poezio.pane(), poezio.log()
        if any(a in screen for a in answers):
            break
        check(not stream_errors(log), f"poezio received a stream error: {stream_errors(log)}")
        check(poezio.pane_dead() is None, "poezio exited after logging in")
        check(deadline.left() > 0.3, "no answer to /version on the session")
        time.sleep(0.05)
    version = re.search("(" + "|".join(map(re.escape, answers)) + ").*", screen).group(0).strip()
    log = poezio.log()
    check(events(log, "connected") == 1, f"{events(log, 'connected')} connections by the end")
    check(not stream_errors(log), f"poezio received a stream error: {stream_errors(log)}")
    check("Stream error" not in screen, "poezio shows a stream error")

    # Leave politely (best effort: the tmux server is killed anyway).
    try:
        poezio.command("quit")
    except Fail:
        pass
    quit_by = time.monotonic() + min(3, max(0, deadline.left() - 0.5))
    while poezio.pane_dead() is None and time.monotonic() < quit_by:
        time.sleep(0.05)

    tried = " → ".join(f"{mech} ({outcome})" for mech, outcome in trace)
    used = trace[-1][0]
    print(f"poezio {poezio_version(args)}: tried {tried}; logged in with {used} on the first connection "
          f"(1 TCP connection, no stream error) as {bound}; /version: {version}")


def poezio_version(args):
    try:
        text = Path("/usr/lib/python3/dist-packages/poezio/version.py").read_text()
        return re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text).group(1)
    except Exception:
        return "?"


def main():
    args = parse_args()
    deadline = Deadline(float(args.timeout))

    def alarm(*_):
        raise Fail(f"hard timeout ({args.timeout} s)")

    signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, float(args.timeout))
    poezio = Poezio(args, deadline)
    code = 0
    try:
        run(args, deadline, poezio)
    except (Fail, subprocess.TimeoutExpired, OSError) as e:
        code = 1
        screen = ""
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
            screen = poezio.pane() if poezio.tmux_started else ""
        except Exception:
            pass
        print(f"FAIL: {e}", file=sys.stderr)
        print(f"--- mechanisms tried: {sasl_trace(poezio.log())}", file=sys.stderr)
        print(f"--- poezio's screen (tmux capture-pane):\n{screen}", file=sys.stderr)
        print(f"--- poezio's debug log ({poezio.debug_log}):\n{redact(poezio.log())}", file=sys.stderr)
        errors = poezio.errors_log()
        if errors:
            print(f"--- poezio's errors.log:\n{errors}", file=sys.stderr)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        poezio.cleanup()
        if args.keep:
            print(f"kept {poezio.dir}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
