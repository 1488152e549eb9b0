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
setpriv (or runuser), in a private temporary HOME owned by that user. The tmux,
user and option plumbing is terminal.py's (shared with profanity_muc.py).
"""

import os
import re
import shutil
import sys
from pathlib import Path

import terminal
from terminal import check

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"


def parse_args():
    return terminal.parse_args(__doc__, [
        *terminal.connection_options("Direct TLS port (XEP-0368; unused, poezio 0.14 has no Direct TLS option)",
                                     "account to log in with (full JID)"),
        terminal.timeout_option(20),
        terminal.program_option("poezio"),
    ])


class Poezio(terminal.TerminalClient):
    """poezio in a private tmux server, with its own HOME, config and debug log."""

    name = program_name = session = "poezio"
    join_lines = True

    def __init__(self, args, deadline):
        super().__init__(args, deadline, "poezio-login-", args.poezio, ("config", "data", "cache"))
        self.cfg = self.home / "poezio.cfg"
        self.debug_log = self.home / "debug.log"
        self.log_dir = self.home / "logs"
        self.marker = str(self.cfg)
        self.extra_env = ["PYTHONDONTWRITEBYTECODE=1"]

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
        self.hand_over()
        # The passwords and the CA copy: only poezio's user needs them.
        os.chmod(self.cfg, 0o600)
        os.chmod(ca, 0o644)

    def preflight(self):
        """The unprivileged user can write its HOME and read the CA copy."""
        super().preflight(self.home / "ca.pem", self.cfg)

    def start(self):
        super().start([self.program, "-f", str(self.cfg), "-d", str(self.debug_log)])

    def command(self, text):
        """Type /TEXT and Enter. The roster tab only opens its command line on a
        lone '/' keypress (a burst of keys reads as a paste), so type '/', wait
        for the prompt on the bottom line, then the rest."""
        self.keys("/", literal=True)
        self.until(lambda: self.bottom_line().startswith("/"), "poezio's command line did not open on '/'",
                   exited="poezio exited")
        self.keys(text, literal=True)
        self.until(lambda: self.bottom_line().startswith("/" + text),
                   lambda: f"poezio's command line does not show /{text}: {self.bottom_line()!r}")
        self.keys("Enter")

    def bottom_line(self):
        """poezio's input line, without the vertical tab list on its left."""
        lines = self.pane().rstrip("\n").splitlines()
        return re.sub(r"^[^│]*│", "", lines[-1]).strip() if lines else ""

    def errors_log(self):
        return terminal.read_text(self.log_dir / "errors.log")


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

    def logged_in():
        screen, log = poezio.pane(), poezio.log()
        for needle, what in failures.items():
            check(needle not in screen, f"{what} ({needle!r} on its screen)")
        check(not stream_errors(log), f"poezio received a stream error: {stream_errors(log)}")
        for needle, what in log_failures.items():
            check(needle not in log, f"{what} ({needle!r} in its debug log)")
        if "Authentication success." in screen and "Your JID is" in screen and events(log, "session_start"):
            return screen, log
        return None

    screen, log = poezio.until(logged_in, f"poezio did not log in within {deadline.seconds:g} s",
                               exited=lambda dead: f"poezio exited (status {dead}) before logging in")

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

    def answered():
        screen, log = poezio.pane(), poezio.log()
        if any(a in screen for a in answers):
            return screen
        check(not stream_errors(log), f"poezio received a stream error: {stream_errors(log)}")
        return None

    screen = poezio.until(answered, "no answer to /version on the session", exited="poezio exited after logging in")
    version = re.search("(" + "|".join(map(re.escape, answers)) + ").*", screen).group(0).strip()
    log = poezio.log()
    check(events(log, "connected") == 1, f"{events(log, 'connected')} connections by the end")
    check(not stream_errors(log), f"poezio received a stream error: {stream_errors(log)}")
    check("Stream error" not in screen, "poezio shows a stream error")

    poezio.quit(lambda: poezio.command("quit"), 3)

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
    deadline = terminal.Deadline(float(args.timeout))
    poezio = Poezio(args, deadline)

    def report(screen):
        print(f"--- mechanisms tried: {sasl_trace(poezio.log())}", file=sys.stderr)
        print(f"--- poezio's screen (tmux capture-pane):\n{screen}", file=sys.stderr)
        print(f"--- poezio's debug log ({poezio.debug_log}):\n{redact(poezio.log())}", file=sys.stderr)
        errors = poezio.errors_log()
        if errors:
            print(f"--- poezio's errors.log:\n{errors}", file=sys.stderr)

    terminal.main(args, poezio, lambda: run(args, deadline, poezio), report)


if __name__ == "__main__":
    main()
